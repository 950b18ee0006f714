"""Read from the beginning what no one committed: a partition without a committed offset is sought to its
first offset whenever Faust seeks its stream partitions to their committed offsets.

While a worker recovers its tables, Faust's consumer keeps fetching the stream partitions too, and drops
what it fetched for them (they are not active yet): the Kafka client's position has moved past those
records. After recovery Faust seeks every stream partition back to its committed offset, which undoes
that, except where nothing was committed: the client has nothing to seek to (an offset of 0 counts as
none too), so it stays where the dropped fetch left it, and the records before are never read. On
``guard.facts`` that lost facts: a worker killed while ClickHouse was away commits no facts offset, and the
worker that took over started after the facts the first one had read but not written (the held-ClickHouse
fault test found 24 or 31 of 48 facts on a busy host). The same held for any input partition whose
first offsets a crash left uncommitted.

``install()`` wraps ``Consumer.perform_seek`` (process-wide, idempotent): after Faust's seek, the assigned
partitions that are not table changelogs (recovery reads those) and have no committed offset are sought
to their beginning, which is what the consumer's ``auto_offset_reset = "earliest"`` means.

A seek to the beginning (ours, or the Kafka client's own for a partition with nothing committed) leaves the
client without a position for that partition until its offset request returns. Faust's livelock check
(``verify_event_path``, every few seconds) reads the position of every assigned partition, and aiokafka
asserts that it has one: a worker whose check ran in that gap died (workers joining a group a fraction of
a second apart on a broker with no initial rebalance delay: 2 of 4 four-worker starts). ``install()`` also
makes the check skip a partition whose position is being reset: there is nothing to check yet, and the
next check looks again.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.structs import TopicPartition
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

log = logging.getLogger(__name__)

_installed = False


def uncommitted_stream_partitions(assigned: Any, committed: Any, changelog_topics: Any) -> list[Any]:
    """The assigned partitions, changelogs left out, with no committed offset (None or 0)."""
    return sorted((tp for tp in assigned if tp.topic not in changelog_topics and not committed.get(tp)),
                  key=lambda tp: (tp.topic, tp.partition))


def awaiting_position(subscriptions: Any, tp: Any) -> bool:
    """Whether the Kafka client's subscription state (aiokafka's ``SubscriptionState``) has no position for
    ``tp`` yet: it is being reset, or there is no assignment to look in (a rebalance)."""
    subscription = getattr(subscriptions, "subscription", None)
    assignment = getattr(subscription, "assignment", None)
    if assignment is None:
        return True
    state = assignment.state_value(TopicPartition(tp.topic, tp.partition))
    return state is not None and not state.has_valid_position


def install() -> None:
    """Make every Faust consumer in this process read uncommitted partitions from the beginning."""
    global _installed
    if _installed:
        return
    original = Consumer.perform_seek

    async def perform_seek(self: Any) -> None:
        await original(self)
        fresh = uncommitted_stream_partitions(self.assignment(), self._committed_offset,
                                              self.app.tables.changelog_topics)
        if fresh:
            log.debug("no committed offset: reading %s from the beginning", fresh)
            await self._thread.seek_to_beginning(*(TopicPartition(tp.topic, tp.partition) for tp in fresh))
            for tp in fresh:
                self._read_offset[tp] = None

    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]

    verify = AIOKafkaConsumerThread.verify_event_path

    def verify_event_path(self: Any, now: float, tp: Any) -> None:
        if awaiting_position(self._ensure_consumer()._fetcher._subscriptions, tp):
            return None  # no position while it is reset: nothing to check yet (aiokafka would assert)
        return verify(self, now, tp)

    AIOKafkaConsumerThread.verify_event_path = verify_event_path  # type: ignore[method-assign]
    _installed = True
