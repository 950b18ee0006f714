"""Incidents: many jobs failing the same way at once are one problem, escalated once.

When a registry, a package mirror or a shared runner pool goes down, dozens of jobs across
repositories fail within minutes with the same templated line. Retrying each and notifying each
author is the noise peers produce. Here every diagnosed failure is re-keyed by its template; a burst
of ``min_jobs`` failures from at least ``min_repos`` repositories within ``window_seconds`` opens ONE
incident (one page + Slack message + ticket, by the executor), and later failures with the same
template attach to it until it has been quiet for ``window_seconds``.

Pure: a small, bounded JSON-able state per template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..ids import stable_id

__all__ = ["IncidentPolicy", "IncidentState", "Opened", "observe", "template_key"]

MAX_RECENT = 200


@dataclass(frozen=True)
class IncidentPolicy:
    window_seconds: float = 600.0
    min_jobs: int = 5
    min_repos: int = 2
    enabled: bool = True


@dataclass
class IncidentState:
    recent: list[list[Any]] = field(default_factory=list)  # [ts, repo, job_key], oldest first, bounded
    open_id: str | None = None
    opened_at: float = 0.0
    last_seen: float = 0.0
    attached: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"recent": self.recent, "open_id": self.open_id, "opened_at": self.opened_at,
                "last_seen": self.last_seen, "attached": self.attached}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> IncidentState:
        return cls(**d) if d else cls()


@dataclass(frozen=True)
class Opened:
    incident_id: str
    jobs: int
    repos: tuple[str, ...]
    reason: str


def template_key(template: str) -> bytes:
    return stable_id(template).encode()


def observe(state: IncidentState, *, template: str, repo: str, job_key: str, ts: float,
            policy: IncidentPolicy) -> Opened | None:
    """Record one failure with this template; the incident it opens, if it opens one."""
    if not policy.enabled:
        return None
    if state.open_id is not None and ts - state.last_seen > policy.window_seconds:
        state.open_id = None  # quiet long enough: the incident is over, a new burst is a new one
        state.attached = 0
    state.last_seen = max(state.last_seen, ts)
    if any(r[2] == job_key for r in state.recent):
        return None  # the same job again (a replay, a later attempt): one job counts once
    state.recent.append([ts, repo, job_key])
    state.recent = [r for r in state.recent if ts - r[0] <= policy.window_seconds][-MAX_RECENT:]
    if state.open_id is not None:
        state.attached += 1
        return None
    repos = sorted({r[1] for r in state.recent})
    if len(state.recent) >= policy.min_jobs and len(repos) >= policy.min_repos:
        first = state.recent[0][0]
        state.open_id = stable_id(template, first)
        state.opened_at = ts
        state.attached = len(state.recent)
        return Opened(state.open_id, len(state.recent), tuple(repos),
                      f"{len(state.recent)} jobs in {len(repos)} repositories failed with the same line within "
                      f"{int(policy.window_seconds)} s: one incident ({template[:200]})")
    return None
