"""``guard executor``: consume ``guard.actions``, carry commands out, publish ``guard.outcomes``.

The consumer group is ``<app_id>-executor``; offsets are committed by hand, after the outcome of a
message has been acknowledged by the broker, so a crash re-delivers at most the commands in flight
(which the :class:`DoneStore` then answers without calling any API). A ``retry_backoff`` command is
written to the :class:`ScheduleStore` instead, due its backoff after the command was produced, and its
offset committed: the commands behind it go on, and a restart picks the schedule up from disk.

One outcome message per carried-out command: once the broker acknowledged an outcome the store marks it
published, and a duplicate or redelivered command whose outcome is already out is dropped (counted
``duplicate``). At start, outcomes the store holds but never published -- the executor was killed after
the calls, or mid-command (the ``interrupted:`` outcomes the store made at start) -- are published first.
A kill between the broker's acknowledgement and the ``published`` mark can still repeat one identical
outcome message; consumers of ``guard.outcomes`` keep the first per ``command_id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Optional

import typer

from .. import metrics
from ..brokers import consumer_drained
from ..schemas import Command, SchemaError
from ..settings import ConfigError, Settings, load_settings
from ..signing import keyring_of
from .clients import Clients
from .core import DoneStore, Executor, ScheduleStore, repo_entry

log = logging.getLogger("healing_guard.executor")

#: longest time one command may hold the consumer (rate-limit waits + HTTP retries; backoffs are scheduled)
MAX_POLL_INTERVAL_MS = 3_600_000


async def run_executor(settings: Settings, *, dry_run: bool, data_dir: str | Path, once: bool = False,
                       clients: Clients | None = None, env: Mapping[str, str] | None = None,
                       stop: asyncio.Event | None = None, repos: Iterable[str] | None = None) -> dict[str, int]:
    """Run until ``stop`` is set (or, with ``once``, until the assigned partitions are drained).

    ``repos``: the repositories the executor acts on (``owner/name``, ``owner/*``); none: any (warned).

    Returns counts per outcome status (plus ``deadletter``, ``scheduled``, ``duplicate``: commands whose
    outcome was already published, and ``recovered``: outcomes published at start). With ``once``,
    scheduled commands are waited for.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from ..engine.core import dead_letter
    from ..kafka_auth import client_options
    from .authn import CommandGate

    t = settings.topics
    clients = clients or Clients.from_env(env)
    store = DoneStore(data_dir)
    executor = Executor(clients, store, dry_run=dry_run, repos=repos,
                        runner_sizes=("next", *settings.price_per_minute_usd),
                        slack_channel=settings.notify_slack_channel, budget_slack_channel=settings.budget_alert_channel)
    schedule = ScheduleStore(data_dir)
    gate = CommandGate.from_settings(settings)  # signed commands only, when a command key is configured
    consumer = AIOKafkaConsumer(
        t.actions, bootstrap_servers=settings.bootstrap, group_id=f"{settings.app_id}-executor",
        enable_auto_commit=False, auto_offset_reset="earliest", max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        **client_options(settings),
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=5,
                                **client_options(settings))
    counts: dict[str, int] = {}
    await consumer.start()
    await producer.start()
    log.info("executor on %s (%s), services: %s", t.actions, "dry run" if dry_run else "LIVE",
             ", ".join(clients.configured()) or "none")

    def count(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    async def perform(cmd: Command, *, waited: bool = False) -> None:
        if store.was_published(cmd.command_id):
            count("duplicate")
            log.info("duplicate %s %s: its outcome is already published", cmd.action, cmd.command_id)
            return
        with metrics.WORKER.executing():
            outcome = await asyncio.to_thread(executor.execute, cmd, waited=waited)
        await producer.send_and_wait(t.outcomes, key=cmd.job_key.encode(), value=outcome.to_json())
        store.mark_published(cmd.command_id)  # stored outcomes only (skipped / dry_run are not stored)
        count(outcome.status)
        log.info("%s %s %s: %s", outcome.status, cmd.action, cmd.job_key, outcome.detail[:200])

    try:
        for out in store.unpublished():  # stopped before publishing (or mid-command: interrupted)
            await producer.send_and_wait(t.outcomes, key=out.job_key.encode(), value=out.to_json())
            store.mark_published(out.command_id)
            count(out.status)
            count("recovered")
            log.warning("published at start %s %s: %s", out.status, out.command_id, out.detail[:300])
        idle = 0
        for cmd in schedule.commands():  # scheduled before and now refused (e.g. a backoff of 1e12 s): answer now
            if executor.refusal(cmd) is not None:
                await perform(cmd)
                schedule.published(cmd.command_id)
        if len(schedule):
            log.info("%d scheduled command(s) waiting for their backoff", len(schedule))
        while stop is None or not stop.is_set():
            for cmd in schedule.due(time.time()):
                await perform(cmd, waited=True)
                schedule.published(cmd.command_id)
            nxt = schedule.next_due()
            timeout = 500 if nxt is None else int(min(500, max(10, (nxt - time.time()) * 1000)))
            batch = await consumer.getmany(timeout_ms=timeout, max_records=100)
            if not batch:
                idle += 1
                if once and not len(schedule) and await consumer_drained(consumer, idle):
                    break
                continue
            idle = 0
            for tp, records in batch.items():
                for r in records:
                    try:
                        cmd = gate.command(r)  # SchemaError when refused (unsigned, bad signature)
                    except SchemaError as exc:
                        dl = dead_letter(r.topic, r.value, exc.reason, field_name=exc.field, key=r.key,
                                         partition=r.partition, offset=r.offset)
                        await producer.send_and_wait(t.deadletter, key=r.key, value=dl.to_json())
                        count("deadletter")
                    else:
                        wait = executor.backoff_of(cmd)
                        if wait > 0:
                            # due its backoff after the command was made, so a restart does not wait again
                            made = r.timestamp / 1000 if r.timestamp and r.timestamp > 0 else time.time()
                            if schedule.add(cmd, made + wait):
                                count("scheduled")
                                log.info("scheduled %s %s in %.0f s", cmd.action, cmd.job_key,
                                         made + wait - time.time())
                        else:
                            await perform(cmd)
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
    repo: Optional[list[str]] = typer.Option(
        None, "--repo", envvar="GUARD_EXECUTOR_REPOS",
        help="a repository the executor acts on (owner/name, or owner/* for all of an owner's); repeatable; "
             "GUARD_EXECUTOR_REPOS: space-separated. Commands for any other repository are refused. "
             "None given: any repository (a warning is logged)"),
    allow_unsigned: bool = typer.Option(
        False, "--allow-unsigned", envvar="GUARD_EXECUTOR_ALLOW_UNSIGNED",
        help="with --live and no command key: act on unsigned commands anyway (anyone who can write the "
             "actions topic can then make the executor act; a test broker only)"),
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
    repos = list(repo or [])
    for r in repos:
        try:
            repo_entry(r)
        except ValueError as exc:
            typer.echo(f"--repo: {exc}", err=True)
            raise typer.Exit(2) from None
    if s.broker_url == "embedded":
        typer.echo("the executor needs the guard's broker: pass --broker kafka://host:port", err=True)
        raise typer.Exit(2)
    try:
        signed = bool(keyring_of(s))
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not dry_run and not signed and not allow_unsigned:
        typer.echo("a live executor acts only on signed commands, and no command key is configured: make one with "
                   "`python -m healing_guard.signing new-key guard-command.keys` and give the same file to the worker, "
                   "the API and the executor (GUARD_COMMAND_KEY_FILE, or GUARD_COMMAND_KEY); "
                   "--allow-unsigned acts on unsigned commands (a test broker only)", err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..logs import show_decisions

    show_decisions(s.log_level)  # what it carried out, one line per command, at the default level too
    d = data_dir if data_dir is not None else Path(s.data_dir)
    if s.metrics_port:  # remediation_duration_seconds{stage="execute"} (the other series stay at zero here)
        try:
            metrics.start_metrics_server(s.metrics_host, s.metrics_port)
        except OSError as exc:
            typer.echo(f"metrics: cannot serve on {s.metrics_host}:{s.metrics_port} ({exc}); running without "
                       "/metrics", err=True)
    try:
        counts = asyncio.run(run_executor(s, dry_run=dry_run, data_dir=d, once=once, repos=repos))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    typer.echo(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no commands")
