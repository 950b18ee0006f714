"""``guard demo``: the whole guard on the embedded defaults, over bundled sample traffic.

Starts Tansu (the embedded Kafka-protocol broker) on loopback, runs the real Faust worker in this
process with a chDB data directory, replays the sample jobs with a Kafka producer the way a log
forwarder and webhooks would, prints each diagnosis and command as it appears on the topics, then
stops the worker (which flushes its facts) and prints the ROI summary queried from ClickHouse.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
import uuid
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .settings import Settings


def run_demo(s: Settings, *, jobs: int, seed: int, quiet: bool, timeout: float, console: Console) -> int:
    from .brokers import BrokerError, TansuBroker
    from .samples import generate, messages
    from .streams.guard import build_guard
    from .streams.topics import ensure_topics

    # The sample's clock is shifted so that its traffic ends now: `guard report` and the dashboard's
    # default 30-day window show it. (Shifting keeps the traffic identical for a seed.)
    base = 1_767_225_600.0
    sample = generate(jobs, seed, start=base)
    end = max((j.completed.completed_at or 0.0) for j in sample) if sample else base
    sample = generate(jobs, seed, start=base + (time.time() - 60.0 - end))
    failed = [j for j in sample if j.completed.conclusion in ("failure", "timed_out")]
    msgs = list(messages(sample))
    total_lines = sum(len(c.lines) for j in sample for c in j.chunks)
    console.print(f"[bold]sample traffic:[/bold] {len(sample)} jobs ({len(failed)} failed) on 4 platforms, "
                  f"{len(msgs)} messages, {total_lines:,} log lines")
    try:
        tansu = TansuBroker()
        bootstrap = tansu.start()
    except BrokerError as exc:
        console.print(f"[red]cannot start the embedded broker:[/red] {exc}")
        return 1
    console.print(f"embedded broker (Tansu) on {bootstrap}; ClickHouse engine (chDB) at {s.clickhouse_dsn}")
    run = uuid.uuid4().hex[:6]
    s = dataclasses.replace(
        s, broker_url=f"kafka://{bootstrap}", app_id=f"guard-demo-{run}", clickhouse_database="guard_demo",
        partitions=2, fact_flush_seconds=0.5, test_grace_seconds=1.0, chunk_grace_seconds=5.0,
    )
    state: dict[str, Any] = {"code": 1}
    try:
        from .warehouse.client import WarehouseConnectionError
        from .warehouse.migrate import MigrationError

        try:
            client = _reset_database(s)
        except (WarehouseConnectionError, MigrationError) as exc:
            console.print(f"[red]cannot open the embedded ClickHouse:[/red] {exc}\n"
                          "Is another `guard demo` running? Use --data-dir to pick another directory.")
            return 1
        asyncio.run(ensure_topics(s))
        from .warehouse.writer import FactWriter

        from .pipeline import Engine

        # the sample is history replayed in a minute: decide at each job's completion time, as if live
        guard = build_guard(s, engine=Engine(s, event_time=True),
                            writer_factory=lambda: FactWriter(client, s.clickhouse_database))

        @guard.app.task
        async def drive() -> None:
            try:
                state["code"] = await _drive(s, guard, msgs, failed, quiet, timeout, console)
            except Exception as exc:  # show it, then stop the worker
                console.print(f"[red]demo failed:[/red] {exc!r}")
                state["code"] = 1
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        from .cli import _run_worker

        _run_worker(guard.app, s)
        if state["code"] == 0:
            _print_roi(s, client, console)
        return int(state["code"])
    finally:
        tansu.stop()


def _reset_database(s: Settings) -> Any:
    """The demo starts from an empty database; chDB allows one open data directory per process, so
    this one client serves the worker's fact sink and the final ROI query."""
    from .warehouse.client import connect
    from .warehouse.migrate import migrate

    client = connect(s.clickhouse_dsn)
    client.command(f"DROP DATABASE IF EXISTS {s.clickhouse_database}")
    migrate(client, s.clickhouse_database)
    return client


