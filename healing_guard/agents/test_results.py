"""The test agent: per-test River models in a table keyed by test id, fed from ci.tests.

A failed test's risk (P(fail), P(retry passes)) is re-keyed by job key onto guard.test-risk so that
the job agent, which owns the job's window, can weigh it in the remediation choice.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

from .. import metrics
from ..flaky import TestModel
from ..flaky.quarantine import QuarantineState
from ..patterns.tokenize import redact_test_result
from ..engine.core import dead_letter, schema_dead_letter
from ..schemas import SchemaError, TestResult, job_key
from ..warehouse.facts import fact_to_json
from .context import AgentContext

log = logging.getLogger(__name__)


def _load(raw: bytes | None) -> tuple[TestModel | None, QuarantineState, tuple[int, int] | None]:
    """A test's table value: its model, quarantine state and the (partition, offset) of the last
    ci.tests message it learned (older values hold the bare model, or no offset)."""
    if not raw:
        return None, QuarantineState(), None
    obj = pickle.loads(raw)
    if isinstance(obj, dict):
        applied = obj.get("applied")
        return (obj["model"], QuarantineState.from_dict(obj.get("quarantine")),
                None if applied is None else (int(applied[0]), int(applied[1])))
    return obj, QuarantineState(), None


def register(ctx: AgentContext) -> Any:
    app, t, models, engine, stats = ctx.app, ctx.topics, ctx.tables.test_models, ctx.engine, ctx.stats
    topic_name = ctx.settings.topics.tests

    @app.agent(t.tests, name="guard.tests")
    async def tests(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            key, raw = event.key, event.value
            where: dict[str, Any] = {"key": key, "partition": msg.partition, "offset": msg.offset}
            try:
                result = TestResult.from_json(raw)
                if key is None or key.decode("utf-8", "replace") != result.test_id:
                    raise SchemaError(f"message key must be the test id {result.test_id!r}", "key")
            except SchemaError as exc:
                await ctx.dead_letter(schema_dead_letter(topic_name, raw, exc, **where), key)
                continue
            # secrets in a test id (a parametrized argument) or a failure message stop here: the model
            # table, facts, risks and commands all use the redacted record, keyed by its redacted id
            clean = redact_test_result(result)
            if clean is not result:
                result = clean
                key = result.test_id.encode()
            try:
                model, qstate, applied = _load(models.get(key))
                if (model is not None and applied is not None and applied[0] == msg.partition
                        and msg.offset <= applied[1]):
                    # read again after a crash, but the changelog already holds what it taught the
                    # model: learn it once, send its outputs again (their ids make them count once)
                    fact, risk = engine.replay_test(model, result)
                    command = qfact = None
                    stats.tests_replayed += 1
                else:
                    model, fact, risk = engine.learn_test(model, result)
                    command, qfact = engine.quarantine(qstate, model, result)
                    models[key] = pickle.dumps({"model": model, "quarantine": qstate.to_dict(),
                                                "applied": (msg.partition, msg.offset)},
                                               protocol=pickle.HIGHEST_PROTOCOL)
                    stats.tests += 1
                jk = job_key(result.provider, result.owner, result.repo, result.job_id).encode()
                await t.facts.send(key=key, value=fact_to_json(fact))
                if command is not None and qfact is not None:
                    stats.commands += 1
                    await t.actions.send(key=jk, value=command.to_json())
                    await t.facts.send(key=key, value=fact_to_json(qfact))
                    metrics.WORKER.flaky(command)
                if risk is not None:
                    await ctx.send_json(t.test_risk, jk, {"attempt": result.attempt, "risk": risk.to_dict()})
            except Exception as exc:
                log.exception("test agent failed on %s", key)
                await ctx.dead_letter(dead_letter(topic_name, raw, f"internal error: {exc!r}", **where), key)

    return tests
