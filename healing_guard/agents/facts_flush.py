"""The timer that flushes the fact sink, and its last flush when the worker stops."""

from __future__ import annotations

from typing import Any

from .context import AgentContext, bind
from .fact_sink import FactSink


async def flush_facts(sink: FactSink) -> None:
    await sink.flush()


async def close_sink(sink: FactSink, app: Any, **kwargs: Any) -> None:
    await sink.close()


def register(ctx: AgentContext, sink: FactSink) -> Any:
    ctx.app.on_before_shutdown.connect(bind(close_sink, sink))
    return ctx.app.timer(interval=max(ctx.settings.fact_flush_seconds, 0.1), name="guard.facts-flush")(
        bind(flush_facts, sink))
