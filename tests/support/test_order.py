"""Longest work first (what ``make test`` uses with ``--no-loadscope-reorder``): pytest-xdist hands out work
in collection order, one test or one ``xdist_group`` at a time, to whichever worker is free; a 30-second test
collected last makes the run wait for it at the end. This sorts the collection by each unit's expected time,
longest first (the greedy schedule's known good order), from the times of an earlier run kept in
``tests/durations.json`` (tests of at least a second; a test not in it counts as 0 s and keeps its place
after the known ones). A stale or missing file only costs balance, never a test.

``pytest --save-durations`` (with or without xdist) writes the file from the run it ends; ``make durations``
runs the suite as ``make test`` does and keeps its times."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

DURATIONS = Path(__file__).resolve().parents[1] / "durations.json"
#: tests shorter than this are left out of the file (their order does not matter)
KEEP_AT_LEAST_S = 1.0
#: the ``@group`` pytest-xdist appends to a grouped test's id under ``--dist loadgroup``
_GROUP_SUFFIX = re.compile(r"@[\w.-]+$")


def plain_id(nodeid: str) -> str:
    return _GROUP_SUFFIX.sub("", nodeid)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--save-durations", nargs="?", const=str(DURATIONS), default=None, metavar="PATH",
                     help=f"write each test's time (>= {KEEP_AT_LEAST_S:.0f} s) to tests/{DURATIONS.name} (or PATH) "
                          "for the longest-first order of the next runs")


def _group(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    if mark is None:
        return None
    return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))


def load(path: Path = DURATIONS) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def order(items: list[Any], durations: dict[str, float], group_of: Any = _group) -> None:
    """Sort ``items`` in place, stably, by the expected time of their unit (a group's total, else the
    test's own), longest first."""
    totals: dict[str, float] = defaultdict(float)
    unit = {}
    for item in items:
        g = group_of(item)
        unit[item.nodeid] = u = f"@{g}" if g is not None else item.nodeid
        totals[u] += durations.get(plain_id(item.nodeid), 0.0)
    items.sort(key=lambda item: -totals[unit[item.nodeid]])


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    durations = load()
    if durations:
        order(items, durations)


class _Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.times[plain_id(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        kept = {k: round(v, 1) for k, v in sorted(self.times.items()) if v >= KEEP_AT_LEAST_S}
        self.path.write_text(json.dumps(kept, indent=1) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("save_durations")
    if path and not hasattr(config, "workerinput"):  # the controller only
        config.pluginmanager.register(_Recorder(Path(path)), "guard-save-durations")
