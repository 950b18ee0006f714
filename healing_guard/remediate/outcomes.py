"""How often each action actually fixed each kind of failure: learned online from ``guard.outcomes``.

The strategy table's ``p_success`` is a prior. Every executor outcome (succeeded / failed) updates a
Beta count per (category, action) pooled over repositories and per (category, repository, action), and
the planner's expected value uses the repository's estimate shrunk towards the pool, which is itself
shrunk towards the prior. So a retry that keeps failing for one repository's network errors stops
being chosen there (its expected value drops below its cost) without a fixed "downgrade after N" rule,
while other repositories keep the pooled estimate.

Pure and JSON-serialisable (it lives next to the budget ledger in a Faust table); bounded by
``max_keys`` (the least recently updated keys are dropped first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SuccessStats"]

POOL = "*"


@dataclass
class SuccessStats:
    prior_strength: float = 20.0  # the prior counts as this many outcomes (the pool mixes many repositories)
    pool_strength: float = 8.0  # the pooled estimate counts as this many for one repository
    max_keys: int = 2000
    counts: dict[str, list[float]] = field(default_factory=dict)  # key -> [successes, failures]

    @staticmethod
    def _key(category: str, repo: str, action: str) -> str:
        return f"{category}|{repo}|{action}"

    def p_success(self, category: str, repo: str, action: str, prior: float) -> float:
        """P(the action fixes this category's failure in this repository), shrunk towards the pool and
        the prior."""
        ps, pf = self.counts.get(self._key(category, POOL, action), (0.0, 0.0))
        pooled = (prior * self.prior_strength + ps) / (self.prior_strength + ps + pf)
        if repo == POOL:
            return pooled
        rs, rf = self.counts.get(self._key(category, repo, action), (0.0, 0.0))
        return (pooled * self.pool_strength + rs) / (self.pool_strength + rs + rf)

    def learn(self, category: str, repo: str, action: str, succeeded: bool) -> None:
        for r in (POOL, repo):
            k = self._key(category, r, action)
            c = self.counts.pop(k, [0.0, 0.0])  # re-inserted last: the dict order is recency
            c[0 if succeeded else 1] += 1.0
            self.counts[k] = c
        while len(self.counts) > self.max_keys:
            del self.counts[next(iter(self.counts))]

    def seen(self, category: str, repo: str, action: str) -> int:
        s, f = self.counts.get(self._key(category, repo, action), (0.0, 0.0))
        return int(s + f)

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SuccessStats:
        s = cls()
        if d:
            s.counts = {str(k): [float(v[0]), float(v[1])] for k, v in (d.get("counts") or {}).items()}
        return s
