"""The only worker SIGKILLed mid-stream on a busy host, on real Apache Kafka: nothing lost, nothing twice.

300 failed jobs stream in at 30 jobs/s while the one worker of the group is killed with SIGKILL (no chance
to commit or flush) at a chosen moment and restarted 2 s later, with three busy-looping processes beside it
(production hosts are busy; the guarantee must not rest on spare CPU). Then the *whole* ``guard.actions``
topic is read and every job's commands are counted: each job must have exactly one decision (one command
id; the same command delivered twice is allowed, the executor drops repeats by id), and every decision must
be the one its whole log gives (an out-of-memory re-run, not ``unknown`` from a partial window).

Slow (minutes): run with ``make crash``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from healing_guard.settings import Settings
from healing_guard.streams.topics import ensure_topics

from .helpers import broker_settings, collect, oom_job, start_worker, stop_worker, worker_status

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.crash]

JOBS = int(os.environ.get("CRASH_JOBS", "300"))
RATE = 30.0  # jobs per second
#: log lines per job: enough that a busy worker falls behind on ci.logs while the small completion events on
#: ci.jobs run ahead (the topics are consumed independently)
LINES = int(os.environ.get("CRASH_LINES", "1500"))
async def _stream(bootstrap: str, prefix: str, sent: list[int]) -> None:
    """JOBS jobs at RATE jobs/s, each job's messages in order."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 << 20, linger_ms=5)
    await p.start()
    try:
        start = time.monotonic()
        for i in range(JOBS):
            for topic, key, value in oom_job(i, LINES, repos=7, first_id=90000):
                await p.send(prefix + topic, key=key, value=value)
            sent[0] = i + 1
            delay = start + (i + 1) / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await p.flush()
    finally:
        await p.stop()


def _facts(tmp_path: Path) -> tuple[str, ...]:
    """Facts written to chDB as a default worker does (CRASH_FACTS=0: --no-facts)."""
    if os.environ.get("CRASH_FACTS", "1") == "0":
        return ("chdb://unused", "--no-facts")
    return (f"chdb://{tmp_path / 'chdb'}",)


def _stop_all(busy: list[subprocess.Popen[bytes]], procs: list[subprocess.Popen[bytes]]) -> None:
    for b in busy:
        b.kill()
    for p in procs:
        if p.poll() is None:
            stop_worker(p)


def _busy(n: int = 3) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


