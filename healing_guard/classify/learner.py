"""Learn from confirmed labels: an online River model that corrects the rule-based diagnosis.

The pattern rules are right out of the box; every team's logs still have their own habits (a wrapper
script that prints "error" on success, a test runner that reports timeouts its own way). When a human
confirms or corrects a diagnosis (``guard learn``, the REST API, or a label file), the learner takes
one step of a softmax regression over the diagnosis's features: every category's rule score, the
patterns that fired, the exit code. Its prediction is blended with the rules by how much it has seen,
so a handful of labels nudges and hundreds of labels decide. Probabilities from a log-loss model are
calibrated by construction, which the rule scores are not.

Pure and picklable (River models pickle), so a worker can keep it in a table and a CLI user in a file.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path

from river import linear_model, optim

from .classifier import Diagnosis

__all__ = ["LabelLearner", "features"]


def features(d: Diagnosis, exit_code: int | None = None, signature: str | None = None) -> dict[str, float]:
    """What the learner sees of a diagnosis: scores, patterns, exit code, and the log's signature (the
    templated line that describes it), which is what lets a confirmed label teach a failure type no
    pattern knows yet."""
    x: dict[str, float] = {f"score:{c}": float(s) for c, s in d.scores}
    if signature:
        x[f"signature:{signature}"] = 1.0
    for e in d.evidence:
        x[f"pattern:{e.pattern}"] = 1.0
    if exit_code is not None:
        x[f"exit:{exit_code}"] = 1.0
    if not d.scores:
        x["no_evidence"] = 1.0
    return x


@dataclass
class LabelLearner:
    """Blend of the rules and a River softmax regression trained on confirmed labels."""

    min_labels: int = 10  # below this many labels the rules alone decide
    half_weight_labels: int = 40  # labels at which the learner weighs as much as the rules
    max_weight: float = 0.8  # the rules always keep a say: they carry the evidence
    threshold: float = 0.5
    learning_rate: float = 0.3

    def __post_init__(self) -> None:
        self.model = linear_model.SoftmaxRegression(optimizer=optim.SGD(self.learning_rate))
        self.labels_seen = 0

    @property
    def weight(self) -> float:
        if self.labels_seen < self.min_labels:
            return 0.0
        n = self.labels_seen
        return min(self.max_weight, n / (n + self.half_weight_labels))

    def learn(self, d: Diagnosis, label: str, exit_code: int | None = None, signature: str | None = None) -> None:
        """One confirmed label for the log that produced ``d``."""
        self.model.learn_one(features(d, exit_code, signature), label)
        self.labels_seen += 1

    def predict(self, d: Diagnosis, exit_code: int | None = None, signature: str | None = None) -> Diagnosis:
        """The diagnosis corrected by what the labels taught; ``d`` itself while too few were seen."""
        w = self.weight
        if w == 0.0:
            return d
        learned = self.model.predict_proba_one(features(d, exit_code, signature))
        if not learned:
            return d
        best = max(sorted(learned), key=lambda c: learned[c])
        p_best = learned[best]
        rule = _rule_distribution(d)
        if best == d.category:  # agreement: the learner only calibrates the confidence
            conf = (1 - w) * d.confidence + w * p_best
            return replace(d, confidence=round(conf, 4))
        # the labels taught otherwise, confidently (an unknown's confidence is its doubt: not a rival)
        if p_best >= max(self.threshold, d.confidence if d.category != "unknown" else 0.0):
            conf = (1 - w) * rule.get(best, 0.0) + w * p_best
            evidence = tuple(e for e in d.evidence if e.category == best)
            return replace(d, category=best, confidence=round(conf, 4), evidence=evidence)
        # disagreement without conviction: keep the rules' answer, with the doubt in its confidence
        conf = (1 - w) * d.confidence + w * learned.get(d.category, 0.0)
        return replace(d, confidence=round(conf, 4))

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(pickle.dumps(self))

    @classmethod
    def load(cls, path: str | Path) -> LabelLearner:
        obj = pickle.loads(Path(path).read_bytes())  # noqa: S301 - the user's own model file
        if not isinstance(obj, cls):
            raise ValueError(f"{path}: not a guard label model")
        return obj


def _rule_distribution(d: Diagnosis) -> dict[str, float]:
    """The rules' answer as a distribution: the chosen category at its confidence, the rest of the
    mass shared by the other categories in proportion to their scores."""
    dist = {d.category: d.confidence}
    others = [(c, s) for c, s in d.scores if c != d.category and s > 0]
    total = sum(s for _, s in others)
    rest = 1.0 - d.confidence
    for c, s in others:
        dist[c] = rest * s / total
    if not others and rest > 0:
        dist["unknown" if d.category != "unknown" else "_other"] = rest
    return dist
