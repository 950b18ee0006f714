"""A user's named pattern that decides a diagnosis: the command carries its remediation, through the same
gates, budgets and retry limits as the table's actions."""

from __future__ import annotations

import dataclasses

import pytest

from healing_guard.classify import Diagnosis, EvidenceLine
from healing_guard.directives import environment, from_command
from healing_guard.executor.core import parameter_schema
from healing_guard.patterns.named import Remediation
from healing_guard.remediate import Ledger, PlanConfig, plan
from healing_guard.remediate.planner import pattern_remedy
from healing_guard.remediate.policy import choose
from healing_guard.schemas import Command, TestRisk
from tests.unit.engine.test_window import NOW, done

TIMING = Remediation("user.timing_sensitive", None, (("timeout_factor", 2.0),),
                     advice=("add retry logic around the timing-sensitive code",))
EXTERNAL = Remediation("user.external_dependency", advice=("mock the external services", "add a circuit breaker"))
LAYERS = Remediation("user.docker_layer_cache", "rebuild_no_layer_cache", (("no_cache", True),))
DISK = Remediation("user.disk_pressure", "cleanup_retry",
                   (("cleanup", ("git clean -ffdx", "docker system prune -af")),),
                   notes=("the guard cannot grow a job's disk (+10GB asked); hosted runners have fixed disks: "
                          "cleaning up instead",))
CACHE = Remediation("user.stale_cache", "clear_cache_retry", (("clear_cache", True),))

REMEDIES = {"user.timing_sensitive": TIMING, "user.timing_sensitive.0": TIMING,
            "user.external_dependency": EXTERNAL, "user.docker_layer_cache.1": LAYERS,
            "user.disk_pressure.0": DISK, "user.stale_cache": CACHE}
CFG = PlanConfig(daily_budget_usd=10.0, repo_daily_budget_usd=5.0, max_retries_per_job=2, partitions=1,
                 pattern_remedies=REMEDIES)
PRICE = 0.016


def diag(category: str, *patterns: str, confidence: float = 0.9, learned: bool = False) -> Diagnosis:
    ev = tuple(EvidenceLine(line=10 - i, text="x", pattern=p, category=category, weight=0.8)
               for i, p in enumerate(patterns))
    return Diagnosis(category, confidence, ev, learned=learned)


FLAKY = (TestRisk(test_id="tests/test_api.py::test_poll", p_fail=0.2, p_retry_pass=0.9, runs=40, recoveries=5),)


def executor_accepts(cmd: Command) -> None:
    """Every parameter the executor's schema names passes its check (the others reach no client but the
    directive, which caps them again)."""
    checks = parameter_schema()[cmd.action]
    for k, v in cmd.parameters.items():
        if k in checks and v is not None:
            checks[k](v, f"parameters.{k}")


def test_the_deciding_pattern_is_the_strongest_line_of_the_category() -> None:
    assert pattern_remedy(diag("disk_full", "user.disk_pressure.0", "disk.no_space"), CFG) is DISK
    # a built-in line decided: the table answers, whatever user lines support it
    assert pattern_remedy(diag("disk_full", "disk.no_space", "user.disk_pressure.0"), CFG) is None
    # located lines come first in the evidence but never decide
    located = Diagnosis("disk_full", 0.9, (EvidenceLine(12, "x", "_locate.detail", "unknown", 0.0),
                                           EvidenceLine(10, "x", "user.disk_pressure.0", "disk_full", 0.8)))
    assert pattern_remedy(located, CFG) is DISK
    assert pattern_remedy(diag("disk_full", "user.disk_pressure.0", learned=True), CFG) is None
    assert pattern_remedy(diag("disk_full", "user.disk_pressure.0", confidence=0.4), CFG) is None
    assert pattern_remedy(diag("disk_full", "user.disk_pressure.0"), PlanConfig()) is None


def test_an_action_entry_replaces_the_tables_action_with_its_parameters() -> None:
    ledger, cmd = plan(done(), diag("disk_full", "user.disk_pressure.0"), (), Ledger(), CFG, PRICE, NOW)
    assert cmd.action == "cleanup_retry"
    assert cmd.parameters == {"cleanup": ["git clean -ffdx", "docker system prune -af"]}
    assert cmd.reason == ("pattern user.disk_pressure: clean up (git clean -ffdx, docker system prune -af) and rerun; "
                          "the guard cannot grow a job's disk (+10GB asked); hosted runners have fixed disks: "
                          "cleaning up instead")
    assert cmd.estimated_cost_usd > 0 and ledger.spent_usd == pytest.approx(cmd.estimated_cost_usd)
    d = from_command(cmd)
    assert d is not None and d.cleanup == ["git clean -ffdx", "docker system prune -af"]
    executor_accepts(cmd)

    _, cmd = plan(done(), diag("docker_registry", "user.docker_layer_cache.1"), (), Ledger(), CFG, PRICE, NOW)
    assert cmd.action == "rebuild_no_layer_cache" and cmd.parameters["no_cache"] is True
    assert cmd.reason == "pattern user.docker_layer_cache: rebuild without the Docker layer cache"
    d = from_command(cmd)
    assert d is not None and d.no_cache

    # an action from another row of the table: its prior and parameters come along (and the branch whose
    # caches are cleared)
    _, cmd = plan(done(branch="main"), diag("network", "user.stale_cache"), (), Ledger(), CFG, PRICE, NOW)
    assert cmd.action == "clear_cache_retry" and cmd.parameters == {"clear_cache": True, "ref": "main"}


