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
from ..patterns.tokenize import redact_many, redact_test_result
from ..schemas import SchemaError, TestResult
from ..schemas.test_batch import decode_tests
from .context import AgentContext, bind
from .effects import apply

log = logging.getLogger(__name__)

#: a message with at least this many results writes its tests' states in bulk (the ack of the produce
#: batch is awaited, ~1-2 ms: worth it for many records, not for a one-result message)
BULK_WRITE_MIN = 64


async def tests(ctx: AgentContext, stream: Any) -> None:
    topic = ctx.settings.topics.tests
    async for event in stream.events():
        msg = event.message
        where = {"key": event.key, "partition": msg.partition, "offset": msg.offset}
        ctx.stats.test_messages += 1
        try:
            # secrets in a test id (a parametrized argument) or a failure message stop here: the model
            # table, facts, risks and commands all use the redacted record, keyed by its redacted id
            decoded = decode_tests(event.value, event.key, clean=redact_many)
        except SchemaError as exc:
            await ctx.dead_letter(schema_dead_letter(topic, event.value, exc, **where), event.key)
            continue
        except Exception as exc:  # a bug in decoding must not stop the worker nor lose the message either
            log.exception("test agent could not decode %s", event.key)
            await ctx.dead_letter(dead_letter(topic, event.value, f"internal error: {exc!r}", **where), event.key)
            continue
        if decoded.errors:  # a bad entry of a batch costs that entry only: its own dead letter
            entries = orjson.loads(event.value)["results"]
            for i, err in decoded.errors:
                await ctx.dead_letter(schema_dead_letter(topic, orjson.dumps(entries[i]), err, **where), event.key)
        results = decoded.results if decoded.batch else [redact_test_result(r) for r in decoded.results]
        items: list[tuple[bytes, TestResult]] = [(r.test_id.encode(), r) for r in results]
        if not items:
            continue
        try:
            # each test's state once; a big batch's changelog records go in produce batches, awaited
            # (agents/effects.py::write_table: ~3 µs a record, not ~30), a few through Faust's buffer (no wait)
            bulk = msg.partition if len(items) >= BULK_WRITE_MIN else None
            # read from the table's store itself: what the table's get adds is a sensor call (~1 µs a test)
            await apply(ctx, results_batch_step(ctx.engine, ctx.tables.test_models.data, items, partition=msg.partition,
                                                offset=msg.offset, batch=decoded.batch), bulk_partition=bulk)
        except Exception as exc:  # a bug must not stop the worker nor lose the message
            log.exception("test agent failed on %s", event.key)
            await ctx.dead_letter(dead_letter(topic, event.value, f"internal error: {exc!r}", **where), event.key)


def register(ctx: AgentContext) -> Any:
    return ctx.app.agent(ctx.topics.tests, name="guard.tests")(bind(tests, ctx))
