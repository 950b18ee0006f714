"""The worker's Prometheus endpoint on real Kafka: a failing job moves the product's series."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from healing_guard.brokers import free_port
from healing_guard.schemas import JobEvent, LogChunk
from healing_guard.settings import load_settings
from healing_guard.streams.topics import ensure_topics

from .helpers import collect, produce, start_worker, stop_worker

pytestmark = pytest.mark.integration


def _scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=5) as r:
        body = r.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(body) for s in f.samples}


async def test_worker_serves_metrics_that_move_on_a_failing_job(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"mx{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix,
                             partitions=2, app_id=prefix.rstrip("."))
    await ensure_topics(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    wlog = tmp_path / "worker.log"
    proc = start_worker(kafka_bootstrap, prefix, f"chdb://{tmp_path / 'ch'}", wlog, "--no-facts",
                        env={"GUARD_METRICS_PORT": str(port), "GUARD_METRICS_HOST": "127.0.0.1"})
    try:
        ref = dict(provider="github", owner="acme", repo="web", job_id="42")
        key = b"github/acme/web/42"
        chunk = LogChunk(**ref, seq=0, eof=True, lines=[  # type: ignore[arg-type]
            *(f"compiling module {i}" for i in range(200)),
            "npm ERR! code ECONNRESET",
            "npm ERR! network request to https://registry.npmjs.org/x failed, reason: read ECONNRESET"])
        now = time.time()
        done = JobEvent(**ref, job_name="build", status="completed", conclusion="failure",  # type: ignore[arg-type]
                        exit_code=1, log_chunks=1, started_at=now - 300, completed_at=now)
        await produce(kafka_bootstrap, prefix, [("ci.logs", key, chunk.to_json()), ("ci.jobs", key, done.to_json())])
        actions = await collect(kafka_bootstrap, settings.topics.actions, 1, 45, proc)
        assert orjson.loads(actions[0].value)["category"] == "network"

        classified = ("healing_guard_failure_classification_total",
                      frozenset({("category", "network"), ("provider", "github")}))
        deadline = time.monotonic() + 10
        values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        while time.monotonic() < deadline:  # the counters move right after the command is sent
            try:
                values = _scrape(url)
            except (urllib.error.URLError, ConnectionError):
                values = {}
            if values.get(classified):
                break
            await asyncio.sleep(0.2)
        assert values.get(classified) == 1, sorted(values)
        assert values[("healing_guard_analysis_duration_seconds_count", frozenset())] >= 1
        decide = values[("healing_guard_remediation_duration_seconds_count", frozenset({("stage", "decide")}))]
        assert decide >= 1
        names = {n for n, _ in values}
        assert "healing_guard_cost_saved_usd_total" in names and "healing_guard_time_saved_minutes_total" in names
    finally:
        assert stop_worker(proc) == 0, wlog.read_text()[-3000:]
