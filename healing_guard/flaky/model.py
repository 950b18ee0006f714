"""Per-test online flakiness model, one per test id, kept (pickled) in a Faust table.

The planner asks two questions: P(the next run of this test fails) and P(a retry passes, given it has
just failed). Both come from a small Bayesian filter per test, :class:`FlakeFilter` (a River classifier:
``learn_one`` / ``predict_proba_one``), over two hidden things:

* **the test's failure rate** ``p``, on a fixed grid of 49 rates evenly spaced in logit from 6e-6 to
  1 - 6e-6. The prior over that grid is what tests look like: most tests almost never fail, some are
  flaky at some rate, a few fail every time. With a :class:`FlakePrior` that prior is fitted online
  across all the tests seen so far (empirical Bayes, incremental EM), and along the test id (the other
  tests of its class and project, with a weight also fitted across tests), so a new test starts at
  what tests usually look like here instead of at 50 %, and a test with a few runs borrows strength
  from the others. Without one, a generic built-in prior is used (:data:`DEFAULT_RATE_PRIOR`).
* **how volatile that rate is** ``delta``, one of (0, 0.001, 0.01, 0.1): the chance per run that the
  rate jumps to a fresh draw from the test's prior (a change point, "fixed share"). ``delta = 0`` is
  a test whose runs are exchangeable (a Beta-like count estimate with a learned prior). The others model
  what real histories also have: a regression (a stable test that starts failing and then fails every
  time until fixed), a fix, a flaky period. The mixture over ``delta`` is weighted by how well each
  explains this test's own history (Bayesian model averaging), with population weights that are also
  fitted across tests. So a test that "always fails once it starts failing" quickly gets a low
  P(retry passes), while a test that fails 30 % of the time at random keeps a high one.

Everything is bounded: the state is 4 x 49 floats, 4 log-evidences and a handful of counters; a pickled
``TestModel`` is about 2 KB whatever the number of runs. Pickles from the earlier version (River
logistic regression + Markov counts) are upgraded on load from their counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from river import base

_EWM_ALPHA = 0.1

#: the grid of failure rates: logit evenly spaced from -12 to 12 (6e-6 ... 1 - 6e-6)
GRID_LOGITS = np.linspace(-12.0, 12.0, 49)
GRID = 1.0 / (1.0 + np.exp(-GRID_LOGITS))
_P = GRID
_Q = 1.0 - GRID
#: per-run chance that a test's failure rate jumps to a fresh draw from the population
DELTAS = np.array([0.0, 1e-3, 1e-2, 1e-1])
_KEEP = (1.0 - DELTAS)[:, None]
_SHARE = DELTAS[:, None]
#: a regime whose log evidence falls this far behind the best one is floored there, so that it can
#: come back after a change (e^-12 ~ 6e-6 of the weight: it costs nothing measurable meanwhile)
_LOGZ_FLOOR = 12.0


def _generic_rate_prior() -> np.ndarray:
    """What tests usually look like, before any data: 85 % almost never fail (rate <= 3e-4), 12 % are
    flaky at any rate in between, 3 % fail every time (rate >= 0.998). Spread evenly within each group
    (in logit). A generic statement about CI suites, not fitted to any dataset; a :class:`FlakePrior`
    replaces it with what the tests seen so far look like."""
    stable = GRID_LOGITS <= -8.0
    broken = GRID_LOGITS >= 6.0
    flaky = ~(stable | broken)
    g = 0.85 * stable / stable.sum() + 0.12 * flaky / flaky.sum() + 0.03 * broken / broken.sum()
    return g / g.sum()


DEFAULT_RATE_PRIOR = _generic_rate_prior()
#: prior weights of the volatility regimes ``DELTAS``: most tests are stationary
DEFAULT_REGIME_PRIOR = np.array([0.5, 0.3, 0.15, 0.05])


class PriorView(NamedTuple):
    """The prior one test is judged under: weights over the rate grid and over the regimes."""

    rates: np.ndarray
    regimes: np.ndarray


def groups_of_test(test_id: str) -> tuple[str, ...]:
    """The test's enclosing groups, nearest first, at most two, read from the id: cut at the last ``::`` or
    ``#`` if any, else at the last ``/``, else at the last ``.``. ``proj/org.a.FooTest#testBar`` ->
    (``proj/org.a.FooTest``, ``proj``); ``tests/test_a.py::TestX::test_y`` -> (``tests/test_a.py::TestX``,
    ``tests/test_a.py``); ``org.a.FooTest.testBar`` -> (``org.a.FooTest``, ``org.a``)."""
    out: list[str] = []
    cur = test_id
    while len(out) < 2:
        cut = max(cur.rfind("::"), cur.rfind("#"))
        if cut < 0:
            cut = cur.rfind("/")
        if cut < 0:
            cut = cur.rfind(".")
        if cut <= 0:
            break
        cur = cur[:cut]
        out.append(cur)
    return tuple(out)


class _Group:
    __slots__ = ("n", "rates")

    def __init__(self, size: int) -> None:
        self.n = 0
        self.rates = np.zeros(size)


class FlakePrior:
    """The prior over tests' failure rates and volatility regimes, fitted online across tests.

    Incremental EM (Neal & Hinton): every test contributes its current posterior over the rate grid and
    over the regimes, once (a new contribution replaces the test's previous one). The population prior is
    the average of the contributions plus ``strength`` pseudo-tests of the generic prior.

    It is also hierarchical along the test id (:func:`groups_of_test`): tests of one class or module
    often share their flakiness (a shared fixture, a shared service). A test's *group prior* is the
    average of the other tests of its nearest group (e.g. its class) plus ``group_strength`` pseudo-tests
    of the next group up (e.g. the project), which is built the same way from the population. The rate
    prior of a test is the mixture ``w * group prior + (1 - w) * population prior``, and the weight ``w``
    is itself fitted by EM across tests (each test's posterior responsibility of the group component,
    from its own history), starting at 1/2: where groups say nothing about flakiness it falls and the
    model goes back to the population prior; where they do, a new test in a flaky class starts out as
    suspect. ``group_strength=0`` turns the hierarchy off.

    Updating after every learned row costs O(grid). Holds one contribution per test id (~0.5 KB each)
    and one sum per group.
    """

    def __init__(self, strength: float = 20.0, group_strength: float = 3.0, base_rates: np.ndarray | None = None,
                 base_regimes: np.ndarray | None = None) -> None:
        self.strength = float(strength)
        self.group_strength = float(group_strength)
        self.base_rates = DEFAULT_RATE_PRIOR if base_rates is None else np.asarray(base_rates, float)
        self.base_regimes = DEFAULT_REGIME_PRIOR if base_regimes is None else np.asarray(base_regimes, float)
        self._sum_rates = np.zeros_like(self.base_rates)
        self._sum_regimes = np.zeros_like(self.base_regimes)
        self._sum_group_resp = 0.0  # sum over tests of the group component's responsibility ...
        self._n_group_resp = 0  # ... over this many tests (those that had a group prior)
        #: test key -> (posterior over rates, over regimes, its groups, group responsibility or -1)
        self._contrib: dict[Any, tuple[np.ndarray, np.ndarray, tuple[_Group, ...], float]] = {}
        self._groups: dict[str, _Group] = {}
        self._updates = 0
        self.rates = self.base_rates.copy()
        self.regimes = self.base_regimes.copy()
        self.group_weight = 0.5

    @property
    def tests(self) -> int:
        return len(self._contrib)

    def knows(self, key: Any) -> bool:
        """Whether ``key`` already contributes to the prior."""
        return key in self._contrib

    def _groups_of(self, key: Any) -> tuple[_Group, ...]:
        if self.group_strength <= 0 or not isinstance(key, str):
            return ()
        out = []
        for name in groups_of_test(key):
            g = self._groups.get(name)
            if g is None:
                g = self._groups[name] = _Group(len(self.base_rates))
            out.append(g)
        return tuple(out)

    def _group_rates(self, key: Any) -> np.ndarray | None:
        """The group prior of test ``key`` (without its own contribution), None if it has no group mates."""
        entry = self._contrib.get(key)
        groups = entry[2] if entry is not None else self._groups_of(key)
        rates, tau, found = self.rates, self.group_strength, False
        for g in reversed(groups):  # from the top group down to the nearest
            if entry is None:
                if g.n > 0:
                    rates, found = (tau * rates + g.rates) / (tau + g.n), True
            elif g.n > 1:
                rates, found = (tau * rates + (g.rates - entry[0])) / (tau + g.n - 1), True
        return rates if found else None

    def view(self, key: Any = None) -> PriorView:
        """The prior test ``key`` is judged under (the population's for a test with no group mates)."""
        return self._view(key)[0]

    def _view(self, key: Any) -> tuple[PriorView, np.ndarray | None]:
        group = self._group_rates(key) if key is not None else None
        if group is None:
            return PriorView(self.rates, self.regimes), None
        w = self.group_weight
        return PriorView(w * group + (1.0 - w) * self.rates, self.regimes), group

    def update(self, key: Any, model: TestModel | FlakeFilter, view: PriorView | None = None,
               group: np.ndarray | None = None) -> None:
        """Replace test ``key``'s contribution with its model's current posterior (``view`` and ``group``:
        the test's prior and group prior, if the caller has them already)."""
        f = model.model if isinstance(model, TestModel) else model
        if view is None:
            view, group = self._view(key)
        old = self._contrib.get(key)
        r_rates, r_regimes = f.posterior(view)
        resp = -1.0
        if group is not None:  # how much of the test's evidence the group component explains
            resp = float(r_regimes @ (self.group_weight * (f.u @ group) / (f.u @ view.rates)))
        r_rates = r_rates.astype(np.float32)  # half the memory per test
        r_regimes = r_regimes.astype(np.float32)
        if old is not None:
            groups = old[2]
            self._sum_rates -= old[0]
            self._sum_regimes -= old[1]
            for g in groups:
                g.rates += r_rates - old[0]
            if old[3] >= 0:
                self._sum_group_resp -= old[3]
                self._n_group_resp -= 1
        else:
            groups = self._groups_of(key)
            for g in groups:
                g.n += 1
                g.rates += r_rates
        if resp >= 0:
            self._sum_group_resp += resp
            self._n_group_resp += 1
        self._contrib[key] = (r_rates, r_regimes, groups, resp)
        self._sum_rates += r_rates
        self._sum_regimes += r_regimes
        self._updates += 1
        if self._updates % 100_000 == 0:  # wash out floating-point drift of the running sums
            self._resum()
        n = len(self._contrib) + self.strength
        self.rates = (self.strength * self.base_rates + np.maximum(self._sum_rates, 0.0)) / n
        self.regimes = (self.strength * self.base_regimes + np.maximum(self._sum_regimes, 0.0)) / n
        self.group_weight = (1.0 + self._sum_group_resp) / (2.0 + self._n_group_resp)

    def _resum(self) -> None:
        self._sum_rates = np.zeros_like(self.base_rates)
        self._sum_regimes = np.zeros_like(self.base_regimes)
        self._sum_group_resp, self._n_group_resp = 0.0, 0
        for g in self._groups.values():
            g.rates = np.zeros_like(self.base_rates)
        for r_rates, r_regimes, groups, resp in self._contrib.values():
            self._sum_rates += r_rates
            self._sum_regimes += r_regimes
            for g in groups:
                g.rates += r_rates
            if resp >= 0:
                self._sum_group_resp += resp
                self._n_group_resp += 1

    def learn(self, key: Any, model: TestModel, failed: bool, duration_s: float | None = None, *,
              head_sha: str | None = None) -> float:
        """``model.learn`` under this prior, then this update; returns the P(fail) predicted before."""
        view, group = self._view(key)
        p = model.learn(failed, duration_s, prior=view, head_sha=head_sha)
        self.update(key, model, view, group)
        return p

    def mean_rate(self, key: Any = None) -> float:
        """P(fail) of a test never seen before (in the groups of ``key``, if given)."""
        return float(self.view(key).rates @ GRID)


Prior = FlakePrior | PriorView | None


def _priors(prior: Prior) -> tuple[np.ndarray, np.ndarray]:
    if prior is None:
        return DEFAULT_RATE_PRIOR, DEFAULT_REGIME_PRIOR
    return prior.rates, prior.regimes


class FlakeFilter(base.Classifier):
    """A test's posterior over (volatility regime, failure rate), updated one outcome at a time.

    ``u[d, k]`` is the posterior of rate ``GRID[k]`` under regime ``d`` divided by the prior weight of
    ``k``, so that the posterior under whatever the population prior is now is ``prior * u``
    (exact for the stationary regime, a close approximation for the others). ``logz[d]`` is the log
    evidence of the test's history under regime ``d``, relative to the best regime.
    """

    def __init__(self) -> None:
        self.u = np.ones((len(DELTAS), len(GRID)))
        self.logz = np.zeros(len(DELTAS))

    def _regime_weights(self, regimes: np.ndarray) -> np.ndarray:
        pi = regimes * np.exp(self.logz)
        return pi / pi.sum()

    def p_fail(self, prior: Prior = None) -> float:
        rates, regimes = _priors(prior)
        gu = self.u * rates
        per_regime = (gu @ _P) / gu.sum(axis=1)
        return float(self._regime_weights(regimes) @ per_regime)

    def update(self, failed: bool, prior: Prior = None) -> float:
        """Learn one outcome; returns the P(fail) predicted before it."""
        rates, regimes = _priors(prior)
        gu = self.u * rates
        b = gu.sum(axis=1)
        a_fail = gu @ _P
        pi = self._regime_weights(regimes)
        before = float(pi @ (a_fail / b))
        if failed:
            lik, a = _P, a_fail
        else:
            lik, a = _Q, b - a_fail
        a = np.maximum(a, 1e-300)
        self.u = _KEEP * self.u * lik / a[:, None] + _SHARE
        logz = self.logz + np.log(a / b)
        logz -= logz.max()
        self.logz = np.maximum(logz, -_LOGZ_FLOOR)
        return min(max(before, 0.0), 1.0)

    def posterior(self, prior: Prior = None) -> tuple[np.ndarray, np.ndarray]:
        """(posterior over the rate grid, posterior over the regimes): a test's EM contribution."""
        rates, regimes = _priors(prior)
        gu = self.u * rates
        gu /= gu.sum(axis=1, keepdims=True)
        pi = self._regime_weights(regimes)
        return pi @ gu, pi

    # --- River interface: x is ignored, y is "the run failed" ------------------------------------
    def learn_one(self, x: dict[str, Any], y: bool, prior: Prior = None) -> None:  # type: ignore[override]
        self.update(bool(y), prior)

    def predict_proba_one(self, x: dict[str, Any], prior: Prior = None) -> dict[bool, float]:  # type: ignore[override]
        p = self.p_fail(prior)
        return {True: p, False: 1.0 - p}

    @classmethod
    def from_counts(cls, fails: int, runs: int) -> FlakeFilter:
        """A filter that has seen ``fails`` failures in ``runs`` runs in an unknown order (used to
        upgrade pickles of the earlier model, which kept only counts)."""
        f = cls()
        passes = max(runs - fails, 0)
        loglik = fails * np.log(_P) + passes * np.log(_Q)
        lik = np.exp(loglik - loglik.max())
        f.u = np.tile(lik / (DEFAULT_RATE_PRIOR @ lik), (len(DELTAS), 1))
        return f


@dataclass(eq=False)
class TestModel:
    """One test's history counters and its :class:`FlakeFilter`.

    ``prior`` (optional everywhere) is the :class:`FlakePrior` fitted across tests; without it the
    generic built-in prior is used. ``duration_s`` only feeds ``mean_duration``.
    """

    __test__ = False
    runs: int = 0
    fails: int = 0
    last_failed: bool = False
    streak: int = 0  # consecutive runs with the same outcome as the last one
    fail_ewm: float = 0.0
    flips: int = 0  # pass->fail or fail->pass transitions
    mean_duration: float = 0.0  # over the runs that reported a duration
    timed_runs: int = 0
    m2_duration: float = 0.0  # sum of squared deviations (Welford), for the duration's spread
    last_template: str | None = None  # hash of the last failure message's template
    pending_context: dict[str, float] | None = None  # context of the last failure, until the next run
    after_fail: int = 0  # runs that followed a failure
    after_fail_fails: int = 0  # ... and failed again
    after_pass: int = 0
    after_pass_fails: int = 0
    model: FlakeFilter = field(default_factory=FlakeFilter)
    last_sha: str | None = None  # commit of the last run, when the results carry it
    #: failures followed by a pass on ANOTHER commit: maybe a fix, maybe flakiness (half a recovery each)
    fixed_by_change: int = 0

    @property
    def recoveries(self) -> int:
        """Failures that passed on the next run: the evidence that a retry can work.

        A pass on the same commit is a recovery. A pass on another commit (when both runs name their
        commit) may just as well be a fix of a real break, so two of those count as one: a test that was
        broken once and fixed does not become "known flaky", and then a retry cannot hide its next
        regression; a test that keeps flipping across commits still does. Without commits every
        fail -> pass counts."""
        return self.after_fail - self.after_fail_fails - self.fixed_by_change + self.fixed_by_change // 2

    def features(self, last_failed: bool | None = None, streak: int | None = None) -> dict[str, float]:
        """History features (for reports and other learners; the filter does not need them)."""
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

    def p_fail(self, prior: Prior = None) -> float:
        """P(the next run fails), given everything learned so far."""
        return self.model.p_fail(prior)

    def p_retry_pass(self, prior: Prior = None) -> float:
        """P(a retry passes, given the run just failed): asked hypothetically if the last run passed."""
        if self.runs > 0 and self.last_failed:
            return 1.0 - self.model.p_fail(prior)
        f = FlakeFilter.__new__(FlakeFilter)
        f.u, f.logz = self.model.u, self.model.logz
        f.update(True, prior)  # rebinds f.u / f.logz: the real model is untouched
        return 1.0 - f.p_fail(prior)

    def learn(self, failed: bool, duration_s: float | None = None, *, prior: Prior = None,
              head_sha: str | None = None) -> float:
        """Learn one outcome (``head_sha``: the commit it ran on, when known); returns the P(fail) that
        was predicted before learning it."""
        failed = bool(failed)
        before = self.model.update(failed, prior)
        if self.runs > 0:
            if failed != self.last_failed:
                self.flips += 1
            if self.last_failed:
                self.after_fail += 1
                self.after_fail_fails += int(failed)
                if not failed and head_sha and self.last_sha and head_sha != self.last_sha:
                    self.fixed_by_change += 1
            else:
                self.after_pass += 1
                self.after_pass_fails += int(failed)
        self.streak = self.streak + 1 if (self.runs > 0 and failed == self.last_failed) else 1
        self.last_failed = failed
        self.last_sha = head_sha or None
        self.runs += 1
        self.fails += int(failed)
        self.fail_ewm = (1 - _EWM_ALPHA) * self.fail_ewm + _EWM_ALPHA * (1.0 if failed else 0.0)
        if duration_s is not None and duration_s >= 0:
            self.timed_runs += 1
            delta = duration_s - self.mean_duration
            self.mean_duration += delta / self.timed_runs
            self.m2_duration += delta * (duration_s - self.mean_duration)
        return before

    def __setstate__(self, state: dict[str, Any]) -> None:
        # pickles of the earlier version hold a River logistic-regression pipeline in ``model``
        if not isinstance(state.get("model"), FlakeFilter):
            state = dict(state)
            state["model"] = FlakeFilter.from_counts(int(state.get("fails", 0)), int(state.get("runs", 0)))
            state.setdefault("timed_runs", int(state.get("runs", 0)))
        self.__dict__.update(state)
