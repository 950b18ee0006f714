"""FlakePrior.learn_many: a batch of distinct tests learned at once, against one result at a time."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest

from healing_guard.flaky.model import REFIT_EVERY, FlakePrior, TestModel


def _stream(seed: int = 3, tests: int = 300, builds: int = 30) -> list[list[tuple[str, bool]]]:
    rng = random.Random(seed)
    ids = [f"proj{i % 3}/pkg.C{i % 25}#t{i}" for i in range(tests)]
    rate = {t: (0.25 if i % 13 == 0 else 0.001) for i, t in enumerate(ids)}
    return [[(t, rng.random() < rate[t]) for t in rng.sample(ids, tests // 2)] for _ in range(builds)]


def test_a_batch_predicts_as_its_tests_would_one_by_one_under_the_prior_before_it() -> None:
    prior, models = FlakePrior(), {}
    builds = _stream()
    for build in builds[:5]:  # some history first
        prior.learn_many([t for t, _ in build], [models.setdefault(t, TestModel()) for t, _ in build],
                         [f for _, f in build])
    build = builds[5][:REFIT_EVERY]
    snapshot = copy.deepcopy(prior)
    expected = []
    for t, f in build:
        m = copy.deepcopy(models.get(t) or TestModel())
        expected.append(m.learn(f, prior=snapshot.view(t)))
    got = prior.learn_many([t for t, _ in build], [models.setdefault(t, TestModel()) for t, _ in build],
                           [f for _, f in build])
    assert np.allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_the_running_sums_agree_with_the_stored_contributions() -> None:
    prior, models = FlakePrior(), {}
    for build in _stream(seed=5):
        prior.learn_many([t for t, _ in build], [models.setdefault(t, TestModel()) for t, _ in build],
                         [f for _, f in build])
    rates, regimes, weight = prior.rates.copy(), prior.regimes.copy(), prior.group_weight
    g_rates = prior._g_rates.copy()
    prior._resum()
    n = prior.tests + prior.strength
    assert np.allclose(rates, (prior.strength * prior.base_rates + prior._sum_rates) / n, atol=1e-6)
    assert np.allclose(regimes, (prior.strength * prior.base_regimes + prior._sum_regimes) / n, atol=1e-6)
    assert weight == pytest.approx((1.0 + prior._sum_group_resp) / (2.0 + prior._n_group_resp), abs=1e-6)
    assert np.allclose(g_rates, prior._g_rates, atol=1e-4)
    assert prior.tests == len(models)


def _log_loss(batched: bool) -> float:
    prior, models, total, n = FlakePrior(), {}, 0.0, 0
    for build in _stream(seed=11, tests=600, builds=40):
        keys, fails = [t for t, _ in build], [f for _, f in build]
        ms = [models.setdefault(t, TestModel()) for t in keys]
        ps = prior.learn_many(keys, ms, fails) if batched else [prior.learn(k, m, f) for k, m, f in zip(keys, ms, fails)]
        for p, f in zip(ps, fails):
            p = min(max(float(p), 1e-15), 1 - 1e-15)
            total -= math.log(p if f else 1 - p)
            n += 1
    return total / n


def test_batches_keep_the_log_loss_of_one_at_a_time() -> None:
    one, many = _log_loss(False), _log_loss(True)
    assert many == pytest.approx(one, rel=0.01)


def test_a_full_prior_judges_new_tests_without_adding_them() -> None:
    prior = FlakePrior()
    keys = [f"p/C#t{i}" for i in range(10)]
    prior.learn_many(keys, [TestModel() for _ in keys], [False] * 10, max_tests=6)
    assert prior.tests == 6 and prior.knows("p/C#t5") and not prior.knows("p/C#t6")


def test_quarantine_asks_for_p_fail_only_when_a_transition_depends_on_it() -> None:
    from healing_guard.flaky.quarantine import QuarantinePolicy, QuarantineState, step

    policy = QuarantinePolicy()
    asked: list[int] = []

    def p_fail() -> float:
        asked.append(1)
        return 0.9

    st = QuarantineState()
    assert step(st, "t", failed=True, p_fail=p_fail, runs=policy.min_runs - 1, recoveries=99, policy=policy,
                now=1.0) is None
    assert asked == []  # too few runs: nothing to ask
    tr = step(st, "t", failed=True, p_fail=p_fail, runs=policy.min_runs, recoveries=policy.min_recoveries,
              policy=policy, now=2.0)
    assert tr is not None and tr.action == "quarantine_test" and asked == [1] and st.quarantined
    for i in range(policy.release_runs - 1):  # passes while quarantined: counted, P(fail) not needed yet
        assert step(st, "t", failed=False, p_fail=p_fail, runs=50, recoveries=9, policy=policy, now=3.0 + i) is None
    assert asked == [1]
    step(st, "t", failed=False, p_fail=lambda: 0.01, runs=60, recoveries=9, policy=policy, now=9.0)
    assert not st.quarantined  # released: the same transition as with the number itself
