"""Every benchmark with its baselines, in one command (``make bench``), and one results table.

Runs each command of :data:`BENCHMARKS` in turn (their own output streams through), takes the JSON object each
prints as its last stdout line, and prints one markdown table with the machine described; writes it to
``benchmarks/results/bench.md`` and everything (machine, every benchmark's JSON, wall times) to
``benchmarks/results/bench.json``. A benchmark that fails is reported as failed and the others still run;
the exit status is then 1.

    .venv/bin/python benchmarks/run_all.py                    # all of them, ~5 minutes on 2 cores
    .venv/bin/python benchmarks/run_all.py --only ingest memory
    .venv/bin/python benchmarks/run_all.py --skip pipeline latency
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Bench:
    name: str
    argv: tuple[str, ...]
    what: str  # one line: what it measures
    #: a data folder it needs (the shared evaluation datasets are not in the repository): skipped, and
    #: said so, when it is missing
    needs: str | None = None


#: The benchmarks ``make bench`` runs, in this order. Adding one is one line here (plus, for its row in the
#: table, a function in ROWS; without one its JSON still lands in bench.json).
BENCHMARKS: list[Bench] = [
    Bench("matcher", (str(BIN / "guard"), "bench", "matcher", "--json"),
          "tokenizer + Hyperscan matcher vs a per-pattern re loop and Drain3"),
    Bench("pipeline", (PY, "benchmarks/pipeline.py", "--json"),
          "log lines/s through one worker on Apache Kafka vs one line per message"),
    Bench("latency", (PY, "benchmarks/latency.py", "--json"),
          "completion event -> command on Apache Kafka at half the 300k lines/s goal vs at 10k lines/s"),
    Bench("ingest", (PY, "benchmarks/ingest.py", "--json"),
          "ClickHouse (chDB) rows/s through FactWriter batches vs one INSERT per row"),
    Bench("memory", (PY, "benchmarks/memory.py", "--json"),
          "bytes per 1,000 tracked tests and per 1,000 open jobs vs full outcome histories"),
    Bench("tests_batch", (PY, "benchmarks/tests_batch.py", "--json"),
          "test results/s through one worker on Apache Kafka in batches vs one result per message"),
    Bench("scaling", (PY, "benchmarks/scaling.py", "--json"),
          "log lines/s and test results/s with 1, 2 and 4 workers on one Kafka broker, 4 partitions"),
    Bench("accuracy", (PY, "benchmarks/accuracy.py", "--json"),
          "diagnosis accuracy on 73 labelled real CI logs", needs="../shared/datasets/ci-logs-dev"),
    Bench("flakiness", (PY, "benchmarks/flakiness.py", "--dataset", "../shared/datasets/flaky-reruns-dev", "--json"),
          "per-test flakiness models vs Beta, global rate and the 30 % rule on FlakeFlagger reruns",
          needs="../shared/datasets/flaky-reruns-dev"),
    Bench("mttg", (PY, "benchmarks/mttg.py", "--json"),
          "fleet simulation: mean time to green, wasted retries, hidden regressions; guard vs none vs retry-2"),
]


# ------------------------------------------------------------------------------------------ machine


def machine() -> dict[str, Any]:
    """CPU model and count, RAM, OS, Python and Kafka version of this machine."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "os": f"{platform.system()} {platform.release()}"}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        info["cpu"] = models[0].strip() if models else platform.processor() or "unknown"
        mhz = re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
        if mhz:
            info["cpu_mhz"] = round(float(mhz[0]))
    except OSError:
        info["cpu"] = platform.processor() or "unknown"
    try:
        kb = int(re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))  # type: ignore[union-attr]
        info["ram_gib"] = round(kb / 1024 / 1024, 1)
    except (OSError, AttributeError):
        info["ram_gib"] = None
    try:
        m = re.search(r"^KAFKA_VERSION=(\S+)", (ROOT / "infra/kafka/kafka.sh").read_text(), re.M)
        info["kafka"] = f"Apache Kafka {m.group(1)} (KRaft, one node, same machine)" if m else "unknown"
    except OSError:
        info["kafka"] = "unknown"
    try:
        from importlib.metadata import version

        info["faust"] = version("faust-streaming")
        info["chdb"] = version("chdb")
    except Exception:
        pass
    return info


def describe_machine(m: dict[str, Any]) -> str:
    cpu = f"{m.get('cpu', 'unknown')}" + (f" @ {m['cpu_mhz']} MHz" if m.get("cpu_mhz") else "")
    parts = [f"{m.get('cpus')} × {cpu}", f"{m.get('ram_gib')} GiB RAM", m.get("os", ""), f"Python {m.get('python')}",
             m.get("kafka", "")]
    if m.get("faust"):
        parts.append(f"faust-streaming {m['faust']}")
    if m.get("chdb"):
        parts.append(f"chDB {m['chdb']}")
    return ", ".join(p for p in parts if p)


