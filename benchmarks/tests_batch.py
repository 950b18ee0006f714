"""Test results per second through one guard worker on real Apache Kafka: batches against one result per message.

A monorepo's report holds tens of thousands of test results. Producers send it in batches
(``schemas/test_batch.py``: grouped by the partition each test id hashes to) and the test agent learns a
message at once (``engine/step.py::results_batch_step``: each test's compact state written once, the facts
in a few messages). This measures it end to end, in one run, on the same data:

* **ours** - the real worker (``build_guard``: every agent, Faust tables with changelogs), one partition,
  ClickHouse off (facts still go to ``guard.facts``; a ClickHouse server writes them, not the worker), fed
  ``--reports`` reports of a synthetic monorepo of ``--tests`` tests, each report as the producers send
  it: ``encode_batches`` (messages of up to 512 KiB).
* **baseline** - the same worker fed the first ``--baseline-results`` results one per message (a
  ``TestResult`` keyed by its test id, which stays valid), as every producer sent them before.

Both sides run in a fresh child process (a Faust worker cannot restart in one process), interleaved,
``--runs`` times; medians are reported. Timing: from the test agent's first learning call to the moment
the worker's counter of learned results reaches the total (after each message's table writes and sends
were handed to the producer). The child also reads its resident memory (VmRSS) at the first learning call,
once the first report is learned (every test is tracked then) and at the end: the growth over the first
report is what the tracked tests cost (their compact states in the table, the prior's contribution per
test, and what the process keeps of the buffers it used), reported per 100,000 tests; the growth over the
later reports (the same tests again) shows whether anything else grows.

**Predictions**: learning a batch judges its tests under the prior as it stood before each 128 of them
(``flaky/model.py``, ``REFIT_EVERY``) instead of after every result. The prequential replay (P(fail)
predicted before each result is learned) is run here one result at a time and in batches of one build
each, on the flakiness dataset (``--dataset``, FlakeFlagger reruns as in benchmarks/flakiness.py) when
it is there, else on this benchmark's synthetic reports; the two log-losses are reported side by side.

    .venv/bin/python benchmarks/tests_batch.py                   # 100k tests x 3 reports, 3 runs
    .venv/bin/python benchmarks/tests_batch.py --runs 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from load import cpu_seconds  # noqa: E402
from pipeline import (RESULT_MARKER, _Clock, _run_worker, _wait_until, kafka_broker, produce,  # noqa: E402
                      run_child_process)

GOAL_RESULTS_PER_S = 50_000


def bench_settings(bootstrap: str, prefix: str, app_id: str) -> Any:
    from healing_guard.settings import Settings

    return Settings(broker_url=f"kafka://{bootstrap}", partitions=1, app_id=app_id, topic_prefix=prefix,
                    facts_enabled=False, test_grace_seconds=0.0, log_level="warning", status_file="")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------------------------------ data


def monorepo(tests: int, reports: int, seed: int) -> list[list[Any]]:
    """``reports`` runs of a synthetic monorepo of ``tests`` tests (services, modules, classes; generic names):
    most tests never fail, 2 % are flaky at 5-40 %, 0.2 % fail every time. One job per report."""
    from healing_guard.schemas import TestResult

    rng = random.Random(seed)
    ids = [f"svc{i % 40}/tests/test_mod{i % 1000}.py::TestCase{i % 4000}::test_{i}" for i in range(tests)]
    rates = [rng.uniform(0.05, 0.4) if rng.random() < 0.02 else (1.0 if rng.random() < 0.002 else 0.0)
             for _ in ids]
    out = []
    for r in range(reports):
        ts = 1_767_225_600.0 + 3600 * r
        outcomes = ["failed" if rng.random() < p else "passed" for p in rates]
        failed = outcomes.count("failed")
        out.append([TestResult(provider="github", owner="acme", repo="monorepo", job_id=str(1000 + r), test_id=t,
                               outcome=o, duration_s=0.01, ts=ts, head_sha=f"{r:040x}", failed_in_run=failed,
                               message="AssertionError: expected 200, got 503" if o == "failed" else None)
                    for t, o in zip(ids, outcomes)])
    return out


def batch_messages(reports: list[list[Any]], partitions: int = 1) -> list[tuple[str, bytes, bytes]]:
    from healing_guard.schemas.test_batch import encode_batches

    return [("tests", key, value) for rep in reports for _p, key, value in encode_batches(rep, partitions)]


def single_messages(reports: list[list[Any]], n: int) -> list[tuple[str, bytes, bytes]]:
    flat = [r for rep in reports for r in rep][:n]
    return [("tests", r.test_id.encode(), r.to_json()) for r in flat]


# ------------------------------------------------------------------------------------------ child


def child(args: argparse.Namespace) -> dict[str, Any]:
    from healing_guard.engine.core import Engine
    from healing_guard.streams.worker import build_guard

    settings = bench_settings(args.bootstrap, args.prefix, args.app_id)
    clock = _Clock()
    mem: dict[str, float] = {}

    class TimedEngine(Engine):
        def learn_tests(self, models: Any, results: Any, **kw: Any) -> Any:
            if clock.first is None:
                mem["start"] = rss_mb()
                # CPU from here: this process, its main thread (the event loop, where the agents run), the broker
                mem.update(cpu_process=cpu_seconds(os.getpid()), cpu_loop=time.thread_time(),
                           cpu_broker=cpu_seconds(args.broker_pid))
            clock.start()
            return super().learn_tests(models, results, **kw)

    engine = TimedEngine(settings)
    engine.retry_context  # noqa: B018 - built on the first test result (SciPy's import, ~1 s): not timed
    guard = build_guard(settings, engine=engine)
    result: dict[str, Any] = {"kind": args.child, "ok": False}

    @guard.app.task
    async def drive() -> None:
        try:
            st = guard.stats

            def progress() -> bool:  # RSS once the first report is learned: every test is tracked
                if "first_report" not in mem and st.tests >= args.first_report:
                    mem["first_report"] = rss_mb()
                return st.tests >= args.expect

            ok = await _wait_until(progress, args.timeout)
            done = time.perf_counter()
            if clock.first:
                span = done - clock.first
                result["cores"] = {
                    "worker": round((cpu_seconds(os.getpid()) - mem["cpu_process"]) / span, 2),
                    "worker_event_loop": round((time.thread_time() - mem["cpu_loop"]) / span, 2),
                    "broker": round((cpu_seconds(args.broker_pid) - mem["cpu_broker"]) / span, 2)}
            result.update(ok=ok, results=st.tests, messages=st.test_messages, dead_letters=st.dead_letters,
                          seconds=done - clock.first if clock.first else float("nan"),
                          rss_start_mb=mem.get("start"), rss_first_report_mb=mem.get("first_report"),
                          rss_end_mb=rss_mb())
            if not ok:
                result["error"] = f"timed out after {args.timeout:.0f}s: results {st.tests}/{args.expect}"
        except Exception as exc:
            result["error"] = repr(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    _run_worker(guard.app, settings.log_level)
    return result


def run_child(args: argparse.Namespace) -> int:
    try:
        result = child(args)
    except BaseException as exc:  # report, never hang the parent
        result = {"kind": args.child, "ok": False, "error": repr(exc)}
    if result.get("ok") and result.get("seconds", 0) > 0:
        result["results_per_s"] = result["results"] / result["seconds"]
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0 if result.get("ok") else 1


def spawn(kind: str, bootstrap: str, prefix: str, app_id: str, expect: int, first_report: int,
          timeout: float, broker_pid: int | None = None) -> dict[str, Any]:
    return run_child_process(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--bootstrap", bootstrap, "--prefix", prefix,
         "--app-id", app_id, "--expect", str(expect), "--first-report", str(first_report), "--timeout", str(timeout),
         *(["--broker-pid", str(broker_pid)] if broker_pid else [])],
        kind, timeout)


# ------------------------------------------------------------------------------------------ predictions


def _builds(rows: Sequence[tuple[str, bool]]) -> list[list[tuple[str, bool]]]:
    """Rows cut into builds: a build ends where a test comes again."""
    out: list[list[tuple[str, bool]]] = []
    cur: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for t, f in rows:
        if t in seen:
            out.append(cur)
            cur, seen = [], set()
        cur.append((t, f))
        seen.add(t)
    if cur:
        out.append(cur)
    return out


def replay_log_loss(builds: list[list[tuple[str, bool]]]) -> dict[str, Any]:
    """Prequential log-loss and AUC, one result at a time and one build per batch, on the same rows."""
    from healing_guard.flaky.model import FlakePrior, TestModel
    from healing_guard.flaky.prequential import Metrics, Prediction

    out: dict[str, Any] = {}
    for mode in ("one_at_a_time", "batches"):
        prior, models, m = FlakePrior(), {}, Metrics()
        t0 = time.perf_counter()
        for build in builds:
            keys = [t for t, _ in build]
            fails = [f for _, f in build]
            ms = [models.get(t) or models.setdefault(t, TestModel()) for t in keys]
            after = [x.runs > 0 and x.last_failed for x in ms]
            if mode == "batches":
                ps = prior.learn_many(keys, ms, fails).tolist()
            else:
                ps = [prior.learn(k, x, f) for k, x, f in zip(keys, ms, fails)]
            for k, f, p, a in zip(keys, fails, ps, after):
                m.add(Prediction(k, f, float(p), a))
        r = m.result()
        out[mode] = {"log_loss": r["log_loss"], "brier": r["brier"], "auc": r["auc"],
                     "log_loss_after_failure": r["log_loss_after_failure"],
                     "seconds": round(time.perf_counter() - t0, 2)}
    one, many = out["one_at_a_time"]["log_loss"], out["batches"]["log_loss"]
    out["log_loss_change"] = (many - one) / one
    out["rows"] = sum(len(b) for b in builds)
    return out


def prediction_rows(dataset: Path | None, reports: list[list[Any]]) -> tuple[str, list[list[tuple[str, bool]]]]:
    if dataset is not None and (dataset / "test_results.csv").is_file():
        from flakiness import build_stream, load_tests

        rows, _design = build_stream(load_tests(dataset), 100, 3000, 0)
        return f"{dataset.name} (benchmarks/flakiness.py's stream)", _builds(rows)
    return "this benchmark's synthetic reports", [[(r.test_id, r.outcome == "failed") for r in rep] for rep in reports]


# ------------------------------------------------------------------------------------------ parent


def in_process(msgs: list[tuple[str, bytes, bytes]], tests: int) -> dict[str, float]:
    """The test agent's own work alone, in this process, no Kafka: each message decoded and redacted as the
    agent does and through ``results_batch_step`` with a dict for the table (its writes applied). What one
    core does when it does nothing else: the ceiling the worker's rate is compared with."""
    from healing_guard.engine.core import Engine
    from healing_guard.engine.step import StoreMany, results_batch_step
    from healing_guard.patterns.tokenize import redact_many
    from healing_guard.schemas.test_batch import decode_tests

    engine = Engine(bench_settings("127.0.0.1:1", "unused-", "unused"))
    engine.retry_context  # noqa: B018 - built on the first test result (SciPy's import): not timed
    table: dict[bytes, bytes | None] = {}
    n = 0
    started = time.perf_counter()
    first = float("nan")
    for offset, (_topic, key, value) in enumerate(msgs):
        results = decode_tests(value, key, clean=redact_many).results
        for e in results_batch_step(engine, table, [(r.test_id.encode(), r) for r in results], partition=0,
                                    offset=offset):
            if isinstance(e, StoreMany):
                table.update(e.items)
        n += len(results)
        if n >= tests and first != first:
            first = time.perf_counter() - started
    seconds = time.perf_counter() - started
    return {"results": n, "tests": len(table), "results_per_s": n / seconds, "first_report_per_s": tests / first,
            "later_reports_per_s": (n - tests) / (seconds - first) if n > tests else float("nan")}


