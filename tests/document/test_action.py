"""The product document's GitHub Action example, run as written: its workflow's step ``Self-Healing Guard``
with exactly its ``with:`` inputs, through action.yml's real composite steps (tests/unit/deploy/composite.py),
against a local GitHub stand-in speaking GitHub's documented answers (tests/unit/deploy/ci_standins.py).

What GitHub does, and so what the stand-in does: the document's guard step runs inside its failing job,
so the run is in progress. GitHub lists the job as ``in_progress`` with its failed step, serves a job's
log only once the job has finished (the log URL's download answers 404 ``BlobNotFound``), and refuses to
re-run jobs of a run in progress (``403 This workflow is already running``). The step says so, records
what it found, and the companion workflow (the same Action, ``mode: rerun``, on ``workflow_run:
completed``) diagnoses and re-runs once the run has completed: both legs are run here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.document.examples import block
from tests.support.paths import ROOT
from tests.unit.deploy.ci_standins import GitHubJob, StandIn
from tests.unit.deploy.composite import ActionRun, run_action, runner_env, substitute

GUARD_BIN = ROOT / ".venv" / "bin"
RUN_ID = 9001
TOKEN = "ghs_docTestToken0123456789abcdefABCDEF"
#: what `npm test` printed when the runner went away (GitHub's own message), 5 minutes into the job
LOG = """2024-05-14T09:10:02.1000000Z ##[group]Run npm test
2024-05-14T09:10:02.2000000Z > your-app@1.0.0 test
2024-05-14T09:10:02.3000000Z > jest --ci
2024-05-14T09:14:58.0000000Z PASS src/cart.test.js (12.3 s)
2024-05-14T09:15:00.0000000Z ##[error]The runner has received a shutdown signal. This can happen when the runner service is stopped, or a manually started runner is canceled.
2024-05-14T09:15:00.1000000Z ##[error]Process completed with exit code 143.
"""


def document_workflow() -> dict[str, Any]:
    return yaml.safe_load(block("As a GitHub Action", "yaml").text)


def document_step() -> dict[str, Any]:
    jobs = document_workflow()["jobs"]
    assert list(jobs) == ["test"]  # one job: the guard step runs inside it
    return next(s for s in jobs["test"]["steps"] if str(s.get("uses", "")).startswith("your-org/self-healing"))


def evaluated_with(step: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """The step's inputs as GitHub hands them to the Action: expressions evaluated (a secret that is not
    set is the empty string), every value a string."""
    return {k: substitute(str(v), {"secrets": secrets}) for k, v in (step.get("with") or {}).items()}


def action() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "action.yml").read_text())


def env_for(tmp: Path, api: StandIn, attempt: int, **extra: str) -> dict[str, str]:
    github = {"GITHUB_REPOSITORY": "your-org/your-repo", "GITHUB_RUN_ID": str(RUN_ID), "GITHUB_RUN_ATTEMPT": str(attempt),
              "GITHUB_API_URL": api.url, "GITHUB_SERVER_URL": "https://github.com",
              "GITHUB_WORKFLOW": document_workflow()["name"], "GITHUB_JOB": "test", "GITHUB_REF_NAME": "main",
              "RUNNER_NAME": "GitHub Actions 2", "GUARD_PAGERDUTY_URL": api.url}
    return runner_env(tmp, GUARD_BIN, **{**github, **extra})


def secrets_for(api: StandIn, *, slack: bool) -> dict[str, str]:
    return {"GITHUB_TOKEN": TOKEN, "SLACK_WEBHOOK": f"{api.url}/services/T000/B000/XXXX" if slack else "",
            "JIRA_TOKEN": "jira-api-token-abc123", "PAGERDUTY_TOKEN": ""}


def in_job(tmp: Path, api: StandIn, attempt: int, *, slack: bool = True) -> ActionRun:
    """The document's step, inside its failing job (the run in progress)."""
    api.github_run(RUN_ID, attempt, [GitHubJob(101 + attempt, "test", status="in_progress", conclusion=None, log=LOG)],
                   in_progress=True)
    w = evaluated_with(document_step(), secrets_for(api, slack=slack))
    run = run_action(action(), w, env_for(tmp, api, attempt), tmp, github={"token": TOKEN})
    heal = run.step("heal")
    assert heal.ran and heal.returncode == 0, heal.stderr
    return run


