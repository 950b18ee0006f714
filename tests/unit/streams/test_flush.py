"""Faust's producer buffer must be empty, and its last record handed over, before offsets are committed.

The drain task is made slow (0.3 s per record, as on a host where it waits for the CPU). faust-streaming's
own ``ProducerBuffer.flush`` returns after 0.1 s with records still in the buffer; a commit after it would
cover table writes that a crash then loses (issue 16).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.transport.producer import ProducerBuffer

from healing_guard.streams import flush


class _SlowChannel:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sent: list[int] = []

    async def publish_message(self, fut: object, wait: bool = False) -> None:
        await asyncio.sleep(self.delay)
        self.sent.append(fut.n)  # type: ignore[attr-defined]


def _record(channel: _SlowChannel, n: int) -> SimpleNamespace:
    return SimpleNamespace(n=n, message=SimpleNamespace(channel=channel))


async def _flushed_after(n: int, delay: float) -> tuple[list[int], int]:
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    channel = _SlowChannel(delay)
    await buffer.start()
    try:
        for i in range(n):
            buffer.put(_record(channel, i))  # type: ignore[arg-type]
        await buffer.flush()
        return list(channel.sent), buffer.size
    finally:
        await buffer.stop()


@pytest.mark.asyncio
async def test_flush_returns_only_when_every_record_was_handed_over() -> None:
    flush.install()
    sent, left = await _flushed_after(4, 0.3)
    assert left == 0
    assert sent == [0, 1, 2, 3]  # in order: a changelog's later value must stay the later one


@pytest.mark.asyncio
async def test_flush_waits_for_the_record_the_drain_task_holds() -> None:
    flush.install()
    # one record: the drain task takes it out of the queue at once, so the buffer's size is 0 while it is
    # still being sent; Faust's flush returned immediately here
    sent, _ = await _flushed_after(1, 0.3)
    assert sent == [0]


@pytest.mark.asyncio
async def test_flush_of_an_empty_buffer_returns() -> None:
    flush.install()
    sent, left = await asyncio.wait_for(_flushed_after(0, 0.3), timeout=5)
    assert (sent, left) == ([], 0)
