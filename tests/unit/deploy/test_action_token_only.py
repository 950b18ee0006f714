"""The Action and the GitLab template with only the platform's token (`guard action ...`,
healing_guard/action_run.py and healing_guard/ci_action/): the run-level rule, GitHub's refusal of a re-run
while the run is in progress, the companion workflow (mode rerun), inputs and their old names, and the
GitLab token cases. The product document's own examples are tests/document/test_action.py and test_gitlab.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from healing_guard.action_run import _github_refusal
from healing_guard.ci_action import github as gh
from healing_guard.ci_action import gitlab as gl
from healing_guard.ci_action.decide import (JobDecision, Record, parse_pipeline, plan_run, read_record, record)
from tests.support.paths import ROOT
from tests.unit.deploy.ci_standins import GitHubJob, StandIn, gitlab_job
from tests.unit.deploy.composite import ActionRun, evaluate, run_action, runner_env, substitute

GUARD_BIN = ROOT / ".venv" / "bin"
TOKEN = "ghs_unitTestToken0123456789abcdef"
RUNNER_LOST = ("##[group]Run make build\n> building\n##[error]The runner has received a shutdown signal. This can happen "
               "when the runner service is stopped, or a manually started runner is canceled.\n")
COMPILE_ERROR = "> tsc\nsrc/index.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.\n"
NETWORK = ("> npm ci\nnpm ERR! code ECONNRESET\nnpm ERR! network request to https://registry.npmjs.org/left-pad "
           "failed, reason: socket hang up\nnpm ERR! network This is a problem related to network connectivity.\n")


def action() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "action.yml").read_text())


def env(tmp: Path, api: StandIn, attempt: int = 1, **extra: str) -> dict[str, str]:
    base = {"GITHUB_REPOSITORY": "your-org/your-repo", "GITHUB_RUN_ID": "9001", "GITHUB_RUN_ATTEMPT": str(attempt),
            "GITHUB_API_URL": api.url, "GITHUB_WORKFLOW": "CI", "RUNNER_NAME": "GitHub Actions 9"}
    return runner_env(tmp, GUARD_BIN, **{**base, **extra})


def heal(run: ActionRun) -> Any:
    step = run.step("heal")
    assert step.ran and step.returncode == 0, step.stderr
    return step


def summary(tmp: Path) -> str:
    return (tmp / "step_summary.md").read_text()


def companion(tmp: Path, api: StandIn, attempt: int, conclusion: str = "failure", **inputs: str) -> ActionRun:
    out = tmp / "companion"
    out.mkdir()
    event = out / "event.json"
    event.write_text(json.dumps({"workflow_run": {"id": 9001, "name": "CI", "run_attempt": attempt,
                                                  "conclusion": conclusion, "head_branch": "main"}}))
    return run_action(action(), {"mode": "rerun", "github-token": TOKEN, **inputs},
                      env(out, api, GITHUB_RUN_ID="31337", GITHUB_EVENT_PATH=str(event)), out)


# --- GitHub: a last job `heal` (needs: [build], if: failure()): the failed job is finished, the run is not ---

def test_in_the_run_github_refuses_the_rerun_and_the_step_says_so(tmp_path: Path) -> None:
    with StandIn() as api:
        api.github_run(9001, 1, [GitHubJob(201, "build", log=RUNNER_LOST),
                                 GitHubJob(202, "heal", status="in_progress", conclusion=None, failed_step="",
                                           runner_name="GitHub Actions 9")], in_progress=True)
        # the heal job has no failed step: it is not a failed job (GitHubJob marks step 3 failed: give it success)
        api.github_runs[9001][1][1].conclusion = "success"
        run = run_action(action(), {"github-token": TOKEN, "max-retries": "2"}, env(tmp_path, api), tmp_path)
        step = heal(run)
        text = summary(tmp_path)
        assert "**cause:** infra_runner_lost" in text and "### build (job 201, attempt 1)" in text
        assert "### heal" not in text
        posts = api.find("POST", r"/actions/runs/9001/rerun-failed-jobs$")
        assert len(posts) == 1  # tried once: a 403 that is not a rate limit is not repeated
        assert ('GitHub refused the re-run: HTTP 403 "This workflow is already running". GitHub re-runs jobs of a '
                "workflow run only once the run has completed, and this step runs inside the run") in text
        assert "workflows: [\"CI\"]" in text  # the companion workflow to add
        assert step.outputs["decision"] == "re-run-refused"
        rec = read_record(Path(step.outputs["decision-file"]).read_text())
        assert rec.rerun_attempted and not rec.rerun_ok
        assert [(j.name, j.category, j.action, j.notified) for j in rec.jobs] == [
            ("build", "infra_runner_lost", "retry", False)]

        # the run completes; the companion carries the recorded decision out without diagnosing again
        api.github_runs[9001][1][1].status = "completed"
        api.github_run_in_progress[9001] = False
        api.github_artifact(9001, 601, step.outputs["artifact-name"],
                            {"d.json": Path(step.outputs["decision-file"]).read_text()})
        logs_before = len(api.find("GET", r"/actions/jobs/201/logs$"))
        second = heal(companion(tmp_path, api, 1))
        assert len(api.find("GET", r"/actions/jobs/201/logs$")) == logs_before  # the record's diagnosis was used
        assert len(api.find("POST", r"/actions/runs/9001/rerun-failed-jobs$")) == 2
        assert "re-run of the failed jobs of run 9001 requested (HTTP 201): attempt 2" in summary(tmp_path / "companion")
        assert second.outputs["decision"] == "re-ran"


def test_with_a_guard_service_the_step_reports_and_leaves_acting_to_the_service(tmp_path: Path) -> None:
    """guard-broker set: the step still diagnoses and writes the job summary, re-runs nothing and notifies
    nobody (the service's executor does both), and the send step forwards the jobs."""
    with StandIn() as api:
        api.github_run(9001, 1, [GitHubJob(201, "build", log=RUNNER_LOST)], in_progress=False)
        run = run_action(action(), {"github-token": TOKEN, "guard-broker": "kafka://guard.internal:9092",
                                    "slack-webhook": api.url + "/services/T0/B0/x"},
                         env(tmp_path, api), tmp_path, skip=("install", "send"))
        step = heal(run)
        text = summary(tmp_path)
        assert "**cause:** infra_runner_lost" in text and "A guard service receives these jobs" in text
        assert "kafka://guard.internal:9092" in text
        assert step.outputs["decision"] == "sent-to-service" and step.outputs["failed-jobs"] == "1"
        assert not api.find("POST", r"/actions/runs/9001/rerun-failed-jobs$")
        assert not api.find("POST", r"/services/")  # the service notifies, not this step
        assert [s.id for s in run.steps if s.ran][-1] == "heal"  # the send step comes next (skipped here)


def test_past_max_retries_the_escalation_opens_a_jira_ticket_when_jira_is_configured(tmp_path: Path) -> None:
    """jira-token as an input, the site, account and project from the workflow's environment."""
    with StandIn() as api:
        api.github_run(9001, 3, [GitHubJob(201, "build", log=RUNNER_LOST)], in_progress=False)
        e = env(tmp_path, api, 3, HEALING_JIRA_URL=api.url, HEALING_JIRA_USER="ci@your-org.com",
                HEALING_JIRA_PROJECT="CI")
        step = heal(run_action(action(), {"github-token": TOKEN, "max-retries": "2", "jira-token": "jira-secret-1"},
                               e, tmp_path))
        text = summary(tmp_path)
        assert "**action:** escalate: attempt 3 is over the retry limit of 2" in text
        issues = api.find("POST", r"^/rest/api/3/issue$")
        assert len(issues) == 1
        fields = issues[0].json()["fields"]
        assert fields["project"] == {"key": "CI"} and "infra_runner_lost" in fields["summary"]
        assert issues[0].headers["authorization"].startswith("Basic ")
        assert "Jira ticket for build: CI-24 (sent (HTTP 201))" in text and "jira-secret-1" not in text
        assert api.find("POST", "rerun") == [] and step.outputs["decision"] == "no-re-run"


def test_one_failed_job_that_needs_a_person_stops_the_rerun_of_the_others(tmp_path: Path) -> None:
    with StandIn() as api:
        api.github_run(9001, 1, [GitHubJob(201, "build", log=RUNNER_LOST), GitHubJob(203, "types", log=COMPILE_ERROR)],
                       in_progress=False)
        step = heal(companion(tmp_path, api, 1))
        text = summary(tmp_path / "companion")
        assert "**cause:** compilation_error" in text and "**action:** notify_author" in text
        assert "not re-run: job types needs a person (notify_author" in text
        assert "a re-run of the other failed jobs cannot make this run pass" in text
        assert api.find("POST", "rerun") == [] and step.outputs["decision"] == "no-re-run"
        assert "No decision record of this attempt" in text  # no artifact: this step's own inputs apply


def test_the_companion_does_not_trust_a_record_written_by_a_forks_run(tmp_path: Path) -> None:
    """A fork's pull request runs the fork's workflow code: its guard step's record could say anything."""
    with StandIn() as api:
        api.github_run(9001, 1, [GitHubJob(203, "types", log=COMPILE_ERROR)], in_progress=False)
        forged = Record(provider="github", repo="your-org/your-repo", run_id="9001", attempt=1, strategy="aggressive",
                        max_retries=99, jobs=(JobDecision(job_id="203", name="types", attempt=1, diagnosed=True,
                                                          category="network", action="retry", automatic=True),))
        api.github_artifact(9001, 601, "healing-guard-9001-1-deadbeef", {"d.json": record(forged)})
        out = tmp_path / "companion"
        out.mkdir()
        event = out / "event.json"
        event.write_text(json.dumps({"workflow_run": {
            "id": 9001, "name": "CI", "run_attempt": 1, "conclusion": "failure", "head_branch": "patch-1",
            "head_repository": {"full_name": "someone/your-repo"}, "repository": {"full_name": "your-org/your-repo"}}}))
        step = heal(run_action(action(), {"mode": "rerun", "github-token": TOKEN},
                               env(out, api, GITHUB_RUN_ID="31337", GITHUB_EVENT_PATH=str(event)), out))
        text = summary(out)
        assert "The run came from the fork someone/your-repo: its decision record" in text
        assert "auto-detect, max-retries 2" in text  # this step's own inputs (the defaults)
        assert "**cause:** compilation_error" in text and api.find("GET", "/artifacts") == []
        assert api.find("POST", "rerun") == [] and step.outputs["decision"] == "no-re-run"


def test_the_companion_waits_the_backoff_up_to_max_wait_seconds(tmp_path: Path) -> None:
    with StandIn() as api:
        api.github_run(9001, 1, [GitHubJob(201, "install", log=NETWORK)], in_progress=False)
        heal(companion(tmp_path, api, 1, **{"max-wait-seconds": "0"}))
        text = summary(tmp_path / "companion")
        assert "**action:** retry_backoff" in text
        assert "the backoff asked for 30 s; waited 0 s (max-wait-seconds)" in text
        assert len(api.find("POST", r"/rerun-failed-jobs$")) == 1


def test_the_companion_does_nothing_for_a_run_that_passed(tmp_path: Path) -> None:
    with StandIn() as api:
        step = heal(companion(tmp_path, api, 2, conclusion="success"))
        assert step.outputs["decision"] == "none" and api.calls == []
        assert "completed: success" in summary(tmp_path / "companion")


def test_mode_rerun_outside_a_workflow_run_event_is_an_input_error(tmp_path: Path) -> None:
    with StandIn() as api:
        run = run_action(action(), {"mode": "rerun", "github-token": TOKEN}, env(tmp_path, api), tmp_path)
        step = run.step("heal")
        assert step.returncode == 2 and "workflow_run" in step.stderr


def test_an_unknown_mode_or_strategy_fails_the_step_saying_what_is_accepted(tmp_path: Path) -> None:
    with StandIn() as api:
        r = run_action(action(), {"mode": "repair"}, env(tmp_path, api), tmp_path).step("heal")
        assert r.returncode == 2 and "mode: report, rerun or prepare; got 'repair'" in r.stderr
        # the github-token input's default is the job's own token (github.token)
        r = run_action(action(), {"strategy": "yolo"}, env(tmp_path, api), tmp_path,
                       github={"token": TOKEN}).step("heal")
        assert r.returncode == 2 and "strategy: unknown 'yolo'" in r.stderr and "progressive" in r.stderr
        assert api.calls == []


def test_the_steps_inputs_and_their_old_names() -> None:
    a = action()
    inputs = a["inputs"]
    for name in ("slack-webhook", "jira-token", "pagerduty-token", "slack-webhook-url", "pagerduty-routing-key",
                 "jira-url", "jira-user", "jira-project"):
        assert inputs[name]["required"] is False and inputs[name]["default"] == "", name
    assert inputs["max-wait-seconds"]["default"] == "300" and inputs["github-token"]["default"] == "${{ github.token }}"
    step = next(s for s in a["runs"]["steps"] if s.get("id") == "heal")

    def step_env(**given: str) -> dict[str, str]:
        ins = {n: given.get(n, str(spec.get("default", ""))) for n, spec in inputs.items()}
        return {k: substitute(str(v), {"inputs": ins}) for k, v in step["env"].items()}

    assert step_env(**{"slack-webhook": "https://hooks/new"})["HEALING_SLACK_WEBHOOK"] == "https://hooks/new"
    assert step_env(**{"slack-webhook-url": "https://hooks/old"})["HEALING_SLACK_WEBHOOK"] == "https://hooks/old"
    assert step_env(**{"pagerduty-routing-key": "old-key"})["HEALING_PAGERDUTY_TOKEN"] == "old-key"
    assert step_env(**{"pagerduty-token": "new", "pagerduty-routing-key": "old"})["HEALING_PAGERDUTY_TOKEN"] == "new"
    assert step_env(**{"jira-token": "t"})["HEALING_JIRA_TOKEN"] == "t"
    # which step runs: the in-process guard without a broker, the forwarder with one, neither in prepare
    for mode, broker, heal_runs, send_runs in [("report", "", True, False), ("report", "kafka://g:9092", True, True),
                                               ("rerun", "", True, False), ("prepare", "", False, False)]:
        ctx = {"inputs": {**{n: "" for n in inputs}, "mode": mode, "guard-broker": broker}}
        conds = {s.get("id"): s.get("if") for s in a["runs"]["steps"]}
        assert bool(evaluate(conds["heal"], ctx)) is heal_runs, (mode, broker)
        assert bool(evaluate(conds["send"], ctx)) is send_runs, (mode, broker)


# --- the pieces ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("given, preset, healing", [
    ("auto-detect", "auto-detect", "auto"), ("Progressive", "progressive", "auto"), ("aggressive", "aggressive", "auto"),
    ("conservative", "conservative", "auto"), ("auto_detect", "auto-detect", "auto"), ("auto", "auto-detect", "auto"),
    ("", "auto-detect", "auto"), ("off", None, "off"), ("network_backoff, flaky_test_retry", None,
                                                        "network_backoff,flaky_test_retry")])
