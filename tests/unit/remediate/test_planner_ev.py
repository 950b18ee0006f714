"""Cost-aware choice: expected value with success rates learned from outcomes, budget alerts."""

from __future__ import annotations

import dataclasses

import pytest

from healing_guard.classify import Diagnosis, EvidenceLine
from healing_guard.engine.core import Engine, plan_config
from healing_guard.remediate import Ledger, PlanConfig, plan
from healing_guard.remediate.outcomes import SuccessStats
from healing_guard.remediate.planner import budget_alerts, expected_value, plan_chosen
from healing_guard.remediate.strategies import ALTERNATIVES, STRATEGIES
from healing_guard.schemas import JobEvent, Outcome, TestRisk
from healing_guard.settings import Settings

NOW = 1_767_225_600.0
CFG = PlanConfig(daily_budget_usd=10.0, repo_daily_budget_usd=5.0, max_retries_per_job=3, partitions=1,
                 auto_thresholds={})


def job(repo: str = "web", minutes: float = 10.0) -> JobEvent:
    return JobEvent(provider="github", owner="acme", repo=repo, job_id="7", job_name="build", status="completed",
                    conclusion="failure", started_at=NOW - minutes * 60, completed_at=NOW)


def diag(category: str, text: str = "x") -> Diagnosis:
    return Diagnosis(category, 0.95, (EvidenceLine(3, text, "p", category, 0.9),))


def test_success_rates_shrink_towards_pool_and_prior() -> None:
    s = SuccessStats()
    assert s.p_success("network", "acme/web", "retry_backoff", 0.7) == 0.7
    for _ in range(20):
        s.learn("network", "acme/web", "retry_backoff", False)
    bad = s.p_success("network", "acme/web", "retry_backoff", 0.7)
    other = s.p_success("network", "acme/api", "retry_backoff", 0.7)
    assert bad < 0.15 and bad < other < 0.7  # the pool learned a bit, the failing repo a lot
    assert s.seen("network", "acme/web", "retry_backoff") == 20
    again = SuccessStats.from_dict(s.to_dict())
    assert again.p_success("network", "acme/web", "retry_backoff", 0.7) == bad


def test_repeated_failures_downgrade_the_action_for_that_repository_only() -> None:
    s = SuccessStats()
    _, first = plan(job(), diag("network"), (), Ledger(), CFG, 0.016, NOW, success=s)
    assert first.action == "retry_backoff"
    for _ in range(12):
        s.learn("network", "acme/web", "retry_backoff", False)
    _, later = plan(job(), diag("network"), (), Ledger(), CFG, 0.016, NOW, success=s)
    assert later.action == "notify_oncall" and "not worth it" in later.reason and "P(success)" in later.reason
    _, elsewhere = plan(job("api"), diag("network"), (), Ledger(), CFG, 0.016, NOW, success=s)
    assert elsewhere.action == "retry_backoff"


