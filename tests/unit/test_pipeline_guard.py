"""The Python API as users call it: the documented example, the cause-specific choices, the limits."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healing_guard import CustomStrategy, Failure, HealResult, PipelineGuard, RemediationAction, Strategy
from healing_guard.remediate.planner import plan_chosen
from healing_guard.classify import Diagnosis, EvidenceLine
from healing_guard.remediate import strategies as table
from healing_guard.remediate.planner import Ledger, PlanConfig, expected_value, plan
from healing_guard.schemas import Command, JobEvent
from healing_guard.settings import ConfigError
from tests.support.paths import ROOT

DOC = ROOT / "docs" / "python-api.md"
EXAMPLE_STRATEGIES = ROOT / "docs" / "healing-strategies.example.yml"

LOGS = {
    "oom": "Starting build\ncompiling 12 modules\njava.lang.OutOfMemoryError: Java heap space\nBUILD FAILED\n",
    "network": ("Run npm ci\nnpm ERR! code ECONNRESET\nnpm ERR! network request to https://registry.npmjs.org/x "
                "failed, reason: read ECONNRESET\n##[error]Process completed with exit code 1.\n"),
    "cache": "Restoring cache\ntar: Unexpected EOF in archive\ntar: Error is not recoverable: exiting now\n",
    "registry": ("Step 1/9 : FROM node:20\n"
                 "Error response from daemon: received unexpected HTTP status: 503 Service Unavailable\n"),
    "disk": "npm ERR! nospc ENOSPC: no space left on device, write\n",
    "rate": "remote: API rate limit exceeded for 10.1.2.3\nHTTP 429 Too Many Requests\n",
    "runner": "The self-hosted runner: runner-1 lost communication with the server.\n",
    "compile": ("src/main.c:12:5: error: 'foo' undeclared (first use in this function)\n"
                "make: *** [Makefile:4: main.o] Error 1\n"),
    "lint": "src/app.py:3:1: F401 'os' imported but unused\nFound 1 error.\n",
    "dependency": ("ERROR: Could not find a version that satisfies the requirement foo==9.9 (from versions: 1.0)\n"
                   "ERROR: No matching distribution found for foo==9.9\n"),
    "test": "FAILED tests/test_api.py::test_login - assert 500 == 200\n=== 1 failed, 41 passed in 9.1s ===\n",
    "race": ("FAILED tests/test_q.py::test_worker - RuntimeError: deadlock detected\n"
             "=== 1 failed, 3 passed in 1.0s ===\n"),
}
FLAKY_HISTORY = [True, True, False, True] * 6  # fails a quarter of the time, always passes right after
STABLE_HISTORY = [True] * 30


@pytest.fixture(scope="module")
def base() -> PipelineGuard:
    """One compiled pattern library for the module; every test gets its own guard around it."""
    return PipelineGuard(env={})


@pytest.fixture()
def new(base: PipelineGuard) -> Any:
    def make(**kw: Any) -> PipelineGuard:
        kw.setdefault("env", {})
        return PipelineGuard(matcher=base.matcher, **kw)
    return make


def failure(guard: PipelineGuard, kind: str, job_id: str = "1", **kw: Any) -> Failure:
    kw.setdefault("repo", "acme/web")
    kw.setdefault("duration_minutes", 10)
    return guard.analyze_failure(job_id=job_id, logs=LOGS[kind], **kw)


# --- the documentation ---------------------------------------------------------------------------

def test_docs_example_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/python-api.md must hold exactly one python example"
    for var in [v for v in __import__("os").environ if v.startswith("GUARD_")]:
        monkeypatch.delenv(var)
    ns: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(blocks[0], str(DOC), "exec"), ns)  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert out.startswith("network 0.")
    assert "dry_run retry_backoff" in out
    result = ns["result"]
    assert isinstance(result, HealResult) and result.strategy == "deploy_quota"


def test_readme_shows_the_same_example() -> None:
    """The README's Python example is the one the test above runs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    doc = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)[0]
    assert doc in re.findall(r"```python\n(.*?)```", readme, re.S)


