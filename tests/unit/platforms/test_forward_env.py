"""guard forward: the completion describes the job from each CI platform's own variables (name, run, attempt,
workflow, branch, commit, runner and its size, start), so the worker prices it without flags; flags win.

Every case runs the real CLI (`guard forward --dry-run`, which prints the records as JSON lines) in a child
process with nothing of this machine's CI environment, only the variables the case sets; the platforms'
APIs that give a start where no variable does (Jenkins, CircleCI) are local servers speaking their format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from healing_guard.engine.core import Engine
from healing_guard.schemas import JobEvent
from healing_guard.settings import Settings
from tests.support.paths import ROOT

T0 = 1714978800.0  # 2024-05-06T07:00:00Z
END = "2024-05-06T07:30:00Z"  # T0 + 30 min


def _base_env() -> dict[str, str]:
    """A child's environment without any CI platform's variables (nor proxies: the servers are local)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}


def forward(env: dict[str, str], *args: str, log: str = "ERROR: Job failed: exit code 1\n",
            argv0: list[str] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """(the ci.jobs record, the ci.logs records, stderr) of `guard forward --conclusion failure --dry-run`."""
    cmd = [sys.executable, "-m", "healing_guard.cli", "forward", "--conclusion", "failure", *args, "--dry-run"]
    r = subprocess.run(argv0 + [" ".join(map(_quote, cmd)) + "; exit $?"] if argv0 else cmd,
                       env={**_base_env(), **env}, input=log, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [orjson.loads(x) for x in r.stdout.splitlines()]
    jobs = [x["record"] for x in rows if x["topic"] == "ci.jobs"]
    assert len(jobs) == 1, r.stdout
    return jobs[0], [x["record"] for x in rows if x["topic"] == "ci.logs"], r.stderr


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def minutes(job: dict[str, Any]) -> float:
    return (job["completed_at"] - job["started_at"]) / 60.0


class _Api:
    """A local HTTP server answering GETs from a path -> JSON table, recording each request's headers."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, dict[str, str]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = api.answers.get(self.path)
                self.send_response(200 if body is not None else 404)
                data = json.dumps(body if body is not None else {"message": "not found"}).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Api:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Settings())


def cost(engine: Engine, job: dict[str, Any]) -> float:
    """What the worker charges for the forwarded job (Engine.job_cost: minutes x the runner size's price)."""
    return engine.job_cost(JobEvent.from_json(orjson.dumps(job)))


# --- per platform ---------------------------------------------------------------------------------

GITLAB = {"GITLAB_CI": "true", "CI_JOB_ID": "5", "CI_JOB_NAME": "unit tests", "CI_JOB_STAGE": "test",
          "CI_PIPELINE_ID": "77", "CI_COMMIT_REF_NAME": "feature/login", "CI_COMMIT_SHA": "a" * 40,
          "CI_JOB_STARTED_AT": "2024-05-06T07:00:00Z",
          "CI_RUNNER_DESCRIPTION": "3-blue.saas-linux-large-amd64.runners-manager.gitlab.com/default",
          "CI_RUNNER_TAGS": '["saas-linux-large-amd64", "docker"]'}


def test_gitlab_job_is_described_by_its_variables(engine: Engine) -> None:
    job, logs, _ = forward(GITLAB, "--provider", "gitlab", "--repo", "grp/sub/proj", "--job-id", "5",
                           "--completed-at", END)
    assert (job["job_name"], job["run_id"], job["workflow"], job["branch"], job["head_sha"], job["attempt"]) == (
        "unit tests", "77", "test", "feature/login", "a" * 40, 1)
    assert job["runner_labels"] == ["saas-linux-large-amd64", "docker"] and job["runner_size"] == "large"
    assert job["started_at"] == T0 and minutes(job) == 30.0
    assert logs[-1]["attempt"] == job["attempt"]
    # 30 minutes on a large runner, at the default price table
    assert cost(engine, job) == round(30 * Settings().price("large"), 4) > 0


def test_github_job_is_described_by_its_variables(tmp_path: Path, engine: Engine) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"sha": "b" * 40}}}))
    env = {"GITHUB_ACTIONS": "true", "GITHUB_JOB": "build", "GITHUB_RUN_ID": "9001", "GITHUB_RUN_ATTEMPT": "3",
           "GITHUB_WORKFLOW": "CI", "GITHUB_REF_NAME": "12/merge", "GITHUB_HEAD_REF": "fix/flaky",
           "GITHUB_SHA": "c" * 40, "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event),
           "RUNNER_NAME": "build-xlarge-07", "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64",
           "RUNNER_ENVIRONMENT": "self-hosted", "GUARD_JOB_STARTED_AT": "1714978800"}
    job, logs, _ = forward(env, "--provider", "github", "--repo", "acme/web", "--job-id", "4242",
                           "--completed-at", END)
    assert (job["job_name"], job["run_id"], job["workflow"], job["attempt"]) == ("build", "9001", "CI", 3)
    # a pull request: its branch, and its head commit as GitHub's API gives it (GITHUB_SHA is the merge)
    assert (job["branch"], job["head_sha"]) == ("fix/flaky", "b" * 40)
    assert job["runner_labels"] == ["self-hosted", "Linux", "X64"] and job["runner_size"] == "xlarge"
    assert job["started_at"] == T0 and {c["attempt"] for c in logs} == {3}
    assert cost(engine, job) == round(30 * Settings().price("xlarge"), 4) > 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the runner's process from Linux /proc")
