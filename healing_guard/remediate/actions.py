"""The action vocabulary: every action a command can carry, in one place.

The planner, the executor, the metrics, the ROI views and the REST API all sort actions the same way:

- a *rerun* runs the job (or its failed tests) again, possibly changed: it costs CI minutes;
- a *notification* tells a person (author, on-call, a budget owner, an incident, an escalation): it
  costs nothing and is never "automatic";
- a *test action* changes how a test is treated (quarantine, release) without a rerun.

"Automatic" means the guard acts without a person: reruns and test actions.
"""

from __future__ import annotations

__all__ = [
    "EXECUTOR_ACTIONS",
    "LEGACY_MANUAL_ACTIONS",
    "NOTIFY_ACTIONS",
    "RERUN_ACTIONS",
    "TEST_ACTIONS",
    "is_automatic",
    "is_rerun",
]

RERUN_ACTIONS = frozenset({
    "retry", "retry_backoff", "retry_tests_isolated", "rerun_sequential", "rerun_more_memory",
    "rerun_larger_runner", "clear_cache_retry", "rebuild_no_layer_cache", "cleanup_retry", "rerun_clean_dependencies",
})
NOTIFY_ACTIONS = frozenset({"notify_author", "notify_oncall", "notify_budget", "notify_recovery", "open_incident",
                            "escalate"})
TEST_ACTIONS = frozenset({"quarantine_test", "release_test"})
#: what the executor carries out (anything else on guard.actions is refused)
EXECUTOR_ACTIONS = RERUN_ACTIONS | NOTIFY_ACTIONS | TEST_ACTIONS
#: the actions the legacy ``roi_daily`` view (002_roi_daily.sql) counts as manual; ``notify`` is the name
#: older commands used. The ROI report (003_roi.sql) counts :data:`RERUN_ACTIONS` instead.
LEGACY_MANUAL_ACTIONS: tuple[str, ...] = ("notify_author", "notify_oncall", "notify", "escalate")


def is_automatic(action: str) -> bool:
    """The guard acts without a person (a rerun or a test action, not a notification)."""
    return action not in NOTIFY_ACTIONS


def is_rerun(action: str) -> bool:
    return action in RERUN_ACTIONS
