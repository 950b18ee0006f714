"""The strategy policy: the worker's engine and PipelineGuard read healing-strategies.yml the same way."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from healing_guard.engine import Engine, offline_job
from healing_guard.pipeline_guard import PipelineGuard
from healing_guard.remediate import Ledger
from healing_guard.remediate.catalogue import Strategy
from healing_guard.remediate.policy import Policy
from healing_guard.settings import Settings
from healing_guard.strategies_config import parse_strategies, policy_of

DEPENDENCY_LOG = (
    "$ pip install -r requirements.txt\n"
    "ERROR: Could not find a version that satisfies the requirement flask==99.0 (from versions: 2.3.3, 3.0.0)\n"
    "ERROR: No matching distribution found for flask==99.0\n"
    "##[error]Process completed with exit code 1.\n")
NETWORK_LOG = ("npm ERR! code ECONNRESET\n"
               "npm ERR! network request to https://registry.npmjs.org/x failed, reason: read ECONNRESET\n")
OOM_LOG = ("[INFO] Running tests\n"
           "java.lang.OutOfMemoryError: Java heap space\n"
           "\tat java.util.Arrays.copyOf(Arrays.java:3236)\n"
           "##[error]Process completed with exit code 137.\n")

STRATEGIES = """\
actions:
  dependency_hell: {enabled: true, confidence_threshold: 0.5}
  network_backoff: {enabled: false}
  oom_recovery: {parameters: {memory_factor: 3}}
"""


def _worker_action(tmp_path: Path, log: str, strategies: str | None, *, attempt: int = 1) -> tuple[str, dict]:
    settings = Settings()
    if strategies is not None:
        f = tmp_path / "healing-strategies.yml"
        f.write_text(strategies)
        settings = Settings(strategies_file=str(f))
    engine = Engine(settings)
    job = offline_job("1", exit_code=1, duration_minutes=10.0, attempt=attempt)
    ready, analysis = engine.read_log(io.BytesIO(log.encode()), job)
    _, decision = engine.decide(ready, Ledger(), diagnosis=analysis.diagnosis)
    return decision.command.action, decision.command.parameters


def _api_action(tmp_path: Path, log: str, strategies: str | None) -> tuple[str, dict]:
    kw = {}
    if strategies is not None:
        f = tmp_path / "healing-strategies-api.yml"
        f.write_text(strategies)
        kw["strategies"] = f
    guard = PipelineGuard(env={}, **kw)
    failure = guard.analyze_failure(job_id="1", logs=log, exit_code=1, duration_minutes=10.0)
    r = guard.heal(failure)
    return r.action, dict(r.command.parameters)


@pytest.mark.parametrize("log,default,configured", [
    (DEPENDENCY_LOG, "notify_author", "rerun_clean_dependencies"),  # dependency_hell is opt-in
    (NETWORK_LOG, "retry_backoff", "notify_oncall"),  # network_backoff switched off
])
def test_worker_and_python_api_apply_the_same_strategies_file(tmp_path: Path, log: str, default: str,
                                                               configured: str) -> None:
    assert _worker_action(tmp_path, log, None)[0] == default
    assert _api_action(tmp_path, log, None)[0] == default
    assert _worker_action(tmp_path, log, STRATEGIES)[0] == configured
    assert _api_action(tmp_path, log, STRATEGIES)[0] == configured


def test_strategy_parameters_reach_the_worker_command(tmp_path: Path) -> None:
    action, params = _worker_action(tmp_path, OOM_LOG, STRATEGIES)
    api_action, api_params = _api_action(tmp_path, OOM_LOG, STRATEGIES)
    assert action == api_action and action in ("rerun_more_memory", "rerun_larger_runner")
    assert params["memory_factor"] == 3 and api_params["memory_factor"] == 3


def test_dependency_hell_reruns_once_per_job(tmp_path: Path) -> None:
    """Its catalogue max_retries is 1: the worker counts the attempts before this one as its retries."""
    assert _worker_action(tmp_path, DEPENDENCY_LOG, STRATEGIES, attempt=1)[0] == "rerun_clean_dependencies"
    assert _worker_action(tmp_path, DEPENDENCY_LOG, STRATEGIES, attempt=2)[0] == "notify_oncall"


def test_policy_of_a_file_and_its_updates() -> None:
    p = policy_of(parse_strategies(STRATEGIES))
    assert p.state(Strategy.DEPENDENCY_HELL).enabled and p.state(Strategy.DEPENDENCY_HELL).confidence_threshold == 0.5
    assert not p.state(Strategy.NETWORK_BACKOFF).enabled
    assert p.parameters("oom_recovery") == {"memory_factor": 3} and p.parameters("my_custom") == {}
    assert Policy() == policy_of(parse_strategies("version: 1\n"))
    q = Policy().updated(Strategy.OOM_RECOVERY, threshold=0.99)
    from healing_guard.remediate import PlanConfig

    gates = q.plan_config(PlanConfig(auto_thresholds={"oom": 0.6, "disk_full": 0.6, "network": 0.7})).auto_thresholds
    assert gates == {"oom": 0.99, "disk_full": 0.99, "network": 0.7}  # OOM_RECOVERY answers oom and disk_full
