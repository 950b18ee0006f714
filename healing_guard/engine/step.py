"""The worker's steps: a message and the state the agent read for it go in, the effects to carry out come out.

Each agent reads its tables, calls one step here and carries out the effects it returns, in order: the
messages to send, the table values to write (a decided window's marker is written after the commands it
guards, so a crash in between sends them again rather than never), the process-local indexes to update,
the counters and metrics to bump. The step writes nothing itself, so it is ``step(state, event) ->
(state, outputs)`` with the new state among the outputs, and all of it runs in a unit test without Kafka.

Pure: no Faust, Kafka or ClickHouse (tests/unit/crosscutting/test_purity.py checks it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..remediate import NOTIFY_ACTIONS
from ..remediate.incidents import template_key
from ..schemas import Command, DeadLetter, JobEvent, LogChunk, Outcome, SchemaError, TestResult, TestRisk, job_key
from ..schemas.test_batch import partition_of
from ..topics import Topics
from ..warehouse.facts import (Fact, fact_to_json, facts_to_json_columns, facts_to_json_many, outcome_fact,
                               test_result_columns, test_result_rows)
from .core import Decision, Engine, dead_letter, schema_dead_letter
from .test_columns import passes, write_passes
from .state import (TestState, dump_incident, dump_partition, dump_tests, dump_window, ledger_key, load_incident,
                    load_partition, load_tests, load_window)
from .window import Closed, Expired, JobWindow, Output, decided

log = logging.getLogger(__name__)

__all__ = [
    "AttemptRisk", "Count", "Decided", "Effect", "Flaky", "Hold", "IngestEvent", "IngestState", "NextAttempt",
    "Resent", "Send", "Store", "StoreMany", "Tick", "Wake", "decode_ingest", "incident_step", "ingest_step",
    "max_tick_hold", "results_batch_step", "results_step",
]


# --- effects -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Send:
    """A message for one of the guard's topics, named by its field of ``Topics`` (``"actions"``)."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass(frozen=True)
class Store:
    """A table write, the table named by its field of ``GuardTables`` (``"windows"``); None deletes."""

    table: str
    key: bytes
    value: bytes | None


@dataclass(frozen=True)
class StoreMany:
    """Many writes of one table (a batch of test results: one per test), in order; None deletes."""

    table: str
    items: list[tuple[bytes, bytes | None]]


@dataclass(frozen=True)
class Wake:
    """The worker's in-memory deadline index: wake ``key`` at ``(time, partition)``, or forget it (None)."""

    key: bytes
    at: tuple[float, int] | None


@dataclass(frozen=True)
class Hold:
    """A deadline tick held back while its partition's logs catch up, since ``since`` (None: released)."""

    key: bytes
    since: float | None


@dataclass(frozen=True)
class Count:
    """Add ``n`` to a worker counter (a field of ``agents.context.Stats``)."""

    stat: str
    n: int = 1


@dataclass(frozen=True)
class Decided:
    """Metrics: a failed attempt was diagnosed and its command sent."""

    decision: Decision
    job: JobEvent
    analysis_seconds: float
    attempt_cost_usd: float


@dataclass(frozen=True)
class NextAttempt:
    """Metrics: the attempt after an automatic action ended, which tells whether the action worked."""

    retried: tuple[str, str]
    job: JobEvent


@dataclass(frozen=True)
class Flaky:
    """Metrics: a command that treats a test as flaky (quarantine, release)."""

    command: Command


@dataclass(frozen=True)
class Resent:
    """Process memory: this decided job's commands were sent (or sent again) by this process."""

    key: bytes


Effect = Send | Store | StoreMany | Wake | Hold | Count | Decided | NextAttempt | Flaky | Resent


# --- the job agent: ci.logs, ci.jobs, guard.test-risk, guard.ticks, guard.outcomes --------------------------
@dataclass(frozen=True)
class AttemptRisk:
    """A failed test's risk for one attempt of its job (guard.test-risk, from the test agent)."""

    risk: TestRisk
    attempt: int


