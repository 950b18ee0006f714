"""GuardClient (standard library only) against the real API served by uvicorn on 127.0.0.1.

The fake reader and sink of ``test_rest_api`` stand in for the warehouse and the broker.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from healing_guard import GuardClient
from healing_guard.remediate.planner import command_id
from healing_guard.rest import ApiKeys, create_app
from healing_guard.sdk import DEFAULT_BASE_URL, FailureAnalysis, GuardAPIError, Recommendation, RepoHealth

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
    # the product document's names, in percent; the API's fractions under their own names
    assert (h.flaky_rate, h.healing_success_rate) == (4.17, 81.25)
    assert (h.flaky_test_rate, h.healing_success_fraction, h.failure_rate) == (0.0417, 0.8125, 0.15)
    assert (h.repo, h.days, h.jobs, h.failed_jobs, h.last_failure_at) == ("acme/web", 30, 120, 18,
                                                                         "2026-11-25T10:00:00Z")
    assert c.get_repo_health("acme/web", days=7).days == 7
    assert served.reader.calls[-1] == ("repo_health", "acme", "web", 7)
    # every field the API sends arrives, plus the percentages made of them
    assert set(RepoHealth.__dataclass_fields__) == set(REPO_HEALTH) | {"flaky_rate", "healing_success_fraction"}


def test_rates_unknown_to_the_api_stay_unknown() -> None:
    h = RepoHealth.from_api({**REPO_HEALTH, "healing_success_rate": None, "flaky_test_rate": None})
    assert (h.flaky_rate, h.healing_success_rate, h.healing_success_fraction) == (None, None, None)
    h = RepoHealth.from_api({**REPO_HEALTH, "healing_success_rate": 1, "flaky_test_rate": 1 / 3})
    assert (h.healing_success_rate, h.flaky_rate) == (100.0, 33.33)
    assert Recommendation.from_api({"action": "retry", "confidence": 0.8734, "reason": "r", "new": 1}) == \
        Recommendation("retry", 87.34, "r", confidence_fraction=0.8734)


def test_analyze_failure(served: Served) -> None:
    c = GuardClient(api_key=served.key, base_url=served.url + "/")  # a trailing slash is fine
    a = c.analyze_failure(repo="acme/web", job_id=123)
    assert isinstance(a, FailureAnalysis)
    assert (a.category, a.confidence, a.confidence_fraction, a.attempt, a.run_id) == ("network", 82.0, 0.82, 2, "9001")
    assert a.evidence[0].line == 3 and a.evidence[0].pattern == "npm-network"
    assert "npm ERR! network request" in a.evidence[0].text
    rec = a.recommendations[0]
    assert (rec.action, rec.confidence, rec.confidence_fraction, rec.automatic) == ("retry_backoff", 82.0, 0.82, True)
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
        GuardClient(api_key="", env={})
    with pytest.raises(ValueError, match="^base_url: expected an http"):
        GuardClient(api_key="hg_x", base_url="127.0.0.1:8000", env={})
    assert "hg_x" not in repr(c)


def test_base_url_and_key_from_the_environment(served: Served) -> None:
    """As the product document's example runs in a CI job: the URL and the key come from its environment."""
    env = {"GUARD_API_URL": served.url, "GUARD_API_KEY": served.key}
    c = GuardClient(api_key="your-key", env=env)  # the document's placeholder: no guard key looks like it
    assert (c.base_url, c.api_key) == (served.url, served.key)
    assert c.get_repo_health("acme/web").flaky_rate == 4.17
    assert GuardClient(env=env).api_key == served.key
    # a real key given in the code wins over the environment's; so does a base_url
    assert GuardClient(api_key=served.other_key, env=env).api_key == served.other_key
    assert GuardClient(api_key="hg_k", base_url="http://10.0.0.1:9000/", env=env).base_url == "http://10.0.0.1:9000"
    # nothing in the environment: the placeholder is sent (and refused), the URL is guard api's default
    bare = GuardClient(api_key="your-key", env={})
    assert (bare.api_key, bare.base_url) == ("your-key", DEFAULT_BASE_URL) == ("your-key", "http://127.0.0.1:8000")
    with pytest.raises(GuardAPIError) as e:
        GuardClient(api_key="your-key", base_url=served.url, env={}).get_repo_health("acme/web")
    assert e.value.status == 401
