"""Carries out what a step (``engine/step.py``) returned: sends, table writes, indexes, counters, metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .. import metrics
from ..signing import sign_headers
from ..engine.step import Count, Decided, Effect, Hold, NextAttempt, Resent, Send, Store, Wake
from ..logs import decision_line
from .context import AgentContext

#: one info line per diagnosed job (healing_guard/logs.py: shown at the default log level)
decisions = logging.getLogger("healing_guard.decisions")

#: sends that are counted: a finding, and a command (every message on guard.actions)
_COUNTED_SENDS = {"findings": "findings", "actions": "commands"}


async def apply(ctx: AgentContext, effects: Iterable[Effect]) -> None:
    """In the order given: a decided window's marker must be written after the commands it guards."""
    stats = ctx.stats
    for e in effects:
        if isinstance(e, Send):
            counter = _COUNTED_SENDS.get(e.topic)
            if counter is not None:
                setattr(stats, counter, getattr(stats, counter) + 1)
            # a command carries its signature (healing_guard/signing.py; none when no key is configured)
            headers = sign_headers(ctx.settings, e.value) if e.topic == "actions" else None
            await getattr(ctx.topics, e.topic).send(key=e.key, value=e.value, partition=e.partition,
                                                    headers=headers)
        elif isinstance(e, Store):
            table = getattr(ctx.tables, e.table)
            if e.value is None:
                table.pop(e.key, None)
            else:
                table[e.key] = e.value
        elif isinstance(e, Wake):
            if e.at is None:
                stats.deadlines.pop(e.key, None)
            else:
                stats.deadlines[e.key] = e.at
        elif isinstance(e, Hold):
            if e.since is None:
                ctx.held_ticks.pop(e.key, None)
            else:
                ctx.held_ticks[e.key] = e.since
        elif isinstance(e, Resent):
            ctx.resent.add(e.key)
        elif isinstance(e, Count):
            setattr(stats, e.stat, getattr(stats, e.stat) + e.n)
        elif isinstance(e, Decided):
            metrics.WORKER.decision(e.decision, e.job, analysis_seconds=e.analysis_seconds,
                                    attempt_cost_usd=e.attempt_cost_usd)
            c = e.decision.command
            decisions.info(decision_line(e.job.job_key, e.job.attempt, c.category, c.confidence, c.action, c.reason))
        elif isinstance(e, NextAttempt):
            metrics.WORKER.next_attempt(e.retried, e.job, ctx.settings.human_response_minutes)
        else:
            metrics.WORKER.flaky(e.command)
