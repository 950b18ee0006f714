"""What every agent needs: the app, topics, tables, the pure engine, and shared counters."""

from __future__ import annotations

import functools
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faust
import orjson

from ..engine.core import Engine
from ..schemas import DeadLetter
from ..settings import Settings
from ..streams.tables import GuardTables
from ..streams.topics import GuardTopics


class Deadlines:
    """When each waiting window must be woken: a dict for lookups plus a heap, so the 4-per-second
    timer touches only what is due however many windows (and decided markers) are open."""

    def __init__(self) -> None:
        self._at: dict[bytes, tuple[float, int]] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __setitem__(self, key: bytes, value: tuple[float, int]) -> None:
        if self._at.get(key) == value:  # re-registered on every message of a waiting window
            return
        self._at[key] = value
        heapq.heappush(self._heap, (value[0], key))

    def pop(self, key: bytes, default: Any = None) -> Any:
        return self._at.pop(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._at

    def __len__(self) -> int:
        return len(self._at)

    def due(self, now: float) -> list[tuple[bytes, int]]:
        out = []
        while self._heap and self._heap[0][0] <= now:
            when, key = heapq.heappop(self._heap)
            entry = self._at.get(key)
            if entry is not None and entry[0] == when:  # otherwise superseded or removed
                del self._at[key]
                out.append((key, entry[1]))
        return out


class BoundedSet:
    """A set that forgets its oldest members past ``limit`` (forgetting one only costs a resent copy)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: dict[bytes, None] = {}

    def add(self, key: bytes) -> None:
        self._items.pop(key, None)
        self._items[key] = None
        if len(self._items) > self.limit:
            del self._items[next(iter(self._items))]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Stats:
    """Counters for progress display and tests (process-local)."""

    chunks: int = 0
    lines: int = 0
    jobs_closed: int = 0
    findings: int = 0
    commands: int = 0
    tests: int = 0  # test results learned
    tests_replayed: int = 0  # test results read again after a crash and not learned twice
    tests_rerouted: int = 0  # results of a batch sent on to the partition their test id hashes to
    test_messages: int = 0  # ci.tests messages (a batch or one result)
    outcomes_learned: int = 0
    commands_resent: int = 0  # a decided job's commands sent again after its messages were read again
    dead_letters: int = 0
    facts_written: int = 0
    fact_errors: int = 0
    last_fact_write: float = 0.0
    deadlines: Deadlines = field(default_factory=Deadlines)


@dataclass
class AgentContext:
    app: faust.App
    settings: Settings
    topics: GuardTopics
    tables: GuardTables
    engine: Engine
    stats: Stats = field(default_factory=Stats)
    #: process memory of the job agent: since when each job's deadline tick has been held back (its
    #: partition's logs were not read up to the end yet)
    held_ticks: dict[bytes, float] = field(default_factory=dict)
    #: process memory of the job agent: decided jobs whose commands this process sent (a replayed message
    #: of any other decided job sends its commands again, once; see engine.step._resend)
    resent: BoundedSet = field(default_factory=lambda: BoundedSet(200_000))

    async def dead_letter(self, dl: DeadLetter, key: bytes | None) -> None:
        self.stats.dead_letters += 1
        await self.topics.deadletter.send(key=key, value=dl.to_json())

    async def send_json(self, topic: Any, key: bytes | None, value: Any, partition: int | None = None) -> None:
        await topic.send(key=key, value=orjson.dumps(value), partition=partition)


def now() -> float:
    return time.time()


R = TypeVar("R")


def bind(fun: Callable[..., R], *args: Any) -> Callable[..., R]:
    """``fun`` with its first arguments given, under its own name: Faust names an agent's actors, a
    timer's traces and their log lines after the function. The agents and timers are plain functions of
    their context (``async def ingest(ctx, ..., stream)``), bound when the app is built."""
    bound = functools.partial(fun, *args)
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(bound, attr, getattr(fun, attr))
    return bound
