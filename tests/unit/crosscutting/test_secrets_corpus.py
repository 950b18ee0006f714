"""The secret-redaction benchmark (benchmarks/redaction.py): its generated corpus is big, varied, deterministic and
self-consistent, and scoring it runs. The score is printed (``pytest -s``), not gated: the recall threshold
is set once the redaction rules it measures have landed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "redaction.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_secrets", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


bench = _load()


@pytest.fixture(scope="module")
def generated() -> tuple[list[Any], list[str]]:
    cases, negatives = bench.corpus(7)
    return cases, negatives


def test_corpus_is_big_and_varied(generated: tuple[list[Any], list[str]]) -> None:
    cases, negatives = generated
    shapes = {c.shape for c in cases}
    assert len(cases) >= 300 and len(shapes) >= 40 and len(negatives) >= 300
    assert shapes == set(bench.shapes())
    assert all(sum(c.shape == s for c in cases) >= 4 for s in shapes)
    assert len({c.secret for c in cases}) == len(cases)  # every case has its own random value
    assert len(set(negatives)) == len(negatives)
    for s in shapes:  # each shape's lines vary, not one template with other values
        lines = [c.line.replace(c.secret, "") for c in cases if c.shape == s]
        assert len(set(lines)) >= 3, s


def test_every_secret_is_in_its_line(generated: tuple[list[Any], list[str]]) -> None:
    cases, _ = generated
    bad = [c for c in cases if c.secret not in c.line or len(c.secret) < 8]
    assert not bad, bad[:3]
    # multi-line cases are exactly the PEM shapes, whose lines go through redact_lines
    assert {c.shape for c in cases if "\n" in c.line} == {"pem_private_key", "pem_tail_without_begin"}


def test_no_negative_contains_a_secret(generated: tuple[list[Any], list[str]]) -> None:
    cases, negatives = generated
    text = "\n".join(negatives)
    assert not [c.secret for c in cases if c.secret in text]
    assert not [n for n in negatives if "\n" in n]


def test_the_generator_is_deterministic_for_a_seed(generated: tuple[list[Any], list[str]]) -> None:
    cases, negatives = generated
    again_cases, again_negatives = bench.corpus(7)
    assert again_cases == cases and again_negatives == negatives
    assert bench.negatives(7) == negatives
    other, _ = bench.corpus(8)
    assert [c.shape for c in other] == [c.shape for c in cases]
    assert not {c.secret for c in other} & {c.secret for c in cases}


def test_leak_check_counts_a_partial_redaction_as_a_miss() -> None:
    c = bench.Case("env_password_with_ampersand", "DB_PASSWORD=Xk3p9qLm2R&Lm2Rt7wQz9", "Xk3p9qLm2R&Lm2Rt7wQz9")
    assert bench.leaked(c, "DB_PASSWORD=[REDACTED]&Lm2Rt7wQz9")
    assert not bench.leaked(c, "DB_PASSWORD=[REDACTED]")
    pre = bench.Case("pypi_token", "pypi-AgEIcHlwaS5vcmc TOKEN pypi-AgEIcHlwaS5vcmcQ7fT2LmZ9vXk", "pypi-AgEIcHlwaS5vcmcQ7fT2LmZ9vXk")
    assert not bench.leaked(pre, "pypi-AgEIcHlwaS5vcmc TOKEN [REDACTED]")  # the prefix was in the line anyway


def test_score_runs_and_prints(generated: tuple[list[Any], list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    cases, negatives = generated
    res = bench.score(cases, negatives)
    assert res["cases"] == len(cases) and res["shapes"] == len(bench.shapes()) and res["negatives"] == len(negatives)
    assert 0.0 <= res["recall"] <= res["recall_exact"] <= 1.0 and 0.0 <= res["fp_rate"] <= 1.0
    assert set(res["per_shape"]) == set(bench.shapes())
    assert res["missed_shapes"] == sorted(res["missed_shapes"], key=lambda s: (res["per_shape"][s], s))
    json.dumps(res)  # the --json output is serialisable
    with capsys.disabled():
        print(f"\nsecret redaction: recall {res['recall']:.1%} (exact {res['recall_exact']:.1%}), "
              f"false positives {res['fp_rate']:.1%} ({res['fp_count']}/{res['negatives']}), "
              f"{res['cases']} cases / {res['shapes']} shapes; missed shapes: {', '.join(res['missed_shapes']) or 'none'}")


def test_main_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--json", "--show", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    res = json.loads(out[0])
    assert res["seed"] == 7 and len(res["misses"]) <= 2 and len(res["changed_negatives"]) <= 2


def test_redaction_meets_its_floor_and_catches_every_shape_an_operator_found_stored(
        generated: tuple[list[Any], list[str]]) -> None:
    """Measured 2026-12-07: recall 95.0 %, false positives 2.7 %. The floor is a little under, so a rule
    change that loses recall or starts eating ordinary lines fails here; the shapes found stored in
    findings, commands, facts and dead letters (issue 16) must all be caught."""
    cases, negatives = generated
    res = bench.score(cases, negatives)
    assert res["recall"] >= 0.94, res["missed_shapes"]
    assert res["fp_rate"] <= 0.015, res["changed_negatives"][:5]
    found_stored = [s for s in bench.shapes() if any(w in s for w in (
        "azure", "sas", "docker_config", "openssl", "sendgrid", "hugging", "ampersand", "vault"))]
    assert len(found_stored) >= 7, found_stored
    assert all(res["per_shape"][s] == 1.0 for s in found_stored), {s: res["per_shape"][s] for s in found_stored}
