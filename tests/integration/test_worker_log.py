"""What `guard worker` says at the default log level (warning for the libraries): one info line per
decision (job, category, confidence, action, reason), and none of Faust's or aiokafka's info chatter."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from healing_guard.streams.topics import ensure_topics

from .helpers import broker_settings, collect, oom_job, produce, start_worker, stop_worker

pytestmark = pytest.mark.integration


async def test_the_worker_logs_each_decision_at_the_default_level(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"wlog{uuid.uuid4().hex[:8]}."
    s = broker_settings(kafka_bootstrap, prefix, partitions=1)
    await ensure_topics(s)
    log = tmp_path / "worker.log"
    proc = start_worker(kafka_bootstrap, prefix, "chdb://unused", log, "--no-facts", partitions=1,
                        env={"GUARD_LOG_LEVEL": "warning"})
    try:
        await produce(kafka_bootstrap, prefix, oom_job(0, noise=20) + oom_job(1, noise=20))
        await collect(kafka_bootstrap, s.topics.actions, 2, 120, proc)
    finally:
        assert stop_worker(proc) == 0
    text = log.read_text(errors="replace")
    lines = [x for x in text.splitlines() if "healing_guard.decisions" in x or " attempt 1: " in x]
    for job in ("github/acme/svc0/7000", "github/acme/svc1/7001"):
        line = next((x for x in lines if job in x), None)
        assert line is not None, text[-3000:]
        assert f"{job} attempt 1: oom (" in line and ") -> rerun_more_memory: " in line, line
    # the libraries stay at warning: no aiokafka / Faust info lines
    assert "[INFO] [^" not in text and "aiokafka" not in text.replace("aiokafka.errors", ""), text[-3000:]
