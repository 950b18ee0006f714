"""The ROI figures as OpenTelemetry metrics (healing_guard/export.py, `guard export`), sent to a local
server that takes OTLP/HTTP as a collector does (protobuf ExportMetricsServiceRequest on /v1/metrics)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from healing_guard.export import ExportError, endpoint_of, export_report, points
from healing_guard.settings import Settings, load_settings
from tests.support.paths import ROOT

REPORT = {"repo": None, "days": 1, "jobs": 40, "failed_jobs": 9, "ci_cost_usd": 3.5, "recovery_rate": 0.75,
          "time_saved_minutes": 120.0, "cost_saved_usd": 1.25, "rerun_cost_usd": 0.4, "mttr_minutes": 11.5,
          "mttg_minutes": 30.0, "flaky_test_rate": None, "failures_by_category": {"network": 4, "oom": 2}}


class Collector:
    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def metrics(self) -> dict[str, list[tuple[float, dict[str, str]]]]:
        out: dict[str, list[tuple[float, dict[str, str]]]] = {}
        for _, _, body in self.requests:
            req = ExportMetricsServiceRequest.FromString(body)
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        for p in m.gauge.data_points:
                            attrs = {a.key: a.value.string_value for a in p.attributes}
                            out.setdefault(m.name, []).append((p.as_double, attrs))
        return out


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


def test_every_known_figure_goes_out_as_a_gauge_under_the_documents_names(collector: Collector) -> None:
    n = export_report(REPORT, collector.url)
    [(path, ctype, _)] = collector.requests
    assert path == "/v1/metrics" and ctype == "application/x-protobuf"
    got = collector.metrics()
    assert n == len(points(REPORT)) == 11  # 9 known figures, 2 categories
    assert got["healing_guard_recovery_rate"] == [(0.75, {"repo": "*", "window": "1d"})]
    assert got["healing_guard_time_saved_minutes"][0][0] == 120.0
    assert got["healing_guard_cost_saved_usd"][0][0] == 1.25
    assert "healing_guard_flaky_test_rate" not in got  # unknown figures are left out, not sent as 0
    assert sorted((a["category"], v) for v, a in got["healing_guard_failure_classification"]) == [
        ("network", 4.0), ("oom", 2.0)]


def test_a_backend_that_refuses_is_an_error() -> None:
    c = Collector(status=400)
    try:
        with pytest.raises(ExportError, match="did not take the metrics"):
            export_report(REPORT, c.url, timeout=5)
    finally:
        c.server.shutdown()


def test_export_to_names_an_endpoint(tmp_path: Path) -> None:
    f = tmp_path / "c.yml"
    f.write_text("cost_control:\n  reporting:\n    export_to: lang-observatory\n    granularity: daily\n"
                 "    endpoints: {lang-observatory: 'http://otel.example:4318'}\n")
    s = load_settings(f, env={})
    assert endpoint_of(s) == "http://otel.example:4318" and s.export_granularity == "daily"
    assert endpoint_of(s, {"GUARD_EXPORT_ENDPOINT": "http://127.0.0.1:1"}) == "http://127.0.0.1:1"
    with pytest.raises(ExportError, match="'lang-observatory' names no endpoint"):
        endpoint_of(Settings(export_to="lang-observatory"))
    with pytest.raises(ExportError, match="nothing to export to"):
        endpoint_of(Settings())


def test_guard_export_once_sends_the_warehouses_last_day(collector: Collector, tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'chdb'}"
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from healing_guard.schemas import JobEvent
        from healing_guard.warehouse import FactWriter, connect, job_run_fact, migrate
        now = time.time()
        c = connect({dsn!r})
        migrate(c, "guard")
        FactWriter(c, "guard").write([job_run_fact(JobEvent(provider="github", owner="acme", repo="web",
            job_id=str(i), job_name="test", status="completed", conclusion="failure" if i % 3 == 0 else "success",
            started_at=now - 900, completed_at=now - 300), cost_usd=0.1) for i in range(7)])
        c.close()
        """)], cwd=ROOT, check=True, timeout=120)
    env = {"PATH": str(Path(sys.executable).parent), "GUARD_CLICKHOUSE_DSN": dsn, "GUARD_EXPORT_TO": collector.url,
           "HOME": str(tmp_path)}
    guard = str(Path(sys.executable).parent / "guard")
    rep = subprocess.run([guard, "report", "--days", "1", "--json"], env=env, cwd=tmp_path, capture_output=True,
                         timeout=120)
    assert rep.returncode == 0, rep.stderr.decode()[-2000:]
    report = orjson.loads(rep.stdout)
    assert report["jobs"] == 7
    out = subprocess.run([guard, "export", "--once"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and f"to {collector.url}" in out.stdout, out.stderr[-2000:]
    got = collector.metrics()
    assert got["healing_guard_jobs"] == [(7.0, {"repo": "*", "window": "1d"})]
    assert got["healing_guard_failed_jobs"][0][0] == report["failed_jobs"] == 3
    # nowhere to export to: a clear error, exit 2
    bad = subprocess.run([guard, "export", "--once"], env={**env, "GUARD_EXPORT_TO": "lang-observatory"},
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "names no endpoint" in bad.stderr
