"""Log download through each platform's API, against local servers speaking the documented answers."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from healing_guard.executor.clients import Clients
from healing_guard.platforms.fetch import FetchError, FetchScheduler, fetch_log, publish_log
from healing_guard.schemas import DeadLetter, JobEvent, LogChunk
from healing_guard.settings import Topics


@dataclass
class Seen:
    path: str
    query: str
    headers: Any


Route = Callable[["LogServer", str], tuple[int, dict[str, str], bytes]]


class LogServer:
    """A local server answering GET by path with ``routes[path](server, path)``; records requests."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[Seen] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                outer.requests.append(Seen(path, query, self.headers))
                status, headers, body = outer.routes.get(path, (404, {"Content-Type": "application/json"},
                                                                b'{"message": "Not Found"}'))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    s = LogServer()
    yield s
    s.close()


@pytest.fixture
def blob():  # a second host: the pre-signed download URLs
    s = LogServer()
    yield s
    s.close()


def clients_for(url: str, **extra: str) -> Clients:
    env = {"GUARD_GITHUB_TOKEN": "ghtok", "GUARD_GITHUB_API_URL": url, "GUARD_GITLAB_TOKEN": "gltok",
           "GUARD_GITLAB_URL": url, "GUARD_JENKINS_URL": url, "GUARD_JENKINS_USER": "bot",
           "GUARD_JENKINS_TOKEN": "jktok", "GUARD_CIRCLECI_TOKEN": "cctok", "GUARD_CIRCLECI_URL": url,
           "GUARD_EXECUTOR_MAX_ATTEMPTS": "2", **extra}
    return Clients.from_env(env, sleep=lambda s: None)


def job(provider: str = "github", owner: str = "acme", repo: str = "shop", job_id: str = "42",
        **kw: Any) -> JobEvent:
    base = dict(provider=provider, owner=owner, repo=repo, job_id=job_id, job_name="test", status="completed",
                conclusion="failure", attempt=1)
    base.update(kw)
    return JobEvent(**base)  # type: ignore[arg-type]


LOG = b"".join(b"line %d\n" % i for i in range(1, 2001))


def test_github_follows_redirect_without_auth(api, blob):
    blob.routes["/dl/job-42.txt"] = (200, {"Content-Type": "text/plain"}, LOG)
    api.routes["/repos/acme/shop/actions/jobs/42/logs"] = (
        302, {"Location": f"{blob.url}/dl/job-42.txt?sig=abc"}, b"")
    blocks = list(fetch_log(clients_for(api.url), job(), block_size=1000))
    assert b"".join(blocks) == LOG
    assert len(blocks) > 1  # streamed, not read whole
    (r,) = api.requests
    assert r.headers["Authorization"] == "Bearer ghtok"
    assert r.headers["Accept"] == "application/vnd.github+json"
    (d,) = blob.requests
    assert d.query == "sig=abc"
    assert d.headers.get("Authorization") is None  # the token does not leave the API host


def test_gitlab_trace_path_and_token(api):
    api.routes["/api/v4/projects/group%2Fsub%2Fshop/jobs/7/trace"] = (200, {}, b"$ make\nerror\n")
    assert b"".join(fetch_log(clients_for(api.url), job("gitlab", "group/sub", "shop", "7"))) == b"$ make\nerror\n"
    assert api.requests[0].headers["PRIVATE-TOKEN"] == "gltok"


def test_jenkins_console_text_path_and_basic_auth(api):
    api.routes["/job/team/job/shop/15/consoleText"] = (200, {}, b"Started\nFAILURE\n")
    api.routes["/job/tool/3/consoleText"] = (200, {}, b"top\n")
    c = clients_for(api.url)
    assert b"".join(fetch_log(c, job("jenkins", "team", "shop", "15"))) == b"Started\nFAILURE\n"
    assert api.requests[0].headers["Authorization"].startswith("Basic ")
    # a top-level job: the webhook names its owner "jenkins"
    assert b"".join(fetch_log(c, job("jenkins", "jenkins", "tool", "3"))) == b"top\n"


