"""The REST API against a fake warehouse reader (contract shapes) and an in-memory command sink.

Requests go through the ASGI app in process (schemathesis' requests-compatible ASGI client: FastAPI's
TestClient needs httpx, which is not a dependency). No Kafka, no ClickHouse.
"""

from __future__ import annotations

import copy
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from schemathesis.python.asgi import get_client

from healing_guard.remediate.planner import command_id
from healing_guard.rest import ApiKeys, KafkaCommandSink, create_app
from healing_guard.rest import app as app_module
from healing_guard.rest.keys import parse_scope
from healing_guard.schemas import Command

REPO_HEALTH: dict[str, Any] = {
    "repo": "acme/web", "days": 30, "jobs": 120, "failed_jobs": 18, "failure_rate": 0.15,
    "healing_success_rate": 0.8125, "flaky_test_rate": 0.0417, "flaky_tests": 2, "auto_commands": 16,
    "time_saved_minutes": 512.5, "cost_saved_usd": 7.36, "last_failure_at": "2026-11-25T10:00:00Z",
}

NETWORK_FAILURE: dict[str, Any] = {
    "job_key": "github/acme/web/123", "provider": "github", "owner": "acme", "repo": "web", "job_id": "123",
    "attempt": 2, "run_id": "9001", "category": "network", "confidence": 0.82,
    "evidence": [{"line": 3, "text": "npm ERR! network request to https://registry.npmjs.org failed",
                  "pattern": "npm-network"}],
    "template": "npm ERR! network request to <url> failed", "exit_code": 1, "failed_tests": [],
    "log_lines": 4, "log_complete": True, "diagnosed_at": "2026-11-25T10:00:01Z",
    "commands": [{"command_id": "c" * 32, "action": "retry_backoff", "confidence": 0.82,
                  "reason": "transient network error: retry after an exponential backoff",
                  "estimated_cost_usd": 0.192, "ts": "2026-11-25T10:00:02Z",
                  "outcome": {"status": "succeeded", "detail": "GitHub re-run failed jobs of run 9001",
                              "ts": "2026-11-25T10:00:05Z"}}],
    "recommendations": [{"action": "retry_backoff", "confidence": 0.82,
                         "reason": "transient network error: retry after an exponential backoff",
                         "automatic": True}],
}

TEST_FAILURE: dict[str, Any] = {
    **NETWORK_FAILURE, "job_key": "github/acme/web/777", "job_id": "777", "attempt": 1, "run_id": None,
    "category": "test_failure", "confidence": 0.9, "failed_tests": ["tests/test_api.py::test_login"],
    "evidence": [], "template": None, "commands": [],
    "recommendations": [{"action": "notify_author", "confidence": 0.9, "reason": "a code failure",
                         "automatic": False}],
}

REPORT: dict[str, Any] = {
    "repo": "acme/web", "days": 30, "jobs": 120, "failed_jobs": 18, "ci_minutes": 1500.0, "ci_cost_usd": 24.0,
    "auto_commands": 16, "manual_commands": 2, "reruns_decided": 16, "reruns_recovered": 13,
    "time_saved_minutes": 512.5, "rerun_cost_usd": 1.2,
    "cost_avoided_usd": 7.36, "cost_saved_usd": 7.36, "mttr_minutes": 14.5, "mttr_without_guard_minutes": 40.1,
    "mttr_episodes": 13, "mttg_minutes": 35.0, "mttg_episodes": 16,
    "open_failures": 1, "success_rate": 0.85,
    "reliability": {
        "window_days": 30,
        "current": {"since": "2026-10-27", "until": None, "jobs": 120, "failed_jobs": 18, "success_rate": 0.85,
                    "failure_episodes": 16, "healed_share": 0.5625, "mttr_minutes": 14.5, "mttg_minutes": 35.0},
        "previous": {"since": "2026-09-27", "until": "2026-10-27", "jobs": 100, "failed_jobs": 20, "success_rate": 0.8,
                     "failure_episodes": 20, "healed_share": None, "mttr_minutes": None, "mttg_minutes": 52.0},
        "change": {"success_rate_points": 5.0, "mttr_minutes": None, "mttg_minutes": -17.0},
    },
    "recovery_rate": 0.8125,
    "recovery_by_strategy": [{"action": "retry_backoff", "commands": 10, "recovered": 9, "decided": 10, "rate": 0.9}],
    "tests_seen": 48, "flaky_tests": 2, "flaky_test_rate": 0.0417, "flaky_tests_judged": 2, "flaky_tests_observed": 1,
    "flakiest_tests": [{"test_id": "tests/test_api.py::test_login", "runs": 40, "failures": 6, "flaky_jobs": 5,
                        "guard_reruns": 3, "quarantined": False}],
    "failures_by_category": {"network": 9, "test_failure": 6, "oom": 3},
    "top_templates": [{"template": "npm ERR! network request to <url> failed", "category": "network", "count": 9}],
    "budget": [{"day": "2026-11-25", "spent_usd": 1.2, "budget_usd": 50.0, "burn": 0.024}],
}

DAILY: list[dict[str, Any]] = [
    {"day": "2026-11-24", "jobs": 60, "failed_jobs": 8, "time_saved_minutes": 200.0, "cost_saved_usd": 3.0,
     "rerun_cost_usd": 0.5, "success_rate": 0.8667, "mttr_minutes": None, "mttg_minutes": None},
    {"day": "2026-11-25", "jobs": 60, "failed_jobs": 10, "time_saved_minutes": 312.5, "cost_saved_usd": 4.36,
     "rerun_cost_usd": 0.7, "success_rate": 0.8333, "mttr_minutes": 14.5, "mttg_minutes": 35.0},
]


