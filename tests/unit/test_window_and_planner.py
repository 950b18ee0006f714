"""The pure steps: chunk assembly, completion, grace periods, and the planner's choices."""

from __future__ import annotations

import pytest

from healing_guard.classify import Diagnosis, EvidenceLine
from healing_guard.engine.core import Engine
from healing_guard.remediate import Ledger, PlanConfig, command_id, plan
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


def _diag(category: str, confidence: float = 0.9) -> Diagnosis:
    return Diagnosis(category=category, confidence=confidence,
                     evidence=(EvidenceLine(line=3, text="x", pattern="p", category=category, weight=0.9),))


CFG = PlanConfig(daily_budget_usd=10.0, repo_daily_budget_usd=5.0, max_retries_per_job=2, partitions=1)


@pytest.mark.parametrize("category", ["compilation_error", "lint_style", "build_config", "test_failure",
                                      "dependency_resolution"])
def test_code_failures_go_to_the_author(category: str) -> None:
    _, cmd = plan(done(), _diag(category), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "notify_author" and cmd.estimated_cost_usd == 0.0


@pytest.mark.parametrize("category, action", [("oom", "rerun_more_memory"), ("network", "retry_backoff"),
                                              ("cache_corruption", "clear_cache_retry"), ("disk_full", "cleanup_retry"),
                                              ("infra_runner_lost", "retry"), ("rate_limit", "retry_backoff"),
                                              ("docker_registry", "rebuild_no_layer_cache")])
def test_transient_causes_get_their_fix(category: str, action: str) -> None:
    ledger, cmd = plan(done(), _diag(category), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == action and cmd.estimated_cost_usd > 0
    assert ledger.spent_usd == pytest.approx(cmd.estimated_cost_usd)
    assert cmd.command_id == command_id("github/acme/web/7", 1, action)
    assert cmd.budget is not None and cmd.budget.max_retries_per_job == 2


def test_flaky_only_when_every_failed_test_is_known_flaky() -> None:
    flaky = TestRisk(test_id="t1", p_fail=0.2, p_retry_pass=0.85, runs=50)
    fresh = TestRisk(test_id="t2", p_fail=0.5, p_retry_pass=0.9, runs=1)
    regression = TestRisk(test_id="t3", p_fail=0.9, p_retry_pass=0.1, runs=50)
    _, cmd = plan(done(), _diag("test_failure"), (flaky,), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "retry_tests_isolated" and cmd.parameters["tests"] == ["t1"]
    for other in (fresh, regression):
        _, cmd = plan(done(), _diag("test_failure"), (flaky, other), Ledger(), CFG, 0.016, NOW)
        assert cmd.action == "notify_author", other


def test_budget_and_retry_limit_escalate() -> None:
    _, cmd = plan(done(attempt=3), _diag("network"), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "escalate" and "retry limit" in cmd.reason and cmd.parameters["ticket"] is True
    _, again = plan(done(attempt=4), _diag("network"), (), Ledger(), CFG, 0.016, NOW)
    assert again.command_id == cmd.command_id  # one ticket per failing job, not one per attempt
    day = "2026-01-01"
    rich = Ledger(day=day, spent_usd=9.99, repo_spent=(("acme/web", 1.0),))
    _, cmd = plan(done(), _diag("network"), (), rich, CFG, 0.016, NOW)
    assert cmd.action == "notify_oncall" and "daily retry budget" in cmd.reason
    repo_spent = Ledger(day=day, spent_usd=4.99, repo_spent=(("acme/web", 4.99),))
    _, cmd = plan(done(), _diag("network"), (), repo_spent, CFG, 0.016, NOW)
    assert "acme/web retry budget" in cmd.reason
    # a new day starts with a fresh ledger
    old = Ledger(day="2025-12-31", spent_usd=9.99)
    ledger, cmd = plan(done(), _diag("network"), (), old, CFG, 0.016, NOW)
    assert cmd.action == "retry_backoff" and ledger.day == day


def test_low_confidence_is_not_acted_on() -> None:
    _, cmd = plan(done(), _diag("network", 0.3), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "notify_oncall"


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
