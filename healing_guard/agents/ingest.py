"""The job agent: one co-partitioned stream of log chunks, job events, test risks, deadline ticks and outcomes.

Every message for a job shares the job key, so one worker holds the job's window (a Faust table,
recovered from its changelog after a crash) and sees the completion event after the chunks. The logic
is :func:`healing_guard.engine.step.ingest_step`; this reads the tables for it and carries out its effects.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from ..engine.core import dead_letter
from ..engine.step import IngestState, decode_ingest, ingest_step
from ..schemas import DeadLetter, LogChunk
from .context import AgentContext, bind, now
from .effects import apply
from .logs_progress import LogsProgress

log = logging.getLogger(__name__)


async def ingest(ctx: AgentContext, logs: LogsProgress, stream: Any) -> None:
    async for event in stream.events():
        msg = event.message
        try:
            await handle(ctx, logs, event.key, event.value, msg.topic, msg.partition, msg.offset)
        except Exception as exc:  # a bug must not stop the worker nor lose the message
            log.exception("ingest failed on %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            await ctx.dead_letter(dead_letter(msg.topic, event.value, f"internal error: {exc!r}", key=event.key,
                                              partition=msg.partition, offset=msg.offset), event.key)


async def handle(ctx: AgentContext, logs: LogsProgress, key: bytes | None, raw: bytes, topic: str, partition: int,
                 offset: int) -> None:
    rec = decode_ingest(ctx.settings.topics, topic, key, raw, partition=partition, offset=offset,
                        max_chunk_bytes=ctx.settings.max_chunk_bytes)
    if isinstance(rec, DeadLetter):
        await ctx.dead_letter(rec, key)
        return
    assert key is not None  # decode_ingest dead-letters a message without one
    if isinstance(rec, LogChunk):
        logs.read(partition, offset)
    state = IngestState(windows=ctx.tables.windows, ledgers=ctx.tables.ledgers, holds=ctx.held_ticks,
                        resent=ctx.resent)
    await apply(ctx, ingest_step(ctx.engine, state, key, rec, partition=partition, now=now(),
                                 logs_caught_up=functools.partial(logs.caught_up, ctx.app, partition)))


def register(ctx: AgentContext) -> Any:
    logs = LogsProgress(ctx.settings.topics.logs)
    # mode's Signal accepts coroutines
    ctx.app.on_partitions_revoked.connect(logs.on_revoked)  # type: ignore[arg-type]
    return ctx.app.agent(ctx.topics.ingest, name="guard.ingest")(bind(ingest, ctx, logs))
