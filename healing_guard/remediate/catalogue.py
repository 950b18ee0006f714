"""The user-facing remediation strategies: the names people use and the failure categories each answers.

``Strategy`` names the rows of the product's remediation table (flaky-test-retry, oom-recovery, ...);
:data:`CATALOGUE` says which categories each one answers. The actions themselves (what a rerun with more
memory costs, its prior chance of success) are :mod:`.strategies`, the planner's table; the file that
tunes strategies (``healing-strategies.yml``) is read by ``healing_guard.strategies_config``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["CATALOGUE", "Strategy", "StrategyInfo", "parse_strategy_name"]


class Strategy(enum.StrEnum):
    """A row of the remediation table; the value is its key in ``healing-strategies.yml``."""

    FLAKY_TEST_RETRY = "flaky_test_retry"
    OOM_RECOVERY = "oom_recovery"
    NETWORK_BACKOFF = "network_backoff"
    CACHE_CORRUPTION = "cache_corruption"
    RACE_CONDITION = "race_condition"
    DEPENDENCY_HELL = "dependency_hell"
    INFRA_RETRY = "infra_retry"
    SKIP_AND_NOTIFY = "skip_and_notify"


@dataclass(frozen=True)
class StrategyInfo:
    """What a strategy answers and how it starts out."""

    categories: tuple[str, ...]
    description: str
    enabled: bool = True
    max_retries: int | None = None  # None: only the planner's per-job retry limit applies


#: Which categories each strategy answers. A category belongs to exactly one strategy, except the
#: test categories: FLAKY_TEST_RETRY owns them, RACE_CONDITION takes the flaky retries that look like
#: a race (a test timeout, or "deadlock" / "data race" / "concurrent modification" in the log).
CATALOGUE: Mapping[Strategy, StrategyInfo] = MappingProxyType({
    Strategy.FLAKY_TEST_RETRY: StrategyInfo(
        ("test_failure", "test_timeout"),
        "retry only the failed tests, in a fresh process, when every one of them is known to be flaky"),
    Strategy.OOM_RECOVERY: StrategyInfo(
        ("oom", "disk_full"),
        "out of resources: rerun with twice the memory; on a full disk, clean up the workspace and retry"),
    Strategy.NETWORK_BACKOFF: StrategyInfo(
        ("network", "rate_limit"),
        "retry after an exponential backoff (after the reset, when rate limited)"),
    Strategy.CACHE_CORRUPTION: StrategyInfo(
        ("cache_corruption", "docker_registry"),
        "clear the cache and rebuild (registry/layer errors: pull again and rebuild without the layer cache)"),
    Strategy.RACE_CONDITION: StrategyInfo(
        ("test_failure", "test_timeout"),
        "flaky tests that look like a race or deadlock: rerun the failed tests sequentially, one worker"),
    Strategy.DEPENDENCY_HELL: StrategyInfo(
        ("dependency_resolution", "dependency_missing"),
        "pin and isolate: rerun once with a clean dependency cache and the frozen lockfile. Off by default: "
        "dependency errors are usually the author's change", enabled=False, max_retries=1),
    Strategy.INFRA_RETRY: StrategyInfo(
        ("infra_runner_lost", "infra_timeout"),
        "the runner was lost or the platform timed the job out: run it again"),
    Strategy.SKIP_AND_NOTIFY: StrategyInfo(
        ("compilation_error", "lint_style", "build_config", "crash", "unknown"),
        "the fallback: no automatic action; the author (code failures) or on-call (everything else) is told"),
})


def parse_strategy_name(value: object, arg: str = "strategy") -> Strategy:
    """``Strategy.X``, ``"x"``, ``"X"`` or ``"flaky-test-retry"``; anything else is refused by name."""
    if isinstance(value, Strategy):
        return value
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_")
        try:
            return Strategy(key)
        except ValueError:
            pass
        raise ValueError(f"{arg}: unknown strategy {value!r}; known: {', '.join(s.value for s in Strategy)}")
    raise TypeError(f"{arg}: expected a Strategy (e.g. Strategy.FLAKY_TEST_RETRY) or its name, "
                    f"got {type(value).__name__}")
