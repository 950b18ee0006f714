"""The guard's producers are idempotent where the broker allows it (Apache Kafka), and still send where it
does not (the embedded Tansu broker answers InitProducerId with an unknown error), saying so."""

from __future__ import annotations

import logging
import uuid

import pytest

from healing_guard.brokers import create_topics
from healing_guard.producers import start_producer
from healing_guard.settings import load_settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("broker", ["kafka", "tansu"])
async def test_start_producer(broker: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> None:
    bootstrap = request.getfixturevalue(f"{broker}_bootstrap")
    s = load_settings(None, env={}, broker_url=f"kafka://{bootstrap}")
    topic = f"producer-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, {topic: 1})  # the test Kafka does not create topics on first use
    with caplog.at_level(logging.WARNING, logger="healing_guard.producers"):
        p = await start_producer(s, max_request_size=1 << 20)
    try:
        meta = await p.send_and_wait(topic, key=b"k", value=b"v")
        assert meta.offset >= 0
        idempotent = p._txn_manager is not None  # aiokafka keeps a transaction manager only when idempotent
    finally:
        await p.stop()
    refused = [r for r in caplog.records if "refused an idempotent producer" in r.getMessage()]
    if broker == "kafka":
        assert idempotent and not refused
    else:
        assert not idempotent and len(refused) == 1