ACTIONS: list[dict[str, Any]] = [
    {"ts": "2026-11-25T10:00:02Z", "repo": "acme/web", "provider": "github", "job_id": "123", "attempt": 2,
     "job_name": "test", "action": "retry_backoff", "category": "network",
     "reason": "transient network error: retry after an exponential backoff", "status": "succeeded",
     "detail": "GitHub re-run failed jobs of run 9001", "rerun_conclusion": "success"},
]

#: (provider, owner, repo) the fake warehouse holds facts of
REPO_KEYS = [("github", "acme", "web"), ("github", "other", "lib"), ("gitlab", "acme", "web")]


class FakeReader:
    """The WarehouseReader's methods over fixed contract-shaped data; records every call."""

    def __init__(self, failures: dict[tuple[str, str, str], dict[str, Any]] | None = None,
                 broken: bool = False, any_job: bool = False) -> None:
        self.failures = failures if failures is not None else {
            ("acme", "web", "123"): NETWORK_FAILURE, ("acme", "web", "777"): TEST_FAILURE}
        self.broken = broken
        self.any_job = any_job  # every job id has a (network) diagnosis: for property-based runs
        self.calls: list[tuple[Any, ...]] = []
        self.providers: list[str | None] = []  # the platform each call asked for (the data is GitHub's)

    def _check(self) -> None:
        if self.broken:
            raise ConnectionError("ClickHouse at http://127.0.0.1:8123 refused the connection")

    def report(self, owner: str | None = None, repo: str | None = None, days: int | None = None, *,
               provider: str | None = None, repos: Any = None) -> dict[str, Any]:
        self._check()
        self.providers.append(provider)
        self.calls.append(("report", owner, repo, days) + ((tuple(repos),) if repos is not None else ()))
        return {**copy.deepcopy(REPORT), "repo": f"{owner}/{repo}" if owner else None, "days": days}

    def daily(self, owner: str | None, repo: str | None, days: int = 30, *,
              provider: str | None = None, repos: Any = None) -> list[dict[str, Any]]:
        self._check()
        self.providers.append(provider)
        self.calls.append(("daily", owner, repo, days) + ((tuple(repos),) if repos is not None else ()))
        return copy.deepcopy(DAILY)

    def recent_actions(self, owner: str | None = None, repo: str | None = None, days: int | None = 30, *,
                       provider: str | None = None, repos: Any = None) -> list[dict[str, Any]]:
        self._check()
        self.calls.append(("actions", owner, repo, days) + ((tuple(repos),) if repos is not None else ()))
        return copy.deepcopy(ACTIONS)

    def repo_keys(self) -> list[tuple[str, str, str]]:
        self._check()
        return list(REPO_KEYS)

    def repo_health(self, owner: str, repo: str, days: int = 30, *, provider: str | None = None) -> dict[str, Any]:
        self._check()
        self.providers.append(provider)
        self.calls.append(("repo_health", owner, repo, days))
        return {**REPO_HEALTH, "repo": f"{owner}/{repo}", "days": days}

    def failure(self, owner: str, repo: str, job_id: str, *, provider: str | None = None) -> dict[str, Any] | None:
        self._check()
        self.providers.append(provider)
        self.calls.append(("failure", owner, repo, job_id))
        found = self.failures.get((owner, repo, job_id)) if provider in (None, "github") else None
        if found is None and self.any_job:
            found = {**NETWORK_FAILURE, "owner": owner, "repo": repo, "job_id": job_id,
                     "job_key": f"github/{owner}/{repo}/{job_id}"}
        return copy.deepcopy(found) if found is not None else None

    def repos(self) -> list[str]:
        self._check()
        return ["acme/web"]

    def directive_command(self, owner: str, repo: str, *, provider: str, job_name: str | None = None,
                          run_id: str | None = None, commit: str | None = None,
                          attempt: int | None = None) -> dict[str, Any] | None:
        self._check()
        self.calls.append(("directive", owner, repo, job_name or ""))
        if run_id != "42" or provider != "github":
            return None
        return {"command_id": "c-1", "action": "rerun_more_memory", "provider": provider, "owner": owner,
                "repo": repo, "job_id": "7", "attempt": 1, "run_id": run_id, "parameters": {"memory_factor": 2}}


