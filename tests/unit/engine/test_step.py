"""The worker's steps without Faust: state in as plain dicts, effects out as values.

(The same steps inside the real agents, through Faust's test_context: tests/unit/agents/test_agents.py.)
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from healing_guard.engine.core import Engine
from healing_guard.engine.state import dump_window, ledger_key, load_partition, load_test
from healing_guard.engine.step import (Count, Decided, Effect, Hold, IngestState, Resent, Send, Store, StoreMany, Tick,
                                       Wake, decode_ingest, incident_step, ingest_step,
                                       max_tick_hold, results_batch_step, results_step)
from healing_guard.engine.window import JobWindow
from healing_guard.schemas import DeadLetter, JobEvent, LogChunk, Outcome, SchemaError, TestResult
from healing_guard.schemas.test_batch import decode_tests, partition_of
from healing_guard.warehouse.facts import facts_from_json
from healing_guard.settings import Settings

KEY = b"gitlab/platform/api/77"
NOW = 1_767_225_600.0
DISK_FULL = "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Settings(broker_url="kafka://127.0.0.1:1", test_grace_seconds=0.0, partitions=1))


class Tables:
    """The agent's side, as plain dicts: carries out Store and Hold effects."""

    def __init__(self) -> None:
        self.windows: dict[bytes, bytes | None] = {}
        self.ledgers: dict[bytes, bytes | None] = {}
        self.test_models: dict[bytes, bytes | None] = {}
        self.incidents: dict[bytes, bytes | None] = {}
        self.holds: dict[bytes, float] = {}
        self.resent: set[bytes] = set()

    def state(self) -> IngestState:
        return IngestState(windows=self.windows, ledgers=self.ledgers, holds=self.holds, resent=self.resent)

    def apply(self, effects: list[Effect]) -> list[Effect]:
        for e in effects:
            writes = [(e.table, e.key, e.value)] if isinstance(e, Store) else \
                [(e.table, k, v) for k, v in e.items] if isinstance(e, StoreMany) else []
            for name, key, value in writes:
                table = getattr(self, name)
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
            if isinstance(e, Resent):
                self.resent.add(e.key)
            elif isinstance(e, Hold):
                if e.since is None:
                    self.holds.pop(e.key, None)
                else:
                    self.holds[e.key] = e.since
        return effects


def sends(effects: list[Effect], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(e.value) for e in effects if isinstance(e, Send) and e.topic == topic]


def chunk(lines: list[str], attempt: int = 1) -> LogChunk:
    return LogChunk(provider="gitlab", owner="platform", repo="api", job_id="77", seq=0, lines=lines, eof=True,
                    attempt=attempt)


def done(conclusion: str = "failure", attempt: int = 1) -> JobEvent:
    return JobEvent(provider="gitlab", owner="platform", repo="api", job_id="77", job_name="build",
                    status="completed", conclusion=conclusion, exit_code=1, log_chunks=1, attempt=attempt,
                    started_at=NOW - 600, completed_at=NOW)


def step(engine: Engine, t: Tables, event: Any, *, caught_up: bool = True, now: float = NOW) -> list[Effect]:
    return t.apply(ingest_step(engine, t.state(), KEY, event, partition=0, now=now, logs_caught_up=lambda: caught_up))


def test_decode_dead_letters_what_cannot_be_used() -> None:
    names = Settings().topics

    def decode(topic: str, key: bytes | None, raw: bytes) -> Any:
        return decode_ingest(names, topic, key, raw, partition=0, offset=5, max_chunk_bytes=1 << 20)

    no_key = decode(names.logs, None, chunk(["x"]).to_json())
    assert isinstance(no_key, DeadLetter) and "no key" in no_key.reason and no_key.offset == 5
    wrong = decode(names.logs, b"other/o/r/1", chunk(["x"]).to_json())
    assert isinstance(wrong, DeadLetter) and wrong.field_name == "key"
    bad_risk = decode(names.test_risk, KEY, b'{"risk": {}}')
    assert isinstance(bad_risk, DeadLetter)
    assert decode(names.ticks, KEY, b"{}") == Tick()
    assert isinstance(decode(names.logs, KEY, chunk(["x"]).to_json()), LogChunk)


