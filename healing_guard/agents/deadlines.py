"""The timer that wakes windows whose grace period ran out, by a tick message on the job's own partition."""

from __future__ import annotations

from typing import Any

from .context import AgentContext, bind, now


async def wake_due_windows(ctx: AgentContext) -> None:
    for key, partition in ctx.stats.deadlines.due(now()):
        await ctx.topics.ticks.send(key=key, value=b"{}", partition=partition)


def register(ctx: AgentContext) -> Any:
    return ctx.app.timer(interval=0.25, name="guard.deadlines")(bind(wake_due_windows, ctx))
