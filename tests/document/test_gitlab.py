"""The product document's GitLab CI example, run as written: the template it includes
(ci/healing-guard.gitlab-ci.yml) with exactly the document's variables (``HEALING_STRATEGY: "progressive"``,
``HEALING_MAX_RETRIES: 3``), its ``healing-guard`` job's script run by bash with GitLab's predefined
variables, against a local stand-in of GitLab's REST API (tests/unit/deploy/ci_standins.py).

GitLab retries a failed job while the pipeline runs, so the template's ``.post`` job does everything itself,
given a token that may: ``CI_JOB_TOKEN`` may call only ``GET /job`` of the Jobs API (GitLab's "CI/CD job
token" page), so the retry needs a project access token (``HEALING_GUARD_TOKEN``, scope ``api``). The
document's variables do not set one: without it the job says what it could not do and why.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.document.examples import block
from tests.support.paths import ROOT
from tests.unit.deploy.ci_standins import StandIn, gitlab_job

GUARD_BIN = ROOT / ".venv" / "bin"
PROJECT_TOKEN = "glpat-docTest0123456789abcd"
JOB_TOKEN = "glcbt-64_jobTokenValue0123456789"
#: a runner lost mid-job, as GitLab Runner reports it
TRACE = """Running with gitlab-runner 16.5.0 (853330f9)
  on k8s-runner-7d9f abc123, system ID: r_1a2b3c
Preparing the "kubernetes" executor
$ npm ci
added 812 packages in 41s
$ npm test
> your-app@1.0.0 test
> jest --ci
ERROR: Job failed (system failure): pod default/runner-abc123-project-4321-concurrent-0 is disrupted: reason "EvictionByEvictionAPI"
"""


def document() -> dict[str, Any]:
    return yaml.safe_load(block("For GitLab CI", "yaml").text)


def template() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "ci" / "healing-guard.gitlab-ci.yml").read_text())


def job_env(api: StandIn, tmp: Path, **variables: str) -> dict[str, str]:
    """The healing-guard job's environment as GitLab builds it: the included template's variables, the
    including file's (the document's) over them, the job's own, GitLab's predefined ones, then the
    project's CI/CD variables (``variables``)."""
    doc = document()["variables"]
    merged = {**template()["variables"], **doc, **template()["healing-guard"]["variables"]}
    predefined = {"CI": "true", "GITLAB_CI": "true", "CI_SERVER_URL": api.url, "CI_API_V4_URL": f"{api.url}/api/v4",
                  "CI_PROJECT_ID": api.gitlab_project_id, "CI_PROJECT_PATH": api.gitlab_project_path,
                  "CI_PROJECT_DIR": str(tmp), "CI_PIPELINE_ID": "55", "CI_JOB_ID": "12", "CI_JOB_NAME": "healing-guard",
                  "CI_JOB_TOKEN": JOB_TOKEN, "CI_COMMIT_REF_NAME": "main",
                  "CI_PIPELINE_URL": "https://gitlab.example.com/your-group/your-project/-/pipelines/55",
                  "PATH": f"{GUARD_BIN}:/usr/bin:/bin", "HOME": str(tmp), "GUARD_CONFIG": "",
                  "GUARD_PAGERDUTY_URL": api.url}
    # GitLab passes every variable to the job as text (HEALING_MAX_RETRIES: 3 arrives as "3")
    return {**{k: str(v) for k, v in merged.items()}, **predefined, **variables}