def test_a_failed_job_is_decided_and_its_marker_written_after_its_commands(engine: Engine) -> None:
    t = Tables()
    effects = step(engine, t, chunk(["$ pip install -r requirements.txt", DISK_FULL]))
    assert Count("chunks") in effects and Count("lines", 2) in effects
    assert KEY in t.windows and not any(isinstance(e, Send) for e in effects)
    effects = step(engine, t, done())
    [cmd] = sends(effects, "actions")
    assert cmd["category"] == "disk_full" and cmd["action"] == "cleanup_retry"
    assert sends(effects, "findings")[0]["category"] == "disk_full"
    assert {f["table"] for f in sends(effects, "facts")} >= {"job_runs", "diagnoses", "commands"}
    assert any(isinstance(e, Decided) for e in effects)
    # the ledger is charged before the commands go, the marker written after them
    kinds = [(type(e).__name__, getattr(e, "table", getattr(e, "topic", None))) for e in effects]
    assert kinds.index(("Store", "ledgers")) < kinds.index(("Send", "actions")) < kinds.index(("Store", "windows"))
    marker = orjson.loads(t.windows[KEY] or b"")
    assert marker["decided"] and marker["retried"] == ["cleanup_retry", "disk_full"]
    assert effects[-1] == Wake(KEY, (NOW + engine.settings.window_ttl_seconds, 0))
    # a replayed completion event decides nothing twice
    assert sends(step(engine, t, done()), "actions") == []
    # the next attempt went green: the planner learns the action worked
    step(engine, t, chunk(["ok"], attempt=2))
    effects = step(engine, t, done("success", attempt=2))
    assert Count("outcomes_learned") in effects and Count("jobs_closed") in effects
    _, success = load_partition(t.ledgers[ledger_key(0)])
    assert success.to_dict()["counts"]["disk_full|platform/api|cleanup_retry"] == [1.0, 0.0]


def test_an_outcome_teaches_the_partitions_planner(engine: Engine) -> None:
    t = Tables()
    failed = Outcome(command_id="c1", job_key=KEY.decode(), action="cleanup_retry", status="failed",
                     category="disk_full")
    effects = step(engine, t, failed)
    assert [type(e) for e in effects] == [Send, Store, Count] and ledger_key(0) in t.ledgers
    # every outcome is a fact for ClickHouse (the command's outcome in the API), learned from or not
    fact = orjson.loads(effects[0].value)  # type: ignore[union-attr]
    assert effects[0].topic == "facts" and fact["table"] == "outcomes"  # type: ignore[union-attr]
    assert (fact["row"]["id"], fact["row"]["status"]) == ("c1", "failed")
    dry = Outcome(command_id="c2", job_key=KEY.decode(), action="retry", status="dry_run", category="network")
    effects = step(engine, t, dry)
    assert [type(e) for e in effects] == [Send] and orjson.loads(effects[0].value)["row"]["status"] == "dry_run"  # type: ignore[union-attr]


def test_a_tick_waits_for_the_partitions_logs_within_reason(engine: Engine) -> None:
    t = Tables()
    assert step(engine, t, Tick(), caught_up=False) == []  # no window: nothing to wake
    t.windows[KEY] = dump_window(JobWindow(job_key=KEY.decode(), deadline=NOW - 1))
    assert step(engine, t, Tick(), caught_up=False) == [Hold(KEY, NOW), Wake(KEY, (NOW + 0.5, 0))]
    later = NOW + max_tick_hold(engine) - 1
    assert step(engine, t, Tick(), caught_up=False, now=later) == [Hold(KEY, NOW), Wake(KEY, (later + 0.5, 0))]
    effects = step(engine, t, Tick(), caught_up=False, now=NOW + max_tick_hold(engine))  # held long enough
    assert effects[0] == Hold(KEY, None) and t.holds == {}


def fact_ids(effects: list[Effect]) -> list[str]:
    return [f.row["id"] for e in effects if isinstance(e, Send) and e.topic == "facts" for f in facts_from_json(e.value)]


def result(test_id: str, outcome: str = "passed", job_id: str = "4") -> TestResult:
    return TestResult(provider="github", owner="o", repo="r", job_id=job_id, test_id=test_id, outcome=outcome)