def test_github_start_is_the_runner_worker_process_start(tmp_path: Path) -> None:
    """GitHub sets no variable with the job's start; the runner starts a Runner.Worker process per job, and
    `guard forward` runs below it. Here a shell named Runner.Worker stands in for it."""
    worker = tmp_path / "Runner.Worker"
    worker.symlink_to("/bin/sh")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_JOB": "build", "GITHUB_RUN_ID": "1"}
    before = time.time()
    job, _, _ = forward(env, "--provider", "github", "--repo", "acme/web", "--job-id", "1",
                        argv0=[str(worker), "-c"])
    # started after `before` (to the kernel's clock tick), and before the job's completion
    assert job["started_at"] is not None and before - 0.5 <= job["started_at"] <= job["completed_at"]
    # without GitHub's GITHUB_ACTIONS nothing is looked up: no start, and a warning that says what to pass
    job, _, err = forward({"GITHUB_JOB": "build"}, "--provider", "github", "--repo", "acme/web", "--job-id", "1",
                          argv0=[str(worker), "-c"])
    assert job["started_at"] is None and "no start time for job 1" in err and "--started-at" in err


def test_jenkins_job_start_comes_from_the_build_api(engine: Engine) -> None:
    """Jenkins has no start-time variable: BUILD_URL's JSON API gives the build's `timestamp` (Unix ms)."""
    path = "/job/core/job/billing/42/api/json?tree=timestamp"
    with _Api({path: {"_class": "hudson.model.FreeStyleBuild", "timestamp": int(T0 * 1000)}}) as api:
        env = {"JENKINS_URL": api.url + "/", "BUILD_URL": f"{api.url}/job/core/job/billing/42/",
               "JOB_NAME": "core/billing", "JOB_BASE_NAME": "billing", "BUILD_NUMBER": "42", "BUILD_ID": "42",
               "GIT_BRANCH": "origin/release/2.1", "GIT_COMMIT": "d" * 40, "NODE_NAME": "agent-3",
               "NODE_LABELS": "linux docker large agent-3", "GUARD_JENKINS_URL": api.url,
               "GUARD_JENKINS_USER": "guard", "GUARD_JENKINS_TOKEN": "jenkins-api-token"}
        job, _, _ = forward(env, "--provider", "jenkins", "--repo", "core/billing", "--job-id", "42",
                            "--completed-at", END)
        assert api.requests[0][0] == path and api.requests[0][1]["authorization"].startswith("Basic ")
        # the guard's Jenkins credentials go to its Jenkins only (GUARD_JENKINS_URL), never to another host
        forward({**env, "GUARD_JENKINS_URL": "https://jenkins.example.internal"}, "--provider", "jenkins", "--repo",
                "core/billing", "--job-id", "42")
        assert api.requests[1][0] == path and "authorization" not in api.requests[1][1]
    assert (job["job_name"], job["run_id"], job["workflow"], job["branch"], job["head_sha"]) == (
        "billing", "42", "core/billing", "release/2.1", "d" * 40)
    assert job["runner_labels"] == ["linux", "docker", "large", "agent-3"] and job["runner_size"] == "large"
    assert job["started_at"] == T0 and cost(engine, job) == round(30 * Settings().price("large"), 4)