async def _drive(s: Settings, guard: Any, msgs: list[tuple[str, bytes, bytes]], failed: list[Any], quiet: bool,
                 timeout: float, console: Console) -> int:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    t = s.topics
    names = {"ci.logs": t.logs, "ci.jobs": t.jobs, "ci.tests": t.tests}
    consumer = AIOKafkaConsumer(t.findings, t.actions, bootstrap_servers=s.bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap, linger_ms=5, max_request_size=16 << 20)
    await consumer.start()
    await producer.start()
    deadline = time.monotonic() + timeout
    findings: dict[str, dict[str, Any]] = {}
    commands: dict[str, dict[str, Any]] = {}
    expected = {j.completed.job_key: j.expected_category for j in failed}
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            send = progress.add_task("replaying CI traffic", total=len(msgs))
            done = progress.add_task("jobs diagnosed", total=len(failed))
            pending = []
            for i, (topic, key, value) in enumerate(msgs):
                pending.append(await producer.send(names[topic], key=key, value=value))
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
                    progress.update(send, completed=i + 1)
                    await _poll(consumer, findings, commands, 0, progress, done, console, quiet, expected)
            await asyncio.gather(*pending)
            progress.update(send, completed=len(msgs))
            while len(commands) < len(failed) and time.monotonic() < deadline:
                await _poll(consumer, findings, commands, 500, progress, done, console, quiet, expected)
        if len(commands) < len(failed):
            console.print(f"[red]timed out: {len(commands)} of {len(failed)} failed jobs got a command[/red]")
            return 1
        # the sink flushes every fact_flush_seconds; wait until it has been idle, then stop the worker
        idle_since = time.monotonic()
        last = guard.stats.facts_written
        while time.monotonic() - idle_since < 3 * s.fact_flush_seconds + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            if guard.stats.facts_written != last:
                last, idle_since = guard.stats.facts_written, time.monotonic()
        hits = sum(1 for k, f in findings.items() if f["category"] == (expected.get(k) or "unknown"))
        console.print(f"diagnosed {len(findings)} failed jobs; category matched the sample's label for "
                      f"{hits}/{len(findings)}; {guard.stats.dead_letters} dead letters; "
                      f"{guard.stats.facts_written} facts written so far")
        return 0
    finally:
        await producer.stop()
        await consumer.stop()


async def _poll(consumer: Any, findings: dict[str, Any], commands: dict[str, Any], timeout_ms: int, progress: Any,
                task: Any, console: Console, quiet: bool, expected: dict[str, Any]) -> None:
    batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=1000)
    for tp, records in batch.items():
        for r in records:
            d = orjson.loads(r.value)
            key = r.key.decode()
            if tp.topic.endswith("findings"):
                findings[key] = d
            else:
                if key in commands:
                    continue
                commands[key] = d
                progress.update(task, completed=len(commands))
                if not quiet:
                    ev = d["evidence"][0]["text"][:90] if d["evidence"] else ""
                    mark = "" if d["category"] == (expected.get(key) or "unknown") else " [yellow](label: " \
                        f"{expected.get(key)})[/yellow]"
                    console.print(f"[cyan]{key}[/cyan] [bold]{d['category']}[/bold] ({d['confidence']:.2f}){mark} "
                                  f"-> [green]{d['action']}[/green]  {d['reason'][:80]}\n    [dim]{ev}[/dim]",
                                  highlight=False)


def _print_roi(s: Settings, client: Any, console: Console) -> None:
    from .roi_view import print_report
    from .warehouse.read import WarehouseReader

    reader = WarehouseReader.from_settings(client, s)
    console.print("[bold]queried from ClickHouse[/bold] (definitions: README, \"ROI definitions\")")
    print_report(console, reader.report(days=30), None, s.human_response_minutes)
    console.print(f"again: [bold]guard report --database {s.clickhouse_database}[/bold]; REST API and dashboard: "
                  f"[bold]guard api --database {s.clickhouse_database}[/bold] (keys: guard api-keys create --all)",
                  highlight=False)
