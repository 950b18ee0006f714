"""The ROI figures to an observability backend, as OpenTelemetry metrics over OTLP/HTTP.

``reporting.export_to`` names where (the product document's ``export_to: "lang-observatory"``): an OTLP
endpoint URL, or a name that ``reporting.endpoints`` maps to one (``GUARD_EXPORT_ENDPOINT`` gives the URL
for whatever name is configured). ``reporting.granularity`` is how often: ``hourly`` or ``daily``; each
export is the ROI report of the day before it (a rolling 24 hours: ``guard report --days 1``), one gauge
per figure under the names the product document lists (:data:`METRICS`), with ``repo`` and ``window``
attributes. ``guard export`` runs it (``--once`` for cron).

Uses the OpenTelemetry SDK and its OTLP/HTTP exporter (the ``otlp`` extra); nothing is imported until an
export is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["METRICS", "ExportError", "endpoint_of", "export_report", "points"]

#: (metric name, report field, unit, description): the product document's names first
METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("healing_guard_recovery_rate", "recovery_rate", "1",
     "share of the guard's automatic reruns after which the job went green"),
    ("healing_guard_time_saved_minutes", "time_saved_minutes", "min",
     "minutes of developer time the guard's reruns saved (a person's reaction time each)"),
    ("healing_guard_cost_saved_usd", "cost_saved_usd", "USD",
     "CI cost avoided: reruns of failures a person would have rerun too, done once by the guard"),
    ("healing_guard_rerun_cost_usd", "rerun_cost_usd", "USD", "what the guard's reruns cost"),
    ("healing_guard_mttr_minutes", "mttr_minutes", "min", "mean time from a failure the guard acted on to green"),
    ("healing_guard_mttg_minutes", "mttg_minutes", "min", "mean time from any failure to green"),
    ("healing_guard_flaky_test_rate", "flaky_test_rate", "1", "share of the tests seen that the guard judged flaky"),
    ("healing_guard_jobs", "jobs", "{job}", "job attempts seen"),
    ("healing_guard_failed_jobs", "failed_jobs", "{job}", "failed job attempts"),
    ("healing_guard_ci_cost_usd", "ci_cost_usd", "USD", "CI cost of every attempt seen"),
)
#: failures per category: one gauge with a ``category`` attribute
CLASSIFICATION = "healing_guard_failure_classification"


class ExportError(RuntimeError):
    """The export could not be made or was refused; the message says what to do."""


def endpoint_of(settings: Any, env: Mapping[str, str] | None = None) -> str:
    """The OTLP/HTTP base URL ``reporting.export_to`` names (``GUARD_EXPORT_ENDPOINT`` wins)."""
    env = env or {}
    target = settings.export_to
    if not target:
        raise ExportError("nothing to export to: set reporting.export_to (an OTLP endpoint URL or a name in "
                          "reporting.endpoints), or cost_control.reporting.export_to in the document's format")
    if env.get("GUARD_EXPORT_ENDPOINT"):
        return env["GUARD_EXPORT_ENDPOINT"]
    if target.startswith(("http://", "https://")):
        return target
    url = dict(settings.export_endpoints).get(target)
    if not url:
        raise ExportError(f"reporting.export_to: {target!r} names no endpoint: add `reporting: {{endpoints: "
                          f"{{{target}: http://collector:4318}}}}` to healing-config.yml or set GUARD_EXPORT_ENDPOINT")
    return str(url)


def points(report: Mapping[str, Any]) -> list[tuple[str, float, dict[str, str]]]:
    """(metric, value, attributes) of one ROI report: figures that are unknown (None) are left out."""
    attrs = {"repo": str(report.get("repo") or "*"),
             "window": "all" if report.get("days") is None else f"{report['days']}d"}
    out = [(name, float(report[key]), attrs) for name, key, _, _ in METRICS if report.get(key) is not None]
    for cat, n in (report.get("failures_by_category") or {}).items():
        out.append((CLASSIFICATION, float(n), {**attrs, "category": str(cat)}))
    return out


def export_report(report: Mapping[str, Any], endpoint: str, *, timeout: float = 10.0,
                  headers: Mapping[str, str] | None = None) -> int:
    """Send one report's figures as gauges to ``endpoint`` (``/v1/metrics`` appended); the number of data
    points sent. Raises :class:`ExportError` when the SDK is missing or the backend refuses."""
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.metrics import CallbackOptions, Observation
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        raise ExportError("the OTLP export needs the otlp extra: pip install 'self-healing-pipeline-guard[otlp]'") from None

    pts = points(report)
    units = {name: (unit, desc) for name, _, unit, desc in METRICS}
    units[CLASSIFICATION] = ("{job}", "failed job attempts per failure category")
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create({"service.name": "healing-guard"}), metric_readers=[reader])
    meter = provider.get_meter("healing_guard.roi")
    for name in dict.fromkeys(n for n, _, _ in pts):
        mine = [(v, a) for n, v, a in pts if n == name]

        def observe(_: CallbackOptions, mine: list[tuple[float, dict[str, str]]] = mine) -> list[Observation]:
            return [Observation(v, a) for v, a in mine]

        unit, desc = units[name]
        meter.create_observable_gauge(name, callbacks=[observe], unit=unit, description=desc)
    data = reader.get_metrics_data()
    url = endpoint.rstrip("/") + "/v1/metrics"
    exporter = OTLPMetricExporter(endpoint=url, timeout=timeout, headers=dict(headers or {}))
    try:
        result = exporter.export(data) if data is not None else MetricExportResult.SUCCESS
    finally:
        exporter.shutdown()
        provider.shutdown()
    if result is not MetricExportResult.SUCCESS:
        raise ExportError(f"the OTLP backend at {url} did not take the metrics (see the log above)")
    return len(pts)
