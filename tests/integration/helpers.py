"""Running the real worker as a subprocess, reading topics, and querying chDB from another process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from healing_guard.schemas import JobEvent, LogChunk
from healing_guard.settings import Settings, load_settings

T0 = 1_767_225_600.0
#: the end of a log that ran out of memory (the fault tests' jobs: each re-run with more memory)
OOM = [
    "[INFO] Running com.acme.ReportTest",
    'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space',
    "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3512)",
    "##[error]Process completed with exit code 1.",
]


def broker_settings(bootstrap: str, prefix: str, partitions: int = 4) -> Settings:
    """Settings of a worker on ``bootstrap`` whose topics and app id carry ``prefix``."""
    return load_settings(None, env={}, broker_url=f"kafka://{bootstrap}", topic_prefix=prefix,
                         partitions=partitions, app_id=prefix.rstrip("."))


def oom_job(i: int, noise: int = 300, *, repos: int = 5, first_id: int = 7000) -> list[tuple[str, bytes, bytes]]:
    """GitHub job ``first_id + i`` (repository ``svc{i % repos}``) that ran out of memory after ``noise``
    ordinary lines: its start, its log in chunks of 100 lines, then the completion event."""
    base: dict[str, Any] = dict(provider="github", owner="acme", repo=f"svc{i % repos}", job_id=str(first_id + i),
                                attempt=1)
    key = f"github/acme/svc{i % repos}/{first_id + i}".encode()
    lines = [f"2026-01-01T10:00:{n % 60:02d}Z step {n}: ok" for n in range(noise)] + OOM
    chunks = [lines[j:j + 100] for j in range(0, len(lines), 100)]
    out = [("ci.jobs", key, JobEvent(**base, job_name="build", status="in_progress", started_at=T0 + i).to_json())]
    for seq, part in enumerate(chunks):
        out.append(("ci.logs", key, LogChunk(**base, seq=seq, lines=part, first_line=1 + 100 * seq,
                                             eof=seq == len(chunks) - 1, ts=T0 + i).to_json()))
    out.append(("ci.jobs", key, JobEvent(**base, job_name="build", status="completed", conclusion="failure",
                                         exit_code=1, started_at=T0 + i, completed_at=T0 + i + 600,
                                         log_chunks=len(chunks)).to_json()))
    return out


def worker_status(log: Path) -> dict[str, Any]:
    """The worker's status file beside its log (``{}`` until it writes one)."""
    try:
        return dict(json.loads(log.with_suffix(".status.json").read_bytes()))
    except (FileNotFoundError, ValueError):
        return {}


async def guard_topics(bootstrap: str, tag: str, partitions: int) -> tuple[str, str, Settings]:
    """A fresh topic prefix and app id (``tag`` + a random suffix), their settings, and the guard's topics
    created with ``partitions`` partitions."""
    from healing_guard.streams.topics import ensure_topics

    prefix = f"{tag}{uuid.uuid4().hex[:8]}."
    app_id = prefix.rstrip(".")
    settings = load_settings(None, env={}, broker_url=f"kafka://{bootstrap}", topic_prefix=prefix,
                             partitions=partitions, app_id=app_id)
    await ensure_topics(settings)
    return prefix, app_id, settings


def start_worker(bootstrap: str, prefix: str, dsn: str, log: Path, *extra: str, env: dict[str, str] | None = None,
                 partitions: int = 2) -> subprocess.Popen[bytes]:
    e = dict(os.environ)
    e.update({"GUARD_STATUS_FILE": str(log.with_suffix(".status.json")), "GUARD_FACT_FLUSH_SECONDS": "0.3", "GUARD_TEST_GRACE_SECONDS": "1.5", "GUARD_LOG_LEVEL": "info",
              "GUARD_CLICKHOUSE_DATABASE": "guard_it"})
    e.update(env or {})
    cmd = [sys.executable, "-m", "healing_guard.cli", "worker", "--broker", f"kafka://{bootstrap}",
           "--topic-prefix", prefix, "--app-id", prefix.rstrip(".") or "guard-it", "--partitions", str(partitions),
           "--clickhouse-dsn", dsn, *extra]
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=e)


