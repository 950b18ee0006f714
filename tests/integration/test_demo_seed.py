"""A seed gives the same figures: `guard demo`'s machinery (the sample traffic through Tansu, the real
worker and chDB, then the CI stand-in's re-runs) run twice with one seed, each in a fresh data
directory, gives the same report.

Each run is its own process: chDB opens one data directory per process, and the replay stops its
worker with a signal to itself. 150 jobs is the smallest sample of seed 7 that still holds the paths
where the runs used to part: the guard re-running flaky tests in isolation (its per-test model needs a
few runs of a test first), the other re-runs, failures it left to people, the CI stand-in's outcomes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.paths import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("test_demo_seed")]
pytest.importorskip("chdb", reason="chDB is the [embedded] extra")

JOBS, SEED = 150, 7

RUN = textwrap.dedent("""
    import pathlib
    import sys

    import orjson
    from rich.console import Console

    from healing_guard.demo import demo_report
    from healing_guard.settings import load_settings

    s = load_settings(None, env={}, clickhouse_dsn="chdb://" + sys.argv[1])
    report = demo_report(s, jobs=int(sys.argv[2]), seed=int(sys.argv[3]), timeout=240.0,
                         console=Console(file=sys.stderr, width=120))
    if report is None:
        sys.exit(1)
    pathlib.Path(sys.argv[4]).write_bytes(orjson.dumps(report))  # not stdout: the progress bars write there
    """)


def start_demo(data_dir: Path) -> subprocess.Popen[bytes]:
    data_dir.mkdir()
    return subprocess.Popen([sys.executable, "-c", RUN, str(data_dir / "chdb"), str(JOBS), str(SEED),
                             str(data_dir / "report.json")], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=(data_dir / "stderr.log").open("wb"), env={**os.environ, "HOME": str(data_dir)})


def demo_report(data_dir: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    code = proc.wait(timeout=300)  # a hang guard
    assert code == 0, (data_dir / "stderr.log").read_text(errors="replace")[-3000:]
    report: dict[str, Any] = orjson.loads((data_dir / "report.json").read_bytes())
    return report


def comparable(r: dict[str, Any]) -> dict[str, Any]:
    """The report less the calendar: the window's dates and the budget days' names follow the day the demo
    runs on (its traffic is moved to end within the last day); their amounts must not."""
    out = dict(r)
    rel = dict(out.pop("reliability"))
    out["reliability"] = {k: ({x: y for x, y in v.items() if x not in ("since", "until")} if isinstance(v, dict) else v)
                          for k, v in rel.items()}
    out["budget"] = [{k: v for k, v in b.items() if k != "day"} for b in out["budget"]]
    return out


def test_one_seed_gives_the_same_figures_twice(tmp_path: Path) -> None:
    # one after the other: two demos at once load both cores, and the other test worker's fault tests then
    # run on a starved machine
    first = demo_report(tmp_path / "first", start_demo(tmp_path / "first"))
    second = demo_report(tmp_path / "second", start_demo(tmp_path / "second"))
    # the paths this test is about were taken (a run that decided nothing would trivially agree)
    actions = {s["action"]: s["commands"] for s in first["recovery_by_strategy"]}
    assert actions.get("retry_tests_isolated", 0) > 0 and len(actions) >= 4, actions
    assert first["reruns_decided"] == first["auto_commands"] > 0  # the CI stand-in ran every re-run
    assert first["flaky_tests_judged"] > 0 and first["cost_avoided_usd"] > 0
    a, b = comparable(first), comparable(second)
    assert a == b, {k: (a[k], b[k]) for k in a if a[k] != b.get(k)}