class ListSink:
    """A CommandSink that keeps what it was sent (or fails, like a broker that is down)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Command] = []
        self.fail = fail

    async def send(self, cmd: Command) -> None:
        if self.fail:
            raise ConnectionError("broker 127.0.0.1:9092 unreachable")
        self.sent.append(cmd)


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.keys = ApiKeys(tmp_path / "keys" / "api-keys.json")
        self.all_id, self.all_key = self.keys.create(["*"])
        self.web_id, self.web_key = self.keys.create(["acme/web"])
        self.org_id, self.org_key = self.keys.create(["other/*"])
        self.old_id, self.old_key = self.keys.create(["acme/web"])
        assert self.keys.revoke(self.old_id)
        self.reader = FakeReader()
        self.sink = ListSink()

    def client(self, *, reader: Any = None, sink: Any = "default", metrics_auth: bool = False) -> Any:
        r = reader or self.reader
        app: Any = create_app(lambda: r, keys=self.keys, actions=self.sink if sink == "default" else sink,
                              metrics_auth=metrics_auth)
        return get_client(app)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


@pytest.fixture
def client(env: Env) -> Iterator[Any]:
    with env.client() as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


STATUS = "/api/v1/repos/acme/web/healing/status"
ANALYSIS = "/api/v1/repos/acme/web/failures/123/analysis"
HEAL = "/api/v1/repos/acme/web/failures/123/heal"
ROI = "/api/v1/repos/acme/web/roi"


# --- service routes --------------------------------------------------------------------------------

def test_health_says_whether_the_warehouse_answers(env: Env) -> None:
    with env.client() as c:
        r = c.get("/health")
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "warehouse": True, "detail": None, "actions": True, "version": "0.1.0"}
    with env.client(reader=FakeReader(broken=True), sink=None) as c:
        r = c.get("/health")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "degraded" and body["warehouse"] is False and body["actions"] is False
        assert "refused the connection" in body["detail"]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting to it is refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_health_says_actions_false_while_the_broker_is_unreachable(env: Env) -> None:
    """A real Kafka sink whose broker address refuses connections: heal requests could not queue their
    command, so /health must not claim they can. The warehouse still answers: 200, but degraded."""
    from healing_guard.settings import load_settings

    port = _closed_port()
    sink = KafkaCommandSink(load_settings(None, env={}, broker_url=f"kafka://127.0.0.1:{port}"))
    with env.client(sink=sink) as c:
        r = c.get("/health")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "degraded" and body["warehouse"] is True and body["actions"] is False
        assert f"the broker at 127.0.0.1:{port} cannot be reached" in body["detail"]
        assert "heal requests cannot queue commands" in body["detail"]
    with env.client(reader=FakeReader(broken=True), sink=sink) as c:  # both away: 503, both reasons
        r = c.get("/health")
        assert r.status_code == 503
        body = r.json()
        assert body["warehouse"] is False and body["actions"] is False
        assert "refused the connection" in body["detail"] and f"127.0.0.1:{port}" in body["detail"]


async def test_broker_check_is_cached_for_a_few_seconds() -> None:
    from healing_guard.settings import load_settings

    sink = KafkaCommandSink(load_settings(None, env={}, broker_url=f"kafka://127.0.0.1:{_closed_port()}"))
    now = [1000.0]
    sink._clock = lambda: now[0]
    checks: list[str | None] = []
    real = sink._check_broker

    async def counted() -> str | None:
        checks.append(await real())
        return checks[-1]

    sink._check_broker = counted  # type: ignore[method-assign]
    first = await sink.unavailable()
    assert first is not None and "cannot be reached" in first
    now[0] += app_module.PROBE_CACHE_SECONDS - 0.5
    assert await sink.unavailable() == first and len(checks) == 1  # reused
    now[0] += 1.0
    assert await sink.unavailable() == first and len(checks) == 2  # checked again
    await sink.close()


async def test_broker_check_needs_the_actions_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker that answers but has no actions topic (auto-create is off) takes no command either."""
    import aiokafka

    from healing_guard.settings import load_settings

    topics: set[str] = set()

    class Metadata:
        def topics(self) -> set[str]:
            return set(topics)

    class Client:
        async def fetch_all_metadata(self) -> Metadata:
            return Metadata()

    class Producer:
        def __init__(self, **kw: Any) -> None:
            self.client = Client()

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            pass

    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", Producer)
    s = load_settings(None, env={}, broker_url="kafka://127.0.0.1:19092", topic_prefix="t1-")
    sink = KafkaCommandSink(s)
    why = await sink.unavailable()
    assert why is not None and "has no topic t1-guard.actions" in why
    topics.add("t1-guard.actions")
    sink._probe = None  # forget the cached answer
    assert await sink.unavailable() is None
    await sink.close()


