"""Prometheus metrics of the guard, in one place: what each series measures and when it moves.

Two producers expose the same product names:

- **The worker** (and the executor) count events as they happen, on :data:`REGISTRY` (a module-level
  registry, not prometheus_client's global one, so tests and processes stay clean), served by
  :func:`start_metrics_server` when ``metrics.port`` is set. The agents call the methods of
  :data:`WORKER`; the rules of *what* counts live here, not in the agents.
- **The REST API** (:func:`render_api_metrics`) reads the warehouse at scrape time: all-time totals over
  every repository (no ``repo`` label) and per repository (``repo="owner/repo"``, every platform's
  repository of that name). They are ``guard report --all-time``'s figures (and the ROI route's and
  Grafana's for the same window): one definition, the SQL of ``infra/clickhouse/queries``. The duration
  histograms are not served there: the warehouse keeps no timings (scrape them from the worker and the
  executor). A warehouse that cannot be read gives ``healing_guard_warehouse_up 0`` and nothing else.

The two producers count the same things by the same rules (a re-run recovered when the job's next
attempt, the re-run, succeeded; time saved ``max(0, human_response_minutes - reaction)``), but over
different spans: the worker's since its process started, the API's over the warehouse's whole history.
Compare the API's with ``guard report``, not with a worker's.

Pure: no Faust, Kafka or ClickHouse imports (the API passes a reader object in).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
try:  # the classic text format every Prometheus reads (prometheus-client >= 0.22 names it)
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
except ImportError:  # older clients: their latest is that format
    from prometheus_client.exposition import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client.samples import Sample

from .remediate.actions import NOTIFY_ACTIONS, is_rerun
from .remediate.strategies import FLAKY_RETRY, RACE_RETRY

if TYPE_CHECKING:
    from .engine.core import Decision
    from .schemas import Command, JobEvent

__all__ = ["REGISTRY", "WORKER", "WorkerMetrics", "render_api_metrics", "start_metrics_server",
           "cost_saved_usd", "flaky_decisions"]

log = logging.getLogger(__name__)

#: seconds; classification + planning of one job is milliseconds, a huge log's evidence a little more
ANALYSIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: seconds; deciding waits for missing chunks / test results (grace periods), executing calls CI APIs
REMEDIATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)

#: reaction times kept for the next attempt's time saved (one per automatic action in flight)
MAX_PENDING_REACTIONS = 10_000
_FLAKY_RERUNS = frozenset({FLAKY_RETRY.action, RACE_RETRY.action})

HELP = {
    "failure_classification": "Failed job attempts diagnosed, by failure category (one per attempt).",
    "analysis_duration": "Seconds to diagnose a failed job once its log is ready: classification plus "
                         "choosing the remediation.",
    "flaky_test_detection": "Tests judged flaky by their per-test model, by what the guard did: "
                            "retry (rerun as a known flaky test), quarantine, release (stable again).",
    "remediation_duration": "Seconds of remediation, by stage: decide = from the job's completion (platform "
                            "time) to its command on guard.actions, including waits for late log chunks and "
                            "test results; execute = the executor carrying one command out.",
    "recovery_rate": "Share of automatic re-runs whose re-run (the job's next attempt) succeeded, by action "
                     "(attempts that ended success or failure since this process started).",
    "time_saved_minutes": "Minutes of waiting saved: for each automatic re-run whose re-run attempt succeeded, "
                          "the minutes a person would have taken to notice and re-run (human_response_minutes) "
                          "minus the guard's own reaction time.",
    "cost_saved_usd": "USD of CI retries not made: the cost of each failed attempt the guard diagnosed and did not "
                      "re-run (code failures sent to the author, retries refused by the confidence gate, the budget "
                      "or the expected value, escalations, causes left to a person), which a blind retry-once would "
                      "have paid.",
    "warehouse_up": "1 when the warehouse answered this scrape, 0 when it could not be read.",
}


def cost_saved_usd(command: Command, attempt_cost_usd: float) -> float:
    """What a blind retry-once would have paid again for this diagnosed attempt and the guard did not.

    The warehouse's "cost avoided" (``retries_avoided``, 003_roi.sql as 004_rerun_same_commit.sql redefines
    it) at decision time: every failed attempt the guard diagnosed and did not re-run (``notify_author``
    for code failures, ``notify_oncall`` when the gate, the budget or the expected value refused a retry or
    the cause is left to a person, ``escalate``), at the attempt's own CI cost. The warehouse later also
    leaves out attempts that a later attempt on the same commit turned green (a re-run would have
    helped); the worker cannot see that when it decides, so its counter is an upper bound of the API's.
    """
    if command.action in NOTIFY_ACTIONS:
        return max(attempt_cost_usd, 0.0)
    return 0.0


def flaky_decisions(command: Command) -> dict[str, int]:
    """How many tests a command treats as flaky, by decision (retry / quarantine / release)."""
    if command.action in _FLAKY_RERUNS:
        tests = command.parameters.get("tests") or []
        return {"retry": len(tests)} if tests else {}
    if command.action == "quarantine_test":
        return {"quarantine": 1}
    if command.action == "release_test":
        return {"release": 1}
    return {}


class WorkerMetrics:
    """The worker's and executor's series on one registry (tests make their own instance)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.failure_classification = Counter("healing_guard_failure_classification", HELP["failure_classification"],
                                              ["category", "provider"], registry=r)
        self.analysis_duration = Histogram("healing_guard_analysis_duration_seconds", HELP["analysis_duration"],
                                           buckets=ANALYSIS_BUCKETS, registry=r)
        self.flaky_test_detection = Counter("healing_guard_flaky_test_detection", HELP["flaky_test_detection"],
                                            ["decision"], registry=r)
        self.remediation_duration = Histogram("healing_guard_remediation_duration_seconds",
                                              HELP["remediation_duration"], ["stage"],
                                              buckets=REMEDIATION_BUCKETS, registry=r)
        self.recovery_rate = Gauge("healing_guard_recovery_rate", HELP["recovery_rate"], ["action"], registry=r)
        self.time_saved_minutes = Counter("healing_guard_time_saved_minutes", HELP["time_saved_minutes"],
                                          registry=r)
        self.cost_saved_usd = Counter("healing_guard_cost_saved_usd", HELP["cost_saved_usd"], registry=r)
        #: action -> [next attempts that succeeded, next attempts that failed]
        self._next_attempts: dict[str, list[int]] = {}
        #: (job key, attempt) of an automatic action -> minutes from the attempt's completion to its command
        self._reactions: dict[tuple[str, int], float] = {}

    # --- the job agent -------------------------------------------------------------------------
    def decision(self, decision: Decision, job: JobEvent, *, analysis_seconds: float, attempt_cost_usd: float,
                 now: float | None = None) -> None:
        """A failed attempt was diagnosed and its command sent to guard.actions."""
        now = time.time() if now is None else now
        f, cmd = decision.finding, decision.command
        self.failure_classification.labels(category=f.category, provider=f.provider).inc()
        self.analysis_duration.observe(max(analysis_seconds, 0.0))
        reaction = None
        if job.completed_at is not None and now >= job.completed_at:
            reaction = now - job.completed_at
            self.remediation_duration.labels(stage="decide").observe(reaction)
        if is_rerun(cmd.action):  # its next attempt tells the time saved
            self._reactions[(job.job_key, job.attempt)] = (reaction or 0.0) / 60.0
            while len(self._reactions) > MAX_PENDING_REACTIONS:
                del self._reactions[next(iter(self._reactions))]
        saved = cost_saved_usd(cmd, attempt_cost_usd)
        if saved > 0:
            self.cost_saved_usd.inc(saved)
        self.flaky(cmd)

    def next_attempt(self, retried: tuple[str, str] | None, job: JobEvent, human_response_minutes: float) -> None:
        """The attempt after an automatic re-run concluded: success means the re-run recovered the job
        (the warehouse's rule, ``004_rerun_same_commit.sql``: re-runs only, decided by the re-run attempt).

        Time saved is ``max(0, human_response_minutes - reaction)``, the reaction being the minutes from
        the failed attempt's completion to the command, as the warehouse counts it (0 when this process
        did not decide that attempt, e.g. after a restart or a rebalance).
        """
        reaction = self._reactions.pop((job.job_key, job.attempt - 1), 0.0)
        if retried is None or job.conclusion in (None, "cancelled", "skipped"):
            return
        action = retried[0]
        if not is_rerun(action):
            return
        counts = self._next_attempts.setdefault(action, [0, 0])
        ok = job.conclusion == "success"
        counts[0 if ok else 1] += 1
        self.recovery_rate.labels(action=action).set(counts[0] / (counts[0] + counts[1]))
        if ok:
            self.time_saved_minutes.inc(max(human_response_minutes - reaction, 0.0))

    # --- the test agent ------------------------------------------------------------------------
    def flaky(self, command: Command | None) -> None:
        """A command that treats tests as flaky (rerun, quarantine, release)."""
        if command is None:
            return
        for decision, n in flaky_decisions(command).items():
            self.flaky_test_detection.labels(decision=decision).inc(n)

    # --- the executor --------------------------------------------------------------------------
    @contextmanager
    def executing(self) -> Iterator[None]:
        """Times one command carried out by the executor (stage=execute), even when it raises."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.remediation_duration.labels(stage="execute").observe(time.perf_counter() - t0)


#: The process's metrics: the agents and the executor record here, :func:`start_metrics_server` serves it.
WORKER = WorkerMetrics()
REGISTRY = WORKER.registry


def start_metrics_server(host: str, port: int, registry: CollectorRegistry | None = None) -> Any:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; ``port`` 0 serves nothing (returns None).

    Returns prometheus_client's (server, thread); a port that cannot be bound raises OSError.
    """
    if not port:
        return None
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host, registry=registry if registry is not None else REGISTRY)


