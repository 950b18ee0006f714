"""The test agent: per-test models in a table keyed by test id, fed from ci.tests.

A ci.tests message holds one result or a batch of one report's results (``schemas/test_batch.py``); the
agent learns a whole message at once (:func:`healing_guard.engine.step.results_batch_step`), so a report of
50,000 tests costs a few messages, each test's state is written once per message, and its facts go in a
few messages. A failed test's risk (P(fail), P(retry passes)) is re-keyed by job key onto guard.test-risk
so that the job agent, which owns the job's window, can weigh it in the remediation choice. This reads
the table for the step and carries out its effects.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ..engine.core import dead_letter, schema_dead_letter
from ..engine.step import results_batch_step
from ..patterns.tokenize import redact_test_result
from ..schemas import SchemaError, TestResult
from ..schemas.test_batch import decode_tests
from .context import AgentContext, bind
from .effects import apply

log = logging.getLogger(__name__)


async def tests(ctx: AgentContext, stream: Any) -> None:
    topic = ctx.settings.topics.tests
    async for event in stream.events():
        msg = event.message
        where = {"key": event.key, "partition": msg.partition, "offset": msg.offset}
        ctx.stats.test_messages += 1
        try:
            decoded = decode_tests(event.value, event.key)
        except SchemaError as exc:
            await ctx.dead_letter(schema_dead_letter(topic, event.value, exc, **where), event.key)
            continue
        if decoded.errors:  # a bad entry of a batch costs that entry only: its own dead letter
            entries = orjson.loads(event.value)["results"]
            for i, err in decoded.errors:
                await ctx.dead_letter(schema_dead_letter(topic, orjson.dumps(entries[i]), err, **where), event.key)
        items: list[tuple[bytes, TestResult]] = []
        for r in decoded.results:
            # secrets in a test id (a parametrized argument) or a failure message stop here: the model
            # table, facts, risks and commands all use the redacted record, keyed by its redacted id
            clean = redact_test_result(r)
            items.append((clean.test_id.encode(), clean))
        if not items:
            continue
        try:
            await apply(ctx, results_batch_step(ctx.engine, ctx.tables.test_models, items, partition=msg.partition,
                                                offset=msg.offset, batch=decoded.batch))
        except Exception as exc:  # a bug must not stop the worker nor lose the message
            log.exception("test agent failed on %s", event.key)
            await ctx.dead_letter(dead_letter(topic, event.value, f"internal error: {exc!r}", **where), event.key)


def register(ctx: AgentContext) -> Any:
    return ctx.app.agent(ctx.topics.tests, name="guard.tests")(bind(tests, ctx))
