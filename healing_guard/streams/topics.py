"""The Faust handles of the guard's topics, and their creation.

Names, partitions and configs are defined in :mod:`healing_guard.topics`; this only declares them on the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from ..settings import Settings
from ..topics import internal_topics, topic_specs

__all__ = ["GuardTopics", "declare_topics", "ensure_topics", "internal_topics", "topic_specs"]


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
    from ..kafka_auth import client_options

    await create_topics(settings.bootstrap, topics, config=config, client_options=client_options(settings))