def test_a_test_result_is_learned_once(engine: Engine) -> None:
    t = Tables()
    r = result("tests/a.py::b", "failed")
    [(key, res)] = [(x.test_id.encode(), x) for x in decode_tests(r.to_json(), r.test_id.encode()).results]
    effects = t.apply(results_step(engine, t.test_models, key, res, partition=0, offset=9))
    assert Count("tests") in effects and load_test(t.test_models[key]).applied == (0, 9)
    [risk] = [e for e in effects if isinstance(e, Send) and e.topic == "test_risk"]
    assert risk.key == b"github/o/r/4"  # re-keyed by job key, for the job agent
    again = t.apply(results_step(engine, t.test_models, key, res, partition=0, offset=9))  # read again after a crash
    assert Count("tests_replayed") in again and not any(isinstance(e, (Store, StoreMany)) for e in again)
    assert fact_ids(again) == fact_ids(effects)  # sent again, counted once by their ids
    with pytest.raises(SchemaError) as exc:
        decode_tests(r.to_json(), b"other")
    assert exc.value.field == "key"


def _batch(n: int, partitions: int = 1, fail_every: int = 7) -> list[tuple[bytes, TestResult]]:
    rs = [result(f"pkg/test_m{i % 5}.py::test_{i}", "failed" if i % fail_every == 0 else "passed") for i in range(n)]
    return [(r.test_id.encode(), r) for r in rs]


def test_a_batch_learns_each_test_as_one_result_at_a_time_would_and_writes_each_test_once(engine: Engine) -> None:
    batched, single = Tables(), Tables()
    one_by_one = Engine(engine.settings)
    items = _batch(60)
    effects = batched.apply(results_batch_step(engine, batched.test_models, items, partition=0, offset=3))
    [stores] = [e for e in effects if isinstance(e, StoreMany)]
    assert sorted(k for k, _ in stores.items) == sorted(k for k, _ in items)  # each test once, in one write
    assert Count("tests", 60) in effects
    facts = [e for e in effects if isinstance(e, Send) and e.topic == "facts"]
    assert len(facts) == 1 and len(facts_from_json(facts[0].value)) == 60  # one message of 60 rows
    for off, (k, r) in enumerate(items):
        single.apply(results_step(one_by_one, single.test_models, k, r, partition=0, offset=off))
    # same predictions: a batch of fewer than REFIT_EVERY tests is judged under one prior, so new tests
    # of one batch see the prior as it stood before it; the models' own state is the same
    for k, _ in items:
        a, b = load_test(batched.test_models[k]), load_test(single.test_models[k])
        assert a.model is not None and b.model is not None
        assert (a.model.runs, a.model.fails, a.model.streak) == (b.model.runs, b.model.fails, b.model.streak)
    risks = [e for e in effects if isinstance(e, Send) and e.topic == "test_risk"]
    assert len(risks) == len([1 for _, r in items if r.outcome == "failed"])


def test_a_test_named_twice_in_a_batch_learns_both_results_in_order(engine: Engine) -> None:
    t = Tables()
    items = [(b"a::t", result("a::t", "failed")), (b"b::t", result("b::t")), (b"a::t", result("a::t"))]
    effects = t.apply(results_batch_step(engine, t.test_models, items, partition=0, offset=5))
    st = load_test(t.test_models[b"a::t"])
    assert st.model is not None and (st.model.runs, st.model.fails, st.model.last_failed) == (2, 1, False)
    [stores] = [e for e in effects if isinstance(e, StoreMany)]
    assert len(stores.items) == 2 and Count("tests", 3) in effects
    assert len(fact_ids(effects)) == 3
    again = t.apply(results_batch_step(engine, t.test_models, items, partition=0, offset=5))  # after a crash
    st2 = load_test(t.test_models[b"a::t"])
    assert st2.model is not None and st2.model.runs == 2 and Count("tests_replayed", 3) in again


