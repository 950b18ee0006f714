"""The engine's pure steps: chunk assembly, completion, grace periods, the per-test model
(the planner's choices: tests/unit/remediate/test_planner.py)."""

from __future__ import annotations

import pytest

from healing_guard.engine.core import Engine
from healing_guard.schemas import JobEvent, LogChunk, TestResult, TestRisk
from healing_guard.settings import Settings
from healing_guard.engine.window import Closed, JobWindow, Ready

NOW = 1_767_225_600.0


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Settings(test_grace_seconds=2.0, chunk_grace_seconds=10.0, tail_lines=5, max_pending_chunks=4))


def chunk(seq: int, lines: list[str], first: int | None = None, eof: bool = False, attempt: int = 1) -> LogChunk:
    return LogChunk(provider="github", owner="acme", repo="web", job_id="7", seq=seq, lines=lines,
                    first_line=first, eof=eof, attempt=attempt)


def done(conclusion: str = "failure", chunks: int | None = None, attempt: int = 1, **kw) -> JobEvent:
    return JobEvent(provider="github", owner="acme", repo="web", job_id="7", job_name="build", status="completed",
                    conclusion=conclusion, log_chunks=chunks, attempt=attempt, started_at=NOW - 600,
                    completed_at=NOW, **kw)


OOM = ["Starting build", "compiling 12 modules", "java.lang.OutOfMemoryError: Java heap space", "BUILD FAILED"]


def test_out_of_order_chunks_are_assembled_in_order(engine: Engine) -> None:
    w = JobWindow(job_key="github/acme/web/7")
    w, out = engine.chunk(w, chunk(1, OOM[2:], eof=True), NOW)
    assert out == [] and w.next_seq == 0 and 1 in w.pending
    w, out = engine.chunk(w, chunk(0, OOM[:2]), NOW)
    assert w.next_seq == 2 and not w.pending and w.lines_seen == 4 and w.eof
    lines = [e["line"] for e in w.evidence]
    assert 3 in lines  # the OOM line is line 3 of the whole log
    # duplicate delivery changes nothing
    before = w.to_dict()
    w, _ = engine.chunk(w, chunk(1, OOM[2:], eof=True), NOW)
    assert w.to_dict() == before
    w, out = engine.job_event(w, done(chunks=2), NOW)
    assert len(out) == 1 and isinstance(out[0], Ready)
    assert out[0].total_lines == 4 and out[0].log_complete


def test_state_round_trips_through_json(engine: Engine) -> None:
    import orjson

    w = JobWindow(job_key="k")
    w, _ = engine.chunk(w, chunk(2, ["x"]), NOW)
    w2 = JobWindow.from_dict(orjson.loads(orjson.dumps(w.to_dict())))
    assert w2 == w


def test_success_closes_without_diagnosis(engine: Engine) -> None:
    w, out = engine.job_event(JobWindow(job_key="k"), done("success"), NOW)
    assert len(out) == 1 and isinstance(out[0], Closed)


def test_missing_chunk_waits_for_grace_then_diagnoses(engine: Engine) -> None:
    w = JobWindow(job_key="k")
    w, _ = engine.chunk(w, chunk(0, OOM, first=1), NOW)
    w, out = engine.job_event(w, done(chunks=3), NOW)  # chunks 1 and 2 never come
    assert out == [] and w.deadline == NOW + 10.0
    w, out = engine.tick(w, NOW + 5)
    assert out == []
    w, out = engine.tick(w, NOW + 10.5)
    assert len(out) == 1 and not out[0].log_complete


def test_pending_chunks_are_bounded(engine: Engine) -> None:
    w = JobWindow(job_key="k")
    for seq in range(2, 8):  # seq 0 and 1 are lost
        w, _ = engine.chunk(w, chunk(seq, [f"line {seq}"]), NOW)
    assert len(w.pending) <= 4 and w.gaps == 2


def test_new_attempt_resets_window(engine: Engine) -> None:
    w = JobWindow(job_key="k")
    w, _ = engine.chunk(w, chunk(0, OOM), NOW)
    w, _ = engine.chunk(w, chunk(0, ["all good"], attempt=2), NOW)
    assert w.attempt == 2 and w.evidence == []
    w, out = engine.job_event(w, done(chunks=1, attempt=1), NOW)  # stale attempt ignored
    assert out == []


def test_test_failure_waits_for_test_risks(engine: Engine) -> None:
    lines = ["collected 10 items", "FAILED tests/test_api.py::test_login - AssertionError: assert 500 == 200",
             "=========== 1 failed, 9 passed in 3.21s ==========="]
    w = JobWindow(job_key="k")
    w, _ = engine.chunk(w, chunk(0, lines, eof=True), NOW)
    w, out = engine.job_event(w, done(chunks=1), NOW)
    assert out == [] and w.waited_for_tests and w.deadline == NOW + 2.0
    risk = TestRisk(test_id="tests/test_api.py::test_login", p_fail=0.2, p_retry_pass=0.9, runs=40)
    w, out = engine.risk(w, risk, 1, NOW + 0.5)
    assert out == []
    w, out = engine.tick(w, NOW + 2.5)
    assert len(out) == 1 and out[0].risks == (risk,)


def test_per_test_model_learns_flaky_vs_broken(engine: Engine) -> None:
    import random

    rng = random.Random(1)
    flaky = broken = None
    for i in range(200):
        f = TestResult(provider="github", owner="a", repo="b", job_id=str(i), test_id="flaky",
                       outcome="failed" if rng.random() < 0.2 else "passed")
        flaky, _, _ = engine.learn_test(flaky, f)
        b = TestResult(provider="github", owner="a", repo="b", job_id=str(i), test_id="broken",
                       outcome="failed" if i >= 100 else "passed")
        broken, _, _ = engine.learn_test(broken, b)
    assert flaky.p_retry_pass() > 0.6
    assert broken.p_retry_pass() < 0.3
    assert 0.1 < flaky.p_fail() < 0.35
    import pickle

    assert len(pickle.dumps(flaky)) < 8000
    restored = pickle.loads(pickle.dumps(flaky))
    assert restored.p_fail() == pytest.approx(flaky.p_fail())


def test_decided_marker_ignores_replays_and_expires(engine: Engine) -> None:
    from healing_guard.engine.window import Expired, decided

    w = decided("k", 1, 0, NOW)
    for step in (lambda w: engine.chunk(w, chunk(0, OOM, eof=True), NOW),
                 lambda w: engine.job_event(w, done(chunks=1), NOW),
                 lambda w: engine.tick(w, NOW + 60)):
        w2, out = step(w)
        assert out == [] and w2.decided
    # a new attempt starts a fresh window
    w3, _ = engine.chunk(w, chunk(0, OOM, attempt=2), NOW)
    assert not w3.decided and w3.attempt == 2 and w3.evidence
    _, out = engine.tick(w, NOW + 6 * 3600 + 1)
    assert len(out) == 1 and isinstance(out[0], Expired)
