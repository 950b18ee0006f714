"""The product document's configuration files, taken from the document itself, as a user tries them: put
where the document puts them, read by the real `guard config check`, found by the guard without flags, and
with their meaning honoured by the worker's engine (the action each strategy names, the memory it adds,
the budgets and retry limit)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from healing_guard.cli import _settings
from healing_guard.directives import environment, from_command
from healing_guard.engine import Engine, offline_job
from healing_guard.remediate import Ledger
from healing_guard.settings import load_settings
from healing_guard.strategies_doc import strategy_of_name
from tests.document.examples import block

GUARD = Path(sys.executable).parent / "guard"
HEALING_CONFIG = block("Basic GitHub Action Setup", "yaml")
STRATEGIES = block("Strategy Configuration", "yaml")
COST_CONTROL = block("Cost Control Configuration", "yaml")

OOM_LOG = ("[INFO] Running tests\n"
           "java.lang.OutOfMemoryError: Java heap space\n"
           "\tat java.util.Arrays.copyOf(Arrays.java:3236)\n"
           "##[error]Process completed with exit code 137.\n")
CACHE_LOG = ("$ npm ci\n"
             "npm ERR! code EINTEGRITY\n"
             "npm ERR! sha512-abc integrity checksum failed when using sha512: wanted sha512-abc but got sha512-def\n"
             "##[error]Process completed with exit code 1.\n")
DEPENDENCY_LOG = (
    "$ pip install -r requirements.txt\n"
    "ERROR: Could not find a version that satisfies the requirement flask==99.0 (from versions: 2.3.3, 3.0.0)\n"
    "ERROR: No matching distribution found for flask==99.0\n"
    "##[error]Process completed with exit code 1.\n")


def check(path: Path, cwd: Path) -> dict[str, Any]:
    res = subprocess.run([str(GUARD), "config", "check", "--json", str(path)], cwd=cwd, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def check_text(path: Path, cwd: Path) -> str:
    res = subprocess.run([str(GUARD), "config", "check", str(path)], cwd=cwd, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def decide(cwd: Path, log: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The worker engine's command for a failed job, with the settings found in ``cwd`` as the guard finds
    them (no flags, no environment)."""
    monkeypatch.chdir(cwd)
    settings = load_settings(None, env={})
    engine = Engine(settings)
    job = offline_job("1", exit_code=1, duration_minutes=10.0)
    ready, analysis = engine.read_log(io.BytesIO(log.encode()), job)
    _, decision = engine.decide(ready, Ledger(), diagnosis=analysis.diagnosis)
    return settings, decision.command


def test_the_healing_config_is_understood_as_written(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    f = tmp_path / ".github" / "healing-config.yml"
    f.write_text(HEALING_CONFIG.text)
    doc = yaml.safe_load(HEALING_CONFIG.text)["healing"]
    r = check(f, tmp_path)
    assert r["kind"] == "config"
    got = "\n".join(r["understood"])
    assert f"cost_alert_usd = {doc['cost_tracking']['alert_threshold']}" in got
    assert f"max_retries_per_job = {doc['escalation']['after_failures'] - 1}" in got
    assert f"escalation_assignee = {doc['escalation']['assign_to']}" in got
    assert f"notify_slack_channel = {doc['notifications']['slack']['channel']}" in got
    for s in doc["strategies"]:  # each named strategy is one of the guard's, with the action it names
        strategy = strategy_of_name(s["name"])
        assert strategy is not None and f"strategy {strategy.value} " in got, (s, got)
    flaky = next(s for s in doc["strategies"] if "flaky" in s["name"])
    assert f"flaky_retry_threshold = {1 - flaky['threshold']:g}" in got
    # how a named Slack channel is reached is said (a webhook posts only to its own channel)
    assert any(n.startswith("slack channels: posted there through Slack's chat.postMessage") for n in r["notes"])
    assert not any("not acted on" in n for n in r["notes"]), r["notes"]
    assert "ok " in check_text(f, tmp_path)


def test_the_healing_config_is_found_without_flags_and_its_strategies_decide(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "healing-config.yml").write_text(HEALING_CONFIG.text)
    doc = yaml.safe_load(HEALING_CONFIG.text)["healing"]
    settings, cmd = decide(tmp_path, OOM_LOG, monkeypatch)
    assert settings.config_file == str(Path(".github") / "healing-config.yml")
    oom = next(s for s in doc["strategies"] if s["name"].startswith("oom"))
    assert oom["action"] == "increase-resources" and cmd.action == "rerun_more_memory", cmd
    # "dependency-failure" (opt-in by default) is enabled with "clear-cache-retry"
    _, cmd = decide(tmp_path, DEPENDENCY_LOG, monkeypatch)
    assert cmd.action == "clear_cache_retry" and "dependency_hell is configured" in cmd.reason, cmd


def test_the_strategies_file_is_understood_and_its_memory_reaches_the_next_attempt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".github").mkdir()
    f = tmp_path / ".github" / "healing-strategies.yml"
    f.write_text(STRATEGIES.text)
    r = check(f, tmp_path)
    assert r["kind"] == "strategies"
    got = "\n".join(r["understood"])
    doc = yaml.safe_load(STRATEGIES.text)["strategies"]
    assert f"flaky_min_recoveries = {doc['flaky_test_detector']['thresholds']['historical_failures']}" in got
    assert "acts from confidence 0.75" in got and "memory_add_mb=2048" in got
    # every message the strategy names is checked against the pattern library
    for text in doc["resource_exhaustion"]["patterns"]:
        assert any(repr(text) in n and "recognised by pattern" in n for n in r["notes"]), (text, r["notes"])
    settings, cmd = decide(tmp_path, OOM_LOG, monkeypatch)
    assert settings.strategies_file.endswith("healing-strategies.yml")
    assert cmd.action == "rerun_more_memory" and cmd.parameters["memory_add_mb"] == 2048, cmd
    d = from_command(cmd)
    assert d is not None and d.memory_add_mb == 2048
    env = environment(d, total_mb=16384)
    # the JVM's default heap is a quarter of 16 GB; the document asks for 2 GB more
    assert "-Xmx6144m" in env["MAVEN_OPTS"] and env["GUARD_MEMORY_ADD_MB"] == "2048"
    # dependency_conflicts: pin and isolate
    _, cmd = decide(tmp_path, DEPENDENCY_LOG, monkeypatch)
    assert cmd.action == "rerun_clean_dependencies"
    assert cmd.parameters["frozen_lockfile"] is True and cmd.parameters["clear_dependency_cache"] is True
    # ml_model and features: the failure-context model the worker builds (as `guard worker` reads its settings)
    flaky = doc["flaky_test_detector"]
    assert flaky["ml_model"] == "gradient_boost" and "context_model = gradient_trees" in got
    assert "context_features = logit_p, hour_sin, hour_cos, touches_change" in got
    worker_settings = _settings(None)
    assert worker_settings.context_model == "gradient_trees"
    assert worker_settings.context_features == ("logit_p", "hour_sin", "hour_cos", "touches_change")
    assert type(Engine(worker_settings).retry_context.model).__name__ == "SGTClassifier"
    assert any("leaves out template_changed, co_failed, duration_z" in n for n in r["notes"]), r["notes"]


