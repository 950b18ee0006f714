"""The auto-remediation gate: a category's action runs by itself only where the diagnosis is precise.

A wrong automatic action costs money (a retry of a genuine failure) or hides a regression, so each
category whose strategy acts automatically has its own confidence threshold, chosen from measured
precision: the lowest confidence at which the diagnoses of that category were right at least
``target`` of the time on labelled logs. Below it the guard notifies instead of acting.

The packaged thresholds (``gate.yml``) were measured with ``benchmarks/accuracy.py --write-gate`` on
the labelled development logs; a team re-measures on its own labelled failures the same way and sets
``pipeline.auto_thresholds`` in its config.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import yaml

from .strategies import STRATEGIES

__all__ = [
    "AUTOMATIC_CATEGORIES",
    "DEFAULT_THRESHOLD",
    "GateEntry",
    "choose_thresholds",
    "packaged_thresholds",
]

#: Categories whose strategy acts without a human (see the strategy table).
AUTOMATIC_CATEGORIES = tuple(sorted(c for c, st in STRATEGIES.items() if st.automatic))
#: Threshold for a category with too few labelled examples to measure: conservative.
DEFAULT_THRESHOLD = 0.75
NEVER = 1.01  # above any confidence: the category never acts by itself


@dataclass(frozen=True)
class GateEntry:
    category: str
    threshold: float
    support: int  # labelled predictions of this category that were measured
    precision: float | None  # measured precision at the threshold (None: not measured)
    acted: int  # predictions at or above the threshold


def choose_thresholds(
    predictions: Iterable[tuple[str, float, bool]],
    *,
    target: float = 0.95,
    min_support: int = 3,
    floor: float = 0.5,
    default: float = DEFAULT_THRESHOLD,
    lower_support: int = 20,
) -> dict[str, GateEntry]:
    """Per automatic category, the lowest threshold whose precision reaches ``target``.

    ``predictions`` are ``(predicted category, confidence, correct)`` on labelled logs. A category with
    fewer than ``min_support`` predictions keeps ``default``; one whose precision never reaches the
    target at any threshold gets ``NEVER`` (it always notifies). A threshold goes below ``default``
    only with at least ``lower_support`` predictions measured, and never below ``floor``.
    """
    by_cat: dict[str, list[tuple[float, bool]]] = {}
    for cat, conf, ok in predictions:
        if cat in AUTOMATIC_CATEGORIES:
            by_cat.setdefault(cat, []).append((conf, ok))
    out: dict[str, GateEntry] = {}
    for cat in AUTOMATIC_CATEGORIES:
        preds = sorted(by_cat.get(cat, []), key=lambda t: -t[0])
        if len(preds) < min_support:
            out[cat] = GateEntry(cat, default, len(preds), None, 0)
            continue
        best: GateEntry | None = None
        right = 0
        for i, (conf, ok) in enumerate(preds, 1):
            right += ok
            nxt = preds[i][0] if i < len(preds) else None
            if nxt is not None and nxt == conf:
                continue  # a threshold cannot separate equal confidences
            prec = right / i
            if prec >= target and i >= min_support:
                best = GateEntry(cat, max(round(conf, 4), floor), len(preds), round(prec, 4), i)
        if best is not None and best.acted == len(preds):
            # right all the way down to the lowest confidence seen: below that there is no evidence,
            # so the threshold goes no higher than the default
            best = replace(best, threshold=max(min(best.threshold, default), floor))
        if best is not None and len(preds) < lower_support:
            # a few right answers do not prove precision at a low confidence: below the default
            # only with enough measurements
            best = replace(best, threshold=max(best.threshold, default))
        out[cat] = best or GateEntry(cat, NEVER, len(preds), round(sum(ok for _, ok in preds) / len(preds), 4), 0)
    return out


def dump_gate(entries: Mapping[str, GateEntry], *, source: str, target: float) -> str:
    """The YAML text of a gate file (what ``--write-gate`` writes)."""
    doc: dict[str, Any] = {
        "source": source,
        "target_precision": target,
        "thresholds": {
            e.category: {"threshold": e.threshold, "support": e.support, "precision": e.precision, "acted": e.acted}
            for e in sorted(entries.values(), key=lambda e: e.category)
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


@functools.lru_cache(maxsize=1)
def packaged_thresholds() -> dict[str, float]:
    """The measured thresholds shipped with the guard, with DEFAULT_THRESHOLD for the rest."""
    out = {c: DEFAULT_THRESHOLD for c in AUTOMATIC_CATEGORIES}
    ref = resources.files("healing_guard.remediate").joinpath("gate.yml")
    if ref.is_file():
        doc = yaml.safe_load(ref.read_text(encoding="utf-8")) or {}
        for cat, entry in (doc.get("thresholds") or {}).items():
            if cat in out:
                out[cat] = float(entry["threshold"])
    return out
