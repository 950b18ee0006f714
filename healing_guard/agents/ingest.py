"""The job agent: one co-partitioned stream of log chunks, job events, test risks and deadline ticks.

Every message for a job shares the job key, so one worker holds the job's window (a Faust table,
recovered from its changelog after a crash) and sees the completion event after the chunks.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from faust.types import TP

from .. import metrics
from ..engine.core import Decision, schema_dead_letter, dead_letter
from ..remediate import Ledger
from ..remediate.incidents import template_key
from ..remediate.outcomes import SuccessStats
from ..remediate.strategies import NOTIFY_ACTIONS
from ..schemas import JobEvent, LogChunk, Outcome, SchemaError, TestRisk
from ..warehouse.facts import fact_to_json
from ..engine.window import Closed, Expired, JobWindow, decided
from .context import AgentContext, now

log = logging.getLogger(__name__)


def _partition_state(raw: bytes | None) -> tuple[Ledger, SuccessStats]:
    """This partition's budget ledger and learned action success rates (one table value)."""
    if not raw:
        return Ledger(), SuccessStats()
    d = orjson.loads(raw)
    return Ledger.from_dict(d), SuccessStats.from_dict(d.get("success"))


def _dump_state(ledger: Ledger, success: SuccessStats) -> bytes:
    return orjson.dumps({**ledger.to_dict(), "success": success.to_dict()})


