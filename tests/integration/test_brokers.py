"""The two brokers start for real, take topics, carry a message, and stop without leftovers."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from healing_guard.brokers import KafkaBroker, TansuBroker, create_topics, delete_topics


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "Z")
    return state != "Z"


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return not _alive(pid)


async def _partitions(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (meta,) = await admin.describe_topics([topic])
        return len(meta["partitions"])
    finally:
        await admin.close()


async def _round_trip(bootstrap: str, topic: str, value: bytes, partition: int = 1) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=b"k", partition=partition)
        assert meta.partition == partition
    finally:
        await producer.stop()
    assert await _read_one(bootstrap, topic, partition) == value


async def _read_one(bootstrap: str, topic: str, partition: int) -> bytes:
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        msg = await asyncio.wait_for(consumer.getone(), timeout=20)
        return msg.value
    finally:
        await consumer.stop()


@pytest.mark.timeout(60)
async def test_tansu_round_trip() -> None:
    broker = TansuBroker()
    bootstrap = broker.start()
    pid = broker.pid
    assert pid is not None
    try:
        assert bootstrap == broker.bootstrap and bootstrap.startswith("127.0.0.1:")
        await create_topics(bootstrap, {"guard.test": 2, "guard.other": 1})
        await create_topics(bootstrap, {"guard.test": 2})  # already exists: fine
        assert await _partitions(bootstrap, "guard.test") == 2
        await _round_trip(bootstrap, "guard.test", b"hello tansu")
        await delete_topics(bootstrap, ["guard.other", "never.existed"])
    finally:
        broker.stop()
    assert _wait_gone(pid)
    broker.stop()  # idempotent


@pytest.mark.integration
@pytest.mark.timeout(120)  # includes a cold `mvn` fetch into ~/.cache on a fresh machine
async def test_kafka_round_trip_restart_and_stop(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "kafka")
    bootstrap = await asyncio.to_thread(broker.start)
    pid = broker.pid
    assert pid is not None and _alive(pid)
    try:
        assert bootstrap == broker.bootstrap and bootstrap.startswith("127.0.0.1:")
        config = {"guard.compacted": {"cleanup.policy": "compact"}}
        await create_topics(bootstrap, {"guard.test": 2, "guard.compacted": 1}, config=config)
        await create_topics(bootstrap, {"guard.test": 2})  # already exists: fine
        assert await _partitions(bootstrap, "guard.test") == 2
        big = os.urandom(3 * 1024 * 1024)  # several MiB must pass (message.max.bytes=16 MiB)
        await _round_trip(bootstrap, "guard.test", big)

        # A restart keeps the data and the port: the recovery tests depend on that.
        assert await asyncio.to_thread(broker.restart) == bootstrap
        assert not _alive(pid)
        pid = broker.pid
        assert pid is not None and _alive(pid)
        assert await _read_one(bootstrap, "guard.test", 1) == big

        await delete_topics(bootstrap, ["guard.compacted"])
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            assert "guard.compacted" not in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        await asyncio.to_thread(broker.stop)
    assert _wait_gone(pid)
    assert not (tmp_path / "kafka" / "kafka.pid").exists()
    broker.stop()  # idempotent
