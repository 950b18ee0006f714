"""The product document's config formats (config_doc.py, strategies_doc.py): what each key becomes, and
the refusals that name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from healing_guard.config_check import check, kind_of
from healing_guard.remediate.catalogue import Strategy
from healing_guard.settings import ConfigError, load_settings
from healing_guard.strategies_config import parse_strategies
from healing_guard.strategies_doc import strategy_of_name


def _settings(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    f = tmp_path / "healing-config.yml"
    f.write_text(text)
    return load_settings(f, env={})


def test_escalation_after_failures_is_the_retry_limit_plus_the_first_failure(tmp_path: Path) -> None:
    assert _settings(tmp_path, "healing:\n  escalation:\n    after_failures: 4\n").max_retries_per_job == 3
    with pytest.raises(ConfigError, match=r"healing-config.yml:3: healing.escalation.after_failures: expected an "
                                          r"integer >= 2"):
        _settings(tmp_path, "healing:\n  escalation:\n    after_failures: 1\n")


def test_alert_percentages_become_budget_levels(tmp_path: Path) -> None:
    s = _settings(tmp_path, "cost_control:\n  alerts:\n    threshold_percentages: [95, 25]\n")
    assert s.budget_alert_levels == (0.25, 0.95)
    with pytest.raises(ConfigError, match=r"cost_control.alerts.threshold_percentages: each percentage"):
        _settings(tmp_path, "cost_control:\n  alerts:\n    threshold_percentages: [150]\n")


def test_cost_control_off_lifts_the_budgets(tmp_path: Path) -> None:
    from healing_guard.engine.core import plan_config

    s = _settings(tmp_path, "cost_control:\n  enabled: false\n  limits:\n    daily_budget: 5\n")
    cfg = plan_config(s, partitions=1)
    assert s.daily_budget_usd == 5 and cfg.daily_budget_usd == float("inf") and cfg.repo_daily_budget_usd == float("inf")
    on = plan_config(_settings(tmp_path, "cost_control:\n  limits:\n    daily_budget: 5\n"), partitions=1)
    assert on.daily_budget_usd == 5


def test_a_strategies_file_passed_as_the_config_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="this is a healing-strategies.yml"):
        _settings(tmp_path, "strategies:\n  flaky_test_detector:\n    enabled: true\n")


@pytest.mark.parametrize(("name", "strategy"), [
    ("flaky-test-detector", Strategy.FLAKY_TEST_RETRY), ("oom-detector", Strategy.OOM_RECOVERY),
    ("resource_exhaustion", Strategy.OOM_RECOVERY), ("dependency_conflicts", Strategy.DEPENDENCY_HELL),
    ("race-condition", Strategy.RACE_CONDITION), ("network-backoff", Strategy.NETWORK_BACKOFF),
    ("cache_corruption", Strategy.CACHE_CORRUPTION), ("Flaky_Test_Retry", Strategy.FLAKY_TEST_RETRY)])
def test_a_free_form_name_finds_its_strategy(name: str, strategy: Strategy) -> None:
    assert strategy_of_name(name) is strategy


def test_strategy_refusals_name_the_line_and_key() -> None:
    with pytest.raises(ConfigError, match=r"s.yml:2: strategies.lint_things: 'lint_things' names no strategy"):
        parse_strategies("strategies:\n  lint_things:\n    enabled: true\n", "s.yml")
    with pytest.raises(ConfigError, match=r"s.yml:4: strategies.oom_watch.actions.primary: unknown action 'pray'"):
        parse_strategies("strategies:\n  oom_watch:\n    actions:\n      primary: pray\n", "s.yml")
    with pytest.raises(ConfigError, match=r"strategies.oom_watch.actions\[0\].increase_memory: expected an amount"):
        parse_strategies("strategies:\n  oom_watch:\n    actions:\n      - increase_memory: lots\n", "s.yml")
    with pytest.raises(ConfigError, match=r"the fallback must tell a person"):
        parse_strategies("strategies:\n  flaky:\n    actions: {primary: retry, fallback: retry}\n", "s.yml")
    with pytest.raises(ConfigError, match=r"c.yml:3: healing.strategies\[0\].action: unknown action"):
        parse_strategies("healing:\n  strategies:\n    - {name: oom-detector, action: explode}\n", "c.yml")


def test_both_forms_of_one_strategy_in_one_file_are_refused() -> None:
    with pytest.raises(ConfigError, match="set twice"):
        parse_strategies("actions:\n  oom_recovery: {enabled: false}\nstrategies:\n  oom:\n    enabled: true\n", "s.yml")


@pytest.mark.parametrize(("data", "kind"), [
    ({"patterns": [{"id": "a", "category": "oom", "regex": "x"}]}, "patterns"),
    ({"patterns": {"disk": {"indicators": ["no space"]}}}, "patterns"),
    ({"patterns": ["more-patterns.yml"]}, "strategies"),
    ({"strategies": {}}, "strategies"), ({"actions": {}}, "strategies"),
    ({"healing": {}}, "config"), ({"cost_tracking": {}}, "config"), (None, "config")])
def test_the_kind_of_a_file_is_told_by_its_keys(data: object, kind: str) -> None:
    assert kind_of(data) == kind


def test_config_check_reports_the_settings_a_file_sets(tmp_path: Path) -> None:
    f = tmp_path / "c.yml"
    f.write_text("cost_tracking:\n  daily_budget_usd: 20\n  max_retries_per_job: 2\n")
    r = check(f)
    assert r.kind == "config" and r.understood == ["daily_budget_usd = 20", "max_retries_per_job = 2 (the default)"]


def test_the_escalation_of_the_config_reaches_the_command(tmp_path: Path) -> None:
    import io

    from healing_guard.engine import Engine, offline_job
    from healing_guard.remediate import Ledger

    s = _settings(tmp_path, "healing:\n  escalation:\n    after_failures: 2\n    create_ticket: false\n"
                            "    assign_to: \"@oncall\"\n")
    engine = Engine(s)
    log = "java.lang.OutOfMemoryError: Java heap space\n##[error]Process completed with exit code 137.\n"
    job = offline_job("1", exit_code=137, duration_minutes=10.0, attempt=2)  # the second failure
    ready, analysis = engine.read_log(io.BytesIO(log.encode()), job)
    _, decision = engine.decide(ready, Ledger(), diagnosis=analysis.diagnosis)
    cmd = decision.command
    assert cmd.action == "escalate" and cmd.parameters["ticket"] is False and cmd.parameters["assign_to"] == "@oncall"


def test_on_failure_false_keeps_failures_off_slack(tmp_path: Path) -> None:
    import io

    from healing_guard.engine import Engine, offline_job
    from healing_guard.remediate import Ledger

    log = "src/app/main.c:12:5: error: 'foo' undeclared (first use in this function)\nmake: *** [all] Error 1\n"
    for text, slack in (("healing:\n  notifications:\n    slack:\n      on_failure: false\n", False), ("", None)):
        engine = Engine(_settings(tmp_path, text))
        job = offline_job("1", exit_code=1, duration_minutes=5.0)
        ready, analysis = engine.read_log(io.BytesIO(log.encode()), job)
        _, decision = engine.decide(ready, Ledger(), diagnosis=analysis.diagnosis)
        assert decision.command.action == "notify_author"
        assert decision.command.parameters.get("slack") is slack
