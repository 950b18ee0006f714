"""A pytest plugin that applies the guard's directive for this attempt (healing_guard/directives.py).

``guard directive apply`` copies this file, as ``guard_pytest_directive.py``, into its output directory,
puts that directory on ``PYTHONPATH`` and ``-p guard_pytest_directive`` in ``PYTEST_ADDOPTS``: so it
works in whatever Python environment the job's tests run in, without the guard installed there. It
imports nothing but pytest and the standard library, on purpose.

From the variables the directive set:

- ``GUARD_TESTS_FILE``: run only these tests (one id per line: a node id, or the guard's JUnit-derived id,
  which is the node id relative to another root). If none of them is collected here, every test runs.
- ``GUARD_SEQUENTIAL=true``: no pytest-xdist workers (``-n N`` of the job's own command line is undone).
- ``GUARD_TIMEOUT_FACTOR``: pytest-timeout's timeout (``--timeout``, the ``timeout`` ini option or
  ``PYTEST_TIMEOUT``) times this factor. Per-test ``@pytest.mark.timeout`` values are left as they are.

What it did is printed at the end of the run (``healing-guard directive: ...``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

_NOTES = "_guard_directive_notes"


def _note(config: pytest.Config, text: str) -> None:
    notes = getattr(config, _NOTES, None)
    if notes is None:
        notes = []
        setattr(config, _NOTES, notes)
    notes.append(text)


def _float_env(name: str) -> float | None:
    try:
        return float(os.environ.get(name, ""))
    except ValueError:
        return None


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's and pytest-timeout's own configure hooks
def pytest_configure(config: pytest.Config) -> None:
    opt = config.option
    if os.environ.get("GUARD_SEQUENTIAL") == "true" and getattr(opt, "numprocesses", None):
        # pytest-xdist's command-line hook already turned -n N into N workers; undo it before its
        # configure hook starts them
        opt.numprocesses, opt.dist, opt.tx = 0, "no", []
        _note(config, "tests run one at a time (pytest-xdist off)")
    factor = _float_env("GUARD_TIMEOUT_FACTOR")
    if factor and factor > 1 and hasattr(opt, "timeout"):
        base = opt.timeout if opt.timeout is not None else (config.getini("timeout") or os.environ.get("PYTEST_TIMEOUT"))
        try:
            base_s = float(base) if base not in (None, "") else 0.0
        except (TypeError, ValueError):
            base_s = 0.0
        if base_s > 0:
            opt.timeout = base_s * factor
            _note(config, f"test timeout {base_s:g} s -> {opt.timeout:g} s")


def _matches(nodeid: str, wanted: set[str]) -> bool:
    if nodeid in wanted:
        return True
    # the same test seen from another root directory: one id ends with the other at a path boundary
    return any(w.endswith("/" + nodeid) or nodeid.endswith("/" + w) for w in wanted)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    path = os.environ.get("GUARD_TESTS_FILE")
    if not path:
        return
    try:
        wanted = {ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()}
    except OSError as exc:
        _note(config, f"GUARD_TESTS_FILE {path}: {exc}; running every test")
        return
    keep = [it for it in items if _matches(it.nodeid, wanted)]
    if not keep:  # the failed tests are not here (another job's, or renamed): never run nothing
        _note(config, f"none of the {len(wanted)} failed tests was collected here; running every test")
        return
    kept = set(map(id, keep))
    dropped = [it for it in items if id(it) not in kept]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    _note(config, f"only the {len(keep)} failed test(s) of the previous attempt")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if os.environ.get("GUARD_DIRECTIVE"):
        return [f"healing-guard directive {os.environ['GUARD_DIRECTIVE']} ({os.environ.get('GUARD_ACTION', '?')})"]
    return None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for note in getattr(config, _NOTES, []):
        terminalreporter.write_line(f"healing-guard directive: {note}")
