"""Four workers joining one group a fraction of a second apart, on the test broker (no initial rebalance
delay: a rebalance per join): every one stays up and together they learn every test result sent after.

Each rebalance seeks the partitions nobody committed to their beginning (streams/seek.py), which leaves the
Kafka client without a position until its offset request returns; Faust's livelock check read that position
and aiokafka asserted, and the worker died (2 of 4 four-worker starts before the fix). In ``make crash``:
four workers on 2 cores take about a minute."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from healing_guard.schemas import TestResult
from healing_guard.topics import changelog_topic

from .helpers import guard_topics, start_worker, stop_worker, wait_consumed, wait_ready
from .test_test_batches_crash import _send, _states

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.crash]

WORKERS, PARTITIONS, TESTS, REPORTS = 4, 4, 2_000, 2


async def test_workers_joining_one_at_a_time_all_stay_up_and_learn_everything(kafka_bootstrap: str,
                                                                              tmp_path: Path) -> None:
    prefix, app_id, settings = await guard_topics(kafka_bootstrap, "gj", PARTITIONS)
    dsn = f"chdb://{tmp_path / 'ch'}"
    workers = []
    try:
        for i in range(WORKERS):  # a fraction of a second apart: each join is a rebalance of the others
            log = tmp_path / f"w{i}.log"
            workers.append((start_worker(kafka_bootstrap, prefix, dsn, log, "--no-facts", partitions=PARTITIONS),
                            log))
            await asyncio.sleep(0.7)
        for proc, log in workers:
            await asyncio.to_thread(wait_ready, proc, log)
        await asyncio.sleep(20)  # a few of Faust's livelock checks (every ~7 s) after the last rebalance
        reports = [[TestResult(provider="github", owner="acme", repo="mono", job_id=f"run{r}",
                               test_id=f"svc{i % 5}/tests/test_mod{i % 40}.py::test_{i}", outcome="passed",
                               duration_s=0.01, ts=1_767_225_600.0 + r * 600) for i in range(TESTS)]
                   for r in range(REPORTS)]
        await _send(kafka_bootstrap, settings.topics.tests, reports, PARTITIONS)
        await wait_consumed(kafka_bootstrap, app_id, settings.topics.tests, 180)
        for proc, log in workers:
            text = log.read_text(errors="replace")
            assert proc.poll() is None and "AssertionError" not in text, text[-3000:]
    finally:
        codes = [stop_worker(proc) for proc, _log in workers]
    assert codes == [0] * WORKERS, [log.read_text(errors="replace")[-2000:] for _p, log in workers]
    states = await _states(kafka_bootstrap, changelog_topic(app_id, "test_models"), PARTITIONS)
    assert len(states) == TESTS