def test_circleci_steps_concatenated_in_order(api, blob):
    out = lambda *msgs: (200, {"Content-Type": "application/json"},  # noqa: E731
                         json.dumps([{"message": m, "type": "out", "time": "t"} for m in msgs]).encode())
    blob.routes["/o/1"] = out("Spin up environment\r\n", "ok\r\n")
    blob.routes["/o/2"] = out("npm test\n", "FAIL src/a.test.js\n")
    blob.routes["/o/3"] = out("Exited with code exit status 1")
    build = {"build_num": 99, "steps": [
        {"name": "Spin up", "actions": [{"index": 0, "output_url": f"{blob.url}/o/1?X-Amz-Signature=s"}]},
        {"name": "no output", "actions": [{"index": 0}]},
        {"name": "npm test", "actions": [{"index": 0, "output_url": f"{blob.url}/o/2"}]},
        {"name": "end", "actions": [{"index": 0, "output_url": f"{blob.url}/o/3"}]}]}
    api.routes["/api/v1.1/project/github/acme/shop/99"] = (200, {"Content-Type": "application/json"},
                                                           json.dumps(build).encode())
    text = b"".join(fetch_log(clients_for(api.url), job("circleci", job_id="99")))
    assert text == (b"Spin up environment\r\nok\r\nnpm test\nFAIL src/a.test.js\n"
                    b"Exited with code exit status 1\n")
    assert api.requests[0].headers["Circle-Token"] == "cctok"
    assert [r.path for r in blob.requests] == ["/o/1", "/o/2", "/o/3"]
    assert all(r.headers.get("Circle-Token") is None for r in blob.requests)


def test_circleci_bitbucket_projects_use_their_vcs(api, blob):
    blob.routes["/o/1"] = (200, {}, json.dumps([{"message": "boom\n", "type": "out"}]).encode())
    build = {"steps": [{"name": "s", "actions": [{"index": 0, "output_url": f"{blob.url}/o/1"}]}]}
    api.routes["/api/v1.1/project/bitbucket/acme/shop/7"] = (200, {}, json.dumps(build).encode())
    assert b"".join(fetch_log(clients_for(api.url), job("circleci", job_id="7"), circleci_vcs="bitbucket")) == b"boom\n"


def test_404_names_the_job(api):
    with pytest.raises(FetchError) as e:
        fetch_log(clients_for(api.url), job(job_id="404404"))
    assert e.value.http_status == 404
    assert e.value.provider == "github"
    assert "github/acme/shop/404404" in str(e.value)
    assert "Not Found" in str(e.value)


def test_403_is_not_retried_and_token_masked(api):
    api.routes["/api/v4/projects/acme%2Fshop/jobs/1/trace"] = (
        403, {"Content-Type": "application/json"}, b'{"message": "403 Forbidden for gltok"}')
    with pytest.raises(FetchError) as e:
        fetch_log(clients_for(api.url), job("gitlab", job_id="1"))
    assert e.value.http_status == 403
    assert "gltok" not in str(e.value)
    assert len(api.requests) == 1


def test_5xx_is_retried(api):
    calls = []

    class Flaky(dict):
        def get(self, path, default=None):
            calls.append(path)
            return (502, {}, b"bad gateway") if len(calls) == 1 else (200, {}, b"ok\n")

    api.routes = Flaky()
    assert b"".join(fetch_log(clients_for(api.url), job("jenkins", job_id="5"))) == b"ok\n"
    assert len(calls) == 2


@pytest.mark.parametrize("provider,var", [("github", "GUARD_GITHUB_TOKEN"), ("gitlab", "GUARD_GITLAB_TOKEN"),
                                          ("jenkins", "GUARD_JENKINS_URL"), ("circleci", "GUARD_CIRCLECI_TOKEN")])
def test_not_configured_names_the_variable(provider, var):
    with pytest.raises(FetchError) as e:
        fetch_log(Clients.from_env({}), job(provider))
    assert var in str(e.value)
    assert e.value.http_status is None


class FakeSettings:
    topics = Topics()


