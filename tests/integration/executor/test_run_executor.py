"""The executor's consumer loop against the embedded broker: commands in, outcomes and dead letters out."""

from __future__ import annotations

from pathlib import Path

import pytest

from healing_guard.executor import Clients
from healing_guard.schemas import Outcome
from tests.support.fake_apis import FakeApis
from tests.unit.executor.test_executor import Sleeps, cmd, make_clients


@pytest.mark.integration
@pytest.mark.slow  # ~25 s (two consumer-group joins on the embedded broker); `make test-all` runs it
async def test_run_executor_consumes_commands_and_dead_letters(tansu_bootstrap: str, tmp_path: Path) -> None:
    import uuid

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from healing_guard.executor.cli import run_executor
    from healing_guard.schemas import DeadLetter
    from healing_guard.settings import load_settings
    from healing_guard.streams.topics import ensure_topics

    s = load_settings(None, env={}, broker_url=f"kafka://{tansu_bootstrap}",
                      topic_prefix=f"ex{uuid.uuid4().hex[:8]}-", app_id=f"ex{uuid.uuid4().hex[:8]}", partitions=1)
    await ensure_topics(s)
    t = s.topics
    c = cmd("github", "retry")
    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap)
    await producer.start()
    try:
        for value in (c.to_json(), b"{not json", c.to_json()):
            await producer.send_and_wait(t.actions, key=c.job_key.encode(), value=value)
    finally:
        await producer.stop()
    with FakeApis() as api:
        sleeps = Sleeps()
        counts = await run_executor(s, dry_run=False, data_dir=tmp_path, once=True,
                                    clients=make_clients(api, sleeps))
        assert len(api.requests) == 1  # the duplicate command is answered from the store
    assert counts == {"succeeded": 1, "duplicate": 1, "deadletter": 1}  # the duplicate is answered once
    consumer = AIOKafkaConsumer(t.outcomes, t.deadletter, bootstrap_servers=s.bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    got: dict[str, list[bytes]] = {t.outcomes: [], t.deadletter: []}
    try:
        for _ in range(40):
            for tp, recs in (await consumer.getmany(timeout_ms=250)).items():
                got[tp.topic] += [r.value for r in recs]
            if len(got[t.outcomes]) == 1 and got[t.deadletter]:
                break
    finally:
        await consumer.stop()
    outs = [Outcome.from_json(v) for v in got[t.outcomes]]
    assert [o.status for o in outs] == ["succeeded"]
    assert DeadLetter.from_json(got[t.deadletter][0]).source_topic == t.actions
    # a restart consumes nothing more: the offsets were committed
    counts = await run_executor(s, dry_run=False, data_dir=tmp_path, once=True, clients=Clients.from_env({}))
    assert counts == {}
