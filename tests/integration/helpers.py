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
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


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
