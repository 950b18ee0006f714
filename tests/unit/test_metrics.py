"""Prometheus metrics: the worker's helpers, the agents moving them, and the API's warehouse collector."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from healing_guard import metrics
from healing_guard.metrics import WorkerMetrics, cost_saved_usd, flaky_decisions, render_api_metrics
from healing_guard.engine.core import Decision
from healing_guard.schemas import Command, Finding, JobEvent, LogChunk, TestResult
from healing_guard.settings import Settings
from healing_guard.streams.worker import Guard, build_guard

from tests.unit.agents.test_agents import KEY, Capture, put

PRODUCT_NAMES = ("healing_guard_recovery_rate", "healing_guard_time_saved_minutes", "healing_guard_cost_saved_usd",
                 "healing_guard_failure_classification", "healing_guard_flaky_test_detection",
                 "healing_guard_analysis_duration_seconds", "healing_guard_remediation_duration_seconds")


def _job(**kw: Any) -> JobEvent:
    d: dict[str, Any] = dict(provider="github", owner="acme", repo="web", job_id="9", job_name="build",
                             status="completed", conclusion="failure", started_at=1000.0, completed_at=1600.0)
    d.update(kw)
    return JobEvent(**d)


def _command(action: str, category: str, **parameters: Any) -> Command:
    return Command(provider="github", owner="acme", repo="web", job_id="9", command_id="c", attempt=1,
                   action=action, reason="r", category=category, confidence=0.9, parameters=parameters)


def _decision(category: str, action: str, **parameters: Any) -> Decision:
    finding = Finding(provider="github", owner="acme", repo="web", job_id="9", finding_id="f", attempt=1,
                      category=category, confidence=0.9)
    return Decision(finding=finding, command=_command(action, category, **parameters))


def _value(m: WorkerMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    return m.registry.get_sample_value(name, labels or {}) or 0.0


# --- the rules -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("action", "category", "saved"), [
    ("notify_author", "compilation_error", 1.5),  # a code failure: a retry would fail again
    ("notify_author", "test_failure", 1.5),
    ("notify_oncall", "network", 1.5),  # a retry refused (gate, budget, expected value, pipeline)
    ("notify_oncall", "unknown", 1.5),  # left to a person: not re-run either (as the warehouse counts)
    ("escalate", "network", 1.5),
    ("retry_backoff", "network", 0.0),  # the guard paid the rerun
    ("retry_tests_isolated", "test_failure", 0.0),
])
def test_cost_saved_counts_failed_attempts_not_rerun(action: str, category: str, saved: float) -> None:
    assert cost_saved_usd(_command(action, category), 1.5) == saved


def test_flaky_decisions_by_command() -> None:
    assert flaky_decisions(_command("retry_tests_isolated", "test_failure", tests=["a", "b"])) == {"retry": 2}
    assert flaky_decisions(_command("rerun_sequential", "test_failure", tests=["a"])) == {"retry": 1}
    assert flaky_decisions(_command("quarantine_test", "test_failure", test_id="a")) == {"quarantine": 1}
    assert flaky_decisions(_command("release_test", "test_failure", test_id="a")) == {"release": 1}
    assert flaky_decisions(_command("notify_author", "test_failure")) == {}


# --- the worker's series -------------------------------------------------------------------------

def test_decision_moves_classification_durations_cost_and_flaky() -> None:
    m = WorkerMetrics()
    m.decision(_decision("compilation_error", "notify_author"), _job(), analysis_seconds=0.004,
               attempt_cost_usd=0.16, now=1630.0)
    m.decision(_decision("test_failure", "retry_tests_isolated", tests=["t1", "t2"]), _job(),
               analysis_seconds=0.002, attempt_cost_usd=0.16, now=1601.0)
    m.decision(_decision("network", "retry_backoff"), _job(completed_at=None), analysis_seconds=0.001,
               attempt_cost_usd=0.16, now=1601.0)
    assert _value(m, "healing_guard_failure_classification_total",
                  {"category": "compilation_error", "provider": "github"}) == 1
    assert _value(m, "healing_guard_failure_classification_total",
                  {"category": "network", "provider": "github"}) == 1
    assert _value(m, "healing_guard_analysis_duration_seconds_count") == 3
    assert _value(m, "healing_guard_analysis_duration_seconds_sum") == pytest.approx(0.007)
    assert _value(m, "healing_guard_analysis_duration_seconds_bucket", {"le": "0.0025"}) == 2
    # decide: from the platform's completion to the command (a job without completed_at is not timed)
    assert _value(m, "healing_guard_remediation_duration_seconds_count", {"stage": "decide"}) == 2
    assert _value(m, "healing_guard_remediation_duration_seconds_sum", {"stage": "decide"}) == pytest.approx(31.0)
    assert _value(m, "healing_guard_cost_saved_usd_total") == pytest.approx(0.16)  # only the one not re-run
    assert _value(m, "healing_guard_flaky_test_detection_total", {"decision": "retry"}) == 2


def test_next_attempt_sets_recovery_rate_and_time_saved() -> None:
    m = WorkerMetrics()
    m.next_attempt(("cleanup_retry", "disk_full"), _job(attempt=2, conclusion="success"), 30.0)
    m.next_attempt(("cleanup_retry", "disk_full"), _job(attempt=2, conclusion="failure"), 30.0)
    m.next_attempt(("cleanup_retry", "disk_full"), _job(attempt=2, conclusion="success"), 30.0)
    m.next_attempt(("retry", "infra_runner_lost"), _job(attempt=2, conclusion="timed_out"), 30.0)
    # a cancelled attempt says nothing about the action
    m.next_attempt(("retry", "infra_runner_lost"), _job(attempt=2, conclusion="cancelled"), 30.0)
    m.next_attempt(None, _job(attempt=2, conclusion="success"), 30.0)
    # not a re-run: the warehouse counts re-runs only (RERUN_ACTIONS), so the worker does too
    m.next_attempt(("quarantine_test", "test_failure"), _job(attempt=2, conclusion="success"), 30.0)
    m.next_attempt(("notify_author", "compilation_error"), _job(attempt=2, conclusion="success"), 30.0)
    assert m.registry.get_sample_value("healing_guard_recovery_rate", {"action": "quarantine_test"}) is None
    assert m.registry.get_sample_value("healing_guard_recovery_rate", {"action": "notify_author"}) is None
    assert _value(m, "healing_guard_recovery_rate", {"action": "cleanup_retry"}) == pytest.approx(2 / 3)
    assert _value(m, "healing_guard_recovery_rate", {"action": "retry"}) == 0.0
    assert m.registry.get_sample_value("healing_guard_recovery_rate", {"action": "retry"}) is not None
    assert _value(m, "healing_guard_time_saved_minutes_total") == 60.0


def test_time_saved_subtracts_the_guards_reaction() -> None:
    m = WorkerMetrics()
    # the command went out 6 minutes after the failed attempt completed (waiting for a late log)
    m.decision(_decision("network", "retry_backoff"), _job(), analysis_seconds=0.001, attempt_cost_usd=0.1,
               now=1600.0 + 360)
    m.next_attempt(("retry_backoff", "network"), _job(attempt=2, conclusion="success"), 30.0)
    assert _value(m, "healing_guard_time_saved_minutes_total") == pytest.approx(24.0)
    assert m._reactions == {}  # consumed: bounded by the actions in flight


def test_executing_times_even_a_failing_command() -> None:
    m = WorkerMetrics()
    with m.executing():
        pass
    with pytest.raises(RuntimeError), m.executing():
        raise RuntimeError("boom")
    assert _value(m, "healing_guard_remediation_duration_seconds_count", {"stage": "execute"}) == 2


def test_worker_registry_exposes_every_product_name() -> None:
    from prometheus_client import generate_latest

    m = WorkerMetrics()
    m.decision(_decision("network", "retry_backoff"), _job(), analysis_seconds=0.001, attempt_cost_usd=0.1,
               now=1601.0)
    m.next_attempt(("retry_backoff", "network"), _job(attempt=2, conclusion="success"), 30.0)
    with m.executing():
        pass
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(m.registry).decode())}
    assert set(PRODUCT_NAMES) <= set(families)
    assert families["healing_guard_failure_classification"].type == "counter"
    assert families["healing_guard_analysis_duration_seconds"].type == "histogram"
    assert families["healing_guard_recovery_rate"].type == "gauge"
    assert all(families[n].documentation for n in PRODUCT_NAMES)
    assert metrics.REGISTRY is metrics.WORKER.registry


def test_metrics_server_port_zero_serves_nothing() -> None:
    assert metrics.start_metrics_server("127.0.0.1", 0) is None


def test_metrics_server_serves_the_registry_over_http() -> None:
    import urllib.request

    from healing_guard.brokers import free_port

    m = WorkerMetrics()
    m.cost_saved_usd.inc(2.5)
    port = free_port()
    server, thread = metrics.start_metrics_server("127.0.0.1", port, registry=m.registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "healing_guard_cost_saved_usd_total 2.5" in body


# --- the agents move them ------------------------------------------------------------------------

@pytest.fixture()
def guard() -> Guard:
    s = Settings(broker_url="kafka://127.0.0.1:1", facts_enabled=False, test_grace_seconds=0.0, partitions=1,
                 app_id="unit-metrics", human_response_minutes=25.0)
    return build_guard(s)


def _w(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_ingest_counts_a_diagnosis_and_the_recovery_of_its_action(guard: Guard) -> None:
    Capture(guard)
    agent = guard.agents["ingest"]
    topic = guard.ctx.settings.topics
    labels = {"category": "disk_full", "provider": "gitlab"}
    before = (_w("healing_guard_failure_classification_total", labels),
              _w("healing_guard_analysis_duration_seconds_count"),
              _w("healing_guard_time_saved_minutes_total"))

    def done(attempt: int, conclusion: str) -> bytes:
        at = time.time()  # the guard reacts within the second: nearly all of the 25 minutes are saved
        return JobEvent(provider="gitlab", owner="platform", repo="api", job_id="77", job_name="build",
                        status="completed", conclusion=conclusion, exit_code=1, log_chunks=1, attempt=attempt,
                        started_at=at - 600, completed_at=at).to_json()

    chunk = LogChunk(provider="gitlab", owner="platform", repo="api", job_id="77", seq=0, attempt=1,
                     lines=["ERROR: Could not install packages due to an OSError: [Errno 28] "
                            "No space left on device"], eof=True).to_json()
    async with agent.test_context() as agent_ctx:
        await put(agent_ctx, topic.logs, KEY, chunk)
        await put(agent_ctx, topic.jobs, KEY, done(1, "failure"))
        await put(agent_ctx, topic.jobs, KEY, done(2, "success"))  # the cleanup worked
    assert _w("healing_guard_failure_classification_total", labels) == before[0] + 1
    assert _w("healing_guard_analysis_duration_seconds_count") == before[1] + 1
    assert _w("healing_guard_time_saved_minutes_total") == pytest.approx(before[2] + 25.0, abs=0.1)
    assert _w("healing_guard_recovery_rate", {"action": "cleanup_retry"}) > 0


async def test_ingest_counts_the_cost_of_a_code_failure_it_did_not_retry(guard: Guard) -> None:
    cap = Capture(guard)
    agent = guard.agents["ingest"]
    topic = guard.ctx.settings.topics
    before = _w("healing_guard_cost_saved_usd_total")
    chunk = LogChunk(provider="gitlab", owner="platform", repo="api", job_id="77", seq=0,
                     lines=["src/main.rs:10:5: error[E0425]: cannot find value `x` in this scope",
                            "error: could not compile `app` due to previous error"], eof=True).to_json()
    job = JobEvent(provider="gitlab", owner="platform", repo="api", job_id="77", job_name="build",
                   status="completed", conclusion="failure", exit_code=101, log_chunks=1, runner_size="large",
                   started_at=1000.0, completed_at=1600.0).to_json()  # 10 minutes on a large runner
    async with agent.test_context() as agent_ctx:
        await put(agent_ctx, topic.logs, KEY, chunk)
        await put(agent_ctx, topic.jobs, KEY, job)
    assert cap.values("actions")[0]["action"] == "notify_author"
    assert _w("healing_guard_cost_saved_usd_total") == pytest.approx(before + 10 * 0.032)


async def test_tests_agent_counts_quarantine_and_release(guard: Guard) -> None:
    Capture(guard)
    agent = guard.agents["tests"]
    before = (_w("healing_guard_flaky_test_detection_total", {"decision": "quarantine"}),
              _w("healing_guard_flaky_test_detection_total", {"decision": "release"}))
    test_id = "tests/test_a.py::test_flaky"
    outcomes = ["failed" if i % 3 == 1 else "passed" for i in range(30)] + ["passed"] * 60
    async with agent.test_context() as agent_ctx:
        for i, outcome in enumerate(outcomes):
            r = TestResult(provider="github", owner="o", repo="r", job_id=str(i), test_id=test_id, outcome=outcome)
            await agent_ctx.put(key=test_id.encode(), value=r.to_json())
    assert _w("healing_guard_flaky_test_detection_total", {"decision": "quarantine"}) == before[0] + 1
    assert _w("healing_guard_flaky_test_detection_total", {"decision": "release"}) == before[1] + 1


# --- the REST API's collector --------------------------------------------------------------------

def _report(repo: str | None, scale: int) -> dict[str, Any]:
    """A report() shaped as in the contract (healing_guard.warehouse.read.WarehouseReader)."""
    return {
        "repo": repo, "days": None, "jobs": 10 * scale, "failed_jobs": 4 * scale, "ci_minutes": 100.0 * scale,
        "ci_cost_usd": 1.6 * scale, "auto_commands": 2 * scale, "manual_commands": 2 * scale,
        "time_saved_minutes": 30.0 * scale, "rerun_cost_usd": 0.3 * scale, "cost_avoided_usd": 0.5 * scale,
        "cost_saved_usd": 0.5 * scale, "mttr_minutes": 12.0, "mttg_minutes": 20.0, "open_failures": 1,
        "recovery_rate": 0.5,
        "recovery_by_strategy": [{"action": "retry_backoff", "commands": 2 * scale, "recovered": scale, "rate": 0.5},
                                 {"action": "cleanup_retry", "commands": 1, "recovered": 0, "rate": None}],
        "tests_seen": 50, "flaky_tests": 3 * scale, "flaky_test_rate": 0.06,
        "flakiest_tests": [{"test_id": "t", "runs": 10, "failures": 3, "flaky_jobs": 2}],
        "failures_by_category": {"network": 3 * scale, "compilation_error": scale},
        "top_templates": [{"template": "npm ERR! code <*>", "category": "network", "count": 3}],
        "budget": [{"day": "2026-11-26", "spent_usd": 0.3, "budget_usd": 200.0, "burn": 0.0015}],
    }


class FakeReader:
    def __init__(self) -> None:
        self.calls: list[tuple[str | None, str | None]] = []

    def report(self, owner: str | None = None, repo: str | None = None, days: int | None = None) -> dict[str, Any]:
        self.calls.append((owner, repo))
        if owner is None:
            return _report(None, 3)
        return _report(f"{owner}/{repo}", 1 if repo == "web" else 2)

    def repos(self) -> list[str]:
        return ["acme/web", "acme/api"]


class BrokenReader:
    def report(self, owner: str | None = None, repo: str | None = None, days: int | None = None) -> dict[str, Any]:
        raise ConnectionError("clickhouse is away")

    def repos(self) -> list[str]:
        raise ConnectionError("clickhouse is away")


def _samples(body: bytes) -> tuple[dict[str, Any], dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    values = {(s.name, frozenset(s.labels.items())): s.value for f in families.values() for s in f.samples}
    return families, values


def test_api_metrics_expose_the_warehouse_totals_and_each_repository() -> None:
    reader = FakeReader()
    body, content_type = render_api_metrics(reader)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert reader.calls == [(None, None), ("acme", "web"), ("acme", "api")]
    families, v = _samples(body)

    def get(name: str, **labels: str) -> float:
        return v[(name, frozenset(labels.items()))]

    assert get("healing_guard_warehouse_up") == 1
    assert families["healing_guard_failure_classification"].type == "counter"
    assert get("healing_guard_failure_classification_total", category="network") == 9
    assert get("healing_guard_failure_classification_total", category="network", repo="acme/web") == 3
    assert get("healing_guard_failure_classification_total", category="compilation_error", repo="acme/api") == 2
    assert get("healing_guard_time_saved_minutes_total") == 90.0
    assert get("healing_guard_time_saved_minutes_total", repo="acme/api") == 60.0
    assert get("healing_guard_cost_saved_usd_total") == pytest.approx(1.5)
    assert get("healing_guard_cost_saved_usd_total", repo="acme/web") == pytest.approx(0.5)
    assert families["healing_guard_recovery_rate"].type == "gauge"
    assert get("healing_guard_recovery_rate") == 0.5
    assert get("healing_guard_recovery_rate", action="retry_backoff", repo="acme/web") == 0.5
    assert ("healing_guard_recovery_rate", frozenset({("action", "cleanup_retry")})) not in v  # rate unknown
    assert get("healing_guard_flaky_test_detection") == 9
    assert get("healing_guard_flaky_test_detection", repo="acme/api") == 6
    # the guard's re-run spend and the flaky-test rate, as the report gives them (rerun_cost_usd, flaky_test_rate)
    assert families["healing_guard_rerun_cost_usd"].type == "counter"
    assert get("healing_guard_rerun_cost_usd_total") == pytest.approx(0.9)
    assert get("healing_guard_rerun_cost_usd_total", repo="acme/web") == pytest.approx(0.3)
    assert get("healing_guard_flaky_test_rate", repo="acme/web") == pytest.approx(0.06)
    # the five warehouse-backed product names; the duration histograms live on the worker and executor
    assert set(PRODUCT_NAMES[:5]) <= set(families)
    assert not {"healing_guard_analysis_duration_seconds", "healing_guard_remediation_duration_seconds"} & set(families)
    assert all(families[n].documentation for n in PRODUCT_NAMES[:5])


def test_api_metrics_find_a_gitlab_subgroup_projects_data() -> None:
    """The warehouse stores grp/sub/proj as owner grp/sub, repo proj (split at the last '/', like the
    webhook receiver); the per-repository series must ask for it that way."""
    stored = {("grp/sub", "proj"): _report("grp/sub/proj", 2), ("acme", "web"): _report("acme/web", 1)}

    class Warehouse(FakeReader):
        def report(self, owner: str | None = None, repo: str | None = None,
                   days: int | None = None) -> dict[str, Any]:
            self.calls.append((owner, repo))
            if owner is None:
                return _report(None, 3)
            return stored.get((owner, repo)) or {"failures_by_category": {}, "recovery_rate": None,
                                                 "recovery_by_strategy": [], "time_saved_minutes": 0.0,
                                                 "cost_saved_usd": 0.0, "flaky_tests": 0}

        def repos(self) -> list[str]:
            return ["acme/web", "grp/sub/proj"]

    reader = Warehouse()
    _, v = _samples(render_api_metrics(reader)[0])
    assert reader.calls == [(None, None), ("acme", "web"), ("grp/sub", "proj")]
    repo = ("repo", "grp/sub/proj")
    assert v[("healing_guard_failure_classification_total", frozenset({repo, ("category", "network")}))] == 6
    assert v[("healing_guard_time_saved_minutes_total", frozenset({repo}))] == 60.0
    assert v[("healing_guard_flaky_test_detection", frozenset({repo}))] == 6


def test_api_metrics_answer_when_the_warehouse_is_away() -> None:
    body, _ = render_api_metrics(BrokenReader())
    families, v = _samples(body)
    assert v == {("healing_guard_warehouse_up", frozenset()): 0.0}
    assert families["healing_guard_warehouse_up"].type == "gauge"


def test_api_metrics_with_no_repository_yet() -> None:
    class Empty(FakeReader):
        def report(self, owner: str | None = None, repo: str | None = None,
                   days: int | None = None) -> dict[str, Any]:
            return {"failures_by_category": {}, "recovery_rate": None, "recovery_by_strategy": [],
                    "time_saved_minutes": 0.0, "cost_saved_usd": 0.0, "flaky_tests": 0}

        def repos(self) -> list[str]:
            return []

    _, v = _samples(render_api_metrics(Empty())[0])
    assert v[("healing_guard_warehouse_up", frozenset())] == 1
    assert v[("healing_guard_time_saved_minutes_total", frozenset())] == 0.0
    assert ("healing_guard_recovery_rate", frozenset()) not in v