def test_expected_value_picks_between_oom_fixes() -> None:
    _, cmd = plan(job(), diag("oom"), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "rerun_more_memory"  # cheaper at a similar expected saving
    s = SuccessStats()
    for _ in range(15):  # raising the memory limit keeps failing here: the bigger runner pays off
        s.learn("oom", "acme/web", "rerun_more_memory", False)
    _, cmd = plan(job(), diag("oom"), (), Ledger(), CFG, 0.016, NOW, success=s)
    assert cmd.action == "rerun_larger_runner" and cmd.parameters["runner_size"] == "next"
    ev, cost = expected_value(STRATEGIES["network"], 0.5, 10.0, 30.0, 0.016)
    assert cost == 0.16 and round(ev, 4) == round(0.5 * 40 * 0.016 - 0.16, 4)


def test_downgrade_after_failures_keeps_the_fix_on_the_jobs_own_runner() -> None:
    """cost_control.optimization.downgrade_after_failures: 2 -- the larger runner the planner would pay for
    is allowed on the first failure, not from the second on (more memory on the job's own runner)."""
    s = SuccessStats()
    for _ in range(15):  # the bigger runner is what pays off here
        s.learn("oom", "acme/web", "rerun_more_memory", False)
    cfg = dataclasses.replace(CFG, downgrade_after_failures=2)
    _, first = plan(job(), diag("oom"), (), Ledger(), cfg, 0.016, NOW, success=s)
    assert first.action == "rerun_larger_runner"
    second = dataclasses.replace(job(), attempt=2)
    _, cmd = plan(second, diag("oom"), (), Ledger(), cfg, 0.016, NOW, success=s)
    assert cmd.action != "rerun_larger_runner" and "runner_size" not in cmd.parameters
    # chosen directly (a team strategy or the Python API): downgraded the same way, and said
    led, cmd, _, _ = plan_chosen(second, diag("oom"), ALTERNATIVES["oom"][0], "asked for", Ledger(), cfg, 0.016, NOW)
    assert cmd.action == "rerun_more_memory" and "downgraded" in cmd.reason and "failed 2 times" in cmd.reason
    assert cmd.estimated_cost_usd == pytest.approx(10 * 0.016)  # priced at the job's own runner
    # off (0): the larger runner stays
    _, cmd = plan(second, diag("oom"), (), Ledger(), CFG, 0.016, NOW, success=s)
    assert cmd.action == "rerun_larger_runner"


def test_flaky_race_gets_a_sequential_rerun() -> None:
    risks = (TestRisk(test_id="t.A", p_fail=0.3, p_retry_pass=0.9, runs=50),)
    race = Diagnosis("test_failure", 0.9, (EvidenceLine(9, "WARNING: DATA RACE", "p", "test_failure", 0.8),))
    plain = Diagnosis("test_failure", 0.9, (EvidenceLine(9, "FAIL: TestA", "p", "test_failure", 0.8),))
    _, cmd = plan(job(), plain, risks, Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "retry_tests_isolated"
    _, cmd = plan(job(), race, risks, Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "rerun_sequential"  # a parallel rerun would meet the same race
    s = SuccessStats()
    for _ in range(10):
        s.learn("test_failure", "acme/web", "retry_tests_isolated", False)
        s.learn("test_failure", "acme/web", "rerun_sequential", True)
    _, cmd = plan(job(), race, risks, Ledger(), CFG, 0.016, NOW, success=s)
    assert cmd.action == "rerun_sequential" and cmd.parameters["parallelism"] == 1
    assert cmd.parameters["tests"] == ["t.A"]


def test_budget_alerts_at_50_80_95_once_each() -> None:
    led = Ledger(day="2026-01-01").add("2026-01-01", "acme/web", 2.6)  # 52 % of the repo budget (5.0)
    led, alerts = budget_alerts(led, job(), CFG, slice_id="3", now=NOW)
    assert [a.parameters["scope"] + ":" + str(a.parameters["level"]) for a in alerts] == ["repo:acme/web:0.5"]
    assert alerts[0].action == "notify_budget" and "50 %" in alerts[0].reason
    led, again = budget_alerts(led, job(), CFG, slice_id="3", now=NOW)
    assert again == []  # already announced today
    led = led.add("2026-01-01", "acme/web", 2.3)  # 4.9 of 5.0 repo (98 %), 4.9 of 10 daily (49 %)
    led, alerts = budget_alerts(led, job(), CFG, slice_id="3", now=NOW)
    assert sorted(a.parameters["level"] for a in alerts) == [0.8, 0.95]
    led2 = Ledger.from_dict(led.to_dict())
    assert led2 == led and budget_alerts(led2, job(), CFG, slice_id="3", now=NOW)[1] == []
    # ids are deterministic: a replay of the same decision produces the same alert ids
    _, a1 = budget_alerts(Ledger(day="d").add("d", "acme/web", 9.9), job(), CFG, slice_id="1", now=NOW)
    _, a2 = budget_alerts(Ledger(day="d").add("d", "acme/web", 9.9), job(), CFG, slice_id="1", now=NOW)
    assert [a.command_id for a in a1] == [a.command_id for a in a2] and len(set(a.command_id for a in a1)) == 6


def test_budget_alerts_at_the_configured_levels_and_a_dollar_threshold() -> None:
    cfg = dataclasses.replace(CFG, alert_levels=(0.25, 0.6), cost_alert_usd=3.0)
    led = Ledger(day="2026-01-01").add("2026-01-01", "acme/web", 1.3)  # 26 % of the repo budget (5.0), 13 % daily
    led, alerts = budget_alerts(led, job(), cfg, slice_id="0", now=NOW)
    assert [(a.parameters["scope"], a.parameters["level"]) for a in alerts] == [("repo:acme/web", 0.25)]
    assert "25 %" in alerts[0].reason
    led = led.add("2026-01-01", "acme/web", 1.9)  # 3.2 USD: 64 % of the repo budget, past the 3 USD threshold
    led, alerts = budget_alerts(led, job(), cfg, slice_id="0", now=NOW)
    assert sorted((a.parameters["scope"], a.parameters["level"]) for a in alerts) == [
        ("cost", 1.0), ("daily", 0.25), ("repo:acme/web", 0.6)]
    usd = next(a for a in alerts if a.parameters["scope"] == "cost")
    assert "3.20 USD > 3.00 USD" in usd.reason and usd.action == "notify_budget"
    assert budget_alerts(led.add("2026-01-01", "acme/web", 0.5), job(), cfg, slice_id="0", now=NOW)[1] == []  # once a day
    # the threshold is per day and sliced like the budgets: two partitions see 1.5 USD each
    two = dataclasses.replace(cfg, partitions=2, alert_levels=(0.99,))
    _, alerts = budget_alerts(Ledger(day="d").add("d", "acme/web", 1.6), job(), two, slice_id="1", now=NOW)
    assert [a.parameters["scope"] for a in alerts] == ["cost"]


def test_the_alert_settings_reach_the_planner() -> None:
    s = Settings(budget_alert_levels=(0.3, 0.9), cost_alert_usd=100.0)
    cfg = plan_config(s, partitions=4)
    assert cfg.alert_levels == (0.3, 0.9) and cfg.cost_alert_usd == 100.0
    assert plan_config(Settings(cost_alert_usd=100.0, budgets_enabled=False), partitions=1).cost_alert_usd == 0.0


def test_engine_learns_only_from_real_outcomes_of_actions() -> None:
    engine = Engine(Settings(broker_url="kafka://127.0.0.1:1"))
    s = SuccessStats()

    def out(status: str, action: str = "retry_backoff", category: str | None = "network") -> Outcome:
        return Outcome(command_id="c", job_key="github/acme/web/7", action=action, status=status,  # type: ignore[arg-type]
                       category=category)

    assert engine.learn_outcome(s, out("failed"))  # the platform refused: the fix did not happen
    assert not engine.learn_outcome(s, out("succeeded"))  # accepted only: the next attempt will tell
    assert not engine.learn_outcome(s, out("dry_run"))
    assert not engine.learn_outcome(s, out("failed", action="notify_author"))
    assert not engine.learn_outcome(s, out("failed", category=None))
    assert s.counts["network|acme/web|retry_backoff"] == [0.0, 1.0]


def test_first_failure_after_a_green_history_is_a_regression() -> None:
    # a model may well give a high P(retry passes) to a test that never failed: without a past
    # recovery there is no evidence that a retry works, so the author hears about it
    never_failed = (TestRisk(test_id="t.B", p_fail=0.4, p_retry_pass=0.62, runs=21, recoveries=0),)
    recovered = (TestRisk(test_id="t.B", p_fail=0.2, p_retry_pass=0.8, runs=41, recoveries=3),)
    d = Diagnosis("test_failure", 0.9, (EvidenceLine(9, "FAILED t.B", "p", "test_failure", 0.8),))
    _, cmd = plan(job(), d, never_failed, Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "notify_author" and "t.B" in cmd.reason
    _, cmd = plan(job(), d, recovered, Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "retry_tests_isolated"


def test_engine_shares_a_bounded_flakiness_prior(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import healing_guard.engine.core as pipeline
    from healing_guard.schemas import TestResult

    monkeypatch.setattr(pipeline, "MAX_PRIOR_TESTS", 3)
    engine = Engine(Settings(broker_url="kafka://127.0.0.1:1"))
    models = {}
    for i in range(6):
        tid = f"pkg.Stable{i}#test"
        for j in range(30):
            r = TestResult(provider="github", owner="o", repo="r", job_id=str(j), test_id=tid, outcome="passed")
            models[tid], fact, risk = engine.learn_test(models.get(tid), r)
    assert engine.flake_prior.tests == 3  # later tests read the prior without growing it
    assert all(m.runs == 30 for m in models.values())
    first = TestResult(provider="github", owner="o", repo="r", job_id="x", test_id="pkg.New#test", outcome="passed")
    _, fact, _ = engine.learn_test(None, first)
    # a population of stable tests makes a new test's first prediction lower than the generic prior's
    from healing_guard.flaky import TestModel

    generic = TestModel().learn(False)
    assert fact.row["p_fail"] < 0.8 * generic


def test_the_pipelines_own_strategy_and_retry_limit() -> None:
    def j(**kw: object) -> JobEvent:
        return JobEvent(provider="github", owner="acme", repo="web", job_id="7", job_name="build", status="completed",
                        conclusion="failure", started_at=NOW - 600, completed_at=NOW, **kw)  # type: ignore[arg-type]

    _, cmd = plan(j(healing_strategy="off"), diag("network"), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "notify_oncall" and "strategy: off" in cmd.reason
    _, cmd = plan(j(healing_strategy="network_backoff"), diag("network"), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "retry_backoff"
    _, cmd = plan(j(healing_strategy="network_backoff"), diag("oom"), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "notify_oncall" and "allows only network_backoff" in cmd.reason
    _, cmd = plan(j(healing_strategy="oom_recovery, network_backoff"), diag("oom"), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "rerun_more_memory"
    _, cmd = plan(j(healing_strategy="bogus"), diag("network"), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "notify_oncall" and "unknown strategy 'bogus'" in cmd.reason
    _, cmd = plan(j(attempt=2, max_retries=1), diag("network"), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "escalate" and "retry limit of 1" in cmd.reason
    _, cmd = plan(j(attempt=2, max_retries=5), diag("network"), (), Ledger(), CFG, 0.016, NOW)
    assert cmd.action == "retry_backoff"  # the guard's own limit (3) still applies above
