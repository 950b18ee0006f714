"""Faust tables: state that must survive a worker crash, recovered from changelog topics.

Keys and values are raw bytes, encoded by the codecs in ``healing_guard/engine/state.py`` (windows, ledgers
and incidents with orjson, test models in a compact versioned binary), so the changelog format is explicit and does not depend
on Faust's codecs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from ..settings import Settings
from ..topics import TABLE_NAMES  # their changelog topics are created by streams.topics.ensure_topics

__all__ = ["TABLE_NAMES", "GuardTables", "declare_tables"]


@dataclass
class GuardTables:
    windows: Any  # job key -> orjson(JobWindow) (bounded per job; deleted once the job is decided)
    ledgers: Any  # b"ledger:<partition>" -> orjson(Ledger): today's spend of the partition's budget slice
    test_models: Any  # test id -> engine.state.dump_test: counters, filter, quarantine (~0.9 KB)
    incidents: Any  # template hash -> orjson(IncidentState): recent failures with that template


def declare_tables(app: faust.App, settings: Settings) -> GuardTables:
    def table(name: str) -> Any:
        return app.Table(name, default=None, partitions=settings.partitions, key_type=bytes, value_type=bytes)

    return GuardTables(*(table(n) for n in TABLE_NAMES))
