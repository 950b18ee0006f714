"""Local stand-ins for GitHub's and GitLab's REST APIs (and Slack, Jira, PagerDuty) as the in-pipeline guard
calls them, answering in each platform's documented format, on 127.0.0.1 (a free port, stopped at the end).

GitHub (docs.github.com/rest/actions):
- ``GET /repos/{o}/{r}/actions/runs/{run}/attempts/{n}/jobs``: ``{"total_count", "jobs": [...]}`` (a job has
  ``id, run_id, run_attempt, name, status, conclusion, started_at, completed_at, html_url, runner_name, steps``);
- ``GET /repos/{o}/{r}/actions/jobs/{id}/logs``: ``302 Found`` with ``Location`` on the blob store
  (``/_blob/...`` here), which serves the text once the job has completed and answers a job still in
  progress ``404`` with the storage service's ``BlobNotFound`` XML (what GitHub's download gives then);
- ``GET /repos/{o}/{r}/actions/runs/{run}/artifacts`` and ``GET .../actions/artifacts/{id}/zip`` (302 to the
  archive);
- ``POST /repos/{o}/{r}/actions/runs/{run}/rerun-failed-jobs``: ``201 Created`` (empty body) for a completed
  run; ``403 {"message": "This workflow is already running"}`` while the run is in progress.

GitLab (docs.gitlab.com/api/jobs): ``GET /api/v4/projects/:id/pipelines/:pid/jobs`` (an array; retried jobs
with ``include_retried=true``), ``GET /api/v4/projects/:id/jobs/:job_id/trace`` (text),
``POST /api/v4/projects/:path/jobs/:job_id/retry`` (``201`` with the new job). ``CI_JOB_TOKEN`` (the
``JOB-TOKEN`` header) is refused on all three (``401 Unauthorized``), as GitLab lets a job token call only
``GET /job`` of the Jobs API; a ``read_api`` token gets ``403 insufficient_scope`` on the retry.

Slack ``POST /services/...`` answers ``200 ok``; Jira ``POST /rest/api/3/issue`` ``201``; PagerDuty
``POST /v2/enqueue`` ``202``.
"""

from __future__ import annotations

import io
import json
import re
import threading
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BLOB_NOT_FOUND = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code>'
                  b"<Message>The specified blob does not exist.</Message></Error>")


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class GitHubJob:
    id: int
    name: str
    status: str = "completed"  # queued, in_progress, completed
    conclusion: str | None = "failure"
    log: str = ""
    failed_step: str = "Run Tests"
    runner_name: str = "GitHub Actions 2"
    minutes: float = 5.0

    def to_json(self, run_id: int, attempt: int, base: str) -> dict[str, Any]:
        done = self.status == "completed"
        steps = [{"name": "Set up job", "status": "completed", "conclusion": "success", "number": 1},
                 {"name": "Run actions/checkout@v3", "status": "completed", "conclusion": "success", "number": 2},
                 {"name": self.failed_step, "status": "completed",
                  "conclusion": "failure" if self.conclusion != "success" else "success", "number": 3},
                 {"name": "Self-Healing Guard", "status": "completed" if done else "in_progress",
                  "conclusion": "success" if done else None, "number": 4}]
        end_min = int(self.minutes)
        end_sec = int(round((self.minutes - end_min) * 60))
        return {"id": self.id, "run_id": run_id, "run_attempt": attempt, "name": self.name, "node_id": "CR_x",
                "head_sha": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d", "url": f"{base}/actions/jobs/{self.id}",
                "html_url": f"https://github.com/your-org/your-repo/actions/runs/{run_id}/job/{self.id}",
                "status": self.status, "conclusion": self.conclusion if done else None,
                "created_at": "2024-05-14T09:10:00Z", "started_at": "2024-05-14T09:10:00Z",
                "completed_at": f"2024-05-14T09:{10 + end_min:02d}:{end_sec:02d}Z" if done else None,
                "workflow_name": "CI with Self-Healing", "steps": steps, "labels": ["ubuntu-latest"],
                "runner_id": 7, "runner_name": self.runner_name, "runner_group_id": 2,
                "runner_group_name": "GitHub Actions", "check_run_url": f"{base}/check-runs/{self.id}"}


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, obj: Any) -> Answer:
    return Answer(status, json.dumps(obj).encode(), {"Content-Type": "application/json; charset=utf-8"})