@dataclass(frozen=True)
class Tick:
    """A window's grace period ran out (guard.ticks)."""


IngestEvent = LogChunk | JobEvent | AttemptRisk | Outcome | Tick


@dataclass(frozen=True)
class IngestState:
    """What the job step reads; it never writes them, its changes come back as effects."""

    windows: Mapping[bytes, bytes | None]  # the windows table: job key -> window or decided marker
    ledgers: Mapping[bytes, bytes | None]  # the ledgers table: ledger_key(partition) -> partition state
    holds: Mapping[bytes, float]  # process memory: since when a job's tick is held back
    #: process memory: decided jobs whose commands this process has sent (bounded; see agents.context)
    resent: Container[bytes] = frozenset()


def decode_ingest(names: Topics, topic: str, key: bytes | None, raw: bytes, *, partition: int, offset: int,
                  max_chunk_bytes: int) -> IngestEvent | DeadLetter:
    """The record of one message of the job agent's topics, or the dead letter saying why it has none."""
    where: dict[str, Any] = {"key": key, "partition": partition, "offset": offset}
    if key is None:
        return dead_letter(topic, raw, "message has no key (expected the job key)", **where)
    rec: IngestEvent
    try:
        if topic == names.logs:
            rec = LogChunk.from_json(raw, max_bytes=max_chunk_bytes)
        elif topic == names.jobs:
            rec = JobEvent.from_json(raw)
        elif topic == names.test_risk:
            d = orjson.loads(raw)
            rec = AttemptRisk(TestRisk.from_dict(d.get("risk")), int(d["attempt"]))
        elif topic == names.outcomes:
            rec = Outcome.from_json(raw)
        else:  # ticks
            rec = Tick()
    except SchemaError as exc:
        return schema_dead_letter(topic, raw, exc, **where)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return dead_letter(topic, raw, f"bad internal record: {exc!r}", **where)
    if isinstance(rec, (LogChunk, JobEvent)) and rec.job_key.encode() != key:
        return dead_letter(topic, raw, f"key {key!r} is not the job key {rec.job_key!r}", field_name="key", **where)
    return rec


def max_tick_hold(engine: Engine) -> float:
    """How long a deadline tick may wait for its partition's logs to be read up to the end."""
    return max(60.0, 10 * engine.settings.chunk_grace_seconds)


def ingest_step(engine: Engine, state: IngestState, key: bytes, event: IngestEvent, *, partition: int,
                now: float, logs_caught_up: Callable[[], bool]) -> list[Effect]:
    """One message of a job (or an executor outcome) through the job's window and, once it is ready, the
    planner. ``logs_caught_up`` says whether this partition's ci.logs are read up to their end (asked only
    for a tick)."""
    if isinstance(event, Outcome):
        # how an action turned out: written to ClickHouse (the command's outcome in the API, the dashboard
        # and the ROI views; one row per command id, so a replay counts once), and this partition's planner
        # learns from it (no window involved)
        fact = Send("facts", key, fact_to_json(outcome_fact(event)))
        lkey = ledger_key(partition)
        ledger, success = load_partition(state.ledgers.get(lkey))
        if not engine.learn_outcome(success, event):
            return [fact]
        return [fact, Store("ledgers", lkey, dump_partition(ledger, success)), Count("outcomes_learned")]
    raw = state.windows.get(key)
    if raw is None and isinstance(event, Tick):
        return []
    effects: list[Effect] = []
    w = load_window(raw, key)
    if w.decided and key not in state.resent:
        effects += _resend(w, key, event)
    if isinstance(event, Tick) and not logs_caught_up():
        # chunks may still be queued behind this job's completion event (the topics are consumed
        # independently, and a backlog of big log chunks drains slower than small job events):
        # a grace period only counts once this partition's logs are read up to the end, within reason
        since = state.holds.get(key, now)
        if now - since < max_tick_hold(engine):
            return [*effects, Hold(key, since), Wake(key, (now + 0.5, partition))]
    if key in state.holds:
        effects.append(Hold(key, None))
    outputs: list[Output]
    if isinstance(event, LogChunk):
        effects += [Count("chunks"), Count("lines", len(event.lines))]
        w, outputs = engine.chunk(w, event, now)
    elif isinstance(event, JobEvent):
        w, outputs = engine.job_event(w, event, now)
    elif isinstance(event, AttemptRisk):
        w, outputs = engine.risk(w, event.risk, event.attempt, now)
    else:
        w, outputs = engine.tick(w, now)
    if outputs:
        return effects + _outputs(engine, state.ledgers, key, partition, outputs, now)
    w.partition = partition
    effects.append(Store("windows", key, dump_window(w)))
    if w.deadline is not None:
        effects.append(Wake(key, (w.deadline, partition)))
    return effects


