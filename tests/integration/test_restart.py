"""A worker restart on real Kafka: per-test flakiness models and the quarantine state come back from the
table changelog, so a new worker continues a test's history instead of starting from nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from healing_guard.schemas import TestResult
from healing_guard.settings import load_settings
from healing_guard.streams.topics import ensure_topics

from .helpers import collect, produce, start_worker, stop_worker, wait_status

pytestmark = pytest.mark.integration

TEST_ID = "tests/test_cache.py::test_eviction_race"


def _result(i: int, outcome: str) -> tuple[str, bytes, bytes]:
    r = TestResult(provider="github", owner="acme", repo="web", job_id=f"j{i}", test_id=TEST_ID, outcome=outcome,
                   ts=1_767_225_600.0 + i * 60)
    return "ci.tests", TEST_ID.encode(), r.to_json()


async def test_models_survive_a_worker_restart(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"rs{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix,
                             partitions=2, app_id=prefix.rstrip("."))
    await ensure_topics(settings)
    first = [_result(i, "failed" if i % 3 == 1 else "passed") for i in range(30)]
    log1 = tmp_path / "w1.log"
    proc = start_worker(kafka_bootstrap, prefix, f"chdb://{tmp_path / 'ch'}", log1, "--no-facts")
    try:
        await produce(kafka_bootstrap, prefix, first)
        import asyncio

        await asyncio.to_thread(wait_status, log1.with_suffix(".status.json"), "tests", 30, 90, proc)
    finally:
        assert stop_worker(proc) == 0, log1.read_text()[-3000:]

    # a new worker process: nothing in memory, the table comes back from its changelog topic
    log2 = tmp_path / "w2.log"
    proc = start_worker(kafka_bootstrap, prefix, f"chdb://{tmp_path / 'ch'}", log2, "--no-facts")
    try:
        await produce(kafka_bootstrap, prefix, [_result(30, "failed")])
        risks = await collect(kafka_bootstrap, settings.topics.test_risk, 11, 90, proc)
        last = orjson.loads(risks[-1].value)["risk"]
        assert last["test_id"] == TEST_ID
        assert last["runs"] == 31, last  # 30 runs learned by the first worker + this one
        assert last["recoveries"] and last["recoveries"] >= 9, last
        actions = await collect(kafka_bootstrap, settings.topics.actions, 1, 30, proc, settle=2.0)
        quarantines = [orjson.loads(r.value) for r in actions if orjson.loads(r.value)["action"] == "quarantine_test"]
        assert len(quarantines) == 1, [orjson.loads(r.value)["action"] for r in actions]  # not again after restart
    finally:
        assert stop_worker(proc) == 0, log2.read_text()[-3000:]
