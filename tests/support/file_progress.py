"""``pytest --file-progress`` (what ``make test`` uses): one line each time a test file is done, with its
counts and time, and how many files are left, so a long run on two workers says where it is instead of
printing minutes of dots. Works with and without pytest-xdist (the controller counts every node's reports)."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--file-progress", action="store_true", default=False,
                     help="print a line when each test file is done (counts, seconds, files left)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("file_progress") and not hasattr(config, "workerinput"):  # the controller only
        config.pluginmanager.register(FileProgress(config), "guard-file-progress")


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class FileProgress:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.left: dict[str, int] = {}
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self.first_seen: dict[str, float] = {}
        self.files_total = 0
        self.files_done = 0
        self.start = time.monotonic()

    def _expect(self, nodeids: list[str]) -> None:
        if self.left:
            return  # every xdist node collects the same tests: count them once
        for nid in nodeids:
            self.left[_file(nid)] = self.left.get(_file(nid), 0) + 1
        self.files_total = len(self.left)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self._expect(list(ids))

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self._expect([i.nodeid for i in items])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        f = _file(report.nodeid)
        self.first_seen.setdefault(f, time.monotonic())
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.outcomes[f][report.outcome] += 1
        if report.when != "teardown" or f not in self.left:
            return
        self.left[f] -= 1
        if self.left[f] > 0:
            return
        del self.left[f]
        self.files_done += 1
        counts = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes[f].items()))
        took = time.monotonic() - self.first_seen[f]
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            if getattr(getattr(tr, "_tw", None), "width_of_current_line", 0):
                tr.write("\n")  # after the dots of the tests so far
            tr.write_line(f"[{self.files_done:>3}/{self.files_total} files, {time.monotonic() - self.start:5.0f} s] "
                          f"{f}: {counts} ({took:.1f} s)")
