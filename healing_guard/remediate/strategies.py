"""The strategy table: which action answers which failure category, in one place.

Code failures (compile, lint, genuine test failures, build config, dependency errors) are never
retried: a retry burns money and hides the regression, so they go to the author. ``p_success`` is the
prior probability that the action turns the job green; ``rerun_fraction`` is the share of the job's
minutes the action spends again; ``size_factor`` scales the runner price (OOM reruns on a bigger runner).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .actions import NOTIFY_ACTIONS, is_automatic

__all__ = [
    "ALTERNATIVES", "CLEAN_DEPENDENCIES", "ESCALATE", "FLAKY_RETRY", "NOTIFY_ACTIONS", "NOTIFY_AUTHOR", "NOTIFY_ONCALL",
    "RACE_RETRY", "RACE_WORDS", "STRATEGIES", "Remedy", "looks_like_race", "remedies_for", "remedy_for",
]


@dataclass(frozen=True)
class Remedy:
    """One action with its prior chance of success, its cost shape and parameters (a row of the table).

    The user-facing strategy *names* (flaky-test-retry, oom-recovery, ...) are ``catalogue.Strategy``."""

    action: str
    p_success: float
    rerun_fraction: float = 1.0
    size_factor: float = 1.0
    parameters: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    @property
    def automatic(self) -> bool:
        return is_automatic(self.action)


NOTIFY_AUTHOR = Remedy("notify_author", 0.0, 0.0, why="a code failure: a retry cannot fix it and would hide it")

STRATEGIES: dict[str, Remedy] = {
    "test_failure": NOTIFY_AUTHOR,  # flaky tests are decided by the per-test model, see planner
    "test_timeout": NOTIFY_AUTHOR,
    "compilation_error": NOTIFY_AUTHOR,
    "lint_style": NOTIFY_AUTHOR,
    "build_config": NOTIFY_AUTHOR,
    "dependency_resolution": NOTIFY_AUTHOR,
    "dependency_missing": NOTIFY_AUTHOR,
    "network": Remedy("retry_backoff", 0.7, parameters={"backoff_seconds": [30, 120, 480]},
                        why="transient network error: retry after an exponential backoff"),
    "rate_limit": Remedy("retry_backoff", 0.75, parameters={"backoff_seconds": [300, 900, 1800],
                                                               "honour_reset_headers": True},
                           why="rate limited: retry after the limit resets"),
    "docker_registry": Remedy("rebuild_no_layer_cache", 0.6, parameters={"no_cache": True,
                                                                           "backoff_seconds": [60, 300]},
                                why="registry or layer error: pull again and rebuild without the layer cache"),
    "cache_corruption": Remedy("clear_cache_retry", 0.8, parameters={"clear_cache": True},
                                 why="corrupt cache: clear the cache key and run again"),
    "oom": Remedy("rerun_more_memory", 0.6, parameters={"memory_factor": 2},
                    why="out of memory: rerun with twice the memory limit (container limit, JVM/Node heap)"),
    "disk_full": Remedy("cleanup_retry", 0.7, parameters={"cleanup": ["docker system prune -af", "rm -rf ~/.cache"]},
                          why="disk full: clean up the workspace and retry"),
    "infra_runner_lost": Remedy("retry", 0.85, why="the runner was lost: the job never finished, run it again"),
    "infra_timeout": Remedy("retry", 0.5, why="the platform timed the job out: retry once"),
    "crash": Remedy("notify_oncall", 0.0, 0.0, why="a crash (signal or sanitizer): needs a human"),
    "unknown": Remedy("notify_oncall", 0.0, 0.0, why="cause unknown: a human decides"),
}

FLAKY_RETRY = Remedy("retry_tests_isolated", 0.0, rerun_fraction=0.35,
                       parameters={"isolation": "fresh_process", "failed_tests_only": True},
                       why="every failed test is known to be flaky: rerun only them, in a fresh process")


#: Other automatic actions that may answer a category; the planner picks the one with the highest
#: expected value (``p_success`` learned from outcomes, cost from the runner price and ``size_factor``).
ALTERNATIVES: dict[str, tuple[Remedy, ...]] = {
    "oom": (Remedy("rerun_larger_runner", 0.75, size_factor=2.0, parameters={"runner_size": "next"},
                     why="out of memory: rerun on the next larger runner class"),),
    "rate_limit": (),
    "network": (),
}

#: A flaky test whose failure looks like a race (deadlock, data race, concurrent modification):
#: an isolated rerun in parallel may hit it again, a sequential one does not.
RACE_RETRY = Remedy("rerun_sequential", 0.0, rerun_fraction=0.5,
                      parameters={"parallelism": 1, "failed_tests_only": True},
                      why="the failed tests are flaky and the failure looks like a race: rerun them one at a time")

#: dependency-hell (pin and isolate): the planner's table sends dependency failures to the author; this
#: is the action a person (or healing-strategies.yml's dependency_hell) can choose instead
CLEAN_DEPENDENCIES = Remedy(
    "rerun_clean_dependencies", 0.35, parameters={"clear_dependency_cache": True, "frozen_lockfile": True},
    why="dependency resolution failed: rerun once with a clean dependency cache and the frozen lockfile "
        "(pin and isolate)")

#: A job that keeps failing past the per-job retry limit: a ticket (Jira or ServiceNow) and a message to
#: the on-call channel, once per job (see the planner's command id).
ESCALATE = Remedy("escalate", 0.0, 0.0, parameters={"ticket": True, "slack": True, "page": False},
                    why="failed again after the retry limit: a ticket for a person")

#: who is told when the cause is unknown, the confidence too low or an automatic action refused
NOTIFY_ONCALL = STRATEGIES["unknown"]

#: The race rule: a failure whose lines say race, deadlock or concurrent modification. A flaky test that
#: fails like this reruns into the same race when its tests run in parallel again (see the planner).
RACE_WORDS = re.compile(r"dead ?lock|\bdata race\b|\brace condition\b|concurrent ?modification"
                        r"|\bconcurrent map (?:read and map write|writes|iteration)\b|ThreadSanitizer", re.IGNORECASE)


def looks_like_race(texts: Iterable[str]) -> bool:
    return any(RACE_WORDS.search(t) for t in texts)


def remedies_for(category: str) -> tuple[Remedy, ...]:
    """The table's answer for ``category`` first, then the alternatives the planner weighs."""
    return (STRATEGIES.get(category, STRATEGIES["unknown"]), *ALTERNATIVES.get(category, ()))


def remedy_for(category: str, action: str) -> Remedy | None:
    """The remedy that ``action`` means for a failure of ``category`` (its parameters depend on the cause:
    ``retry_backoff`` waits minutes after a network error, half an hour after a rate limit); None for an
    action the table does not have."""
    for r in remedies_for(category):
        if r.action == action:
            return r
    for r in (FLAKY_RETRY, RACE_RETRY, CLEAN_DEPENDENCIES, ESCALATE, NOTIFY_AUTHOR, NOTIFY_ONCALL,
              *STRATEGIES.values(), *(a for alts in ALTERNATIVES.values() for a in alts)):
        if r.action == action:
            return r
    return None
