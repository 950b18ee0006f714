"""Carries out what a step (``engine/step.py``) returned: sends, table writes, indexes, counters, metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, cast

from faust.exceptions import NotReady

from .. import metrics
from ..signing import sign_headers
from ..engine.step import Count, Decided, Effect, Hold, NextAttempt, Resent, Send, Store, StoreMany, Wake
from ..logs import decision_line
from .context import AgentContext

#: one info line per diagnosed job (healing_guard/logs.py: shown at the default log level)
decisions = logging.getLogger("healing_guard.decisions")

#: sends that are counted: a finding, and a command (every message on guard.actions)
_COUNTED_SENDS = {"findings": "findings", "actions": "commands"}


async def apply(ctx: AgentContext, effects: Iterable[Effect], *, bulk_partition: int | None = None) -> None:
    """In the order given: a decided window's marker must be written after the commands it guards.

    ``bulk_partition``: consecutive table writes are written together (:func:`write_table`) with their
    changelog records on that partition (the partition of the message being handled), and awaited."""
    stats = ctx.stats
    for e in effects:
        if isinstance(e, StoreMany):
            await write_table(ctx, e, bulk_partition)
        elif isinstance(e, Send):
            counter = _COUNTED_SENDS.get(e.topic)
            if counter is not None:
                setattr(stats, counter, getattr(stats, counter) + 1)
            # a command carries its signature (healing_guard/signing.py; none when no key is configured)
            headers = sign_headers(ctx.settings, e.value) if e.topic == "actions" else None
            await getattr(ctx.topics, e.topic).send(key=e.key, value=e.value, partition=e.partition,
                                                    headers=headers)
        elif isinstance(e, Store):
            table = getattr(ctx.tables, e.table)
            if e.value is None:
                table.pop(e.key, None)
            else:
                table[e.key] = e.value
        elif isinstance(e, Wake):
            if e.at is None:
                stats.deadlines.pop(e.key, None)
            else:
                stats.deadlines[e.key] = e.at
        elif isinstance(e, Hold):
            if e.since is None:
                ctx.held_ticks.pop(e.key, None)
            else:
                ctx.held_ticks[e.key] = e.since
        elif isinstance(e, Resent):
            ctx.resent.add(e.key)
        elif isinstance(e, Count):
            setattr(stats, e.stat, getattr(stats, e.stat) + e.n)
        elif isinstance(e, Decided):
            metrics.WORKER.decision(e.decision, e.job, analysis_seconds=e.analysis_seconds,
                                    attempt_cost_usd=e.attempt_cost_usd)
            c = e.decision.command
            decisions.info(decision_line(e.job.job_key, e.job.attempt, c.category, c.confidence, c.action, c.reason))
        elif isinstance(e, NextAttempt):
            metrics.WORKER.next_attempt(e.retried, e.job, ctx.settings.human_response_minutes)
        else:
            metrics.WORKER.flaky(e.command)


async def write_table(ctx: AgentContext, writes: StoreMany, partition: int | None) -> None:
    """Many writes of one table. With ``partition`` (the partition of the message being handled): each
    value into the table's store, and the changelog records handed to the Kafka client in produce batches
    of up to 1 MiB (not one by one through Faust's producer buffer, ~30 µs a record), then awaited: the
    message is acknowledged (and later committed) only once its state is on the changelog. A batch of test
    results writes thousands of test states per message. Without: Faust's own table writes, one by one."""
    table = getattr(ctx.tables, writes.table)
    producer = None
    if partition is not None:
        try:
            producer = cast(Any, ctx.app.producer)._ensure_producer()  # the aiokafka client of Faust's producer
        except NotReady:  # no Kafka client (Faust's test_context)
            producer = None
    if producer is None:
        for key, value in writes.items:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        return
    topic = table.changelog_topic.get_topic_name()
    data = table.data
    futures = []
    batch = producer.create_batch()
    for key, value in writes.items:
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a {writes.table} value of {len(value or b'')} bytes does not fit a produce batch")
    batch.close()
    futures.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*futures)
