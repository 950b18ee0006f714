"""How far this worker has read ci.logs, per partition, against the consumer's high-water marks.

A job's completion event may be read before its last log chunks (the topics are consumed independently,
and a backlog of big chunks drains slower than small job events): the job agent holds a deadline tick
back until its partition's logs are read up to the end (``engine.step.ingest_step``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import faust
from faust.types import TP


class LogsProgress:
    def __init__(self, logs_topic: str) -> None:
        self.topic = logs_topic
        self.position: dict[int, int] = {}  # last ci.logs offset processed here, per partition

    def read(self, partition: int, offset: int) -> None:
        self.position[partition] = offset

    def caught_up(self, app: faust.App, partition: int) -> bool:
        tp = TP(self.topic, partition)
        try:
            hw = app.consumer.highwater(tp)
            read = getattr(app.consumer, "_read_offset", {}).get(tp)  # committed position after assignment
        except Exception:  # consumer not running (tests) or partition not assigned yet
            return True
        if hw is None:
            # not fetched yet (a partition just assigned, e.g. taken over from a worker that died): its
            # backlog is unknown, so not caught up; the hold is bounded (engine.step.max_tick_hold)
            return False
        if not hw:
            return True  # an empty partition
        done = self.position.get(partition)
        if done is None:
            done = read if read is not None else -1
        return done + 1 >= hw

    async def on_revoked(self, sender: Any, revoked: Iterable[TP] = (), **kwargs: Any) -> None:
        """A partition that comes back later must not be judged by the offset it had before."""
        for tp in revoked:
            if tp.topic == self.topic:
                self.position.pop(tp.partition, None)
