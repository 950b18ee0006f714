"""GuardClient (standard library only) against the real API served by uvicorn on 127.0.0.1.

The fake reader and sink of ``test_rest_api`` stand in for the warehouse and the broker.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from healing_guard import GuardClient
from healing_guard.remediate.planner import command_id
from healing_guard.rest import ApiKeys, create_app
from healing_guard.sdk import FailureAnalysis, GuardAPIError, RepoHealth

from tests.unit.rest.test_rest_api import REPO_HEALTH, FakeReader, ListSink


@dataclass
class Served:
    url: str
    key: str
    other_key: str
    sink: ListSink
    reader: FakeReader


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours *_proxy variables: keep the test's traffic on loopback whatever the shell sets."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(app: Any) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    keys = ApiKeys(tmp_path_factory.mktemp("sdk") / "api-keys.json")
    _, key = keys.create(["acme/web"])
    _, other = keys.create(["other/repo"])
    reader, sink = FakeReader(), ListSink()
    for url in _serve(create_app(lambda: reader, keys=keys, actions=sink)):
        yield Served(url, key, other, sink, reader)


@pytest.fixture(scope="module")
def unsunk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The API as `guard api --broker embedded` serves it: no command sink."""
    keys = ApiKeys(tmp_path_factory.mktemp("sdk2") / "api-keys.json")
    _, key = keys.create(["*"])
    reader = FakeReader()
    for url in _serve(create_app(lambda: reader, keys=keys, actions=None)):
        yield Served(url, key, key, ListSink(), reader)


def test_get_repo_health(served: Served) -> None:
    c = GuardClient(api_key=served.key, base_url=served.url)
    h = c.get_repo_health("acme/web")
    assert isinstance(h, RepoHealth)
    assert h.flaky_test_rate == 0.0417 and h.healing_success_rate == 0.8125
    assert (h.repo, h.days, h.jobs, h.failed_jobs, h.last_failure_at) == ("acme/web", 30, 120, 18,
                                                                         "2026-11-25T10:00:00Z")
    assert c.get_repo_health("acme/web", days=7).days == 7
    assert served.reader.calls[-1] == ("repo_health", "acme", "web", 7)
    assert set(REPO_HEALTH) == set(RepoHealth.__dataclass_fields__)


def test_analyze_failure(served: Served) -> None:
    c = GuardClient(api_key=served.key, base_url=served.url + "/")  # a trailing slash is fine
    a = c.analyze_failure(repo="acme/web", job_id=123)
    assert isinstance(a, FailureAnalysis)
    assert (a.category, a.confidence, a.attempt, a.run_id) == ("network", 0.82, 2, "9001")
    assert a.evidence[0].line == 3 and a.evidence[0].pattern == "npm-network"
    assert "npm ERR! network request" in a.evidence[0].text
    rec = a.recommendations[0]
    assert (rec.action, rec.confidence, rec.automatic) == ("retry_backoff", 0.82, True)
    assert rec.reason.startswith("transient network error")
    assert a.commands[0]["outcome"]["status"] == "succeeded"


def test_heal_is_idempotent(served: Served) -> None:
    c = GuardClient(api_key=served.key, base_url=served.url)
    served.sink.sent.clear()
    r1 = c.heal(repo="acme/web", job_id="123", strategy="network_backoff", notify=["slack"])
    r2 = c.heal(repo="acme/web", job_id="123", strategy="network_backoff", notify=["slack"])
    assert r1 == r2
    assert r1.command_id == command_id("github/acme/web/123", 2, "retry_backoff")
    assert (r1.action, r1.status, r1.strategy, r1.job_key) == ("retry_backoff", "queued", "network_backoff",
                                                                "github/acme/web/123")
    assert r1.notify_command_id is not None
    assert [cmd.action for cmd in served.sink.sent] == ["retry_backoff", "notify_oncall"] * 2
    assert c.heal(repo="acme/web", job_id="777").action == "notify_author"  # auto on a code failure


def test_errors_carry_status_and_the_servers_message(served: Served, unsunk: Served) -> None:
    c = GuardClient(api_key=served.key, base_url=served.url)
    with pytest.raises(GuardAPIError) as e:
        GuardClient(api_key="hg_000000000000_" + "x" * 43, base_url=served.url).get_repo_health("acme/web")
    assert e.value.status == 401 and "guard api-keys create" in e.value.message
    with pytest.raises(GuardAPIError) as e:
        c.get_repo_health("acme/api")
    assert e.value.status == 403 and "not scoped to github:acme/api" in e.value.message
    with pytest.raises(GuardAPIError) as e:
        c.analyze_failure(repo="acme/web", job_id="999")
    assert e.value.status == 404 and "no diagnosis of job 999" in e.value.message and e.value.field == "job_id"
    with pytest.raises(GuardAPIError) as e:
        c.heal(repo="acme/web", job_id="123", strategy="reboot")
    assert e.value.status == 422 and e.value.field == "strategy" and "network_backoff" in e.value.message
    with pytest.raises(GuardAPIError) as e:
        GuardClient(api_key=unsunk.key, base_url=unsunk.url).heal(repo="acme/web", job_id="123")
    assert e.value.status == 503 and "need a broker" in e.value.message
    assert "HTTP 503" in str(e.value)


def test_health_and_roi(served: Served) -> None:
    c = GuardClient(api_key=served.key, base_url=served.url)
    assert c.health()["status"] == "ok"
    roi = c.get_roi("acme/web", days=14)
    assert roi["report"]["days"] == 14 and len(roi["daily"]) == 2


def test_unreachable_api_and_bad_arguments() -> None:
    c = GuardClient(api_key="hg_x", base_url=f"http://127.0.0.1:{_free_port()}", timeout=2)
    with pytest.raises(GuardAPIError) as e:
        c.get_repo_health("acme/web")
    assert e.value.status is None and "cannot reach the guard API" in e.value.message
    with pytest.raises(ValueError, match="owner/repo"):
        c.get_repo_health("acme")
    with pytest.raises(ValueError, match="api_key"):
        GuardClient(api_key="")
    assert "hg_x" not in repr(c)