def test_example_strategies_file_is_applied(new: Any) -> None:
    g = new(strategies=EXAMPLE_STRATEGIES)
    s = g.strategies
    assert s[Strategy.FLAKY_TEST_RETRY].confidence_threshold == 0.8 and s[Strategy.FLAKY_TEST_RETRY].max_retries == 3
    oom = s[Strategy.OOM_RECOVERY]
    assert oom.max_retries == 1 and dict(oom.parameters) == {"memory_factor": 2}
    assert not s[Strategy.DEPENDENCY_HELL].enabled
    assert g.settings.flaky_retry_threshold == 0.6 and g.settings.flaky_min_runs == 5
    r = g.heal(failure(g, "network"))
    assert r.command.parameters["backoff_seconds"] == [30, 120, 480]
    r = g.heal(failure(g, "compile", job_id="2"))
    assert r.command.parameters["channel"] == "#ci-alerts"


# --- choices by cause ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kind, category, actions, strategy",
    [
        ("oom", "oom", {"rerun_more_memory", "rerun_larger_runner"}, "oom_recovery"),
        ("network", "network", {"retry_backoff"}, "network_backoff"),
        ("rate", "rate_limit", {"retry_backoff"}, "network_backoff"),
        ("cache", "cache_corruption", {"clear_cache_retry"}, "cache_corruption"),
        ("registry", "docker_registry", {"rebuild_no_layer_cache"}, "cache_corruption"),
        ("disk", "disk_full", {"cleanup_retry"}, "oom_recovery"),
        ("runner", "infra_runner_lost", {"retry"}, "infra_retry"),
    ],
)
def test_transient_causes_get_their_own_action(new: Any, kind: str, category: str, actions: set[str],
                                               strategy: str) -> None:
    g = new()
    f = failure(g, kind, duration_minutes=12)
    assert f.category == category and f.evidence and f.remediation
    r = g.heal(f)
    assert r.action in actions and r.strategy == strategy
    assert r.status == "dry_run" and r.automatic and r.cost_usd > 0
    assert r.command.action == r.action and r.command.category == category
    # time saved = P(success) x (human response minutes + the job's minutes)
    assert r.time_saved_minutes == pytest.approx(r.p_success * (30 + 12), abs=0.01)
    assert g.ledger.spent_usd == pytest.approx(r.cost_usd)


@pytest.mark.parametrize("kind", ["compile", "lint", "dependency"])
def test_code_failures_go_to_the_author(new: Any, kind: str) -> None:
    g = new()
    r = g.heal(failure(g, kind))
    assert (r.status, r.action, r.strategy) == ("notified", "notify_author", "skip_and_notify")
    assert r.time_saved_minutes == 0 and r.cost_usd == 0 and g.ledger.spent_usd == 0


def test_flaky_test_is_retried_in_isolation_only_when_history_says_flaky(new: Any) -> None:
    g = new()
    tid = "tests/test_api.py::test_login"
    f = failure(g, "test", failed_tests=[tid])
    assert f.category == "test_failure" and f.failed_tests == (tid,)
    r = g.heal(f)  # no history: a real failure until shown otherwise
    assert (r.status, r.action) == ("notified", "notify_author")
    for passed in STABLE_HISTORY:  # always green: its first failure is a regression
        g.record_test(tid, passed)
    assert g.heal(f).action == "notify_author"

    g = new()
    for passed in FLAKY_HISTORY:
        risk = g.record_test(tid, passed)
    assert risk.runs == len(FLAKY_HISTORY) and risk.recoveries == 6 and risk.p_retry_pass > 0.6
    r = g.heal(f)
    assert (r.status, r.action, r.strategy) == ("dry_run", "retry_tests_isolated", "flaky_test_retry")
    assert r.command.parameters["tests"] == [tid] and r.command.parameters["isolation"] == "fresh_process"
    assert r.p_success == pytest.approx(risk.p_retry_pass)
    # one failed test that is not known flaky keeps the whole job with its author
    r = g.heal(f, failed_tests=[tid, "tests/test_new.py::test_x"])
    assert r.action == "notify_author"