def test_strategy_values(given: str, preset: str | None, healing: str) -> None:
    p = parse_pipeline(given, "3")
    assert (p.preset, p.healing_strategy, p.max_retries) == (preset, healing, 3)


def test_the_preset_and_the_retry_limit_reach_the_settings() -> None:
    from healing_guard.settings import Settings

    s = parse_pipeline("conservative", 4).settings(Settings())
    assert (s.confidence_threshold, s.max_retries_per_job, s.dry_run) == (0.9, 4, False)
    assert parse_pipeline("progressive", 0).settings(Settings()).max_retries_per_job == 0


@pytest.mark.parametrize("strategy, retries, error", [
    ("yolo", "2", "strategy: unknown 'yolo'"), ("auto,network_backoff", "2", "unknown 'auto'"),
    ("auto", "-1", "max-retries: expected a whole number >= 0"), ("auto", "three", "max-retries")])
def test_strategy_and_max_retries_refused(strategy: str, retries: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_pipeline(strategy, retries)


def _d(name: str, action: str, *, diagnosed: bool = True, attempt: int = 1, **params: Any) -> JobDecision:
    from healing_guard.remediate.actions import is_automatic

    return JobDecision(job_id=name, name=name, attempt=attempt, diagnosed=diagnosed, category="network",
                       action=action, automatic=is_automatic(action) if diagnosed else False, reason="why",
                       command={"parameters": params} if params else None, why_pending="" if diagnosed else "no log")


def test_the_run_level_rule() -> None:
    assert not plan_run([], max_wait_seconds=300).rerun
    p = plan_run([_d("a", "retry"), _d("b", "retry_backoff", attempt=2, backoff_seconds=[30, 120, 480])],
                 max_wait_seconds=300)
    assert p.rerun and p.wait_seconds == 120 and p.asked_wait_seconds == 120
    assert plan_run([_d("a", "retry_backoff", attempt=3, backoff_seconds=[30, 120, 480])],
                    max_wait_seconds=60).wait_seconds == 60
    mixed = plan_run([_d("a", "retry"), _d("b", "notify_author")], max_wait_seconds=300)
    assert not mixed.rerun and "job b needs a person" in mixed.why
    waiting = plan_run([_d("a", "retry"), _d("b", "", diagnosed=False)], max_wait_seconds=300)
    assert not waiting.rerun and "the log of job b could not be read yet" in waiting.why
    fix = plan_run([_d("a", "rerun_more_memory", memory_factor=2)], max_wait_seconds=300)
    assert fix.rerun and "more memory" in fix.notes[0] and "runs the job as it was" in fix.notes[0]
    assert plan_run([_d("a", "clear_cache_retry", clear_cache=True)], max_wait_seconds=300).clear_cache


def test_github_refusals_are_told_apart() -> None:
    word, text = _github_refusal("HTTP 403: This workflow is already running", 403, in_job=True)
    assert word == "re-run-refused" and "only once the run has completed" in text
    word, text = _github_refusal("HTTP 403: Resource not accessible by integration", 403, in_job=True)
    assert word == "re-run-failed" and "actions: write" in text


def test_github_failed_jobs() -> None:
    jobs = [GitHubJob(1, "lint", conclusion="success").to_json(5, 2, "x"),
            GitHubJob(2, "unit", conclusion="timed_out", minutes=2.5).to_json(5, 2, "x"),
            GitHubJob(3, "e2e", status="in_progress", conclusion=None, runner_name="r9").to_json(5, 2, "x"),
            {**GitHubJob(4, "deploy", status="in_progress", conclusion=None).to_json(5, 2, "x"), "steps": []}]
    got = gh.failed_jobs(jobs, 2, runner_name="r9")
    assert [(f.job_id, f.name, f.attempt, f.conclusion, f.running, f.this_job, f.duration_minutes) for f in got] == [
        ("2", "unit", 2, "timed_out", False, False, 2.5), ("3", "e2e", 2, "failure", True, True, None)]
    assert got[1].failed_steps == ("Run Tests",)


def test_gitlab_failed_jobs_count_attempts_and_skip_what_does_not_fail_the_pipeline() -> None:
    jobs = [gitlab_job(1, "test", retried=True), gitlab_job(2, "test", retried=True), gitlab_job(3, "test"),
            gitlab_job(4, "lint", allow_failure=True), gitlab_job(5, "build", status="success", failure_reason=None),
            gitlab_job(6, "e2e", failure_reason="job_execution_timeout"), gitlab_job(9, "healing-guard")]
    got = gl.failed_jobs(jobs, own_job_id="9")
    assert [(f.job_id, f.name, f.attempt, f.conclusion, f.duration_minutes) for f in got] == [
        ("3", "test", 3, "failure", 5.0), ("6", "e2e", 1, "timed_out", 5.0)]


def test_the_decision_record_round_trips() -> None:
    d = _d("a", "retry_backoff", backoff_seconds=[30])
    r = Record(provider="github", repo="o/r", run_id="1", attempt=2, strategy="progressive", max_retries=3, jobs=(d,),
               rerun_attempted=True, rerun_message="refused")
    back = read_record(record(r))
    assert back.jobs == (d,) and (back.attempt, back.strategy, back.rerun_attempted) == (2, "progressive", True)
    with pytest.raises(ValueError):
        read_record(json.dumps({"version": 99}))


# --- GitLab: a read_api token reads but may not retry ------------------------------------------------

def test_gitlab_read_only_token_diagnoses_and_says_the_retry_was_refused(tmp_path: Path) -> None:
    from tests.document.test_gitlab import TRACE, job_env, pipeline, report, run_job

    with StandIn() as api:
        api.gitlab_tokens = {"glpat-readonly": "read_api"}
        pipeline(api, 1)
        assert TRACE
        r = run_job(tmp_path, job_env(api, tmp_path, HEALING_GUARD_TOKEN="glpat-readonly",
                                      HEALING_JIRA_URL=f"{api.url}", HEALING_JIRA_TOKEN="j"))
        assert r.returncode == 0, r.stderr
        text = report(tmp_path)
        assert len(api.find("POST", r"/jobs/11/retry$")) == 1
        assert "retry of job test (11) refused: HTTP 403: insufficient_scope" in text
        assert "(the token needs the api scope and the Developer role to retry)" in text
        assert "Jira: HEALING_JIRA_TOKEN, HEALING_JIRA_URL given" in text and "missing: HEALING_JIRA_USER" in text
