"""Replay recorded CI traffic through the real guard on the embedded defaults (``guard demo``,
``guard backtest``).

Starts Tansu (the embedded Kafka-protocol broker) on loopback, resets a chDB database, runs the real Faust
worker in this process in event-time mode (each decision is dated at its job's completion, so a day of
history replayed in a minute dates its findings, commands and budget days as if live), produces the
records with a Kafka producer the way a log forwarder and webhooks would, collects what appears on
``guard.findings`` and ``guard.actions``, and stops the worker once every failed job has its command (or
nothing new has come for a while), after the fact sink has flushed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .settings import Settings
from .topics import DEFAULT_TOPICS, INPUT_TOPICS

#: (topic without prefix, one of topics.INPUT_TOPICS: ci.jobs | ci.logs | ci.tests, key, value)
Message = tuple[str, bytes, bytes]


@dataclass
class ReplayResult:
    code: int = 1
    #: (job key, attempt) -> the finding on guard.findings
    findings: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    #: every command on guard.actions, in arrival order
    commands: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: int = 0
    facts_written: int = 0
    waited_out: bool = False  # stopped because nothing new came, not because every failed job was decided


def _records(msgs: Sequence[Message], topic: str) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(key, JSON object) of each message on ``topic``; what is not a JSON object is left out."""
    for t, key, value in msgs:
        if t != topic:
            continue
        try:
            rec = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            yield key, rec


def failed_results(msgs: Sequence[Message]) -> int:
    """How many test results in ``msgs`` failed or errored: the test risks the test agent will send."""
    return sum(r.get("outcome") in ("failed", "error") for _key, r in _records(msgs, DEFAULT_TOPICS.tests))


def completed_attempts(msgs: Sequence[Message]) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
    """(job key, attempt) of every completed job event in ``msgs``, and of those that failed or timed out."""
    done: set[tuple[str, int]] = set()
    failed: set[tuple[str, int]] = set()
    for key, ev in _records(msgs, DEFAULT_TOPICS.jobs):
        if ev.get("status") == "completed":
            k = (key.decode("utf-8", "replace"), int(ev.get("attempt") or 1))
            done.add(k)
            if ev.get("conclusion") in ("failure", "timed_out"):
                failed.add(k)
    return done, failed


def replay(s: Settings, msgs: Sequence[Message], *, database: str, console: Console, timeout: float,
           idle_seconds: float = 20.0, app_name: str = "replay", label: str = "replaying CI traffic",
           on_command: Callable[[dict[str, Any]], None] | None = None) -> tuple[ReplayResult, Any]:
    """Run the replay; returns the result and the open warehouse client (for ROI queries), or None as the
    client when the embedded broker or database could not start (``result.code`` is 1, said on
    ``console``)."""
    from .brokers import BrokerError, TansuBroker
    from .engine.core import Engine
    from .streams.worker import build_guard
    from .streams.topics import ensure_topics
    from .warehouse.client import WarehouseConnectionError
    from .warehouse.migrate import MigrationError
    from .warehouse.writer import FactWriter

    result = ReplayResult()
    try:
        tansu = TansuBroker()
        bootstrap = tansu.start()
    except BrokerError as exc:
        console.print(f"[red]cannot start the embedded broker:[/red] {exc}")
        return result, None
    console.print(f"embedded broker (Tansu) on {bootstrap}; ClickHouse engine (chDB) at {s.clickhouse_dsn}",
                  highlight=False)
    s = dataclasses.replace(
        s, broker_url=f"kafka://{bootstrap}", app_id=f"guard-{app_name}-{uuid.uuid4().hex[:6]}",
        # one partition: the test agent learns the tests' results in the recorded order (its flaky prior and
        # retry-context model are shared by all tests), and the job agent decides in the recorded order too
        clickhouse_database=database, topic_prefix="", partitions=1, fact_flush_seconds=0.5,
        test_grace_seconds=1.0, chunk_grace_seconds=5.0,
        # the replay's own Tansu speaks plaintext: the configured broker's credentials are not for it
        broker_sasl_mechanism="", broker_username="", broker_password="", broker_tls=False,
    )
    try:
        try:
            client = _reset_database(s)
        except (WarehouseConnectionError, MigrationError) as exc:
            console.print(f"[red]cannot open the embedded ClickHouse:[/red] {exc}\n"
                          "Is another `guard demo` or `guard backtest` running? Use --data-dir to pick another "
                          "directory.")
            return result, None
        asyncio.run(ensure_topics(s))
        guard = build_guard(s, engine=Engine(s, event_time=True),
                            writer_factory=lambda: FactWriter(client, s.clickhouse_database))

        @guard.app.task
        async def drive() -> None:
            try:
                await _drive(s, guard, msgs, result, console, timeout, idle_seconds, label, on_command)
            except Exception as exc:  # show it, then stop the worker
                console.print(f"[red]{app_name} failed:[/red] {exc!r}")
                result.code = 1
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        from .streams.run import run_worker

        run_worker(guard.app, s)
        return result, client
    finally:
        tansu.stop()


