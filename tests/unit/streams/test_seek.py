"""streams/seek.py: which partitions a worker reads from the beginning after Faust's seek to committed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.consumer.fetcher import OffsetResetStrategy
from aiokafka.structs import TopicPartition
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from healing_guard.streams import seek


def test_uncommitted_stream_partitions_are_read_from_the_beginning() -> None:
    assigned = {TP("p.guard.facts", 1), TP("p.guard.facts", 0), TP("p.ci.logs", 0), TP("p.ci.logs", 1),
                TP("p-windows-changelog", 0)}
    committed = {TP("p.ci.logs", 0): 12, TP("p.ci.logs", 1): 0, TP("p.guard.facts", 1): None}
    got = seek.uncommitted_stream_partitions(assigned, committed, {"p-windows-changelog"})
    # 0 counts as nothing committed (Faust and aiokafka skip a seek to 0); changelogs are recovery's
    assert got == [TP("p.ci.logs", 1), TP("p.guard.facts", 0), TP("p.guard.facts", 1)]


def test_install_wraps_faust_s_seek_once() -> None:
    seek.install()
    wrapped = Consumer.perform_seek
    seek.install()
    assert Consumer.perform_seek is wrapped
    assert wrapped.__module__ == seek.__name__


async def test_the_livelock_check_skips_a_partition_whose_position_is_being_reset() -> None:
    """A seek to the beginning leaves aiokafka without a position until its offset request returns; Faust's
    livelock check read it then and aiokafka asserted (a worker died). The check now skips that partition
    and checks the others as before."""
    seek.install()
    subs = SubscriptionState()
    subs.assign_from_user({TopicPartition("t", 0), TopicPartition("t", 1)})
    subs.seek(TopicPartition("t", 0), 5)
    resetting = subs.subscription.assignment.state_value(TopicPartition("t", 1))
    resetting.await_reset(OffsetResetStrategy.EARLIEST)
    with pytest.raises(AssertionError):
        resetting.position  # noqa: B018 - what Faust's check reads: aiokafka asserts
    assert seek.awaiting_position(subs, TP("t", 1)) and not seek.awaiting_position(subs, TP("t", 0))

    checked: list[TP] = []
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_subscriptions=subs))
    thread = SimpleNamespace(_ensure_consumer=lambda: consumer,
                             _verify_aiokafka_event_path=lambda now, tp: checked.append(tp) or True)
    assert AIOKafkaConsumerThread.verify_event_path(thread, 0.0, TP("t", 1)) is None  # type: ignore[arg-type]
    assert checked == []
    AIOKafkaConsumerThread.verify_event_path(thread, 0.0, TP("t", 0))  # type: ignore[arg-type]
    assert checked == [TP("t", 0)]  # Faust's own check ran for the partition that has a position
    subs.subscription.assignment.state_value(TopicPartition("t", 1)).reset_to(0)
    assert not seek.awaiting_position(subs, TP("t", 1))
