"""GitHub Actions' REST API as the in-pipeline guard reads it (re-runs go through the executor's client).

* ``GET /repos/{o}/{r}/actions/runs/{run_id}/attempts/{n}/jobs``: the attempt's jobs, 100 a page;
* ``GET /repos/{o}/{r}/actions/jobs/{job_id}/logs``: ``302 Found`` to a short-lived download URL. GitHub
  serves a job's log once the job has finished: for a job still in progress the download answers 404
  (the step that runs inside the failing job cannot read that job's own log);
* ``GET /repos/{o}/{r}/actions/runs/{run_id}/artifacts`` and ``GET .../actions/artifacts/{id}/zip``
  (``302`` to the archive): the decision records of the in-job step, for the companion workflow.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .decide import FailedJob
from .http import Http, Reply, parse_time, quote_segment

FAILED = ("failure", "timed_out")
ARTIFACT_PREFIX = "healing-guard"


class ApiError(Exception):
    def __init__(self, what: str, reply: Reply) -> None:
        self.what = what
        self.reply = reply
        super().__init__(f"{what}: {reply.describe()}")


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28"}


def artifact_prefix(run_id: str, attempt: int) -> str:
    return f"{ARTIFACT_PREFIX}-{run_id}-{attempt}-"


class GitHubApi:
    def __init__(self, http: Http, api_url: str, repo: str) -> None:
        self.http = http
        self.base = f"{api_url.rstrip('/')}/repos/{'/'.join(urllib.parse.quote(p, safe='') for p in repo.split('/'))}"

    def attempt_jobs(self, run_id: str, attempt: int) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = []
        for page in range(1, 51):
            r = self.http.get(f"{self.base}/actions/runs/{quote_segment(run_id)}/attempts/{attempt}/jobs?per_page=100&page={page}")
            if not r.ok:
                raise ApiError(f"listing the jobs of run {run_id} attempt {attempt}", r)
            body = r.json() or {}
            batch = [j for j in body.get("jobs") or [] if isinstance(j, dict)]
            jobs += batch
            if len(batch) < 100 or len(jobs) >= int(body.get("total_count") or 0):
                break
        return jobs

    def download_log(self, job_id: str, dest: Path) -> Reply:
        return self.http.download(f"{self.base}/actions/jobs/{quote_segment(job_id)}/logs", dest)

    def run_artifacts(self, run_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in range(1, 11):
            r = self.http.get(f"{self.base}/actions/runs/{quote_segment(run_id)}/artifacts?per_page=100&page={page}")
            if not r.ok:
                raise ApiError(f"listing the artifacts of run {run_id}", r)
            batch = [a for a in (r.json() or {}).get("artifacts") or [] if isinstance(a, dict)]
            found += batch
            if len(batch) < 100:
                break
        return found

    def download_artifact(self, artifact_id: str, dest: Path) -> Reply:
        return self.http.download(f"{self.base}/actions/artifacts/{quote_segment(artifact_id)}/zip", dest)


def failed_jobs(jobs: Sequence[Mapping[str, Any]], attempt: int, *, runner_name: str | None = None) -> list[FailedJob]:
    """The attempt's failed jobs: completed with ``failure`` / ``timed_out``, and jobs still in progress one
    of whose steps failed (the job a ``if: failure()`` step runs in; ``runner_name`` tells which is ours)."""
    out: list[FailedJob] = []
    for j in jobs:
        steps = [s for s in j.get("steps") or [] if isinstance(s, Mapping)]
        failed_steps = tuple(str(s.get("name") or s.get("number")) for s in steps if s.get("conclusion") in FAILED)
        done = j.get("status") == "completed"
        if done and j.get("conclusion") not in FAILED:
            continue
        if not done and not failed_steps:
            continue
        start, end = parse_time(j.get("started_at")), parse_time(j.get("completed_at"))
        out.append(FailedJob(
            job_id=str(j.get("id")), name=str(j.get("name") or j.get("id")), attempt=int(j.get("run_attempt") or attempt),
            conclusion=str(j.get("conclusion") or "failure") if done else "failure", running=not done,
            this_job=bool(runner_name) and not done and j.get("runner_name") == runner_name,
            failed_steps=failed_steps,
            duration_minutes=round((end - start) / 60.0, 3) if start is not None and end is not None and end >= start
            else None,
            url=str(j["html_url"]) if j.get("html_url") else None))
    return out