# ------------------------------------------------------------------------------------------ table


def fmt(x: Any, digits: int = 0) -> str:
    """Thousands separators; '—' for missing."""
    if x is None or (isinstance(x, float) and x != x):
        return "—"
    if isinstance(x, (int, float)):
        return f"{x:,.{digits}f}"
    return str(x)


def ratio(a: Any, b: Any) -> str:
    try:
        return f"{a / b:,.0f}×" if a / b >= 10 else f"{a / b:,.1f}×"
    except (TypeError, ZeroDivisionError):
        return "—"


Row = tuple[str, str, str, str, str, str]  # benchmark, measure, ours, baseline, ours ÷ baseline, goal


def rows_matcher(r: dict[str, Any]) -> list[Row]:
    o = r["ours_lines_per_s"]
    return [("matcher", "lines/s, one core (median of 5)", fmt(o), f"`re` loop {fmt(r['re_loop_lines_per_s'])}",
             ratio(o, r["re_loop_lines_per_s"]), f"≥ 20× `re` loop: {'met' if o >= 20 * r['re_loop_lines_per_s'] else 'NOT met'}; "
             f"≥ 2M lines/s: {'met' if o >= 2e6 else 'NOT met'}"),
            ("matcher", "lines/s vs Drain3", fmt(o), f"Drain3 {fmt(r['drain3_lines_per_s'])}",
             ratio(o, r["drain3_lines_per_s"]), "")]


def rows_pipeline(r: dict[str, Any]) -> list[Row]:
    o = r["ours_lines_per_s"]
    return [("pipeline", f"log lines/s, one worker, real Kafka (median of {r['runs']})", f"**{fmt(o)}**",
             f"one line per message {fmt(r['baseline_lines_per_s'])}", ratio(o, r["baseline_lines_per_s"]),
             f"≥ 300,000: {'met' if o >= 300_000 else 'NOT met'}")]


def rows_latency(r: dict[str, Any]) -> list[Row]:
    lo, hi = r["load"], r["baseline"]
    return [("latency", f"completion → command, p50 / p99 / max ms at {fmt(lo['achieved_lines_per_s'])} lines/s "
             f"({sum(lo['commands_per_run'])} jobs, median of {r['runs']})",
             f"{fmt(lo['p50_ms'], 1)} / **{fmt(lo['p99_ms'], 1)}** / {fmt(lo['max_ms'], 1)} "
             f"(p99 per run: {' · '.join(fmt(x, 0) for x in lo.get('p99_ms_runs', []))})",
             f"at {fmt(hi['achieved_lines_per_s'])} lines/s: {fmt(hi['p50_ms'], 1)} / {fmt(hi['p99_ms'], 1)} / "
             f"{fmt(hi['max_ms'], 1)}", "—",
             f"p99 < {fmt(r['goal_p99_ms'])} ms at half of 300k lines/s: {'met' if r['goal_met'] else 'NOT met'}")]


def rows_ingest(r: dict[str, Any]) -> list[Row]:
    return [("ingest", f"ClickHouse (chDB) rows/s, FactWriter batches of {fmt(r['batch_size'])} (median of {r['runs']})",
             f"**{fmt(r['ours_rows_per_s'])}**", f"one INSERT per row {fmt(r['baseline_rows_per_s'])}",
             ratio(r["ours_rows_per_s"], r["baseline_rows_per_s"]), "")]