async def setup(settings: Any, msgs: list[tuple[str, bytes, bytes]]) -> list[str]:
    from healing_guard.streams.topics import ensure_topics
    from healing_guard.topics import internal_topics, topic_specs

    await ensure_topics(settings)
    await produce(settings.bootstrap, msgs, {"tests": settings.topics.tests}, lambda n: None)
    return [*topic_specs(settings), *internal_topics(settings)]


def measure(args: argparse.Namespace, bootstrap: str, sides: list[tuple[str, list[Any], int]],
            results: dict[str, list[dict[str, Any]]], say: Any, broker_pid: int | None = None) -> bool:
    """Every run of every side, interleaved, into ``results``; False (said why) when one failed."""
    from healing_guard.brokers import delete_topics

    for run in range(1, args.runs + 1):
        for kind, msgs, expect in sides:
            rid = uuid.uuid4().hex[:8]
            prefix, app_id = f"bench-{rid}-", f"bench-{kind}-{rid}"
            settings = bench_settings(bootstrap, prefix, app_id)
            topics = asyncio.run(setup(settings, msgs))
            res = spawn(kind, bootstrap, prefix, app_id, expect, args.tests, args.timeout, broker_pid)
            asyncio.run(delete_topics(bootstrap, topics))
            if not res.get("ok"):
                say(f"run {run} {kind} failed: {res.get('error')}\n{res.get('stderr', '')}")
                return False
            if res.get("dead_letters"):
                say(f"run {run} {kind}: {res['dead_letters']} dead letters")
                return False
            results[kind].append(res)
            say(f"run {run} {kind}: {res['results']:,} results in {res['messages']:,} messages, "
                f"{res['seconds']:.2f}s = {res['results_per_s']:,.0f} results/s; RSS {res['rss_start_mb']:.0f}"
                f" -> {res['rss_first_report_mb'] or float('nan'):.0f} -> {res['rss_end_mb']:.0f} MB; cores: "
                + ", ".join(f"{k} {v:.2f}" for k, v in res.get("cores", {}).items()))
    return True