def test_jenkins_unreachable_api_is_a_warning_not_a_failure() -> None:
    with _Api({}) as api:
        url = api.url
    env = {"BUILD_URL": f"{url}/job/x/7/", "JOB_NAME": "x", "BUILD_NUMBER": "7"}
    job, _, err = forward(env, "--provider", "jenkins", "--repo", "core/x", "--job-id", "7")
    assert job["job_name"] == "x" and job["started_at"] is None
    assert "BUILD_URL" in err and "currentBuild.startTimeInMillis" in err


def test_circleci_job_start_and_resource_class_come_from_its_api(engine: Engine) -> None:
    path = "/api/v1.1/project/github/acme/cli/815"
    build = {"build_num": 815, "start_time": "2024-05-06T07:00:00.000Z",
             "picard": {"resource_class": {"cpu": 4.0, "ram": 8192, "class": "medium+"}, "executor": "docker"},
             "workflows": {"job_name": "test", "workflow_name": "build-and-test"}}
    with _Api({path: build}) as api:
        env = {"CIRCLECI": "true", "CIRCLE_JOB": "test", "CIRCLE_BUILD_NUM": "815",
               "CIRCLE_BUILD_URL": "https://circleci.com/gh/acme/cli/815", "CIRCLE_WORKFLOW_ID": "wf-1",
               "CIRCLE_BRANCH": "main", "CIRCLE_SHA1": "e" * 40, "CIRCLE_NODE_INDEX": "1", "CIRCLE_NODE_TOTAL": "2",
               "GUARD_CIRCLECI_TOKEN": "cc-token", "GUARD_CIRCLECI_URL": api.url}
        job, _, err = forward(env, "--provider", "circleci", "--repo", "acme/cli", "--job-id", "815",
                              "--completed-at", END)
        assert api.requests[0][0] == path and api.requests[0][1]["circle-token"] == "cc-token"
    assert (job["job_name"], job["run_id"], job["workflow"], job["branch"], job["head_sha"]) == (
        "test", "wf-1", "build-and-test", "main", "e" * 40)
    assert job["runner_labels"] == ["medium+"] and job["runner_size"] == "medium"
    assert job["started_at"] == T0 and cost(engine, job) == round(30 * Settings().price("medium"), 4)
    assert "CIRCLE_NODE_INDEX 1 of CIRCLE_NODE_TOTAL 2" in err  # parallel nodes share the job id
    # without the guard's token: the environment's fields, no start
    env.pop("GUARD_CIRCLECI_TOKEN")
    job, _, err = forward(env, "--provider", "circleci", "--repo", "acme/cli", "--job-id", "815")
    assert (job["job_name"], job["branch"], job["started_at"], job["runner_size"]) == ("test", "main", None, None)
    assert "GUARD_CIRCLECI_TOKEN" in err


# --- flags, names, bad input ----------------------------------------------------------------------

def test_flags_win_over_the_environment(engine: Engine) -> None:
    job, logs, _ = forward(GITLAB, "--provider", "gitlab", "--repo", "grp/proj", "--job-id", "5",
                           "--job-name", "lint", "--run-id", "78", "--attempt", "2", "--workflow", "checks",
                           "--branch", "main", "--commit", "f" * 40, "--runner", "my-runner",
                           "--runner-labels", "docker,small", "--started-at", "2024-05-06T07:20:00Z",
                           "--completed-at", END)
    assert (job["job_name"], job["run_id"], job["attempt"], job["workflow"], job["branch"], job["head_sha"]) == (
        "lint", "78", 2, "checks", "main", "f" * 40)
    assert job["runner_labels"] == ["docker", "small"] and job["runner_size"] == "small"
    assert job["started_at"] == T0 + 20 * 60 and minutes(job) == 10.0 and logs[0]["attempt"] == 2
    # an explicit size wins over the labels; a duration alone ends the job now
    job, _, _ = forward(GITLAB, "--provider", "gitlab", "--repo", "grp/proj", "--job-id", "5",
                        "--runner-size", "xlarge", "--duration-minutes", "12.5")
    assert job["runner_size"] == "xlarge" and minutes(job) == pytest.approx(12.5)
    assert cost(engine, job) == round(12.5 * Settings().price("xlarge"), 4)
    # a start and a duration, without the end (a job whose end the API did not give)
    job, _, _ = forward(GITLAB, "--provider", "gitlab", "--repo", "grp/proj", "--job-id", "5",
                        "--started-at", "1714978800000", "--duration-minutes", "4")
    assert job["started_at"] == T0 and job["completed_at"] == T0 + 240


