"""What a failure's circumstances say about whether a retry will pass, learned online across tests.

The per-test filter knows a test's history; it does not know the run it is judging. This module adds
the context of the failure, from the test result and the test's history:

* ``touches_change``: the commit under test changed the test's own file or the module it tests;
* ``template_changed``: the failure message (templated) differs from the test's previous failure;
* ``co_failed``: how many tests failed in the same run (many: the environment, not this test);
* ``duration_z``: the run's duration against the test's norm (a hang, a timeout);
* ``hour_sin`` / ``hour_cos``: UTC time of day (nightly load, shared services);
* ``logit_p``: the filter's own P(retry passes).

One River logistic regression shared by all tests learns P(the next run passes | it failed, context)
from what actually happened next: a test's failure context is kept with its model until its next result
arrives, which is the label. Its answer is blended with the filter's by how much it has seen, so it
cannot hurt before it has learned anything.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any


from ..ids import stable_id
from ..patterns.tokenize import template
from ..schemas import TestResult
from .model import TestModel

__all__ = ["CONTEXT_FEATURES", "CONTEXT_MODELS", "RetryContext", "context_features", "message_hash", "touches_change"]

_WORD = re.compile(r"[A-Za-z0-9]+")
_TEST_AFFIX = re.compile(r"^(?:test_?)|(?:_?tests?|_spec|Tests?|IT|Spec)$")


def _stem(path: str) -> str:
    """``tests/test_cache.py`` -> ``cache``; ``com/acme/CacheTest`` -> ``cache``."""
    base = re.split(r"[/\\\\.]", path.rstrip("/"))
    name = next((b for b in reversed(base) if b and b not in ("py", "java", "kt", "go", "rb", "js", "ts", "cs")), "")
    return _TEST_AFFIX.sub("", name).lower()


def _test_module(test_id: str) -> str:
    """The file or class a test id names: ``a/test_b.py::test_c`` -> ``a/test_b.py``; ``pkg.CTest#m`` -> ``pkg/CTest``."""
    if "::" in test_id:
        return test_id.split("::", 1)[0]
    head = test_id.split("#", 1)[0].split("(", 1)[0]
    return head.replace(".", "/")


def touches_change(test_id: str, changed_files: list[str]) -> bool:
    """Whether a changed file is the test's own file or the code it is named after."""
    if not changed_files:
        return False
    module = _test_module(test_id)
    stem = _stem(module)
    for f in changed_files:
        if module and (f.endswith(module) or module.endswith(f.rsplit(".", 1)[0])):
            return True
        if stem and len(stem) > 2 and _stem(f) == stem:
            return True
    return False


def message_hash(message: str | None) -> str | None:
    if not message:
        return None
    return stable_id(template(message.strip()[:2000]), length=16)


def context_features(model: TestModel, result: TestResult, p_retry_pass: float) -> dict[str, float]:
    """The context of a failure (``model`` has NOT learned ``result`` yet)."""
    x: dict[str, float] = {}
    p = min(max(p_retry_pass, 1e-4), 1 - 1e-4)
    x["logit_p"] = math.log(p / (1 - p))
    x["touches_change"] = 1.0 if touches_change(result.test_id, result.changed_files) else 0.0
    h = message_hash(result.message)
    x["template_changed"] = 1.0 if (h is not None and model.last_template is not None and h != model.last_template) else 0.0
    x["co_failed"] = math.log1p(max(result.failed_in_run or 0, 0))
    if result.duration_s is not None and model.timed_runs >= 3:
        std = math.sqrt(model.m2_duration / (model.timed_runs - 1)) if model.timed_runs > 1 else 0.0
        scale = max(std, 0.1 * model.mean_duration, 0.05)
        x["duration_z"] = max(-5.0, min(5.0, (result.duration_s - model.mean_duration) / scale))
    else:
        x["duration_z"] = 0.0
    if result.ts is not None:
        hour = (result.ts % 86_400) / 3_600
        x["hour_sin"], x["hour_cos"] = math.sin(2 * math.pi * hour / 24), math.cos(2 * math.pi * hour / 24)
    else:
        x["hour_sin"] = x["hour_cos"] = 0.0
    return x


#: every feature :func:`context_features` computes
CONTEXT_FEATURES = ("logit_p", "touches_change", "template_changed", "co_failed", "duration_z", "hour_sin", "hour_cos")

#: the context model's kinds (``healing-strategies.yml``'s ``ml_model``): ``logistic`` (the default, a
#: River logistic regression on standardised features) and ``gradient_trees`` (River's stochastic
#: gradient tree, ``tree.SGTClassifier``: a tree grown by the gradient and hessian of the log-loss, the
#: document's ``gradient_boost``)
CONTEXT_MODELS = ("logistic", "gradient_trees")


def _regression(kind: str = "logistic") -> Any:
    # imported here: River's linear models pull in SciPy (most of a second), which `guard analyze` and
    # the other commands that never learn a test's history should not pay for
    from river import compose, linear_model, optim, preprocessing, tree

    if kind == "gradient_trees":
        # the dynamic quantizer: the static one divides by the range of its first 100 values, and a feature
        # that has not varied yet (no timestamps: hour_sin 0.0 throughout) would raise ZeroDivisionError
        return tree.SGTClassifier(grace_period=100, feature_quantizer=tree.splitter.DynamicQuantizer(std_prop=0.25))
    if kind != "logistic":
        raise ValueError(f"unknown context model {kind!r}; one of: {', '.join(CONTEXT_MODELS)}")
    return compose.Pipeline(preprocessing.StandardScaler(),
                            linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=1e-4))


@dataclass
class RetryContext:
    """P(a retry passes | the test just failed, in this context), shared by all tests of a worker."""

    min_seen: int = 100  # below this many labelled failures the filter alone answers
    half_weight: int = 1000  # labelled failures at which the regression weighs as much as the filter
    max_weight: float = 0.8
    kind: str = "logistic"  # CONTEXT_MODELS
    #: the features the model reads (healing-strategies.yml's ``features``); empty: all of them
    features: tuple[str, ...] = ()
    model: Any = None
    seen: int = 0

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in CONTEXT_FEATURES]
        if unknown:
            raise ValueError(f"unknown context features {unknown}; known: {', '.join(CONTEXT_FEATURES)}")
        if self.model is None:
            self.model = _regression(self.kind)

    def _x(self, x: dict[str, float]) -> dict[str, float]:
        return {k: x[k] for k in self.features if k in x} if self.features else x

    @property
    def weight(self) -> float:
        if self.seen < self.min_seen:
            return 0.0
        return min(self.max_weight, self.seen / (self.seen + self.half_weight))

    def p_retry_pass(self, x: dict[str, float], p_filter: float) -> float:
        w = self.weight
        if w == 0.0:
            return p_filter
        p_ctx = float(self.model.predict_proba_one(self._x(x)).get(True, 0.5))
        return w * p_ctx + (1 - w) * p_filter

    def learn(self, x: dict[str, float], retry_passed: bool) -> None:
        self.model.learn_one(self._x(x), bool(retry_passed))
        self.seen += 1
