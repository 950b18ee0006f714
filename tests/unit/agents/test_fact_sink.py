"""The fact sink's public surface: add, flush, close; acknowledged only once written."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from healing_guard.agents.fact_sink import FactSink
from healing_guard.engine.core import Engine
from healing_guard.settings import Settings
from healing_guard.streams.worker import build_guard
from healing_guard.warehouse.facts import Fact


class Writer:
    def __init__(self, fail: int = 0) -> None:
        self.batches: list[list[Fact]] = []
        self.fail = fail  # the first `fail` writes raise (ClickHouse away)

    def write(self, facts: list[Fact]) -> int:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("ClickHouse is away")
        self.batches.append(list(facts))
        return len(facts)


class Stream:
    def __init__(self) -> None:
        self.acked: list[Any] = []

    async def ack(self, event: Any) -> None:
        self.acked.append(event)


SETTINGS = Settings(broker_url="kafka://127.0.0.1:1", partitions=1, app_id="unit-sink")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(SETTINGS)  # compiled once: the sink never calls it


def sink_for(engine: Engine, writer: Writer, batch_size: int = 100) -> FactSink:
    settings = dataclasses.replace(SETTINGS, fact_batch_size=batch_size)
    guard = build_guard(settings, engine=engine, writer_factory=lambda: writer)
    assert guard.sink is not None
    return guard.sink


def fact(i: int) -> Fact:
    return Fact("commands", {"id": str(i)})


async def test_facts_are_acknowledged_only_once_written(engine: Engine) -> None:
    writer, stream = Writer(fail=1), Stream()
    sink = sink_for(engine, writer)
    sink.attach(stream)
    for i in range(3):
        await sink.add(f"event-{i}", fact(i))
    assert len(sink) == 3 and writer.batches == [] and stream.acked == []
    await sink.flush()  # ClickHouse away: kept, unacknowledged
    assert len(sink) == 3 and stream.acked == [] and sink.ctx.stats.fact_errors == 1
    await sink.flush()  # within the retry delay: no second attempt yet
    assert sink.ctx.stats.fact_errors == 1
    await sink.close()  # the last flush does not wait for the delay
    assert writer.batches == [[fact(0), fact(1), fact(2)]]
    assert stream.acked == ["event-0", "event-1", "event-2"] and len(sink) == 0
    assert sink.ctx.stats.facts_written == 3


async def test_a_full_buffer_holds_the_agent_until_it_is_written(engine: Engine) -> None:
    writer, stream = Writer(), Stream()
    sink = sink_for(engine, writer, batch_size=2)
    sink.attach(stream)
    await sink.add("a", fact(1))
    assert writer.batches == []
    await sink.add("b", fact(2))  # the batch is full: written before add returns
    assert writer.batches == [[fact(1), fact(2)]] and stream.acked == ["a", "b"]
    await sink.close()


async def test_while_clickhouse_is_away_add_waits(engine: Engine) -> None:
    writer = Writer(fail=100)
    sink = sink_for(engine, writer, batch_size=1)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sink.add(None, fact(1)), timeout=0.2)
    assert len(sink) == 1 and writer.batches == []  # nothing lost: it waits in the buffer
    writer.fail = 0
    await sink.close()
    assert writer.batches == [[fact(1)]]
