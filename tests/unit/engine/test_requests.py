"""Heal requests (engine/requests.py): a preset as ``strategy`` lets the guard decide again under the
preset's settings; the strategies and ``auto`` keep their meaning; unknown names list both."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from healing_guard.engine.requests import (HEAL_STRATEGY_NAMES, STRATEGY_NAMES, normalize_heal_strategy,
                                           normalize_strategy, plan_heal)
from healing_guard.presets import PRESET_NAMES
from healing_guard.remediate.planner import command_id
from healing_guard.schemas import Command
from healing_guard.settings import Settings

NOW = 1_764_000_000.0


def failure(category: str = "network", confidence: float = 0.9, *, attempt: int = 1,
            commands: list[dict[str, Any]] | None = None, tests: list[str] | None = None) -> dict[str, Any]:
    """The contract shape of ``WarehouseReader.failure`` (the parts plan_heal reads)."""
    return {"job_key": "github/acme/web/400", "provider": "github", "owner": "acme", "repo": "web",
            "job_id": "400", "attempt": attempt, "run_id": "9001", "category": category, "confidence": confidence,
            "evidence": [{"line": 12, "text": "connection reset by peer", "pattern": "net.reset"}],
            "failed_tests": tests or [], "commands": commands or [], "recommendations": []}


def heal(f: dict[str, Any], strategy: str, notify: Any = False, settings: Settings | None = None) -> Any:
    return plan_heal(f, strategy, notify, requested_by="alice", now=NOW, settings=settings)


def worker_retried(action: str) -> list[dict[str, Any]]:
    return [{"command_id": "w" * 32, "action": action, "confidence": 0.9, "reason": "flaky",
             "estimated_cost_usd": 0.1, "ts": None, "outcome": None}]


def test_the_document_request_aggressive_with_notify() -> None:
    p = heal(failure(), "aggressive", True)
    assert p.strategy == "aggressive"
    assert p.command.action == "retry_backoff" and p.command.parameters["backoff_seconds"] == [30, 120, 480]
    assert p.command.parameters["strategy"] == "aggressive" and p.command.parameters["requested_by"] == "alice"
    assert p.command.reason.startswith("requested through the REST API (aggressive): ")
    # the same id as the guard's own backoff on this attempt, or as naming the strategy: the executor acts once
    assert p.command.command_id == command_id("github/acme/web/400", 1, "retry_backoff")
    assert p.command.command_id == heal(failure(), "network_backoff").command.command_id
    assert p.notify_command is not None and p.notify_command.action == "notify_oncall"
    assert p.notify_command.parameters["slack"] is True and p.command.command_id in p.notify_command.reason
    for cmd in (p.command, p.notify_command):
        assert Command.from_json(cmd.to_json()) == cmd


@pytest.mark.parametrize(("given", "name"), [("Aggressive", "aggressive"), ("Auto_Detect", "auto-detect"),
                                             ("auto_detect", "auto-detect"), ("PROGRESSIVE", "progressive")])
def test_preset_names_are_normalized(given: str, name: str) -> None:
    assert normalize_heal_strategy(given) == name
    p = heal(failure(), given)
    assert p.strategy == name and p.command.parameters["strategy"] == name


def test_the_preset_decides_by_its_gates() -> None:
    unsure = failure("network", 0.7)  # under the measured 0.75 gate
    actions = {n: heal(unsure, n).command.action for n in PRESET_NAMES}
    assert actions == {"auto-detect": "notify_oncall", "progressive": "notify_oncall",
                       "aggressive": "retry_backoff", "conservative": "notify_oncall"}
    assert "below the 0.75 needed" in heal(unsure, "auto-detect").command.reason
    assert heal(failure("network", 0.85), "conservative").command.action == "notify_oncall"
    assert heal(failure("network", 0.95), "conservative").command.action == "retry_backoff"
    assert heal(failure("cache_corruption", 0.8), "progressive").command.action == "notify_oncall"
    assert heal(failure("cache_corruption", 0.8), "auto-detect").command.action == "clear_cache_retry"
    assert heal(failure("unknown", 0.9), "aggressive").command.action == "notify_oncall"


def test_a_person_who_names_a_strategy_still_overrides() -> None:
    unsure = failure("network", 0.3)
    assert heal(unsure, "network_backoff").command.action == "retry_backoff"
    assert heal(unsure, "oom_recovery").command.action == "rerun_more_memory"
    assert heal(unsure, "conservative").command.action == "notify_oncall"


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("category", ["compilation_error", "lint_style", "build_config", "dependency_resolution"])
def test_no_preset_retries_a_code_failure(name: str, category: str) -> None:
    p = heal(failure(category, 0.99), name, True)
    assert p.command.action == "notify_author" and p.notify_command is None
    assert (p.command.parameters["slack"], p.command.parameters["ticket"]) == (True, False)  # notify: true


def test_past_the_retry_limit_the_preset_escalates_once_per_job() -> None:
    third = failure("network", 0.95, attempt=3)  # two reruns already
    assert heal(third, "aggressive").command.action == "retry_backoff"  # limit 3
    assert heal(third, "progressive").command.action == "retry_backoff"
    esc = heal(third, "auto-detect").command
    assert esc.action == "escalate" and "over the retry limit of 2" in esc.reason
    assert esc.command_id == command_id("github/acme/web/400", 0, "escalate")  # the worker's id: one ticket
    assert esc.parameters["ticket"] is True and esc.parameters["strategy"] == "auto-detect"
    assert heal(failure("network", 0.95, attempt=2), "conservative").command.action == "escalate"


def test_test_failures_follow_the_workers_flaky_judgement() -> None:
    tests = ["tests/test_db.py::test_pool"]
    judged = failure("test_failure", 0.9, tests=tests, commands=worker_retried("retry_tests_isolated"))
    for name in ("auto-detect", "aggressive", "progressive"):
        cmd = heal(judged, name).command
        assert cmd.action == "retry_tests_isolated", name
        assert cmd.parameters["tests"] == cmd.parameters["failed_tests"] == tests
    racy = failure("test_failure", 0.9, tests=tests, commands=worker_retried("rerun_sequential"))
    assert heal(racy, "aggressive").command.action == "rerun_sequential"
    # conservative asks for more history than the worker judged with: the histories are not here
    cmd = heal(judged, "conservative").command
    assert cmd.action == "notify_author" and "P(retry passes) >= 0.90 over >= 20 runs" in cmd.reason
    # the worker did not find them all flaky: a regression until shown otherwise, under every preset
    for name in PRESET_NAMES:
        assert heal(failure("test_failure", 0.9, tests=tests), name).command.action == "notify_author"
    # an unsure diagnosis goes to on-call before any test question
    assert heal(failure("test_failure", 0.45, commands=worker_retried("retry_tests_isolated")),
                "auto-detect").command.action == "notify_oncall"
    # a flaky rerun past the retry limit escalates too
    late = failure("test_failure", 0.9, attempt=3, tests=tests, commands=worker_retried("retry_tests_isolated"))
    assert heal(late, "auto-detect").command.action == "escalate"


def test_the_apis_settings_are_the_base_of_the_preset() -> None:
    mine = dataclasses.replace(Settings(), auto_thresholds={"network": 0.6}, max_retries_per_job=1)
    unsure = failure("network", 0.65, attempt=2)
    assert heal(unsure, "auto-detect", settings=mine).command.action == "escalate"  # the API's limit of 1
    assert heal(unsure, "progressive", settings=mine).command.action == "retry_backoff"  # limit 3, gate 0.6 kept
    assert heal(unsure, "conservative", settings=mine).command.action == "notify_oncall"
    assert heal(unsure, "auto-detect").command.action == "notify_oncall"  # the defaults: gate 0.75


def test_a_preset_decides_under_the_apis_healing_strategies(tmp_path: Any) -> None:
    """The strategies file the API was started with applies to a preset's decision, as in the worker: a
    network_backoff the team disabled goes to a person, and the action a strategy names replaces the
    planner's."""
    f = tmp_path / "healing-strategies.yml"
    f.write_text("version: 1\nactions:\n  network_backoff: {enabled: false}\n")
    off = dataclasses.replace(Settings(), strategies_file=str(f))
    assert heal(failure("network", 0.95), "aggressive").command.action == "retry_backoff"
    assert heal(failure("network", 0.95), "aggressive", settings=off).command.action == "notify_oncall"
    f2 = tmp_path / "doc-strategies.yml"
    f2.write_text("strategies:\n  cache_problems:\n    strategy: cache_corruption\n"
                  "    actions: {primary: skip_and_notify}\n")
    named = dataclasses.replace(Settings(), strategies_file=str(f2))
    assert heal(failure("cache_corruption", 0.9), "auto-detect").command.action == "clear_cache_retry"
    cmd = heal(failure("cache_corruption", 0.9), "auto-detect", settings=named).command
    assert cmd.action == "notify_oncall" and "cache_corruption is configured to notify_oncall" in cmd.reason


