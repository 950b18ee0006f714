"""The worker's fact writer: guard.facts into ClickHouse, beside the agents.

It is not a Faust agent: :func:`healing_guard.warehouse.fact_consumer.write_facts` reads the topic with its
own consumer (group ``<app_id>-facts``), writes in batches and commits only what it wrote (the module says
why). It starts and stops with the worker; a stop lets the batch in hand finish or stay uncommitted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..warehouse.fact_consumer import write_facts
from .context import AgentContext

log = logging.getLogger(__name__)

#: how long a stopping worker waits for the batch in hand
STOP_TIMEOUT_S = 30.0


def group_id(settings: Any) -> str:
    """The consumer group of the worker's fact writer."""
    return f"{settings.app_id}-facts"


class FactsTask:
    """Runs :func:`write_facts` for the worker's lifetime and counts into its stats."""

    def __init__(self, ctx: AgentContext, writer_factory: Callable[[], Any]) -> None:
        self.ctx = ctx
        self.writer_factory = writer_factory
        self.stop = asyncio.Event()
        self.task: asyncio.Task[int] | None = None

    def _written(self, n: int) -> None:
        self.ctx.stats.facts_written += n
        self.ctx.stats.last_fact_write = time.time()

    def _failed(self, exc: Exception) -> None:
        self.ctx.stats.fact_errors += 1

    async def run(self) -> None:
        self.stop.clear()
        self.task = asyncio.ensure_future(write_facts(
            self.ctx.settings, self.writer_factory, self.stop, group_id=group_id(self.ctx.settings),
            on_written=self._written, on_error=self._failed))
        try:
            await self.task
        except asyncio.CancelledError:
            raise
        except Exception:  # the stream work goes on; the facts wait on their topic for the next start
            log.exception("the fact writer stopped; facts wait on %s until the worker starts again",
                          self.ctx.settings.topics.facts)

    async def close(self, *args: Any, **kwargs: Any) -> None:
        self.stop.set()
        if self.task is not None and not self.task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.task), timeout=STOP_TIMEOUT_S)
            except Exception as exc:  # a timeout or a failed write: uncommitted facts are read again next time
                log.warning("fact writer did not stop cleanly (%r); unwritten facts stay on %s", exc,
                            self.ctx.settings.topics.facts)


def register(ctx: AgentContext, writer_factory: Callable[[], Any]) -> FactsTask:
    task = FactsTask(ctx, writer_factory)
    ctx.app.task(task.run)
    ctx.app.on_before_shutdown.connect(task.close)
    return task
