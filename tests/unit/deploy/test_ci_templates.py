"""action.yml and the GitLab CI template: their shape, and their scripts run with stand-ins for gh/curl
and a `guard` that prints what it would send (the real CLI with --dry-run)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

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


def test_action_shape() -> None:
    a = yaml.safe_load((ROOT / "action.yml").read_text())
    inputs = a["inputs"]
    assert inputs["github-token"]["required"] is True and inputs["guard-broker"]["required"] is True
    assert inputs["strategy"]["default"] == "auto" and inputs["max-retries"]["default"] == "2"
    for name in ("slack-webhook-url", "jira-url", "jira-project", "pagerduty-routing-key"):
        assert inputs[name]["required"] is False
    assert a["runs"]["using"] == "composite"


def test_action_script_sends_each_failed_job(tmp_path: Path) -> None:
    a = yaml.safe_load((ROOT / "action.yml").read_text())
    step = next(s for s in a["runs"]["steps"] if s.get("id") == "send")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "sent.jsonl"
    _guard_stub(bin_dir, out)
    # gh: the jobs list (already filtered by --jq, as gh would print it) and each job's log
    _exe(bin_dir / "gh", '#!/bin/sh\ncase "$*" in\n'
         '  *"/attempts/"*) printf "101\\tfailure\\tunit tests\\n202\\ttimed_out\\tlint\\n" ;;\n'
         '  *"/jobs/101/logs"*) printf "npm ERR! code ECONNRESET\\nnpm ERR! network request failed\\n" ;;\n'
         '  *"/jobs/202/logs"*) exit 1 ;;\n'
         'esac\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GH_TOKEN": "t", "GUARD_BROKER": "kafka://127.0.0.1:1",
           "GUARD_TOPIC_PREFIX": "", "HEALING_STRATEGY": "network_backoff", "HEALING_MAX_RETRIES": "1",
           "GITHUB_REPOSITORY": "acme/web", "GITHUB_RUN_ID": "9001", "GITHUB_RUN_ATTEMPT": "1",
           "GITHUB_OUTPUT": str(tmp_path / "output"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run(["bash", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [orjson.loads(x) for x in out.read_text().splitlines()]
    jobs = [x["record"] for x in rows if x["topic"] == "ci.jobs"]
    assert [(j["job_id"], j["conclusion"], j["healing_strategy"], j["max_retries"]) for j in jobs] == [
        ("101", "failure", "network_backoff", 1), ("202", "timed_out", "network_backoff", 1)]
    logs = [x["record"] for x in rows if x["topic"] == "ci.logs" and x["record"]["job_id"] == "101"]
    assert logs[0]["lines"][0] == "npm ERR! code ECONNRESET" and jobs[0]["run_id"] == "9001"
    assert (tmp_path / "output").read_text().strip() == "failed-jobs=2"


def test_gitlab_template_shape() -> None:
    t = yaml.safe_load((ROOT / "ci" / "healing-guard.gitlab-ci.yml").read_text())
    assert t["variables"]["HEALING_STRATEGY"] == "auto" and t["variables"]["HEALING_MAX_RETRIES"] == "2"
    job = t["healing-guard"]
    assert job["stage"] == ".post" and job["when"] == "on_failure"


@pytest.mark.skipif(shutil.which("jq") is None, reason="the template's script needs jq (the job image installs it)")
def test_gitlab_script_sends_each_failed_job(tmp_path: Path) -> None:
    t = yaml.safe_load((ROOT / "ci" / "healing-guard.gitlab-ci.yml").read_text())
    script = t["healing-guard"]["script"][-1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "sent.jsonl"
    _guard_stub(bin_dir, out)
    _exe(bin_dir / "curl", '#!/bin/sh\ncase "$*" in\n'
         '  *"scope[]=failed"*) echo \'[{"id": 7, "name": "build", "retries_count": 1, "failure_reason": "script_failure"}]\' ;;\n'
         '  *"/jobs/7/trace"*) printf "Killed\\nERROR: Job failed: exit code 137\\n" ;;\n'
         'esac\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HEALING_GUARD_BROKER": "kafka://127.0.0.1:1",
           "HEALING_GITLAB_TOKEN": "t", "HEALING_STRATEGY": "auto", "HEALING_MAX_RETRIES": "2",
           "HEALING_TOPIC_PREFIX": "", "CI_API_V4_URL": "https://gitlab.example/api/v4", "CI_PROJECT_ID": "3",
           "CI_PIPELINE_ID": "55", "CI_PROJECT_PATH": "grp/sub/proj", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [orjson.loads(x) for x in out.read_text().splitlines()]
    job = next(x["record"] for x in rows if x["topic"] == "ci.jobs")
    assert (job["owner"], job["repo"], job["job_id"], job["attempt"], job["conclusion"]) == (
        "grp/sub", "proj", "7", 2, "failure")