def run_job(tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = template()["healing-guard"]["script"]
    # the first line installs the guard from PyPI; the tests use the one installed here (GUARD_BIN on PATH)
    assert script[0].startswith("python -m pip install") and "self-healing-pipeline-guard" in script[0]
    return subprocess.run(["bash", "-c", "\n".join(script[1:])], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=180)


def pipeline(api: StandIn, attempts: int) -> None:
    """build passed; test failed (``attempts`` times: the earlier ones retried); this job runs in .post."""
    api.gitlab_jobs = [gitlab_job(10, "build", status="success", failure_reason=None)]
    ids = [11, *range(20, 20 + attempts - 1)]
    for n, jid in enumerate(ids):
        api.gitlab_jobs.append(gitlab_job(jid, "test", retried=n < len(ids) - 1))
        api.gitlab_traces[jid] = TRACE
    api.gitlab_jobs.append(gitlab_job(12, "healing-guard", status="running", stage=".post", failure_reason=None))


def report(tmp: Path) -> str:
    return (tmp / "healing-guard-report.md").read_text()


def test_the_documents_variables() -> None:
    doc = document()
    assert doc["include"] and doc["variables"] == {"HEALING_STRATEGY": "progressive", "HEALING_MAX_RETRIES": 3}
    job = template()["healing-guard"]
    assert job["stage"] == ".post" and job["when"] == "on_failure"


@pytest.mark.parametrize("attempts, retries", [(1, 1), (3, 1), (4, 0)])
def test_with_a_project_token_the_job_diagnoses_and_retries_within_max_retries(tmp_path: Path, attempts: int,
                                                                                retries: int) -> None:
    with StandIn() as api:
        api.gitlab_tokens = {PROJECT_TOKEN: "api"}
        pipeline(api, attempts)
        env = job_env(api, tmp_path, HEALING_GUARD_TOKEN=PROJECT_TOKEN,
                      HEALING_SLACK_WEBHOOK=f"{api.url}/services/T000/B000/XXXX")
        r = run_job(tmp_path, env)
        assert r.returncode == 0, r.stderr
        text = report(tmp_path)
        assert text in r.stdout  # the report is in the job's log too
        assert "preset progressive, max-retries 3" in text
        latest = 11 if attempts == 1 else 20 + attempts - 2
        assert f"### test (job {latest}, attempt {attempts})" in text
        assert "**cause:** infra_runner_lost" in text
        assert 'line 9: ERROR: Job failed (system failure): pod default/runner-abc123-project-4321-concurrent-0' in text
        listed = api.find("GET", r"/pipelines/55/jobs$")
        assert listed and listed[0].query["include_retried"] == ["true"]
        assert listed[0].headers["private-token"] == PROJECT_TOKEN
        posts = api.find("POST", r"/jobs/\d+/retry$")
        assert len(posts) == retries
        if retries:
            assert posts[0].path == f"/api/v4/projects/your-group%2Fyour-project/jobs/{latest}/retry"
            assert "**action:** retry: the runner was lost" in text
            assert "**cost:** $0.08 estimated for the re-run" in text  # 5 minutes at $0.016 a minute
            assert f"retried job test ({latest}): HTTP 201, new job" in text
        else:
            assert "**action:** escalate: attempt 4 is over the retry limit of 3" in text
            assert "not re-run: job test needs a person" in text
        slack = api.find("POST", r"^/services/")
        assert len(slack) == 1 and "test: infra_runner_lost" in slack[0].json()["text"]
        rec = json.loads((tmp_path / "healing-guard-decision.json").read_text())
        assert (rec["provider"], rec["run_id"], rec["strategy"], rec["max_retries"]) == ("gitlab", "55", "progressive", 3)
        assert PROJECT_TOKEN not in r.stdout + r.stderr and JOB_TOKEN not in r.stdout + r.stderr


def test_with_only_the_job_token_it_says_what_gitlab_does_not_allow(tmp_path: Path) -> None:
    """A private project: the job token may not list the pipeline's jobs, and there is no anonymous access."""
    with StandIn() as api:
        pipeline(api, 1)
        r = run_job(tmp_path, job_env(api, tmp_path, HEALING_SLACK_WEBHOOK=f"{api.url}/services/T000/B000/XXXX"))
        assert r.returncode == 0, r.stderr
        text = report(tmp_path)
        assert "Could not list this pipeline's jobs" in text and "with CI_JOB_TOKEN: HTTP 401" in text
        assert "GitLab lets CI_JOB_TOKEN call only `GET /job` of the Jobs API" in text
        assert "Set HEALING_GUARD_TOKEN" in text
        tried = api.find("GET", r"/pipelines/55/jobs$")
        assert [c.headers.get("job-token") for c in tried] == [JOB_TOKEN, None]  # the job token, then no token
        assert api.find("POST", "") == []  # no retry, no notification about jobs it could not see


def test_a_public_pipeline_is_diagnosed_without_a_token_but_not_retried(tmp_path: Path) -> None:
    with StandIn() as api:
        api.gitlab_public = True
        pipeline(api, 1)
        r = run_job(tmp_path, job_env(api, tmp_path))
        assert r.returncode == 0, r.stderr
        text = report(tmp_path)
        assert "**cause:** infra_runner_lost" in text and "**action:** retry" in text
        assert "not retried: no token that may retry jobs (CI_JOB_TOKEN may not" in text
        assert "the pipeline's jobs were listed with no token" in text
        assert api.find("POST", "") == []


def test_with_a_guard_service_the_job_reports_and_leaves_the_retry_to_it(tmp_path: Path) -> None:
    """HEALING_GUARD_BROKER set: `guard action gitlab` (the template's first command on that path) diagnoses
    and writes the report, and neither retries nor notifies: the service does, from what the job sends it."""
    with StandIn() as api:
        api.gitlab_tokens = {PROJECT_TOKEN: "api"}
        pipeline(api, 1)
        env = job_env(api, tmp_path, HEALING_GITLAB_TOKEN=PROJECT_TOKEN, HEALING_GUARD_BROKER="kafka://guard.internal:9092",
                      HEALING_SLACK_WEBHOOK=f"{api.url}/services/T000/B000/XXXX")
        r = subprocess.run([str(GUARD_BIN / "guard"), "action", "gitlab"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        text = report(tmp_path)
        assert "**cause:** infra_runner_lost" in text and "A guard service receives these jobs" in text
        assert api.find("POST", "") == []  # no retry, no Slack message: the service's executor acts
        script = "\n".join(template()["healing-guard"]["script"])
        assert script.index("guard action gitlab ||") < script.index("guard forward")
