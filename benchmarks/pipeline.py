"""Log lines per second through one guard worker on real Apache Kafka, against a one-line-per-message baseline.

DESIGN.md ships logs as *chunks* because Faust costs ~80 µs per message: a per-line stream would cap a
worker near 10k lines/s. This benchmark measures that claim end to end, in one run, on the same log data:

* **ours** - the real worker (``build_guard``: ingest + tests agents, Faust tables with changelogs), one
  partition, facts disabled, fed the sample traffic as the forwarder ships it: ``ci.jobs`` started,
  ``ci.logs`` chunks (500 lines by default), ``ci.jobs`` completed. ``ci.tests`` is *skipped* (this measures
  log throughput) and ``test_grace_seconds`` is 0 so no decision waits for test results that never come.
* **baseline** - a minimal Faust app (same broker tuning, from ``streams.app.create_app``) whose one agent
  reads a topic with ONE log line per message (``{"job_key", "line_no", "line"}``) and does the same
  per-line matching work: ``clean(line)`` + ``Matcher.match([line])`` (same built-in pattern library,
  compiled once) + per-job hit lists in a dict.

All messages are produced with aiokafka BEFORE the worker starts. A Faust worker cannot be restarted in
one process, so each measurement runs in a fresh child process of this script (``--child ours|baseline``)
that prints one result line; the parent starts Kafka once, generates the data, produces it per run into
fresh topics, runs the children interleaved (ours, baseline, ours, ...) and reports medians.

Timing: from the moment the agent starts handling its first message to the moment the last line has been
processed and (ours) the last failed job has been decided. The timestamps are taken inside the agent's
own call path (ours: a thin ``Engine`` subclass stamping ``perf_counter`` around ``chunk``/``job_event``/
``decide``; baseline: in the agent body), so the group join, table recovery and the first fetch are not
counted for either side, and the 10 ms completion poll of the driver adds no quantisation error.

    .venv/bin/python benchmarks/pipeline.py                      # ~400k lines ours, 60k baseline, 3 runs
    .venv/bin/python benchmarks/pipeline.py --runs 5 --lines 1000000 --baseline-lines 100000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_MARKER = "BENCH_RESULT "
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ shared


def bench_settings(bootstrap: str, prefix: str, app_id: str) -> Any:
    """One worker, one partition, no ClickHouse, no test-result grace period (``ci.tests`` is not fed)."""
    from healing_guard.settings import Settings

    return Settings(broker_url=f"kafka://{bootstrap}", partitions=1, app_id=app_id, topic_prefix=prefix,
                    facts_enabled=False, test_grace_seconds=0.0, log_level="warning", status_file="")


def baseline_topic(prefix: str) -> str:
    return f"{prefix}bench.lines"


# ------------------------------------------------------------------------------------------ child


def _run_worker(app: Any, log_level: str) -> None:
    """Like ``healing_guard.streams.run.run_worker``: a Faust Worker in this process until SIGTERM."""
    from faust import Worker

    app.conf.worker_redirect_stdouts = False
    w = Worker(app, loglevel=log_level.upper(), quiet=True, redirect_stdouts=False)
    try:
        w.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


class _Clock:
    """First and last timestamps of the measured work (perf_counter seconds)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0

    def start(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def stop(self) -> None:
        self.last = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.last - self.first if self.first is not None else float("nan")


async def _wait_until(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def child_ours(args: argparse.Namespace) -> dict[str, Any]:
    from healing_guard.engine.core import Engine
    from healing_guard.streams.worker import build_guard

    settings = bench_settings(args.bootstrap, args.prefix, args.app_id)
    clock = _Clock()

    class TimedEngine(Engine):
        """Stamps the first step the agent takes and the end of the last chunk / decision."""

        def chunk(self, w: Any, chunk: Any, now: float | None = None) -> Any:
            clock.start()
            out = super().chunk(w, chunk, now)
            clock.stop()
            return out

        def job_event(self, w: Any, ev: Any, now: float | None = None) -> Any:
            clock.start()
            return super().job_event(w, ev, now)

        def decide(self, ready: Any, ledger: Any, now: float | None = None, **kw: Any) -> Any:
            out = super().decide(ready, ledger, now, **kw)
            clock.stop()
            return out

    guard = build_guard(settings, engine=TimedEngine(settings))
    result: dict[str, Any] = {"kind": "ours", "ok": False}

    @guard.app.task
    async def drive() -> None:
        try:
            st = guard.stats
            ok = await _wait_until(lambda: st.lines >= args.expect_lines and st.commands >= args.expect_commands,
                                   args.timeout)
            result.update(ok=ok, lines=st.lines, chunks=st.chunks, commands=st.commands,
                          dead_letters=st.dead_letters, seconds=clock.seconds)
            if not ok:
                result["error"] = (f"timed out after {args.timeout:.0f}s: lines {st.lines}/{args.expect_lines}, "
                                   f"commands {st.commands}/{args.expect_commands}")
        except Exception as exc:
            result["error"] = repr(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    _run_worker(guard.app, settings.log_level)
    return result


def child_baseline(args: argparse.Namespace) -> dict[str, Any]:
    import orjson

    from healing_guard.patterns import Matcher, clean, load_library
    from healing_guard.streams.app import create_app

    settings = bench_settings(args.bootstrap, args.prefix, args.app_id)
    matcher = Matcher(load_library(settings.pattern_files))  # built once, as Engine does
    app = create_app(settings)
    topic = app.topic(baseline_topic(args.prefix), key_serializer="raw", value_serializer="raw", partitions=1,
                      internal=False)
    clock = _Clock()
    hits: dict[str, list[tuple[int, str]]] = {}
    count = {"lines": 0, "hits": 0}

    @app.agent(topic, name="bench.per-line")
    async def per_line(stream: Any) -> None:
        async for event in stream.events():
            clock.start()
            d = orjson.loads(event.value)
            found = matcher.match([clean(d["line"])])
            if found:
                hits.setdefault(d["job_key"], []).extend((d["line_no"], h.pattern.id) for h in found)
                count["hits"] += len(found)
            count["lines"] += 1
            clock.stop()

    result: dict[str, Any] = {"kind": "baseline", "ok": False}

    @app.task
    async def drive() -> None:
        try:
            ok = await _wait_until(lambda: count["lines"] >= args.expect_lines, args.timeout)
            result.update(ok=ok, lines=count["lines"], hits=count["hits"], jobs_with_hits=len(hits),
                          seconds=clock.seconds)
            if not ok:
                result["error"] = f"timed out after {args.timeout:.0f}s: lines {count['lines']}/{args.expect_lines}"
        except Exception as exc:
            result["error"] = repr(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    _run_worker(app, settings.log_level)
    return result


def run_child(args: argparse.Namespace) -> int:
    fn = child_ours if args.child == "ours" else child_baseline
    try:
        result = fn(args)
    except BaseException as exc:  # report, never hang the parent
        result = {"kind": args.child, "ok": False, "error": repr(exc)}
    if result.get("ok") and result.get("seconds", 0) > 0:
        result["lines_per_s"] = result["lines"] / result["seconds"]
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0 if result.get("ok") else 1


# ------------------------------------------------------------------------------------------ data


@dataclass
class Workload:
    messages: list[tuple[str, bytes, bytes]]  # (logical topic, key, value)
    lines: int
    failed_jobs: int = 0
    jobs: int = 0


def sample_jobs(target_lines: int, seed: int, chunk_lines: int) -> list[Any]:
    """``generate(n, seed)`` with ``n`` large enough to hold at least ``target_lines`` log lines."""
    from healing_guard.samples import generate

    n = max(20, math.ceil(target_lines / 800))
    while True:
        jobs = generate(n, seed, chunk_lines=chunk_lines)
        total = sum(len(c.lines) for j in jobs for c in j.chunks)
        if total >= target_lines:
            return jobs
        n = math.ceil(n * target_lines / max(total, 1) * 1.1) + 1


def prefix_jobs(jobs: Sequence[Any], target_lines: int) -> list[Any]:
    """The shortest time-ordered prefix of whole jobs holding at least ``target_lines`` lines."""
    out, lines = [], 0
    for j in jobs:
        if lines >= target_lines:
            break
        out.append(j)
        lines += sum(len(c.lines) for c in j.chunks)
    return out


def ours_workload(jobs: Sequence[Any]) -> Workload:
    from healing_guard.samples import messages
    from healing_guard.samples.generator import TOPIC_TESTS

    msgs = [m for m in messages(jobs) if m[0] != TOPIC_TESTS]
    return Workload(messages=msgs, lines=sum(len(c.lines) for j in jobs for c in j.chunks), jobs=len(jobs),
                    failed_jobs=sum(1 for j in jobs if j.completed.conclusion in ("failure", "timed_out")))


def baseline_workload(jobs: Sequence[Any], n_lines: int) -> Workload:
    """The first ``n_lines`` lines of the same jobs, one message per line, in job order."""
    import orjson

    msgs: list[tuple[str, bytes, bytes]] = []
    for j in jobs:
        key = j.key
        kb = key.encode()
        for c in j.chunks:
            for i, line in enumerate(c.lines):
                if len(msgs) >= n_lines:
                    return Workload(messages=msgs, lines=len(msgs))
                msgs.append(("lines", kb, orjson.dumps({"job_key": key, "line_no": c.first_line + i, "line": line})))
    return Workload(messages=msgs, lines=len(msgs))


# ------------------------------------------------------------------------------------------ kafka


async def produce(bootstrap: str, msgs: Sequence[tuple[str, bytes, bytes]], names: dict[str, str],
                  advance: Callable[[int], None]) -> None:
    """Send everything (batched by linger_ms, futures gathered per 5000) and wait for every ack."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=16 << 20)
    await producer.start()
    try:
        pending = []
        for topic, key, value in msgs:
            pending.append(await producer.send(names[topic], key=key, value=value))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                advance(len(pending))
                pending.clear()
        await asyncio.gather(*pending)
        advance(len(pending))
    finally:
        await producer.stop()


def ours_topics(settings: Any) -> tuple[dict[str, str], list[str]]:
    from healing_guard.topics import INPUT_TOPICS, internal_topics, topic_specs

    names = {name: settings.topics.named(name) for name in INPUT_TOPICS}
    return names, [*topic_specs(settings), *internal_topics(settings)]


async def setup_ours(settings: Any, work: Workload, advance: Callable[[int], None]) -> list[str]:
    from healing_guard.streams.topics import ensure_topics

    names, all_topics = ours_topics(settings)
    await ensure_topics(settings)
    await produce(settings.bootstrap, work.messages, names, advance)
    return all_topics


async def setup_baseline(settings: Any, prefix: str, work: Workload, advance: Callable[[int], None]) -> list[str]:
    from healing_guard.brokers import create_topics
    from healing_guard.topics import leader_topic

    topic = baseline_topic(prefix)
    leader = leader_topic(settings.app_id)
    await create_topics(settings.bootstrap, {topic: 1, leader: 1})
    await produce(settings.bootstrap, work.messages, {"lines": topic}, advance)
    return [topic, leader]


# ------------------------------------------------------------------------------------------ no-Kafka reference


def work_only(ours: Workload, base: Workload, max_base_lines: int = 10_000) -> dict[str, float]:
    """µs per line of each side's processing alone, in this process, without Faust or Kafka.

    Tells how much of a rate is the per-line work itself and how much is per-message streaming
    overhead. Ours: LogChunk/JobEvent parsing + the Engine steps + the window's orjson round trip per
    message, as the ingest agent does (a dict instead of the Faust table: no changelog); baseline: orjson + clean + Matcher.match([line]) + the hit dict.
    """
    import orjson

    from healing_guard.patterns import clean
    from healing_guard.engine.core import Engine
    from healing_guard.remediate import Ledger
    from healing_guard.schemas import JobEvent, LogChunk
    from healing_guard.engine.window import JobWindow, Ready

    settings = bench_settings("127.0.0.1:9", "", "work-only")
    engine = Engine(settings)
    windows: dict[bytes, Any] = {}
    ledger = Ledger()
    t0 = time.perf_counter()
    for topic, key, raw in ours.messages:
        state = windows.get(key)
        w = JobWindow.from_dict(orjson.loads(state)) if state else JobWindow(job_key=key.decode())
        if topic == LogChunk.topic:
            w, outs = engine.chunk(w, LogChunk.from_json(raw))
        else:
            w, outs = engine.job_event(w, JobEvent.from_json(raw))
        if outs:
            windows.pop(key, None)
        else:
            windows[key] = orjson.dumps(w.to_dict())
        for o in outs:
            if isinstance(o, Ready):
                ledger, _ = engine.decide(o, ledger)
    ours_us = (time.perf_counter() - t0) / max(ours.lines, 1) * 1e6

    matcher = engine.matcher
    hits: dict[str, list[tuple[int, str]]] = {}
    sample = base.messages[:max_base_lines]
    t0 = time.perf_counter()
    for _, _, raw in sample:
        d = orjson.loads(raw)
        found = matcher.match([clean(d["line"])])
        if found:
            hits.setdefault(d["job_key"], []).extend((d["line_no"], h.pattern.id) for h in found)
    base_us = (time.perf_counter() - t0) / max(len(sample), 1) * 1e6
    return {"ours_us_per_line": ours_us, "baseline_us_per_line": base_us}


# ------------------------------------------------------------------------------------------ parent


@contextmanager
def kafka_broker(prefix: str, extra_properties: Mapping[str, str] | None = None) -> Iterator[tuple[str, Path, Any]]:
    """An Apache Kafka broker on loopback for one benchmark: ``(bootstrap, a temporary directory, the
    KafkaBroker)``, stopped and the directory removed afterwards (``BrokerError`` when it cannot start)."""
    from healing_guard.brokers import KafkaBroker

    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    broker = KafkaBroker(data_dir / "kafka", extra_properties=extra_properties)
    try:
        yield broker.start(), data_dir, broker
    finally:
        try:
            broker.stop()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


def spawn(kind: str, bootstrap: str, prefix: str, app_id: str, work: Workload, timeout: float) -> dict[str, Any]:
    return run_child_process(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--bootstrap", bootstrap, "--prefix", prefix,
         "--app-id", app_id, "--expect-lines", str(work.lines), "--expect-commands", str(work.failed_jobs),
         "--timeout", str(timeout)], kind, timeout)


def run_child_process(cmd: list[str], kind: str, timeout: float) -> dict[str, Any]:
    """Run one measurement's child process; its result line (``RESULT_MARKER`` + JSON), or a failed result
    with the child's output."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 90, cwd=ROOT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        return {"kind": kind, "ok": False, "error": f"child did not exit within {timeout + 90:.0f}s",
                "stderr": str(exc.stderr or "")[-3000:]}
    for line in reversed(proc.stdout.splitlines()):
        if RESULT_MARKER in line:  # the worker may leave terminal escapes in front of it
            res: dict[str, Any] = json.loads(line.split(RESULT_MARKER, 1)[1])
            if not res.get("ok"):
                res["stderr"] = proc.stderr[-3000:]
            return res
    return {"kind": kind, "ok": False, "error": f"child exited {proc.returncode} without a result",
            "stderr": f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"}


def run_parent(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from healing_guard.brokers import BrokerError, KafkaBroker, delete_topics

    console = Console()
    # a producer racing a brand-new partition's leader election logs a retried NotLeaderForPartition
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    t_start = time.monotonic()
    with console.status("generating sample logs"):
        jobs = sample_jobs(max(args.lines, args.baseline_lines), args.seed, args.chunk_lines)
        ours = ours_workload(prefix_jobs(jobs, args.lines))
        base = baseline_workload(jobs, args.baseline_lines)
    console.print(f"[bold]ours:[/bold] {ours.jobs} jobs ({ours.failed_jobs} failed), {ours.lines:,} lines in "
                  f"{len(ours.messages):,} messages (chunks of {args.chunk_lines} lines + job events; "
                  f"ci.tests not fed)")
    console.print(f"[bold]baseline:[/bold] {base.lines:,} lines, one per message (first lines of the same jobs)")
    with console.status("per-line work alone, in-process (no Kafka, no Faust)"):
        ref = work_only(ours, base)

    data_dir = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    broker = KafkaBroker(data_dir / "kafka")
    results: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
    try:
        with console.status("starting Apache Kafka"):
            try:
                bootstrap = broker.start()
            except BrokerError as exc:
                console.print(f"[red]cannot start Kafka:[/red] {exc}")
                return 1
        console.print(f"Apache Kafka on {bootstrap} (data in {data_dir})")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            overall = progress.add_task("measurements", total=2 * args.runs)
            for run in range(1, args.runs + 1):
                for kind, work in (("ours", ours), ("baseline", base)):
                    rid = uuid.uuid4().hex[:8]
                    prefix, app_id = f"bench-{rid}-", f"bench-{kind}-{rid}"
                    settings = bench_settings(bootstrap, prefix, app_id)
                    task = progress.add_task(f"run {run} {kind}: producing", total=len(work.messages))

                    def advance(n: int, task: Any = task) -> None:
                        progress.advance(task, n)

                    if kind == "ours":
                        topics = asyncio.run(setup_ours(settings, work, advance))
                    else:
                        topics = asyncio.run(setup_baseline(settings, prefix, work, advance))
                    progress.update(task, description=f"run {run} {kind}: worker running")
                    res = spawn(kind, bootstrap, prefix, app_id, work, args.timeout)
                    progress.remove_task(task)
                    asyncio.run(delete_topics(bootstrap, topics))
                    if not res.get("ok"):
                        console.print(f"[red]run {run} {kind} failed:[/red] {res.get('error')}\n"
                                      f"{res.get('stderr', '')}", highlight=False)
                        return 1
                    results[kind].append(res)
                    if res.get("dead_letters"):
                        console.print(f"[yellow]run {run} {kind}: {res['dead_letters']} dead letters[/yellow]")
                    console.print(f"run {run} [bold]{kind}[/bold]: {res['lines']:,} lines in {res['seconds']:.2f}s "
                                  f"= [cyan]{res['lines_per_s']:,.0f}[/cyan] lines/s")
                    progress.advance(overall)
    finally:
        with console.status("stopping Kafka"):
            try:
                broker.stop()
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)

    ours_rate = statistics.median(r["lines_per_s"] for r in results["ours"])
    base_rate = statistics.median(r["lines_per_s"] for r in results["baseline"])
    ratio = ours_rate / base_rate
    table = Table(title=f"log lines/s, one worker, one partition, Apache Kafka (median of {args.runs})")
    table.add_column("side")
    table.add_column("lines", justify="right")
    table.add_column("msgs", justify="right")
    table.add_column("each run, lines/s", justify="right")
    table.add_column("median", justify="right")
    table.add_column("µs/line", justify="right")
    table.add_column("work µs/line", justify="right")
    for key, work, rate, us in (("ours", ours, ours_rate, ref["ours_us_per_line"]),
                                ("baseline", base, base_rate, ref["baseline_us_per_line"])):
        table.add_row(key, f"{work.lines:,}", f"{len(work.messages):,}",
                      " ".join(f"{r['lines_per_s']:,.0f}" for r in results[key]), f"{rate:,.0f}",
                      f"{1e6 / rate:.1f}", f"{us:.1f}")
    console.print(table)
    console.print(f"[bold]ratio ours/baseline: {ratio:.1f}x[/bold]  (ours: chunks of {args.chunk_lines} lines; baseline: "
                  "one line per message; work µs/line = the same processing in this process without Faust or "
                  f"Kafka; wall time {time.monotonic() - t_start:.0f}s)")
    if args.json:
        print(json.dumps({"lines_ours": ours.lines, "lines_baseline": base.lines,
                          "ours_lines_per_s": round(ours_rate, 1), "baseline_lines_per_s": round(base_rate, 1),
                          "ratio": round(ratio, 2), "runs": args.runs}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=400_000, help="log lines for ours (whole jobs, so a bit more)")
    p.add_argument("--baseline-lines", type=int, default=60_000, help="log lines for the one-line-per-message baseline")
    p.add_argument("--runs", type=int, default=3, help="measurements of each side; the median is reported")
    p.add_argument("--chunk-lines", type=int, default=500, help="lines per ci.logs chunk (the samples' default)")
    p.add_argument("--seed", type=int, default=7, help="seed of the sample traffic")
    p.add_argument("--timeout", type=float, default=180.0, help="give up on one measurement after this many seconds")
    p.add_argument("--json", action="store_true", help="print one JSON object with the medians as the last line")
    # internal: one measurement in a fresh process
    p.add_argument("--child", choices=("ours", "baseline"), help=argparse.SUPPRESS)
    p.add_argument("--bootstrap", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    p.add_argument("--app-id", help=argparse.SUPPRESS)
    p.add_argument("--expect-lines", type=int, help=argparse.SUPPRESS)
    p.add_argument("--expect-commands", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return run_child(args)
    if min(args.lines, args.baseline_lines, args.runs, args.chunk_lines) < 1:
        p.error("--lines, --baseline-lines, --runs and --chunk-lines must be >= 1")
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
