"""The ROI report in a terminal (``guard report`` and the end of ``guard demo``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def print_report(console: Console, r: dict[str, Any], series: list[dict[str, Any]] | None, human_minutes: float) -> None:
    """The report of :meth:`WarehouseReader.report` (and optionally its daily series) as a terminal table."""

    def num(v: Any, fmt: str = "{:,.2f}") -> str:
        return "–" if v is None else fmt.format(v)

    scope = r["repo"] or "all repositories"
    window = f"last {r['days']} days" if r["days"] else "all time"
    console.print(f"[bold]ROI of the guard[/bold], {escape(scope)}, {window}", highlight=False)
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_column(style="dim")
    decided = r.get("reruns_decided")
    ran = "" if decided is None else f", {decided:,} of them ran"
    mttr_note = f"failure to green, {r.get('mttr_episodes', 0):,} failures the guard re-ran"
    if r.get("mttr_without_guard_minutes") is not None:
        mttr_note += (f"; without the guard {num(r['mttr_without_guard_minutes'], '{:,.1f}')} min "
                      f"(a person re-running after {human_minutes:g} min)")
    flaky_note = f"{r['flaky_tests']:,} of {r['tests_seen']:,} tests"
    if "flaky_tests_judged" in r:
        flaky_note += (f": {r['flaky_tests_judged']:,} judged flaky by the guard, {r['flaky_tests_observed']:,} "
                       "failed and passed on one commit")
    rows = [
        ("jobs (failed)", f"{r['jobs']:,} ({r['failed_jobs']:,})", f"CI cost ${r['ci_cost_usd']:,.2f}"),
        ("time saved", f"{r['time_saved_minutes']:,.1f} min", f"vs a person re-running after {human_minutes:g} min"),
        ("cost of re-runs", f"${r['rerun_cost_usd']:,.2f}", f"{r['auto_commands']:,} automatic re-runs{ran}"),
        ("cost avoided", f"${r['cost_avoided_usd']:,.2f}", "useless retries not made"),
        ("recovery rate", num(r["recovery_rate"], "{:.0%}"), "re-runs whose re-run attempt passed"),
        ("MTTR", f"{num(r['mttr_minutes'], '{:,.1f}')} min", mttr_note),
        ("mean time to green", f"{num(r['mttg_minutes'], '{:,.1f}')} min",
         f"all {r.get('mttg_episodes', 0):,} failures that turned green (other failures than MTTR's: the guard "
         f"re-runs what a re-run can fix); {r['open_failures']:,} not green yet"),
        ("flaky-test rate", num(r["flaky_test_rate"], "{:.1%}"), flaky_note),
    ]
    rel = r.get("reliability")
    if rel:
        cur, prev, ch = rel["current"], rel["previous"], rel["change"]
        n = rel["window_days"]
        rows.append(("success rate", num(r.get("success_rate"), "{:.1%}"), "job attempts that succeeded"))
        rows.append((f"MTTR, last {n} days", f"{num(cur['mttr_minutes'], '{:,.1f}')} min",
                     f"{n} days before: {num(prev['mttr_minutes'], '{:,.1f}')} min; change "
                     f"{num(ch['mttr_minutes'], '{:+,.1f}')} min"))
        rows.append((f"success rate, last {n} days", num(cur["success_rate"], "{:.1%}"),
                     f"{n} days before: {num(prev['success_rate'], '{:.1%}')}; change "
                     f"{num(ch['success_rate_points'], '{:+.1f}')} points"))
    for row in rows:
        t.add_row(*row)
    console.print(t)
    if r["recovery_by_strategy"]:
        console.print("[bold]recovery per strategy[/bold] (recovered / re-run attempt ran, of re-runs): " + ", ".join(
            f"{escape(a['action'])} {a['recovered']}/{a['decided']} of {a['commands']}"
            for a in r["recovery_by_strategy"]), highlight=False)
    if r["failures_by_category"]:
        console.print("[bold]failures by category[/bold]: " + ", ".join(
            f"{escape(k)} {v}" for k, v in r["failures_by_category"].items()), highlight=False)
    for tpl in r["top_templates"][:5]:
        console.print(f"  {tpl['count']:>5}  [{escape(tpl['category'])}] {escape(tpl['template'][:120])}", highlight=False)
    for tst in r["flakiest_tests"][:5]:
        console.print(f"  flaky: {escape(tst['test_id'])} ({tst['failures']}/{tst['runs']} failed)", highlight=False)
    for b in r["budget"][-7:]:
        console.print(f"  budget {b['day']}: ${b['spent_usd']:,.2f} of "
                      f"{num(b['budget_usd'], '${:,.2f}')} ({num(b['burn'], '{:.0%}')})", highlight=False)
    if series:
        console.print("[bold]per day[/bold]: day, jobs, failed, success, minutes saved, $ saved, $ re-runs, MTTR, MTTG")
        for d in series:
            console.print(f"  {d['day']}  {d['jobs']:>5} {d['failed_jobs']:>5} {num(d.get('success_rate'), '{:>6.0%}')} "
                          f"{d['time_saved_minutes']:>8.1f} {d['cost_saved_usd']:>8.2f} {d['rerun_cost_usd']:>8.2f} "
                          f"{num(d.get('mttr_minutes'), '{:>7.1f}')} {num(d['mttg_minutes'], '{:>7.1f}')}",
                          highlight=False)
