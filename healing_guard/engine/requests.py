"""A person's heal request (``POST .../heal``, the SDK): the strategy they name, as the executor's Command.

Pure, like the rest of the engine: the REST API only parses the request and sends what this returns.

No second strategy table here: the names are :class:`~healing_guard.remediate.catalogue.Strategy`, the
categories each one answers are its :data:`~healing_guard.remediate.catalogue.CATALOGUE` row, and the
action with its parameters is the planner's table (``remediate/strategies.py``) for the failure's
category. ``auto`` takes the guard's own first recommendation for that failure.

A *preset* (:mod:`healing_guard.presets`: ``auto-detect``, ``progressive``, ``aggressive``,
``conservative``) asks the guard to decide again, as the worker would under the preset's settings: the
diagnosis goes through the policy's :func:`~healing_guard.remediate.policy.choose` with the planner config
of the preset's settings (its confidence threshold, per-category gates and per-job retry limit, so a job
past the limit escalates). The failed tests' histories are not in the warehouse: a test failure gets a
flaky rerun (through the planner's checks, :func:`~healing_guard.remediate.planner.plan_chosen`) only
when the worker judged every failed test flaky on this attempt and the preset asks for no more history
than the worker's settings did. No heal request, preset or not, is charged to the worker's budget ledger.

The command id is the planner's :func:`~healing_guard.remediate.planner.command_id` of job key, attempt
and action: posting the same request twice queues the same id, and the executor, idempotent by
command id, acts once. The same holds when the worker already chose that very action for that attempt:
the job is not rerun twice.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..classify import Diagnosis, EvidenceLine
from ..ids import stable_id
from ..presets import PRESET_NAMES, is_preset, normalize_preset, preset_settings
from ..remediate import strategies as table
from ..remediate.actions import is_automatic
from ..remediate.planner import Ledger, command_id, plan_chosen
from ..remediate.policy import TEST_CATEGORIES, choose
from ..schemas import Command, Evidence, JobEvent
from ..remediate.catalogue import CATALOGUE, Strategy
from ..settings import Settings
from .core import plan_config, policy_of_settings

__all__ = ["AUTO", "CHANNELS", "HEAL_STRATEGY_NAMES", "STRATEGY_NAMES", "HealPlan", "normalize_heal_strategy",
           "normalize_strategy", "plan_heal", "recommendations"]

AUTO = "auto"
#: what ``strategy`` accepts: the guard's choice, or a row of the remediation table
STRATEGY_NAMES: tuple[str, ...] = (AUTO, *(s.value for s in Strategy))
#: what a heal request's ``strategy`` accepts: a preset (the guard decides under its settings), or the above
HEAL_STRATEGY_NAMES: tuple[str, ...] = (*PRESET_NAMES, *STRATEGY_NAMES)
#: notification channels the executor has (Slack message, Jira issue, PagerDuty page)
CHANNELS: tuple[str, ...] = ("slack", "jira", "pagerduty")


def normalize_strategy(value: object) -> str:
    """``"Flaky-Test-Retry"`` -> ``"flaky_test_retry"``; ValueError listing the valid names otherwise."""
    if isinstance(value, Strategy):
        return value.value
    if not isinstance(value, str):
        raise ValueError(f"expected a strategy name (string); known: {', '.join(STRATEGY_NAMES)}")
    key = value.strip().lower().replace("-", "_")
    if key not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {value!r}; known: {', '.join(STRATEGY_NAMES)}")
    return key


def normalize_heal_strategy(value: object) -> str:
    """A heal request's ``strategy``: a preset (``"Aggressive"`` -> ``"aggressive"``, ``"auto_detect"`` ->
    ``"auto-detect"``) or a strategy (:func:`normalize_strategy`); ValueError listing both otherwise."""
    if is_preset(value):
        return normalize_preset(value)
    try:
        return normalize_strategy(value)
    except ValueError:
        known = f"known presets: {', '.join(PRESET_NAMES)}; strategies: {', '.join(STRATEGY_NAMES)}"
        if not isinstance(value, (str, Strategy)):
            raise ValueError(f"expected a preset or strategy name (string); {known}") from None
        raise ValueError(f"unknown strategy {value!r}; {known}") from None


@dataclasses.dataclass(frozen=True)
class HealPlan:
    """The command to queue and, when a rerun was asked with notifications, the message about it."""

    command: Command
    notify_command: Command | None
    strategy: str


def _for_strategy(strategy: Strategy, category: str) -> table.Remedy:
    """The action ``strategy`` takes on a failure of ``category``.

    The failure's own row when the strategy answers that category (OOM: more memory; full disk:
    cleanup); otherwise the strategy's first category's row, because a person who names a strategy
    for another cause has overridden the diagnosis on purpose.
    """
    if strategy is Strategy.FLAKY_TEST_RETRY:
        return table.FLAKY_RETRY
    if strategy is Strategy.RACE_CONDITION:
        return table.RACE_RETRY
    if strategy is Strategy.DEPENDENCY_HELL:
        return table.CLEAN_DEPENDENCIES
    if strategy is Strategy.SKIP_AND_NOTIFY:
        row = table.STRATEGIES.get(category)
        return row if row is not None and not row.automatic else table.STRATEGIES["unknown"]
    cats = CATALOGUE[strategy].categories
    return table.STRATEGIES[category if category in cats else cats[0]]


def _auto(failure: Mapping[str, Any]) -> tuple[table.Remedy, str]:
    recs = [r for r in failure.get("recommendations") or [] if isinstance(r, Mapping) and r.get("action")]
    rec = next((r for r in recs if r.get("automatic")), recs[0] if recs else None)
    if rec is None:
        return table.STRATEGIES["unknown"], "no recommendation for this failure: on-call decides"
    # the action as it answers this failure's cause (retry_backoff after a rate limit waits for the reset,
    # after a network error only minutes): the table's row for (category, action), not the action's name
    st = table.remedy_for(str(failure.get("category") or "unknown"), str(rec["action"]))
    if st is None:  # a custom strategy's action: carried as named, without parameters
        st = table.Remedy(str(rec["action"]), float(rec.get("confidence") or 0.0))
    return st, str(rec.get("reason") or st.why)


def _channels(notify: bool | Sequence[str]) -> tuple[str, ...]:
    if notify is True:
        return ("slack",)
    if notify is False or notify is None:
        return ()
    return tuple(dict.fromkeys(notify))


#: the flaky reruns the worker chooses from the failed tests' histories
_FLAKY_RERUNS: Mapping[str, table.Remedy] = {table.FLAKY_RETRY.action: table.FLAKY_RETRY,
                                             table.RACE_RETRY.action: table.RACE_RETRY}


def _flaky_tests(failure: Mapping[str, Any], preset: str, s: Settings, base: Settings) -> tuple[table.Remedy, str]:
    """A test failure under a preset: the histories live with the worker, so its judgement of this attempt's
    failed tests stands, unless the preset asks for more history than the worker's settings did."""
    worker = next((str(c["action"]) for c in failure.get("commands") or []
                   if isinstance(c, Mapping) and c.get("action") in _FLAKY_RERUNS), None)
    if worker is None:
        return table.NOTIFY_AUTHOR, ("the guard did not find every failed test known to be flaky on this attempt: a "
                                     "real failure until shown otherwise, the author decides")
    if (s.flaky_retry_threshold > base.flaky_retry_threshold or s.flaky_min_runs > base.flaky_min_runs
            or s.flaky_min_recoveries > base.flaky_min_recoveries):
        return table.NOTIFY_AUTHOR, (
            f"{preset} needs P(retry passes) >= {s.flaky_retry_threshold:.2f} over >= {s.flaky_min_runs} runs with "
            f">= {s.flaky_min_recoveries} recoveries, more than the guard judged these tests flaky on "
            f"(>= {base.flaky_retry_threshold:.2f} over >= {base.flaky_min_runs} runs with >= "
            f"{base.flaky_min_recoveries}); the test histories are not at hand here: the author decides")
    # the worker retried only if every failed test passes a rerun at least this often: a floor for P(success)
    st = dataclasses.replace(_FLAKY_RERUNS[worker], p_success=base.flaky_retry_threshold)
    return st, (f"the guard found every failed test flaky (P(retry passes) >= {base.flaky_retry_threshold:.2f} "
                f"over >= {base.flaky_min_runs} runs): {st.why}")


