"""The learned half of a diagnosis: a text model over the failure chunk, for what no pattern names.

The pattern library is precise where it fires and silent elsewhere; a project the guard has never seen
fails in words no pattern names. This model reads the *failure chunk* — the lines the locator found where
the job stopped (classify/locate.py), the pattern hits, and the failing step's command — never the rest
of the log, whose platform banners and era say nothing about the cause (a model fed whole logs learns
"Travis log, so a test failure"). Features are words of the templated lines (numbers, paths, URLs,
hashes masked) and their pairs, the command's words and the exit code; the model is River's multinomial
naive Bayes, learned one example at a time, so confirmed labels keep teaching it after it ships.

Generalisation guards: a word is a feature only if the training data saw it in logs of several projects
(the vocabulary, stored with the model), so a repository's or a product's name cannot carry a decision;
training is balanced over categories, so the most common label in the data is not a default.

:func:`combine` merges it with the rules: a confident rule diagnosis stands; otherwise the model names
the category when it is sure enough, and says ``unknown`` (with its doubt as the confidence) when not.
A category the model named is marked ``learned``: the planner never acts on it by itself (a person is
told), so the model widens what the guard explains without widening what it retries.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from healing_guard.patterns.tokenize import template

from .classifier import Diagnosis, EvidenceLine

log = logging.getLogger(__name__)

__all__ = ["MODEL_FILE", "TextModel", "chunk_text", "combine", "features", "packaged_model"]

MODEL_FILE = "text_model.pkl"
FORMAT = 1
_WORD = re.compile(r"[a-z][a-z0-9_]{1,29}")
#: words that say nothing about a cause (and the placeholders template() leaves)
_STOP = frozenset("""
the and for with from this that are was were has have had not but you your its into than then when while
num hex uuid url path ip ts date time sha line lines file files run running ran job step build log info
debug warning warn using use used will would can could should may might been being also only just more
""".split())
#: the rule diagnosis stands when it is at least this sure
RULE_TRUST = 0.5
#: the model names a category when its probability is at least this
MODEL_MIN = 0.55


def chunk_text(evidence: Sequence[EvidenceLine], located: Sequence[EvidenceLine], command: str | None) -> list[str]:
    """The lines the model reads: pattern hits, the located error and exit lines, the failing command."""
    seen: set[int] = set()
    out: list[str] = []
    for e in (*evidence, *located):
        if e.line not in seen:
            seen.add(e.line)
            out.append(e.text)
    if command:
        out.append(command)
    return out


def _words(line: str) -> list[str]:
    return [w for w in _WORD.findall(template(line).lower()) if w not in _STOP]


def features(lines: Iterable[str], exit_code: int | None = None, command: str | None = None) -> dict[str, float]:
    """Bag of words and adjacent word pairs of the chunk, the command's words and the exit code."""
    x: dict[str, float] = {}
    for line in lines:
        ws = _words(line[:500])
        for w in ws:
            x[w] = x.get(w, 0.0) + 1.0
        for a, b in zip(ws, ws[1:]):
            k = f"{a}_{b}"
            x[k] = x.get(k, 0.0) + 1.0
    if command:
        for w in _words(command)[:8]:
            k = f"cmd:{w}"
            x[k] = 1.0
    if exit_code is not None:
        x[f"exit:{exit_code if exit_code in (1, 2, 124, 127, 134, 137, 139, 143) else 'other'}"] = 1.0
    return x


class TextModel:
    """A River classifier plus the vocabulary it may use (words seen across several projects)."""

    def __init__(self, model: Any = None, vocabulary: frozenset[str] | None = None, *,
                 info: Mapping[str, Any] | None = None) -> None:
        if model is None:
            from river import naive_bayes

            model = naive_bayes.MultinomialNB(alpha=0.1)
        self.model = model
        self.vocabulary = vocabulary
        self.info: dict[str, Any] = dict(info or {})

    def _x(self, x: Mapping[str, float]) -> dict[str, float]:
        if self.vocabulary is None:
            return dict(x)
        return {k: v for k, v in x.items() if k in self.vocabulary}

    def learn_one(self, x: Mapping[str, float], label: str) -> None:
        xs = self._x(x)
        if xs:
            self.model.learn_one(xs, label)

    def predict_proba(self, x: Mapping[str, float]) -> dict[str, float]:
        xs = self._x(x)
        if not xs:
            return {}
        p = self.model.predict_proba_one(xs)
        return {k: float(v) for k, v in p.items() if isinstance(v, (int, float)) and math.isfinite(v)}

    def dump(self, path: str | Path) -> None:
        Path(path).write_bytes(pickle.dumps({"format": FORMAT, "model": self.model, "vocabulary": self.vocabulary,
                                             "info": self.info}, protocol=4))

    @classmethod
    def load(cls, path: str | Path) -> TextModel:
        d = pickle.loads(Path(path).read_bytes())  # noqa: S301 - the guard's own artifact or the user's
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{path}: not a text model of format {FORMAT} (train one with benchmarks/train_text_model.py)")
        return cls(d["model"], d["vocabulary"], info=d.get("info"))


@functools.lru_cache(maxsize=1)
def packaged_model() -> TextModel | None:
    """The model that ships with the guard (None when the package has none)."""
    ref = resources.files("healing_guard.classify").joinpath(MODEL_FILE)
    if not ref.is_file():
        return None
    try:
        with resources.as_file(ref) as p:
            return TextModel.load(p)
    except Exception as exc:  # e.g. another River version: diagnose with the rules alone rather than not at all
        log.warning("the packaged text model cannot be loaded (%s); diagnosing with the patterns alone. "
                    "Retrain it with benchmarks/train_text_model.py", exc)
        return None


def combine(d: Diagnosis, proba: Mapping[str, float], *, rule_trust: float = RULE_TRUST,
            model_min: float = MODEL_MIN) -> Diagnosis:
    """The rules' diagnosis and the model's probabilities, as one diagnosis (see the module docstring)."""
    if not proba:
        return d
    top, p = max(proba.items(), key=lambda kv: (kv[1], kv[0]))
    if d.category != "unknown" and (d.confidence >= rule_trust or top == d.category):
        return d
    if top != "unknown" and p >= model_min:
        return dataclasses.replace(d, category=top, confidence=round(p, 4), learned=True)
    if d.category != "unknown":
        return d
    # unknown: how sure the guard is that none of the named causes fits
    return dataclasses.replace(d, confidence=round(max(0.0, 1.0 - p), 4))
