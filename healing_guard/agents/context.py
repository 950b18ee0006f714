"""What every agent needs: the app, topics, tables, the pure engine, and shared counters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson

from ..pipeline import Engine
from ..schemas import DeadLetter
from ..settings import Settings
from ..streams.tables import GuardTables
from ..streams.topics import GuardTopics


@dataclass
class Stats:
    """Counters for progress display and tests (process-local)."""

    chunks: int = 0
    lines: int = 0
    jobs_closed: int = 0
    findings: int = 0
    commands: int = 0
    tests: int = 0
    dead_letters: int = 0
    facts_written: int = 0
    fact_errors: int = 0
    last_fact_write: float = 0.0
    deadlines: dict[bytes, tuple[float, int]] = field(default_factory=dict)


@dataclass
class AgentContext:
    app: faust.App
    settings: Settings
    topics: GuardTopics
    tables: GuardTables
    engine: Engine
    stats: Stats = field(default_factory=Stats)

    async def dead_letter(self, dl: DeadLetter, key: bytes | None) -> None:
        self.stats.dead_letters += 1
        await self.topics.deadletter.send(key=key, value=dl.to_json())

    async def send_json(self, topic: Any, key: bytes | None, value: Any, partition: int | None = None) -> None:
        await topic.send(key=key, value=orjson.dumps(value), partition=partition)


def now() -> float:
    return time.time()