def test_jobs_without_a_name_get_distinct_names() -> None:
    a, _, _ = forward({}, "--provider", "github", "--repo", "acme/web", "--job-id", "101")
    b, _, _ = forward({}, "--provider", "github", "--repo", "acme/web", "--job-id", "202")
    assert (a["job_name"], b["job_name"]) == ("job-101", "job-202")
    # an empty --job-name (a script's unset field) is no name either
    c, _, _ = forward({}, "--provider", "jenkins", "--repo", "core/x", "--job-id", "7", "--job-name", "")
    assert c["job_name"] == "job-7"


def test_another_job_of_the_pipeline_takes_only_the_pipelines_variables() -> None:
    """The GitLab template's .post job sends other jobs: their name, stage, runner and start are not its own."""
    job, _, err = forward(GITLAB, "--provider", "gitlab", "--repo", "grp/proj", "--job-id", "6")
    assert (job["run_id"], job["branch"], job["head_sha"]) == ("77", "feature/login", "a" * 40)
    assert (job["job_name"], job["workflow"], job["runner_labels"], job["started_at"]) == ("job-6", None, [], None)
    assert "CI_JOB_ID 5 is not --job-id 6" in err
    # --from-env job reads them all the same; off reads none
    job, _, _ = forward(GITLAB, "--provider", "gitlab", "--repo", "grp/proj", "--job-id", "6", "--from-env", "job")
    assert job["job_name"] == "unit tests" and job["started_at"] == T0
    job, _, _ = forward(GITLAB, "--provider", "gitlab", "--repo", "grp/proj", "--job-id", "5", "--from-env", "off")
    assert (job["job_name"], job["run_id"], job["branch"], job["started_at"]) == ("job-5", None, None, None)


@pytest.mark.parametrize(("env", "args", "named"), [
    ({**GITLAB, "CI_JOB_STARTED_AT": "yesterday"}, (), "CI_JOB_STARTED_AT"),
    ({**GITLAB, "CI_JOB_STARTED_AT": "0"}, (), "CI_JOB_STARTED_AT"),
    ({**GITLAB, "CI_JOB_STARTED_AT": "2024-05-06T08:00:00Z"}, ("--completed-at", END), "CI_JOB_STARTED_AT"),
    (GITLAB, ("--duration-minutes", "-5"), "--duration-minutes"),
    (GITLAB, ("--duration-minutes", "soon"), "--duration-minutes"),
    (GITLAB, ("--started-at", "2024-13-45T99:00:00Z"), "--started-at"),
])
def test_bad_input_is_ignored_with_a_warning_naming_it(env: dict[str, str], args: tuple[str, ...],
                                                       named: str) -> None:
    job, _, err = forward({k: v for k, v in env.items() if k != "CI_JOB_STARTED_AT" or named == "CI_JOB_STARTED_AT"},
                          "--provider", "gitlab", "--repo", "grp/proj", "--job-id", "5", *args)
    assert job["job_name"] == "unit tests" and job["started_at"] is None  # the job is sent, without a start
    assert f"warning: {named}" in err, err


def test_a_bad_attempt_variable_is_ignored_with_a_warning() -> None:
    job, logs, err = forward({"GITHUB_RUN_ATTEMPT": "first", "GITHUB_JOB": "build"}, "--provider", "github",
                             "--repo", "acme/web", "--job-id", "1")
    assert job["attempt"] == 1 and logs[0]["attempt"] == 1 and "warning: GITHUB_RUN_ATTEMPT" in err


def test_unknown_from_env_scope_is_refused() -> None:
    r = subprocess.run([sys.executable, "-m", "healing_guard.cli", "forward", "--provider", "gitlab", "--repo",
                        "g/p", "--job-id", "1", "--from-env", "everything", "--dry-run"], env=_base_env(),
                       input="", capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--from-env" in r.stderr


def test_runner_size_matches_words_not_substrings() -> None:
    from healing_guard.platforms.forward import runner_size

    sizes = ("small", "medium", "large", "xlarge")
    assert runner_size(["ubuntu-latest"], "GitHub Actions 3", sizes) is None
    assert runner_size(["linux"], "saas-linux-xlarge-amd64", sizes) == "xlarge"
    assert runner_size(["saas-linux-2xlarge-amd64"], None, sizes) is None  # not priced: the default size
    assert runner_size(["Large"], "small-box", sizes) == "large"  # a label that is a size comes first
    assert runner_size(["arm.medium"], None, (*sizes, "2xlarge")) == "medium"
    assert runner_size(["2xlarge"], None, (*sizes, "2xlarge")) == "2xlarge"

