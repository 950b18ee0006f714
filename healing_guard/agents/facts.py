"""The fact sink: batches guard.facts into ClickHouse, one insert per table per flush.

Events are acknowledged only after their batch is written, so a worker crash or an unavailable
ClickHouse loses nothing (the batch is read again) and ids make a re-written batch count once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any

from ..engine.core import dead_letter
from ..warehouse.facts import Fact, fact_from_json
from .context import AgentContext

log = logging.getLogger(__name__)


class FactSink:
    def __init__(self, ctx: AgentContext, writer_factory: Any) -> None:
        self.ctx = ctx
        self._writer_factory = writer_factory
        self._writer: Any = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._buffer: list[tuple[Any, Fact]] = []
        self._lock = asyncio.Lock()
        self._stream: Any = None
        self._retry_at = 0.0

    def _write(self, facts: list[Fact]) -> int:
        if self._writer is None:
            self._writer = self._writer_factory()
        return int(self._writer.write(facts))

    async def flush(self) -> None:
        async with self._lock:
            if not self._buffer or time.monotonic() < self._retry_at:
                return
            # swap first: the agent keeps appending while the write runs in its thread
            batch, self._buffer = self._buffer, []
            loop = asyncio.get_running_loop()
            try:
                n = await loop.run_in_executor(self._pool, self._write, [f for _, f in batch])
            except Exception as exc:  # ClickHouse down or locked: keep the batch, unacked, and retry
                self._buffer = batch + self._buffer
                self.ctx.stats.fact_errors += 1
                self._retry_at = time.monotonic() + 2.0
                log.warning("writing %d facts to ClickHouse failed, will retry: %s", len(batch), exc)
                return
            self.ctx.stats.facts_written += n
            self.ctx.stats.last_fact_write = time.time()
            for event, _ in batch:
                if event is not None and self._stream is not None:
                    await self._stream.ack(event)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def register(ctx: AgentContext, sink: FactSink) -> Any:
    app, t = ctx.app, ctx.topics
    size = ctx.settings.fact_batch_size

    @app.agent(t.facts, name="guard.facts")
    async def facts(stream: Any) -> None:
        s = stream.noack()
        sink._stream = s
        async for event in s.events():
            try:
                fact = fact_from_json(event.value)
            except ValueError as exc:
                await ctx.dead_letter(dead_letter(ctx.settings.topics.facts, event.value, str(exc), key=event.key,
                                                  partition=event.message.partition,
                                                  offset=event.message.offset), event.key)
                await s.ack(event)
                continue
            sink._buffer.append((event, fact))
            while len(sink._buffer) >= size:  # back-pressure: facts wait in Kafka while ClickHouse is away
                await sink.flush()
                if len(sink._buffer) >= size:
                    await asyncio.sleep(0.5)

    @app.timer(interval=max(ctx.settings.fact_flush_seconds, 0.1), name="guard.facts-flush")
    async def flush_timer() -> None:
        await sink.flush()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode's Signal accepts coroutines
    async def _final_flush(app: Any, **kwargs: Any) -> None:
        sink._retry_at = 0.0
        await sink.flush()
        sink.close()

    return facts
