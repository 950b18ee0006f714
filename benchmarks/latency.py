"""Diagnosis latency on real Apache Kafka: from a failed job's completion event to its command.

One real worker (``build_guard``, as ``benchmarks/pipeline.py`` runs it: ingest + tests agents, Faust tables
with changelogs, one partition, facts disabled, ``test_grace_seconds=0`` because ``ci.tests`` is not fed)
runs in a child process. The parent is the forwarder and the executor at once: it produces the sample
traffic (``ci.jobs`` started, ``ci.logs`` chunks of 500 lines, ``ci.jobs`` completed) at a steady rate of
log lines per second, and consumes ``guard.actions``. For every failed job, latency = the time the command
keyed by that job arrives at the parent's consumer minus the time the parent handed the job's completion
event to its producer (``perf_counter`` in one process, so one clock). It includes the producer's batching,
the broker, the worker's fetch, any backlog of chunks still queued ahead of the job in the worker, the
diagnosis and plan, the command's produce, and the parent's fetch of it.

Phases per run, in one worker:

* warm-up: a few jobs sent at once; waits for their commands (group join, table recovery, first fetch);
* ``baseline``: ``--baseline-rate`` lines/s (default 10,000: the worker is nearly idle), the fixed cost of
  the path with no queueing;
* ``load``: ``--lines-per-second`` (default 150,000 = half of the 300k lines/s goal; ``run_all.py`` passes
  the goal load too), the number the goal is about: p99 < 200 ms.

Each run uses fresh topics and a fresh child; medians over runs of each phase's p50 / p99 / max.

    .venv/bin/python benchmarks/latency.py --runs 3 --json
    .venv/bin/python benchmarks/latency.py --lines-per-second 113000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GOAL_LINES_PER_S = 300_000
GOAL_P99_MS = 200.0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks (numpy's default).

    NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError("q must be within [0, 100]")
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(latencies_s: Sequence[float]) -> dict[str, float]:
    """count, p50, p99 and max in milliseconds."""
    ms = [x * 1000.0 for x in latencies_s]
    return {"count": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms) if ms else float("nan")}


# ------------------------------------------------------------------------------------------ child


def run_child(args: argparse.Namespace) -> int:
    """The real worker until SIGTERM (the parent sends it when the phases are done)."""
    sys.path.insert(0, str(HERE))
    import pipeline as pl

    from healing_guard.streams.worker import build_guard

    settings = pl.bench_settings(args.bootstrap, args.prefix, args.app_id)
    guard = build_guard(settings)
    pl._run_worker(guard.app, settings.log_level)
    return 0


# ------------------------------------------------------------------------------------------ data


@dataclass
class Phase:
    name: str
    rate: float  # log lines per second
    messages: list[tuple[str, bytes, bytes, int, bool]]  # (logical topic, key, value, lines, completes a failed job)
    lines: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    missing: int = 0
    achieved_rate: float = 0.0


def phase_messages(jobs: Sequence[Any]) -> tuple[list[tuple[str, bytes, bytes, int, bool]], int, int]:
    """Stream order of ``jobs`` without ``ci.tests``, each message tagged with its line count and whether
    it is the completion event of a failed job."""
    import orjson

    from healing_guard.samples import messages
    from healing_guard.samples.generator import TOPIC_JOBS, TOPIC_LOGS, TOPIC_TESTS

    failed = {j.key.encode(): j.completed.to_json() for j in jobs
              if j.completed.conclusion in ("failure", "timed_out")}
    out = []
    lines = 0
    for topic, key, value in messages(jobs):
        if topic == TOPIC_TESTS:
            continue
        n = len(orjson.loads(value)["lines"]) if topic == TOPIC_LOGS else 0
        lines += n
        out.append((topic, key, value, n, topic == TOPIC_JOBS and failed.get(key) == value))
    return out, lines, len(failed)


def split_jobs(jobs: Sequence[Any], sizes: Sequence[int]) -> list[list[Any]]:
    """Consecutive groups of whole jobs holding at least ``sizes[i]`` lines each."""
    groups: list[list[Any]] = []
    it = iter(jobs)
    for want in sizes:
        g, n = [], 0
        for j in it:
            g.append(j)
            n += sum(len(c.lines) for c in j.chunks)
            if n >= want:
                break
        groups.append(g)
    return groups


# ------------------------------------------------------------------------------------------ driver


async def drive(bootstrap: str, settings: Any, warm: Phase, phases: list[Phase], drain_timeout: float,
                warm_timeout: float, log: Any) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from healing_guard.topics import DEFAULT_TOPICS

    names = {name: settings.topics.named(name) for name in (DEFAULT_TOPICS.logs, DEFAULT_TOPICS.jobs)}
    arrivals: dict[bytes, float] = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=5, group_id=None)
    await consumer.start()
    parts = None
    for _ in range(100):
        parts = consumer.partitions_for_topic(settings.topics.actions)
        if parts:
            break
        await consumer._client.force_metadata_update()  # noqa: SLF001 - topic was just created
        await asyncio.sleep(0.1)
    consumer.assign([TopicPartition(settings.topics.actions, p) for p in sorted(parts or {0})])
    stop = asyncio.Event()

    async def consume() -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=20)
            t = time.perf_counter()
            for records in batch.values():
                for r in records:
                    if r.key is not None and r.key not in arrivals:
                        arrivals[r.key] = t

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, max_batch_size=1 << 20,
                                max_request_size=16 << 20)
    await producer.start()
    reader = asyncio.create_task(consume())
    try:
        async def wait_for(keys: set[bytes], timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not keys <= arrivals.keys():
                await asyncio.sleep(0.01)

        # warm-up: everything at once, then wait for the worker to have joined and decided them
        sent: dict[bytes, float] = {}
        for topic, key, value, _n, completes in warm.messages:
            if completes:
                sent[key] = time.perf_counter()
            await producer.send(names[topic], key=key, value=value)
        await producer.flush()
        await wait_for(set(sent), warm_timeout)
        if not set(sent) <= arrivals.keys():
            raise RuntimeError(f"warm-up: {len(set(sent) - arrivals.keys())} of {len(sent)} commands did not "
                               f"arrive within {warm_timeout:.0f}s (the worker did not start?)")
        log(f"  warm-up: worker ready ({len(sent)} commands)")

        for ph in phases:
            sent = {}
            pending = []
            t0 = time.perf_counter()
            done_lines = 0
            for topic, key, value, n, completes in ph.messages:
                target = t0 + done_lines / ph.rate
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if completes:
                    sent[key] = time.perf_counter()
                pending.append(await producer.send(names[topic], key=key, value=value))
                done_lines += n
                if len(pending) >= 500:
                    pending = [f for f in pending if not f.done()]
            ph.achieved_rate = done_lines / max(time.perf_counter() - t0, 1e-9)
            await asyncio.gather(*pending)
            await wait_for(set(sent), drain_timeout)
            ph.latencies = [arrivals[k] - t for k, t in sent.items() if k in arrivals]
            ph.missing = len(sent) - len(ph.latencies)
            s = summarize(ph.latencies)
            log(f"  {ph.name}: {ph.lines:,} lines at {ph.achieved_rate:,.0f} lines/s, {s['count']} commands, "
                f"p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms"
                + (f", {ph.missing} missing" if ph.missing else ""))
    finally:
        stop.set()
        await reader
        await producer.stop()
        await consumer.stop()


# ------------------------------------------------------------------------------------------ parent


def run_parent(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(HERE))
    import pipeline as pl

    from healing_guard.brokers import BrokerError, KafkaBroker, delete_topics
    from healing_guard.streams.topics import ensure_topics

    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    t_start = time.monotonic()
    rate = args.lines_per_second or args.pipeline_lines_per_second / 2
    warm_lines, low_lines = 5_000, int(args.baseline_rate * args.baseline_seconds)
    load_lines = int(rate * args.seconds)
    say(f"generating sample traffic: {warm_lines + low_lines + load_lines:,} lines")
    jobs = pl.sample_jobs(warm_lines + low_lines + load_lines, args.seed, 500)
    groups = split_jobs(jobs, [warm_lines, low_lines, load_lines])
    phase_messages_cached = {name: phase_messages(g) for name, g in zip(("warm-up", "baseline", "load"), groups)}

    data_dir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    broker = KafkaBroker(data_dir / "kafka")
    runs: list[dict[str, Any]] = []
    try:
        try:
            bootstrap = broker.start()
        except BrokerError as exc:
            say(f"cannot start Kafka: {exc}")
            return 1
        say(f"Apache Kafka on {bootstrap}")
        for run in range(1, args.runs + 1):
            rid = uuid.uuid4().hex[:8]
            prefix, app_id = f"lat-{rid}-", f"lat-{rid}"
            settings = pl.bench_settings(bootstrap, prefix, app_id)
            _, topics = pl.ours_topics(settings)
            asyncio.run(ensure_topics(settings))
            phases = [Phase(name, r, *phase_messages_cached[name]) for name, r in
                      (("warm-up", 0.0), ("baseline", args.baseline_rate), ("load", rate))]
            log_path = data_dir / f"worker-{run}.log"
            with open(log_path, "wb") as out:
                child = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "--child", "--bootstrap", bootstrap,
                     "--prefix", prefix, "--app-id", app_id], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT)
                say(f"run {run}: worker pid {child.pid}")
                try:
                    asyncio.run(drive(bootstrap, settings, phases[0], phases[1:], args.drain_timeout, 90.0, say))
                except Exception as exc:
                    say(f"run {run} failed: {exc!r}\n{log_path.read_text(errors='replace')[-3000:]}")
                    return 1
                finally:
                    child.send_signal(signal.SIGTERM)
                    try:
                        child.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
            asyncio.run(delete_topics(bootstrap, topics))
            runs.append({ph.name: {**summarize(ph.latencies), "lines": ph.lines, "failed_jobs": ph.failed,
                                   "missing": ph.missing, "rate": ph.rate, "achieved_rate": round(ph.achieved_rate, 1)}
                         for ph in phases[1:]})
    finally:
        try:
            broker.stop()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)

    result: dict[str, Any] = {"runs": args.runs, "goal_p99_ms": GOAL_P99_MS}
    for name in ("baseline", "load"):
        rs = [r[name] for r in runs]
        result[name] = {
            "lines_per_s": rs[0]["rate"],
            "achieved_lines_per_s": round(statistics.median(r["achieved_rate"] for r in rs), 1),
            "lines": rs[0]["lines"],
            "commands_per_run": [r["count"] for r in rs],
            "missing": sum(r["missing"] for r in rs),
            **{k: round(statistics.median(r[k] for r in rs), 2) for k in ("p50_ms", "p99_ms", "max_ms")},
            "p99_ms_runs": [round(r["p99_ms"], 2) for r in rs],
        }
    result["goal_met"] = result["load"]["p99_ms"] < GOAL_P99_MS and result["load"]["missing"] == 0
    hdr = "| phase | lines/s (asked / sent) | commands per run | p50 ms | p99 ms | max ms | p99 each run |"
    say(f"\ndiagnosis latency, completion event -> command on guard.actions (median of {args.runs} runs)")
    say(hdr + "\n|---|---|---|---|---|---|---|")
    for name in ("baseline", "load"):
        r = result[name]
        say(f"| {name} | {r['lines_per_s']:,.0f} / {r['achieved_lines_per_s']:,.0f} | "
            f"{', '.join(map(str, r['commands_per_run']))} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['max_ms']:.1f} | {' · '.join(f'{x:.1f}' for x in r['p99_ms_runs'])} |")
    say(f"goal p99 < {GOAL_P99_MS:.0f} ms at {rate:,.0f} lines/s: {'met' if result['goal_met'] else 'NOT met'} "
        f"(wall time {time.monotonic() - t_start:.0f}s)")
    if args.json:
        print(json.dumps(result), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines-per-second", type=float, default=0.0,
                   help="load phase rate (default: half of --pipeline-lines-per-second)")
    p.add_argument("--pipeline-lines-per-second", type=float, default=float(GOAL_LINES_PER_S),
                   help="the one-worker throughput the load is half of (default: the 300k goal)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the load phase")
    p.add_argument("--baseline-rate", type=float, default=10_000.0, help="rate of the low-load baseline phase")
    p.add_argument("--baseline-seconds", type=float, default=5.0, help="length of the baseline phase")
    p.add_argument("--runs", type=int, default=3, help="runs (fresh topics and worker each); medians reported")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--drain-timeout", type=float, default=60.0,
                   help="after the last send, wait this long for the remaining commands")
    p.add_argument("--json", action="store_true", help="progress to stderr, one JSON object as the last stdout line")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--bootstrap", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    p.add_argument("--app-id", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return run_child(args)
    if args.runs < 1 or args.seconds <= 0 or args.baseline_rate <= 0:
        p.error("--runs, --seconds and --baseline-rate must be positive")
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
