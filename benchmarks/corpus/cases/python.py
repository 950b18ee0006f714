"""Python jobs that fail for a known reason: two made-up projects, ``ottercount`` (a tiny ledger library,
src layout, pytest) and ``mossgrid`` (grid helpers, flat layout, unittest and pytest).

Each case is the project with one thing broken and the CI steps that expose it; pip cases use a local
wheelhouse built by the job itself (hand-made wheels, no network) except the one that asks PyPI for a
version that does not exist.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ..case import Case, Step, Tools
from ._remote import proxy_down

# ----------------------------------------------------------------------------------------- projects

OTTER_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "ottercount"
version = "0.4.2"
requires-python = ">=3.10"

[tool.pytest.ini_options]
pythonpath = ["src"]
testpaths = ["tests"]
"""

OTTER_INIT = '''"""ottercount: a tiny double-entry ledger."""

from .ledger import Entry, Ledger, total

__all__ = ["Entry", "Ledger", "total"]
'''

OTTER_LEDGER = '''"""Entries, balances and totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class Entry:
    account: str
    amount: Decimal
    memo: str = ""


@dataclass
class Ledger:
    entries: list[Entry] = field(default_factory=list)

    def post(self, account: str, amount: str, memo: str = "") -> Entry:
        entry = Entry(account, Decimal(amount), memo)
        self.entries.append(entry)
        return entry

    def balance(self, account: str) -> Decimal:
        return sum((e.amount for e in self.entries if e.account == account), Decimal("0"))


def total(amounts: list[str]) -> Decimal:
    return sum((Decimal(a) for a in amounts), Decimal("0"))
'''

OTTER_TESTS = '''from decimal import Decimal

from ottercount import Ledger, total


def test_post_and_balance():
    book = Ledger()
    book.post("cash", "10.00")
    book.post("cash", "-2.50", "coffee")
    assert book.balance("cash") == Decimal("7.50")


def test_total_of_nothing():
    assert total([]) == Decimal("0")


def test_total_keeps_cents():
    assert total(["0.10", "0.20"]) == Decimal("0.30")
'''

#: the bug: totals go through float
OTTER_LEDGER_FLOAT = OTTER_LEDGER.replace(
    '''def total(amounts: list[str]) -> Decimal:
    return sum((Decimal(a) for a in amounts), Decimal("0"))''',
    '''def total(amounts: list[str]) -> Decimal:
    return Decimal(sum(float(a) for a in amounts))''')


def otter(**extra: str) -> dict[str, str]:
    files = {"pyproject.toml": OTTER_PYPROJECT, "src/ottercount/__init__.py": OTTER_INIT,
             "src/ottercount/ledger.py": OTTER_LEDGER, "tests/test_ledger.py": OTTER_TESTS,
             "requirements-dev.txt": "pytest>=8\npytest-timeout>=2.3\nmypy>=1.10\nruff>=0.4\n"}
    files.update(extra)
    return files


MOSS_GRID = '''"""Cells, neighbours and flood fill on a width x height grid."""

from __future__ import annotations

Cell = tuple[int, int]


def inside(cell: Cell, width: int, height: int) -> bool:
    x, y = cell
    return 0 <= x < width and 0 <= y < height


def neighbours(cell: Cell, width: int, height: int) -> list[Cell]:
    x, y = cell
    out = []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            if dx == dy == 0:
                continue
            if inside((x + dx, y + dy), width, height):
                out.append((x + dx, y + dy))
    return sorted(out)


def flood(start: Cell, walls: set[Cell], width: int, height: int) -> set[Cell]:
    seen = {start}
    todo = [start]
    while todo:
        cell = todo.pop()
        for n in neighbours(cell, width, height):
            if n not in seen and n not in walls:
                seen.add(n)
                todo.append(n)
    return seen
'''

MOSS_TESTS = '''import unittest

from mossgrid.grid import flood, neighbours


class NeighbourTest(unittest.TestCase):
    def test_corner(self):
        self.assertEqual(neighbours((0, 0), 3, 3), [(0, 1), (1, 0), (1, 1)])

    def test_middle(self):
        self.assertEqual(len(neighbours((1, 1), 3, 3)), 8)

    def test_bottom_edge(self):
        self.assertEqual(neighbours((1, 2), 3, 3), [(0, 1), (0, 2), (1, 1), (2, 1), (2, 2)])


class FloodTest(unittest.TestCase):
    def test_walled_off(self):
        walls = {(1, 0), (1, 1), (1, 2)}
        self.assertEqual(flood((0, 0), walls, 3, 3), {(0, 0), (0, 1), (0, 2)})


if __name__ == "__main__":
    unittest.main()
'''