def test_the_cost_control_file_sets_the_budgets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".github").mkdir()
    f = tmp_path / ".github" / "healing-config.yml"
    f.write_text(COST_CONTROL.text)
    doc = yaml.safe_load(COST_CONTROL.text)["cost_control"]
    r = check(f, tmp_path)
    got = "\n".join(r["understood"])
    assert f"daily_budget_usd = {doc['limits']['daily_budget']}" in got
    assert f"repo_daily_budget_usd = {doc['limits']['per_repo_budget']}" in got
    assert f"max_retries_per_job = {doc['limits']['per_job_retry_limit']}" in got
    levels = ", ".join(f"{p / 100:g}" for p in doc["alerts"]["threshold_percentages"])
    assert f"budget_alert_levels = [{levels}]" in got
    # spot instances cannot be chosen per job on hosted runners: accepted, and said what happens instead
    assert any(n.startswith("optimization.prefer_spot_instances") for n in r["notes"])
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, env={})
    assert (s.daily_budget_usd, s.repo_daily_budget_usd, s.max_retries_per_job) == (
        doc["limits"]["daily_budget"], doc["limits"]["per_repo_budget"], doc["limits"]["per_job_retry_limit"])


def test_the_two_formats_are_one_schema(tmp_path: Path) -> None:
    """The guard's own sections and the document's in one file; a value set twice is refused with its line."""
    f = tmp_path / "healing-config.yml"
    f.write_text(COST_CONTROL.text + "pipeline:\n  confidence_threshold: 0.6\n")
    r = check(f, tmp_path)
    assert "confidence_threshold = 0.6" in "\n".join(r["understood"])
    f.write_text(COST_CONTROL.text + "cost_tracking:\n  daily_budget_usd: 20\n")
    res = subprocess.run([str(GUARD), "config", "check", str(f)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "cost_tracking.daily_budget_usd: set twice" in res.stderr, res.stderr
    line = COST_CONTROL.text.count("\n") + 2
    assert f"healing-config.yml:{line}:" in res.stderr


def test_a_mistyped_key_names_its_file_line_and_the_keys_it_could_be(tmp_path: Path) -> None:
    f = tmp_path / "healing-config.yml"
    f.write_text(HEALING_CONFIG.text.replace("after_failures", "after_failure"))
    res = subprocess.run([str(GUARD), "config", "check", str(f)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    line = next(i for i, ln in enumerate(HEALING_CONFIG.text.splitlines(), 1) if "after_failures" in ln)
    assert res.returncode == 2 and f"healing-config.yml:{line}: healing.escalation.after_failure: unknown key" in res.stderr
    assert "healing.escalation.after_failures" in res.stderr
