"""Writing ``guard.facts`` into the warehouse: the worker's fact writer, and ``guard api --write-facts``.

One loop with a plain Kafka consumer: facts in batches, the offsets committed only after the batch is
written (a crash or a ClickHouse outage loses nothing; fact ids make a re-written batch count once), a fact
that is not one dead-lettered with the reason. The worker runs it beside its agents (consumer group
``<app_id>-facts``), not as a Faust agent: Faust's consumer drops the records it fetched while a worker
that took over was still recovering its tables, and where nothing was committed yet (facts wait
uncommitted while ClickHouse is away) it never read them again; facts were lost (see streams/seek.py).

chDB allows one process per data directory. When the worker, the API and ``guard report`` must share an
embedded warehouse (``guard up``), the API process owns it: the worker runs with ``--no-facts`` (its facts
wait on ``guard.facts``) and the API runs this loop (consumer group ``<app_id>-api-facts``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: seconds to wait before writing a batch again after a failed write
RETRY_SECONDS = 2.0


async def write_facts(settings: Any, writer_factory: Callable[[], Any], stop: asyncio.Event, *,
                      group_id: str | None = None, on_written: Callable[[int], None] | None = None,
                      on_error: Callable[[Exception], None] | None = None) -> int:
    """Consume ``guard.facts`` until ``stop`` is set; returns the rows written. ``on_written(n)`` is called
    after each written batch, ``on_error(exc)`` after each failed write (the batch is written again)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from ..engine.core import dead_letter
    from ..kafka_auth import client_options
    from ..warehouse.facts import facts_from_json

    t = settings.topics
    consumer = AIOKafkaConsumer(t.facts, bootstrap_servers=settings.bootstrap,
                                group_id=group_id or f"{settings.app_id}-api-facts", enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=16 << 20,
                                **client_options(settings))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", max_request_size=16 << 20,
                                **client_options(settings))
    await consumer.start()
    await producer.start()
    writer: Any = None
    written = 0
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=int(max(settings.fact_flush_seconds, 0.1) * 1000),
                                           max_records=settings.fact_batch_size)
            records = [r for rs in batch.values() for r in rs]
            if not records:
                continue
            facts = []
            for r in records:
                try:
                    facts.extend(facts_from_json(r.value or b""))
                except ValueError as exc:
                    dl = dead_letter(t.facts, r.value, str(exc), key=r.key, partition=r.partition, offset=r.offset)
                    await producer.send_and_wait(t.deadletter, key=r.key, value=dl.to_json())
            while not stop.is_set():
                try:
                    if writer is None:
                        writer = await asyncio.to_thread(writer_factory)
                    n = await asyncio.to_thread(writer.write, facts) if facts else 0
                    written += n
                    if on_written is not None:
                        on_written(n)
                    break
                except Exception as exc:  # ClickHouse away: keep the batch, try again
                    if on_error is not None:
                        on_error(exc)
                    log.warning("cannot write %d fact(s) yet (%s); again in %.0f s", len(facts), exc, RETRY_SECONDS)
                    writer = None
                    deadline = time.monotonic() + RETRY_SECONDS
                    while not stop.is_set() and time.monotonic() < deadline:
                        await asyncio.sleep(0.1)
            else:
                break  # stopping with an unwritten batch: not committed, read again next time
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
    return written
