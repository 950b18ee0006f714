"""The planner's choices: code failures to the author, transient causes to their fix, budgets and limits."""

from __future__ import annotations

import pytest

from healing_guard.classify import Diagnosis, EvidenceLine
from healing_guard.remediate import Ledger, PlanConfig, command_id, plan
from healing_guard.schemas import TestRisk
from tests.unit.engine.test_window import NOW, done


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
