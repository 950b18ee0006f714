"""``guard executor``: consume ``guard.actions``, carry commands out, publish ``guard.outcomes``.

The consumer group is ``<app_id>-executor``; offsets are committed by hand, after the outcome of a
message has been acknowledged by the broker, so a crash re-delivers at most the commands in flight
(which the :class:`DoneStore` then answers without calling any API).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import typer

from ..brokers import consumer_drained
from ..schemas import Command, SchemaError
from ..settings import ConfigError, Settings, load_settings
from .clients import Clients
from .core import DoneStore, Executor

log = logging.getLogger("healing_guard.executor")

#: longest time one command may hold the consumer (backoff + rate-limit waits + HTTP retries)
MAX_POLL_INTERVAL_MS = 3_600_000


async def run_executor(settings: Settings, *, dry_run: bool, data_dir: str | Path, once: bool = False,
                       clients: Clients | None = None, env: Mapping[str, str] | None = None,
                       stop: asyncio.Event | None = None) -> dict[str, int]:
    """Run until ``stop`` is set (or, with ``once``, until the assigned partitions are drained).

    Returns counts per outcome status (plus ``deadletter``).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from ..pipeline import dead_letter

    t = settings.topics
    clients = clients or Clients.from_env(env)
    executor = Executor(clients, DoneStore(data_dir), dry_run=dry_run)
    consumer = AIOKafkaConsumer(
        t.actions, bootstrap_servers=settings.bootstrap, group_id=f"{settings.app_id}-executor",
        enable_auto_commit=False, auto_offset_reset="earliest", max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=5)
    counts: dict[str, int] = {}
    await consumer.start()
    await producer.start()
    log.info("executor on %s (%s), services: %s", t.actions, "dry run" if dry_run else "LIVE",
             ", ".join(clients.configured()) or "none")
    try:
        idle = 0
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=100)
            if not batch:
                idle += 1
                if once and await consumer_drained(consumer, idle):
                    break
                continue
            idle = 0
            for tp, records in batch.items():
                for r in records:
                    try:
                        cmd = Command.from_json(r.value or b"")
                    except SchemaError as exc:
                        dl = dead_letter(r.topic, r.value, exc.reason, field_name=exc.field, key=r.key,
                                         partition=r.partition, offset=r.offset)
                        await producer.send_and_wait(t.deadletter, key=r.key, value=dl.to_json())
                        counts["deadletter"] = counts.get("deadletter", 0) + 1
                    else:
                        outcome = await asyncio.to_thread(executor.execute, cmd)
                        await producer.send_and_wait(t.outcomes, key=cmd.job_key.encode(), value=outcome.to_json())
                        counts[outcome.status] = counts.get(outcome.status, 0) + 1
                        log.info("%s %s %s: %s", outcome.status, cmd.action, cmd.job_key, outcome.detail[:200])
                    await consumer.commit({TopicPartition(tp.topic, tp.partition): r.offset + 1})
    finally:
        await producer.stop()
        await consumer.stop()
    return counts



def executor_command(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="healing-config.yml (or GUARD_CONFIG)"),
    broker: Optional[str] = typer.Option(None, "--broker", help="kafka://host:port (GUARD_BROKER_URL)"),
    dry_run: bool = typer.Option(True, "--dry-run/--live",
                                 help="--live calls the CI and notification APIs; the default only reports"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir",
                                            help="where the executed-command log lives (default: storage.data_dir)"),
    once: bool = typer.Option(False, "--once", help="stop when the actions topic is drained"),
) -> None:
    """Carry out the guard's commands: re-runs on GitHub/GitLab/Jenkins/CircleCI, Slack/Jira/PagerDuty.

    Credentials come from GUARD_GITHUB_TOKEN, GUARD_GITLAB_TOKEN, GUARD_JENKINS_URL/_USER/_TOKEN,
    GUARD_CIRCLECI_TOKEN, GUARD_SLACK_WEBHOOK_URL, GUARD_JIRA_URL/_USER/_TOKEN/_PROJECT and
    GUARD_PAGERDUTY_ROUTING_KEY.
    """
    try:
        s = load_settings(config, broker_url=broker)
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    if s.broker_url == "embedded":
        typer.echo("the executor needs the guard's broker: pass --broker kafka://host:port", err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    d = data_dir if data_dir is not None else Path(s.data_dir)
    try:
        counts = asyncio.run(run_executor(s, dry_run=dry_run, data_dir=d, once=once))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    typer.echo(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no commands")