def register(ctx: AgentContext) -> Any:
    app, t, tables, engine, stats = ctx.app, ctx.topics, ctx.tables, ctx.engine, ctx.stats
    names = ctx.settings.topics
    max_chunk = ctx.settings.max_chunk_bytes
    ttl = ctx.settings.window_ttl_seconds

    async def emit(outputs: list[Any], key: bytes, partition: int) -> None:
        marker: JobWindow | None = None
        for out in outputs:
            if isinstance(out, Expired):
                log.info("dropping the window of %s after its TTL", out.job_key)
                continue
            acted: tuple[str, str] | None = None
            decision: Decision | None = None
            analysis_seconds = 0.0
            learned = False
            lkey = f"ledger:{partition}".encode()
            if out.retried is not None or not isinstance(out, Closed):  # most closed jobs need no state
                ledger, success = _partition_state(tables.ledgers.get(lkey))
                # the attempt after an automatic action: how it ended is how well the action worked
                learned = out.retried is not None and engine.learn_retry(success, out)
                stats.outcomes_learned += learned
                if learned:
                    metrics.WORKER.next_attempt(out.retried, out.job, ctx.settings.human_response_minutes)
            if isinstance(out, Closed):
                stats.jobs_closed += 1
                facts = engine.closed_facts(out)
            else:
                started = time.perf_counter()
                ledger, decision = engine.decide(out, ledger, success=success, partition=partition)
                analysis_seconds = time.perf_counter() - started
                facts = decision.facts
                if decision.command.action not in NOTIFY_ACTIONS:
                    acted = (decision.command.action, decision.command.category)
            if learned or decision is not None:
                tables.ledgers[lkey] = _dump_state(ledger, success)
            if decision is not None:
                await _send_decision(decision, key)
                metrics.WORKER.decision(decision, out.job, analysis_seconds=analysis_seconds,
                                        attempt_cost_usd=engine.job_cost(out.job))
            marker = decided(out.job.job_key, out.job.attempt, partition, now(), acted)
            for f in facts:
                await t.facts.send(key=key, value=fact_to_json(f))
        if outputs:
            stats.deadlines.pop(key, None)
            if marker is None:
                tables.windows.pop(key, None)
            else:  # keep a small marker so a replayed message of this attempt decides nothing twice
                tables.windows[key] = orjson.dumps(marker.to_dict())
                stats.deadlines[key] = (marker.touched + ttl, partition)

    async def _send_decision(decision: Decision, key: bytes) -> None:
        stats.findings += 1
        stats.commands += 1
        await t.findings.send(key=key, value=decision.finding.to_json())
        sighting = engine.incident_sighting(decision.finding)
        if sighting is not None:  # re-keyed by template: the incidents agent sees every repository's jobs
            await ctx.send_json(t.incidents, template_key(sighting["template"]), sighting)
        await t.actions.send(key=key, value=decision.command.to_json())
        for alert in decision.alerts:
            stats.commands += 1
            await t.actions.send(key=key, value=alert.to_json())

    @app.agent(t.ingest, name="guard.ingest")
    async def ingest(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            key, raw, topic = event.key, event.value, msg.topic
            try:
                await _handle(key, raw, topic, msg.partition, msg.offset)
            except Exception as exc:  # a bug must not stop the worker nor lose the message
                log.exception("ingest failed on %s[%s]@%s", topic, msg.partition, msg.offset)
                await ctx.dead_letter(dead_letter(topic, raw, f"internal error: {exc!r}", key=key,
                                                  partition=msg.partition, offset=msg.offset), key)

    async def _handle(key: bytes | None, raw: bytes, topic: str, partition: int, offset: int) -> None:
        where: dict[str, Any] = {"key": key, "partition": partition, "offset": offset}
        if key is None:
            await ctx.dead_letter(dead_letter(topic, raw, "message has no key (expected the job key)", **where), key)
            return
        try:
            if topic == names.logs:
                rec: Any = LogChunk.from_json(raw, max_bytes=max_chunk)
            elif topic == names.jobs:
                rec = JobEvent.from_json(raw)
            elif topic == names.test_risk:
                d = orjson.loads(raw)
                rec = (TestRisk.from_dict(d.get("risk")), int(d["attempt"]))
            elif topic == names.outcomes:
                rec = Outcome.from_json(raw)
            else:  # ticks
                rec = None
        except SchemaError as exc:
            await ctx.dead_letter(schema_dead_letter(topic, raw, exc, **where), key)
            return
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            await ctx.dead_letter(dead_letter(topic, raw, f"bad internal record: {exc!r}", **where), key)
            return
        if isinstance(rec, Outcome):
            # how an action turned out: this partition's planner learns from it (no window involved)
            lkey = f"ledger:{partition}".encode()
            ledger, success = _partition_state(tables.ledgers.get(lkey))
            if engine.learn_outcome(success, rec):
                tables.ledgers[lkey] = _dump_state(ledger, success)
                stats.outcomes_learned += 1
            return
        if isinstance(rec, (LogChunk, JobEvent)) and rec.job_key.encode() != key:
            await ctx.dead_letter(dead_letter(topic, raw, f"key {key!r} is not the job key {rec.job_key!r}",
                                              field_name="key", **where), key)
            return
        raw_state = tables.windows.get(key)
        if raw_state is None and topic == names.ticks:
            return
        w = JobWindow.from_dict(orjson.loads(raw_state)) if raw_state else JobWindow(job_key=key.decode("utf-8", "replace"))
        if topic == names.ticks and not _logs_caught_up(partition):
            # chunks may still be queued behind this job's completion event (the topics are consumed
            # independently, and a backlog of big log chunks drains slower than small job events):
            # a grace period only counts once this partition's logs are read up to the end, within reason
            first = postponed.setdefault(key, now())
            if now() - first < max_postpone:
                stats.deadlines[key] = (now() + 0.5, partition)
                return
        postponed.pop(key, None)
        if isinstance(rec, LogChunk):
            logs_position[partition] = offset
            stats.chunks += 1
            stats.lines += len(rec.lines)
            w, outputs = engine.chunk(w, rec)
        elif isinstance(rec, JobEvent):
            w, outputs = engine.job_event(w, rec)
        elif isinstance(rec, tuple):
            w, outputs = engine.risk(w, rec[0], rec[1])
        else:
            w, outputs = engine.tick(w)
        if outputs:
            await emit(outputs, key, partition)
            return
        w.partition = partition
        tables.windows[key] = orjson.dumps(w.to_dict())
        if w.deadline is not None:
            stats.deadlines[key] = (w.deadline, partition)

    logs_position: dict[int, int] = {}  # last ci.logs offset processed here, per partition
    postponed: dict[bytes, float] = {}
    max_postpone = max(60.0, 10 * ctx.settings.chunk_grace_seconds)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode's Signal accepts coroutines
    async def _forget_positions(sender: Any, revoked: Any = (), **kwargs: Any) -> None:
        """A partition that comes back later must not be judged by the offset it had before."""
        for tp in revoked:
            if tp.topic == names.logs:
                logs_position.pop(tp.partition, None)

    def _logs_caught_up(partition: int) -> bool:
        tp = TP(names.logs, partition)
        try:
            hw = app.consumer.highwater(tp)
            read = getattr(app.consumer, "_read_offset", {}).get(tp)  # committed position after assignment
        except Exception:  # consumer not running (tests) or partition not assigned yet
            return True
        if not hw:
            return True
        done = logs_position.get(partition)
        if done is None:
            done = read if read is not None else -1
        return done + 1 >= hw

    @app.timer(interval=0.25, name="guard.deadlines")
    async def deadlines() -> None:
        """Wakes windows whose grace period ran out, by a tick message on the job's own partition."""
        for k, p in stats.deadlines.due(now()):
            await t.ticks.send(key=k, value=b"{}", partition=p)

    scan = {"needed": True, "last": 0.0}

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # mode's Signal accepts coroutines
    async def _after_rebalance(sender: Any, **kwargs: Any) -> None:
        scan["needed"] = True

    @app.timer(interval=5.0, name="guard.deadline-scan")
    async def deadline_scan() -> None:
        """After a restart or rebalance the in-memory deadline index lacks the recovered windows:
        rebuild it from the table (and every 5 minutes as a safety net)."""
        if not scan["needed"] and now() - scan["last"] < 300:
            return
        scan["needed"], scan["last"] = False, now()
        for k, raw_state in list(tables.windows.items()):
            if not raw_state or k in stats.deadlines:
                continue
            state = orjson.loads(raw_state)
            if state.get("deadline") is not None:
                stats.deadlines[k] = (state["deadline"], state.get("partition", 0))
            elif state.get("job") is None:
                stats.deadlines[k] = (state.get("touched", 0.0) + ttl, state.get("partition", 0))

    return ingest
