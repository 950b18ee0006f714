"""The incidents agent: diagnosed failures keyed by their template, from every repository.

The job agent sends each finding's template to ``guard.incidents`` keyed by a hash of it, so one
worker sees every job that failed with that line, whatever its repository; a burst becomes one
``open_incident`` command instead of dozens of retries and notifications.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ..engine.core import dead_letter
from ..remediate.incidents import IncidentState
from ..warehouse.facts import fact_to_json
from .context import AgentContext

log = logging.getLogger(__name__)


def register(ctx: AgentContext) -> Any:
    app, t, table, engine, stats = ctx.app, ctx.topics, ctx.tables.incidents, ctx.engine, ctx.stats
    topic_name = ctx.settings.topics.incidents

    @app.agent(t.incidents, name="guard.incidents")
    async def incidents(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            key, raw = event.key, event.value
            try:
                sighting = orjson.loads(raw)
                raw_state = table.get(key)
                state = IncidentState.from_dict(orjson.loads(raw_state) if raw_state else None)
                command, fact = engine.incident(state, sighting)
                table[key] = orjson.dumps(state.to_dict())
                if command is not None and fact is not None:
                    stats.commands += 1
                    await t.actions.send(key=command.job_key.encode(), value=command.to_json())
                    await t.facts.send(key=command.job_key.encode(), value=fact_to_json(fact))
            except Exception as exc:  # a bug or a foreign message must not stop the worker nor vanish
                log.exception("incidents agent failed on %s", key)
                await ctx.dead_letter(dead_letter(topic_name, raw, f"internal error: {exc!r}", key=key,
                                                  partition=msg.partition, offset=msg.offset), key)

    return incidents