def _resend(w: JobWindow, key: bytes, event: IngestEvent) -> list[Effect]:
    """A decided attempt's commands again, when one of its messages is read by a process that has not sent
    them: the worker died after the decided marker reached its changelog and before the commands reached
    guard.actions, so the message is read again (its offset was never committed) and finds the marker.
    Same command ids: the executor drops the copy when the first one did arrive. At-least-once, once per
    process and job. The decision's facts go again too (a marker on the changelog does not mean its facts
    reached guard.facts); the warehouse keeps each once."""
    if not (w.resend or w.resend_facts):
        return []
    if getattr(event, "attempt", w.attempt) != w.attempt:  # a tick has none: it is the window's
        return []
    return [*(Send("actions", key, text.encode()) for text in w.resend or ()),
            *(Send("facts", key, text.encode()) for text in w.resend_facts or ()), Resent(key),
            Count("commands_resent")]


def _outputs(engine: Engine, ledgers: Mapping[bytes, bytes | None], key: bytes, partition: int,
             outputs: list[Output], now: float) -> list[Effect]:
    """What a window's outputs send and store: the decision of a ready job (finding, command, budget
    alerts, facts), the facts of a closed one, what the next attempt taught the planner, and the
    decided marker that keeps a replayed message of this attempt from deciding it twice."""
    effects: list[Effect] = []
    lkey = ledger_key(partition)
    raw_ledger = ledgers.get(lkey)
    marker = None
    for out in outputs:
        if isinstance(out, Expired):
            log.info("dropping the window of %s after its TTL", out.job_key)
            continue
        acted: tuple[str, str] | None = None
        decision: Decision | None = None
        analysis_seconds = 0.0
        learned = False
        if out.retried is not None or not isinstance(out, Closed):  # most closed jobs need no state
            ledger, success = load_partition(raw_ledger)
            # the attempt after an automatic action: how it ended is how well the action worked
            if out.retried is not None and engine.learn_retry(success, out):
                learned = True
                effects += [Count("outcomes_learned"), NextAttempt(out.retried, out.job)]
                recovered = engine.recovery_command(out, now)
                if recovered is not None:
                    effects.append(Send("actions", key, recovered.to_json()))
        if isinstance(out, Closed):
            effects.append(Count("jobs_closed"))
            facts = engine.closed_facts(out)
        else:
            started = time.perf_counter()
            ledger, decision = engine.decide(out, ledger, success=success, partition=partition)
            analysis_seconds = time.perf_counter() - started
            facts = decision.facts
            if decision.command.action not in NOTIFY_ACTIONS:
                acted = (decision.command.action, decision.command.category)
        if learned or decision is not None:
            raw_ledger = dump_partition(ledger, success)
            effects.append(Store("ledgers", lkey, raw_ledger))
        resend: list[str] = []
        if decision is not None:
            sends = _decision_sends(engine, decision, key)
            resend = [e.value.decode() for e in sends if isinstance(e, Send) and e.topic == "actions"]
            effects += sends
            effects += [Decided(decision, out.job, analysis_seconds, engine.job_cost(out.job)), Resent(key)]
        fact_sends = [Send("facts", key, fact_to_json(f)) for f in facts]
        marker = decided(out.job.job_key, out.job.attempt, partition, now, acted, resend,
                         [e.value.decode() for e in fact_sends] if decision is not None else None)
        effects += fact_sends
    effects.append(Wake(key, None))
    if marker is None:
        effects.append(Store("windows", key, None))
    else:  # keep a small marker so a replayed message of this attempt decides nothing twice
        effects.append(Store("windows", key, dump_window(marker)))
        effects.append(Wake(key, (marker.touched + engine.settings.window_ttl_seconds, partition)))
    return effects


