"""Commit only what was sent: a full flush of Faust's producer buffer before every offset commit.

A table write (``table[key] = value``) does not send its changelog record: it puts it in Faust's
``ProducerBuffer``, which a background task drains. Before committing offsets, Faust flushes the producer,
and faust-streaming 0.15's ``ProducerBuffer.flush`` gives up as soon as no record left the buffer for
0.1 s (``flush_atmost``: ``wait_for(message_sent.wait(), timeout=0.1)``, then ``return``), and counts as
flushed the record the drain task has taken but not yet handed to the Kafka client. On a busy host the drain
task easily waits 0.1 s for the CPU, so offsets were committed while window updates were still in the
buffer; a SIGKILL then lost them for good: a job whose chunks or completion were read and committed, but
whose window never reached the changelog, got no decision after a restart (issue 16, the operator's 17-95
of 300 jobs lost on a busy host).

``install()`` replaces two methods of ``ProducerBuffer`` (process-wide, idempotent):

- ``flush`` waits until the buffer is empty *and* the record in the drain task's hands was handed over,
  however long that takes (it still raises if the producer stopped with records left, as Faust's does);
- ``_send_pending`` counts the record in hand, so ``flush`` can see it.

``flush_atmost(n)`` (the back-pressure Faust applies when the buffer holds more than 100 records) is left
alone: returning early there only delays the stream, it commits nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.transport.producer import ProducerBuffer

log = logging.getLogger(__name__)

#: how long one wait for the drain task lasts before flush checks again (and logs that it is slow)
_STEP_S = 1.0
_installed = False


async def _send_pending(self: Any, fut: Any) -> None:
    self._guard_in_hand = getattr(self, "_guard_in_hand", 0) + 1
    try:
        await fut.message.channel.publish_message(fut, wait=False)
    finally:
        self._guard_in_hand -= 1
        self.message_sent.set()


async def _flush(self: Any) -> None:
    waited = 0.0
    while self.size or getattr(self, "_guard_in_hand", 0):
        if self.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        self.message_sent.clear()
        try:
            await asyncio.wait_for(self.message_sent.wait(), timeout=_STEP_S)
        except asyncio.TimeoutError:
            waited += _STEP_S
            log.warning("waiting %.0f s for %d table record(s) to leave the producer buffer before a commit",
                        waited, self.size)


def install() -> None:
    """Make every Faust producer buffer in this process flush completely (see the module docstring)."""
    global _installed
    if _installed:
        return
    ProducerBuffer.flush = _flush  # type: ignore[method-assign]
    ProducerBuffer._send_pending = _send_pending  # type: ignore[method-assign]
    _installed = True