def test_flaky_strategy_threshold_and_disable(new: Any) -> None:
    g = new()
    tid = "tests/test_api.py::test_login"
    for passed in FLAKY_HISTORY:
        g.record_test(tid, passed)
    f = failure(g, "test", failed_tests=[tid])
    g.add_strategy(Strategy.FLAKY_TEST_RETRY, confidence_threshold=0.99)
    r = g.heal(f)
    assert r.action == "notify_author" and "below the 0.99" in r.reason
    g.add_strategy("flaky_test_retry", enabled=False)
    r = g.heal(f)
    assert r.action == "notify_author" and "disabled" in r.reason and r.status == "notified"


def test_race_looking_flaky_failure_is_rerun_sequentially(new: Any) -> None:
    g = new()
    tid = "tests/test_q.py::test_worker"
    for passed in FLAKY_HISTORY:
        g.record_test(tid, passed)
    f = failure(g, "race", failed_tests=[tid])
    r = g.heal(f)
    assert (r.action, r.strategy) == (table.RACE_RETRY.action, "race_condition")
    assert r.command.parameters["tests"] == [tid] and r.command.parameters["parallelism"] == 1
    g = new()
    for passed in FLAKY_HISTORY:
        g.record_test(tid, passed)
    g.add_strategy(Strategy.RACE_CONDITION, enabled=False)
    r = g.heal(f)
    assert (r.action, r.strategy) == ("retry_tests_isolated", "flaky_test_retry")


def test_strategy_threshold_gates_its_categories_and_disabled_notifies(new: Any) -> None:
    g = new()
    g.add_strategy(Strategy.OOM_RECOVERY, confidence_threshold=0.99)
    r = g.heal(failure(g, "oom"))
    assert (r.status, r.action) == ("notified", "notify_oncall") and "0.99" in r.reason
    g.add_strategy(Strategy.CACHE_CORRUPTION, enabled=False)
    r = g.heal(failure(g, "registry", job_id="2"))
    assert (r.status, r.action, r.strategy) == ("notified", "notify_oncall", "cache_corruption")
    assert "disabled" in r.reason
    assert g.ledger.spent_usd == 0


