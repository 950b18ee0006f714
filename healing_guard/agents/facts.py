"""The facts agent: guard.facts into the fact sink (ClickHouse), acknowledged once written."""

from __future__ import annotations

from typing import Any

from ..engine.core import dead_letter
from ..warehouse.facts import fact_from_json
from .context import AgentContext, bind
from .fact_sink import FactSink

__all__ = ["FactSink", "facts", "register"]


async def facts(ctx: AgentContext, sink: FactSink, stream: Any) -> None:
    s = stream.noack()
    sink.attach(s)
    async for event in s.events():
        try:
            fact = fact_from_json(event.value)
        except ValueError as exc:
            await ctx.dead_letter(dead_letter(ctx.settings.topics.facts, event.value, str(exc), key=event.key,
                                              partition=event.message.partition,
                                              offset=event.message.offset), event.key)
            await s.ack(event)
            continue
        await sink.add(event, fact)


def register(ctx: AgentContext, sink: FactSink) -> Any:
    return ctx.app.agent(ctx.topics.facts, name="guard.facts")(bind(facts, ctx, sink))
