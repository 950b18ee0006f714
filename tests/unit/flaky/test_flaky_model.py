"""The per-test flakiness model: predictions before learning, flaky vs broken, pickling, the population prior."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from healing_guard.flaky import FlakeFilter, FlakePrior, TestModel
from healing_guard.flaky.model import DEFAULT_RATE_PRIOR, GRID, groups_of_test


def _learn(model: TestModel, outcomes: list[bool], prior: FlakePrior | None = None) -> TestModel:
    for y in outcomes:
        model.learn(y, prior=prior)
    return model


def test_learn_returns_the_prediction_made_before_learning() -> None:
    m = TestModel()
    first = m.p_fail()
    assert first == pytest.approx(float(DEFAULT_RATE_PRIOR @ GRID))  # a new test gets the prior mean
    assert 0.0 < first < 0.2  # most tests almost never fail: a new test is not a coin flip
    assert m.learn(True) == pytest.approx(first)  # the outcome does not leak into its own prediction
    p2 = m.p_fail()
    assert p2 > first
    assert m.learn(False, 1.5) == pytest.approx(p2)
    assert (m.runs, m.fails, m.last_failed, m.after_fail, m.after_fail_fails) == (2, 1, False, 1, 0)
    assert m.mean_duration == pytest.approx(1.5)


def test_stable_test_gets_a_low_p_fail() -> None:
    m = _learn(TestModel(), [False] * 200)
    assert m.p_fail() < 0.005


def test_regression_gets_a_low_p_retry_pass_and_a_30pct_flaky_test_a_high_one() -> None:
    rng = random.Random(7)
    broken = _learn(TestModel(), [False] * 60 + [True] * 6)  # fails every time once it starts failing
    flaky = _learn(TestModel(), [rng.random() < 0.3 for _ in range(300)])
    assert broken.p_retry_pass() < 0.2
    assert broken.p_fail() > 0.8
    assert flaky.p_retry_pass() > 0.6  # the planner's default retry threshold
    assert 0.2 < flaky.p_fail() < 0.4
    # asked while the last run passed, it is hypothetical and leaves the model as it was
    while not flaky.last_failed:
        flaky.learn(True)
    flaky.learn(False)
    before = (flaky.model.u.copy(), flaky.model.logz.copy(), flaky.p_fail())
    assert flaky.p_retry_pass() > 0.6
    assert np.array_equal(flaky.model.u, before[0]) and np.array_equal(flaky.model.logz, before[1])
    assert flaky.p_fail() == before[2]


def test_a_fixed_test_recovers() -> None:
    m = _learn(TestModel(), [False] * 50 + [True] * 10 + [False] * 10)
    assert m.p_fail() < 0.1


def test_pickles_and_stays_small_after_100k_updates() -> None:
    rng = random.Random(3)
    m = TestModel()
    for _ in range(100_000):
        m.learn(rng.random() < 0.1)
    raw = pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(raw) < 4000
    back = pickle.loads(raw)
    assert back.runs == 100_000 and back.p_fail() == pytest.approx(m.p_fail())
    assert back.p_fail() == pytest.approx(0.1, abs=0.02)
    assert back.learn(True) == pytest.approx(m.learn(True))
    assert all(math.isfinite(x) for x in back.model.u.ravel())


def test_pickles_of_the_earlier_model_are_upgraded_from_their_counts() -> None:
    m = TestModel(runs=100, fails=30, last_failed=True)
    state = dict(m.__dict__)
    state["model"] = object()  # stands for the River pipeline the earlier version kept
    old = TestModel.__new__(TestModel)
    old.__setstate__(state)
    assert isinstance(old.model, FlakeFilter)
    assert old.p_fail() == pytest.approx(0.3, abs=0.05)
    old.learn(False)
    assert old.runs == 101


def test_river_interface() -> None:
    f = FlakeFilter()
    for y in [True, False, False, True]:
        f.learn_one({}, y)
    proba = f.predict_proba_one({})
    assert proba[True] + proba[False] == pytest.approx(1.0)
    assert isinstance(f.clone(), FlakeFilter) and f.clone().p_fail() == pytest.approx(FlakeFilter().p_fail())


def test_population_prior_is_learned_across_tests() -> None:
    prior = FlakePrior()
    models: dict[str, TestModel] = {}
    for build in range(40):
        for t in range(100):
            key = f"t{t}"
            m = models.setdefault(key, TestModel())
            prior.learn(key, m, failed=(t < 5))  # 95 tests never fail, 5 always fail
    assert prior.tests == 100
    # a brand-new test here is far less likely to fail than under the generic prior...
    assert prior.mean_rate() == pytest.approx(0.05, abs=0.02)
    assert TestModel().p_fail(prior) < TestModel().p_fail() * 0.8
    # ...and one that has just failed is most likely broken, like the 5 here
    new = TestModel()
    new.learn(True, prior=prior)
    assert new.p_fail(prior) > 0.9
    # contributions are replaced, not accumulated: the sums stay those of 100 tests
    assert prior.rates.sum() == pytest.approx(1.0) and prior.regimes.sum() == pytest.approx(1.0)


def test_groups_are_read_from_the_test_id() -> None:
    assert groups_of_test("proj/org.a.FooTest#testBar") == ("proj/org.a.FooTest", "proj")
    assert groups_of_test("tests/test_a.py::TestX::test_y") == ("tests/test_a.py::TestX", "tests/test_a.py")
    assert groups_of_test("org.a.FooTest.testBar") == ("org.a.FooTest", "org.a")
    assert groups_of_test("t17") == ()


def _population(prior: FlakePrior, ids: list[str], rate: dict[str, float], runs: int, seed: int) -> None:
    rng = random.Random(seed)
    models: dict[str, TestModel] = {}
    for _ in range(runs):
        for t in ids:
            prior.learn(t, models.setdefault(t, TestModel()), rng.random() < rate[t])


def test_class_mates_inform_a_new_test_when_classes_matter() -> None:
    # every test of class Flaky fails half the time, every test of the other classes never fails
    ids = [f"p/Flaky#t{i}" for i in range(8)] + [f"p/C{c}#t{i}" for c in range(8) for i in range(8)]
    prior = FlakePrior()
    _population(prior, ids, {t: 0.5 if "Flaky" in t else 0.0 for t in ids}, 30, 1)
    assert prior.group_weight > 0.8  # learned: classes say a lot here
    assert prior.mean_rate("p/Flaky#new") > 0.3 > 0.02 > prior.mean_rate("p/C0#new")


def test_the_group_weight_falls_when_classes_do_not_matter() -> None:
    rng = random.Random(4)
    ids = [f"p/C{rng.randrange(50)}#t{i}" for i in range(200)]
    rate = {t: (0.3 if rng.random() < 0.15 else 0.0) for t in ids}  # flakiness unrelated to the class
    prior = FlakePrior()
    _population(prior, ids, rate, 30, 2)
    assert prior.group_weight < 0.45  # from 0.5; stable tests are explained equally well either way


def test_a_pass_on_another_commit_is_a_fix_not_a_recovery() -> None:
    """Found by the fleet simulation: a test broken by a commit and fixed by the next one must not become
    "known flaky" (the planner retries known-flaky tests, and a retry could hide its next real regression)."""
    fixed = TestModel()
    for sha, failed in (("a1", False), ("b2", True), ("b2", True), ("c3", False)):
        fixed.learn(failed, head_sha=sha)
    assert fixed.recoveries == 0 and fixed.fixed_by_change == 1
    for sha, failed in (("d4", True), ("e5", False)):  # broken and fixed again: it keeps flipping
        fixed.learn(failed, head_sha=sha)
    assert fixed.recoveries == 1 and fixed.fixed_by_change == 2
    flaky = TestModel()
    for sha, failed in (("a1", False), ("b2", True), ("b2", False)):  # same commit: fail, then pass
        flaky.learn(failed, head_sha=sha)
    assert flaky.recoveries == 1
    unknown = TestModel()  # results without commits: every fail -> pass counts, as before
    for failed in (False, True, False):
        unknown.learn(failed)
    assert unknown.recoveries == 1

    back = pickle.loads(pickle.dumps(fixed))
    assert back.recoveries == 1 and back.last_sha == "e5"
