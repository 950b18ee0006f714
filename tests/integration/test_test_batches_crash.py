"""A worker SIGKILLed while it learns batches of test results on real Kafka: the worker that takes over learns
every result exactly once. Big batches take the bulk path (agents/effects.py::write_table: a message's test
states straight into produce batches, awaited before the message is acknowledged), so a kill can land after
a message's states reached the changelog and before its offset was committed; the state's applied offset
makes the new worker send its outputs again without learning it twice. The second worker gets the rest of
the traffic once it is ready (traffic that arrives during its recovery is issue 19's known loss)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from healing_guard.engine.state import load_test
from healing_guard.schemas import TestResult
from healing_guard.schemas.test_batch import encode_batches
from healing_guard.topics import changelog_topic

from .helpers import guard_topics, start_worker, stop_worker, wait_consumed, wait_ready, wait_status

pytestmark = pytest.mark.integration

TESTS, REPORTS, PARTITIONS = 6_000, 4, 2


def _reports() -> list[list[TestResult]]:
    return [[TestResult(provider="github", owner="acme", repo="mono", job_id=f"run{r}",
                        test_id=f"svc{i % 7}/tests/test_mod{i % 60}.py::test_{i}",
                        outcome="failed" if (i * 7 + r) % 97 == 0 else "passed", duration_s=0.01,
                        ts=1_767_225_600.0 + r * 600)
             for i in range(TESTS)] for r in range(REPORTS)]


async def _send(bootstrap: str, topic: str, reports: list[list[TestResult]], partitions: int = PARTITIONS) -> int:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 << 20, linger_ms=5)
    await p.start()
    try:
        msgs = [m for rep in reports for m in encode_batches(rep, partitions)]
        futs = [await p.send(topic, key=key, value=value, partition=part) for part, key, value in msgs]
        await asyncio.gather(*futs)
        return len(msgs)
    finally:
        await p.stop()


async def _states(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> dict[bytes, bytes]:
    """The last value of every key of a changelog topic."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=32 << 20)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        ends = await c.end_offsets(tps)
        await c.seek_to_beginning(*tps)
        out: dict[bytes, bytes] = {}
        while [tp for tp in tps if await c.position(tp) < ends[tp]]:  # a hang: the suite's per-test timeout
            for records in (await c.getmany(timeout_ms=500, max_records=50_000)).values():
                for r in records:
                    if r.key is not None and r.value is not None:
                        out[r.key] = r.value
        return out
    finally:
        await c.stop()


async def test_a_worker_killed_while_learning_batches_loses_and_repeats_nothing(kafka_bootstrap: str,
                                                                                tmp_path: Path) -> None:
    prefix, app_id, settings = await guard_topics(kafka_bootstrap, "tb", PARTITIONS)
    reports = _reports()
    dsn = f"chdb://{tmp_path / 'ch'}"

    log1 = tmp_path / "w1.log"
    w1 = start_worker(kafka_bootstrap, prefix, dsn, log1, "--no-facts", partitions=PARTITIONS)
    try:
        await _send(kafka_bootstrap, settings.topics.tests, reports[:2])
        # SIGKILL once it has learned part of the traffic: mid-way through the messages of the first reports
        await asyncio.to_thread(wait_status, log1.with_suffix(".status.json"), "tests", TESTS // 2, 120, w1)
    finally:
        w1.kill()
        w1.wait(30)
    learned_before = json.loads(log1.with_suffix(".status.json").read_text())["tests"]

    log2 = tmp_path / "w2.log"
    w2 = start_worker(kafka_bootstrap, prefix, dsn, log2, "--no-facts", partitions=PARTITIONS)
    try:
        # the rest once it is ready: records that arrive while a worker recovers its tables are the known
        # loss of faust-streaming's consumer (docs/limitations.md, issue 19), not what this test is about
        await asyncio.to_thread(wait_ready, w2, log2)
        await _send(kafka_bootstrap, settings.topics.tests, reports[2:])
        await wait_consumed(kafka_bootstrap, app_id, settings.topics.tests, 180, w2)
        await asyncio.sleep(1.5)  # the status file is written every second
        status = json.loads(log2.with_suffix(".status.json").read_text())
    finally:
        assert stop_worker(w2) == 0, log2.read_text()[-3000:]

    states = await _states(kafka_bootstrap, changelog_topic(app_id, "test_models"))
    runs = {k: load_test(v).model.runs for k, v in states.items()}  # type: ignore[union-attr]
    assert len(runs) == TESTS, (len(runs), learned_before, status)
    wrong = {k: n for k, n in runs.items() if n != REPORTS}
    assert not wrong, (len(wrong), list(wrong.items())[:5], learned_before, status)  # none lost, none twice
    assert status["dead_letters"] == 0, status
    # the batches' own path was taken: few messages for all these results
    assert status["test_messages"] < REPORTS * PARTITIONS * 4, status