class StandIn:
    """``with StandIn() as s:`` -> ``s.url``; GitHub state in ``s.github_*``, GitLab state in ``s.gitlab_*``."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        # GitHub: run id -> attempt -> jobs; the run in progress or completed; artifacts
        self.github_repo = "your-org/your-repo"
        self.github_runs: dict[int, dict[int, list[GitHubJob]]] = {}
        self.github_run_in_progress: dict[int, bool] = {}
        self.github_artifacts: dict[int, list[tuple[int, str, bytes]]] = {}  # run -> (id, name, zip bytes)
        # GitLab: pipeline jobs (the API's objects), traces, which credentials are accepted
        self.gitlab_project_id = "4321"
        self.gitlab_project_path = "your-group/your-project"
        self.gitlab_jobs: list[dict[str, Any]] = []
        self.gitlab_traces: dict[int, str] = {}
        self.gitlab_tokens: dict[str, str] = {}  # PRIVATE-TOKEN value -> scope (read_api or api)
        self.gitlab_public = False  # public pipelines: jobs and traces readable without a token
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                parts = urllib.parse.urlsplit(self.path)
                call = Call(self.command, parts.path, urllib.parse.parse_qs(parts.query),
                            {k.lower(): v for k, v in self.headers.items()}, body)
                with outer._lock:
                    outer.calls.append(call)
                    ans = outer._answer(call)
                self.send_response(ans.status)
                for k, v in ans.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(ans.body)))
                self.end_headers()
                self.wfile.write(ans.body)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what the tests look at ----------------------------------------------------------------------
    def paths(self, method: str | None = None, pattern: str = "") -> list[str]:
        return [c.path for c in self.calls if (method is None or c.method == method) and re.search(pattern, c.path)]

    def find(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.search(pattern, c.path)]

    # --- GitHub setup --------------------------------------------------------------------------------
    def github_run(self, run_id: int, attempt: int, jobs: list[GitHubJob], *, in_progress: bool) -> None:
        self.github_runs.setdefault(run_id, {})[attempt] = jobs
        self.github_run_in_progress[run_id] = in_progress

    def github_artifact(self, run_id: int, artifact_id: int, name: str, files: dict[str, str]) -> None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for fname, text in files.items():
                z.writestr(fname, text)
        self.github_artifacts.setdefault(run_id, []).append((artifact_id, name, buf.getvalue()))

    # --- answers --------------------------------------------------------------------------------------
    def _answer(self, c: Call) -> Answer:
        repo = "/repos/" + self.github_repo
        if c.path.startswith(repo + "/"):
            return self._github(c, c.path[len(repo):])
        if c.path.startswith("/_blob/"):
            return self._blob(c)
        if c.path.startswith("/api/v4/"):
            return self._gitlab(c, c.path[len("/api/v4"):])
        if c.method == "POST" and c.path.startswith("/services/"):
            return Answer(200, b"ok", {"Content-Type": "text/html"})
        if c.method == "POST" and c.path == "/rest/api/3/issue":
            return _json(201, {"id": "10000", "key": "CI-24", "self": f"{self.url}/rest/api/3/issue/10000"})
        if c.method == "POST" and c.path == "/v2/enqueue":
            return _json(202, {"status": "success", "message": "Event processed",
                               "dedup_key": (c.json() or {}).get("dedup_key")})
        return _json(404, {"message": "Not Found"})

    def _github(self, c: Call, rest: str) -> Answer:
        if c.headers.get("authorization", "") == "":
            return _json(401, {"message": "Requires authentication"})
        m = re.fullmatch(r"/actions/runs/(\d+)/attempts/(\d+)/jobs", rest)
        if c.method == "GET" and m:
            run_id, attempt = int(m.group(1)), int(m.group(2))
            jobs = self.github_runs.get(run_id, {}).get(attempt)
            if jobs is None:
                return _json(404, {"message": "Not Found"})
            page = int(c.query.get("page", ["1"])[0])
            per = int(c.query.get("per_page", ["30"])[0])
            listed = [j.to_json(run_id, attempt, self.url + "/repos/" + self.github_repo) for j in jobs]
            return _json(200, {"total_count": len(listed), "jobs": listed[(page - 1) * per: page * per]})
        m = re.fullmatch(r"/actions/jobs/(\d+)/logs", rest)
        if c.method == "GET" and m:
            if self._github_job(int(m.group(1))) is None:
                return _json(404, {"message": "Not Found"})
            return Answer(302, b"", {"Location": f"{self.url}/_blob/jobs/{m.group(1)}.txt?sv=2021&sig=abc"})
        m = re.fullmatch(r"/actions/runs/(\d+)/artifacts", rest)
        if c.method == "GET" and m:
            arts = [{"id": aid, "node_id": "MDg6", "name": name, "size_in_bytes": len(data),
                     "url": f"{self.url}/repos/{self.github_repo}/actions/artifacts/{aid}",
                     "archive_download_url": f"{self.url}/repos/{self.github_repo}/actions/artifacts/{aid}/zip",
                     "expired": False, "created_at": "2024-05-14T09:16:00Z", "expires_at": "2024-05-21T09:16:00Z",
                     "workflow_run": {"id": int(m.group(1))}}
                    for aid, name, data in self.github_artifacts.get(int(m.group(1)), [])]
            return _json(200, {"total_count": len(arts), "artifacts": arts})
        m = re.fullmatch(r"/actions/artifacts/(\d+)/zip", rest)
        if c.method == "GET" and m:
            return Answer(302, b"", {"Location": f"{self.url}/_blob/artifacts/{m.group(1)}.zip?sig=def"})
        m = re.fullmatch(r"/actions/runs/(\d+)/rerun-failed-jobs", rest)
        if c.method == "POST" and m:
            run_id = int(m.group(1))
            if run_id not in self.github_runs:
                return _json(404, {"message": "Not Found"})
            if self.github_run_in_progress.get(run_id):
                return _json(403, {"message": "This workflow is already running",
                                   "documentation_url": "https://docs.github.com/rest/actions/workflow-runs"
                                                        "#re-run-failed-jobs-from-a-workflow-run",
                                   "status": "403"})
            self.github_run_in_progress[run_id] = True
            return Answer(201)
        return _json(404, {"message": "Not Found"})

    def _github_job(self, job_id: int) -> GitHubJob | None:
        for attempts in self.github_runs.values():
            for jobs in attempts.values():
                for j in jobs:
                    if j.id == job_id:
                        return j
        return None

    def _blob(self, c: Call) -> Answer:
        m = re.fullmatch(r"/_blob/jobs/(\d+)\.txt", c.path)
        if m:
            j = self._github_job(int(m.group(1)))
            if j is None or j.status != "completed":
                return Answer(404, BLOB_NOT_FOUND, {"Content-Type": "application/xml"})
            return Answer(200, j.log.encode(), {"Content-Type": "text/plain"})
        m = re.fullmatch(r"/_blob/artifacts/(\d+)\.zip", c.path)
        if m:
            for arts in self.github_artifacts.values():
                for aid, _, data in arts:
                    if aid == int(m.group(1)):
                        return Answer(200, data, {"Content-Type": "application/zip"})
        return Answer(404, BLOB_NOT_FOUND, {"Content-Type": "application/xml"})

    def _gitlab_reader(self, c: Call) -> str | None:
        """Who reads: a project token's scope, 'public' (no token, public pipelines), or None (refused)."""
        token = c.headers.get("private-token")
        if token is not None:
            return self.gitlab_tokens.get(token)
        if "job-token" in c.headers:
            return None  # the job token may call only GET /job of the Jobs API
        return "public" if self.gitlab_public else None

    def _gitlab(self, c: Call, rest: str) -> Answer:
        project = re.escape(self.gitlab_project_id)
        path_enc = re.escape(urllib.parse.quote(self.gitlab_project_path, safe=""))
        who = self._gitlab_reader(c)
        m = re.fullmatch(rf"/projects/{project}/pipelines/(\d+)/jobs", rest)
        if c.method == "GET" and m:
            if who is None:
                return _json(401, {"message": "401 Unauthorized"})
            include = c.query.get("include_retried", ["false"])[0] == "true"
            jobs = [j for j in self.gitlab_jobs if include or not j.get("_retried")]
            page = int(c.query.get("page", ["1"])[0])
            per = int(c.query.get("per_page", ["20"])[0])
            shown = [{k: v for k, v in j.items() if not k.startswith("_")}
                     for j in sorted(jobs, key=lambda j: -j["id"])][(page - 1) * per: page * per]
            return _json(200, shown)
        m = re.fullmatch(rf"/projects/{project}/jobs/(\d+)/trace", rest)
        if c.method == "GET" and m:
            if who is None:
                return _json(401, {"message": "401 Unauthorized"})
            text = self.gitlab_traces.get(int(m.group(1)))
            if text is None:
                return _json(404, {"message": "404 Not Found"})
            return Answer(200, text.encode(), {"Content-Type": "text/plain"})
        m = re.fullmatch(rf"/projects/(?:{project}|{path_enc})/jobs/(\d+)/retry", rest)
        if c.method == "POST" and m:
            if who is None or who == "public":
                return _json(401, {"message": "401 Unauthorized"})
            if who != "api":
                return _json(403, {"error": "insufficient_scope",
                                   "error_description": "The request requires higher privileges than provided by "
                                                        "the access token.", "scope": "api"})
            old = next((j for j in self.gitlab_jobs if j["id"] == int(m.group(1))), None)
            if old is None:
                return _json(404, {"message": "404 Not Found"})
            if old.get("_retried"):
                return _json(403, {"message": "403 Forbidden - Job is not retryable"})
            old["_retried"] = True
            new = {**{k: v for k, v in old.items() if not k.startswith("_")},
                   "id": max(j["id"] for j in self.gitlab_jobs) + 1, "status": "pending", "started_at": None,
                   "finished_at": None, "duration": None, "failure_reason": None}
            self.gitlab_jobs.append(new)
            return _json(201, new)
        return _json(404, {"message": "404 Not Found"})


def gitlab_job(job_id: int, name: str, *, status: str = "failed", stage: str = "test", retried: bool = False,
               failure_reason: str | None = "script_failure", pipeline_id: int = 55, minutes: float = 5.0,
               allow_failure: bool = False) -> dict[str, Any]:
    """A job as GitLab's Jobs API lists it (the fields the docs' example shows)."""
    return {"id": job_id, "name": name, "stage": stage, "status": status, "ref": "main", "tag": False,
            "allow_failure": allow_failure, "coverage": None, "created_at": "2024-05-14T09:10:00.000Z",
            "started_at": "2024-05-14T09:10:00.000Z", "finished_at": "2024-05-14T09:15:00.000Z",
            "duration": minutes * 60.0, "queued_duration": 0.01, "failure_reason": failure_reason,
            "web_url": f"https://gitlab.example.com/your-group/your-project/-/jobs/{job_id}",
            "pipeline": {"id": pipeline_id, "project_id": 4321, "ref": "main", "status": "running"},
            "artifacts": [], "runner": None, "tag_list": [], "user": {"id": 1, "username": "dev"},
            "_retried": retried}