# --- the REST API: the warehouse at scrape time -------------------------------------------------

class ReportReader(Protocol):
    """The part of the warehouse reader the metrics need (healing_guard.warehouse.read.WarehouseReader)."""

    def report(self, owner: str | None = None, repo: str | None = None, days: int | None = None) -> dict[str, Any]: ...

    def repos(self) -> list[str]: ...


def _add(metric: Metric, suffix: str, labels: Mapping[str, str], value: float | int | None) -> None:
    """One sample with its own label set: all-repo totals carry no ``repo`` label, per-repo ones do."""
    if value is None:
        return
    metric.samples.append(Sample(metric.name + suffix, dict(labels), float(value), None))


class WarehouseCollector:
    """Reads ``reader.report()`` for all repositories and for each of ``reader.repos()`` on every scrape."""

    def __init__(self, reader: ReportReader) -> None:
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("healing_guard_warehouse_up", HELP["warehouse_up"])
        try:
            reports: list[tuple[dict[str, str], dict[str, Any]]] = [({}, self.reader.report())]
            for name in self.reader.repos():
                # the owner is everything before the last '/', as the warehouse stores it: GitLab
                # subgroups (grp/sub/proj) and Jenkins folders stay in the owner (platforms/webhooks.py)
                owner, _, repo = name.rpartition("/")
                if not owner or not repo:  # not an "owner/repo" name: nothing to ask for
                    continue
                reports.append(({"repo": name}, self.reader.report(owner, repo)))
            families = _families(reports)
        except Exception:  # a scrape must answer: the warehouse being away is itself the signal
            log.warning("metrics: the warehouse could not be read", exc_info=True)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families