def rows_memory(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for t in r["tests"]:
        out.append(("memory", f"KB per 1,000 tracked tests ({fmt(t['tests'])} tests × {t['history']} results): "
                    "table value (compact) / live objects / shared prior",
                    f"**{fmt(t['table_kb_per_1k'])}** / {fmt(t['live_kb_per_1k'])} / {fmt(t['shared_prior_kb_per_1k'])}",
                    f"full history: {fmt(t['naive_pickled_kb_per_1k'])} / {fmt(t['naive_live_kb_per_1k'])}",
                    f"{ratio(t['table_kb_per_1k'], t['naive_pickled_kb_per_1k'])} pickled, "
                    f"{ratio(t['live_kb_per_1k'], t['naive_live_kb_per_1k'])} live",
                    f"constant per test; a full history outgrows it after ~{fmt(t.get('naive_break_even_results'))} "
                    "results"))
    w = r["windows"]
    out.append(("memory", "KB per 1,000 open jobs: window state as stored / live (largest point of each job)",
                f"{fmt(w['window_kb_per_1k_open_jobs'])} / {fmt(w['window_live_kb_per_1k_open_jobs'])}",
                "—", "—", f"bounded: max {fmt(w['window_bytes_max'])} B per job"))
    return out


def rows_tests_batch(r: dict[str, Any]) -> list[Row]:
    o, b = r["ours_results_per_s"], r["baseline_results_per_s"]
    p = r["predictions"]
    return [("tests_batch", f"test results/s, one worker, real Kafka ({fmt(r['tests'])} tests × {r['reports']} reports "
             f"in {fmt(r['messages'])} messages, median of {r['runs']})", f"**{fmt(o)}**",
             f"one result per message {fmt(b)}", ratio(o, b),
             f"≥ {fmt(r['goal_results_per_s'])}: {'met' if r['goal_met'] else 'NOT met'}"),
            *([("tests_batch", "the test agent's work alone: decode, learn, encode, in one process, no Kafka",
                f"{fmt(r['in_process_results_per_s'])}", f"worker on Kafka {fmt(o)}",
                ratio(r["in_process_results_per_s"], o), "the ceiling of one core")]
              if "in_process_results_per_s" in r else []),
            ("tests_batch", "RSS per 100,000 tracked tests (MB); later reports of the same tests",
             f"{fmt(r['rss_mb_per_100k_tests'])}", "—", "—", f"{r['rss_later_reports_mb']:+.0f} MB"),
            ("tests_batch", f"prequential log-loss in batches ({fmt(p['rows'])} rows)",
             f"{p['batches']['log_loss']:.5f}", f"one at a time {p['one_at_a_time']['log_loss']:.5f}",
             f"{p['log_loss_change']:+.2%}", "unchanged")]


def rows_scaling(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for key, what in (("log_lines", "log lines/s"), ("test_results", "test results/s")):
        rates, up = r[key], r["speedup"][key]
        ns = sorted(rates, key=int)
        out.append(("scaling", f"{what} with {', '.join(ns)} workers, {r['partitions']} partitions, one broker, "
                    f"{r['cores']} cores (median of {r['runs']})",
                    " / ".join(f"{fmt(rates[n])}" for n in ns), f"1 worker {fmt(rates[ns[0]])}",
                    " / ".join(f"{up[n]:.2f}×" for n in ns), "as measured (2 cores: the broker shares them)"))
    return out


def rows_accuracy(r: dict[str, Any]) -> list[Row]:
    return [("accuracy", f"macro-F1 on {r['logs']} labelled real logs (accuracy {r['accuracy']:.3f})",
             f"**{r['macro_f1']:.3f}**", "—", "—", f"≥ 0.85: {'met' if r['macro_f1'] >= 0.85 else 'NOT met'}"),
            ("accuracy", f"precision of automatic actions ({r['automatic_actions']} actions)",
             f"**{r['automatic_action_precision']:.3f}**", "—", "—",
             f"≥ 0.95: {'met' if r['automatic_action_precision'] >= 0.95 else 'NOT met'}")]


def rows_mttg(r: dict[str, Any]) -> list[Row]:
    red, w, h = r["mttg_reduction_vs_none"], r["wasted_minutes_ratio_vs_retry_all"], r["hidden_regressions"]
    return [("mttg", "fleet simulation (3 seeds): MTTG reduction vs no healing", f"**{red:.1%}**", "no healing",
             "—", f"≥ 65 %: {'met' if red >= 0.65 else 'NOT met'}"),
            ("mttg", "wasted retry minutes, guard ÷ blind retry-2", f"**{w:.2f}**", "blind retry-2", f"{w:.2f}×",
             f"≤ 0.5: {'met' if w <= 0.5 else 'NOT met'}"),
            ("mttg", "hidden regressions (real failures retried to green)", f"**{h}**", "—", "—",
             f"0: {'met' if h == 0 else 'NOT met'}")]


def rows_flakiness(r: dict[str, Any]) -> list[Row]:
    m, g = r["methods"], r.get("goals", {})
    ll = g.get("log_loss_vs_beta", {})
    auc = g.get("auc_after_failure", {})
    return [("flakiness", f"log-loss, {fmt(r['design']['rows'])} test runs", f"**{m['ours']['log_loss']:.4f}**",
             f"Beta(1,1) {m['beta(1,1)']['log_loss']:.4f}", f"{ll.get('value', float('nan')):.2f}×",
             f"≤ 0.90× Beta: {'met' if ll.get('met') else 'NOT met'}"),
            ("flakiness", "AUC right after a failure", f"{m['ours']['auc_after_failure']:.3f}",
             f"Beta(1,1) {m['beta(1,1)']['auc_after_failure']:.3f}; oracle {m['oracle']['auc_after_failure']:.3f}", "—",
             f"≥ 0.95: {'met' if auc.get('met') else 'NOT met'}")]


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "matcher": rows_matcher, "pipeline": rows_pipeline, "latency": rows_latency, "ingest": rows_ingest,
    "memory": rows_memory, "tests_batch": rows_tests_batch, "scaling": rows_scaling, "accuracy": rows_accuracy, "flakiness": rows_flakiness, "mttg": rows_mttg,
}
HEADERS = ("benchmark", "measure", "ours", "baseline", "ours ÷ baseline", "goal")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; ``|`` inside cells is escaped."""
    def cell(s: Any) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def results_table(results: dict[str, dict[str, Any]]) -> str:
    """One table over every benchmark's result (``{"ok", "result", "seconds", "error"}`` per name)."""
    rows: list[Sequence[str]] = []
    for name, res in results.items():
        if not res.get("ok"):
            rows.append((name, "failed", res.get("error", "?"), "", "", ""))
            continue
        if res.get("skipped"):
            rows.append((name, "skipped", res["skipped"], "", "", ""))
            continue
        fn = ROWS.get(name)
        if fn is None:
            rows.append((name, "see bench.json", "", "", "", ""))
            continue
        try:
            rows.extend(fn(res["result"]))
        except (KeyError, TypeError, ValueError) as exc:
            rows.append((name, f"unexpected result ({exc!r}), see bench.json", "", "", "", ""))
    return markdown_table(HEADERS, rows)


def render(results: dict[str, dict[str, Any]], m: dict[str, Any], started: str) -> str:
    times = ", ".join(f"{n} {r.get('seconds', 0):.0f} s" for n, r in results.items())
    return (f"## Benchmark results ({started})\n\nMachine: {describe_machine(m)}.\n\n{results_table(results)}\n\n"
            f"Wall time per benchmark: {times}. Command: `make bench` (`benchmarks/run_all.py`).\n")


# ------------------------------------------------------------------------------------------ running


def last_json(stdout: str) -> dict[str, Any] | None:
    """The last line of ``stdout`` that is a JSON object (benchmarks print theirs last)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def run_one(b: Bench, timeout: float) -> dict[str, Any]:
    print(f"\n=== {b.name}: {b.what}\n$ {' '.join(b.argv)}", flush=True)
    if b.needs and not (ROOT / b.needs).is_dir():
        print(f"skipped: {b.needs} is not here (the evaluation datasets live beside the repository)", flush=True)
        return {"ok": True, "skipped": f"{b.needs} not found", "seconds": 0.0}
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(b.argv, cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                bufsize=1)
    except OSError as exc:
        return {"ok": False, "error": f"cannot start: {exc}", "seconds": 0.0}
    out: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:  # stream it through, keep it for the JSON
        out.append(line)
        sys.stdout.write(line)
        sys.stdout.flush()
        if time.monotonic() - t0 > timeout:
            proc.kill()
            break
    rc = proc.wait()
    seconds = time.monotonic() - t0
    result = last_json("".join(out))
    if rc != 0 or result is None:
        return {"ok": False, "error": f"exit {rc}" + ("" if result is not None else ", no JSON result"),
                "seconds": seconds}
    return {"ok": True, "result": result, "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [b.name for b in BENCHMARKS]
    p.add_argument("--only", nargs="+", choices=names, help="run just these")
    p.add_argument("--skip", nargs="+", choices=names, default=[], help="leave these out")
    p.add_argument("--out", type=Path, default=HERE / "results", help="where bench.md and bench.json go")
    p.add_argument("--timeout", type=float, default=900.0, help="give up on one benchmark after this many seconds")
    args = p.parse_args(argv)
    chosen = [b for b in BENCHMARKS if (not args.only or b.name in args.only) and b.name not in args.skip]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.monotonic()
    m = machine()
    results = {b.name: run_one(b, args.timeout) for b in chosen}
    md = render(results, m, started)
    print("\n" + md, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.md").write_text(md)
    (args.out / "bench.json").write_text(json.dumps(
        {"started": started, "machine": m, "wall_seconds": round(time.monotonic() - t0, 1),
         "commands": {b.name: list(b.argv) for b in chosen}, "results": results}, indent=1) + "\n")
    print(f"wrote {args.out / 'bench.md'} and {args.out / 'bench.json'} (total {time.monotonic() - t0:.0f} s)")
    return 0 if all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
