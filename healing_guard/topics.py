"""Every topic of the guard, in one place: its name, the record on it, its partitions and config.

Pure and Faust-free. Everything else reads topics from here: the settings (which only add the user's
prefix), the record classes' ``topic`` (``schemas/records.py``), the Faust handles
(``streams/topics.py``, which declares them and nothing more), ``guard topics create``, the backtest, the
traffic replay and the benchmarks.

Overrides: ``topics.prefix`` / ``GUARD_TOPIC_PREFIX`` / ``--topic-prefix`` goes in front of every name
below (tests and several installs share one cluster); ``broker.partitions`` / ``GUARD_PARTITIONS`` /
``--partitions`` is the partition count of every topic and changelog (the job-keyed topics are read
together and must be co-partitioned); ``broker.app_id`` / ``GUARD_APP_ID`` names the changelogs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "BIG_MESSAGES", "DEFAULT_TOPICS", "INPUT_TOPICS", "TABLE_NAMES", "TOPIC_CONFIG", "Topics", "changelog_topic",
    "internal_topics", "leader_topic", "topic_specs",
]


@dataclass(frozen=True)
class Topics:
    """Topic names; a prefix lets tests and several installs share one cluster.

    The comment of each name says what is on the topic: the record class (``healing_guard.schemas``,
    whose ``topic`` is the default name here) or, for internal topics, the payload; and its key.
    """

    logs: str = "ci.logs"  # LogChunk, key: job key (the one topic with raw, unredacted log text)
    jobs: str = "ci.jobs"  # JobEvent, key: job key
    tests: str = "ci.tests"  # a batch of one report's results (schemas/test_batch.py) or one TestResult
    findings: str = "guard.findings"  # Finding, key: job key
    actions: str = "guard.actions"  # Command, key: job key
    outcomes: str = "guard.outcomes"  # Outcome, key: job key
    deadletter: str = "guard.deadletter"  # DeadLetter, key: the original key
    facts: str = "guard.facts"  # internal: warehouse fact rows on their way to ClickHouse
    test_risk: str = "guard.test-risk"  # internal: {"attempt", "risk": TestRisk} of a failed test, key: job key
    ticks: str = "guard.ticks"  # internal: "{}" that wakes a job's window when its grace period ends, key: job key
    incidents: str = "guard.incidents"  # internal: diagnosed failures re-keyed by their template

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        base = cls()
        return cls(**{f.name: prefix + getattr(base, f.name) for f in dataclasses.fields(cls)})

    def all(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def named(self, default_name: str) -> str:
        """This install's name of the topic whose default name is ``default_name`` (``ci.logs`` -> ``<prefix>ci.logs``)."""
        for f in dataclasses.fields(self):
            if getattr(DEFAULT_TOPICS, f.name) == default_name:
                return str(getattr(self, f.name))
        raise KeyError(default_name)


#: the names without a prefix
DEFAULT_TOPICS = Topics()

#: what forwarders, webhooks and recordings produce (default names); the guard writes the others
INPUT_TOPICS: tuple[str, ...] = (DEFAULT_TOPICS.jobs, DEFAULT_TOPICS.logs, DEFAULT_TOPICS.tests)

#: topics whose messages may be large: a log chunk, or a dead letter carrying one
BIG_MESSAGES: Mapping[str, str] = {"max.message.bytes": str(16 << 20)}

#: topic config beyond the broker's defaults, by field of :class:`Topics`
TOPIC_CONFIG: Mapping[str, Mapping[str, str]] = {"logs": BIG_MESSAGES, "deadletter": BIG_MESSAGES}

#: the Faust tables (``streams/tables.py``); each has a compacted changelog topic, see :func:`changelog_topic`
TABLE_NAMES = ("windows", "ledgers", "test_models", "incidents")


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """name -> (partitions, config) of the guard's topics. Job-keyed topics share one partition count
    (co-partitioned), so every topic has ``settings.partitions``."""
    p = settings.partitions
    return {name: (p, dict(TOPIC_CONFIG.get(field, {}))) for field, name in settings.topics.all().items()}


def changelog_topic(app_id: str, table: str) -> str:
    """Faust's name of a table's changelog topic."""
    return f"{app_id}-{table}-changelog"


def leader_topic(app_id: str) -> str:
    """Faust's name of the partition assignor's leader topic."""
    return f"{app_id}-__assignor-__leader"


def internal_topics(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Faust's own topics (table changelogs, the assignor's leader topic), created up front because
    the app is not allowed to declare topics."""
    out = {changelog_topic(settings.app_id, name): (settings.partitions, {"cleanup.policy": "compact"})
           for name in TABLE_NAMES}
    out[leader_topic(settings.app_id)] = (1, {})
    return out