def test_the_strategies_the_guard_finds_apply_without_being_passed(new: Any, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """PipelineGuard(ci_provider=, repo=) as the product document writes it reads the strategies where the
    worker does: .github/healing-strategies.yml, and healing.strategies of .github/healing-config.yml."""
    (tmp_path / ".github").mkdir()
    monkeypatch.chdir(tmp_path)
    assert new().heal(failure(new(), "network")).action == "retry_backoff"
    (tmp_path / ".github" / "healing-strategies.yml").write_text(
        "strategies:\n  network_problems:\n    strategy: network_backoff\n    enabled: false\n")
    g = new()
    assert g.strategies_config.source.endswith("healing-strategies.yml")
    r = g.heal(failure(g, "network"))
    assert (r.action, r.strategy) == ("notify_oncall", "network_backoff") and "disabled" in r.reason
    (tmp_path / ".github" / "healing-strategies.yml").unlink()
    (tmp_path / ".github" / "healing-config.yml").write_text(
        "healing:\n  strategies:\n    - name: oom-detector\n      enabled: true\n      action: increase-resources\n"
        "    - name: network-failure\n      enabled: false\n")
    g = new()
    r = g.heal(failure(g, "network"))
    assert r.action == "notify_oncall" and "disabled" in r.reason


def test_dependency_hell_is_opt_in_and_acts_once_per_job(new: Any) -> None:
    g = new()
    assert g.heal(failure(g, "dependency")).action == "notify_author"
    g.add_strategy(Strategy.DEPENDENCY_HELL)
    r = g.heal(failure(g, "dependency", job_id="2"))
    assert (r.status, r.action, r.strategy) == ("dry_run", "rerun_clean_dependencies", "dependency_hell")
    r = g.heal(failure(g, "dependency", job_id="2", attempt=2))
    assert r.status == "skipped" and "max_retries=1" in r.reason


# --- limits ------------------------------------------------------------------------------------

def test_daily_and_repo_budgets_refuse(new: Any) -> None:
    g = new(daily_budget_usd=0.25)
    first = g.heal(failure(g, "network", job_id="1", duration_minutes=12))  # 0.192 USD
    assert first.status == "dry_run"
    r = g.heal(failure(g, "network", job_id="2", duration_minutes=12))
    assert (r.status, r.action) == ("skipped", "notify_oncall") and "daily retry budget" in r.reason
    assert r.time_saved_minutes == 0 and r.cost_usd == 0
    assert g.ledger.spent_usd == pytest.approx(0.192)

    g = new(repo_daily_budget_usd=0.2)
    assert g.heal(failure(g, "network", job_id="1", duration_minutes=12)).status == "dry_run"
    assert g.heal(failure(g, "network", job_id="2", duration_minutes=12)).status == "skipped"
    assert g.heal(failure(g, "network", job_id="3", repo="acme/api", duration_minutes=12)).status == "dry_run"


def test_retry_limits_per_strategy_and_per_job(new: Any) -> None:
    g = new()
    g.add_strategy(Strategy.NETWORK_BACKOFF, max_retries=1)
    assert g.heal(failure(g, "network", attempt=1)).status == "dry_run"
    r = g.heal(failure(g, "network", attempt=2))
    assert r.status == "skipped" and "max_retries=1" in r.reason and r.strategy == "network_backoff"
    assert g.heal(failure(g, "network", job_id="other", attempt=2)).status == "dry_run"  # per job

    g = new(max_retries_per_job=2)
    r = g.heal(failure(g, "oom", attempt=3))
    assert r.status == "skipped" and "over the retry limit of 2" in r.reason


def test_heal_is_idempotent_per_job_attempt(new: Any) -> None:
    g = new()
    f = failure(g, "cache")
    r1 = g.heal(f)
    spent = g.ledger.spent_usd
    assert g.heal(f) == r1 and g.ledger.spent_usd == spent
    assert g.heal(failure(g, "cache", attempt=2)).command.command_id != r1.command.command_id


def test_budget_alerts_come_with_the_result(new: Any) -> None:
    g = new(daily_budget_usd=0.3)
    r = g.heal(failure(g, "network", duration_minutes=12))  # 0.192 of 0.30: past 50 %
    assert [a.action for a in r.alerts] == ["notify_budget"] and r.alerts[0].parameters["level"] == 0.5


# --- custom strategies ---------------------------------------------------------------------------

class Quota(CustomStrategy):
    name = "deploy_quota"
    confidence_threshold = 0.8

    def __init__(self, score: float | bool = True, cost: float | None = None, action: str = "wait_for_quota") -> None:
        self.score, self.cost, self.action = score, cost, action
        self.seen: list[Failure] = []

    def detect(self, failure: Failure) -> float | bool:
        self.seen.append(failure)
        return self.score if any("quota" in line for line in failure.tail) else False

    def remediate(self, failure: Failure) -> RemediationAction:
        return RemediationAction(self.action, {"delay_seconds": 3600}, "quota resets hourly", 0.9, self.cost)


QUOTA_LOG = "deploying web\nError: deployment quota exceeded for project web\n"


def test_custom_strategy_wins_when_it_detects(new: Any) -> None:
    g = new()
    q = Quota()
    g.register_strategy(q)
    assert g.custom_strategies == ("deploy_quota",)
    r = g.heal(g.analyze_failure(job_id="9", logs=QUOTA_LOG, repo="acme/web"))
    assert (r.strategy, r.action, r.status) == ("deploy_quota", "wait_for_quota", "dry_run")
    assert r.command.parameters == {"delay_seconds": 3600} and r.command.reason == "quota resets hourly"
    # an action of its own that `guard executor` does not know: nothing here carries it out, nothing is saved
    assert r.reason.startswith("quota resets hourly; not carried out: the guard's executor does not carry out "
                               "the custom action 'wait_for_quota' - pass PipelineGuard(executor=...)")
    assert r.p_success == 0.9 and r.time_saved_minutes == 0.0
    # asked first, but silent on other failures: the table decides
    r = g.heal(failure(g, "oom", job_id="10"))
    assert r.strategy == "oom_recovery" and len(q.seen) == 2


def test_a_custom_action_is_carried_out_by_the_executor_given_to_the_guard(new: Any) -> None:
    calls: list[Command] = []

    def carry_out(cmd: Command) -> bool:
        calls.append(cmd)
        return True

    g = new(executor=carry_out)
    g.register_strategy(Quota())
    r = g.heal(g.analyze_failure(job_id="9", logs=QUOTA_LOG, repo="acme/web"))
    assert (r.status, r.action, r.reason) == ("succeeded", "wait_for_quota", "quota resets hourly")
    assert r.time_saved_minutes == 31.0 and [c.action for c in calls] == ["wait_for_quota"]
    g = new(executor=lambda cmd: True, dry_run=True)  # a dry run of an executor that knows it: the expected saving
    g.register_strategy(Quota())
    r = g.heal(g.analyze_failure(job_id="9", logs=QUOTA_LOG, repo="acme/web"))
    assert (r.status, r.reason, r.time_saved_minutes) == ("dry_run", "quota resets hourly", pytest.approx(0.9 * 31))
    g = new(dry_run=False)  # no executor: planned for the caller to run, and said so
    g.register_strategy(Quota(action="retry"))  # an action the guard's executor knows keeps its saving
    r = g.heal(g.analyze_failure(job_id="9", logs=QUOTA_LOG, repo="acme/web"))
    assert (r.status, r.reason, r.time_saved_minutes) == ("planned", "quota resets hourly", pytest.approx(0.9 * 31))


def test_the_product_documents_names_of_remediation_actions() -> None:
    a = RemediationAction(type="selective-rebuild", params={"packages": ["packages/api"], "parallel": True})
    assert (a.action, dict(a.parameters), a.type, a.params) == (
        "selective-rebuild", {"packages": ["packages/api"], "parallel": True}, "selective-rebuild", a.parameters)
    assert a == RemediationAction("selective-rebuild", {"packages": ["packages/api"], "parallel": True})
    assert RemediationAction(type="x", parameters={"a": 1}).parameters == {"a": 1}
    with pytest.raises(TypeError, match="^type: type= is another name of action=; give one of them, not both"):
        RemediationAction("x", type="y")
    with pytest.raises(TypeError, match="^params: params= is another name of parameters="):
        RemediationAction(type="x", parameters={}, params={})
    with pytest.raises(TypeError, match="^action: required"):
        RemediationAction(params={"a": 1})
    with pytest.raises(ValueError, match="^parameters: "):
        RemediationAction(type="x", params={"bad key": 1})


def test_ci_provider_and_repo_are_the_defaults_of_analyze_failure(new: Any) -> None:
    g = new(ci_provider="gitlab", repo="group/sub/web")
    f = g.analyze_failure(job_id="12345", logs=LOGS["oom"])
    assert (f.provider, f.repo, f.job.owner, f.job.repo, f.job_key) == (
        "gitlab", "group/sub/web", "group/sub", "web", "gitlab/group/sub/web/12345")
    f = g.analyze_failure(job_id="1", logs=LOGS["oom"], provider="github", repo="acme/api")  # told: as told
    assert (f.provider, f.repo) == ("github", "acme/api")
    f = new().analyze_failure(job_id="1", logs=LOGS["oom"])
    assert (f.provider, f.repo) == ("github", "local/local")
    assert new(ci_provider="jenkins", repo="folder/team/deploy").repo == "folder/team/deploy"
    for kw, pattern in (({"ci_provider": "travis"}, "^ci_provider: unknown CI provider 'travis'; one of: github, "
                                                    "gitlab, jenkins, circleci"),
                        ({"repo": "web"}, "^repo: expected 'owner/name' \\(e.g. 'acme/web'\\) on github, got 'web'"),
                        ({"repo": "a/b/c"}, "^repo: expected 'owner/name'"),  # GitHub has no subgroups
                        ({"repo": "acme/ web"}, "^repo: "), ({"repo": 42}, "^repo: "),
                        ({"ci_provider": "gitlab", "repo": "group//web"}, "^repo: .*'group/sub/web'")):
        with pytest.raises(ValueError, match=pattern):
            new(**kw)


def test_a_failure_carries_its_log_lines_and_commit_range(new: Any, tmp_path: Path) -> None:
    g = new()
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    text = ("\x1b[31mFAIL\x1b[0m packages/api/src/index.test.js\r\n"
            f"2024-05-14T09:12:03.1234567Z export GITHUB_TOKEN={token}\n" + "x" * 10_000 + "\nlast line")
    f = g.analyze_failure(job_id="1", logs=text, commit_range="abc1234...def5678")
    assert f.logs[0] == "FAIL packages/api/src/index.test.js" and token not in "".join(f.logs)
    assert "[REDACTED]" in f.logs[1] and len(f.logs[2]) == 4096 and f.logs[3] == "last line" and len(f.logs) == 4
    assert f.commit_range == "abc1234...def5678" and "logs=" not in repr(f)
    many = [f"line {i}" for i in range(25_000)]
    f = g.analyze_failure(job_id="2", logs=many)
    assert len(f.logs) == 20_000 and f.logs[-1] == "line 24999" and f.log_lines == 25_000
    assert f.commit_range == "HEAD~1..HEAD"  # no CI environment (env={}), no range given: the last commit
    for bad in ("--output=/tmp/x", "HEAD~1 HEAD", ""):
        with pytest.raises(ValueError, match="^commit_range: expected a git revision range"):
            g.analyze_failure(job_id="3", logs="x", commit_range=bad)
    event = tmp_path / "event.json"
    event.write_text('{"before": "1111111111111111111111111111111111111111", '
                     '"after": "2222222222222222222222222222222222222222"}')
    g = new(env={"GITHUB_EVENT_PATH": str(event)})
    assert g.analyze_failure(job_id="4", logs="x").commit_range == "1" * 40 + ".." + "2" * 40


def test_custom_strategy_below_threshold_and_checks(new: Any) -> None:
    g = new()
    g.register_strategy(Quota(score=0.5))  # under its 0.8 threshold
    r = g.heal(g.analyze_failure(job_id="9", logs=QUOTA_LOG, repo="acme/web"))
    assert r.strategy == "skip_and_notify"

    g = new(daily_budget_usd=1.0)
    g.register_strategy(Quota(cost=5.0))  # over the budget: the same checks as the table's actions
    r = g.heal(g.analyze_failure(job_id="9", logs=QUOTA_LOG, repo="acme/web"))
    assert (r.status, r.action, r.strategy) == ("skipped", "notify_oncall", "deploy_quota")

    g = new()
    g.register_strategy(Quota(action="notify_author"))
    r = g.heal(g.analyze_failure(job_id="9", logs=QUOTA_LOG, repo="acme/web"))
    assert (r.status, r.action) == ("notified", "notify_author")


def test_custom_strategy_mistakes_are_named(new: Any) -> None:
    g = new()

    class NoRemedy(CustomStrategy):
        def detect(self, failure: Failure) -> bool:
            return True

    with pytest.raises(TypeError, match=r"^strategy: NoRemedy must define remediate\(failure\) -> RemediationAction"):
        g.register_strategy(NoRemedy())
    with pytest.raises(TypeError, match=r"pass an instance, e.g. register_strategy\(Quota\(\)\)"):
        g.register_strategy(Quota)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="add_strategy"):
        g.register_strategy(Strategy.OOM_RECOVERY)  # type: ignore[arg-type]
    g.register_strategy(Quota())
    with pytest.raises(ValueError, match="already registered"):
        g.register_strategy(Quota())

    class Sure(Quota):
        name = "sure"

        def detect(self, failure: Failure) -> Any:
            return "yes"

    g2 = new()
    g2.register_strategy(Sure())
    with pytest.raises(TypeError, match=r"sure.detect\(\) must return a bool or a number"):
        g2.heal(failure(g2, "oom"))

    class Loose(Quota):
        name = "loose"

        def remediate(self, failure: Failure) -> Any:
            return {"action": "x"}

    g3 = new()
    g3.register_strategy(Loose())
    with pytest.raises(TypeError, match=r"loose.remediate\(\) must return a RemediationAction"):
        g3.heal(g3.analyze_failure(job_id="9", logs=QUOTA_LOG))
    with pytest.raises(ValueError, match="^p_success: must be between 0 and 1"):
        RemediationAction("x", p_success=2)
    with pytest.raises(ValueError, match="^action: "):
        RemediationAction("")