def test_auto_and_strategies_keep_their_meaning() -> None:
    f = failure(commands=[{"command_id": "c" * 32, "action": "retry_backoff", "confidence": 0.9, "reason": "r",
                           "estimated_cost_usd": 0.1, "ts": None, "outcome": None}])
    f["recommendations"] = [{"action": "retry_backoff", "confidence": 0.9, "reason": "r", "automatic": True}]
    assert heal(f, "auto").command.action == "retry_backoff"
    assert heal(f, "Flaky-Test-Retry").command.action == "retry_tests_isolated"
    assert heal(f, "skip_and_notify").command.action == "notify_oncall"
    assert normalize_strategy("network-backoff") == normalize_heal_strategy("network-backoff") == "network_backoff"
    assert HEAL_STRATEGY_NAMES == (*PRESET_NAMES, *STRATEGY_NAMES)


@pytest.mark.parametrize("bad", ["reboot_the_world", "autodetect", "", 7, None])
def test_unknown_names_list_presets_and_strategies(bad: object) -> None:
    with pytest.raises(ValueError) as e:
        normalize_heal_strategy(bad)
    text = str(e.value)
    for name in (*PRESET_NAMES, *STRATEGY_NAMES):
        assert name in text, name
    if isinstance(bad, str):
        assert f"unknown strategy {bad!r}" in text
    with pytest.raises(ValueError):
        heal(failure(), bad)  # type: ignore[arg-type]