async def _wait(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return False


#: commands on guard.actions that are not a job's decision
_NOT_DECISIONS = frozenset({"open_incident", "notify_budget", "escalate", "quarantine_test", "release_test"})


def count_commands(records: list[Any]) -> dict[str, Any]:
    """Per job: its distinct command ids and actions, from every record of guard.actions."""
    ids: dict[str, set[str]] = defaultdict(set)
    actions: dict[str, set[tuple[str, str]]] = defaultdict(set)
    copies: Counter[str] = Counter()
    for r in records:
        c = orjson.loads(r.value)
        if c.get("action") in _NOT_DECISIONS:  # an incident opened over many jobs, a budget alert
            continue
        key = f"{c['provider']}/{c['owner']}/{c['repo']}/{c['job_id']}"
        ids[key].add(c["command_id"])
        actions[key].add((c["action"], c["category"]))
        copies[c["command_id"]] += 1
    expected = {f"github/acme/svc{i % 7}/{90000 + i}" for i in range(JOBS)}
    return {
        "jobs": len(expected),
        "without_command": sorted(expected - set(ids)),
        "two_commands": sorted(k for k, v in ids.items() if len(v) > 1),
        "partial": sorted(k for k, v in actions.items() if v != {("rerun_more_memory", "oom")}),
        "delivered_twice": sum(1 for n in copies.values() if n > 1),
        "records": len(records),
    }


# the moments the worker dies: (name, kills as [(status key, at least)] on successive incarnations)
MOMENTS = [
    ("before-first-commit", [("chunks", 1)]),
    ("early", [("commands", 20)]),
    ("mid-stream", [("commands", 75)]),
    ("late", [("commands", 200)]),
    ("twice-and-during-rebalance", [("commands", 40), ("chunks", 1)]),
]


async def _await_all_commands(bootstrap: str, settings: Settings, proc: Any,
                              wait: float = 240) -> tuple[dict[str, Any], list[Any]]:
    """Read the whole guard.actions topic until every job has a command (or ``wait`` s), then 5 s more."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        counts = count_commands(await collect(bootstrap, settings.topics.actions, 1 << 30, 2.0, proc))
        if not counts["without_command"]:
            break
    records = await collect(bootstrap, settings.topics.actions, 1 << 30, 5.0, proc)  # late extras
    return count_commands(records), records


def _report(moment: str, counts: dict[str, Any], records: list[Any]) -> None:
    print(f"{moment}: {counts['jobs']} jobs; without a command {len(counts['without_command'])}; "
          f"two different commands {len(counts['two_commands'])}; decided from a partial window "
          f"{len(counts['partial'])}; commands delivered twice (same id) {counts['delivered_twice']}; "
          f"{counts['records']} records on guard.actions")
    for key in (counts["two_commands"] + counts["partial"])[:5]:
        print(key, [(c["action"], c["category"], c["confidence"], c["ts"], [e["line"] for e in c["evidence"]])
                    for c in map(orjson.loads, (r.value for r in records))
                    if f"{c['provider']}/{c['owner']}/{c['repo']}/{c['job_id']}" == key])
    assert not counts["without_command"], counts["without_command"][:20]
    assert not counts["two_commands"], counts["two_commands"][:20]
    assert not counts["partial"], counts["partial"][:20]


@pytest.mark.parametrize(("moment", "kills"), MOMENTS, ids=[m for m, _ in MOMENTS])
async def test_the_only_worker_killed_loses_nothing_and_decides_nothing_twice(
        kafka_bootstrap: str, tmp_path: Path, moment: str, kills: list[tuple[str, int]]) -> None:
    prefix = f"cm{uuid.uuid4().hex[:8]}."
    partitions = 4
    await ensure_topics(broker_settings(kafka_bootstrap, prefix, partitions))
    settings = broker_settings(kafka_bootstrap, prefix, partitions)
    busy = _busy()
    procs: list[subprocess.Popen[bytes]] = []
    sent = [0]
    try:
        log = tmp_path / "worker0.log"
        dsn, *extra = _facts(tmp_path)
        procs.append(start_worker(kafka_bootstrap, prefix, dsn, log, *extra, partitions=partitions))
        assert await _wait(lambda: bool(worker_status(log)), 120), log.read_text()[-3000:]
        streaming = asyncio.create_task(_stream(kafka_bootstrap, prefix, sent))
        for n, (stat, at_least) in enumerate(kills):
            worker, wlog = procs[-1], tmp_path / f"worker{n}.log"
            ok = await _wait(lambda: worker_status(wlog).get(stat, 0) >= at_least or worker.poll() is not None, 180)
            assert ok and worker.poll() is None, (moment, worker_status(wlog), wlog.read_text()[-3000:])
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            print(f"\n{moment}: worker {n} killed at {worker_status(wlog)} ({sent[0]} jobs sent)")
            await asyncio.sleep(2.0)
            nlog = tmp_path / f"worker{n + 1}.log"
            procs.append(start_worker(kafka_bootstrap, prefix, dsn, nlog, *extra, partitions=partitions))
        await streaming
        counts, records = await _await_all_commands(kafka_bootstrap, settings, procs[-1])
    finally:
        _stop_all(busy, procs)
    _report(moment, counts, records)


async def test_one_of_two_workers_killed_loses_nothing_and_decides_nothing_twice(kafka_bootstrap: str,
                                                                                 tmp_path: Path) -> None:
    """Two workers in one group on a busy host; one is SIGKILLed mid-stream and restarted 2 s later."""
    prefix = f"cm{uuid.uuid4().hex[:8]}."
    partitions = 4
    settings = broker_settings(kafka_bootstrap, prefix, partitions)
    await ensure_topics(settings)
    busy = _busy()
    procs: list[subprocess.Popen[bytes]] = []
    sent = [0]
    try:
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        for lg in logs:
            procs.append(start_worker(kafka_bootstrap, prefix, "chdb://unused", lg, "--no-facts", partitions=partitions))
        assert await _wait(lambda: all(worker_status(lg) for lg in logs), 120)
        await asyncio.sleep(6)  # the group settles (session timeout 4 s)
        streaming = asyncio.create_task(_stream(kafka_bootstrap, prefix, sent))
        assert await _wait(lambda: worker_status(logs[0]).get("commands", 0) >= 30 or procs[0].poll() is not None, 180)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        print(f"\ntwo workers: worker a killed at {worker_status(logs[0])} ({sent[0]} jobs sent)")
        await asyncio.sleep(2.0)
        procs.append(start_worker(kafka_bootstrap, prefix, "chdb://unused", tmp_path / "a2.log", "--no-facts",
                                  partitions=partitions))
        await streaming
        counts, records = await _await_all_commands(kafka_bootstrap, settings, procs[1])
    finally:
        _stop_all(busy, procs)
    _report("two workers, one killed", counts, records)


async def test_the_broker_killed_mid_stream_loses_nothing(tmp_path: Path) -> None:
    """A broker of its own, SIGKILLed (not stopped) while 300 jobs stream in, restarted on the same data and
    port; the worker and the producer reconnect. Every job that reached the broker gets one decision."""
    import os

    from healing_guard.brokers import KafkaBroker

    broker = KafkaBroker(tmp_path / "kafka")
    bootstrap = broker.start()
    prefix = f"cb{uuid.uuid4().hex[:8]}."
    partitions = 4
    settings = broker_settings(bootstrap, prefix, partitions)
    busy: list[subprocess.Popen[bytes]] = []
    proc: subprocess.Popen[bytes] | None = None
    sent = [0]
    try:
        await ensure_topics(settings)
        log = tmp_path / "worker.log"
        proc = start_worker(bootstrap, prefix, "chdb://unused", log, "--no-facts", partitions=partitions)
        assert await _wait(lambda: bool(worker_status(log)), 120)
        busy = _busy()
        streaming = asyncio.create_task(_stream(bootstrap, prefix, sent))
        assert await _wait(lambda: worker_status(log).get("commands", 0) >= 60, 180), worker_status(log)
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGKILL)
        print(f"\nbroker killed at {worker_status(log)} ({sent[0]} jobs sent)")
        await asyncio.sleep(2.0)
        assert await asyncio.to_thread(broker.start) == bootstrap
        await streaming
        assert proc.poll() is None, log.read_text()[-3000:]
        counts, records = await _await_all_commands(bootstrap, settings, proc)
    finally:
        _stop_all(busy, [] if proc is None else [proc])
        broker.stop()
    _report("broker killed", counts, records)


#: loaded into the first worker only (a ``sitecustomize`` on its PYTHONPATH): after CRASH_STALL_AFTER table
#: records, no changelog record reaches Kafka any more. This is the busy host made certain: the task that
#: drains Faust's producer buffer gets no turn before the worker dies. Commands are not held back.
_STALL = '''
import asyncio, os
from aiokafka import AIOKafkaProducer

_send, _seen, _after = AIOKafkaProducer.send, [0], int(os.environ["CRASH_STALL_AFTER"])


async def send(self, topic, *args, **kwargs):
    if topic.endswith("-changelog"):
        _seen[0] += 1
        if _seen[0] > _after:
            await asyncio.Event().wait()
    return await _send(self, topic, *args, **kwargs)


AIOKafkaProducer.send = send
'''


async def test_table_writes_still_in_the_producer_buffer_are_never_committed_past(kafka_bootstrap: str,
                                                                                  tmp_path: Path) -> None:
    """The operator's loss, made certain: table writes wait in Faust's producer buffer while offsets are
    committed, then the worker is SIGKILLed. faust-streaming's own flush gives up after 0.1 s and the commit
    goes past those writes: the jobs they belong to lost their windows for good. ``streams/flush.py`` makes
    the commit wait instead, so the restarted worker reads those messages again."""
    prefix = f"cs{uuid.uuid4().hex[:8]}."
    partitions = 4
    settings = broker_settings(kafka_bootstrap, prefix, partitions)
    await ensure_topics(settings)
    stall = tmp_path / "stall"
    stall.mkdir()
    (stall / "sitecustomize.py").write_text(_STALL)
    env = {"PYTHONPATH": os.pathsep.join([str(stall), os.environ.get("PYTHONPATH", "")]), "CRASH_STALL_AFTER": "400",
           "GUARD_COMMIT_INTERVAL_SECONDS": "0.5"}
    procs: list[subprocess.Popen[bytes]] = []
    sent = [0]
    try:
        logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
        procs.append(start_worker(kafka_bootstrap, prefix, "chdb://unused", logs[0], "--no-facts", env=env,
                                  partitions=partitions))
        assert await _wait(lambda: bool(worker_status(logs[0])), 120), logs[0].read_text()[-3000:]
        streaming = asyncio.create_task(_stream(kafka_bootstrap, prefix, sent))
        # the stall begins after about 30 jobs; the worker goes on reading (and, with Faust's flush,
        # committing) for a while, then dies
        await _wait(lambda: worker_status(logs[0]).get("commands", 0) >= 60 or procs[0].poll() is not None, 40)
        await asyncio.sleep(5)
        assert procs[0].poll() is None, logs[0].read_text()[-3000:]
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        print(f"\nstalled table writes: worker 0 killed at {worker_status(logs[0])} ({sent[0]} jobs sent)")
        procs.append(start_worker(kafka_bootstrap, prefix, "chdb://unused", logs[1], "--no-facts",
                                  partitions=partitions))
        await streaming
        counts, records = await _await_all_commands(kafka_bootstrap, settings, procs[1], wait=120)
    finally:
        _stop_all([], procs)
    _report("stalled table writes", counts, records)
