"""The incidents agent: diagnosed failures keyed by their template, from every repository.

The job agent sends each finding's template to ``guard.incidents`` keyed by a hash of it, so one
worker sees every job that failed with that line, whatever its repository; a burst becomes one
``open_incident`` command instead of dozens of retries and notifications. The logic is
:func:`healing_guard.engine.step.incident_step`.
"""

from __future__ import annotations

import logging
from typing import Any

from ..engine.core import dead_letter
from ..engine.step import incident_step
from .context import AgentContext, bind
from .effects import apply

log = logging.getLogger(__name__)


async def incidents(ctx: AgentContext, stream: Any) -> None:
    async for event in stream.events():
        msg = event.message
        try:
            await apply(ctx, incident_step(ctx.engine, ctx.tables.incidents, event.key, event.value))
        except Exception as exc:  # a bug or a foreign message must not stop the worker nor vanish
            log.exception("incidents agent failed on %s", event.key)
            await ctx.dead_letter(dead_letter(ctx.settings.topics.incidents, event.value, f"internal error: {exc!r}",
                                              key=event.key, partition=msg.partition, offset=msg.offset), event.key)


def register(ctx: AgentContext) -> Any:
    return ctx.app.agent(ctx.topics.incidents, name="guard.incidents")(bind(incidents, ctx))