def run_completes(api: StandIn, attempt: int, record_file: Path, artifact: str) -> None:
    """The job (and the run) finished: its log is served; the step's decision record is an artifact."""
    api.github_run(RUN_ID, attempt, [GitHubJob(101 + attempt, "test", status="completed", conclusion="failure",
                                               log=LOG)], in_progress=False)
    api.github_artifact(RUN_ID, 600 + attempt, artifact, {record_file.name: record_file.read_text()})


def companion(tmp: Path, api: StandIn, attempt: int, *, slack: bool = True) -> ActionRun:
    """The companion workflow's step (docs/platforms.md): the same Action, mode rerun, on workflow_run."""
    event = tmp / "event.json"
    event.write_text(json.dumps({"action": "completed", "workflow_run": {
        "id": RUN_ID, "name": document_workflow()["name"], "run_attempt": attempt, "status": "completed",
        "conclusion": "failure", "head_branch": "main", "event": "push"},
        "repository": {"full_name": "your-org/your-repo"}}))
    sec = secrets_for(api, slack=slack)
    w = {"mode": "rerun", "github-token": sec["GITHUB_TOKEN"], "slack-webhook": sec["SLACK_WEBHOOK"]}
    out = tmp / "companion"
    out.mkdir()
    env = env_for(out, api, 1, GITHUB_RUN_ID="7777", GITHUB_EVENT_NAME="workflow_run", GITHUB_EVENT_PATH=str(event),
                  GITHUB_WORKFLOW="Self-healing guard")
    run = run_action(action(), w, env, out, github={"token": TOKEN})
    heal = run.step("heal")
    assert heal.ran and heal.returncode == 0, heal.stderr
    return run


def summary(tmp: Path) -> str:
    return (tmp / "step_summary.md").read_text()


def test_the_documents_step_has_only_inputs_the_action_declares() -> None:
    step = document_step()
    assert step["if"] == "failure()"
    inputs = action()["inputs"]
    assert set(step["with"]) == {"github-token", "strategy", "max-retries", "slack-webhook", "jira-token",
                                 "pagerduty-token"}
    assert set(step["with"]) <= set(inputs)
    for name in ("slack-webhook", "jira-token", "pagerduty-token"):
        assert inputs[name]["required"] is False


def test_inside_its_failing_job_the_step_says_what_github_allows_and_records_it(tmp_path: Path) -> None:
    with StandIn() as api:
        run = in_job(tmp_path, api, 1)
        text = summary(tmp_path)
        # the job it runs in: failed at "Run Tests", its log not served while it runs
        assert "### test (job 102, attempt 1, the job this step runs in)" in text
        assert "**failed step:** Run Tests" in text
        assert "GitHub serves a job's log only once the job has finished" in text and "HTTP 404: BlobNotFound" in text
        assert "preset auto-detect, max-retries 3" in text
        # what to add to re-run once the run completed: the companion workflow, naming this workflow
        assert 'workflows: ["CI with Self-Healing"]' in text and "mode: rerun" in text
        # the calls: the attempt's jobs and the log (token to the API only, not to the download URL); no re-run
        jobs = api.find("GET", r"/actions/runs/9001/attempts/1/jobs$")
        assert len(jobs) == 1 and jobs[0].headers["authorization"] == f"Bearer {TOKEN}"
        assert len(api.find("GET", r"/actions/jobs/102/logs$")) == 1
        blob = api.find("GET", r"^/_blob/jobs/102\.txt$")
        assert len(blob) == 1 and "authorization" not in blob[0].headers
        assert api.find("POST", "rerun") == []
        # Slack was told (the webhook is given); Jira has only a token: nothing sent, and the summary says why
        slack = api.find("POST", r"^/services/")
        assert len(slack) == 1 and "test: not diagnosed yet" in slack[0].json()["text"]
        assert api.find("POST", r"/rest/api/3/issue") == [] and api.find("POST", "/v2/enqueue") == []
        assert "Jira: jira-token given, but a Jira ticket needs jira-url" in text
        assert "missing: jira-url, jira-user, jira-project" in text
    heal = run.step("heal")
    assert heal.outputs["decision"] == "pending" and heal.outputs["failed-jobs"] == "1"
    assert run.outputs["decision"] == "pending" and run.outputs["failed-jobs"] == "1"
    rec = json.loads(Path(heal.outputs["decision-file"]).read_text())
    assert (rec["run_id"], rec["attempt"], rec["strategy"], rec["max_retries"]) == ("9001", 1, "auto-detect", 3)
    assert [(j["name"], j["diagnosed"]) for j in rec["jobs"]] == [("test", False)]
    # the next step uploads it as the artifact the companion reads
    upload = run.step(next(s.id for s in run.steps if s.uses.startswith("actions/upload-artifact")))
    assert upload.ran and upload.with_["name"] == heal.outputs["artifact-name"]
    assert upload.with_["name"].startswith("healing-guard-9001-1-") and upload.with_["path"] == heal.outputs["decision-file"]
    assert TOKEN not in text and "jira-api-token-abc123" not in text


