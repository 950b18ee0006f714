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
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from healing_guard.patterns.tokenize import template

from .classifier import Diagnosis, EvidenceLine

log = logging.getLogger(__name__)

__all__ = ["MODEL_FILE", "TextModel", "chunk_text", "combine", "features", "packaged_model", "packaged_path"]

MODEL_FILE = "text_model.json"
FORMAT = 2
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


#: pattern evidence lines the model reads (the strongest; a diagnosis may hold 64, and each costs a template)
MODEL_EVIDENCE = 12


def chunk_text(evidence: Sequence[EvidenceLine], located: Sequence[EvidenceLine], command: str | None) -> list[str]:
    """The lines the model reads: the strongest pattern hits, the located error and exit lines, the command."""
    seen: set[int] = set()
    out: list[str] = []
    for e in (*evidence[:MODEL_EVIDENCE], *located):
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
    """River's multinomial naive Bayes plus the vocabulary it may use (words seen across several projects).

    Learning goes through River (``learn_one``). Predicting reads the model's counts through tables built
    once per change (River recomputes the class total and term count for every feature and class, about
    2 ms a prediction; the tables make it a fraction of that, and the worker predicts once per failed
    job). The artifact is the counts as JSON, not a pickle: loading it runs no code and needs no River
    (so ``guard analyze`` does not import SciPy), and any River version can continue learning from it.
    """

    def __init__(self, model: Any = None, vocabulary: frozenset[str] | None = None, *,
                 info: Mapping[str, Any] | None = None, alpha: float = 0.1) -> None:
        self._river = model  # created on the first learn_one when the model came from a file
        self.alpha = float(getattr(model, "alpha", alpha))
        self.class_counts: dict[str, float] = dict(getattr(model, "class_counts", {}) or {})
        self.class_totals: dict[str, float] = dict(getattr(model, "class_totals", {}) or {})
        self.feature_counts: dict[str, dict[str, float]] = {
            f: dict(c) for f, c in (getattr(model, "feature_counts", {}) or {}).items()}
        self.vocabulary = vocabulary
        self.info: dict[str, Any] = dict(info or {})
        self._tables: tuple[dict[str, float], dict[str, float], dict[str, dict[str, float]]] | None = None

    @property
    def model(self) -> Any:
        """The River model, rebuilt from the counts when the model was loaded from a file."""
        if self._river is None:
            from collections import Counter, defaultdict

            from river import naive_bayes

            m = naive_bayes.MultinomialNB(alpha=self.alpha)
            m.class_counts = Counter(self.class_counts)
            m.class_totals = Counter(self.class_totals)
            m.feature_counts = defaultdict(Counter, {f: Counter(c) for f, c in self.feature_counts.items()})
            self._river = m
        return self._river

    def _x(self, x: Mapping[str, float]) -> dict[str, float]:
        if self.vocabulary is None:
            return dict(x)
        return {k: v for k, v in x.items() if k in self.vocabulary}

    def learn_one(self, x: Mapping[str, float], label: str) -> None:
        xs = self._x(x)
        if not xs:
            return
        m = self.model
        m.learn_one(xs, label)
        self.class_counts[label] = float(m.class_counts[label])
        self.class_totals[label] = float(m.class_totals[label])
        for f in xs:
            self.feature_counts[f] = {c: float(n) for c, n in m.feature_counts[f].items()}
        self._tables = None

    def _table(self) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, float]]]:
        """(log P(class), log of each class's denominator, log(count + alpha) per feature and class), as
        River's MultinomialNB computes them."""
        if self._tables is None:
            n = sum(self.class_counts.values())
            n_terms = len(self.feature_counts)
            prior = {c: math.log(k / n) for c, k in self.class_counts.items() if k > 0}
            den = {c: math.log(self.class_totals.get(c, 0.0) + self.alpha * n_terms) for c in prior}
            logs = {f: {c: math.log(k + self.alpha) for c, k in cs.items() if k} for f, cs in self.feature_counts.items()}
            self._tables = (prior, den, logs)
        return self._tables

    def predict_proba(self, x: Mapping[str, float]) -> dict[str, float]:
        xs = self._x(x)
        if not xs or not self.class_counts:
            return {}
        prior, den, logs = self._table()
        log_alpha = math.log(self.alpha)
        jll = {c: v - sum(xs.values()) * den[c] for c, v in prior.items()}
        for f, freq in xs.items():
            lf = logs.get(f)
            for c in jll:
                jll[c] += freq * (lf.get(c, log_alpha) if lf else log_alpha)
        top = max(jll.values())
        z = sum(math.exp(v - top) for v in jll.values())
        return {c: math.exp(v - top) / z for c, v in jll.items()}

    def dump(self, path: str | Path) -> None:
        Path(path).write_bytes(orjson.dumps({
            "format": FORMAT, "kind": "river.naive_bayes.MultinomialNB", "alpha": self.alpha,
            "class_counts": self.class_counts, "class_totals": self.class_totals,
            "feature_counts": self.feature_counts,
            "vocabulary": sorted(self.vocabulary) if self.vocabulary is not None else None, "info": self.info,
        }, option=orjson.OPT_SORT_KEYS))

    @classmethod
    def load(cls, path: str | Path) -> TextModel:
        try:
            d = orjson.loads(Path(path).read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a text model ({exc})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{path}: not a text model of format {FORMAT} (train one with benchmarks/train_text_model.py)")
        m = cls(vocabulary=frozenset(d["vocabulary"]) if d.get("vocabulary") is not None else None,
                info=d.get("info"), alpha=float(d["alpha"]))
        m.class_counts = {str(c): float(n) for c, n in d["class_counts"].items()}
        m.class_totals = {str(c): float(n) for c, n in d["class_totals"].items()}
        m.feature_counts = {str(f): {str(c): float(n) for c, n in cs.items()} for f, cs in d["feature_counts"].items()}
        return m


def packaged_path() -> Path | None:
    """Where the packaged model's file is (None when the package has none)."""
    ref = resources.files("healing_guard.classify").joinpath(MODEL_FILE)
    return Path(str(ref)) if ref.is_file() else None


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
