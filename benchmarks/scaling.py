"""Throughput with 1, 2 and 4 worker processes on one Apache Kafka broker: log lines/s and test results/s.

One broker (``KafkaBroker``, KRaft, in a temporary directory), every topic with 4 partitions, so 1, 2 and 4
workers each own partitions. Each measurement is a fresh topic prefix and app id, N real worker processes
(``python -m healing_guard.cli worker --partitions 4 --no-facts``: facts still go to ``guard.facts``, they
are just not written to ClickHouse) forming one consumer group, and one of two workloads:

* **log lines** - the sample traffic of ``benchmarks/pipeline.py`` (``ci.jobs`` started, ``ci.logs``
  chunks of 500 lines, ``ci.jobs`` completed; ``ci.tests`` not fed; ``GUARD_TEST_GRACE_SECONDS=0``), keyed
  by job key, so Kafka's partitioner spreads the jobs over the 4 partitions;
* **test results** - a synthetic monorepo (``svc{m}/tests/test_mod{j}.py::TestC{k}::test_{i}``), a few
  reports of all its tests, seeded random outcomes with a small share of flaky tests; each report sent as
  batches (``encode_batches(results, 4)``), each batch on its explicit partition.

Procedure: start the N workers and wait until the group is ready: every worker's status file exists, the
group is Stable with N members that between them own all 4 partitions of the input topics, every worker has
resumed its streams after its last rebalance (Faust's "Seek stream partitions to committed offsets", which
comes after ``stream_recovery_delay`` (3 s) and the tables' recovery; a group that merely looks Stable is
not processing yet), and all that has held for a second. Then a warm-up: a little of the same kind of
traffic on every partition under keys of its own (8 sample jobs; 400 test results), until it is counted,
so that every worker has paid its first-message costs (the first batch of test results takes ~0.6 s more
than the next: lazy set-up) and is seen to process. Then the wall clock is taken, the whole workload is
produced (aiokafka, from this process) and the clock stops when the sum over the workers' status files of
``lines`` (log lines) or ``tests`` (test results), minus the warm-up, reaches the total. The rate is
total / (end - start of producing): it includes the producing, as a live stream would (the producer shares
the cores; its time is reported as ``produce_seconds``).

The end: a status file is written once a second, too coarse for runs of a few seconds. Each worker's
status history brackets when it finished (its last write below its final count and its first at it); the
end is then refined to the millisecond with the timestamps (the workers' producer clock, the same machine's)
of what the counting step itself writes: for log lines the job's window (``windows`` changelog), stored in
the step that counts a chunk's lines; for test results each learned test's model (``test_models``
changelog), the batch's facts and its failures' risks, written in the step that then counts the batch. The
end is the last such record up to the bracket's end (``end_signal: "records"``; without one, the bracket's
end, ``"status"``). A decision taken at a later deadline tick also rewrites a window, so for log lines the
end can be late by at most the bracket (1 s); in practice the last window records are the last chunks and
completions.

A worker that exits makes the run fail, with its first error and the tail of its log. Rebalances during a
measurement are counted from the workers' logs (``rebalances_during``: group syncs after the start of
producing). The broker runs with Kafka's default ``group.initial.rebalance.delay.ms`` of 3 s instead of the
test broker's 0 (see :data:`BROKER_PROPERTIES`), so that the N workers join the new group in one rebalance.

Defaults (about 4 minutes on 2 cores, two thirds of it starting and stopping 18 groups of workers):
1,000,000 log lines (4-8 s on one worker), 20,000 tests x 5 reports = 100,000 results (~5 s on one
worker), two runs of each (workload, N), medians reported; ``--runs 1`` takes half as long. The runs vary
by 20-40 % on a shared 2-core machine: read the speed-ups with that in mind (``other_cpu_seconds``, the
CPU time of every process but the broker, the workers and this one while measuring, and ``steal_seconds``,
a VM's neighbours' share, show whether something else was running). Every worker runs at log
level info (the rebalance count and the readiness check read its log); Faust's default of one standby
replica per table partition applies, so with 2 or more workers each also replays another's changelog.

    .venv/bin/python benchmarks/scaling.py --json
    .venv/bin/python benchmarks/scaling.py --workers 1,2 --lines 400000 --tests 10000 --reports 3 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARTITIONS = 4
#: the workloads: name -> the status-file counter that counts its units
COUNTERS = {"log_lines": "lines", "test_results": "tests"}
#: the synthetic monorepo's shape: tests per class, classes per module, modules per service
TESTS_PER_CLASS, CLASSES_PER_MODULE, MODULES_PER_SERVICE = 20, 5, 20
T0 = 1_767_225_600.0  # 2026-01-01, the reports' timestamps
#: Kafka's default initial rebalance delay, so that the N workers, which join a fraction of a second apart,
#: join in one rebalance (the test broker's 0 makes them go through one each: before streams/seek.py's
#: livelock-check fix that regularly left a worker crashed; now it only delays the measurement's start)
BROKER_PROPERTIES = {"group.initial.rebalance.delay.ms": "3000"}
#: aiokafka's line when a member got its assignment, and Faust's last step of the recovery that follows
#: (``stream_recovery_delay``, 3 s, then the tables, then this seek, and the streams flow again)
SYNCED = re.compile(rb"Successfully synced group \S+ with generation (\d+)")
RESUMED = b"Seek stream partitions to committed offsets"


#: where progress goes: stderr (stdout with ``--json`` holds only the JSON line), stdout without ``--json``
_progress = {"stream": sys.stderr}


def say(msg: str) -> None:
    print(msg, file=_progress["stream"], flush=True)


class BenchError(Exception):
    """A measurement that cannot complete (a worker died, a timeout): the run fails with this message."""


# ------------------------------------------------------------------------------------------ workloads


@dataclass
class Load:
    kind: str  # a key of COUNTERS
    total: int  # lines or test results the workers must count
    messages: list[tuple[str, int | None, bytes, bytes]]  # (logical topic, partition or None, key, value)
    detail: dict[str, Any] = field(default_factory=dict)
    #: a little of the same kind of traffic on every partition, under other keys, sent before the clock starts
    #: so that each worker has paid its first-message costs (lazy imports and set-ups: ~0.6 s for the first
    #: batch of test results)
    warmup: list[tuple[str, int | None, bytes, bytes]] = field(default_factory=list)
    warmup_total: int = 0

    @property
    def counter(self) -> str:
        return COUNTERS[self.kind]

    @property
    def size_bytes(self) -> int:
        return sum(len(v) for _t, _p, _k, v in self.messages)


def _pipeline() -> Any:
    sys.path.insert(0, str(HERE))
    import pipeline

    return pipeline


def _owned_by(job: Any, owner: str) -> Any:
    """A sample job (without its test results) under another owner, so under keys of its own."""
    return dataclasses.replace(job, started=dataclasses.replace(job.started, owner=owner),
                               chunks=[dataclasses.replace(c, owner=owner) for c in job.chunks],
                               completed=dataclasses.replace(job.completed, owner=owner), tests=[])


def warmup_jobs(seed: int, chunk_lines: int, per_partition: int = 2) -> list[Any]:
    """``per_partition`` sample jobs on each partition, owned by ``warmup`` (no measured job has their keys)."""
    from healing_guard.samples import generate
    from healing_guard.schemas.test_batch import partition_of

    out: list[Any] = []
    taken = [0] * PARTITIONS
    for job in generate(16 * PARTITIONS * per_partition, seed, chunk_lines=chunk_lines):
        job = _owned_by(job, "warmup")
        p = partition_of(job.key.encode(), PARTITIONS)  # the producer's default partitioner
        if taken[p] < per_partition:
            taken[p] += 1
            out.append(job)
    if min(taken) < per_partition:
        raise ValueError(f"warm-up jobs cover the partitions {taken} times, not {per_partition}")
    return out


def log_load(lines: int, seed: int, chunk_lines: int) -> Load:
    """The sample jobs of ``benchmarks/pipeline.py`` holding at least ``lines`` log lines, without ci.tests."""
    pl = _pipeline()
    work = pl.ours_workload(pl.prefix_jobs(pl.sample_jobs(lines, seed, chunk_lines), lines))
    warm = pl.ours_workload(warmup_jobs(seed + 1, chunk_lines))
    return Load("log_lines", work.lines, [(t, None, k, v) for t, k, v in work.messages],
                {"jobs": work.jobs, "failed_jobs": work.failed_jobs, "chunk_lines": chunk_lines},
                warmup=[(t, None, k, v) for t, k, v in warm.messages], warmup_total=warm.lines)


def monorepo_ids(n: int) -> list[str]:
    """``n`` test ids of a synthetic monorepo: services of modules of classes of tests."""
    out = []
    for t in range(n):
        i, c = t % TESTS_PER_CLASS, t // TESTS_PER_CLASS
        k, mod = c % CLASSES_PER_MODULE, c // CLASSES_PER_MODULE
        j, svc = mod % MODULES_PER_SERVICE, mod // MODULES_PER_SERVICE
        out.append(f"svc{svc}/tests/test_mod{j}.py::TestC{k}::test_{i}")
    return out


def reports(ids: Sequence[str], n_reports: int, seed: int, *, repo: str = "monorepo", flaky_share: float = 0.02,
            flaky_fail: float = 0.3, skipped_share: float = 0.01) -> list[list[Any]]:
    """``n_reports`` runs of every test of ``ids`` (one job of ``repo`` each, on its own commit): a flaky
    test fails with probability ``flaky_fail``, a skipped one is always skipped, the others pass."""
    from healing_guard.schemas import TestResult

    rng = random.Random(seed)
    n_tests = len(ids)
    order = list(range(n_tests))
    rng.shuffle(order)
    n_flaky, n_skipped = round(n_tests * flaky_share), round(n_tests * skipped_share)
    flaky, skipped = set(order[:n_flaky]), set(order[n_flaky:n_flaky + n_skipped])
    out = []
    for r in range(n_reports):
        fails = {t for t in sorted(flaky) if rng.random() < flaky_fail}
        base: dict[str, Any] = dict(provider="github", owner="example", repo=repo, job_id=str(90_000 + r),
                                    attempt=1, head_sha=f"{r + 1:040x}", failed_in_run=len(fails))
        start = T0 + 3600.0 * r
        results = []
        for t, tid in enumerate(ids):
            outcome: Any = "failed" if t in fails else "skipped" if t in skipped else "passed"
            results.append(TestResult(test_id=tid, outcome=outcome, duration_s=round(rng.uniform(0.001, 2.0), 3),
                                      ts=start + t * 0.01, message="AssertionError: expected 200, got 503"
                                      if outcome == "failed" else None, **base))
        out.append(results)
    return out


def results_load(n_tests: int, n_reports: int, seed: int) -> Load:
    """The reports as the forwarder sends them: each as batches (``encode_batches``) on explicit partitions."""
    from healing_guard.schemas.test_batch import encode_batches

    def batches(runs: list[list[Any]]) -> list[tuple[str, int | None, bytes, bytes]]:
        return [("ci.tests", p, k, v) for results in runs for p, k, v in encode_batches(results, PARTITIONS)]

    runs = reports(monorepo_ids(n_tests), n_reports, seed)
    fails = sum(1 for results in runs for r in results if r.outcome == "failed")
    # 100 results per partition on average, a tenth of them failures (each sends a risk to the job agent)
    warm_ids = [f"warmup/tests/test_w.py::test_{i}" for i in range(100 * PARTITIONS)]
    warm = reports(warm_ids, 1, seed + 1, repo="warmup", flaky_share=0.2, flaky_fail=0.5, skipped_share=0.0)
    return Load("test_results", n_tests * n_reports, batches(runs),
                {"tests": n_tests, "reports": n_reports, "failed_results": fails},
                warmup=batches(warm), warmup_total=len(warm_ids))


# ------------------------------------------------------------------------------------------ kafka


def settings_for(bootstrap: str, prefix: str, app_id: str) -> Any:
    from healing_guard.settings import Settings

    return Settings(broker_url=f"kafka://{bootstrap}", partitions=PARTITIONS, app_id=app_id, topic_prefix=prefix,
                    facts_enabled=False, test_grace_seconds=0.0, status_file="")


async def produce(bootstrap: str, msgs: Sequence[tuple[str, int | None, bytes, bytes]], names: dict[str, str]) -> None:
    """Send everything (a partition given: that one; else the key's) and wait for every acknowledgement."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=16 << 20)
    await producer.start()
    try:
        pending = []
        for topic, partition, key, value in msgs:
            pending.append(await producer.send(names[topic], key=key, value=value, partition=partition))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _decode_assignment(raw: bytes) -> dict[str, set[int]]:
    from aiokafka.protocol.group import MemberAssignment

    if not raw:
        return {}
    return {topic: set(parts) for topic, parts in MemberAssignment.decode(raw).assignment}


async def describe_group(admin: Any, group: str) -> tuple[str, list[tuple[str, dict[str, set[int]]]]]:
    """The group's state and, per member, its assignment (``("", [])`` while the coordinator is not known)."""
    from aiokafka.errors import KafkaError

    try:
        response = await admin.describe_consumer_groups([group])
    except KafkaError:
        return "", []
    g = response[0].groups[0]
    # (error_code, group_id, state, protocol_type, protocol, members, ...); a member ends with its assignment
    return g[2], [(m[0], _decode_assignment(m[-1])) for m in g[5]]


async def record_times(bootstrap: str, topic: str, since: float, timeout: float = 60.0) -> list[float]:
    """The timestamps (seconds) of ``topic``'s records from time ``since`` on, up to its end offsets of now
    (``offsets_for_times`` finds where to start, so only the tail is read)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_bytes=64 << 20, max_partition_fetch_bytes=16 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
        todo = set()
        for tp in tps:
            found = starts.get(tp)
            if found is not None and found.offset < ends[tp]:
                consumer.seek(tp, found.offset)
                todo.add(tp)
        out: list[float] = []
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise BenchError(f"could not read {topic} to its end within {timeout:.0f}s")
            batch = await consumer.getmany(*todo, timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                out += [r.timestamp / 1000 for r in records]
                if records and records[-1].offset + 1 >= ends[tp]:
                    todo.discard(tp)
        return out
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------------------------ workers


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    status: Path

    def read_status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status.read_bytes()))
        except (FileNotFoundError, ValueError):
            return {}

    def log_bytes(self) -> bytes:
        try:
            return self.log.read_bytes()
        except FileNotFoundError:
            return b""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_bytes().decode("utf-8", "replace").splitlines()[-lines:])

    def first_error(self, lines: int = 40) -> str:
        """The log from its first error or traceback on (``lines`` of it), "" when it has none."""
        text = self.log_bytes().decode("utf-8", "replace").splitlines()
        at = next((i for i, line in enumerate(text) if "Traceback" in line or "[ERROR]" in line
                   or "[CRITICAL]" in line), None)
        return "" if at is None else "\n".join(text[at:at + lines])

    def syncs(self) -> int:
        return len(SYNCED.findall(self.log_bytes()))

    def resumed(self) -> bool:
        """Faust has recovered the tables after the worker's last rebalance and resumes its streams."""
        text = self.log_bytes()
        last_sync = max((m.end() for m in SYNCED.finditer(text)), default=-1)
        return last_sync >= 0 and text.find(RESUMED, last_sync) >= 0


def start_workers(n: int, bootstrap: str, prefix: str, app_id: str, work_dir: Path) -> list[Worker]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    workers = []
    for i in range(n):
        d = work_dir / f"w{i}"
        d.mkdir(parents=True)
        status, log = d / "status.json", d / "worker.log"
        e = dict(env, GUARD_CONFIG="", GUARD_STATUS_FILE=str(status), GUARD_DATA_DIR=str(d / "data"),
                 GUARD_TEST_GRACE_SECONDS="0")
        cmd = [sys.executable, "-m", "healing_guard.cli", "worker", "--broker", f"kafka://{bootstrap}",
               "--topic-prefix", prefix, "--app-id", app_id, "--partitions", str(PARTITIONS), "--no-facts",
               "--no-create-topics", "--log-level", "info"]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d,
                                    env=e)
        workers.append(Worker(proc, log, status))
    return workers