def test_advice_only_tells_the_author_instead_of_retrying() -> None:
    _, cmd = plan(done(), diag("network", "user.external_dependency"), (), Ledger(), CFG, PRICE, NOW)
    assert cmd.action == "notify_author" and cmd.estimated_cost_usd == 0.0
    assert cmd.reason == ("pattern user.external_dependency: for the author: mock the external services; add a "
                          "circuit breaker (a code change: the guard does not retry_backoff)")
    # without the pattern, the table retries
    _, table = plan(done(), diag("network", "net.refused"), (), Ledger(), CFG, PRICE, NOW)
    assert table.action == "retry_backoff"


def test_a_timeout_factor_joins_the_flaky_rerun_and_reaches_the_directive() -> None:
    _, cmd = plan(done(), diag("test_timeout", "user.timing_sensitive.0"), FLAKY, Ledger(), CFG, PRICE, NOW)
    assert cmd.action == "retry_tests_isolated"
    assert cmd.parameters["timeout_factor"] == 2.0
    assert cmd.parameters["tests"] == ["tests/test_api.py::test_poll"]
    assert "add retry logic" in cmd.reason and "2x test timeout" in cmd.reason
    d = from_command(cmd)
    assert d is not None and d.timeout_factor == 2.0 and d.tests == ["tests/test_api.py::test_poll"]
    assert environment(d)["GUARD_TIMEOUT_FACTOR"] == "2"
    executor_accepts(cmd)
    # a race in the evidence: the sequential rerun, with the factor
    racy = dataclasses.replace(diag("test_timeout", "user.timing_sensitive.0"),
                               evidence=(EvidenceLine(9, "deadlock detected", "user.timing_sensitive.0",
                                                      "test_timeout", 0.8),))
    _, cmd = plan(done(), racy, FLAKY, Ledger(), CFG, PRICE, NOW)
    assert cmd.action == "rerun_sequential" and cmd.parameters["timeout_factor"] == 2.0


def test_the_flaky_rule_gates_and_budgets_still_decide_and_the_reason_says_so() -> None:
    # no test history: the tests failed for real as far as anyone knows
    _, cmd = plan(done(), diag("test_timeout", "user.timing_sensitive"), (), Ledger(), CFG, PRICE, NOW)
    assert cmd.action == "notify_author" and "timeout_factor" not in cmd.parameters
    assert cmd.reason.startswith("tests failed and no test history is known")
    assert cmd.reason.endswith("(pattern user.timing_sensitive: rerun with a 2x test timeout; for the author: "
                               "add retry logic around the timing-sensitive code: not done)")
    # below the category's measured gate
    _, cmd = plan(done(), diag("disk_full", "user.disk_pressure.0", confidence=0.8), (), Ledger(), CFG, PRICE, NOW)
    assert cmd.action == "notify_oncall" and "below the" in cmd.reason and "not done" in cmd.reason
    # over the retry limit, or the budget
    _, cmd = plan(done(attempt=3), diag("disk_full", "user.disk_pressure.0"), (), Ledger(), CFG, PRICE, NOW)
    assert cmd.action == "escalate"
    spent = Ledger(day="2026-01-01", spent_usd=9.999)
    _, cmd = plan(done(), diag("disk_full", "user.disk_pressure.0"), (), spent, CFG, PRICE, NOW)
    assert cmd.action == "notify_oncall" and "budget" in cmd.reason


def test_the_policy_the_engine_uses_carries_it_too() -> None:
    choice = choose(done(), diag("disk_full", "user.disk_pressure.0"), (), Ledger(), CFG, PRICE, NOW)
    assert choice.owner == "oom_recovery" and choice.command.action == "cleanup_retry"
    assert choice.command.parameters["cleanup"] == ["git clean -ffdx", "docker system prune -af"]
    choice = choose(done(), diag("test_timeout", "user.timing_sensitive.0"), FLAKY, Ledger(), CFG, PRICE, NOW)
    assert choice.command.action == "retry_tests_isolated" and choice.command.parameters["timeout_factor"] == 2.0
    choice = choose(done(), diag("network", "user.external_dependency"), (), Ledger(), CFG, PRICE, NOW)
    assert choice.command.action == "notify_author" and "mock the external services" in choice.command.reason
