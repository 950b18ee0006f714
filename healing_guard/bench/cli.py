"""``guard bench``: benchmarks of the guard's parts (measuring code lives in the sibling modules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from healing_guard.patterns.library import PatternError

from .matcher import DATASET_ENV, BenchError, resolve_dataset, run_matcher_bench

__all__ = ["bench_app"]

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks of the guard's parts.")
err = Console(stderr=True)

#: The keys of the last stdout line under ``--json``, in this order and no others.
SUMMARY_KEYS = ("lines", "ours_lines_per_s", "re_loop_lines_per_s", "drain3_lines_per_s")


@bench_app.callback()
def _group() -> None:
    """Benchmarks of the guard's parts."""  # a callback keeps ``matcher`` a subcommand while it is alone


def _table(res: dict[str, Any]) -> Table:
    c = res["corpus"]
    t = Table(title=f"matcher benchmark: median of {res['runs']} runs, {res['patterns']} patterns, one thread",
              caption=f"corpus: {c['source']} - {c['base_lines']:,} lines x {c['repeats']} = {res['lines']:,} lines, "
                      f"{c['bytes'] / 2**20:.1f} MiB")
    t.add_column("measurement")
    t.add_column("lines (slice)", justify="right")
    t.add_column("median s", justify="right")
    t.add_column("lines/s", justify="right")
    t.add_column("ours / this", justify="right")
    o, r, d = res["ours"], res["re_loop"], res["drain3"]
    t.add_row("ours", f"{o['lines']:,} (all)", f"{o['median_s']:.3f}", f"{o['lines_per_s']:,.0f}", "")
    t.add_row("re loop", f"{r['lines']:,} (first)", f"{r['median_s']:.3f}", f"{r['lines_per_s']:,.0f}",
              f"{res['ours_vs_re_loop']:,.1f}x")
    t.add_row("drain3", f"{d['lines']:,} (first)", f"{d['median_s']:.3f}", f"{d['lines_per_s']:,.0f}",
              f"{res['ours_vs_drain3']:,.1f}x")
    return t


def _legend(res: dict[str, Any]) -> str:
    o = res["ours"]
    return (f"ours: Matcher.scan per {o['block_bytes'] / 2**20:g} MiB block of raw bytes + tokenize per hit "
            f"(max {o['max_hits_per_pattern']} hits per pattern per block, as in the product)\n"
            "re loop: decode, clean(line), re.search of every pattern per line + tokenize per hit\n"
            "drain3: decode, TemplateMiner (default config, no persistence).add_log_message(clean(line))\n"
            "lines/s = slice lines / median wall seconds; each baseline runs on the first lines of the same corpus")


def _agreement(out: Console, res: dict[str, Any]) -> None:
    a = res["agreement"]
    verdict = "[green]agree[/green]" if a["differ"] == 0 else f"[yellow]{a['differ']} differ[/yellow]"
    out.print(f"hit agreement on the first {a['lines']:,} lines ((line, pattern) pairs, uncapped matcher vs re loop): "
              f"ours {a['ours_hits']:,}, re loop {a['re_loop_hits']:,}, both {a['both']:,} - {verdict} "
              f"(only ours {a['only_ours']}, only re loop {a['only_re_loop']})", highlight=False)
    for ex in a["examples"]:
        out.print(f"  line {ex['line_index']}: {ex['pattern']} [{ex['side']}]: {ex.get('line', '')!r}",
                  highlight=False, markup=False)


@bench_app.command()
def matcher(
    dataset: Optional[Path] = typer.Option(
        None, "--dataset", help=f"folder with logs/*.log (default: ${DATASET_ENV}, else ../shared/datasets/"
                                "ci-logs-dev if it exists, else the bundled sample logs)"),
    lines: int = typer.Option(1_000_000, "--lines", min=1, help="repeat the logs until the corpus has this many lines"),
    runs: int = typer.Option(5, "--runs", min=1, help="runs of each measurement (medians are reported)"),
    baseline_lines: int = typer.Option(20_000, "--baseline-lines", min=1,
                                       help="lines of the corpus (its start) the re loop runs on"),
    drain3_lines: int = typer.Option(100_000, "--drain3-lines", min=1,
                                     help="lines of the corpus (its start) drain3 runs on"),
    pattern_file: Optional[list[Path]] = typer.Option(None, "--pattern-file",
                                                      help="extra pattern library file (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON; the last line is "
                                                       "{lines, ours_lines_per_s, re_loop_lines_per_s, drain3_lines_per_s}"),
) -> None:
    """Lines/s of the tokenizer + matcher against a per-line, per-pattern `re` loop and drain3."""
    try:
        ds = resolve_dataset(dataset)
        if ds is None:
            err.print("[yellow]no dataset found[/yellow] (--dataset, $%s or ../shared/datasets/ci-logs-dev): "
                      "using the bundled sample logs (healing_guard.samples)" % DATASET_ENV)
        res = run_matcher_bench(ds, lines=lines, runs=runs, baseline_lines=baseline_lines,
                                drain3_lines=drain3_lines, pattern_files=pattern_file or (),
                                progress=lambda msg: err.print(msg, highlight=False, markup=False))
    except (BenchError, PatternError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    # With --json stdout carries only JSON (details first, the fixed summary last); the table goes to stderr.
    out = err if as_json else Console()
    out.print(_table(res))
    out.print(_legend(res), highlight=False, markup=False)
    _agreement(out, res)
    if res["corpus"]["from_samples"]:
        out.print("[yellow]note:[/yellow] corpus generated by healing_guard.samples (no dataset found)")
    if as_json:
        print(json.dumps(res), flush=True)
        print(json.dumps({k: res[k] for k in SUMMARY_KEYS}), flush=True)
