"""make test's longest-first order (tests/support/test_order.py): units sorted by their expected time, the
times recorded under xdist without the group suffix it adds to a grouped test's id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.paths import ROOT
from tests.support.test_order import order, plain_id


def _items(*ids: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(nodeid=i) for i in ids]


def test_longest_unit_first_groups_counted_whole_unknown_tests_keep_their_place() -> None:
    items = _items("a.py::t1", "a.py::t2", "b.py::t1", "c.py::t1@g", "d.py::t1@g", "e.py::t1", "e.py::t2")
    groups = {"c.py::t1@g": "g", "d.py::t1@g": "g"}
    durations = {"a.py::t2": 5.0, "b.py::t1": 30.0, "c.py::t1": 10.0, "d.py::t1": 12.0, "e.py::t2": 1.0}
    order(items, durations, group_of=lambda item: groups.get(item.nodeid))
    # group g: 22 s as one unit, ahead of a 5 s test; the 0 s tests after every known one, in their order
    assert [i.nodeid for i in items] == ["b.py::t1", "c.py::t1@g", "d.py::t1@g", "a.py::t2", "e.py::t2",
                                         "a.py::t1", "e.py::t1"]


def test_plain_id_drops_only_the_group_suffix() -> None:
    assert plain_id("tests/x.py::test_a@guard_up") == "tests/x.py::test_a"
    assert plain_id("tests/x.py::test_a[user@host]") == "tests/x.py::test_a[user@host]"
    assert plain_id("tests/x.py::test_a") == "tests/x.py::test_a"


def test_saved_under_xdist_with_plain_ids(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text(
        "import time, pytest\n"
        "@pytest.mark.xdist_group('grp')\ndef test_slow(): time.sleep(1.2)\n"
        "def test_fast(): pass\n")
    out = tmp_path / "durations.json"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.support.test_order",
                        "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", f"--save-durations={out}",
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout + r.stderr
    saved = json.loads(out.read_text())
    (slow,) = saved  # the fast test is below a second: left out
    assert slow.endswith("test_a.py::test_slow") and saved[slow] >= 1.2


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]"])
def test_a_bad_file_orders_nothing(tmp_path: Path, text: str) -> None:
    from tests.support.test_order import load

    p = tmp_path / "d.json"
    p.write_text(text)
    assert load(p) == {}
    assert load(tmp_path / "missing.json") == {}