def stop_workers(workers: Sequence[Worker], timeout: float = 20.0) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for w in workers:
        try:
            w.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait(10)


def check_alive(workers: Sequence[Worker]) -> None:
    for i, w in enumerate(workers):
        if w.proc.poll() is not None:
            first = w.first_error()
            raise BenchError(f"worker {i} exited with {w.proc.returncode}; "
                             + (f"its first error:\n{first}\n...\n" if first else "") + f"its log ends:\n{w.tail()}")


async def wait_ready(bootstrap: str, group: str, workers: Sequence[Worker], inputs: Sequence[str],
                     timeout: float, settle: float = 0.5) -> float:
    """Wait until every worker is up and the group is stable with all of them; returns the seconds waited."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    t0 = time.monotonic()
    try:
        since: float | None = None
        last: Any = None
        why = "starting"
        while True:
            check_alive(workers)
            now = time.monotonic()
            if now - t0 > timeout:
                tails = "\n".join(f"--- worker {i}\n{w.tail(15)}" for i, w in enumerate(workers))
                raise BenchError(f"workers not ready after {timeout:.0f}s ({why})\n{tails}")
            state, members = await describe_group(admin, group)
            owned = {t: set().union(*(a.get(t, set()) for _m, a in members)) for t in inputs}
            if not all(w.status.exists() for w in workers):
                why = "waiting for every worker's status file"
            elif state != "Stable" or len(members) != len(workers):
                why = f"group {state or 'unknown'} with {len(members)}/{len(workers)} members"
            elif any(parts != set(range(PARTITIONS)) for parts in owned.values()):
                why = f"partitions not all assigned: {owned}"
            elif not all(w.resumed() for w in workers):
                why = "a worker has not resumed its streams since its last rebalance"
            else:
                sig = (sorted((m, sorted((t, sorted(p)) for t, p in a.items() if t in inputs)) for m, a in members),
                       [w.syncs() for w in workers])
                if sig != last:
                    last, since = sig, now
                elif since is not None and now - since >= settle:
                    return now - t0
                await asyncio.sleep(0.1)
                continue
            last = since = None
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


# ------------------------------------------------------------------------------------------ measurement


def cpu_seconds(pids: Sequence[int]) -> tuple[float, float, float] | None:
    """CPU seconds so far: the whole machine's busy time, its steal (a VM's neighbours), and ``pids``'s own
    (user + system, Linux ``/proc``); None where that cannot be read."""
    try:
        hz = os.sysconf("SC_CLK_TCK")
        cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = 0
        for pid in pids:
            try:  # after the command (which may hold spaces) in parentheses: field 14 utime, 15 stime
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                own += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                continue
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = cpu
    return (user + nice + system + irq + softirq) / hz, steal / hz, own / hz


def others_cpu(before: tuple[float, float, float] | None,
               after: tuple[float, float, float] | None) -> dict[str, float | None]:
    """What the machine did besides this benchmark between two :func:`cpu_seconds`: busy seconds of every
    other process, and steal seconds."""
    if before is None or after is None:
        return {"other_cpu_seconds": None, "steal_seconds": None}
    return {"other_cpu_seconds": round(max(0.0, (after[0] - before[0]) - (after[2] - before[2])), 2),
            "steal_seconds": round(after[1] - before[1], 2)}


def end_bracket(history: Sequence[Sequence[tuple[float, int]]], start: float) -> tuple[float, float]:
    """When the last worker finished, from each worker's status writes ``[(ts, count), ...]``: between its
    last write below its final count (``start`` when it has none) and its first write at it. Returns the
    ``(lo, hi)`` bracket of the end of all of them."""
    lo_hi = []
    for writes in history:
        if not writes:
            continue
        final = writes[-1][1]
        hi = next(ts for ts, c in writes if c >= final)
        lo = max((ts for ts, c in writes if c < final and ts <= hi), default=start)
        lo_hi.append((lo, hi))
    if not lo_hi:
        raise ValueError("no status writes")
    return max(lo for lo, _ in lo_hi), max(hi for _, hi in lo_hi)


def end_topics(kind: str, settings: Any, app_id: str) -> list[str]:
    """What the step that counts writes while it counts: log lines - the job's window (its changelog), on every
    chunk, in the step that counts the chunk's lines; test results - every learned test's model, then the
    batch's facts and its failures' risks, the ``tests`` count coming last in the same step."""
    from healing_guard.topics import changelog_topic

    if kind == "log_lines":
        return [changelog_topic(app_id, "windows")]
    return [changelog_topic(app_id, "test_models"), settings.topics.facts, settings.topics.test_risk]


def refine_end(times: Sequence[float], lo: float, hi: float, slack: float = 0.05,
               before: float = 1.0) -> float | None:
    """The last record time up to the end of the bracket ``[lo, hi]`` (``slack`` beyond it: a record is
    stamped when the worker's producer takes it, a moment after the step), None when there is none from
    ``before`` seconds before ``lo`` on. A record may precede ``lo``: the step that counted last wrote its
    records, then awaited its sends, during which the status file was written once more."""
    inside = [t for t in times if lo - before <= t <= hi + slack]
    return max(inside) if inside else None


def poll_counts(workers: Sequence[Worker], counter: str, total: int, timeout: float, what: str,
                base: Sequence[int] | None = None) -> list[list[tuple[float, int]]]:
    """Every worker's status writes ``(ts, count - base)`` until the counts add up to ``total``."""
    history: list[list[tuple[float, int]]] = [[] for _ in workers]
    base = base or [0] * len(workers)
    deadline = time.monotonic() + timeout
    while True:
        check_alive(workers)
        count = 0
        for i, w in enumerate(workers):
            st = w.read_status()
            if st:
                point = (float(st["ts"]), int(st.get(counter, 0)) - base[i])
                if not history[i] or history[i][-1][0] != point[0]:
                    history[i].append(point)
                count += point[1]
        if count >= total:
            return history
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: {count:,}/{total:,} {counter} after {timeout:.0f}s")
        time.sleep(0.05)


def measure(bootstrap: str, load: Load, n: int, work_dir: Path, timeout: float, warmup: bool = True,
            broker_pid: int | None = None) -> dict[str, Any]:
    """``load`` through ``n`` fresh workers on fresh topics (after its warm-up, unless ``warmup`` is off);
    the topics are deleted and the workers stopped whatever happens. With ``broker_pid``, the CPU time other
    processes than the broker, the workers and this one took while measuring is reported too."""
    from healing_guard.brokers import delete_topics
    from healing_guard.streams.topics import ensure_topics

    pl = _pipeline()
    rid = uuid.uuid4().hex[:8]
    prefix, app_id = f"scale-{rid}-", f"scale-{load.kind.replace('_', '-')}-{n}-{rid}"
    settings = settings_for(bootstrap, prefix, app_id)
    names, all_topics = pl.ours_topics(settings)
    inputs = [names["ci.logs"], names["ci.tests"]]
    what = f"{load.kind} with {n} worker(s)"
    workers: list[Worker] = []
    t_begin = time.monotonic()
    try:
        asyncio.run(ensure_topics(settings))
        workers = start_workers(n, bootstrap, prefix, app_id, work_dir / rid)
        ready = asyncio.run(wait_ready(bootstrap, app_id, workers, inputs, timeout))
        base, warm_seconds = [0] * n, 0.0
        if warmup and load.warmup:
            t = time.monotonic()
            asyncio.run(produce(bootstrap, load.warmup, names))
            warm = poll_counts(workers, load.counter, load.warmup_total, timeout, f"{what}, warm-up")
            base, warm_seconds = [h[-1][1] if h else 0 for h in warm], time.monotonic() - t
        own = [os.getpid(), *(w.proc.pid for w in workers), *([broker_pid] if broker_pid else [])]
        cpu_before = cpu_seconds(own)
        syncs = sum(w.syncs() for w in workers)
        start = time.time()
        asyncio.run(produce(bootstrap, load.messages, names))
        produced = time.time()
        history = poll_counts(workers, load.counter, load.total, timeout, what, base)
        others = others_cpu(cpu_before, cpu_seconds(own) if broker_pid else None)
        rebalances = sum(w.syncs() for w in workers) - syncs
        lo, hi = end_bracket(history, start)
        times = [t for topic in end_topics(load.kind, settings, app_id)
                 for t in asyncio.run(record_times(bootstrap, topic, lo - 1.0))]
        fine = refine_end(times, lo, hi)
        end = fine if fine is not None else hi
        seconds = end - start
        counts = [h[-1][1] if h else 0 for h in history]
        return {"workload": load.kind, "workers": n, "seconds": round(seconds, 3),
                "rate": round(load.total / seconds, 1), "count": sum(counts), "per_worker": counts,
                "produce_seconds": round(produced - start, 3), "ready_seconds": round(ready, 2),
                "warmup_seconds": round(warm_seconds, 2),
                "end_signal": "records" if fine is not None else "status",
                "status_bracket": [round(lo - start, 3), round(hi - start, 3)], "rebalances_during": rebalances,
                **others}
    finally:
        stop_workers(workers)
        try:
            asyncio.run(delete_topics(bootstrap, all_topics))
        except Exception as exc:  # the next measurement uses other topics: not worth failing the run
            say(f"  (could not delete the topics of {what}: {exc!r})")
        say(f"  ({what}: {time.monotonic() - t_begin:.1f}s with start and stop)")


# ------------------------------------------------------------------------------------------ parent


def summarize(results: dict[str, dict[int, list[dict[str, Any]]]]) -> tuple[dict[str, dict[str, float]],
                                                                               dict[str, dict[str, float]]]:
    """Per workload, the median rate per worker count and its speed-up over the first count."""
    rates = {kind: {str(n): round(statistics.median(x["rate"] for x in runs), 1) for n, runs in per.items()}
             for kind, per in results.items()}
    speedup = {kind: {n: round(v / next(iter(per.values())), 2) for n, v in per.items()} for kind, per in rates.items()}
    return rates, speedup


def run(args: argparse.Namespace, counts: list[int]) -> int:
    from healing_guard.brokers import BrokerError

    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # a new partition's leader election: retried sends
    _progress["stream"] = sys.stderr if args.json else sys.stdout
    t_start = time.monotonic()

    def elapsed() -> str:
        return f"{time.monotonic() - t_start:.0f}s"

    say(f"generating the workloads: {args.lines:,} log lines; {args.tests:,} tests x {args.reports} reports")
    loads = [log_load(args.lines, args.seed, args.chunk_lines), results_load(args.tests, args.reports, args.seed)]
    for ld in loads:
        say(f"  {ld.kind}: {ld.total:,} {ld.counter} in {len(ld.messages):,} messages, {ld.size_bytes / 1e6:.1f} MB, "
            + ", ".join(f"{k} {v:,}" for k, v in ld.detail.items()))
    results: dict[str, dict[int, list[dict[str, Any]]]] = {ld.kind: {n: [] for n in counts} for ld in loads}
    try:
        with _pipeline().kafka_broker("bench-scaling-", BROKER_PROPERTIES) as (bootstrap, work_dir, broker):
            say(f"Apache Kafka on {bootstrap} (data in {work_dir}); {os.cpu_count()} cores, {PARTITIONS} partitions "
                f"[{elapsed()}]")
            for r in range(1, args.runs + 1):
                for ld in loads:
                    for n in counts:
                        say(f"run {r}/{args.runs} {ld.kind}, {n} worker(s) [{elapsed()}]")
                        try:
                            res = measure(bootstrap, ld, n, work_dir, args.timeout, args.warmup, broker.pid)
                        except BenchError as exc:
                            say(f"run {r} {ld.kind} with {n} worker(s) failed: {exc}")
                            return 1
                        res["run"] = r
                        results[ld.kind][n].append(res)
                        say(f"run {r} {ld.kind:12s} {n} worker(s): {ld.total:,} {ld.counter} in {res['seconds']:.2f}s = "
                            f"{res['rate']:,.0f}/s  (producing {res['produce_seconds']:.2f}s; end by "
                            f"{res['end_signal']}, status bracket {res['status_bracket']}; per worker "
                            f"{res['per_worker']}; rebalances {res['rebalances_during']}; ready after "
                            f"{res['ready_seconds']:.1f}s, warm-up {res['warmup_seconds']:.1f}s; other processes' CPU "
                            f"{res['other_cpu_seconds']}s, steal {res['steal_seconds']}s) [{elapsed()}]")
                        if res["rebalances_during"]:
                            say(f"  warning: the group rebalanced {res['rebalances_during']} time(s) during it")
    except BrokerError as exc:
        say(f"Kafka: {exc}")
        return 1

    rates, speedup = summarize(results)
    for kind, per in rates.items():
        say(f"{kind}/s (median of {args.runs}): " + ", ".join(f"{n} worker(s) {v:,.0f} (x{speedup[kind][n]:.2f})"
                                                                for n, v in per.items()))
    wall = time.monotonic() - t_start
    say(f"{os.cpu_count()} cores shared by the broker, the producer and the workers; wall time {wall:.0f}s")
    if args.json:
        print(json.dumps({
            "cores": os.cpu_count(), "partitions": PARTITIONS, "workers": counts, "runs": args.runs, **rates,
            "speedup": speedup, "lines": loads[0].total, "results": loads[1].total, "tests": args.tests,
            "reports": args.reports, "warmup": args.warmup, "broker_properties": BROKER_PROPERTIES,
            "wall_seconds": round(wall, 1),
            "measurements": [x for per in results.values() for runs in per.values() for x in runs]}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2,4", help="worker counts to measure, comma separated (the first is the "
                   "speed-up's base)")
    p.add_argument("--lines", type=int, default=1_000_000, help="log lines (whole sample jobs, so a few more)")
    p.add_argument("--tests", type=int, default=20_000, help="tests of the synthetic monorepo")
    p.add_argument("--reports", type=int, default=5, help="reports (runs of every test)")
    p.add_argument("--runs", type=int, default=2, help="measurements of each (workload, workers); medians reported")
    p.add_argument("--chunk-lines", type=int, default=500, help="lines per ci.logs chunk")
    p.add_argument("--seed", type=int, default=7, help="seed of both workloads")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="give up on a group's start, or a measurement, after this many seconds")
    p.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="before each measurement, a little traffic on every partition until counted")
    p.add_argument("--json", action="store_true", help="one JSON object as the last stdout line")
    args = p.parse_args(argv)
    try:
        counts = [int(x) for x in args.workers.split(",")]
    except ValueError:
        p.error("--workers: comma-separated integers, e.g. 1,2,4")
    if not counts or min(counts) < 1 or max(counts) > PARTITIONS:
        p.error(f"--workers: each between 1 and {PARTITIONS} (the partitions)")
    if min(args.lines, args.tests, args.reports, args.runs, args.chunk_lines) < 1:
        p.error("--lines, --tests, --reports, --runs and --chunk-lines must be >= 1")
    return run(args, list(dict.fromkeys(counts)))


if __name__ == "__main__":
    sys.exit(main())
