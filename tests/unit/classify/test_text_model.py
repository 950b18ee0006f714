"""The text model over the failure chunk, and how it joins the rules."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from healing_guard.classify import Diagnosis, EvidenceLine
from healing_guard.classify.text_model import TextModel, combine, features, packaged_model
from healing_guard.engine import Engine, offline_job
from healing_guard.remediate import Ledger
from healing_guard.settings import Settings

NAMED = Diagnosis("network", 0.8, (EvidenceLine(3, "read ECONNRESET", "p", "network", 0.8),))
UNKNOWN = Diagnosis("unknown", 1.0, ())


def test_features_are_words_of_templated_lines_the_command_and_the_exit_code() -> None:
    x = features(["Error: disk quota exceeded at /var/lib/x/12345"], 137, "npm run build")
    assert x["quota"] == 1.0 and x["disk_quota"] == 1.0 and x["exit:137"] == 1.0 and x["cmd:npm"] == 1.0
    assert not any(k.isdigit() or "12345" in k for k in x)  # numbers and paths are masked


def test_a_named_rule_diagnosis_stands_and_the_model_fills_unknowns() -> None:
    assert combine(NAMED, {"oom": 0.99}) is NAMED
    d = combine(UNKNOWN, {"oom": 0.8, "crash": 0.2})
    assert (d.category, d.confidence, d.learned) == ("oom", 0.8, True)
    unsure = combine(UNKNOWN, {"oom": 0.4, "crash": 0.35, "network": 0.25})
    assert unsure.category == "unknown" and unsure.confidence == 0.6 and not unsure.learned  # 1 - its best guess
    assert combine(UNKNOWN, {}) is UNKNOWN


def test_the_planner_never_acts_by_itself_on_a_learned_category() -> None:
    engine = Engine(Settings(text_model="off"))
    ready, analysis = engine.read_log(io.BytesIO(b"nothing a pattern knows\n"), offline_job("1", duration_minutes=5))
    learned = Diagnosis("network", 0.99, analysis.diagnosis.evidence, learned=True)
    _, decision = engine.decide(ready, Ledger(), diagnosis=learned)
    assert decision.command.action == "notify_oncall" and "text model" in decision.command.reason
    _, plain = engine.decide(ready, Ledger(), diagnosis=Diagnosis("network", 0.99, learned.evidence))
    assert plain.command.action == "retry_backoff"


def test_a_model_learns_online_and_round_trips(tmp_path: Path) -> None:
    m = TextModel(vocabulary=frozenset({"heap", "memory", "refused", "connection"}))
    for _ in range(3):
        m.learn_one({"heap": 1.0, "memory": 1.0, "projectname": 1.0}, "oom")
        m.learn_one({"refused": 1.0, "connection": 1.0}, "network")
    assert max(m.predict_proba({"heap": 1.0}).items(), key=lambda kv: kv[1])[0] == "oom"
    assert m.predict_proba({"projectname": 1.0}) == {}  # outside the vocabulary: no opinion
    m.dump(tmp_path / "m.json")
    again = TextModel.load(tmp_path / "m.json")
    assert again.predict_proba({"refused": 1.0}) == m.predict_proba({"refused": 1.0})


def test_the_packaged_model_is_small_and_says_how_it_was_made() -> None:
    m = packaged_model()
    assert m is not None and m.vocabulary and 100 < len(m.vocabulary) < 50_000
    assert "train_text_model.py" in m.info["command"] and m.info["logs"] > 500
    from importlib import resources

    size = resources.files("healing_guard.classify").joinpath("text_model.json").read_bytes()
    assert len(size) < 1 << 20


def test_the_vocabulary_leaves_out_words_of_one_project_or_one_source() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    from train_text_model import Example, vocabulary

    def ex(project: str, words: list[str]) -> Example:
        return Example("f", "d", "oom", project, "g", {w: 1.0 for w in words}, "unknown", 0.0, UNKNOWN)

    v = vocabulary([ex("corpus:a", ["heap", "acmewidget"]), ex("corpus:b", ["heap", "acmewidget"]),
                    ex("corpus:c", ["heap", "acmewidget"]), ex("real:d", ["heap"])], 3)
    assert "heap" in v and "acmewidget" not in v  # three projects, but only one source


def test_a_packaged_model_that_cannot_be_loaded_leaves_the_rules(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A damaged or foreign file: the guard diagnoses with the patterns rather than not at all."""
    def broken(path: object) -> TextModel:
        raise AttributeError("Can't get attribute 'MultinomialNB' on <module 'river.naive_bayes'>")

    packaged_model.cache_clear()
    monkeypatch.setattr(TextModel, "load", staticmethod(broken))
    try:
        assert packaged_model() is None
        assert "cannot be loaded" in caplog.text
        engine = Engine(Settings(text_model="packaged"))
        assert engine.text_model is None
        _, analysis = engine.read_log(io.BytesIO(b"npm ERR! code ECONNRESET\n"), offline_job("1"))
        assert analysis.diagnosis.category == "network"
    finally:
        monkeypatch.undo()
        packaged_model.cache_clear()
    assert packaged_model() is not None


def test_the_fast_prediction_is_rivers_own() -> None:
    """Predictions read tables built from the counts; River's MultinomialNB must give the same numbers."""
    m = packaged_model()
    assert m is not None
    river = m.model  # rebuilt from the counts of the file
    for x in ({"error": 2.0, "heap": 1.0, "exit:137": 1.0}, {"connection": 1.0, "refused": 1.0, "cmd:npm": 1.0},
              {"assertion": 1.0, "expected": 1.0}):
        ours = m.predict_proba(x)
        theirs = river.predict_proba_one(m._x(x))
        assert ours.keys() == theirs.keys()
        assert all(abs(ours[c] - theirs[c]) < 1e-9 for c in ours)
    m2 = TextModel(vocabulary=frozenset({"quota", "exceeded"}))
    m2.learn_one({"quota": 1.0, "exceeded": 1.0}, "rate_limit")
    m2.learn_one({"quota": 1.0}, "build_config")
    assert abs(m2.predict_proba({"exceeded": 1.0})["rate_limit"]
               - m2.model.predict_proba_one({"exceeded": 1.0})["rate_limit"]) < 1e-9