def test_metrics_renders_the_metrics_module_or_says_it_is_missing(client: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "healing_guard_" in r.text
    monkeypatch.setitem(sys.modules, "healing_guard.metrics", None)  # import fails
    r = client.get("/metrics")
    assert r.status_code == 503
    assert "metrics are not available" in r.json()["detail"]


def test_dashboard_serves_the_page_or_404s(client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "dashboard.html"
    page.write_text("<!doctype html><title>ROI</title>", encoding="utf-8")
    monkeypatch.setattr(app_module, "DASHBOARD", page)
    r = client.get("/dashboard")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.text == "<!doctype html><title>ROI</title>"
    monkeypatch.setattr(app_module, "DASHBOARD", tmp_path / "missing.html")
    r = client.get("/dashboard")
    assert r.status_code == 404
    assert "dashboard page is not installed" in r.json()["detail"]


# --- auth ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [STATUS, ANALYSIS, ROI])
def test_401_without_a_valid_key(env: Env, client: Any, path: str) -> None:
    for headers in ({}, bearer("hg_000000000000_" + "x" * 43), bearer("not-a-key"), bearer(env.old_key),
                    {"X-API-Key": env.old_key}, {"Authorization": f"Basic {env.all_key}"}):
        r = client.get(path, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "guard api-keys create" in r.json()["detail"]
    r = client.post(HEAL, json={"strategy": "network_backoff"})
    assert r.status_code == 401
    assert env.sink.sent == []


def test_403_when_the_key_is_not_scoped_to_the_repository(env: Env, client: Any) -> None:
    r = client.get("/api/v1/repos/acme/api/healing/status", headers=bearer(env.web_key))
    assert r.status_code == 403
    assert f"API key {env.web_id} is not scoped to github:acme/api" in r.json()["detail"]
    assert client.get(STATUS, headers=bearer(env.org_key)).status_code == 403
    assert client.get("/api/v1/repos/other/thing/healing/status", headers=bearer(env.org_key)).status_code == 200
    r = client.post("/api/v1/repos/acme/api/failures/1/heal", headers=bearer(env.web_key), json={})
    assert r.status_code == 403 and env.sink.sent == []


def test_bearer_and_x_api_key_both_work(env: Env, client: Any) -> None:
    assert client.get(STATUS, headers=bearer(env.web_key)).status_code == 200
    assert client.get(STATUS, headers={"X-API-Key": env.web_key}).status_code == 200
    assert client.get(STATUS, headers={"X-API-Key": env.all_key}).status_code == 200


def test_a_revocation_by_another_process_applies_to_the_next_request(env: Env, client: Any) -> None:
    assert client.get(STATUS, headers=bearer(env.web_key)).status_code == 200
    other = ApiKeys(env.keys.path)  # what `guard api-keys revoke` does in its own process
    assert other.revoke(env.web_id)
    assert client.get(STATUS, headers=bearer(env.web_key)).status_code == 401


# --- read routes -----------------------------------------------------------------------------------

def test_healing_status(env: Env, client: Any) -> None:
    r = client.get(STATUS, headers=bearer(env.web_key))
    assert r.status_code == 200
    assert r.json() == REPO_HEALTH
    r = client.get(STATUS + "?days=7", headers=bearer(env.web_key))
    assert r.json()["days"] == 7
    assert env.reader.calls[-1] == ("repo_health", "acme", "web", 7)
    r = client.get(STATUS + "?days=0", headers=bearer(env.web_key))
    assert r.status_code == 422 and r.json()["field"] == "days"
    r = client.get(STATUS + "?days=abc", headers=bearer(env.web_key))
    assert r.status_code == 422 and r.json()["field"] == "days"


def test_directive_for_a_rerun_job(env: Env, client: Any) -> None:
    url = "/api/v1/repos/acme/web/directive"
    r = client.get(url + "?run_id=42&job_name=build&attempt=2", headers=bearer(env.web_key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["applies_to_attempt"] == 2 and body["changes"] == ["2x memory"]
    assert body["directive"]["memory_factor"] == 2 and env.reader.calls[-1] == ("directive", "acme", "web", "build")
    r = client.get(url + "?run_id=43", headers=bearer(env.web_key))
    assert r.status_code == 404 and "runs as it is" in r.json()["detail"]
    r = client.get(url + "?job_name=build", headers=bearer(env.web_key))
    assert r.status_code == 404 and r.json()["field"] == "run_id" and "give run_id" in r.json()["detail"]
    r = client.get(url + "?run_id=a%20b", headers=bearer(env.web_key))
    assert r.status_code == 422 and r.json()["field"] == "run_id"
    assert client.get(url + "?run_id=42").status_code == 401


def test_gitlab_subgroup_owner_reaches_the_reader(env: Env, client: Any) -> None:
    r = client.get("/api/v1/repos/group/sub/proj/healing/status", headers=bearer(env.all_key))
    assert r.status_code == 200 and r.json()["repo"] == "group/sub/proj"
    assert env.reader.calls[-1] == ("repo_health", "group/sub", "proj", 30)


def test_failure_analysis_and_404(env: Env, client: Any) -> None:
    r = client.get(ANALYSIS, headers=bearer(env.web_key))
    assert r.status_code == 200
    assert r.json() == NETWORK_FAILURE
    r = client.get("/api/v1/repos/acme/web/failures/999/analysis", headers=bearer(env.web_key))
    assert r.status_code == 404
    body = r.json()
    assert body["field"] == "job_id" and "no diagnosis of job 999 in acme/web" in body["detail"]


def test_roi_returns_report_and_daily_for_the_window(env: Env, client: Any) -> None:
    r = client.get(ROI + "?days=14", headers=bearer(env.web_key))
    assert r.status_code == 200
    body = r.json()
    assert body["report"] == {**REPORT, "days": 14}
    assert body["daily"] == DAILY and body["actions"] == ACTIONS
    assert ("report", "acme", "web", 14) in env.reader.calls and ("daily", "acme", "web", 14) in env.reader.calls
    assert ("actions", "acme", "web", 14) in env.reader.calls
    client.get(ROI, headers=bearer(env.web_key))
    assert env.reader.calls[-1] == ("actions", "acme", "web", 30)


def test_roi_of_every_repository_the_key_may_read(env: Env, client: Any) -> None:
    """GET /api/v1/roi adds up the repositories a key may read: all for a * key (no narrowing), only its
    own for a scoped key, none for a key of repositories the warehouse does not hold."""
    r = client.get("/api/v1/roi?days=7", headers=bearer(env.all_key))
    assert r.status_code == 200
    body = r.json()
    assert body["repositories"] == ["github:acme/web", "github:other/lib", "gitlab:acme/web"]
    assert body["report"] == {**REPORT, "repo": None, "days": 7} and body["daily"] == DAILY
    assert body["actions"] == ACTIONS
    assert ("report", None, None, 7) in env.reader.calls  # a * key: every repository, unnarrowed
    r = client.get("/api/v1/roi", headers=bearer(env.web_key))  # acme/web on GitHub only
    assert r.status_code == 200 and r.json()["repositories"] == ["github:acme/web"]
    assert env.reader.calls[-3:] == [("report", None, None, 30, ("github:acme/web",)),
                                     ("daily", None, None, 30, ("github:acme/web",)),
                                     ("actions", None, None, 30, ("github:acme/web",))]
    r = client.get("/api/v1/roi", headers=bearer(env.org_key))  # other/* on GitHub
    assert r.json()["repositories"] == ["github:other/lib"]
    assert env.reader.calls[-1] == ("actions", None, None, 30, ("github:other/lib",))
    assert client.get("/api/v1/roi").status_code == 401
    assert client.get("/api/v1/roi", headers=bearer(env.old_key)).status_code == 401  # revoked
    assert client.get("/api/v1/roi?days=0", headers=bearer(env.all_key)).status_code == 422


def test_a_failing_warehouse_answers_503_not_500(env: Env) -> None:
    with env.client(reader=FakeReader(broken=True)) as c:
        r = c.get(STATUS, headers=bearer(env.web_key))
        assert r.status_code == 503
        assert "the warehouse did not answer" in r.json()["detail"]


# --- heal ------------------------------------------------------------------------------------------

def test_heal_queues_the_strategy_action_with_a_deterministic_id(env: Env, client: Any) -> None:
    r = client.post(HEAL, headers=bearer(env.web_key), json={"strategy": "network_backoff", "notify": False})
    assert r.status_code == 202
    body = r.json()
    expected_id = command_id("github/acme/web/123", 2, "retry_backoff")
    assert body == {"command_id": expected_id, "action": "retry_backoff", "status": "queued",
                    "strategy": "network_backoff", "job_key": "github/acme/web/123", "notify_command_id": None}
    [cmd] = env.sink.sent
    assert (cmd.provider, cmd.owner, cmd.repo, cmd.job_id, cmd.attempt, cmd.run_id) == (
        "github", "acme", "web", "123", 2, "9001")
    assert cmd.command_id == expected_id and cmd.action == "retry_backoff" and cmd.category == "network"
    assert cmd.parameters["backoff_seconds"] == [30, 120, 480]
    assert cmd.parameters["requested_by"] == f"api-key:{env.web_id}"
    assert cmd.evidence[0].line == 3
    Command.from_json(cmd.to_json())  # a record the executor accepts

    again = client.post(HEAL, headers=bearer(env.web_key), json={"strategy": "network-backoff"})
    assert again.status_code == 202 and again.json()["command_id"] == expected_id
    assert [c.command_id for c in env.sink.sent] == [expected_id, expected_id]  # the executor acts once


def test_heal_strategies_map_through_the_catalogue(env: Env, client: Any) -> None:
    def heal(job: str, **body: Any) -> dict[str, Any]:
        r = client.post(f"/api/v1/repos/acme/web/failures/{job}/heal", headers=bearer(env.all_key), json=body)
        assert r.status_code == 202, r.text
        return r.json()

    assert heal("777", strategy="FLAKY_TEST_RETRY")["action"] == "retry_tests_isolated"
    assert env.sink.sent[-1].parameters["tests"] == ["tests/test_api.py::test_login"]
    assert heal("777", strategy="race_condition")["action"] == "rerun_sequential"
    assert heal("123", strategy="oom_recovery")["action"] == "rerun_more_memory"  # overriding the diagnosis
    assert heal("123", strategy="dependency_hell")["action"] == "rerun_clean_dependencies"
    assert heal("123", strategy="infra_retry")["action"] == "retry"
    assert heal("123", strategy="cache_corruption")["action"] == "clear_cache_retry"
    assert heal("123", strategy="skip_and_notify")["action"] == "notify_oncall"
    assert heal("777", strategy="skip_and_notify")["action"] == "notify_author"
    assert heal("123", strategy="auto")["action"] == "retry_backoff"  # the first automatic recommendation
    assert heal("123")["strategy"] == "auto"  # no body: auto
    assert heal("777")["action"] == "notify_author"


def test_heal_auto_takes_the_action_as_it_answers_the_cause(env: Env) -> None:
    """``auto`` on a rate-limited job waits for the limit to reset: the rate-limit row's backoff, not the
    network row's (both are ``retry_backoff``; the action name alone picked the network one)."""
    limited = {**copy.deepcopy(NETWORK_FAILURE), "job_key": "github/acme/web/555", "job_id": "555",
               "category": "rate_limit", "commands": [],
               "recommendations": [{"action": "retry_backoff", "confidence": 0.95, "reason": "rate limited",
                                    "automatic": True}]}
    reader = FakeReader({("acme", "web", "555"): limited, ("acme", "web", "123"): NETWORK_FAILURE})
    with env.client(reader=reader) as c:
        for job in ("555", "123"):
            r = c.post(f"/api/v1/repos/acme/web/failures/{job}/heal", headers=bearer(env.all_key),
                       json={"strategy": "auto"})
            assert r.status_code == 202, r.text
    rate, network = env.sink.sent[-2].parameters, env.sink.sent[-1].parameters
    assert rate["backoff_seconds"] == [300, 900, 1800] and rate["honour_reset_headers"] is True
    assert network["backoff_seconds"] == [30, 120, 480] and "honour_reset_headers" not in network


def test_heal_notify(env: Env, client: Any) -> None:
    r = client.post(HEAL, headers=bearer(env.web_key), json={"strategy": "network_backoff",
                                                             "notify": ["slack", "pagerduty"]})
    body = r.json()
    assert r.status_code == 202 and body["notify_command_id"]
    rerun, note = env.sink.sent
    assert rerun.action == "retry_backoff" and note.action == "notify_oncall"
    assert note.command_id == body["notify_command_id"] != rerun.command_id
    assert (note.parameters["slack"], note.parameters["ticket"], note.parameters["page"]) == (True, False, True)
    assert rerun.command_id in note.reason
    env.sink.sent.clear()
    r = client.post("/api/v1/repos/acme/web/failures/777/heal", headers=bearer(env.web_key),
                    json={"strategy": "skip_and_notify", "notify": ["jira"]})
    assert r.status_code == 202 and r.json()["notify_command_id"] is None
    [cmd] = env.sink.sent
    assert cmd.action == "notify_author"
    assert (cmd.parameters["slack"], cmd.parameters["ticket"]) == (False, True)


def test_heal_accepts_a_preset_as_strategy(env: Env, client: Any) -> None:
    """The product document's request: the preset decides the action, ``notify: true`` keeps its meaning."""
    r = client.post(HEAL, headers=bearer(env.web_key), json={"strategy": "aggressive", "notify": True})
    assert r.status_code == 202, r.text
    body = r.json()
    rerun, note = env.sink.sent
    assert body == {"command_id": command_id("github/acme/web/123", 2, "retry_backoff"), "action": "retry_backoff",
                    "status": "queued", "strategy": "aggressive", "job_key": "github/acme/web/123",
                    "notify_command_id": note.command_id}
    assert rerun.parameters["strategy"] == "aggressive" and rerun.parameters["requested_by"] == f"api-key:{env.web_id}"
    assert note.action == "notify_oncall" and note.parameters["slack"] is True
    env.sink.sent.clear()
    # NETWORK_FAILURE is diagnosed at 0.82: under conservative's 0.9 a person is told, whatever is asked twice
    for name in ("Conservative", "conservative"):
        r = client.post(HEAL, headers=bearer(env.web_key), json={"strategy": name})
        assert r.status_code == 202 and r.json()["strategy"] == "conservative"
        assert r.json()["action"] == "notify_oncall" and r.json()["notify_command_id"] is None
    assert env.sink.sent[0].command_id == env.sink.sent[1].command_id
    assert "below the 0.90 threshold" in env.sink.sent[0].reason
    r = client.post("/api/v1/repos/acme/web/failures/777/heal", headers=bearer(env.web_key),
                    json={"strategy": "Auto_Detect"})
    assert r.status_code == 202 and r.json()["action"] == "notify_author" and r.json()["strategy"] == "auto-detect"


def test_heal_presets_start_from_the_apis_settings(env: Env) -> None:
    from healing_guard.settings import load_settings

    one_retry = load_settings(None, env={}, max_retries_per_job=1)
    app: Any = create_app(lambda: env.reader, keys=env.keys, actions=env.sink, settings=one_retry)
    with get_client(app) as c:  # NETWORK_FAILURE is attempt 2: over this install's limit of 1
        assert c.post(HEAL, headers=bearer(env.web_key), json={"strategy": "auto-detect"}).json()["action"] == "escalate"
        assert c.post(HEAL, headers=bearer(env.web_key), json={"strategy": "progressive"}).json()["action"] == "retry_backoff"


def test_heal_unknown_strategy_is_422_naming_the_field_and_the_choices(env: Env, client: Any) -> None:
    r = client.post(HEAL, headers=bearer(env.web_key), json={"strategy": "reboot_the_world"})
    assert r.status_code == 422
    body = r.json()
    assert body["field"] == "strategy"
    assert "unknown strategy 'reboot_the_world'" in body["detail"]
    for name in ("auto-detect", "progressive", "aggressive", "conservative",
                 "auto", "flaky_test_retry", "oom_recovery", "network_backoff", "skip_and_notify"):
        assert name in body["detail"]
    r = client.post(HEAL, headers=bearer(env.web_key), json={"strategy": 3})
    assert r.status_code == 422 and r.json()["field"] == "strategy" and "aggressive" in r.json()["detail"]
    r = client.post(HEAL, headers=bearer(env.web_key), json={"strategy": "auto", "notify": ["carrier-pigeon"]})
    assert r.status_code == 422 and r.json()["field"] == "notify"
    r = client.post(HEAL, headers={**bearer(env.web_key), "Content-Type": "application/json"}, data="{not json")
    assert r.status_code == 422 and r.json()["field"] == "body"
    assert env.sink.sent == []


def test_heal_404_for_an_unknown_job(env: Env, client: Any) -> None:
    r = client.post("/api/v1/repos/acme/web/failures/404/heal", headers=bearer(env.web_key), json={})
    assert r.status_code == 404 and "no diagnosis of job 404" in r.json()["detail"]
    assert env.sink.sent == []


def test_heal_503_without_a_sink_or_when_the_broker_fails(env: Env) -> None:
    with env.client(sink=None) as c:
        r = c.post(HEAL, headers=bearer(env.web_key), json={"strategy": "auto"})
        assert r.status_code == 503
        assert "heal requests need a broker" in r.json()["detail"]
        assert c.get(STATUS, headers=bearer(env.web_key)).status_code == 200  # reads still work
    with env.client(sink=ListSink(fail=True)) as c:
        r = c.post(HEAL, headers=bearer(env.web_key), json={"strategy": "auto"})
        assert r.status_code == 503
        assert "could not queue the command" in r.json()["detail"]


async def test_kafka_sink_produces_to_the_actions_topic_keyed_by_job(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiokafka

    from healing_guard.settings import load_settings

    produced: list[tuple[str, bytes, bytes]] = []
    events: list[str] = []

    class Producer:
        def __init__(self, **kw: Any) -> None:
            events.append(f"new {kw['bootstrap_servers']}")

        async def start(self) -> None:
            events.append("start")

        async def send_and_wait(self, topic: str, key: bytes, value: bytes) -> None:
            produced.append((topic, key, value))

        async def stop(self) -> None:
            events.append("stop")

    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", Producer)
    s = load_settings(None, env={}, broker_url="kafka://127.0.0.1:19092", topic_prefix="t1-")
    sink = KafkaCommandSink(s)
    cmd = Command(provider="github", owner="acme", repo="web", job_id="1", command_id="x" * 32, attempt=1,
                  action="retry", reason="r", category="network", confidence=0.9)
    await sink.send(cmd)
    await sink.send(cmd)
    await sink.close()
    assert events == ["new 127.0.0.1:19092", "start", "stop"]  # started once, lazily
    assert [(t, k) for t, k, _ in produced] == [("t1-guard.actions", b"github/acme/web/1")] * 2
    assert Command.from_json(produced[0][2]) == cmd


# --- the keys file ---------------------------------------------------------------------------------

def test_keys_file_holds_hashes_only_with_mode_0600(env: Env) -> None:
    text = env.keys.path.read_text(encoding="utf-8")
    for plaintext in (env.all_key, env.web_key, env.org_key, env.old_key):
        assert plaintext.startswith("hg_")
        assert plaintext not in text
        assert plaintext.split("_", 2)[2] not in text  # not even the secret part
    assert stat.S_IMODE(os.stat(env.keys.path).st_mode) == 0o600
    data = json.loads(text)
    assert {k["id"] for k in data["keys"]} == {env.all_id, env.web_id, env.org_id, env.old_id}
    assert all(k["hash"].startswith("sha256:") and len(k["hash"]) == 7 + 64 for k in data["keys"])
    assert [f for f in os.listdir(env.keys.path.parent) if f.startswith(".api-keys.")] == []  # no temp left


def test_keys_check_list_revoke(env: Env) -> None:
    k = env.keys
    assert k.check(env.web_key, "github", "acme", "web") is True
    assert k.check(env.web_key, "github", "acme", "api") == f"API key {env.web_id} is not scoped to github:acme/api"
    # the same name on another platform is another repository
    assert k.check(env.web_key, "gitlab", "acme", "web") == f"API key {env.web_id} is not scoped to gitlab:acme/web"
    assert k.check(env.old_key, "github", "acme", "web") == "missing, unknown or revoked API key"
    assert k.check(None, "github", "acme", "web") == "missing, unknown or revoked API key"
    forged = env.web_key[:-4] + ("AAAA" if not env.web_key.endswith("AAAA") else "BBBB")
    assert k.check(forged, "github", "acme", "web") == "missing, unknown or revoked API key"
    listed = {x.id: x for x in k.list()}
    assert listed[env.old_id].revoked is not None and listed[env.web_id].revoked is None
    assert listed[env.web_id].public() == {"id": env.web_id, "scopes": ["github:acme/web"],
                                           "created": listed[env.web_id].created, "revoked": None}
    assert "hash" not in listed[env.web_id].public()
    assert len(k) == 3
    assert k.revoke("nope") is False
    assert parse_scope("group/sub/proj") == "github:group/sub/proj" and parse_scope(" * ") == "*"
    assert parse_scope("group/sub/proj", "gitlab") == "gitlab:group/sub/proj"
    assert parse_scope("gitlab:group/*") == "gitlab:group/*" and parse_scope("jenkins:*") == "jenkins:*"
    for bad in ("acme", "acme/", "/web", "a b/c", "*/web", "github:acme"):
        with pytest.raises(ValueError, match="expected provider:owner/repo"):
            parse_scope(bad)
    with pytest.raises(ValueError, match="unknown provider 'travis'"):
        parse_scope("travis:acme/web")
    with pytest.raises(ValueError, match="at least one"):
        k.create([])


# --- OpenAPI ---------------------------------------------------------------------------------------

def test_openapi_document_describes_routes_auth_and_errors(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["info"]["title"] == "Self-healing pipeline guard API"
    assert set(doc["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    assert doc["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    paths = doc["paths"]
    assert set(paths) == {
        "/health", "/metrics", "/dashboard", "/api/v1/repos/{owner}/{repo}/healing/status",
        "/api/v1/repos/{owner}/{repo}/failures/{job_id}/analysis",
        "/api/v1/repos/{owner}/{repo}/failures/{job_id}/heal", "/api/v1/repos/{owner}/{repo}/roi",
        "/api/v1/repos/{owner}/{repo}/directive", "/api/v1/roi"}
    analysis = paths["/api/v1/repos/{owner}/{repo}/failures/{job_id}/analysis"]["get"]
    assert {"200", "401", "403", "404", "422", "503"} <= set(analysis["responses"])
    assert analysis["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert analysis["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]
    assert "security" not in paths["/health"]["get"]
    heal = paths["/api/v1/repos/{owner}/{repo}/failures/{job_id}/heal"]["post"]
    assert "202" in heal["responses"]
    strategy = doc["components"]["schemas"]["HealRequest"]["properties"]["strategy"]
    assert "network_backoff" in strategy["enum"] and "auto" in strategy["enum"]
    health = doc["components"]["schemas"]["RepoHealth"]["properties"]
    assert {"flaky_test_rate", "healing_success_rate"} <= set(health)


# --- the CLI ---------------------------------------------------------------------------------------

def _cli() -> Any:
    import typer

    from healing_guard.rest.cli import api_command, keys_app

    app = typer.Typer()
    app.command("api")(api_command)
    app.add_typer(keys_app, name="api-keys")
    return app


def test_api_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    app, runner, f = _cli(), CliRunner(), tmp_path / "k.json"
    res = runner.invoke(app, ["api-keys", "create", "--repo", "acme/web", "-r", "acme/api", "--keys-file", str(f)])
    assert res.exit_code == 0, res.output
    token = res.stdout.strip().splitlines()[-1]
    assert token.startswith("hg_")
    key_id = token.split("_")[1]
    assert ApiKeys(f).check(token, "github", "acme", "api") is True and token not in f.read_text()
    res = runner.invoke(app, ["api-keys", "list", "--json", "--keys-file", str(f)])
    row = json.loads(res.stdout.strip())
    assert row["id"] == key_id and row["scopes"] == ["github:acme/web", "github:acme/api"] and row["revoked"] is None
    assert token not in res.stdout
    assert runner.invoke(app, ["api-keys", "create", "--keys-file", str(f)]).exit_code == 2
    res = runner.invoke(app, ["api-keys", "create", "--repo", "nope", "--keys-file", str(f)])
    assert res.exit_code == 2 and "expected provider:owner/repo" in res.output
    assert runner.invoke(app, ["api-keys", "revoke", key_id, "--keys-file", str(f)]).exit_code == 0
    assert ApiKeys(f).check(token, "github", "acme", "api") != True  # noqa: E712
    assert runner.invoke(app, ["api-keys", "revoke", "ffffffffffff", "--keys-file", str(f)]).exit_code == 1
    res = runner.invoke(app, ["api-keys", "create", "--all", "--keys-file", str(f)])
    assert res.exit_code == 0 and ApiKeys(f).check(res.stdout.strip(), "gitlab", "any", "repo") is True


def test_api_command_wires_warehouse_reader_and_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import healing_guard.warehouse as wh
    import healing_guard.warehouse.read as read

    served: dict[str, Any] = {}
    monkeypatch.setattr(wh, "connect", lambda dsn: ("client", dsn))
    monkeypatch.setattr(wh, "migrate", lambda client, db: served.setdefault("migrated", db))
    monkeypatch.setattr(read.WarehouseReader, "from_settings", classmethod(lambda cls, client, s: FakeReader()))
    import healing_guard.rest.serve as serve

    class Server:  # what `guard api` runs: built by make_server, then run() (here: returns at once)
        def __init__(self, app: Any, **kw: Any) -> None:
            served.update(app=app, **kw)

        def run(self) -> None:
            served["ran"] = True

    monkeypatch.setattr(serve, "make_server", Server)
    f = tmp_path / "k.json"
    token = ApiKeys(f).create(["acme/web"])[1]
    args = ["api", "--host", "127.0.0.1", "--port", "8123", "--keys-file", str(f), "--clickhouse-dsn",
            "http://u:p@127.0.0.1:8123"]
    res = CliRunner().invoke(_cli(), [*args, "--broker", "embedded"], env={"GUARD_CONFIG": ""})
    assert res.exit_code == 0, res.output
    assert served["host"] == "127.0.0.1" and served["port"] == 8123 and served["migrated"] == "guard"
    assert served["ran"] is True
    assert "heal requests will answer 503" in res.output
    with get_client(served["app"]) as c:
        assert c.get(STATUS, headers=bearer(token)).json()["jobs"] == 120
        assert c.post(HEAL, headers=bearer(token), json={}).status_code == 503
    res = CliRunner().invoke(_cli(), [*args, "--broker", "kafka://127.0.0.1:19092"], env={"GUARD_CONFIG": ""})
    assert res.exit_code == 0 and "heal requests will answer 503" not in res.output


def test_api_command_explains_a_locked_chdb_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import healing_guard.warehouse as wh

    def locked(dsn: str) -> Any:
        raise wh.WarehouseConnectionError(f"chDB data directory {tmp_path} is in use by another process (PID 42); "
                                          "chDB allows one process per data directory")

    monkeypatch.setattr(wh, "connect", locked)
    res = CliRunner().invoke(_cli(), ["api", "--keys-file", str(tmp_path / "k.json"), "--clickhouse-dsn",
                                      f"chdb://{tmp_path}/ch"], env={"GUARD_CONFIG": ""})
    assert res.exit_code == 2
    assert "in use by another process (PID 42)" in res.output
    assert "stop the worker" in res.output and "ClickHouse server" in res.output



def test_a_key_is_scoped_to_its_platform_too(env: Env, client: Any) -> None:
    """``acme/web`` on GitHub and ``acme/web`` on GitLab are two repositories: a key for one does not read or
    heal the other."""
    lab_id, lab_key = env.keys.create(["acme/web"], "gitlab")
    for path in ("/healing/status", "/failures/123/analysis", "/roi"):
        url = f"/api/v1/repos/acme/web{path}"
        assert client.get(url, headers=bearer(env.web_key)).status_code == 200, path  # github by default
        r = client.get(url + "?provider=gitlab", headers=bearer(env.web_key))
        assert r.status_code == 403 and "gitlab:acme/web" in r.json()["detail"], path
        assert client.get(url, headers=bearer(lab_key)).status_code == 403, path
    r = client.post("/api/v1/repos/acme/web/failures/123/heal?provider=gitlab", headers=bearer(env.web_key))
    assert r.status_code == 403 and not env.sink.sent
    env.reader.providers.clear()
    r = client.get("/api/v1/repos/acme/web/failures/123/analysis?provider=gitlab", headers=bearer(lab_key))
    assert r.status_code == 404 and env.reader.providers == ["gitlab"]  # GitLab's acme/web has no such failure
    assert client.get("/api/v1/repos/acme/web/roi?provider=travis", headers=bearer(lab_key)).status_code == 422


def test_a_scope_written_before_scopes_named_a_platform_reads_as_githubs(tmp_path: Path) -> None:
    keys = ApiKeys(tmp_path / "api-keys.json")
    key_id, token = keys.create(["acme/web"])
    data = json.loads(keys.path.read_text())
    data["keys"][0]["scopes"] = ["acme/web"]  # as an older guard wrote it
    keys.path.write_text(json.dumps(data))
    fresh = ApiKeys(keys.path)
    assert fresh.check(token, "github", "acme", "web") is True
    assert fresh.check(token, "gitlab", "acme", "web") == f"API key {key_id} is not scoped to gitlab:acme/web"


def test_metrics_can_require_a_key_for_every_repository(env: Env) -> None:
    with env.client() as open_client:
        assert open_client.get("/metrics").status_code == 200
    with env.client(metrics_auth=True) as c:
        assert c.get("/metrics").status_code == 401
        r = c.get("/metrics", headers=bearer(env.web_key))
        assert r.status_code == 403 and "every repository" in r.json()["detail"]
        assert c.get("/metrics", headers=bearer(env.old_key)).status_code == 401  # revoked
        r = c.get("/metrics", headers={"X-API-Key": env.all_key})
        assert r.status_code == 200 and "healing_guard_" in r.text
