"""Strategy presets: four named sets of settings a pipeline picks instead of tuning the guard field by field.

The product document lets a pipeline say how bold the guard may be with one word: the GitHub Action's
``strategy: 'auto-detect'``, GitLab's ``HEALING_STRATEGY: "progressive"``, the REST heal body's
``{"strategy": "aggressive"}``. A preset is nothing but :class:`~healing_guard.settings.Settings` field
overrides: it moves the thresholds and limits the planner already has (the confidence it needs, the
per-category gates of automatic actions, the test history that makes a test "flaky", the per-job retry
limit). It adds no rule of its own, so whatever a preset allows, the guard could already do with a config
file; and no preset can make the guard retry a failure it judges to be a code failure, because the
strategy table has no automatic action for those categories at any confidence.

``changes`` are generated from the real defaults (``Settings()`` and the packaged gate), so they cannot
drift from what a preset actually changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .remediate.gate import AUTOMATIC_CATEGORIES, packaged_thresholds
from .settings import Settings

__all__ = ["PRESETS", "PRESET_NAMES", "Preset", "is_preset", "normalize_preset", "preset_settings"]


@dataclass(frozen=True)
class Preset:
    """A named set of Settings overrides, and what each override changes, in words."""

    name: str
    description: str
    #: Settings field -> value; ``auto_thresholds`` merges over the configured gates (see preset_settings)
    overrides: Mapping[str, Any]
    #: one sentence per override, in the same order: the default, the preset's value and why
    changes: tuple[str, ...]


_D = Settings()
_GATES = packaged_thresholds()  # the measured per-category gates an automatic action needs (gate.yml)

#: plain reruns (the job runs again as it was) and the fixes that change the job
PLAIN_RERUN_CATEGORIES = ("infra_runner_lost", "infra_timeout", "network", "rate_limit")
CHANGING_FIX_CATEGORIES = ("oom", "disk_full", "cache_corruption", "docker_registry")


def _gates(categories: tuple[str, ...]) -> str:
    """``oom 0.75, disk_full 0.876`` from the packaged gate."""
    return ", ".join(f"{c} {_GATES[c]:g}" for c in categories)


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _preset(name: str, description: str, *changes: tuple[str, Any, str]) -> Preset:
    overrides = {f: MappingProxyType(dict(v)) if isinstance(v, Mapping) else v for f, v, _ in changes}
    return Preset(name, description, MappingProxyType(overrides),
                  tuple(text for _, _, text in changes))


_AGGRESSIVE_GATE = 0.6
_CONSERVATIVE = 0.9

PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (
    _preset(
        "auto-detect",
        "The guard's defaults: the diagnosed cause decides the fix (flaky tests rerun in isolation, more memory "
        "after an out-of-memory kill, a backoff after a network error, ...), each automatic action only above "
        "its category's measured confidence gate, and code failures go to the author. Changes nothing: the "
        "settings in force (defaults, config file, environment) stay as they are."),
    _preset(
        "progressive",
        "Starts cautious and escalates: causes a plain rerun fixes act at their measured gates, fixes that "
        "change the job (more memory, a cleanup, a cleared cache, a rebuild without layers) wait for a surer "
        "diagnosis, and a job gets up to three automatic reruns before it escalates to a person (a ticket and "
        "a Slack message, once per job). The guard has no attempt-by-attempt ladder (a plain retry first, the "
        "cause's fix on the next failure): each attempt gets the fix its cause calls for.",
        ("auto_thresholds", {c: _CONSERVATIVE for c in CHANGING_FIX_CATEGORIES},
         f"auto_thresholds: {', '.join(CHANGING_FIX_CATEGORIES)} need {_CONSERVATIVE:g} (defaults "
         f"{_gates(CHANGING_FIX_CATEGORIES)}) before their fix runs by itself (more memory or a larger runner, "
         "cleanup, cache cleared, rebuild without the layer cache); below it a person is told. Plain reruns "
         f"({_gates(PLAIN_RERUN_CATEGORIES)}) keep their gates. The guard cannot order fixes by attempt (a plain "
         "retry first, the cause's fix on the next failure): every attempt gets its cause's fix"),
        ("max_retries_per_job", 3,
         f"max_retries_per_job: {_D.max_retries_per_job} -> 3: up to three automatic reruns of a job, then "
         "escalation (one ticket and a Slack message per job) instead of a fourth")),
    _preset(
        "aggressive",
        "Acts on less certain diagnoses, retries more and calls a test flaky on less history. Still never "
        "retries a failure it judges a code failure (compilation, lint, build configuration, dependency "
        "errors, a test that is not known to be flaky): the strategy table has no automatic action for those "
        "at any confidence, and a test counts as flaky only after it has failed and then passed on the next "
        "run at least once (flaky_min_recoveries, which no preset lowers), so a regression is never hidden "
        "behind a retry. Budgets are unchanged and still stop "
        "automatic actions at 100 %.",
        ("confidence_threshold", 0.4,
         f"confidence_threshold: {_D.confidence_threshold:g} -> 0.4: the guard considers an automatic action for "
         "a diagnosis at 0.4 or more (below it, on-call is told): a test failure whose failed tests are all known "
         "flaky is rerun from 0.4; the other causes also need their gate (auto_thresholds)"),
        ("auto_thresholds", {c: _AGGRESSIVE_GATE for c in AUTOMATIC_CATEGORIES},
         f"auto_thresholds: every automatic category ({_gates(AUTOMATIC_CATEGORIES)}) -> {_AGGRESSIVE_GATE:g}: "
         "the fix runs by itself on diagnoses the measured precision gate would hand to a person"),
        ("max_retries_per_job", 3,
         f"max_retries_per_job: {_D.max_retries_per_job} -> 3: up to three automatic reruns of a job before "
         "escalation"),
        ("flaky_retry_threshold", 0.4,
         f"flaky_retry_threshold: {_D.flaky_retry_threshold:g} -> 0.4: failed tests are rerun when each passes "
         "a rerun with probability 0.4 or more"),
        ("flaky_min_runs", 3,
         f"flaky_min_runs: {_D.flaky_min_runs} -> 3: a test's history counts after 3 runs (it must still have "
         f"failed and then passed on the next run at least {_times(_D.flaky_min_recoveries)}: flaky_min_recoveries "
         "is unchanged)")),
    _preset(
        "conservative",
        "Acts only on very confident diagnoses and well-known flaky tests, reruns a job once, and hands "
        "everything else to a person: the author for code failures diagnosed at 0.9 or more, on-call for "
        "the rest (a diagnosis under 0.9 is not sure enough to blame the author's change either).",
        ("confidence_threshold", _CONSERVATIVE,
         f"confidence_threshold: {_D.confidence_threshold:g} -> {_CONSERVATIVE:g}: a diagnosis under "
         f"{_CONSERVATIVE:g} never leads to an automatic action: on-call is told, whatever the cause"),
        ("auto_thresholds", {c: _CONSERVATIVE for c in AUTOMATIC_CATEGORIES},
         f"auto_thresholds: every automatic category ({_gates(AUTOMATIC_CATEGORIES)}) -> {_CONSERVATIVE:g}: "
         "only very confident diagnoses are fixed by themselves"),
        ("max_retries_per_job", 1,
         f"max_retries_per_job: {_D.max_retries_per_job} -> 1: one automatic rerun of a job; if it fails again, "
         "escalation to a person"),
        ("flaky_retry_threshold", _CONSERVATIVE,
         f"flaky_retry_threshold: {_D.flaky_retry_threshold:g} -> {_CONSERVATIVE:g}: failed tests are rerun "
         f"only when each passes a rerun with probability {_CONSERVATIVE:g} or more"),
        ("flaky_min_runs", 20,
         f"flaky_min_runs: {_D.flaky_min_runs} -> 20: a test needs 20 runs of history before it may count as "
         "flaky"),
        ("flaky_min_recoveries", 3,
         f"flaky_min_recoveries: {_D.flaky_min_recoveries} -> 3: a test is rerun as flaky only after it has "
         "failed and then passed on the next run three times")),
)})

#: what ``normalize_preset`` answers, in the document's order
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def _key(value: str) -> str:
    return value.strip().lower().replace("_", "-")


def is_preset(value: object) -> bool:
    """Whether ``value`` names a preset (any case, ``_`` or ``-``): ``"Auto_Detect"`` does."""
    return isinstance(value, str) and _key(value) in PRESETS


def normalize_preset(value: object) -> str:
    """``"Auto_Detect"`` -> ``"auto-detect"``; ValueError listing the four names otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"expected a preset name (string), got {type(value).__name__}; "
                         f"known: {', '.join(PRESET_NAMES)}")
    key = _key(value)
    if key not in PRESETS:
        raise ValueError(f"unknown preset {value!r}; known: {', '.join(PRESET_NAMES)}")
    return key


def preset_settings(settings: Settings, name: str, *, max_retries: int | None = None) -> Settings:
    """``settings`` under preset ``name``: its overrides replace those fields, except ``auto_thresholds``,
    whose categories replace only those categories (a team's measured gates for the others stay).

    ``max_retries`` (the pipeline's ``max-retries`` / ``HEALING_MAX_RETRIES``) sets the per-job retry
    limit, ``max_retries_per_job``, over the preset's own: 0 means no automatic rerun, every failure
    escalates to a person.
    """
    preset = PRESETS[normalize_preset(name)]
    changes: dict[str, Any] = {}
    for field, value in preset.overrides.items():
        if field == "auto_thresholds":
            value = {**settings.auto_thresholds, **value}
        changes[field] = dict(value) if isinstance(value, Mapping) else value  # plain dicts: Settings pickles
    if max_retries is not None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries: expected a whole number >= 0, got {max_retries!r}")
        changes["max_retries_per_job"] = max_retries
    return dataclasses.replace(settings, **changes) if changes else settings
