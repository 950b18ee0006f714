"""Prequential replay: parsing, predict-before-learn, metrics, and ``guard flakiness replay``."""

from __future__ import annotations

import io
import json
import math
import random

import pytest
from typer.testing import CliRunner

from healing_guard.flaky import FlakePrior, TestModel
from healing_guard.flaky.cli import flakiness_app
from healing_guard.flaky.prequential import (BetaRate, CsvError, GlobalRate, Metrics, OurModel, Prediction, ThresholdRule,
                                        auc, brier, evaluate, log_loss, parse_rows, replay)


def _rows(text: str) -> list:
    return list(parse_rows(io.StringIO(text), "h.csv"))


# --- parsing ---------------------------------------------------------------------------------------
def test_parse_rows_header_any_order_extra_columns_blank_lines() -> None:
    rows = _rows("build,outcome,test_id\n1,P,a\n\n2, f ,b\n3,F,a\n")
    assert [(r.line, r.test_id, r.failed) for r in rows] == [(2, "a", False), (4, "b", True), (5, "a", True)]


@pytest.mark.parametrize("text, line, field", [
    ("test_id,outcome\na,P\nb,X\n", 3, "outcome"),
    ("test_id,outcome\na,P\n,F\n", 3, "test_id"),
    ("test_id,outcome\na,P\nb\n", 3, "outcome"),
    ("a,P\nb,F\n", 1, "test_id"),  # no header
    ("test,outcome\na,P\n", 1, "test_id"),
    ("", 1, None),
])
def test_parse_errors_name_the_line_and_field(text: str, line: int, field: str | None) -> None:
    with pytest.raises(CsvError) as info:
        _rows(text)
    assert (info.value.line, info.value.field) == (line, field)
    assert f"h.csv: line {line}" in str(info.value)


# --- replay ----------------------------------------------------------------------------------------
def test_the_first_row_of_a_new_test_gets_the_prior_not_its_own_outcome() -> None:
    prior_mean = TestModel().p_fail(FlakePrior())
    for outcome in (True, False):
        (pred,) = replay([("t", outcome)], OurModel())
        assert pred.p_fail == pytest.approx(prior_mean)
        assert not pred.after_failure
    preds = list(replay([("a", True), ("a", True), ("b", False), ("a", False)], BetaRate()))
    assert [p.p_fail for p in preds] == [0.5, 2 / 3, 0.5, 3 / 4]  # (fails + 1) / (runs + 2), before the row
    assert [p.after_failure for p in preds] == [False, True, False, True]


def test_replay_of_our_model_matches_learning_by_hand() -> None:
    rng = random.Random(5)
    rows = [(f"t{rng.randrange(4)}", rng.random() < 0.3) for _ in range(200)]
    prior, models, expected = FlakePrior(), {}, []
    for tid, y in rows:
        expected.append(prior.learn(tid, models.setdefault(tid, TestModel()), y))
    assert [p.p_fail for p in replay(rows, OurModel())] == pytest.approx(expected)


def test_baselines() -> None:
    g = GlobalRate()
    assert [g.learn("x", y) for y in (True, False, False)] == [0.5, 2 / 3, 2 / 4]
    r = ThresholdRule(0.3, 0.9, 0.1)
    # before each row: no runs, 1/1, 1/2, 1/3 >= 0.3, 1/4 < 0.3
    assert [r.learn("x", y) for y in (True, False, False, False, False)] == [0.1, 0.9, 0.9, 0.9, 0.1]


# --- metrics ---------------------------------------------------------------------------------------
def test_metrics_on_hand_checkable_examples() -> None:
    ys = [True, False, True, False]
    assert auc([0.9, 0.1, 0.8, 0.2], ys) == 1.0
    assert auc([0.1, 0.9, 0.2, 0.8], ys) == 0.0
    assert auc([0.5] * 4, ys) == 0.5
    assert auc([0.3, 0.3], [True, True]) is None
    assert log_loss([0.5] * 4, ys) == pytest.approx(math.log(2))
    assert brier([0.5] * 4, ys) == pytest.approx(0.25)
    assert brier([1.0, 0.0], [True, False]) == 0.0
    assert log_loss([0.0], [True]) == pytest.approx(-math.log(1e-15))  # clipped, not infinite
    m = Metrics()
    for p, y, after in [(0.9, True, False), (0.1, False, False), (0.8, True, True), (0.2, False, True)]:
        m.add(Prediction("t", y, p, after))
    res = m.result()
    assert res["auc"] == 1.0 and res["auc_after_failure"] == 1.0
    assert (res["rows"], res["fails"], res["rows_after_failure"], res["fails_after_failure"]) == (4, 2, 2, 1)
    assert res["log_loss"] == pytest.approx(log_loss([0.9, 0.1, 0.8, 0.2], ys))


def test_streaming_auc_agrees_with_the_exact_one() -> None:
    rng = random.Random(11)
    ps = [rng.random() ** 3 for _ in range(3000)]
    ys = [rng.random() < p for p in ps]
    m = Metrics()
    for p, y in zip(ps, ys):
        m.add(Prediction("t", y, p, False))
    assert m.result()["auc"] == pytest.approx(auc(ps, ys), abs=1e-3)
    assert m.result()["brier"] == pytest.approx(brier(ps, ys))


def test_evaluate_beats_beta_on_a_population_of_mostly_stable_tests() -> None:
    rng = random.Random(2)
    rates = {f"t{i}": (0.0 if i % 10 else 0.4) for i in range(60)}
    rows = [(t, rng.random() < r) for _ in range(40) for t, r in rates.items()]
    ours, beta = evaluate(rows, OurModel()), evaluate(rows, BetaRate())
    assert ours["log_loss"] < 0.9 * beta["log_loss"]


# --- CLI -------------------------------------------------------------------------------------------
def test_cli_json_output_shape(tmp_path) -> None:
    f = tmp_path / "h.csv"
    f.write_text("test_id,outcome,extra\na,P,1\nb,F,2\na,F,3\nb,F,4\n")
    res = CliRunner().invoke(flakiness_app, ["replay", str(f), "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [set(d) for d in lines] == [{"test_id", "outcome", "p_fail"}] * 4
    assert [(d["test_id"], d["outcome"]) for d in lines] == [("a", "P"), ("b", "F"), ("a", "F"), ("b", "F")]
    assert lines[0]["p_fail"] == pytest.approx(TestModel().p_fail(FlakePrior()), rel=1e-5)  # the prior
    assert all(0.0 <= d["p_fail"] <= 1.0 for d in lines)
    metrics = json.loads(res.stderr.strip().splitlines()[-1])["metrics"]
    assert metrics["rows"] == 4 and metrics["fails"] == 3 and metrics["tests"] == 2


def test_cli_human_output_and_bad_rows(tmp_path) -> None:
    good = tmp_path / "ok.csv"
    good.write_text("test_id,outcome\na,P\na,F\n")
    res = CliRunner().invoke(flakiness_app, ["replay", str(good)])
    assert res.exit_code == 0
    assert "p_fail" in res.stdout and "log-loss" in res.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("test_id,outcome\na,P\na,maybe\n")
    res = CliRunner().invoke(flakiness_app, ["replay", str(bad), "--json"])
    assert res.exit_code == 2
    assert "line 3" in res.stderr and "outcome" in res.stderr
    res = CliRunner().invoke(flakiness_app, ["replay", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2
