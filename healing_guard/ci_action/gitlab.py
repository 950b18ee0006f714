"""GitLab's REST API v4 as the template's ``.post`` job reads it (retries go through the executor's client).

* ``GET /projects/:id/pipelines/:pipeline_id/jobs?include_retried=true``: the pipeline's jobs, retried ones
  included: a job retried N-1 times (by GitLab's ``retry:``, a person or the guard) appears N times under
  its name, so the latest one is attempt N;
* ``GET /projects/:id/jobs/:job_id/trace``: a job's log.

Which credential may read what (GitLab's "CI/CD job token" page): ``CI_JOB_TOKEN`` may call only
``GET /job`` of the Jobs API. It cannot list a pipeline's jobs (unless the project grants job tokens the
beta fine-grained permission "Jobs: Read", which covers that list but no log), read a log or retry a job.
Public projects with public pipelines serve the list and the logs without a token. So the reads try the
project token (``HEALING_GUARD_TOKEN``, ``read_api`` or ``api`` scope) when there is one, else the job
token, then no token; a retry needs a token with the ``api`` scope.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .decide import FailedJob
from .http import Http, Reply, parse_time, quote_segment


@dataclass(frozen=True)
class Credential:
    label: str  # how the report names it: HEALING_GUARD_TOKEN, CI_JOB_TOKEN, no token
    http: Http
    can_retry: bool  # a personal / project / group access token; never the job token


class ApiError(Exception):
    def __init__(self, what: str, tried: Sequence[tuple[str, Reply]]) -> None:
        self.what = what
        self.tried = list(tried)
        super().__init__(f"{what}: " + "; ".join(f"with {label}: {r.describe()}" for label, r in tried))


class GitLabApi:
    def __init__(self, api_v4: str, project_id: str, credentials: Sequence[Credential]) -> None:
        self.base = f"{api_v4.rstrip('/')}/projects/{urllib.parse.quote(str(project_id), safe='')}"
        self.credentials = list(credentials)

    def pipeline_jobs(self, pipeline_id: str) -> tuple[list[dict[str, Any]], Credential]:
        """The pipeline's jobs (retried ones included) and the credential that could list them."""
        tried: list[tuple[str, Reply]] = []
        for cred in self.credentials:
            jobs: list[dict[str, Any]] = []
            for page in range(1, 51):
                r = cred.http.get(f"{self.base}/pipelines/{quote_segment(pipeline_id)}/jobs?include_retried=true"
                                  f"&per_page=100&page={page}")
                if not r.ok:
                    tried.append((cred.label, r))
                    break
                batch = [j for j in (r.json() or []) if isinstance(j, dict)]
                jobs += batch
                if len(batch) < 100:
                    return jobs, cred
        raise ApiError(f"listing the jobs of pipeline {pipeline_id}", tried)

    def download_trace(self, job_id: str, dest: Path) -> tuple[Reply, str]:
        """The job's log into ``dest``; the last answer and the credential it came with."""
        r = Reply(None, error="no credential")
        label = ""
        for cred in self.credentials:
            r = cred.http.download(f"{self.base}/jobs/{quote_segment(job_id)}/trace", dest)
            label = cred.label
            if r.ok:
                break
        return r, label


def failed_jobs(jobs: Sequence[Mapping[str, Any]], *, own_job_id: str | None = None) -> list[FailedJob]:
    """The latest job of each name that failed and fails the pipeline (``allow_failure`` jobs do not),
    with its attempt (how many jobs of that name the pipeline has); this job itself left out."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for j in jobs:
        by_name.setdefault(str(j.get("name")), []).append(j)
    out: list[FailedJob] = []
    for name, same in by_name.items():
        latest = max(same, key=lambda j: int(j.get("id") or 0))
        if str(latest.get("id")) == str(own_job_id) or latest.get("status") != "failed" or latest.get("allow_failure"):
            continue
        start, end = parse_time(latest.get("started_at")), parse_time(latest.get("finished_at"))
        duration = latest.get("duration")
        minutes = (float(duration) / 60.0 if isinstance(duration, (int, float))
                   else (end - start) / 60.0 if start is not None and end is not None and end >= start else None)
        out.append(FailedJob(
            job_id=str(latest.get("id")), name=name, attempt=len(same),
            conclusion="timed_out" if latest.get("failure_reason") == "job_execution_timeout" else "failure",
            duration_minutes=round(minutes, 3) if minutes is not None else None,
            url=str(latest["web_url"]) if latest.get("web_url") else None))
    return sorted(out, key=lambda f: int(f.job_id) if f.job_id.isdigit() else 0)
