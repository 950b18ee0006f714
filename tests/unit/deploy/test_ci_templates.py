"""action.yml and the GitLab CI template: their shape, and their scripts run with stand-ins for gh/curl
and a `guard` that prints what it would send (the real CLI with --dry-run)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from tests.support.paths import ROOT



def _exe(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _guard_stub(bin_dir: Path, out: Path) -> None:
    # the real CLI, but printing the records instead of sending them
    _exe(bin_dir / "guard", f'#!/bin/sh\nexec "{sys.executable}" -m healing_guard.cli "$@" --dry-run >> "{out}"\n')


def _ci_free_env(**extra: str) -> dict[str, str]:
    """This machine's environment without any CI platform's variables (the scripts' own are set by each test)."""
    ci = ("GITHUB_", "RUNNER_", "CI_", "GITLAB_", "CIRCLE", "JENKINS_", "BUILD_", "JOB_", "NODE_", "GIT_", "GUARD_",
          "HEALING_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(ci) and k != "CI"}, **extra}


def _gh_stub(bin_dir: Path, jobs: list[dict[str, Any]], logs: dict[int, str]) -> None:
    """gh: the run attempt's jobs as GitHub's API lists them, through the step's own --jq filter (run by jq, as
    gh runs it with gojq), and each job's log (a job without one in ``logs``: the download fails)."""
    (bin_dir / "jobs.json").write_text(json.dumps({"total_count": len(jobs), "jobs": jobs}))
    for job_id, text in logs.items():
        (bin_dir / f"log-{job_id}.txt").write_text(text)
    _exe(bin_dir / "gh", f'''#!{sys.executable}
import pathlib, subprocess, sys
args = sys.argv[1:]
url = next(a for a in args if a.startswith("repos/"))
here = pathlib.Path({str(bin_dir)!r})
if "/attempts/" in url:
    body = (here / "jobs.json").read_text()
    if "--jq" in args:
        sys.exit(subprocess.run(["jq", "-r", args[args.index("--jq") + 1]], input=body, text=True).returncode)
    sys.stdout.write(body)
    sys.exit(0)
log = here / ("log-" + url.split("/jobs/")[1].split("/")[0] + ".txt")
if not log.exists():
    sys.exit(1)
sys.stdout.write(log.read_text())
''')


#: a run attempt's jobs, in the fields and formats of GitHub's "List jobs for a workflow run attempt"
GH_JOBS = [
    {"id": 101, "run_id": 9001, "run_attempt": 2, "status": "completed", "conclusion": "failure", "name": "unit tests",
     "started_at": "2024-05-06T07:00:00Z", "completed_at": "2024-05-06T07:12:00Z",
     "labels": ["self-hosted", "linux", "large"], "runner_name": "build-07", "head_branch": "feature/x",
     "head_sha": "a" * 40, "workflow_name": "CI"},
    # no start, no runner: the fields after the empty ones stay in their places
    {"id": 202, "run_id": 9001, "run_attempt": 2, "status": "completed", "conclusion": "timed_out", "name": "lint",
     "started_at": None, "completed_at": "2024-05-06T07:40:00Z", "labels": [], "runner_name": None,
     "head_branch": "feature/x", "head_sha": "a" * 40, "workflow_name": "CI"},
    {"id": 303, "run_id": 9001, "run_attempt": 2, "status": "completed", "conclusion": "success", "name": "docs",
     "started_at": "2024-05-06T07:00:00Z", "completed_at": "2024-05-06T07:01:00Z", "labels": ["ubuntu-latest"],
     "runner_name": "GitHub Actions 3", "head_branch": "feature/x", "head_sha": "a" * 40, "workflow_name": "CI"},
]
T0 = 1714978800.0  # 2024-05-06T07:00:00Z

#: the variables of the job the Action's step runs in: none of them describes the jobs it sends
STEP_JOB_ENV = {"GITHUB_ACTIONS": "true", "GITHUB_JOB": "heal", "RUNNER_NAME": "step-runner-small",
                "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64", "GUARD_JOB_STARTED_AT": "2024-05-06T06:00:00Z",
                "GITHUB_WORKFLOW": "CI", "GITHUB_REF_NAME": "feature/x", "GITHUB_SHA": "a" * 40}


def test_action_shape() -> None:
    a = yaml.safe_load((ROOT / "action.yml").read_text())
    inputs = a["inputs"]
    # nothing but the job's own token is needed to report; prepare needs the API instead of the broker
    assert inputs["github-token"]["required"] is False and inputs["github-token"]["default"] == "${{ github.token }}"
    assert inputs["guard-broker"]["required"] is False and inputs["mode"]["default"] == "report"
    assert inputs["strategy"]["default"] == "auto" and inputs["max-retries"]["default"] == "2"
    for name in ("slack-webhook-url", "jira-url", "jira-project", "pagerduty-routing-key"):
        assert inputs[name]["required"] is False
    # the product document's names (the old ones above stay as aliases), and the companion workflow's mode
    for name in ("slack-webhook", "jira-token", "pagerduty-token", "max-wait-seconds"):
        assert inputs[name]["required"] is False
    assert "rerun" in inputs["mode"]["description"] and "progressive" in inputs["strategy"]["description"]
    assert a["runs"]["using"] == "composite"


@pytest.mark.skipif(shutil.which("jq") is None, reason="runs the step's --jq filter with jq")
def test_action_script_sends_each_failed_job(tmp_path: Path) -> None:
    a = yaml.safe_load((ROOT / "action.yml").read_text())
    step = next(s for s in a["runs"]["steps"] if s.get("id") == "send")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "sent.jsonl"
    _guard_stub(bin_dir, out)
    _gh_stub(bin_dir, GH_JOBS, {101: "npm ERR! code ECONNRESET\nnpm ERR! network request failed\n"})
    env = _ci_free_env(PATH=f"{bin_dir}:{os.environ['PATH']}", GH_TOKEN="t", GUARD_BROKER="kafka://127.0.0.1:1",
                       GUARD_TOPIC_PREFIX="", HEALING_STRATEGY="network_backoff", HEALING_MAX_RETRIES="1",
                       GITHUB_REPOSITORY="acme/web", GITHUB_RUN_ID="9001", GITHUB_RUN_ATTEMPT="2",
                       GITHUB_OUTPUT=str(tmp_path / "output"), PYTHONPATH=str(ROOT), RUNNER_TEMP=str(tmp_path),
                       **STEP_JOB_ENV)
    r = subprocess.run(["bash", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [orjson.loads(x) for x in out.read_text().splitlines()]
    jobs = [x["record"] for x in rows if x["topic"] == "ci.jobs"]
    assert [(j["job_id"], j["conclusion"], j["healing_strategy"], j["max_retries"]) for j in jobs] == [
        ("101", "failure", "network_backoff", 1), ("202", "timed_out", "network_backoff", 1)]
    logs = [x["record"] for x in rows if x["topic"] == "ci.logs" and x["record"]["job_id"] == "101"]
    assert logs[0]["lines"][0] == "npm ERR! code ECONNRESET" and jobs[0]["run_id"] == "9001"
    assert (tmp_path / "output").read_text().strip() == "failed-jobs=2"
    # each job as the API lists it: its name, times (so its cost), runner and its size, branch, commit, workflow
    unit, lint = jobs
    assert (unit["job_name"], unit["attempt"], logs[0]["attempt"]) == ("unit tests", 2, 2)
    assert (unit["started_at"], unit["completed_at"]) == (T0, T0 + 12 * 60)
    assert unit["runner_labels"] == ["self-hosted", "linux", "large"] and unit["runner_size"] == "large"
    assert (unit["branch"], unit["head_sha"], unit["workflow"]) == ("feature/x", "a" * 40, "CI")
    # nothing of the step's own job: not its start (GUARD_JOB_STARTED_AT), runner or name
    assert (lint["job_name"], lint["started_at"], lint["completed_at"]) == ("lint", None, T0 + 40 * 60)
    assert (lint["runner_labels"], lint["runner_size"], lint["branch"], lint["workflow"]) == ([], None, "feature/x", "CI")
    assert "no start time for job 202" in r.stderr


@pytest.mark.skipif(shutil.which("jq") is None, reason="runs the step's --jq filter with jq")
def test_action_script_sends_a_preset_to_the_guard_service_as_auto(tmp_path: Path) -> None:
    """A preset is this Action's setting; the guard service's job event takes auto, off or strategy names."""
    a = yaml.safe_load((ROOT / "action.yml").read_text())
    step = next(s for s in a["runs"]["steps"] if s.get("id") == "send")
    assert step["if"] == "inputs.mode == 'report' && inputs.guard-broker != ''"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "sent.jsonl"
    _guard_stub(bin_dir, out)
    _gh_stub(bin_dir, GH_JOBS[:1], {101: "Killed\n"})
    env = _ci_free_env(PATH=f"{bin_dir}:{os.environ['PATH']}", GH_TOKEN="t", GUARD_BROKER="kafka://127.0.0.1:1",
                       GUARD_TOPIC_PREFIX="", HEALING_STRATEGY="Progressive", HEALING_MAX_RETRIES="3",
                       GITHUB_REPOSITORY="acme/web", GITHUB_RUN_ID="9001", GITHUB_RUN_ATTEMPT="1",
                       GITHUB_OUTPUT=str(tmp_path / "output"), PYTHONPATH=str(ROOT), RUNNER_TEMP=str(tmp_path))
    r = subprocess.run(["bash", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "sent to the guard service as auto" in r.stdout
    job = next(orjson.loads(x)["record"] for x in out.read_text().splitlines() if '"ci.jobs"' in x)
    assert (job["healing_strategy"], job["max_retries"]) == ("auto", 3)


def _send_step_env(tmp_path: Path, bin_dir: Path, reports: str) -> dict[str, str]:
    return _ci_free_env(PATH=f"{bin_dir}:{os.environ['PATH']}", GH_TOKEN="t", GUARD_BROKER="kafka://127.0.0.1:1",
                        GUARD_TOPIC_PREFIX="", GUARD_JUNIT_REPORTS=reports, HEALING_STRATEGY="auto",
                        HEALING_MAX_RETRIES="2", GITHUB_REPOSITORY="acme/web", GITHUB_RUN_ID="9001",
                        GITHUB_RUN_ATTEMPT="2", GITHUB_OUTPUT=str(tmp_path / "output"), PYTHONPATH=str(ROOT),
                        RUNNER_TEMP=str(tmp_path), **STEP_JOB_ENV)


@pytest.mark.skipif(shutil.which("jq") is None, reason="runs the step's --jq filter with jq")
def test_action_script_sends_each_failed_jobs_junit_reports(tmp_path: Path) -> None:
    """junit-reports: {job} is each failed job's name; its reports go with it (before its completion), a
    path without {job} is not given to any of several failed jobs, a bad report fails the step at the end."""
    from tests.support.paths import FIXTURES

    a = yaml.safe_load((ROOT / "action.yml").read_text())
    assert a["inputs"]["junit-reports"]["default"] == "" and "{job}" in a["inputs"]["junit-reports"]["description"]
    step = next(s for s in a["runs"]["steps"] if s.get("id") == "send")
    assert step["env"]["GUARD_JUNIT_REPORTS"] == "${{ inputs.junit-reports }}"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "sent.jsonl"
    _guard_stub(bin_dir, out)
    _gh_stub(bin_dir, GH_JOBS, {101: "FAILED\n", 202: "lint failed\n"})
    unit = tmp_path / "reports" / "junit-unit tests" / "sub"
    unit.mkdir(parents=True)
    shutil.copy(FIXTURES / "junit" / "nested.xml", unit / "nested.xml")
    shutil.copy(FIXTURES / "junit" / "pytest.xml", unit.parent / "pytest.xml")
    (tmp_path / "plain").mkdir()
    shutil.copy(FIXTURES / "junit" / "TEST-com.acme.BarTest.xml", tmp_path / "plain" / "bar.xml")
    reports = "reports/junit-{job}/**/*.xml\n  plain/*.xml"
    r = subprocess.run(["bash", "-c", step["run"]], cwd=tmp_path, env=_send_step_env(tmp_path, bin_dir, reports),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [orjson.loads(x) for x in out.read_text().splitlines()]
    per_job = [(x["topic"], x["record"]["job_id"]) for x in rows]
    n = sum(1 for t, j in per_job if t == "ci.tests")
    # job 101: its log, the results of its two reports, its completion; job 202 (no reports): log, completion
    assert per_job == [("ci.logs", "101"), *[("ci.tests", "101")] * n, ("ci.jobs", "101"),
                       ("ci.logs", "202"), ("ci.jobs", "202")]
    tests = [x["record"] for x in rows if x["topic"] == "ci.tests"]
    assert {t["test_id"] for t in tests} >= {"com.acme.a.ATest#one", "com.acme.b.BTest#three"}
    assert not any(t["test_id"].startswith("com.acme.BarTest") for t in tests)  # plain/*.xml: two jobs failed
    assert {(t["attempt"], t["head_sha"]) for t in tests} == {(2, "a" * 40)}  # the job's attempt and commit
    assert "::warning::junit-reports: plain/*.xml names no {job} and 2 jobs failed" in r.stdout
    assert "junit-reports: no report matches reports/junit-lint/**/*.xml (job 202, lint)" in r.stdout

    # one failed job: a path without {job} is its; a report that cannot be read fails the step, after sending
    out.unlink()
    shutil.copy(FIXTURES / "junit" / "malformed.xml", tmp_path / "plain" / "zz-malformed.xml")
    _gh_stub(bin_dir, GH_JOBS[:1], {101: "FAILED\n"})
    r = subprocess.run(["bash", "-c", step["run"]], cwd=tmp_path, env=_send_step_env(tmp_path, bin_dir, "plain/*.xml"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "zz-malformed.xml:4: malformed XML" in r.stderr
    assert "::error::guard forward failed for 1 of 1 job(s)" in r.stdout
    rows = [orjson.loads(x) for x in out.read_text().splitlines()]
    assert [x["topic"] for x in rows] == ["ci.logs", "ci.tests", "ci.tests", "ci.tests", "ci.jobs"]
    assert (tmp_path / "output").read_text().strip().endswith("failed-jobs=1")


def test_gitlab_template_shape() -> None:
    t = yaml.safe_load((ROOT / "ci" / "healing-guard.gitlab-ci.yml").read_text())
    assert t["variables"]["HEALING_STRATEGY"] == "auto" and t["variables"]["HEALING_MAX_RETRIES"] == "2"
    job = t["healing-guard"]
    assert job["stage"] == ".post" and job["when"] == "on_failure"
    # the report and the decision record are kept, whatever the job's status
    assert job["artifacts"]["when"] == "always"
    assert set(job["artifacts"]["paths"]) == {"healing-guard-report.md", "healing-guard-decision.json"}
    assert "guard action gitlab" in job["script"][-1]


#: a pipeline's failed jobs, in the fields and formats of GitLab's "List pipeline jobs"
GL_JOBS = [
    {"id": 7, "name": "build", "stage": "build", "status": "failed", "retries_count": 1,
     "failure_reason": "script_failure", "started_at": "2024-05-06T07:00:00.000Z",
     "finished_at": "2024-05-06T07:09:00.000Z", "duration": 540.0, "ref": "feature/x",
     "commit": {"id": "b" * 40}, "pipeline": {"id": 55, "sha": "b" * 40, "ref": "feature/x"}, "tag_list": ["docker"],
     "runner": {"id": 12, "description": "3-blue.saas-linux-medium-amd64.runners-manager.gitlab.com/default"}},
    # no end yet in the listing (its duration gives it), no runner, no commit object: the pipeline's sha
    {"id": 8, "name": "integration tests", "stage": "test", "status": "failed", "failure_reason": "job_execution_timeout",
     "started_at": "2024-05-06T07:00:00Z", "finished_at": None, "duration": 3600.0, "ref": "feature/x",
     "commit": None, "pipeline": {"id": 55, "sha": "c" * 40}, "tag_list": [], "runner": None},
]


@pytest.mark.skipif(shutil.which("jq") is None, reason="the template's script needs jq (the job image installs it)")
def test_gitlab_script_sends_each_failed_job(tmp_path: Path) -> None:
    t = yaml.safe_load((ROOT / "ci" / "healing-guard.gitlab-ci.yml").read_text())
    script = t["healing-guard"]["script"][-1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "sent.jsonl"
    _guard_stub(bin_dir, out)
    (bin_dir / "jobs.json").write_text(json.dumps(GL_JOBS))
    _exe(bin_dir / "curl", '#!/bin/sh\ncase "$*" in\n'
         f'  *"scope[]=failed"*) cat "{bin_dir / "jobs.json"}" ;;\n'
         '  *"/jobs/7/trace"*) printf "Killed\\nERROR: Job failed: exit code 137\\n" ;;\n'
         '  *) exit 22 ;;\n'
         'esac\n')
    # the .post job's own variables: none of them describes the jobs it sends
    env = _ci_free_env(PATH=f"{bin_dir}:{os.environ['PATH']}", HEALING_GUARD_BROKER="kafka://127.0.0.1:1",
                       HEALING_GITLAB_TOKEN="t", HEALING_STRATEGY="auto", HEALING_MAX_RETRIES="2",
                       HEALING_TOPIC_PREFIX="", CI_API_V4_URL="https://gitlab.example/api/v4", CI_PROJECT_ID="3",
                       CI_PIPELINE_ID="55", CI_PROJECT_PATH="grp/sub/proj", PYTHONPATH=str(ROOT),
                       CI_JOB_ID="99", CI_JOB_NAME="healing-guard", CI_JOB_STAGE=".post",
                       CI_JOB_STARTED_AT="2024-05-06T06:00:00Z", CI_RUNNER_DESCRIPTION="post-runner-xlarge",
                       CI_RUNNER_TAGS="xlarge", CI_COMMIT_REF_NAME="feature/x", CI_COMMIT_SHA="b" * 40)
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [orjson.loads(x) for x in out.read_text().splitlines()]
    build, integration = (x["record"] for x in rows if x["topic"] == "ci.jobs")
    assert (build["owner"], build["repo"], build["job_id"], build["attempt"], build["conclusion"]) == (
        "grp/sub", "proj", "7", 2, "failure")
    # each job as the API lists it: name, stage, times (so its cost), runner and its size, branch, commit
    assert (build["job_name"], build["workflow"], build["run_id"]) == ("build", "build", "55")
    assert (build["started_at"], build["completed_at"]) == (T0, T0 + 9 * 60)
    assert build["runner_labels"] == ["docker"] and build["runner_size"] == "medium"
    assert (build["branch"], build["head_sha"]) == ("feature/x", "b" * 40)
    assert (integration["job_name"], integration["workflow"], integration["conclusion"]) == (
        "integration tests", "test", "timed_out")
    assert integration["started_at"] == T0 and integration["completed_at"] == pytest.approx(T0 + 3600, abs=0.01)
    assert (integration["runner_labels"], integration["runner_size"], integration["head_sha"]) == ([], None, "c" * 40)
    chunks = [x["record"] for x in rows if x["topic"] == "ci.logs" and x["record"]["job_id"] == "7"]
    assert chunks[0]["attempt"] == 2 and chunks[0]["lines"][0] == "Killed"


# --- the first step of a re-run job: the directive (healing_guard/directive_client.py) -----------------

DIRECTIVE = {"command_id": "c-7", "action": "rerun_sequential", "provider": "github", "owner": "acme", "repo": "web",
             "job_id": "7", "attempt": 1, "tests": ["tests/test_db.py::test_pool"], "sequential": True}


def _client(bin_dir: Path) -> None:
    """What `pip install --no-deps` puts in the guard's virtualenv: the standard-library client."""
    _exe(bin_dir / "guard-directive", f'#!/bin/sh\nexec "{sys.executable}" -S -m healing_guard.directive_client "$@"\n')


def test_action_prepare_step_writes_the_directive_to_github_env(tmp_path: Path) -> None:
    a = yaml.safe_load((ROOT / "action.yml").read_text())
    step = next(s for s in a["runs"]["steps"] if s.get("id") == "prepare")
    assert step["if"] == "inputs.mode == 'prepare'"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _client(bin_dir)
    (tmp_path / "healing-guard-path").write_text(str(bin_dir))
    env = {"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path), "GITHUB_ENV": str(tmp_path / "github_env"),
           "GUARD_DIRECTIVE_JSON": orjson.dumps(DIRECTIVE).decode(), "PYTHONPATH": str(ROOT)}
    r = subprocess.run(["bash", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    written = dict(x.split("=", 1) for x in (tmp_path / "github_env").read_text().splitlines())
    assert written["GUARD_SEQUENTIAL"] == "true" and written["PYTEST_ADDOPTS"] == "-p guard_pytest_directive"
    assert Path(written["GUARD_TESTS_FILE"]).read_text() == "tests/test_db.py::test_pool\n"


def _python3_stub(bin_dir: Path) -> None:
    """python3 for the templates: `-m venv DIR` makes DIR/bin/python, whose `-m pip install --no-deps ...`
    installs the client (a stand-in for PyPI)."""
    pip = f'#!/bin/sh\ncase "$*" in *"--no-deps"*) ;; *) exit 1 ;; esac\n' \
          f'printf \'#!/bin/sh\\nexec "{sys.executable}" -S -m healing_guard.directive_client "$@"\\n\' > "$(dirname "$0")/guard-directive"\n' \
          f'chmod +x "$(dirname "$0")/guard-directive"\n'
    _exe(bin_dir / "python3", '#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin"; '
         f'cat > "$3/bin/python" <<\'EOF\'\n{pip}EOF\nchmod +x "$3/bin/python"; exit 0; fi\nexit 1\n')


def test_gitlab_directive_before_script_exports_the_directive(tmp_path: Path) -> None:
    t = yaml.safe_load((ROOT / "ci" / "healing-guard.gitlab-ci.yml").read_text())
    job = t[".healing-guard-directive"]
    assert job["variables"] == {"GUARD_API_URL": "$HEALING_GUARD_API", "GUARD_API_KEY": "$HEALING_GUARD_API_KEY"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _python3_stub(bin_dir)
    venv = tmp_path / "venv"
    script = job["before_script"][0].replace("/tmp/healing-guard-venv", str(venv)).replace("/tmp/healing-guard-bin", str(tmp_path / "gbin"))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HEALING_GUARD_VERSION": "", "PYTHONPATH": str(ROOT),
           "GUARD_DIRECTIVE_JSON": orjson.dumps({**DIRECTIVE, "provider": "gitlab"}).decode()}
    # the job's script runs after before_script in the same shell: it sees the variables
    r = subprocess.run(["bash", "-c", script + '\necho "SEQ=$GUARD_SEQUENTIAL ARGS=$(guard-directive args go)"'],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "SEQ=true ARGS=-p=1 -parallel=1" in r.stdout, r.stdout + r.stderr
    # the guard cannot be installed (PyPI unreachable): the job runs as it is
    _exe(bin_dir / "python3", "#!/bin/sh\nexit 1\n")
    r = subprocess.run(["bash", "-c", script + '\necho "SEQ=${GUARD_SEQUENTIAL:-unset}"'], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "SEQ=unset" in r.stdout and "could not be installed" in r.stdout


def test_circleci_command_writes_the_directive_to_bash_env(tmp_path: Path) -> None:
    t = yaml.safe_load((ROOT / "ci" / "healing-guard.circleci.yml").read_text())
    run = t["commands"]["healing-guard-directive"]["steps"][0]["run"]["command"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _python3_stub(bin_dir)
    script = run.replace("/tmp/healing-guard-venv", str(tmp_path / "venv")).replace("/tmp/healing-guard-bin", str(tmp_path / "gbin"))
    bash_env = tmp_path / "bash_env"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CIRCLECI": "true", "BASH_ENV": str(bash_env), "PYTHONPATH": str(ROOT),
           "GUARD_DIRECTIVE_JSON": orjson.dumps({**DIRECTIVE, "provider": "circleci", "memory_factor": 2}).decode()}
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # a later step (CircleCI sources $BASH_ENV before each one)
    later = subprocess.run(["bash", "-c", f'. "{bash_env}"; echo "MEM=$GUARD_MEMORY_FACTOR NODE=$NODE_OPTIONS"; command -v guard-directive'],
                           env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert "MEM=2 NODE=--max-old-space-size=" in later.stdout and later.stdout.strip().endswith("guard-directive"), later
