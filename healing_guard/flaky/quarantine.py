"""Quarantine: take a flaky test out of the build's verdict while it is flaky, give it back when stable.

Peers quarantine at a fixed failure rate. Here the per-test model decides, with two extra conditions:
the test must be *flaky*, not broken (it has failed and then passed on the next run, ``recoveries``),
and it must have enough history. A quarantined test keeps running (its results still feed its model);
it is released after ``release_runs`` consecutive passes with its P(fail) back under half the
threshold. Each transition is one command (``quarantine_test`` = skip it in the verdict and notify its
owners; ``release_test``), with a deterministic id per episode, so replays send nothing twice.

Pure: a small JSON-able state per test, next to its model in the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..ids import stable_id

__all__ = ["QuarantinePolicy", "QuarantineState", "Transition", "step"]


@dataclass(frozen=True)
class QuarantinePolicy:
    threshold: float = 0.3  # P(the next run fails) at which a flaky test is quarantined
    min_runs: int = 20
    min_recoveries: int = 2  # failures that passed on the next run: flaky, not broken
    release_runs: int = 50  # consecutive passes before release
    enabled: bool = True


@dataclass
class QuarantineState:
    quarantined: bool = False
    episode: int = 0  # how many times it has been quarantined
    passes_since: int = 0  # consecutive passes while quarantined
    since: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"quarantined": self.quarantined, "episode": self.episode, "passes_since": self.passes_since,
                "since": self.since}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> QuarantineState:
        return cls(**d) if d else cls()


@dataclass(frozen=True)
class Transition:
    action: str  # quarantine_test | release_test
    command_id: str
    reason: str


def step(state: QuarantineState, test_id: str, *, failed: bool, p_fail: float | Callable[[], float], runs: int,
         recoveries: int, policy: QuarantinePolicy, now: float) -> Transition | None:
    """Update ``state`` with one result of the test; the transition it causes, if any. ``p_fail`` may be a
    function: it is asked only when a transition depends on it (most results of a batch never need it)."""
    if not policy.enabled:
        return None
    if not state.quarantined:
        if runs < policy.min_runs or recoveries < policy.min_recoveries:
            return None
        p_fail = p_fail() if callable(p_fail) else p_fail
        if p_fail >= policy.threshold:
            state.quarantined, state.passes_since, state.since = True, 0, now
            state.episode += 1
            return Transition("quarantine_test", _id(test_id, "quarantine", state.episode),
                              f"flaky: P(next run fails) {p_fail:.2f} >= {policy.threshold:.2f} after {runs} runs "
                              f"and {recoveries} failures that passed on retry; its failures no longer fail the "
                              "build until it is stable")
        return None
    state.passes_since = 0 if failed else state.passes_since + 1
    if state.passes_since < policy.release_runs:
        return None
    p_fail = p_fail() if callable(p_fail) else p_fail
    if p_fail < policy.threshold / 2:
        state.quarantined = False
        return Transition("release_test", _id(test_id, "release", state.episode),
                          f"stable again: {state.passes_since} passes in a row, P(next run fails) {p_fail:.2f}")
    return None


def _id(test_id: str, what: str, episode: int) -> str:
    return stable_id(test_id, what, episode)
