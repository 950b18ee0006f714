"""The strategy table: which action answers which failure category, in one place.

Code failures (compile, lint, genuine test failures, build config, dependency errors) are never
retried: a retry burns money and hides the regression, so they go to the author. ``p_success`` is the
prior probability that the action turns the job green; ``rerun_fraction`` is the share of the job's
minutes the action spends again; ``size_factor`` scales the runner price (OOM reruns on a bigger runner).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NOTIFY_ACTIONS = frozenset({"notify_author", "notify_oncall", "notify_budget", "open_incident", "escalate"})


@dataclass(frozen=True)
class Strategy:
    action: str
    p_success: float
    rerun_fraction: float = 1.0
    size_factor: float = 1.0
    parameters: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    @property
    def automatic(self) -> bool:
        return self.action not in NOTIFY_ACTIONS


NOTIFY_AUTHOR = Strategy("notify_author", 0.0, 0.0, why="a code failure: a retry cannot fix it and would hide it")

STRATEGIES: dict[str, Strategy] = {
    "test_failure": NOTIFY_AUTHOR,  # flaky tests are decided by the per-test model, see planner
    "test_timeout": NOTIFY_AUTHOR,
    "compilation_error": NOTIFY_AUTHOR,
    "lint_style": NOTIFY_AUTHOR,
    "build_config": NOTIFY_AUTHOR,
    "dependency_resolution": NOTIFY_AUTHOR,
    "dependency_missing": NOTIFY_AUTHOR,
    "network": Strategy("retry_backoff", 0.7, parameters={"backoff_seconds": [30, 120, 480]},
                        why="transient network error: retry after an exponential backoff"),
    "rate_limit": Strategy("retry_backoff", 0.75, parameters={"backoff_seconds": [300, 900, 1800],
                                                               "honour_reset_headers": True},
                           why="rate limited: retry after the limit resets"),
    "docker_registry": Strategy("rebuild_no_layer_cache", 0.6, parameters={"no_cache": True,
                                                                           "backoff_seconds": [60, 300]},
                                why="registry or layer error: pull again and rebuild without the layer cache"),
    "cache_corruption": Strategy("clear_cache_retry", 0.8, parameters={"clear_cache": True},
                                 why="corrupt cache: clear the cache key and run again"),
    "oom": Strategy("rerun_more_memory", 0.6, parameters={"memory_factor": 2},
                    why="out of memory: rerun with twice the memory limit (container limit, JVM/Node heap)"),
    "disk_full": Strategy("cleanup_retry", 0.7, parameters={"cleanup": ["docker system prune -af", "rm -rf ~/.cache"]},
                          why="disk full: clean up the workspace and retry"),
    "infra_runner_lost": Strategy("retry", 0.85, why="the runner was lost: the job never finished, run it again"),
    "infra_timeout": Strategy("retry", 0.5, why="the platform timed the job out: retry once"),
    "crash": Strategy("notify_oncall", 0.0, 0.0, why="a crash (signal or sanitizer): needs a human"),
    "unknown": Strategy("notify_oncall", 0.0, 0.0, why="cause unknown: a human decides"),
}

FLAKY_RETRY = Strategy("retry_tests_isolated", 0.0, rerun_fraction=0.35,
                       parameters={"isolation": "fresh_process", "failed_tests_only": True},
                       why="every failed test is known to be flaky: rerun only them, in a fresh process")


#: Other automatic actions that may answer a category; the planner picks the one with the highest
#: expected value (``p_success`` learned from outcomes, cost from the runner price and ``size_factor``).
ALTERNATIVES: dict[str, tuple[Strategy, ...]] = {
    "oom": (Strategy("rerun_larger_runner", 0.75, size_factor=2.0, parameters={"runner_size": "next"},
                     why="out of memory: rerun on the next larger runner class"),),
    "rate_limit": (),
    "network": (),
}

#: A flaky test whose failure looks like a race (deadlock, data race, concurrent modification):
#: an isolated rerun in parallel may hit it again, a sequential one does not.
RACE_RETRY = Strategy("rerun_sequential", 0.0, rerun_fraction=0.5,
                      parameters={"parallelism": 1, "failed_tests_only": True},
                      why="the failed tests are flaky and the failure looks like a race: rerun them one at a time")

#: dependency-hell (pin and isolate): the planner's table sends dependency failures to the author; this
#: is the action a person (or healing-strategies.yml's dependency_hell) can choose instead
CLEAN_DEPENDENCIES = Strategy(
    "rerun_clean_dependencies", 0.35, parameters={"clear_dependency_cache": True, "frozen_lockfile": True},
    why="dependency resolution failed: rerun once with a clean dependency cache and the frozen lockfile "
        "(pin and isolate)")

#: A job that keeps failing past the per-job retry limit: a ticket (Jira or ServiceNow) and a message to
#: the on-call channel, once per job (see the planner's command id).
ESCALATE = Strategy("escalate", 0.0, 0.0, parameters={"ticket": True, "slack": True, "page": False},
                    why="failed again after the retry limit: a ticket for a person")