def _by_preset(failure: Mapping[str, Any], preset: str, base: Settings, now: float) -> Command:
    """The command the guard chooses for ``failure`` under ``preset``'s settings (see the module docstring)."""
    s = preset_settings(base, preset)
    cfg = plan_config(s, partitions=1)
    category = str(failure.get("category") or "unknown")
    confidence = float(failure.get("confidence") or 0.0)
    job = JobEvent(provider=failure["provider"], owner=str(failure["owner"]), repo=str(failure["repo"]),
                   job_id=str(failure["job_id"]), job_name="", status="completed", conclusion="failure",
                   attempt=int(failure.get("attempt") or 1), run_id=failure.get("run_id"))
    d = Diagnosis(category, confidence, tuple(
        EvidenceLine(int(e["line"]), str(e["text"]), str(e["pattern"]), category, confidence)
        for e in failure.get("evidence") or []))
    price = s.price(None)
    if category in TEST_CATEGORIES and confidence >= cfg.confidence_threshold:
        st, reason = _flaky_tests(failure, preset, s, base)
        return plan_chosen(job, d, st, reason, Ledger(), cfg, price, now)[1]
    # the strategies the settings name (healing-strategies.yml, healing.strategies), as the worker applies them
    return choose(job, d, (), Ledger(), cfg, price, now, policy=policy_of_settings(s)).command


