"""The guard's own lines about what it decided and did, shown by default.

``guard worker`` and ``guard executor`` keep the libraries' logging at ``logging.level`` (warning by
default: Faust and aiokafka are chatty at info), but their decision lines are what a person running them
wants to see: one line per diagnosed job (job, category, confidence, action, reason), one per carried-out
command, and the worker's progress every 10 s. Those loggers log at info unless the level is error.
"""

from __future__ import annotations

import logging

#: the loggers whose info lines are decisions and progress, not library chatter
DECISION_LOGGERS = ("healing_guard.decisions", "healing_guard.worker", "healing_guard.executor")


def show_decisions(level: str) -> None:
    """Let the decision loggers through at info while ``level`` (the configured one) is warning or lower;
    at error and above they follow it.

    At warning the root logger's handlers drop info records (Faust's worker sets its handler to the
    configured level), so the decision loggers get a handler of their own on stderr and stop propagating;
    at info and debug they propagate as any logger does."""
    configured = logging.getLevelName(level.upper())
    if not isinstance(configured, int):
        configured = logging.WARNING
    for name in DECISION_LOGGERS:
        lg = logging.getLogger(name)
        if configured > logging.WARNING:
            lg.setLevel(configured)
            continue
        lg.setLevel(min(configured, logging.INFO))
        if configured > logging.INFO and not any(getattr(h, "_guard_decisions", False) for h in lg.handlers):
            h = logging.StreamHandler()  # stderr, looked up when it writes
            h.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"))
            h._guard_decisions = True  # type: ignore[attr-defined]
            lg.addHandler(h)
            lg.propagate = False


def decision_line(job_key: str, attempt: int, category: str, confidence: float, action: str, reason: str) -> str:
    """One line: ``github/acme/web/42 attempt 1: network (0.93) -> retry_backoff: <reason>``."""
    why = " ".join(reason.split())
    if len(why) > 200:
        why = why[:199] + "…"
    return f"{job_key} attempt {attempt}: {category} ({confidence:.2f}) -> {action}: {why}"
