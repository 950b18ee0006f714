"""Every topic the guard reads or writes, with partition counts and configs, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from ..settings import Settings

# topics whose messages may be large: a log chunk, or a dead letter carrying one
_BIG = {"max.message.bytes": str(16 << 20)}


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """name -> (partitions, config). Job-keyed topics share one partition count (co-partitioned)."""
    t, p = settings.topics, settings.partitions
    return {
        t.logs: (p, _BIG),
        t.jobs: (p, {}),
        t.tests: (p, {}),
        t.findings: (p, {}),
        t.actions: (p, {}),
        t.outcomes: (p, {}),
        t.deadletter: (p, _BIG),
        t.facts: (p, {}),
        t.test_risk: (p, {}),
        t.ticks: (p, {}),
        t.incidents: (p, {}),
    }


def internal_topics(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Faust's own topics (table changelogs, the assignor's leader topic), created up front because
    the app is not allowed to declare topics."""
    from .tables import TABLE_NAMES

    out = {f"{settings.app_id}-{name}-changelog": (settings.partitions, {"cleanup.policy": "compact"})
           for name in TABLE_NAMES}
    out[f"{settings.app_id}-__assignor-__leader"] = (1, {})
    return out


@dataclass
class GuardTopics:
    ingest: Any  # ci.logs + ci.jobs + guard.test-risk + guard.ticks + guard.outcomes, co-partitioned
    tests: Any
    outcomes: Any
    facts: Any
    findings: Any
    actions: Any
    deadletter: Any
    test_risk: Any
    ticks: Any
    incidents: Any


def declare_topics(app: faust.App, settings: Settings) -> GuardTopics:
    t = settings.topics

    def raw(*names: str) -> Any:
        return app.topic(*names, key_serializer="raw", value_serializer="raw", partitions=settings.partitions,
                         internal=False)

    return GuardTopics(
        ingest=raw(t.logs, t.jobs, t.test_risk, t.ticks, t.outcomes),
        tests=raw(t.tests),
        outcomes=raw(t.outcomes),
        facts=raw(t.facts),
        findings=raw(t.findings),
        actions=raw(t.actions),
        deadletter=raw(t.deadletter),
        test_risk=raw(t.test_risk),
        ticks=raw(t.ticks),
        incidents=raw(t.incidents),
    )


async def ensure_topics(settings: Settings) -> None:
    """Create the guard's topics and the tables' changelogs explicitly (auto-create is off)."""
    from ..brokers import create_topics

    specs = topic_specs(settings)
    topics = {name: parts for name, (parts, _) in specs.items()}
    config = {name: cfg for name, (_, cfg) in specs.items() if cfg}
    for name, (parts, cfg) in internal_topics(settings).items():
        topics[name] = parts
        if cfg:
            config[name] = cfg
    await create_topics(settings.bootstrap, topics, config=config)