#: the bug: an off-by-one at the bottom edge
MOSS_GRID_EDGE = MOSS_GRID.replace("return 0 <= x < width and 0 <= y < height",
                                   "return 0 <= x < width and 0 <= y <= height")


def moss(**extra: str) -> dict[str, str]:
    files = {"mossgrid/__init__.py": '"""mossgrid: grid helpers."""\n\n__version__ = "1.2.0"\n',
             "mossgrid/grid.py": MOSS_GRID, "tests/__init__.py": "", "tests/test_grid.py": MOSS_TESTS,
             "setup.cfg": "[metadata]\nname = mossgrid\nversion = 1.2.0\n\n[options]\npackages = find:\n\n"
                          "[flake8]\nmax-line-length = 100\n",
             "requirements.txt": "flake8>=7\npytest>=8\n"}
    files.update(extra)
    return files


# --------------------------------------------------------------------------------------- wheelhouse

#: a job step that writes a local wheelhouse (what a private index or a restored cache would hold); the
#: wheels are made by hand, byte for byte the same every time, so their hashes can be pinned
WHEELHOUSE_PY = '''"""Write the project's vendored wheels into a wheelhouse directory (stand-in for the private index)."""

import base64
import hashlib
import sys
import zipfile
from pathlib import Path


def wheel(out, name, version, requires=()):
    mod = name.replace("-", "_")
    dist = f"{mod}-{version}"
    files = {
        f"{mod}/__init__.py": f'__version__ = "{version}"\\n',
        f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n%s"
        % (name, version, "".join(f"Requires-Dist: {r}\\n" for r in requires)),
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: wheelhouse\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\\n".join(record) + "\\n"
    target = Path(out) / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w") as z:
        for path, text in files.items():
            z.writestr(zipfile.ZipInfo(path, (2024, 1, 1, 0, 0, 0)), text)
    return target


def main(out, specs):
    Path(out).mkdir(parents=True, exist_ok=True)
    for spec in specs:
        name, _, rest = spec.partition("==")
        version, _, deps = rest.partition(":")
        path = wheel(out, name, version, [d for d in deps.split(",") if d])
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
'''


