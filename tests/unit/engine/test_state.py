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


def test_test_state_is_compact_versioned_and_keeps_every_field() -> None:
    import dataclasses

    import numpy as np
    import pytest

    model = TestModel()
    for i, failed in enumerate([False, True, False, False, True, True, False]):
        model.learn(failed, 0.5 + i, head_sha=f"sha{i % 2}")
    model.last_template = "tpl123"
    model.pending_context = {"z_duration": 1.5, "same_template": 1.0}
    q = QuarantineState(quarantined=True, episode=3, passes_since=2, since=1_700_000_000.5)
    raw = dump_test(model, q, (2, 123_456_789_012))
    assert raw[0] == 1 and len(raw) < 1000  # version 1; the pickle of the same state is about 2.3 KB
    assert len(pickle.dumps({"model": model, "quarantine": q.to_dict(), "applied": (2, 1)})) > 2 * len(raw)
    st = load_test(raw)
    assert st.model is not None and st.quarantine == q and st.applied == (2, 123_456_789_012)
    for f in dataclasses.fields(TestModel):
        if f.name != "model":
            assert getattr(st.model, f.name) == pytest.approx(getattr(model, f.name)), f.name
    # the filter as float32: the same predictions to 1e-6
    assert np.allclose(st.model.model.u, model.model.u, rtol=1e-6)
    assert st.model.p_fail() == pytest.approx(model.p_fail(), rel=1e-6)
    assert st.model.p_retry_pass() == pytest.approx(model.p_retry_pass(), rel=1e-6)
    fresh = load_test(dump_test(TestModel(), QuarantineState(), (0, 0)))
    assert fresh.model is not None and fresh.model.last_sha is None and fresh.model.pending_context is None
    with pytest.raises(ValueError, match="unknown test state encoding"):
        load_test(b"\x07garbage")


def test_incident_state_round_trips() -> None:
    assert load_incident(None) == IncidentState()
    s = IncidentState(recent=[[1.0, "acme/web", "github/acme/web/1"]])
    assert load_incident(dump_incident(s)) == s


def test_many_test_states_load_and_dump_as_one_at_a_time_does() -> None:
    from healing_guard.engine.state import dump_tests, load_tests

    states = []
    for i in range(5):
        m = TestModel()
        for j in range(i + 1):
            m.learn(j % 2 == 0, 0.1 * j, head_sha="abc" if j else None)
        states.append(TestState(m, QuarantineState(episode=i), (0, i)))
    raws = dump_tests(states)
    assert raws == [dump_test(st.model, st.quarantine, st.applied) for st in states]  # type: ignore[arg-type]
    mixed: list[bytes | None] = [raws[0], None, pickle.dumps(states[1].model), raws[4]]
    loaded = load_tests(mixed)
    one_by_one = [load_test(r) for r in mixed]
    for a, b in zip(loaded, one_by_one):
        assert (a.model is None) == (b.model is None) and a.applied == b.applied and a.quarantine == b.quarantine
        if a.model is not None and b.model is not None:
            assert a.model.runs == b.model.runs and a.model.last_sha == b.model.last_sha
            assert (a.model.model.u == b.model.model.u).all() and (a.model.model.logz == b.model.model.logz).all()
