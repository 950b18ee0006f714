"""A local HTTP server that speaks the documented success answers of the executor's APIs.

It records every request; tests can queue scripted answers (status, headers, body) per path to
simulate rate limits and errors. An answer can stall (``delay``: the server holds it, for read timeouts)
and say whether the platform carried the call out (``executes``; default: a 2xx does). ``executed`` counts
per path the calls the platform carried out. ``FakeApis(stateful=True)`` also refuses repeats the way the
platforms do: a GitHub re-run of a run/job already re-run answers ``403 This workflow is already running``,
a GitLab retry of a retried job ``403 Forbidden - Job is not retryable``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import threading
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Req:
    method: str
    path: str
    headers: Any  # http.client.HTTPMessage: case-insensitive lookup
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds the server holds the answer (after carrying the call out, if it does)
    executes: bool | None = None  # whether the platform carried the call out (None: when 2xx)


def _json(status: int, obj: Any, **headers: str) -> Answer:
    return Answer(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **headers})


def default_answer(method: str, path: str) -> Answer:
    """The documented success answer of each endpoint."""
    if method == "GET" and re.fullmatch(r"/repos/[^/]+/[^/]+/actions/caches", path):
        # GitHub's list of a ref's caches (two, and the page is not full)
        return _json(200, {"total_count": 2, "actions_caches": [
            {"id": 505, "ref": "refs/heads/main", "key": "npm-abc", "size_in_bytes": 1024},
            {"id": 506, "ref": "refs/heads/main", "key": "pip-def", "size_in_bytes": 2048}]})
    if method == "DELETE" and re.fullmatch(r"/repos/[^/]+/[^/]+/actions/caches/\d+", path):
        return Answer(204)
    m = re.fullmatch(r"/api/v4/projects/([^/]+)", path)
    if method == "GET" and m:
        return _json(200, {"id": 4321, "path_with_namespace": urllib.parse.unquote(m.group(1))})
    m = re.fullmatch(r"/api/v2/workflow/([^/]+)", path)
    if method == "GET" and m:  # CircleCI's workflow (the fields the executor reads, and a few more)
        return _json(200, {"id": m.group(1), "name": "build", "status": "failed", "project_slug": "gh/acme/shop",
                           "pipeline_id": "a8b8c8d8-0000-4000-8000-000000000001", "pipeline_number": 77})
    if method == "POST" and re.fullmatch(r"/api/v2/project/[^/]+/[^/]+/[^/]+/envvar", path):
        return _json(201, {"name": "GUARD_CACHE_EPOCH", "value": "xxxx" + "abcd"})  # CircleCI masks the value
    if method == "POST" and path == "/api/graphql":
        return _json(200, {"data": {"runnerCacheClear": {"errors": []}}})
    if method != "POST":
        return _json(405, {"message": "method not allowed"})
    if re.fullmatch(r"/repos/[^/]+/[^/]+/actions/runs/[^/]+/rerun-failed-jobs", path) or \
            re.fullmatch(r"/repos/[^/]+/[^/]+/actions/jobs/[^/]+/rerun", path):
        return Answer(201)  # GitHub: 201 Created, empty body
    m = re.fullmatch(r"/api/v4/projects/[^/]+/jobs/(\d+)/retry", path)
    if m:
        return _json(201, {"id": int(m.group(1)) + 1, "status": "pending", "name": "test"})
    m = re.fullmatch(r"/api/v4/projects/[^/]+/pipelines/(\d+)/retry", path)
    if m:
        return _json(201, {"id": int(m.group(1)), "status": "pending"})
    if re.fullmatch(r"(/job/[^/]+)+/buildWithParameters", path):
        return Answer(201, b"", {"Location": "http://jenkins.local/queue/item/42/"})
    m = re.fullmatch(r"/api/v2/workflow/([^/]+)/rerun", path)
    if m:
        return _json(202, {"workflow_id": "5034460f-c7c4-4c43-9457-de07e2029e7b"})
    if path.startswith("/services/"):
        return Answer(200, b"ok", {"Content-Type": "text/html"})
    if path == "/rest/api/3/issue":
        return _json(201, {"id": "10000", "key": "CI-24", "self": "http://jira.local/rest/api/3/issue/10000"})
    if path.startswith("/api/now/table/incident"):  # ServiceNow's Table API (the query string kept)
        return _json(201, {"result": {"sys_id": "9d385017c611228701d22104cc95c371", "number": "INC0010042",
                                      "state": "1"}})
    if path == "/v2/enqueue":
        return _json(202, {"status": "success", "message": "Event processed", "dedup_key": "x"})
    return _json(404, {"message": "Not Found"})


#: channels the Slack stand-in's bot is in (chat.postMessage answers channel_not_found for the rest)
SLACK_CHANNELS = {"#ci-alerts": "C0CIALERTS", "#cost-alerts": "C0COSTALRT"}


def _slack_post_message(authorization: str, body: bytes) -> Answer:
    """Slack's Web API ``chat.postMessage``: HTTP 200 with ``{"ok": true, "channel", "ts", "message"}``,
    or 200 with ``{"ok": false, "error": ...}`` (not_authed, channel_not_found, no_text)."""
    if not authorization.startswith("Bearer xoxb-"):
        return _json(200, {"ok": False, "error": "not_authed"})
    try:
        req = json.loads(body or b"null")
    except ValueError:
        return _json(200, {"ok": False, "error": "invalid_json"})
    channel = req.get("channel") if isinstance(req, dict) else None
    if not isinstance(req, dict) or not req.get("text"):
        return _json(200, {"ok": False, "error": "no_text"})
    if channel not in SLACK_CHANNELS and channel not in SLACK_CHANNELS.values():
        return _json(200, {"ok": False, "error": "channel_not_found"})
    cid = SLACK_CHANNELS.get(channel, channel)
    return _json(200, {"ok": True, "channel": cid, "ts": "1503435956.000247",
                       "message": {"type": "message", "text": req["text"], "bot_id": "B0BOT"}})


_GITHUB_RERUN = re.compile(r"/repos/[^/]+/[^/]+/actions/(runs/[^/]+/rerun-failed-jobs|jobs/[^/]+/rerun)")
_GITLAB_RETRY = re.compile(r"/api/v4/projects/[^/]+/jobs/\d+/retry")


def refusal_of_repeat(path: str) -> Answer | None:
    """The platform's answer to a repeat of a call it already carried out (None: it would do it again)."""
    if _GITHUB_RERUN.fullmatch(path):
        return _json(403, {"message": "This workflow is already running",
                           "documentation_url": "https://docs.github.com/rest/actions/workflow-runs"})
    if _GITLAB_RETRY.fullmatch(path):
        return _json(403, {"message": "403 Forbidden - Job is not retryable"})
    return None


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client gave up on a stalled answer (read timeout) or was killed
        super().handle_error(request, client_address)


