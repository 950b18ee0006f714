"""A local HTTP server that speaks the documented success answers of the executor's APIs.

It records every request; tests can queue scripted answers (status, headers, body) per path to
simulate rate limits and errors.
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict, deque
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


def _json(status: int, obj: Any, **headers: str) -> Answer:
    return Answer(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **headers})


def default_answer(method: str, path: str) -> Answer:
    """The documented success answer of each endpoint."""
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
    if path == "/v2/enqueue":
        return _json(202, {"status": "success", "message": "Event processed", "dedup_key": "x"})
    return _json(404, {"message": "Not Found"})


class FakeApis:
    """``with FakeApis() as api:`` -> ``api.url`` is ``http://127.0.0.1:PORT``; ``api.requests`` the log."""

    def __init__(self) -> None:
        self.requests: list[Req] = []
        self.scripted: dict[str, deque[Answer]] = defaultdict(deque)
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
                if ans is None:
                    ans = default_answer(self.command, path)
                    if path == "/v2/enqueue" and body:
                        ans = _json(202, {"status": "success", "message": "Event processed",
                                          "dedup_key": json.loads(body).get("dedup_key")})
                self.send_response(ans.status)
                for k, v in ans.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(ans.body)))
                self.end_headers()
                self.wfile.write(ans.body)

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def script(self, path: str, *answers: Answer) -> None:
        self.scripted[path].extend(answers)

    def __enter__(self) -> FakeApis:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