def _reset_database(s: Settings) -> Any:
    """Replays start from an empty database; chDB allows one open data directory per process, so this
    one client serves the worker's fact sink and the queries afterwards."""
    from .warehouse.client import connect
    from .warehouse.migrate import migrate

    client = connect(s.clickhouse_dsn)
    client.command(f"DROP DATABASE IF EXISTS {s.clickhouse_database}")
    migrate(client, s.clickhouse_database)
    return client


async def _drive(s: Settings, guard: Any, msgs: Sequence[Message], result: ReplayResult, console: Console,
                 timeout: float, idle_seconds: float, label: str,
                 on_command: Callable[[dict[str, Any]], None] | None) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    t = s.topics
    names = {name: t.named(name) for name in INPUT_TOPICS}
    expected = completed_attempts(msgs)[1]
    risks_due = failed_results(msgs)
    risks = 0
    decided: set[tuple[str, int]] = set()
    consumer = AIOKafkaConsumer(t.findings, t.actions, t.test_risk, bootstrap_servers=s.bootstrap,
                                group_id=None, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap, linger_ms=5, max_request_size=16 << 20)
    await consumer.start()
    await producer.start()
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()

    async def poll(timeout_ms: int) -> None:
        nonlocal last_new, risks
        batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=1000)
        for tp, records in batch.items():
            for r in records:
                d = orjson.loads(r.value)
                key = (r.key.decode("utf-8", "replace"), int(d.get("attempt") or 1))
                last_new = time.monotonic()
                if tp.topic == t.test_risk:
                    risks += 1
                    continue
                if tp.topic == t.findings:
                    result.findings[key] = d
                    continue
                result.commands.append(d)
                if key not in decided and d.get("category") != "budget":
                    decided.add(key)
                    if on_command is not None:
                        on_command(d)
        progress.update(done, completed=len(decided & expected))

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            send = progress.add_task(label, total=len(msgs))
            done = progress.add_task("jobs diagnosed", total=len(expected))
            pending = []
            # The test results first, then everything else, each in the recorded order. Results travel on
            # their own topic and the job agent waits only a moment (test_grace_seconds) for the risks the
            # test agent derives from them; in a replay faster than life that race decides how a test
            # failure is handled. So the test agent judges every result first (each against the results
            # before it, as live) and the job agent finds a failure's risks waiting for it.
            tests = [m for m in msgs if m[0] == DEFAULT_TOPICS.tests]
            ordered = tests + [m for m in msgs if m[0] != DEFAULT_TOPICS.tests]
            for i, (topic, key, value) in enumerate(ordered):
                pending.append(await producer.send(names[topic], key=key, value=value))
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
                    progress.update(send, completed=i + 1)
                    await poll(0)
                if i + 1 == len(tests):  # every result sent: wait (a hang guard bounds it) for every risk
                    await asyncio.gather(*pending)
                    pending.clear()
                    since = time.monotonic()
                    while risks < risks_due and time.monotonic() - since < idle_seconds \
                            and time.monotonic() < deadline:
                        await poll(200)
            await asyncio.gather(*pending)
            progress.update(send, completed=len(msgs))
            last_new = time.monotonic()
            while not expected <= decided and time.monotonic() < deadline:
                await poll(500)
                if time.monotonic() - last_new > idle_seconds:
                    result.waited_out = True
                    break
        if not expected <= decided and not result.waited_out:
            console.print(f"[red]timed out: {len(decided & expected)} of {len(expected)} failed jobs got a "
                          "command[/red]")
            return
        # the sink flushes every fact_flush_seconds; wait until it has been idle, then stop the worker
        idle_since = time.monotonic()
        last = guard.stats.facts_written
        while time.monotonic() - idle_since < 3 * s.fact_flush_seconds + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await poll(0)
            if guard.stats.facts_written != last:
                last, idle_since = guard.stats.facts_written, time.monotonic()
        result.dead_letters = guard.stats.dead_letters
        result.facts_written = guard.stats.facts_written
        result.code = 0
    finally:
        await producer.stop()
        await consumer.stop()