class FakeApis:
    """``with FakeApis() as api:`` -> ``api.url`` is ``http://127.0.0.1:PORT``; ``api.requests`` the log."""

    def __init__(self, *, stateful: bool = False) -> None:
        self.requests: list[Req] = []
        self.scripted: dict[str, deque[Answer]] = defaultdict(deque)
        self.executed: Counter[str] = Counter()  # path -> calls the platform carried out
        self.stateful = stateful
        self.release = threading.Event()  # set: stalled answers go out at once
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                path = self.path.split("?", 1)[0]
                with outer._lock:
                    outer.requests.append(Req(self.command, path, self.headers, body))
                    q = outer.scripted.get(path)
                    ans = q.popleft() if q else None
                    if ans is None and outer.stateful and outer.executed[path]:
                        ans = refusal_of_repeat(path)
                    if ans is None:
                        ans = default_answer(self.command, path)
                        if path == "/api/chat.postMessage":
                            ans = _slack_post_message(self.headers.get("Authorization") or "", body)
                        if path == "/v2/enqueue" and body:
                            ans = _json(202, {"status": "success", "message": "Event processed",
                                              "dedup_key": json.loads(body).get("dedup_key")})
                    if self.command == "POST" and (ans.executes if ans.executes is not None
                                                   else 200 <= ans.status < 300):
                        outer.executed[path] += 1
                if ans.delay:
                    outer.release.wait(ans.delay)
                self.send_response(ans.status)
                for k, v in ans.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(ans.body)))
                self.end_headers()
                self.wfile.write(ans.body)

            do_POST = do_GET = do_PUT = do_DELETE = _handle

            def log_message(self, *a: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def script(self, path: str, *answers: Answer) -> None:
        self.scripted[path].extend(answers)

    def __enter__(self) -> FakeApis:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