def wait_status(path: Path, key: str, want: int, timeout: float, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Wait until the worker's status file reports ``key >= want``."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}")
        try:
            status = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            status = {}
        if status.get(key, 0) >= want:
            return status
        time.sleep(0.2)
    raise AssertionError(f"worker status {key}={status.get(key)} < {want} after {timeout}s: {status}")


def wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the worker logs that it is ready (Faust's "[^Worker]: Ready"); fails with its log if it exits.
    No clock of its own: a worker that never gets ready is stopped by the suite's per-test timeout."""
    while b"[^Worker]: Ready" not in log.read_bytes():
        assert proc.poll() is None, f"worker exited with {proc.returncode}: {log.read_text(errors='replace')[-3000:]}"
        time.sleep(0.1)


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


async def produce(bootstrap: str, prefix: str, messages: list[tuple[str, bytes | None, bytes]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 << 20, linger_ms=5)
    await p.start()
    try:
        futs = [await p.send(prefix + topic, key=key, value=value) for topic, key, value in messages]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def wait_consumed(bootstrap: str, group: str, topic: str, timeout: float,
                        proc: subprocess.Popen[bytes] | None = None) -> dict[int, int]:
    """Wait until consumer group ``group`` has committed every partition of ``topic`` up to its end (what the
    worker acknowledges only when done with it, e.g. facts once written); returns the end offsets."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import TopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await probe.start()
    try:
        described = await admin.describe_topics([topic])
        tps = [TopicPartition(topic, p["partition"]) for d in described if d.get("error_code", 0) == 0
               for p in sorted(d.get("partitions", ()), key=lambda p: p["partition"])]
        if not tps:
            raise AssertionError(f"topic {topic} does not exist")
        deadline = time.monotonic() + timeout
        committed: dict[int, int] = {}
        ends: dict[int, int] = {}
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}")
            ends = {tp.partition: off for tp, off in (await probe.end_offsets(tps)).items()}
            offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
            committed = {tp.partition: meta.offset for tp, meta in offsets.items() if meta is not None}
            if all(committed.get(p, -1) >= end for p, end in ends.items() if end > 0):
                return ends
            await asyncio.sleep(0.2)
        raise AssertionError(f"{group} did not commit {topic} to its end within {timeout:.0f} s: "
                             f"committed {committed}, end {ends}")
    finally:
        await probe.stop()
        await admin.close()


async def collect(bootstrap: str, topic: str, want: int, timeout: float, proc: subprocess.Popen[bytes] | None = None,
                  settle: float = 0.0) -> list[Any]:
    """Read ``topic`` from the start until ``want`` records (then ``settle`` s more for extras) or timeout."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                         fetch_max_bytes=32 << 20, max_partition_fetch_bytes=32 << 20)
    await c.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}")
            batch = await c.getmany(timeout_ms=300)
            for records in batch.values():
                out.extend(records)
            if len(out) >= want:
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
    finally:
        await c.stop()
    return out


def hold_chdb(path: Path, cwd: Path | None = None) -> subprocess.Popen[str]:
    """Another process with the chDB directory ``path`` open (as an analyst's session or `guard api`
    would), until its stdin is closed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from healing_guard.warehouse import connect
            c = connect("chdb://{path}")
            print("ready", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    return holder


def chdb_query(dsn: str, database: str, queries: dict[str, str]) -> dict[str, Any]:
    """chDB lets one process open a data directory at a time: query it from a fresh interpreter."""
    code = textwrap.dedent(f"""
        import json
        from healing_guard.warehouse.client import connect
        c = connect({dsn!r})
        out = {{}}
        for name, sql in {queries!r}.items():
            out[name] = [list(r) for r in c.query(sql.format(db={database!r})).result_rows]
        print(json.dumps(out, default=str))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise AssertionError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])
