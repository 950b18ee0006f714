"""Table codecs: every table value round-trips, and older values still load."""

from __future__ import annotations

import pickle

import orjson

from healing_guard.engine.state import (TestState, dump_incident, dump_partition, dump_test, dump_window,
                                        ledger_key, load_incident, load_partition, load_test, load_window,
                                        window_deadline)
from healing_guard.engine.window import JobWindow
from healing_guard.flaky import TestModel
from healing_guard.flaky.quarantine import QuarantineState
from healing_guard.remediate import Ledger
from healing_guard.remediate.incidents import IncidentState
from healing_guard.remediate.outcomes import SuccessStats


def test_partition_state_round_trips_and_starts_empty() -> None:
    assert ledger_key(3) == b"ledger:3"
    ledger, success = load_partition(None)
    assert ledger.to_dict() == Ledger().to_dict() and success.to_dict() == SuccessStats().to_dict()
    success.learn("oom", "acme/web", "retry_more_memory", True)
    raw = dump_partition(ledger, success)
    assert orjson.loads(raw)["success"] == success.to_dict()
    ledger2, success2 = load_partition(raw)
    assert ledger2.to_dict() == ledger.to_dict() and success2.to_dict() == success.to_dict()


def test_window_round_trips_with_its_pending_chunks() -> None:
    assert load_window(None, b"github/acme/web/7") == JobWindow(job_key="github/acme/web/7")
    w = JobWindow(job_key="github/acme/web/7", attempt=2, pending={3: {"seq": 3, "lines": ["x"]}}, deadline=5.0)
    back = load_window(dump_window(w), b"ignored: the value names its job")
    assert back == w and 3 in back.pending  # JSON object keys come back as ints


def test_window_deadline_for_the_rescan() -> None:
    waiting = JobWindow(job_key="k", deadline=100.0, partition=2)
    assert window_deadline(dump_window(waiting), ttl_seconds=60) == (100.0, 2)
    never_completed = JobWindow(job_key="k", touched=10.0, partition=1)  # includes decided markers
    assert window_deadline(dump_window(never_completed), ttl_seconds=60) == (70.0, 1)
    completed = JobWindow(job_key="k", job={"status": "completed"}, touched=10.0)
    assert window_deadline(dump_window(completed), ttl_seconds=60) is None


def test_test_state_round_trips_and_reads_older_values() -> None:
    assert load_test(None) == TestState()
    model = TestModel()
    model.learn(True, 1.0)
    q = QuarantineState(quarantined=True, episode=2)
    st = load_test(dump_test(model, q, (1, 41)))
    assert st.model is not None and st.model.runs == 1
    assert st.quarantine == q and st.applied == (1, 41)
    assert st.has_learned(1, 41) and st.has_learned(1, 7)
    assert not st.has_learned(1, 42) and not st.has_learned(0, 41)  # another partition: another offset space
    old = load_test(pickle.dumps(model))  # the bare model, before quarantine and offsets were kept
    assert old.model is not None and old.model.runs == 1 and old.applied is None
    assert not old.has_learned(1, 0)


def test_incident_state_round_trips() -> None:
    assert load_incident(None) == IncidentState()
    s = IncidentState(recent=[[1.0, "acme/web", "github/acme/web/1"]])
    assert load_incident(dump_incident(s)) == s
