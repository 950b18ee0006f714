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


#: a batch refits the prior after every this many results: one at a time is the exact online fit; all of a
#: report's thousands at once would judge every test of a new suite under the prior from before the report.
#: 128 costs +0.04 % log-loss on the flakiness replay against one at a time (benchmarks/tests_batch.py)
REFIT_EVERY = 128


def _add_rows(target: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
    """``target[idx] += values``, the rows of a repeated index summed: ``np.add.at`` over the flattened
    arrays (several times faster than over rows, same sums in the same order)."""
    if len(idx) == 0:
        return
    k = target.shape[1]
    np.add.at(target.reshape(-1), (idx[:, None] * k + np.arange(k)).ravel(), values.ravel())


def _grown(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with room for at least ``n`` rows (doubling), new rows zero."""
    if len(a) >= n:
        return a
    out = np.zeros((max(n, 2 * len(a), 64), *a.shape[1:]), dtype=a.dtype)
    out[: len(a)] = a
    return out


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

    :meth:`learn` learns one result; :meth:`learn_many` a batch of results of distinct tests (one report),
    all judged under the prior as it stood before the batch, whose contributions then update it at once:
    the same as one at a time when the batch has one result, and vectorized over the batch (a report of
    thousands of tests costs a few array operations, not thousands). Contributions are kept in arrays,
    one row per test (~0.25 KB), and one sum per group.
    """

    def __init__(self, strength: float = 20.0, group_strength: float = 3.0, base_rates: np.ndarray | None = None,
                 base_regimes: np.ndarray | None = None) -> None:
        self.strength = float(strength)
        self.group_strength = float(group_strength)
        self.base_rates = DEFAULT_RATE_PRIOR if base_rates is None else np.asarray(base_rates, float)
        self.base_regimes = DEFAULT_REGIME_PRIOR if base_regimes is None else np.asarray(base_regimes, float)
        k, d = len(self.base_rates), len(self.base_regimes)
        self._sum_rates = np.zeros(k)
        self._sum_regimes = np.zeros(d)
        self._sum_group_resp = 0.0  # sum over tests of the group component's responsibility ...
        self._n_group_resp = 0  # ... over this many tests (those that had a group prior)
        #: test key -> its row in the contribution arrays: posterior over rates (float32: half the memory),
        #: over regimes, its groups (nearest, next; -1: none) and its group responsibility (-1: none)
        self._rows: dict[Any, int] = {}
        self._c_rates = np.zeros((0, k), np.float32)
        self._c_regimes = np.zeros((0, d), np.float32)
        self._c_groups = np.zeros((0, 2), np.int64)
        self._c_resp = np.zeros(0)
        #: group name -> its row: the sum of its tests' rate contributions and how many tests it has
        self._group_rows: dict[str, int] = {}
        self._g_rates = np.zeros((0, k))
        self._g_n = np.zeros(0, np.int64)
        self._updates = 0
        self.rates = self.base_rates.copy()
        self.regimes = self.base_regimes.copy()
        self.group_weight = 0.5

    @property
    def tests(self) -> int:
        return len(self._rows)

    def knows(self, key: Any) -> bool:
        """Whether ``key`` already contributes to the prior."""
        return key in self._rows

    def _group_ids(self, key: Any) -> tuple[int, int]:
        """Rows of the groups of a test not seen yet (nearest, next; -1: none), created empty if new."""
        if self.group_strength <= 0 or not isinstance(key, str):
            return -1, -1
        ids = [-1, -1]
        for i, name in enumerate(groups_of_test(key)):
            g = self._group_rows.get(name)
            if g is None:
                g = self._group_rows[name] = len(self._group_rows)
                self._g_rates = _grown(self._g_rates, g + 1)
                self._g_n = _grown(self._g_n, g + 1)
            ids[i] = g
        return ids[0], ids[1]

    def _views(self, keys: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For each test: its prior over rates, its group prior (valid where it has one), whether it has one,
        its row (-1: new) and its groups."""
        n = len(keys)
        if n == 1:
            return self._view_one(keys[0])
        rows = np.fromiter((self._rows.get(k, -1) for k in keys), np.int64, n)
        gids = self._c_groups[np.maximum(rows, 0)] if len(self._c_groups) else np.empty((n, 2), np.int64)
        for i in np.flatnonzero(rows < 0).tolist():
            gids[i] = self._group_ids(keys[i])
        pop = self.rates
        rates = np.tile(pop, (n, 1))
        found = np.zeros(n, bool)
        if self.group_strength > 0 and (gids >= 0).any():
            has = rows >= 0
            if has.all():  # the usual batch: every test known
                own = self._c_rates[rows].astype(np.float64)
            else:
                own = np.zeros_like(rates)
                if has.any():
                    own[has] = self._c_rates[rows[has]]
            tau = self.group_strength
            for col in (1, 0):  # from the top group down to the nearest
                g = gids[:, col]
                ok = g >= 0
                gn = np.where(ok, self._g_n[np.maximum(g, 0)], 0)
                m_old = ok & has & (gn > 1)
                m_new = ok & ~has & (gn > 0)
                if m_old.all():  # the same as below without the masks' copies
                    rates = (tau * rates + self._g_rates[g] - own) / (tau + gn - 1)[:, None]
                elif m_old.any():
                    rates[m_old] = ((tau * rates[m_old] + self._g_rates[g[m_old]] - own[m_old])
                                    / (tau + gn[m_old] - 1)[:, None])
                if m_new.any():
                    rates[m_new] = (tau * rates[m_new] + self._g_rates[g[m_new]]) / (tau + gn[m_new])[:, None]
                found |= m_old | m_new
        w = self.group_weight
        views = np.where(found[:, None], w * rates + (1.0 - w) * pop, pop)
        return views, rates, found, rows, gids

    def _view_one(self, key: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_views` of one test, without the array bookkeeping (the one-result path)."""
        row = self._rows.get(key, -1)
        ids = tuple(self._c_groups[row]) if row >= 0 else self._group_ids(key)
        pop = self.rates
        rates, tau, found = pop, self.group_strength, False
        for g in (ids[1], ids[0]):  # from the top group down to the nearest
            if g < 0:
                continue
            gn = int(self._g_n[g])
            if row >= 0 and gn > 1:
                rates, found = (tau * rates + (self._g_rates[g] - self._c_rates[row])) / (tau + gn - 1), True
            elif row < 0 and gn > 0:
                rates, found = (tau * rates + self._g_rates[g]) / (tau + gn), True
        w = self.group_weight
        view = w * rates + (1.0 - w) * pop if found else pop
        return (view[None], np.asarray(rates)[None], np.array([found]), np.array([row], np.int64),
                np.array([ids], np.int64))

    def view(self, key: Any = None) -> PriorView:
        """The prior test ``key`` is judged under (the population's for a test with no group mates)."""
        if key is None:
            return PriorView(self.rates, self.regimes)
        return PriorView(self._views([key])[0][0], self.regimes)

    def learn(self, key: Any, model: TestModel, failed: bool, duration_s: float | None = None, *,
              head_sha: str | None = None) -> float:
        """``model.learn`` under this prior, then this update; returns the P(fail) predicted before."""
        return float(self.learn_many([key], [model], [failed], [duration_s], [head_sha])[0])

    def learn_many(self, keys: list[Any], models: list[TestModel], failed: list[bool],
                   durations: list[float | None] | None = None, head_shas: list[str | None] | None = None, *,
                   max_tests: int | None = None) -> np.ndarray:
        """Learn one result of each of ``keys`` (distinct tests) into their ``models``, all under the prior as
        it stands now (refitted every :data:`REFIT_EVERY` results), then update the prior with their new
        posteriors (:meth:`learn_arrays`), and count the results in the models' history.
        Returns the P(fail) each model predicted before learning its result."""
        if not keys:
            return np.zeros(0)
        fails = np.asarray(failed, bool)
        u, logz, before = self.learn_arrays(keys, np.stack([m.model.u for m in models]),
                                            np.stack([m.model.logz for m in models]), fails, max_tests=max_tests)
        for i, m in enumerate(models):
            m.model.u, m.model.logz = u[i], logz[i]
            m.count(bool(fails[i]), None if durations is None else durations[i],
                    None if head_shas is None else head_shas[i])
        return before

    def learn_arrays(self, keys: list[Any], u: np.ndarray, logz: np.ndarray, fails: np.ndarray, *,
                     max_tests: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`learn_many` of the filters' arrays alone (``u``: n x regimes x grid, ``logz``: n x regimes;
        the models' counters are the caller's): the new arrays and the P(fail) each predicted before its
        result. A test not seen before contributes to the prior only while it holds fewer than ``max_tests``
        tests (it is still judged under the prior)."""
        n = len(keys)
        if n > REFIT_EVERY:  # the prior is refitted every REFIT_EVERY results of a batch
            parts = [self.learn_arrays(keys[i:i + REFIT_EVERY], u[i:i + REFIT_EVERY], logz[i:i + REFIT_EVERY],
                                       fails[i:i + REFIT_EVERY], max_tests=max_tests)
                     for i in range(0, n, REFIT_EVERY)]
            return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                    np.concatenate([p[2] for p in parts]))
        views, group, found, rows, gids = self._views(keys)
        u, logz, before = update_many(u, logz, fails, views, self.regimes)
        contribute = rows >= 0
        if (~contribute).any():
            room = n if max_tests is None else max(max_tests - len(self._rows), 0)
            new = np.flatnonzero(~contribute)[:room]
            contribute[new] = True
        if contribute.all():
            self._update(keys, u, logz, views, group, found, rows, gids)
        elif contribute.any():
            idx = np.flatnonzero(contribute)
            self._update([keys[i] for i in idx], u[idx], logz[idx], views[idx], group[idx], found[idx], rows[idx],
                         gids[idx])
        return u, logz, before

    def _update(self, keys: list[Any], u: np.ndarray, logz: np.ndarray, views: np.ndarray, group: np.ndarray,
                found: np.ndarray, rows: np.ndarray, gids: np.ndarray) -> None:
        """Replace the contributions of ``keys`` with their models' posteriors under their ``views``."""
        if len(keys) == 1:
            self._update_one(keys[0], u[0], logz[0], views[0], group[0], bool(found[0]), int(rows[0]),
                             (int(gids[0, 0]), int(gids[0, 1])))
            self._refit(1)
            return
        gu = u * views[:, None, :]
        gu /= gu.sum(axis=2, keepdims=True)
        pi = self.regimes * np.exp(logz)
        pi /= pi.sum(axis=1, keepdims=True)
        r_rates = np.einsum("nd,ndk->nk", pi, gu).astype(np.float32)
        r_regimes = pi.astype(np.float32)
        resp = np.full(len(keys), -1.0)
        if found.any():  # how much of each test's evidence the group component explains
            uf = u[found]
            resp[found] = (pi[found] * (self.group_weight * np.einsum("ndk,nk->nd", uf, group[found])
                                        / np.einsum("ndk,nk->nd", uf, views[found]))).sum(axis=1)
        old = rows >= 0
        d_rates = r_rates.astype(np.float64)
        d_regimes = r_regimes.astype(np.float64)
        if old.any():
            d_rates[old] -= self._c_rates[rows[old]]
            d_regimes[old] -= self._c_regimes[rows[old]]
            old_resp = self._c_resp[rows[old]]
            had = old_resp >= 0
            self._sum_group_resp -= float(old_resp[had].sum())
            self._n_group_resp -= int(had.sum())
        new = ~old
        if new.any():
            first = len(self._rows)
            for i in np.flatnonzero(new):
                rows[i] = self._rows[keys[i]] = len(self._rows)
            total = len(self._rows)
            self._c_rates = _grown(self._c_rates, total)
            self._c_regimes = _grown(self._c_regimes, total)
            self._c_groups = _grown(self._c_groups, total)
            self._c_resp = _grown(self._c_resp, total)
            self._c_groups[first:total] = gids[new]
            for col in (0, 1):
                g = gids[new, col]
                np.add.at(self._g_n, g[g >= 0], 1)
        ok = gids >= 0
        _add_rows(self._g_rates, np.concatenate([gids[ok[:, 0], 0], gids[ok[:, 1], 1]]),
                  np.concatenate([d_rates[ok[:, 0]], d_rates[ok[:, 1]]]))
        has_resp = resp >= 0
        self._sum_group_resp += float(resp[has_resp].sum())
        self._n_group_resp += int(has_resp.sum())
        self._c_rates[rows] = r_rates
        self._c_regimes[rows] = r_regimes
        self._c_resp[rows] = resp
        self._sum_rates += d_rates.sum(axis=0)
        self._sum_regimes += d_regimes.sum(axis=0)
        self._refit(len(keys))

    def _update_one(self, key: Any, u: np.ndarray, logz: np.ndarray, view: np.ndarray, group: np.ndarray,
                    found: bool, row: int, gids: tuple[int, int]) -> None:
        """:meth:`_update` of one test, without the array bookkeeping (the one-result path)."""
        gu = u * view
        gu /= gu.sum(axis=1, keepdims=True)
        pi = self.regimes * np.exp(logz)
        pi /= pi.sum()
        r_rates = (pi @ gu).astype(np.float32)
        r_regimes = pi.astype(np.float32)
        resp = float(pi @ (self.group_weight * (u @ group) / (u @ view))) if found else -1.0
        if row >= 0:
            d_rates = r_rates - self._c_rates[row].astype(np.float64)
            d_regimes = r_regimes - self._c_regimes[row].astype(np.float64)
            if self._c_resp[row] >= 0:
                self._sum_group_resp -= float(self._c_resp[row])
                self._n_group_resp -= 1
        else:
            d_rates, d_regimes = r_rates.astype(np.float64), r_regimes.astype(np.float64)
            row = self._rows[key] = len(self._rows)
            total = row + 1
            self._c_rates = _grown(self._c_rates, total)
            self._c_regimes = _grown(self._c_regimes, total)
            self._c_groups = _grown(self._c_groups, total)
            self._c_resp = _grown(self._c_resp, total)
            self._c_groups[row] = gids
            for g in gids:
                if g >= 0:
                    self._g_n[g] += 1
        for g in gids:
            if g >= 0:
                self._g_rates[g] += d_rates
        if resp >= 0:
            self._sum_group_resp += resp
            self._n_group_resp += 1
        self._c_rates[row] = r_rates
        self._c_regimes[row] = r_regimes
        self._c_resp[row] = resp
        self._sum_rates += d_rates
        self._sum_regimes += d_regimes

    def _refit(self, learned: int) -> None:
        """The population prior and the group weight from the sums, after ``learned`` more contributions."""
        before = self._updates
        self._updates += learned
        if self._updates // 100_000 != before // 100_000:  # wash out floating-point drift of the running sums
            self._resum()
        n = len(self._rows) + self.strength
        self.rates = (self.strength * self.base_rates + np.maximum(self._sum_rates, 0.0)) / n
        self.regimes = (self.strength * self.base_regimes + np.maximum(self._sum_regimes, 0.0)) / n
        self.group_weight = (1.0 + self._sum_group_resp) / (2.0 + self._n_group_resp)

    def update(self, key: Any, model: TestModel | FlakeFilter) -> None:
        """Replace test ``key``'s contribution with its model's current posterior under its prior."""
        f = model.model if isinstance(model, TestModel) else model
        views, group, found, rows, gids = self._views([key])
        self._update([key], f.u[None], f.logz[None], views, group, found, rows, gids)

    def _resum(self) -> None:
        n = len(self._rows)
        self._sum_rates = self._c_rates[:n].sum(axis=0, dtype=np.float64)
        self._sum_regimes = self._c_regimes[:n].sum(axis=0, dtype=np.float64)
        resp = self._c_resp[:n]
        self._sum_group_resp, self._n_group_resp = float(resp[resp >= 0].sum()), int((resp >= 0).sum())
        self._g_rates[:] = 0.0
        for col in (0, 1):
            g = self._c_groups[:n, col]
            ok = g >= 0
            np.add.at(self._g_rates, g[ok], self._c_rates[:n][ok].astype(np.float64))

    def mean_rate(self, key: Any = None) -> float:
        """P(fail) of a test never seen before (in the groups of ``key``, if given)."""
        return float(self.view(key).rates @ GRID)


def update_many(u: np.ndarray, logz: np.ndarray, failed: np.ndarray, rates: np.ndarray,
                regimes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`FlakeFilter.update` of ``n`` filters at once (``u``: n x regimes x grid, ``logz``: n x regimes,
    ``rates``: each filter's prior over the grid, n x grid). Returns the new ``u``, ``logz`` and the P(fail)
    each predicted before its outcome."""
    gu = u * rates[:, None, :]
    b = gu.sum(axis=2)
    a_fail = gu @ _P
    pi = regimes * np.exp(logz)
    pi /= pi.sum(axis=1, keepdims=True)
    before = (pi * (a_fail / b)).sum(axis=1)
    lik = np.where(failed[:, None], _P, _Q)
    a = np.maximum(np.where(failed[:, None], a_fail, b - a_fail), 1e-300)
    u = _KEEP * u * lik[:, None, :] / a[:, :, None] + _SHARE
    logz = logz + np.log(a / b)
    logz -= logz.max(axis=1, keepdims=True)
    return u, np.maximum(logz, -_LOGZ_FLOOR), np.clip(before, 0.0, 1.0)


def count_passes(rec: np.ndarray, durations: np.ndarray) -> None:
    """:meth:`TestModel.count` of a pass, for many tests at once, in place: ``rec`` holds their counters as
    columns named as TestModel's fields (engine/state.py's ``RECORD``), ``durations`` each pass's duration
    (NaN: none). Only for tests whose last run passed (or that never ran): nothing of a pass after a
    failure (a flip, a recovery, a fix) is counted here."""
    ran = rec["runs"] > 0
    rec["after_pass"] += ran
    rec["streak"] = np.where(ran, rec["streak"] + 1, 1)
    rec["last_failed"] = 0
    rec["runs"] += 1
    rec["fail_ewm"] *= 1 - _EWM_ALPHA
    timed = durations >= 0  # False for NaN
    if timed.any():
        n = rec["timed_runs"][timed] + 1
        mean = rec["mean_duration"][timed]
        d = durations[timed]
        delta = d - mean
        mean = mean + delta / n
        rec["m2_duration"][timed] += delta * (d - mean)
        rec["mean_duration"][timed] = mean
        rec["timed_runs"][timed] = n


Prior = FlakePrior | PriorView | None


def _priors(prior: Prior) -> tuple[np.ndarray, np.ndarray]:
    if prior is None:
        return DEFAULT_RATE_PRIOR, DEFAULT_REGIME_PRIOR
    return prior.rates, prior.regimes


_U_START = np.ones((len(DELTAS), len(GRID)))
_U_START.flags.writeable = False
_LOGZ_START = np.zeros(len(DELTAS))
_LOGZ_START.flags.writeable = False


class FlakeFilter(base.Classifier):
    """A test's posterior over (volatility regime, failure rate), updated one outcome at a time.

    ``u[d, k]`` is the posterior of rate ``GRID[k]`` under regime ``d`` divided by the prior weight of
    ``k``, so that the posterior under whatever the population prior is now is ``prior * u``
    (exact for the stationary regime, a close approximation for the others). ``logz[d]`` is the log
    evidence of the test's history under regime ``d``, relative to the best regime.
    """

    def __init__(self) -> None:
        # shared read-only start values: every update makes new arrays (a write in place would raise)
        self.u = _U_START
        self.logz = _LOGZ_START

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
        self.count(failed, duration_s, head_sha)
        return before

    def count(self, failed: bool, duration_s: float | None = None, head_sha: str | None = None) -> None:
        """The history counters' part of :meth:`learn` (the filter is updated by the caller)."""
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

    def __setstate__(self, state: dict[str, Any]) -> None:
        # pickles of the earlier version hold a River logistic-regression pipeline in ``model``
        if not isinstance(state.get("model"), FlakeFilter):
            state = dict(state)
            state["model"] = FlakeFilter.from_counts(int(state.get("fails", 0)), int(state.get("runs", 0)))
            state.setdefault("timed_runs", int(state.get("runs", 0)))
        self.__dict__.update(state)