# --- executor ------------------------------------------------------------------------------------

def test_executor_runs_automatic_actions_only(new: Any) -> None:
    calls: list[Command] = []

    def run(cmd: Command) -> bool:
        calls.append(cmd)
        return cmd.category == "network"

    g = new(executor=run)
    assert not g.dry_run
    ok = g.heal(failure(g, "network", duration_minutes=12))
    assert ok.status == "succeeded" and ok.time_saved_minutes == 42.0
    bad = g.heal(failure(g, "cache", job_id="2"))
    assert bad.status == "failed" and bad.time_saved_minutes == 0
    assert g.heal(failure(g, "compile", job_id="3")).status == "notified"
    assert [c.action for c in calls] == ["retry_backoff", "clear_cache_retry"]
    assert g.heal(failure(g, "network", duration_minutes=12)) == ok and len(calls) == 2  # done once

    def boom(cmd: Command) -> bool:
        raise RuntimeError("CI API down")

    g = new(executor=boom)
    r = g.heal(failure(g, "network"))
    assert r.status == "failed" and "CI API down" in r.reason

    g = new(executor=run, dry_run=True)
    calls.clear()
    assert g.heal(failure(g, "network")).status == "dry_run" and calls == []
    g = new(dry_run=False)
    assert g.heal(failure(g, "network")).status == "planned"


