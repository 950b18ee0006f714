"""``guard demo``: the whole guard on the embedded defaults, over bundled sample traffic.

The sample jobs go through :func:`healing_guard.traffic_replay.replay` (Tansu, the real Faust worker, chDB);
each diagnosis and command is printed as it appears on the topics. The sample holds first attempts only
and the demo has no CI, so a stand-in CI then runs the guard's re-runs (their outcomes drawn from the
sample's ground truth, :func:`healing_guard.samples.rerun_attempts`) and writes their attempts to the
warehouse, as the platform's webhooks would; then the ROI report is queried from ClickHouse.

A seed gives the same traffic and, the worker deciding the same, the same figures: the traffic is shifted
by whole days only (so that it ends within the last day, where `guard report` and the dashboard's
default window see it), which keeps every budget day and every time of day as the seed made them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from .settings import Settings

DATABASE = "guard_demo"
#: the sample clock's origin (2026-01-01 00:00 UTC); the traffic is moved by whole days from there
BASE = 1_767_225_600.0
DAY = 86_400.0


def day_shift(end: float, now: float) -> float:
    """Whole days that move traffic ending at ``end`` to within the last day before ``now`` (less a minute)."""
    return math.floor((now - 60.0 - end) / DAY) * DAY


def run_demo(s: Settings, *, jobs: int, seed: int, quiet: bool, timeout: float, console: Console) -> int:
    replayed = replay_demo(s, jobs=jobs, seed=seed, quiet=quiet, timeout=timeout, console=console)
    if replayed is None:
        return 1
    _print_roi(dataclasses.replace(s, clickhouse_database=DATABASE), replayed, console)
    return 0


def demo_report(s: Settings, *, jobs: int, seed: int, timeout: float, console: Console,
                days: int = 30) -> dict[str, Any] | None:
    """What ``guard demo`` prints, as the report dict (None when the replay failed): for tests that compare
    runs."""
    client = replay_demo(s, jobs=jobs, seed=seed, quiet=True, timeout=timeout, console=console)
    if client is None:
        return None
    from .warehouse.read import WarehouseReader

    return WarehouseReader.from_settings(client, dataclasses.replace(s, clickhouse_database=DATABASE)).report(days=days)


def replay_demo(s: Settings, *, jobs: int, seed: int, quiet: bool, timeout: float, console: Console) -> Any:
    """Replay the sample traffic and run the guard's re-runs on the CI stand-in; the open warehouse client
    (database :data:`DATABASE`), or None when the replay failed."""
    from .traffic_replay import replay
    from .samples import generate, messages

    # The sample's clock is shifted so that its traffic ends within the last day: `guard report` and the
    # dashboard's default 30-day window show it. Whole days only: the same seed keeps the same budget days
    # and times of day, so the guard decides the same (a budget day that began mid-traffic would not).
    sample = generate(jobs, seed, start=BASE)
    end = max((j.completed.completed_at or 0.0) for j in sample) if sample else BASE
    shift = day_shift(end, time.time())
    if shift:
        sample = generate(jobs, seed, start=BASE + shift)
    failed = [j for j in sample if j.completed.conclusion in ("failure", "timed_out")]
    msgs = list(messages(sample))
    total_lines = sum(len(c.lines) for j in sample for c in j.chunks)
    console.print(f"[bold]sample traffic:[/bold] {len(sample)} jobs ({len(failed)} failed) on 4 platforms, "
                  f"{len(msgs)} messages, {total_lines:,} log lines")
    expected = {j.completed.job_key: j.expected_category for j in failed}

    def show(d: dict[str, Any]) -> None:
        if quiet:
            return
        key = f"{d['provider']}/{d['owner']}/{d['repo']}/{d['job_id']}"
        ev = d["evidence"][0]["text"][:90] if d["evidence"] else ""
        mark = "" if d["category"] == (expected.get(key) or "unknown") else \
            f" [yellow](label: {expected.get(key)})[/yellow]"
        console.print(f"[cyan]{escape(key)}[/cyan] [bold]{d['category']}[/bold] ({d['confidence']:.2f}){mark} "
                      f"-> [green]{d['action']}[/green]  {escape(d['reason'][:80])}\n    [dim]{escape(ev)}[/dim]",
                      highlight=False)

    result, client = replay(s, msgs, database=DATABASE, console=console, timeout=timeout, app_name="demo",
                            on_command=show)
    if result.code != 0 or client is None:
        return None
    hits = sum(1 for (k, _), f in result.findings.items() if f["category"] == (expected.get(k) or "unknown"))
    console.print(f"diagnosed {len(result.findings)} failed jobs; category matched the sample's label for "
                  f"{hits}/{len(result.findings)}; {result.dead_letters} dead letters; "
                  f"{result.facts_written} facts written")
    run_reruns(dataclasses.replace(s, clickhouse_database=DATABASE), client, sample, result.commands, seed, console)
    return client


def run_reruns(s: Settings, client: Any, sample: Any, commands: list[dict[str, Any]], seed: int,
               console: Console) -> None:
    """The CI stand-in: run the guard's re-runs of the sample's jobs and write their attempts (and the
    results of the tests they re-ran) to the warehouse, as the platform's webhooks would have."""
    from .samples import rerun_attempts
    from .schemas import Outcome
    from .warehouse import FactWriter, job_run_fact, outcome_fact, test_result_fact

    reruns = rerun_attempts(sample, commands, seed)
    facts: list[Any] = []
    for r in reruns:
        cost = round(r.job.duration_minutes * s.price(r.job.runner_size), 4)
        facts.append(job_run_fact(r.job, cost_usd=cost))
        facts.extend(test_result_fact(t, p_fail=None) for t in r.tests)
        facts.append(outcome_fact(Outcome(command_id=r.command_id, job_key=r.job.job_key, action=r.action,
                                          status="succeeded", ts=r.job.started_at or 0.0,
                                          detail=f"demo CI stand-in: re-ran as attempt {r.job.attempt}")))
    if facts:
        FactWriter(client, s.clickhouse_database).write(facts)
    passed = sum(1 for r in reruns if r.job.conclusion == "success")
    console.print(f"the demo's CI stand-in ran the guard's {len(reruns)} re-runs: {passed} passed, "
                  f"{len(reruns) - passed} failed again (outcomes from the sample's ground truth, seed {seed})",
                  highlight=False)


def _print_roi(s: Settings, client: Any, console: Console) -> None:
    from .roi_view import print_report
    from .warehouse.read import WarehouseReader

    reader = WarehouseReader.from_settings(client, s)
    console.print("[bold]queried from ClickHouse[/bold] (definitions: docs/roi.md)")
    print_report(console, reader.report(days=30), None, s.human_response_minutes)
    console.print(f"again: [bold]guard report --database {s.clickhouse_database}[/bold]; REST API and dashboard: "
                  f"[bold]guard api --database {s.clickhouse_database}[/bold] (keys: guard api-keys create --all)",
                  highlight=False)
