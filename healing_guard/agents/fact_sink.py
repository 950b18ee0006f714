"""The fact sink: batches guard.facts into ClickHouse, one insert per table per flush.

Events are acknowledged only after their batch is written, so a worker crash or an unavailable
ClickHouse loses nothing (the batch is read again) and ids make a re-written batch count once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Any

from ..warehouse.facts import Fact
from .context import AgentContext

log = logging.getLogger(__name__)

#: seconds to wait before writing again after a failed write
RETRY_SECONDS = 2.0


class FactSink:
    """``add`` facts as they come, ``flush`` on a timer, ``close`` at shutdown (a last flush)."""

    def __init__(self, ctx: AgentContext, writer_factory: Callable[[], Any]) -> None:
        self.ctx = ctx
        self.batch_size = ctx.settings.fact_batch_size
        self._writer_factory = writer_factory
        self._writer: Any = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._buffer: list[tuple[Any, Fact]] = []
        self._lock = asyncio.Lock()
        self._stream: Any = None
        self._retry_at = 0.0

    def __len__(self) -> int:
        """Facts waiting to be written."""
        return len(self._buffer)

    def attach(self, stream: Any) -> None:
        """Acknowledge written events through ``stream`` (the agent's, with automatic acks off)."""
        self._stream = stream

    async def add(self, event: Any, fact: Fact) -> None:
        """Buffer one fact, acknowledged once written. A full buffer waits for a flush: back-pressure,
        so facts wait in Kafka rather than in memory while ClickHouse is away."""
        self._buffer.append((event, fact))
        while len(self._buffer) >= self.batch_size:
            await self.flush()
            if len(self._buffer) >= self.batch_size:
                await asyncio.sleep(0.5)

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
                self._retry_at = time.monotonic() + RETRY_SECONDS
                log.warning("writing %d facts to ClickHouse failed, will retry: %s", len(batch), exc)
                return
            self.ctx.stats.facts_written += n
            self.ctx.stats.last_fact_write = time.time()
            for event, _ in batch:
                if event is not None and self._stream is not None:
                    await self._stream.ack(event)

    async def close(self) -> None:
        """A last flush, without waiting for a retry delay, then the writer thread goes."""
        self._retry_at = 0.0
        await self.flush()
        self._pool.shutdown(wait=True)
