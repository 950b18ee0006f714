"""The test agent: per-test River models in a table keyed by test id, fed from ci.tests.

A failed test's risk (P(fail), P(retry passes)) is re-keyed by job key onto guard.test-risk so that
the job agent, which owns the job's window, can weigh it in the remediation choice. The logic is
:func:`healing_guard.engine.step.results_step`; this reads the table for it and carries out its effects.
"""

from __future__ import annotations

import logging
from typing import Any

from ..engine.core import dead_letter
from ..engine.step import decode_test_result, results_step
from ..schemas import DeadLetter
from .context import AgentContext, bind
from .effects import apply

log = logging.getLogger(__name__)


async def tests(ctx: AgentContext, stream: Any) -> None:
    topic = ctx.settings.topics.tests
    async for event in stream.events():
        msg = event.message
        decoded = decode_test_result(topic, event.key, event.value, partition=msg.partition, offset=msg.offset)
        if isinstance(decoded, DeadLetter):
            await ctx.dead_letter(decoded, event.key)
            continue
        key, result = decoded  # the key of the redacted test id
        try:
            await apply(ctx, results_step(ctx.engine, ctx.tables.test_models, key, result, partition=msg.partition,
                                        offset=msg.offset))
        except Exception as exc:  # a bug must not stop the worker nor lose the message
            log.exception("test agent failed on %s", key)
            await ctx.dead_letter(dead_letter(topic, event.value, f"internal error: {exc!r}", key=event.key,
                                              partition=msg.partition, offset=msg.offset), key)



def register(ctx: AgentContext) -> Any:
    return ctx.app.agent(ctx.topics.tests, name="guard.tests")(bind(tests, ctx))
