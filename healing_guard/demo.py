"""``guard demo``: the whole guard on the embedded defaults, over bundled sample traffic.

The sample jobs go through :func:`healing_guard.traffic_replay.replay` (Tansu, the real Faust worker, chDB);
each diagnosis and command is printed as it appears on the topics, then the ROI report queried from
ClickHouse.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from .settings import Settings


def run_demo(s: Settings, *, jobs: int, seed: int, quiet: bool, timeout: float, console: Console) -> int:
    from .traffic_replay import replay
    from .samples import generate, messages

    # The sample's clock is shifted so that its traffic ends now: `guard report` and the dashboard's
    # default 30-day window show it. (Shifting keeps the traffic identical for a seed.)
    base = 1_767_225_600.0
    sample = generate(jobs, seed, start=base)
    end = max((j.completed.completed_at or 0.0) for j in sample) if sample else base
    sample = generate(jobs, seed, start=base + (time.time() - 60.0 - end))
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

    result, client = replay(s, msgs, database="guard_demo", console=console, timeout=timeout, app_name="demo",
                            on_command=show)
    if result.code != 0 or client is None:
        return 1
    hits = sum(1 for (k, _), f in result.findings.items() if f["category"] == (expected.get(k) or "unknown"))
    console.print(f"diagnosed {len(result.findings)} failed jobs; category matched the sample's label for "
                  f"{hits}/{len(result.findings)}; {result.dead_letters} dead letters; "
                  f"{result.facts_written} facts written")
    _print_roi(dataclasses.replace(s, clickhouse_database="guard_demo"), client, console)
    return 0


def _print_roi(s: Settings, client: Any, console: Console) -> None:
    from .roi_view import print_report
    from .warehouse.read import WarehouseReader

    reader = WarehouseReader.from_settings(client, s)
    console.print("[bold]queried from ClickHouse[/bold] (definitions: docs/roi.md)")
    print_report(console, reader.report(days=30), None, s.human_response_minutes)
    console.print(f"again: [bold]guard report --database {s.clickhouse_database}[/bold]; REST API and dashboard: "
                  f"[bold]guard api --database {s.clickhouse_database}[/bold] (keys: guard api-keys create --all)",
                  highlight=False)