def _families(reports: list[tuple[dict[str, str], dict[str, Any]]]) -> list[Metric]:
    classification = CounterMetricFamily("healing_guard_failure_classification", HELP["failure_classification"])
    recovery = GaugeMetricFamily("healing_guard_recovery_rate",
                                 "Share of automatic re-runs whose re-run attempt (the job's next attempt on the same "
                                 "commit) succeeded, among those whose re-run attempt concluded: overall (no action "
                                 "label) and by action (warehouse, all time).")
    time_saved = CounterMetricFamily("healing_guard_time_saved_minutes", HELP["time_saved_minutes"])
    cost_saved = CounterMetricFamily("healing_guard_cost_saved_usd",
                                     "USD of useless CI retries not made: the cost of each failed attempt the guard "
                                     "diagnosed and did not re-run, whose next attempt did not succeed on the same "
                                     "commit, which a blind retry-once would have paid (warehouse, all time).")
    rerun_cost = CounterMetricFamily("healing_guard_rerun_cost_usd",
                                     "USD the guard's automatic re-runs cost: each re-run attempt's CI cost, or the "
                                     "planner's estimate until it has run (warehouse, all time).")
    flaky = GaugeMetricFamily("healing_guard_flaky_test_detection",
                              "Flaky tests: the guard judged them flaky (re-ran them as flaky tests or quarantined "
                              "them) or they failed and passed on one commit (warehouse, all time).")
    flaky_rate = GaugeMetricFamily("healing_guard_flaky_test_rate",
                                   "Flaky tests / tests seen (warehouse, all time).")
    for base, r in reports:
        for category, n in sorted((r.get("failures_by_category") or {}).items()):
            _add(classification, "_total", {**base, "category": str(category)}, n)
        _add(recovery, "", base, r.get("recovery_rate"))
        for s in r.get("recovery_by_strategy") or []:
            _add(recovery, "", {**base, "action": str(s["action"])}, s.get("rate"))
        _add(time_saved, "_total", base, r.get("time_saved_minutes") or 0.0)
        _add(cost_saved, "_total", base, r.get("cost_saved_usd") or 0.0)
        _add(rerun_cost, "_total", base, r.get("rerun_cost_usd") or 0.0)
        _add(flaky, "", base, r.get("flaky_tests") or 0)
        _add(flaky_rate, "", base, r.get("flaky_test_rate"))
    return [classification, recovery, time_saved, cost_saved, rerun_cost, flaky, flaky_rate]


def render_api_metrics(reader: ReportReader) -> tuple[bytes, str]:
    """The REST API's ``GET /metrics``: body and content type, read from the warehouse now.

    A fresh registry per scrape, so nothing is cached between scrapes and nothing leaks into the
    worker's registry. Never raises for a failing reader (``healing_guard_warehouse_up 0``).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WarehouseCollector(reader))
    return generate_latest(registry), CONTENT_TYPE