def collect() -> tuple[list[tuple[str, bytes, bytes]], Any]:
    sent: list[tuple[str, bytes, bytes]] = []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        sent.append((topic, key, value))

    return sent, send


def test_publish_log_chunks_in_order_with_eof(api):
    api.routes["/api/v4/projects/acme%2Fshop/jobs/8/trace"] = (200, {}, LOG)
    sent, send = collect()
    j = job("gitlab", job_id="8", attempt=2)
    n = asyncio.run(publish_log(send, FakeSettings(), j, clients=clients_for(api.url)))
    assert n == len(sent) == 4  # 2000 lines, 500 a chunk
    chunks = [LogChunk.from_json(v) for _, _, v in sent]
    assert {t for t, _, _ in sent} == {"ci.logs"}
    assert {k for _, k, _ in sent} == {b"gitlab/acme/shop/8"}
    assert [c.seq for c in chunks] == [0, 1, 2, 3]
    assert [c.eof for c in chunks] == [False, False, False, True]
    assert [c.first_line for c in chunks] == [1, 501, 1001, 1501]
    assert all(c.attempt == 2 for c in chunks)
    assert "\n".join(x for c in chunks for x in c.lines) + "\n" == LOG.decode()


def test_publish_log_failure_goes_to_deadletter(api):
    sent, send = collect()
    n = asyncio.run(publish_log(send, FakeSettings(), job(job_id="9"), clients=clients_for(api.url)))
    assert n == 0
    ((topic, key, value),) = sent
    assert topic == "guard.deadletter" and key == b"github/acme/shop/9"
    dl = DeadLetter.from_json(value)
    assert dl.source_topic == "ci.jobs"
    assert "github/acme/shop/9" in dl.reason and "HTTP 404" in dl.reason


def test_publish_log_not_configured_goes_to_deadletter():
    sent, send = collect()
    asyncio.run(publish_log(send, FakeSettings(), job("circleci"), clients=Clients.from_env({})))
    ((topic, _, value),) = sent
    assert topic == "guard.deadletter"
    assert "GUARD_CIRCLECI_TOKEN" in DeadLetter.from_json(value).reason


def chunk_of(ev: JobEvent, attempt: int = 1) -> LogChunk:
    return LogChunk(provider=ev.provider, owner=ev.owner, repo=ev.repo, job_id=ev.job_id, attempt=attempt,
                    seq=0, lines=["x"], eof=True)


def test_scheduler_waits_grace_and_skips_shipped_logs():
    s = FetchScheduler(grace_seconds=10)
    a, b = job(job_id="1"), job(job_id="2")
    assert s.on_job(a, now=100) and s.on_job(b, now=101)
    assert not s.on_job(job(job_id="3", conclusion="success"), now=100)
    assert not s.on_job(job(job_id="4", conclusion="cancelled"), now=100)
    assert not s.on_job(job(job_id="5", status="in_progress", conclusion=None), now=100)
    assert not s.on_job(job(job_id="6", log_chunks=3), now=100)
    assert s.on_job(job(job_id="7", conclusion="timed_out"), now=100)
    s.on_chunk(chunk_of(b))  # b's log arrived
    assert s.due(105) == []
    assert [j.job_id for j in s.due(111)] == ["1", "7"]
    assert s.due(200) == []
    assert not s.on_job(a, now=300)  # never fetched twice
    s.on_chunk(chunk_of(job(job_id="8")))
    assert not s.on_job(job(job_id="8"), now=300)  # log already seen before the event
    assert s.on_job(job(job_id="8", attempt=2), now=300)  # a new attempt is another log


def test_scheduler_memory_is_bounded():
    s = FetchScheduler(grace_seconds=1, max_seen=10, max_pending=5)
    for i in range(100):
        s.on_chunk(chunk_of(job(job_id=f"s{i}")))
        s.on_job(job(job_id=f"p{i}"), now=0)
    assert len(s.seen) == 10 and len(s.pending) == 5
    assert [j.job_id for j in s.due(5)] == [f"p{i}" for i in range(95, 100)]
    assert len(s.seen) == 10