# --- inputs --------------------------------------------------------------------------------------

def test_logs_in_every_form(new: Any, tmp_path: Path) -> None:
    g = new()
    text = LOGS["oom"]
    p = tmp_path / "job.log"
    p.write_text(text)
    forms: list[Any] = [text, text.encode(), bytearray(text.encode()), p, io.BytesIO(text.encode()),
                        io.StringIO(text), text.splitlines()]
    with p.open("rb") as fp:
        forms.append(fp)
        results = [g.analyze_failure(job_id="1", logs=x) for x in forms]
    assert {(f.category, f.log_lines) for f in results} == {("oom", 4)}
    assert {f.evidence[0].line for f in results} == {3}


def test_argument_mistakes_are_named(new: Any, base: PipelineGuard) -> None:
    g = base
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: g.analyze_failure(job_id="1", logs=42), TypeError,  # type: ignore[arg-type]
         "^logs: expected the log text"),
        (lambda: g.analyze_failure(job_id="1", logs={"a": 1}), TypeError, "^logs: "),
        (lambda: g.analyze_failure(job_id="1", logs="x", repo="web"), ValueError, "^repo: expected 'owner/name'"),
        (lambda: g.analyze_failure(job_id="1", logs="x", provider="travis"), ValueError, "^provider: unknown provider"),
        (lambda: g.analyze_failure(job_id="1", logs="x", exit_code="1"),  # type: ignore[arg-type]
         TypeError, "^exit_code: "),
        (lambda: g.analyze_failure(job_id="", logs="x"), ValueError, "^job_id: "),
        (lambda: g.analyze_failure(job_id="1", logs="x", attempt=0), ValueError, "^attempt: "),
        (lambda: g.analyze_failure(job_id="1", logs="x", runner_size="huge"), ValueError, "^runner_size: "),
        (lambda: g.analyze_failure(job_id="1", logs="x", failed_tests="t1"), TypeError, "^failed_tests: "),
        (lambda: g.add_strategy("flaky"), ValueError, "^strategy: unknown strategy 'flaky'; known: flaky_test_retry"),
        (lambda: g.add_strategy(Strategy.OOM_RECOVERY, confidence_threshold=1.5), ValueError,
         "^confidence_threshold: must be between 0 and 1, got 1.5"),
        (lambda: g.add_strategy(Strategy.OOM_RECOVERY, confidence_threshold=True), TypeError,
         "^confidence_threshold: "),
        (lambda: g.add_strategy(Strategy.OOM_RECOVERY, max_retries=-1), ValueError, "^max_retries: must be >= 0"),
        (lambda: g.add_strategy(Strategy.OOM_RECOVERY, parameters={"tests": []}), ValueError, "^parameters: 'tests'"),
        (lambda: g.add_strategy(Strategy.SKIP_AND_NOTIFY, enabled=False), ValueError, "^enabled: "),
        (lambda: g.add_strategy(Strategy.SKIP_AND_NOTIFY, max_retries=2), ValueError, "^max_retries: "),
        (lambda: g.add_strategy(Quota()), TypeError, "register_strategy"),  # type: ignore[arg-type]
        (lambda: g.record_test("t", "yes"), TypeError, "^passed: "),  # type: ignore[arg-type]
        (lambda: g.heal({"category": "oom"}), TypeError, "^failure: expected the Failure"),  # type: ignore[arg-type]
        (lambda: new(daily_budgt_usd=3), TypeError, "unknown argument"),
        (lambda: new(executor="run"), TypeError, "^executor: "),
        (lambda: new(strategies=3), TypeError, "^strategies: "),
    ]
    for call, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            call()
    with pytest.raises(ConfigError) as e:
        new(daily_budget_usd=-1)
    assert e.value.source == "PipelineGuard()" and e.value.key == "daily_budget_usd"