@pytest.mark.parametrize("attempt, reruns", [(1, 1), (3, 1), (4, 0)])
def test_once_the_run_completed_the_companion_heals_within_max_retries(tmp_path: Path, attempt: int,
                                                                       reruns: int) -> None:
    """max-retries: 3 -> attempts 1..3 may be re-run (attempt N is the (N-1)th re-run); attempt 4 is not."""
    with StandIn() as api:
        first = in_job(tmp_path, api, attempt).step("heal")
        run_completes(api, attempt, Path(first.outputs["decision-file"]), first.outputs["artifact-name"])
        run = companion(tmp_path, api, attempt)
        text = summary(tmp_path / "companion")
        assert "Decision record of the run's guard step: preset auto-detect, max-retries 3" in text
        assert "**cause:** infra_runner_lost" in text
        assert "line 5: The runner has received a shutdown signal." in text  # an evidence line, log numbering
        posts = api.find("POST", r"/actions/runs/9001/rerun-failed-jobs$")
        assert len(posts) == reruns
        slack = api.find("POST", r"^/services/")
        assert len(slack) == 2  # the in-job step's, and the diagnosis
        assert "test: infra_runner_lost" in slack[1].json()["text"]
        if reruns:
            assert "**action:** retry: the runner was lost" in text
            # 5 minutes at the default (medium) runner's $0.016 a minute
            assert "**cost:** $0.08 estimated for the re-run" in text
            assert f"re-run of the failed jobs of run 9001 requested (HTTP 201): attempt {attempt + 1}" in text
            assert posts[0].headers["authorization"] == f"Bearer {TOKEN}"
            assert run.step("heal").outputs["decision"] == "re-ran"
        else:
            assert "**action:** escalate: attempt 4 is over the retry limit of 3" in text
            assert "**cost:** $0.00 (no re-run: a person is told)" in text
            assert "not re-run: job test needs a person (escalate" in text
            assert "Jira ticket for test: not opened (Jira is not configured)" in text
            assert run.step("heal").outputs["decision"] == "no-re-run"
        # the companion read the record and the log; it did not diagnose twice what the record had
        assert len(api.find("GET", r"/actions/runs/9001/artifacts$")) == 1
        assert len(api.find("GET", r"^/_blob/artifacts/")) == 1


def test_nothing_is_sent_when_no_notification_is_configured(tmp_path: Path) -> None:
    with StandIn() as api:
        first = in_job(tmp_path, api, 1, slack=False).step("heal")
        run_completes(api, 1, Path(first.outputs["decision-file"]), first.outputs["artifact-name"])
        companion(tmp_path, api, 1, slack=False)
        assert api.find("POST", r"^/services/") == []
        assert api.find("POST", r"/rest/api/3/issue") == [] and api.find("POST", "/v2/enqueue") == []
        assert len(api.find("POST", r"/rerun-failed-jobs$")) == 1  # the healing itself needs no notification
        assert "Slack message" not in summary(tmp_path) + summary(tmp_path / "companion")


def test_with_the_quick_starts_config_checked_out_the_step_reads_it(tmp_path: Path) -> None:
    """Quick Start: "Create .github/healing-config.yml ... The guard automatically activates on pipeline
    failures": the document's job checks the repository out, and the step reads the file from there."""
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "healing-config.yml").write_text(block("Basic GitHub Action Setup", "yaml").text)
    with StandIn() as api:
        api.github_run(RUN_ID, 1, [GitHubJob(102, "test", status="in_progress", conclusion=None, log=LOG)],
                       in_progress=True)
        env = {k: v for k, v in env_for(tmp_path, api, 1).items() if k != "GUARD_CONFIG"}
        run = run_action(action(), evaluated_with(document_step(), secrets_for(api, slack=False)), env, tmp_path,
                         github={"token": TOKEN})
        assert run.step("heal").returncode == 0, run.step("heal").stderr
        assert "Settings read from .github/healing-config.yml." in summary(tmp_path)