def plan_heal(failure: Mapping[str, Any], strategy: str, notify: bool | Sequence[str], *,
              requested_by: str, now: float | None = None, settings: Settings | None = None) -> HealPlan:
    """The Command(s) for a heal request on one diagnosed failure (contract shape of ``failure()``).

    ``strategy``: a preset, ``auto`` or a strategy (:data:`HEAL_STRATEGY_NAMES`); a preset applies its
    overrides to ``settings`` (the API's; the defaults when None). ``notify``: True (Slack), False, or
    channels among :data:`CHANNELS`. A notification action uses them as its ``slack`` / ``ticket`` /
    ``page`` switches; a rerun gets a second, ``notify_oncall`` command saying a person asked for it (the
    executor posts messages only for notification actions).
    """
    now = time.time() if now is None else now
    name = normalize_heal_strategy(strategy)
    category = str(failure.get("category") or "unknown")
    job_key = str(failure["job_key"])
    attempt = int(failure.get("attempt") or 1)
    if is_preset(name):
        chosen = _by_preset(failure, name, settings if settings is not None else Settings(), now)
        # the planner's id: an escalation is one per job (attempt 0), whoever asks for it
        action, cid, reason = chosen.action, chosen.command_id, chosen.reason
        params: dict[str, Any] = dict(chosen.parameters)
    else:
        if name == AUTO:
            st, reason = _auto(failure)
        else:
            st = _for_strategy(Strategy(name), category)
            reason = st.why or CATALOGUE[Strategy(name)].description
        action, cid, params = st.action, command_id(job_key, attempt, st.action), dict(st.parameters)
    automatic = is_automatic(action)
    tests = [str(t) for t in failure.get("failed_tests") or []]
    if action in (table.FLAKY_RETRY.action, table.RACE_RETRY.action):
        params["tests"] = params["failed_tests"] = tests  # the executor checks the first against the second
    channels = _channels(notify)
    if not automatic and channels:
        params.update(slack="slack" in channels, ticket="jira" in channels, page="pagerduty" in channels)
    params["requested_by"] = requested_by
    params["strategy"] = name
    evidence = [Evidence(line=int(e["line"]), text=str(e["text"]), pattern=str(e["pattern"]))
                for e in (failure.get("evidence") or [])[:3]]
    common: dict[str, Any] = dict(
        provider=failure["provider"], owner=str(failure["owner"]), repo=str(failure["repo"]),
        job_id=str(failure["job_id"]), attempt=attempt, category=category,
        confidence=float(failure.get("confidence") or 0.0), evidence=evidence,
        run_id=failure.get("run_id"), ts=now)
    cmd = Command(command_id=cid, action=action, reason=f"requested through the REST API ({name}): {reason}",
                  parameters=params, estimated_cost_usd=0.0, **common)
    cmd.validate()
    note: Command | None = None
    if automatic and channels:
        nid = stable_id(job_key, attempt, "api-notify", action)
        note = Command(command_id=nid, action="notify_oncall",
                       reason=f"{action} was requested through the REST API for this job (command {cmd.command_id})",
                       parameters={"slack": "slack" in channels, "ticket": "jira" in channels,
                                   "page": "pagerduty" in channels, "requested_by": requested_by},
                       **common)
        note.validate()
    return HealPlan(cmd, note, name)


def recommendations(category: str, confidence: float, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What to do about a failure: the commands the guard sent, else its strategy table's answer for the
    category (and the alternatives it would weigh), each with the diagnosis's confidence."""
    if commands:
        return [{"action": c["action"], "confidence": c["confidence"], "reason": c["reason"],
                 "automatic": is_automatic(c["action"])} for c in commands]
    out = []
    for s in table.remedies_for(category):
        out.append({"action": s.action, "confidence": round(confidence, 4), "reason": s.why,
                    "automatic": s.automatic})
    return out
