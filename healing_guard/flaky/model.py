"""Per-test online flakiness model (River), one per test id, kept in a Faust table.

The model answers two questions the planner needs: P(the next run of this test fails) and
P(a retry passes, given it has just failed). The backbone is a first-order Markov estimate (failure
counts after a pass and after a failure, with a Beta(1, 1) prior), so a new test never looks
confidently flaky and a genuine regression (fails, then fails again) quickly shows a low P(retry
passes). A River logistic regression over a few history features (streaks, EWM failure rate, flip
rate) adjusts it as history accumulates; issue 4 deepens this model and measures it. Everything is bounded: the features are a handful of counters,
so a pickled model stays around a few kilobytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from river import compose, linear_model, optim, preprocessing

_EWM_ALPHA = 0.1
_BLEND_RUNS = 400
_MAX_MODEL_WEIGHT = 0.5


def _prototype() -> compose.Pipeline:
    return compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=1e-4),
    )


@dataclass
class TestModel:
    """One test's history counters and its River model."""

    __test__ = False
    runs: int = 0
    fails: int = 0
    last_failed: bool = False
    streak: int = 0  # consecutive runs with the same outcome as the last one
    fail_ewm: float = 0.0
    flips: int = 0  # pass->fail or fail->pass transitions: the signature of flakiness
    mean_duration: float = 0.0
    after_fail: int = 0  # runs that followed a failure
    after_fail_fails: int = 0  # ... and failed again
    after_pass: int = 0
    after_pass_fails: int = 0
    model: Any = field(default_factory=_prototype)

    def features(self, last_failed: bool | None = None, streak: int | None = None) -> dict[str, float]:
        lf = self.last_failed if last_failed is None else last_failed
        st = self.streak if streak is None else streak
        n = max(self.runs, 1)
        return {
            "last_failed": 1.0 if lf else 0.0,
            "streak_fail": math.log1p(st) if lf else 0.0,
            "streak_pass": 0.0 if lf else math.log1p(st),
            "fail_rate": (self.fails + 1) / (self.runs + 2),
            "fail_ewm": self.fail_ewm,
            "flip_rate": self.flips / n,
        }

    def _markov(self, last_failed: bool) -> float:
        """P(fail | previous outcome) from counts with a Beta(1, 1) prior: the backbone estimate."""
        if last_failed:
            return (self.after_fail_fails + 1) / (self.after_fail + 2)
        return (self.after_pass_fails + 1) / (self.after_pass + 2)

    def _predict(self, x: dict[str, float]) -> float:
        if self.runs == 0:
            return 0.5
        base = self._markov(x["last_failed"] > 0.5)
        p_model = float(self.model.predict_proba_one(x).get(True, 0.5))
        w = min(_MAX_MODEL_WEIGHT, self.runs / _BLEND_RUNS)  # the regression only adjusts, once it has data
        return w * p_model + (1 - w) * base

    def p_fail(self) -> float:
        """P(the next run fails), given everything learned so far."""
        return self._predict(self.features())

    def p_retry_pass(self) -> float:
        """P(a retry passes, given the run just failed) — asked hypothetically if the last run passed."""
        if self.last_failed:
            x = self.features()
        else:
            x = self.features(last_failed=True, streak=1)
        if self.runs == 0:
            return 0.0
        return 1.0 - self._predict(x)

    def learn(self, failed: bool, duration_s: float | None = None) -> float:
        """Learn one outcome; returns the P(fail) that was predicted before learning it."""
        x = self.features()
        before = self._predict(x)
        if self.runs > 0:
            self.model.learn_one(x, failed)
        if self.runs > 0:
            if failed != self.last_failed:
                self.flips += 1
            if self.last_failed:
                self.after_fail += 1
                self.after_fail_fails += int(failed)
            else:
                self.after_pass += 1
                self.after_pass_fails += int(failed)
        self.streak = self.streak + 1 if (self.runs > 0 and failed == self.last_failed) else 1
        self.last_failed = failed
        self.runs += 1
        self.fails += int(failed)
        self.fail_ewm = (1 - _EWM_ALPHA) * self.fail_ewm + _EWM_ALPHA * (1.0 if failed else 0.0)
        if duration_s is not None and duration_s >= 0:
            self.mean_duration += (duration_s - self.mean_duration) / self.runs
        return before
