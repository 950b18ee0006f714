"""``guard api --write-facts``: the API process writes ``guard.facts`` into the warehouse itself.

chDB allows one process per data directory. When the worker, the API and ``guard report`` must share an
embedded warehouse (``guard up``), the API process owns it: the worker runs with ``--no-facts`` (its facts
wait on ``guard.facts``) and this loop writes them, as the worker's fact sink would: in batches, the
offsets committed only after the batch is written (a crash or a ClickHouse outage loses nothing; fact ids
make a re-written batch count once), a fact that is not one dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("healing_guard.api.facts")

#: seconds to wait before writing a batch again after a failed write
RETRY_SECONDS = 2.0


async def write_facts(settings: Any, writer_factory: Callable[[], Any], stop: asyncio.Event, *,
                      group_id: str | None = None) -> int:
    """Consume ``guard.facts`` until ``stop`` is set; returns the rows written."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from ..engine.core import dead_letter
    from ..kafka_auth import client_options
    from ..warehouse.facts import fact_from_json

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
                    facts.append(fact_from_json(r.value or b""))
                except ValueError as exc:
                    dl = dead_letter(t.facts, r.value, str(exc), key=r.key, partition=r.partition, offset=r.offset)
                    await producer.send_and_wait(t.deadletter, key=r.key, value=dl.to_json())
            while not stop.is_set():
                try:
                    if writer is None:
                        writer = await asyncio.to_thread(writer_factory)
                    written += await asyncio.to_thread(writer.write, facts) if facts else 0
                    break
                except Exception as exc:  # ClickHouse away: keep the batch, try again
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