def _wheel_sha256(name: str, version: str, requires: tuple[str, ...] = ()) -> str:
    """The sha256 of the wheel WHEELHOUSE_PY writes, computed the same way here (to pin it in a lock)."""
    import io
    import zipfile

    mod = name.replace("-", "_")
    dist = f"{mod}-{version}"
    files = {
        f"{mod}/__init__.py": f'__version__ = "{version}"\n',
        f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\nName: %s\nVersion: %s\n%s"
        % (name, version, "".join(f"Requires-Dist: {r}\n" for r in requires)),
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: wheelhouse\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, text in files.items():
            z.writestr(zipfile.ZipInfo(path, (2024, 1, 1, 0, 0, 0)), text)
    return hashlib.sha256(buf.getvalue()).hexdigest()


#: a restored cache whose archive came back damaged: the wheel is cut short (a partial download)
CORRUPT_CACHE_PY = '''"""Restore the wheel cache from the CI cache archive."""

import sys
from pathlib import Path

sys.path.insert(0, "tools")
from wheelhouse import wheel  # noqa: E402

cache = Path(".wheel-cache")
cache.mkdir(exist_ok=True)
for spec in sys.argv[1:]:
    name, _, version = spec.partition("==")
    path = wheel(cache, name, version)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # the archive entry ended early
print(f"Cache restored from key: wheels-linux-py311-{len(sys.argv) - 1}")
'''


# ------------------------------------------------------------------------------------------- helpers


def _symlinks_to_dev_full(*rels: str) -> Callable[[Path], contextlib.AbstractContextManager[Mapping[str, str]]]:
    """An ``around`` that makes ``rels`` point at /dev/full: every write there fails with ENOSPC, as on a full
    runner disk (the symlinks are made before the job, so the log does not show them)."""

    @contextlib.contextmanager
    def around(where: Path) -> Iterator[Mapping[str, str]]:
        for rel in rels:
            p = where / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.symlink_to("/dev/full")
        yield {}

    return around


#: pip runs in a virtualenv the job makes, as CI jobs do: never in the corpus's own tool venv
VENV = Step("Create virtualenv", "python -m venv .venv")
PIP = ".venv/bin/python -m pip"


# -------------------------------------------------------------------------------------------- cases


def cases(tools: Tools) -> list[Case]:  # noqa: ARG001 - the steps find every tool on PATH
    out: list[Case] = []
    add = out.append

    # ---- test_failure
    add(Case("python-pytest-assert-ottercount", "python", "test_failure", "ottercount",
             otter(**{"src/ottercount/ledger.py": OTTER_LEDGER_FLOAT}),
             (Step("Show versions", "python --version\npytest --version"),
              Step("Run tests", "pytest")),
             expect=r"^FAILED tests/test_ledger\.py::test_total_keeps_cents"))
    add(Case("python-pytest-assert-mossgrid", "python", "test_failure", "mossgrid",
             moss(**{"mossgrid/grid.py": MOSS_GRID_EDGE}),
             (Step("Lint", "flake8 mossgrid tests"),
              Step("Run tests", "python -m pytest -v tests/")),
             expect=r"^FAILED tests/test_grid\.py::"))
    add(Case("python-unittest-failure-mossgrid", "python", "test_failure", "mossgrid",
             moss(**{"mossgrid/grid.py": MOSS_GRID_EDGE}),
             (Step("Run unit tests", "python -m unittest discover -s tests -t . -v"),),
             expect=r"^FAILED \(failures=\d+"))
    add(Case("python-unittest-failure-ottercount", "python", "test_failure", "ottercount",
             otter(**{"tests/test_ledger_unittest.py": '''import unittest
from decimal import Decimal

from ottercount import Ledger


class BalanceTest(unittest.TestCase):
    def test_balances_per_account(self):
        book = Ledger()
        book.post("cash", "5.00")
        book.post("bank", "7.00")
        book.post("cash", "1.25")
        self.assertEqual({a: book.balance(a) for a in ("cash", "bank")},
                         {"cash": Decimal("6.25"), "bank": Decimal("7.50")})
''', "tests/test_ledger.py": OTTER_TESTS}),
             (Step("Run unit tests", "PYTHONPATH=src python -m unittest discover -s tests -v"),),
             expect=r"^FAILED \(failures=1\)"))

    # ---- test_timeout (pytest-timeout stops the test; the job itself ends normally)
    add(Case("python-pytest-timeout-ottercount", "python", "test_timeout", "ottercount",
             otter(**{"pyproject.toml": OTTER_PYPROJECT + "timeout = 2\n",
                      "tests/test_sync.py": '''import queue
import threading


def fetch_rates(q):
    # the worker never answers: it waits on an event nobody sets
    threading.Event().wait()
    q.put({"EUR": 1.0})


def test_rates_arrive():
    q = queue.Queue()
    threading.Thread(target=fetch_rates, args=(q,), daemon=True).start()
    assert q.get()["EUR"] == 1.0
'''}),
             (Step("Run tests", "pytest -q"),),
             expect=r"Timeout \(>2\.0s\) from pytest-timeout"))
    add(Case("python-pytest-timeout-mossgrid", "python", "test_timeout", "mossgrid",
             moss(**{"tests/test_big.py": '''import time

import pytest

from mossgrid.grid import flood


@pytest.mark.timeout(3)
def test_flood_converges():
    size = 8
    reached = flood((0, 0), set(), size, size)
    while len(reached) != size * size + 1:  # waits for a cell the grid does not have
        time.sleep(0.2)
        reached = flood((0, 0), set(), size, size)
'''}),
             (Step("Run tests", "python -m pytest -q -p no:cacheprovider tests/"),),
             expect=r"Timeout \(>3\.0s\) from pytest-timeout"))

    # ---- compilation_error
    add(Case("python-py-compile-syntax-ottercount", "python", "compilation_error", "ottercount",
             otter(**{"src/ottercount/report.py": '''"""Plain-text reports."""

from .ledger import Ledger


def report(book: Ledger) -> str:
    lines = []
    for entry in book.entries:
        lines.append(f"{entry.account:<12}{entry.amount:>10}"
    return "\\n".join(lines)
'''}),
             (Step("Byte-compile", "python -m py_compile src/ottercount/*.py"),),
             expect=r"SyntaxError"))
    add(Case("python-compileall-indent-mossgrid", "python", "compilation_error", "mossgrid",
             moss(**{"mossgrid/render.py": '''"""Render a grid as text."""


def render(width, height, walls):
    rows = []
    for y in range(height):
        row = ""
        for x in range(width):
            row += "#" if (x, y) in walls else "."
      rows.append(row)
    return "\\n".join(rows)
'''}),
             (Step("Compile sources", "python -m compileall -q mossgrid"),),
             expect=r"IndentationError"))
    note_mypy = ("a type checker's errors are the code failing to build, like a compiler's type errors: "
                 "labelled compilation_error, not lint_style (they are not style)")
    add(Case("python-mypy-ottercount", "python", "compilation_error", "ottercount",
             otter(**{"src/ottercount/fmt.py": '''"""Formatting amounts."""

from decimal import Decimal

from .ledger import Ledger


def cents(amount: Decimal) -> int:
    return amount * 100


def summary(book: Ledger) -> str:
    total = book.balance("cash")
    return "cash: " + total
'''}),
             (Step("Type check", "mypy src"),), note=note_mypy,
             expect=r"^Found \d+ errors? in"))
    add(Case("python-mypy-strict-mossgrid", "python", "compilation_error", "mossgrid",
             moss(**{"mossgrid/paths.py": '''"""Shortest paths."""

from __future__ import annotations

from collections import deque

from .grid import Cell, neighbours


def shortest(start: Cell, goal: Cell, walls: set[Cell], width: int, height: int) -> list[Cell]:
    prev: dict[Cell, Cell | None] = {start: None}
    todo = deque([start])
    while todo:
        cell = todo.popleft()
        if cell == goal:
            break
        for n in neighbours(cell, width, height):
            if n not in prev and n not in walls:
                prev[n] = cell
                todo.append(n)
    path = [goal]
    while prev[path[-1]] is not None:
        path.append(prev[path[-1]])
    return path[::-1]


def distance(start, goal, walls, width, height):
    return len(shortest(start, goal, walls, width, height)) - 1
'''}),
             (Step("Type check", "mypy --strict mossgrid"),), note=note_mypy,
             expect=r"^Found \d+ errors? in"))

    # ---- lint_style
    add(Case("python-ruff-ottercount", "python", "lint_style", "ottercount",
             otter(**{"src/ottercount/export.py": '''"""CSV export."""

import csv
import os
import sys

from .ledger import Ledger


def export(book: Ledger, path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account", "amount", "memo"])
        for e in book.entries:
            if e.memo == None:
                continue
            w.writerow([e.account, e.amount, e.memo])
    print(f"exported")
'''}),
             (Step("Lint", "ruff check --no-cache src tests"),),
             expect=r"^Found \d+ errors?"))
    add(Case("python-flake8-mossgrid", "python", "lint_style", "mossgrid",
             moss(**{"mossgrid/cli.py": '''"""mossgrid command line."""
import argparse,sys
from mossgrid.grid import flood

def main(argv=None):
    p = argparse.ArgumentParser(description="flood fill a grid from a cell and print how many cells are reachable from it")
    p.add_argument("x",type=int)
    p.add_argument("y", type=int)
    args=p.parse_args(argv)
    l = flood((args.x, args.y), set(), 10, 10)
    print(len(l))
'''}),
             (Step("Lint", "flake8 mossgrid"),),
             expect=r"^mossgrid/cli\.py:\d+:\d+: E\d+"))
    add(Case("python-ruff-format-mossgrid", "python", "lint_style", "mossgrid",
             moss(**{"mossgrid/stats.py": '''"""Grid statistics."""
from mossgrid.grid import neighbours
def degree_histogram(width,height):
    hist={}
    for y in range(height):
        for x in range(width):
            d=len(neighbours((x,y),width,height))
            hist[d]=hist.get(d,0)+1
    return dict(sorted(hist.items()))
'''}),
             (Step("Check formatting", "ruff format --no-cache --check --diff mossgrid"),),
             expect=r"would be reformatted"))

    # ---- dependency_resolution
    add(Case("python-pip-no-such-version-ottercount", "python", "dependency_resolution", "ottercount",
             otter(**{"requirements.txt": "requests==999.0\n"}),
             (VENV, Step("Install dependencies", f"{PIP} install -r requirements.txt", timeout=240.0)),
             note="asks the real index (PyPI) for a version that does not exist; dropped when offline",
             expect=r"No matching distribution found for requests==999\.0"))
    add(Case("python-pip-no-such-version-mossgrid", "python", "dependency_resolution", "mossgrid",
             moss(**{"tools/wheelhouse.py": WHEELHOUSE_PY,
                     "requirements.txt": "moss-kernels==3.1\n"}),
             (VENV, Step("Fetch wheelhouse", "python tools/wheelhouse.py wheels moss-kernels==1.0 moss-kernels==2.0"),
              Step("Install dependencies", f"{PIP} install --no-index --find-links wheels -r requirements.txt")),
             expect=r"No matching distribution found for moss-kernels==3\.1"))
    add(Case("python-pip-conflict-ottercount", "python", "dependency_resolution", "ottercount",
             otter(**{"tools/wheelhouse.py": WHEELHOUSE_PY,
                      "requirements.txt": "otter-io==1.4\notter-cli==0.9\n"}),
             (VENV, Step("Fetch wheelhouse", "python tools/wheelhouse.py wheels otter-core==1.0 otter-core==2.0 "
                                             "'otter-io==1.4:otter-core==1.0' 'otter-cli==0.9:otter-core>=2.0'"),
              Step("Install dependencies", f"{PIP} install --no-index --find-links wheels -r requirements.txt")),
             expect=r"ResolutionImpossible"))
    add(Case("python-pip-conflict-pins-mossgrid", "python", "dependency_resolution", "mossgrid",
             moss(**{"tools/wheelhouse.py": WHEELHOUSE_PY,
                     "requirements.txt": "moss-kernels==1.0\n", "requirements-plot.txt": "moss-kernels==2.0\n"}),
             (VENV, Step("Fetch wheelhouse", "python tools/wheelhouse.py wheels moss-kernels==1.0 moss-kernels==2.0"),
              Step("Install dependencies",
                   f"{PIP} install --no-index --find-links wheels -r requirements.txt -r requirements-plot.txt")),
             expect=r"conflicting dependencies|ResolutionImpossible"))

    # ---- dependency_missing
    add(Case("python-missing-module-collection-ottercount", "python", "dependency_missing", "ottercount",
             otter(**{"tests/test_stats.py": '''import numpy as np

from ottercount import Ledger


def test_mean_amount():
    book = Ledger()
    for a in ("1.00", "2.00", "3.00"):
        book.post("cash", a)
    assert np.mean([float(e.amount) for e in book.entries]) == 2.0
'''}),
             (Step("Run tests", "pytest -q"),),
             expect=r"ModuleNotFoundError: No module named 'numpy'"))
    add(Case("python-missing-module-mossgrid", "python", "dependency_missing", "mossgrid",
             moss(**{"mossgrid/config.py": '''"""Load grid definitions from YAML."""

import yaml


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)
''', "tests/test_config.py": '''import unittest

from mossgrid.config import load


class ConfigTest(unittest.TestCase):
    def test_load(self):
        self.assertIsNone(load("/dev/null"))
'''}),
             (Step("Run unit tests", "python -m unittest discover -s tests -t . -v"),),
             expect=r"No module named 'yaml'"))

    # ---- build_config
    add(Case("python-pyproject-no-requires-ottercount", "python", "build_config", "ottercount",
             otter(**{"pyproject.toml": OTTER_PYPROJECT.replace('requires = ["setuptools>=61"]\n', "")}),
             (VENV, Step("Install package", f"{PIP} install --no-build-isolation --no-deps -e .")),
             expect=r"invalid pyproject\.toml"))
    add(Case("python-pyproject-bad-toml-mossgrid", "python", "build_config", "mossgrid",
             moss(**{"pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\n'
                                       'build-backend = "setuptools.build_meta"\n\n[project]\nname = "mossgrid"\n'
                                       'version = "1.2.0\ndependencies = []\n'}),
             (VENV, Step("Install package", f"{PIP} install --no-build-isolation --no-deps .")),
             expect=r"TOMLDecodeError"))
    add(Case("python-setup-cfg-broken-mossgrid", "python", "build_config", "mossgrid",
             moss(**{"setup.cfg": "name = mossgrid\n[metadata]\nversion = 1.2.0\n\n[tool:pytest]\ntestpaths = tests\n"}),
             (Step("Run tests", "python -m pytest -q"),),
             note="the project's test configuration (setup.cfg) cannot be parsed: nothing of the code ran",
             expect=r"setup\.cfg"))

    # ---- cache_corruption
    for project, files, pkg in (("ottercount", otter, "otter-core"), ("mossgrid", moss, "moss-kernels")):
        digest = _wheel_sha256(pkg, "1.0")
        add(Case(f"python-pip-hash-mismatch-{project}", "python", "cache_corruption", project,
                 files(**{"tools/wheelhouse.py": WHEELHOUSE_PY, "tools/restore_cache.py": CORRUPT_CACHE_PY,
                          "requirements.lock": f"{pkg}==1.0 \\\n    --hash=sha256:{digest}\n"}),
                 (VENV, Step("Restore wheel cache", f"python tools/restore_cache.py {pkg}==1.0"),
                  Step("Install locked dependencies",
                       f"{PIP} install --require-hashes --no-index --find-links .wheel-cache -r requirements.lock")),
                 note="the lock's hash is the real wheel's; the restored cache holds a truncated copy",
                 expect=r"DO NOT MATCH THE HASHES"))

    # ---- oom
    add(Case("python-memoryerror-ottercount", "python", "oom", "ottercount",
             otter(**{"src/ottercount/batch.py": '''"""Replay a year of synthetic entries in memory."""

from .ledger import Ledger


def main() -> None:
    book = Ledger()
    print("building replay buffer ...", flush=True)
    buffer = [bytes(1 << 20) for _ in range(4096)]  # 4 GiB of pages
    for _ in buffer:
        book.post("cash", "1.00")
    print(book.balance("cash"))


if __name__ == "__main__":
    main()
'''}),
             (Step("Replay batch", "ulimit -v 1000000\nPYTHONPATH=src python -m ottercount.batch"),),
             note="ulimit -v stands in for the runner's memory limit",
             expect=r"^MemoryError"))
    add(Case("python-memoryerror-pytest-mossgrid", "python", "oom", "mossgrid",
             moss(**{"tests/test_huge.py": '''from mossgrid.grid import inside


def test_dense_mask():
    size = 60000
    mask = bytearray(size * size)  # one byte per cell
    assert inside((size - 1, size - 1), size, size) and len(mask) == size * size
'''}),
             (Step("Run tests", "ulimit -v 800000\npython -m pytest -q -p no:cacheprovider tests/test_huge.py"),),
             note="ulimit -v stands in for the runner's memory limit",
             expect=r"MemoryError"))

    # ---- disk_full
    add(Case("python-disk-full-ottercount", "python", "disk_full", "ottercount",
             otter(**{"src/ottercount/dump.py": '''"""Dump the ledger as CSV for the nightly report."""

import csv
import sys

from .ledger import Ledger


def main(path: str) -> None:
    book = Ledger()
    for i in range(20000):
        book.post("cash" if i % 3 else "bank", f"{i % 97}.{i % 100:02d}", f"entry {i}")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        for e in book.entries:
            w.writerow([e.account, e.amount, e.memo])
    print(f"wrote {len(book.entries)} entries to {path}")


if __name__ == "__main__":
    main(sys.argv[1])
'''}),
             (Step("Nightly dump", "PYTHONPATH=src python -m ottercount.dump build/ledger.csv"),),
             around=_symlinks_to_dev_full("build/ledger.csv"),
             note="the output file is /dev/full behind a symlink: writes fail with ENOSPC as on a full disk",
             expect=r"No space left on device"))
    add(Case("python-disk-full-pytest-mossgrid", "python", "disk_full", "mossgrid",
             moss(**{"tests/test_snapshot.py": '''import json
from pathlib import Path

from mossgrid.grid import flood


def test_snapshot_written():
    cells = sorted(flood((0, 0), set(), 50, 50))
    out = Path("artifacts/flood.json")
    out.write_text(json.dumps(cells))
    assert json.loads(out.read_text())[0] == [0, 0]
'''}),
             (Step("Run tests", "python -m pytest -q -p no:cacheprovider tests/test_snapshot.py"),),
             around=_symlinks_to_dev_full("artifacts/flood.json"),
             note="the artifact file is /dev/full behind a symlink: writes fail with ENOSPC as on a full disk",
             expect=r"No space left on device"))

    # ---- crash
    native = '''"""Self-test of the native checksum helper."""

import ctypes


def checksum(ptr: int, size: int) -> int:
    return sum(ctypes.string_at(ptr, size))


if __name__ == "__main__":
    buf = ctypes.create_string_buffer(b"ottercount" * 8)
    print("checksum of buffer:", checksum(ctypes.addressof(buf), len(buf)), flush=True)
    print("checksum of unmapped page:", checksum(0x10, 16), flush=True)
'''
    add(Case("python-segfault-ottercount", "python", "crash", "ottercount",
             otter(**{"src/ottercount/native.py": native}),
             (Step("Native self-test",
                   "PYTHONPATH=src python -X faulthandler -m ottercount.native && echo native self-test passed"),),
             expect=r"Segmentation fault"))
    add(Case("python-segfault-pytest-mossgrid", "python", "crash", "mossgrid",
             moss(**{"tests/test_native.py": '''import ctypes


def test_read_through_dangling_pointer():
    freed = 0x10  # what the pool hands back after release()
    assert ctypes.string_at(freed, 4) == b"\\0\\0\\0\\0"
'''}),
             (Step("Run tests", "python -m pytest -q -p no:cacheprovider tests/test_native.py && echo tests passed"),),
             expect=r"Segmentation fault"))

    # ---- network
    add(Case("python-network-refused-ottercount", "python", "network", "ottercount",
             otter(**{"tests/test_rates.py": '''import json
import urllib.request


def test_rates_service():
    with urllib.request.urlopen("https://rates.example.com/v1/rates?base=EUR", timeout=5) as r:
        assert "USD" in json.load(r)
'''}),
             (Step("Run tests", "pytest -q --tb=short tests/test_rates.py"),),
             around=proxy_down(47711),
             note=("the test needs rates.example.com and the runner's HTTP proxy (https_proxy, not shown) refuses "
                   "connections: a network failure, not a code one"),
             expect=r"rates\.example\.com(?s:.*)Connection refused"))
    add(Case("python-network-index-down-mossgrid", "python", "network", "mossgrid",
             moss(**{"requirements.txt": "moss-kernels==1.0\n"}),
             (VENV, Step("Install dependencies", f"{PIP} install --index-url https://pypi.mossgrid.example.com/simple "
                                                 "--retries 1 --timeout 5 -r requirements.txt")),
             around=proxy_down(47712),
             note=("the runner's HTTP proxy (https_proxy, not shown) refuses connections, so pip never reaches the "
                   "private index pypi.mossgrid.example.com; it then reports no matching distribution"),
             expect=r"Cannot connect to proxy"))

    # ---- infra_timeout: the job hangs and the platform's time limit stops it
    add(Case("python-hung-job-ottercount", "python", "infra_timeout", "ottercount",
             otter(**{"tests/test_lock.py": '''import threading

from ottercount import Ledger

LOCK = threading.Lock()


def post_locked(book, amount):
    with LOCK:
        with LOCK:  # not reentrant: waits for itself forever
            book.post("cash", amount)


def test_posts_under_lock():
    book = Ledger()
    post_locked(book, "1.00")
    assert len(book.entries) == 1
'''}),
             (Step("Run tests", "pytest -v", timeout=6.0),), ends="job_timeout",
             note="no per-test timeout is configured: the platform's job time limit ends it (infra_timeout)"))
    add(Case("python-hung-job-mossgrid", "python", "infra_timeout", "mossgrid",
             moss(**{"mossgrid/watch.py": '''"""Wait for the grid service to publish its first frame."""

import time
from pathlib import Path

if __name__ == "__main__":
    print("waiting for frames/0001.json ...", flush=True)
    while not Path("frames/0001.json").exists():
        time.sleep(0.2)
'''}),
             (Step("Smoke test", "python -m mossgrid.watch", timeout=6.0),), ends="job_timeout",
             note="the step waits for a file that never comes: the platform's job time limit ends it"))

    # ---- infra_runner_lost: the machine goes away mid-step (the process group is killed from outside)
    add(Case("python-runner-lost-ottercount", "python", "infra_runner_lost", "ottercount",
             otter(**{"tests/conftest.py": '''import os
import signal


def pytest_runtest_logfinish(nodeid, location):
    if nodeid.endswith("test_total_of_nothing"):
        os.killpg(0, signal.SIGKILL)  # the runner's VM is reclaimed here
'''}),
             (Step("Run tests", "pytest -v -p no:cacheprovider"),), ends="runner_lost",
             note="the step's whole process group is SIGKILLed mid-run, as when the runner disappears"))
    return out