def median_cores(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Cores used while measuring (each part's median over ``runs``): the worker process, its event-loop
    thread and the broker, on the same machine."""
    parts = [r["cores"] for r in runs if r.get("cores")]
    return {k: round(statistics.median(p[k] for p in parts), 2) for k in (parts[0] if parts else {})}


def run_parent(args: argparse.Namespace) -> int:
    from healing_guard.brokers import BrokerError

    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    t_start = time.monotonic()
    reports = monorepo(args.tests, args.reports, args.seed)
    ours = batch_messages(reports)
    n_ours = sum(len(r) for r in reports)
    base = single_messages(reports, args.baseline_results)
    say(f"ours: {args.reports} reports of {args.tests:,} tests = {n_ours:,} results in {len(ours):,} messages "
        f"(batches, {sum(len(v) for _, _, v in ours) / n_ours:.0f} bytes per result)")
    say(f"baseline: the first {len(base):,} results, one per message "
        f"({sum(len(v) for _, _, v in base) / max(len(base), 1):.0f} bytes per result)")
    what, builds = prediction_rows(args.dataset, reports)
    say(f"prequential replay on {what}: one at a time and in batches ...")
    pred = replay_log_loss(builds)
    say(f"  log-loss one at a time {pred['one_at_a_time']['log_loss']:.5f}, in batches "
        f"{pred['batches']['log_loss']:.5f} ({100 * pred['log_loss_change']:+.2f} %), {pred['rows']:,} rows")

    alone = [in_process(ours, args.tests) for _ in range(args.runs)]
    alone_rate = statistics.median(a["results_per_s"] for a in alone)
    alone_each = " · ".join(f"{a['results_per_s']:,.0f}" for a in alone)
    say(f"the test agent's work alone, in one process without Kafka: {alone_rate:,.0f} results/s "
        f"({alone_each}; first report "
        f"{statistics.median(a['first_report_per_s'] for a in alone):,.0f}/s, later reports "
        f"{statistics.median(a['later_reports_per_s'] for a in alone):,.0f}/s)")

    results: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
    try:
        with kafka_broker("bench-tests-") as (bootstrap, _data_dir, broker):
            say(f"Apache Kafka on {bootstrap}")
            if not measure(args, bootstrap, [("ours", ours, n_ours), ("baseline", base, len(base))], results, say,
                           broker.pid):
                return 1
    except BrokerError as exc:
        say(f"cannot start Kafka: {exc}")
        return 1

    o = statistics.median(r["results_per_s"] for r in results["ours"])
    b = statistics.median(r["results_per_s"] for r in results["baseline"])
    # the first report tracks every test; later reports update the same tests (their growth: churn)
    growth = statistics.median(r["rss_first_report_mb"] - r["rss_start_mb"] for r in results["ours"])
    later = statistics.median(r["rss_end_mb"] - r["rss_first_report_mb"] for r in results["ours"])
    per_100k = growth * 100_000 / args.tests
    def each(kind: str) -> str:
        return " · ".join(f"{r['results_per_s']:,.0f}" for r in results[kind])

    say("\n| side | results | messages | results/s (median) | runs |\n|---|---|---|---|---|")
    say(f"| batches | {n_ours:,} | {len(ours):,} | {o:,.0f} | {each('ours')} |")
    say(f"| one result per message | {len(base):,} | {len(base):,} | {b:,.0f} | {each('baseline')} |")
    say(f"| ratio | | | **{o / b:.1f}x** | |")
    say(f"| the agent's work alone, no Kafka | {n_ours:,} | {len(ours):,} | {alone_rate:,.0f} | "
        f"{alone_each} |")
    say(f"goal >= {GOAL_RESULTS_PER_S:,} results/s on one worker: {'met' if o >= GOAL_RESULTS_PER_S else 'NOT met'}")
    cores = median_cores(results["ours"])
    say("cores while the batches were learned (median): " + ", ".join(f"{k} {v:.2f}" for k, v in cores.items())
        + f" (this machine: {os.cpu_count()})")
    say(f"RSS growth while the first report is learned: {growth:.0f} MB for {args.tests:,} tracked tests = "
        f"{per_100k:.0f} MB per 100,000 tests; over the {args.reports - 1} later report(s) of the same tests: "
        f"{later:+.0f} MB (wall time {time.monotonic() - t_start:.0f}s)")
    if args.json:
        print(json.dumps({
            "tests": args.tests, "reports": args.reports, "results": n_ours, "messages": len(ours),
            "baseline_results": len(base), "ours_results_per_s": round(o, 1), "baseline_results_per_s": round(b, 1),
            "ratio": round(o / b, 2), "goal_results_per_s": GOAL_RESULTS_PER_S, "goal_met": o >= GOAL_RESULTS_PER_S,
            "rss_growth_mb": round(growth, 1), "rss_mb_per_100k_tests": round(per_100k, 1),
            "rss_later_reports_mb": round(later, 1), "runs": args.runs,
            "ours_runs": [round(r["results_per_s"], 1) for r in results["ours"]],
            "baseline_runs": [round(r["results_per_s"], 1) for r in results["baseline"]],
            "in_process_results_per_s": round(alone_rate, 1), "cores_ours": cores,
            "in_process_runs": [{k: round(v, 1) for k, v in a.items() if k.endswith("_per_s")} for a in alone],
            "predictions": {"rows_from": what, **pred}}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tests", type=int, default=100_000, help="tests in the synthetic monorepo")
    p.add_argument("--reports", type=int, default=3, help="reports (runs) of all its tests")
    p.add_argument("--baseline-results", type=int, default=20_000, help="results of the one-per-message baseline")
    p.add_argument("--runs", type=int, default=3, help="measurements of each side; the median is reported")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "flaky-reruns-dev",
                   help="FlakeFlagger reruns for the prediction check (else the synthetic reports)")
    p.add_argument("--timeout", type=float, default=300.0, help="give up on one measurement after this many seconds")
    p.add_argument("--json", action="store_true", help="progress to stderr, one JSON object as the last stdout line")
    p.add_argument("--child", choices=("ours", "baseline"), help=argparse.SUPPRESS)
    p.add_argument("--bootstrap", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    p.add_argument("--app-id", help=argparse.SUPPRESS)
    p.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    p.add_argument("--first-report", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--broker-pid", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return run_child(args)
    if min(args.tests, args.reports, args.baseline_results, args.runs) < 1:
        p.error("--tests, --reports, --baseline-results and --runs must be >= 1")
    if math.isnan(args.timeout) or args.timeout <= 0:
        p.error("--timeout must be > 0")
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
