"""The failure's context (changed files, message, co-failures, duration, time) learned across tests."""

from __future__ import annotations

import random

from healing_guard.flaky import TestModel
from healing_guard.flaky.context import RetryContext, context_features, message_hash, touches_change
from healing_guard.engine.core import Engine
from healing_guard.schemas import TestResult
from healing_guard.settings import Settings


def test_touches_change() -> None:
    assert touches_change("tests/test_cache.py::test_evict", ["src/app/cache.py"])
    assert touches_change("tests/test_cache.py::test_evict", ["tests/test_cache.py"])
    assert touches_change("com.acme.CacheTest#evicts", ["src/main/java/com/acme/Cache.java"])
    assert not touches_change("com.acme.CacheTest#evicts", ["src/main/java/com/acme/Billing.java", "README.md"])
    assert not touches_change("tests/test_cache.py::test_evict", [])


def test_context_features() -> None:
    m = TestModel()
    for d in (1.0, 1.1, 0.9, 1.0):
        m.learn(False, d)
    m.last_template = message_hash("assert 3 == 4")
    r = TestResult(provider="github", owner="o", repo="r", job_id="1", test_id="tests/test_auth.py::test_b",
                   outcome="failed", duration_s=30.0, ts=6 * 3600.0, message="TimeoutError after 30s",
                   changed_files=["src/auth.py"], failed_in_run=40)
    x = context_features(m, r, 0.7)
    assert x["touches_change"] == 1.0 and x["template_changed"] == 1.0
    assert x["duration_z"] == 5.0 and x["co_failed"] > 3.5 and abs(x["hour_sin"] - 1.0) < 1e-9
    same = TestResult(**{**r.to_dict(), "message": "assert 7 == 9"})  # same template as before
    assert context_features(m, same, 0.7)["template_changed"] == 0.0


def test_retry_context_defers_to_the_filter_until_it_has_learned() -> None:
    ctx = RetryContext(min_seen=10)
    x = {"logit_p": 0.0, "touches_change": 1.0}
    assert ctx.p_retry_pass(x, 0.8) == 0.8
    for _ in range(9):
        ctx.learn(x, False)
    assert ctx.p_retry_pass(x, 0.8) == 0.8


def test_engine_learns_that_failures_after_a_touching_change_are_regressions() -> None:
    """Across many tests: a failure right after a change to the test's module fails again (a regression),
    any other failure passes on the next run (a flake). The filter alone cannot tell them apart; the
    context model learns it from what happened next."""
    engine = Engine(Settings(broker_url="kafka://127.0.0.1:1"))
    rng = random.Random(3)
    models: dict[str, TestModel] = {}
    n = 0

    def run(tid: str, outcome: str, changed: list[str]) -> object:
        nonlocal n
        n += 1
        r = TestResult(provider="github", owner="o", repo="r", job_id=str(n), test_id=tid, outcome=outcome,  # type: ignore[arg-type]
                       changed_files=changed, ts=float(n))
        models[tid], _, risk = engine.learn_test(models.get(tid), r)
        return risk

    for i in range(400):
        tid = f"tests/test_mod{i % 40}.py::test_x"
        for _ in range(rng.randint(2, 5)):
            run(tid, "passed", [])
        if rng.random() < 0.5:
            run(tid, "failed", [f"src/mod{i % 40}.py"])
            run(tid, "failed", [f"src/mod{i % 40}.py"])  # the regression fails again
            run(tid, "passed", [])  # fixed
        else:
            run(tid, "failed", ["docs/index.md"])
            run(tid, "passed", ["docs/index.md"])  # the flake passes on the next run
    assert engine.retry_context.seen > 300
    for _ in range(3):
        run("tests/test_new.py::test_y", "passed", [])
    risky = run("tests/test_new.py::test_y", "failed", ["src/new.py"])
    for _ in range(3):
        run("tests/test_other.py::test_y", "passed", [])
    benign = run("tests/test_other.py::test_y", "failed", ["docs/index.md"])
    assert risky.p_retry_pass < benign.p_retry_pass - 0.1, (risky, benign)  # type: ignore[attr-defined]


def test_the_context_model_and_its_features_are_the_settings_choice() -> None:
    """healing-strategies.yml's ml_model (gradient_boost -> River's stochastic gradient tree) and features:
    the tree learns the same regression-vs-flake distinction, and a model restricted to the features the
    list names reads only those."""
    engine = Engine(Settings(broker_url="kafka://127.0.0.1:1", context_model="gradient_trees",
                             context_features=("logit_p", "touches_change")))
    ctx = engine.retry_context
    assert type(ctx.model).__name__ == "SGTClassifier" and ctx.features == ("logit_p", "touches_change")
    seen: list[dict[str, float]] = []
    learn_one = ctx.model.learn_one
    ctx.model.learn_one = lambda x, y: (seen.append(x), learn_one(x, y))  # type: ignore[method-assign]
    rng = random.Random(5)
    for _ in range(600):
        regression = rng.random() < 0.5
        ctx.learn({"logit_p": 0.5, "touches_change": float(regression), "hour_sin": rng.random(), "co_failed": 2.0},
                  retry_passed=not regression)
    assert all(set(x) == {"logit_p", "touches_change"} for x in seen)
    risky = ctx.p_retry_pass({"logit_p": 0.5, "touches_change": 1.0, "hour_sin": 0.3}, 0.6)
    benign = ctx.p_retry_pass({"logit_p": 0.5, "touches_change": 0.0, "hour_sin": 0.3}, 0.6)
    assert risky < benign - 0.1, (risky, benign)
    try:
        RetryContext(features=("shoe_size",))
    except ValueError as exc:
        assert "shoe_size" in str(exc) and "touches_change" in str(exc)
    else:
        raise AssertionError("an unknown feature was accepted")