def test_config_file_errors_name_file_line_and_key(new: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "healing-config.yml"
    cfg.write_text("cost_tracking:\n  daily_budgt_usd: 5\n")
    with pytest.raises(ConfigError, match=re.escape(f"{cfg}:2: cost_tracking.daily_budgt_usd: unknown key")):
        new(config=cfg)
    strategies = tmp_path / "healing-strategies.yml"
    strategies.write_text("actions:\n  oom_recovery:\n    max_retries: many\n")
    with pytest.raises(ConfigError, match=re.escape(f"{strategies}:3: actions.oom_recovery.max_retries: ")):
        new(strategies=strategies)
    cfg.write_text("cost_tracking:\n  daily_budget_usd: 5\n")
    assert new(config=cfg).settings.daily_budget_usd == 5


def test_a_matcher_from_other_patterns_is_refused(new: Any, tmp_path: Path) -> None:
    extra = tmp_path / "team.yml"
    extra.write_text("patterns:\n  - {id: team.quota, category: rate_limit, regex: 'deploy quota exceeded'}\n")
    with pytest.raises(ValueError, match="^matcher: "):
        new(pattern_files=[str(extra)])


# --- the planner's checks for strategies chosen outside its table ---------------------------------

def _scenarios() -> Iterator[tuple[str, JobEvent, Ledger, PlanConfig]]:
    now = 1_767_225_600.0
    for cat in ("network", "rate_limit", "cache_corruption", "docker_registry", "disk_full",
                "infra_runner_lost", "oom"):
        for attempt, ledger, cfg in [
            (1, Ledger(), PlanConfig()),
            (3, Ledger(), PlanConfig(max_retries_per_job=2)),
            (1, Ledger(day="2026-01-01", spent_usd=199.9), PlanConfig()),
            (1, Ledger(day="2026-01-01", spent_usd=1, repo_spent=(("acme/web", 49.95),)), PlanConfig()),
            (1, Ledger(), PlanConfig(human_response_minutes=0)),  # never worth it
        ]:
            job = JobEvent(provider="github", owner="acme", repo="web", job_id="7", job_name="b", status="completed",
                           conclusion="failure", attempt=attempt, started_at=now - 600, completed_at=now)
            yield cat, job, ledger, cfg


def test_plan_chosen_mirrors_the_planner() -> None:
    """``plan_chosen`` repeats ``plan``'s budget and retry checks; they must agree on the table's actions."""
    now = 1_767_225_600.0
    for cat, job, ledger, cfg in _scenarios():
        d = Diagnosis(cat, 0.99, (EvidenceLine(3, "x", "p", cat, 0.9),))
        led1, cmd1 = plan(job, d, (), ledger, cfg, 0.016, now)
        # the action the planner weighs highest (expected value, then lower cost, then name), then its checks
        def rank(s: table.Remedy) -> tuple[float, float, str]:
            ev, cost = expected_value(s, s.p_success, 10.0, cfg.human_response_minutes, 0.016)
            return ev, -cost, s.action

        st = max((table.STRATEGIES[cat], *table.ALTERNATIVES.get(cat, ())), key=rank)
        reason = cmd1.reason if cmd1.action == st.action else st.why
        led2, cmd2, _, refused = plan_chosen(job, d, st, reason, ledger, cfg, 0.016, now)
        assert (led2, cmd2) == (led1, cmd1), (cat, job.attempt, ledger, cfg)
        assert refused == (cmd1.action in table.NOTIFY_ACTIONS)