def _decision_sends(engine: Engine, decision: Decision, key: bytes) -> list[Effect]:
    sends: list[Effect] = [Send("findings", key, decision.finding.to_json())]
    sighting = engine.incident_sighting(decision.finding)
    if sighting is not None:  # re-keyed by template: the incidents agent sees every repository's jobs
        sends.append(Send("incidents", template_key(sighting["template"]), orjson.dumps(sighting)))
    sends.append(Send("actions", key, decision.command.to_json()))
    sends += [Send("actions", key, alert.to_json()) for alert in decision.alerts]
    return sends


# --- the test agent: ci.tests ------------------------------------------------------------------------------
def results_step(engine: Engine, models: Mapping[bytes, bytes | None], key: bytes, result: TestResult, *,
                 partition: int, offset: int) -> list[Effect]:
    """One test result (a one-result message): :func:`results_batch_step` of one."""
    return results_batch_step(engine, models, [(key, result)], partition=partition, offset=offset, batch=False)


def results_batch_step(engine: Engine, models: Mapping[bytes, bytes | None], items: list[tuple[bytes, TestResult]],
                       *, partition: int, offset: int, batch: bool = True) -> list[Effect]:
    """The results of one ci.tests message through their tests' models and quarantine states, learned
    together (``Engine.learn_tests``): each test's state written once, the facts in as few messages as
    possible, the risk the job agent weighs for each failure (re-keyed by job key) and any quarantine or
    release command. A test named twice in one message learns its results in order.

    In a batch (``batch``), a test this partition has no state for yet whose id hashes to another
    partition (a producer that grouped by another partition count) is not learned here: it is sent
    again, alone and keyed by its id, so that Kafka's partitioner takes it to the partition that owns it."""
    partitions = engine.settings.partitions

    def elsewhere(key: bytes) -> bool:
        return batch and partitions > 1 and partition_of(key, partitions) != partition

    # most results of a big report are passes of tests that passed last time: learned as columns, no objects
    cols = passes(items, models, partition=partition, offset=offset, policy=engine.quarantine_policy,
                  elsewhere=elsewhere) if batch else None
    in_cols = set(cols.items) if cols is not None else set()
    keys = list(dict.fromkeys(k for i, (k, _) in enumerate(items) if i not in in_cols))
    raws = [models.get(k) for k in keys]
    states: dict[bytes, TestState] = dict(zip(keys, load_tests(raws)))
    new_here = {k for k, raw in zip(keys, raws) if raw is None}
    learned_here: set[bytes] = set()
    p_fail: list[float | None] = [None] * len(items)
    risks: list[TestRisk | None] = [None] * len(items)
    commands: list[tuple[int, Command, Fact]] = []
    effects: list[Effect] = []
    rerouted: set[int] = set()
    replayed = learned_n = 0
    todo = list(range(len(items)))
    while todo:  # rounds: each test at most once per round (a report names a test once, nearly always)
        seen: set[bytes] = set()
        now_i: list[int] = []
        later: list[int] = []
        for i in todo:
            (later if items[i][0] in seen else now_i).append(i)
            seen.add(items[i][0])
        todo = later
        learn_i: list[int] = []
        for i in now_i:
            if i in in_cols:
                learn_i.append(i)
                continue
            key, result = items[i]
            if key in new_here and elsewhere(key):
                effects.append(Send("tests", key, result.to_json()))
                rerouted.add(i)
                continue
            st = states[key]
            if key not in learned_here and st.model is not None and st.has_learned(partition, offset):
                # learned before a crash, read again: learn it once, send its outputs again (ids dedupe)
                fact, risks[i] = engine.replay_test(st.model, result)
                p_fail[i] = fact.row["p_fail"]
                replayed += 1
                continue
            learn_i.append(i)
        if not learn_i:
            continue
        cols_at = None
        if cols is not None and any(i in in_cols for i in learn_i):  # all in the first round: their ids are unique
            where = {i: j for j, i in enumerate(learn_i)}
            cols_at = [where[i] for i in cols.items]
        learned, ps, rs = engine.learn_tests([None if i in in_cols else states[items[i][0]].model for i in learn_i],
                                             [items[i][1] for i in learn_i], passes=cols, passes_at=cols_at)
        for i, model, p, risk in zip(learn_i, learned, ps, rs):
            if model is None:  # learned in columns: no risk, no quarantine transition (test_columns.passes)
                p_fail[i] = p
                learned_n += 1
                continue
            key, result = items[i]
            st = states[key]
            st.model, st.applied = model, (partition, offset)
            learned_here.add(key)
            learned_n += 1
            p_fail[i], risks[i] = p, risk
            command, qfact = engine.quarantine(st.quarantine, model, result)
            if command is not None and qfact is not None:
                commands.append((i, command, qfact))
    written = [k for k in keys if k in learned_here]
    stored: list[tuple[bytes, bytes | None]] = list(zip(written, dump_tests([states[k] for k in written])))
    if cols is not None:
        stored += zip([items[i][0] for i in cols.items], write_passes(cols, items, partition=partition, offset=offset))
    if stored:
        effects.append(StoreMany("test_models", stored))
    counted = [Count("tests", learned_n)] if learned_n else []
    if replayed:
        counted.append(Count("tests_replayed", replayed))
    if rerouted:
        counted.append(Count("tests_rerouted", len(rerouted)))
    # the results were redacted where they were read (agents/test_results.py): not again per row
    kept = [i for i in range(len(items)) if i not in rerouted]
    kept_results, kept_p = [items[i][1] for i in kept], [p_fail[i] for i in kept]
    columns = test_result_columns(kept_results, kept_p)  # one report: the job's fields once, no keys per row
    facts = (facts_to_json_columns("test_results", *columns) if columns is not None
             else facts_to_json_many("test_results", test_result_rows(kept_results, kept_p)))
    effects += [Send("facts", items[0][0], v) for v in facts]
    for i, command, qfact in commands:
        key, result = items[i]
        jk = job_key(result.provider, result.owner, result.repo, result.job_id).encode()
        effects += [Send("actions", jk, command.to_json()), Send("facts", key, fact_to_json(qfact)), Flaky(command)]
    for i, risk in enumerate(risks):
        if risk is not None:
            result = items[i][1]
            jk = job_key(result.provider, result.owner, result.repo, result.job_id).encode()
            effects.append(Send("test_risk", jk, orjson.dumps({"attempt": result.attempt, "risk": risk.to_dict()})))
    return effects + counted


# --- the incidents agent: guard.incidents ------------------------------------------------------------------
def incident_step(engine: Engine, incidents: Mapping[bytes, bytes | None], key: bytes, raw: bytes) -> list[Effect]:
    """One diagnosed failure, keyed by its template, from any repository: a burst opens one incident."""
    sighting = orjson.loads(raw)
    state = load_incident(incidents.get(key))
    command, fact = engine.incident(state, sighting)
    effects: list[Effect] = [Store("incidents", key, dump_incident(state))]
    if command is not None and fact is not None:
        jk = command.job_key.encode()
        effects += [Send("actions", jk, command.to_json()), Send("facts", jk, fact_to_json(fact))]
    return effects