def test_a_batch_result_whose_id_hashes_elsewhere_is_sent_on_to_its_partition() -> None:
    engine = Engine(Settings(partitions=4, facts_enabled=False, status_file=""))
    t = Tables()
    items = _batch(40)
    here = [(k, r) for k, r in items if partition_of(k, 4) == 2]
    elsewhere = [(k, r) for k, r in items if partition_of(k, 4) != 2]
    assert here and elsewhere
    effects = t.apply(results_batch_step(engine, t.test_models, items, partition=2, offset=1))
    resent = [e for e in effects if isinstance(e, Send) and e.topic == "tests"]
    assert sorted(e.key for e in resent) == sorted(k for k, _ in elsewhere)
    assert all(TestResult.from_json(e.value).test_id.encode() == e.key and e.partition is None for e in resent)
    assert sorted(t.test_models) == sorted(k for k, _ in here) and Count("tests_rerouted", len(elsewhere)) in effects
    # a one-result message is Kafka's partitioner's business: learned where it arrives
    k, r = elsewhere[0]
    t.apply(results_step(engine, t.test_models, k, r, partition=2, offset=2))
    assert k in t.test_models


def test_an_incident_sighting_is_stored(engine: Engine) -> None:
    t = Tables()
    sighting = {"template": "TLS handshake timeout", "provider": "github", "owner": "acme", "repo": "r0",
                "job_id": "1", "attempt": 1, "category": "docker_registry", "ts": NOW}
    effects = t.apply(incident_step(engine, t.incidents, b"k", orjson.dumps(sighting)))
    assert [type(e) for e in effects] == [Store] and b"k" in t.incidents


def test_a_decided_jobs_commands_are_sent_again_when_its_messages_are_read_again_after_a_crash(
        engine: Engine) -> None:
    """The worker died after the decided marker reached its changelog and before the command reached
    guard.actions: its offsets were not committed, so the restarted worker reads the job's messages again
    and finds the marker. It sends the stored commands again, same ids (the executor drops a copy), once."""
    t = Tables()
    step(engine, t, chunk(["$ pip install -r requirements.txt", DISK_FULL]))
    decided = step(engine, t, done())
    first, first_facts = sends(decided, "actions"), sends(decided, "facts")
    assert len(first) == 1 and {f["table"] for f in first_facts} == {"job_runs", "diagnoses", "commands"}
    # the deciding process sends nothing twice
    assert not sends(step(engine, t, done()), "actions")
    restarted = Tables()
    restarted.windows = dict(t.windows)
    restarted.ledgers = dict(t.ledgers)
    again = step(engine, restarted, chunk(["$ pip install -r requirements.txt", DISK_FULL]))
    assert sends(again, "actions") == first
    assert sends(again, "facts") == first_facts  # the marker may have reached its changelog, the facts not
    assert Count("commands_resent") in again
    assert not sends(step(engine, restarted, done()), "actions")  # once per process
    assert not sends(step(engine, restarted, Tick()), "actions")
    # a new attempt of the job is a new decision, not a copy of the old one
    fresh = Tables()
    fresh.windows = dict(t.windows)
    assert not sends(step(engine, fresh, chunk(["x"], attempt=2)), "actions")


def test_a_recovery_is_announced_when_the_team_asks_for_it() -> None:
    """notifications.on_recovery: the attempt after an automatic action went green: one notify_recovery
    naming the action; nothing for a failed next attempt, and nothing when the team did not ask."""
    for on in (True, False):
        engine = Engine(Settings(broker_url="kafka://127.0.0.1:1", test_grace_seconds=0.0, partitions=1,
                                 notify_on_recovery=on))
        t = Tables()
        step(engine, t, chunk(["$ pip install -r requirements.txt", DISK_FULL]))
        [first] = sends(step(engine, t, done()), "actions")
        step(engine, t, chunk(["ok"], attempt=2))
        got = sends(step(engine, t, done("success", attempt=2)), "actions")
        if not on:
            assert got == []
            continue
        [rec] = got
        assert rec["action"] == "notify_recovery" and rec["attempt"] == 2 and rec["category"] == "disk_full"
        assert rec["parameters"] == {"slack": True, "healed_by": first["action"]}
        assert "green again on attempt 2, after cleanup_retry" in rec["reason"]
    # a next attempt that failed again is no recovery
    engine = Engine(Settings(broker_url="kafka://127.0.0.1:1", test_grace_seconds=0.0, partitions=1,
                             notify_on_recovery=True))
    t = Tables()
    step(engine, t, chunk(["$ pip install -r requirements.txt", DISK_FULL]))
    step(engine, t, done())
    step(engine, t, chunk(["$ pip install -r requirements.txt", DISK_FULL], attempt=2))
    assert all(c["action"] != "notify_recovery" for c in sends(step(engine, t, done(attempt=2)), "actions"))
