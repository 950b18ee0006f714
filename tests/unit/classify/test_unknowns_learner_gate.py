"""Unknown-failure signatures and clusters, the online label learner, and the auto-remediation gate."""

from __future__ import annotations

import pickle

import pytest

from healing_guard.classify import Diagnosis, EvidenceLine
from healing_guard.classify.learner import LabelLearner, features
from healing_guard.classify.unknowns import cluster_unknowns, signature_line
from healing_guard.remediate import PlanConfig
from healing_guard.remediate.gate import AUTOMATIC_CATEGORIES, NEVER, choose_thresholds, packaged_thresholds
from healing_guard.remediate.planner import _choose
from healing_guard.settings import ConfigError, load_settings

# --- unknowns ----------------------------------------------------------------------------------


def test_signature_prefers_the_last_descriptive_error_over_generic_wrappers() -> None:
    tail = ["Run ./deploy.sh", "Uploading 3 files", "deploy: quota of 12 deployments per day exceeded for project 4411",
            "Error: upload to bucket-7f3a9c1 failed after 3 attempts", "Process completed with exit code 1."]
    sig = signature_line((), tail)
    assert sig == "Error: upload to bucket-<HEX> failed after <NUM> attempts"


def test_same_failure_in_two_runs_has_one_signature() -> None:
    a = signature_line((), ["Error: lease 9f8e7d6c-1111-2222-3333-444455556666 expired at /srv/run/17/lock"])
    b = signature_line((), ["Error: lease 0a0b0c0d-aaaa-bbbb-cccc-ddddeeeeffff expired at /srv/run/942/lock"])
    assert a == b and "<UUID>" in a


def test_signature_falls_back_to_evidence_then_last_line() -> None:
    ev = (EvidenceLine(3, "something weak 42", "p", "crash", 0.2),)
    assert signature_line(ev, ["all good", "done"]) == "something weak <NUM>"
    assert signature_line((), ["", "done 5", " "]) == "done <NUM>"
    assert signature_line((), []) is None


def test_clusters_largest_first_with_examples() -> None:
    items = [("a.log", "X <NUM>"), ("b.log", "Y"), ("c.log", "X <NUM>"), ("d.log", None), ("e.log", "X <NUM>")]
    cl = cluster_unknowns(items, examples=2)
    assert [(c.signature, c.count) for c in cl] == [("X <NUM>", 3), ("<empty log>", 1), ("Y", 1)]
    assert cl[0].examples == ["a.log", "c.log"]


# --- learner -----------------------------------------------------------------------------------


def _d(cat: str, conf: float, pattern: str, scores: tuple[tuple[str, float], ...]) -> Diagnosis:
    return Diagnosis(cat, conf, (EvidenceLine(10, "line", pattern, cat, conf),), scores)


def test_learner_defers_to_rules_until_it_has_labels() -> None:
    ln = LabelLearner(min_labels=5)
    d = _d("network", 0.7, "net.reset", (("network", 0.7),))
    for _ in range(4):
        ln.learn(d, "network")
    assert ln.predict(d) is d


def test_learner_learns_a_recurring_correction() -> None:
    # a team's wrapper prints a "connection reset" line on every lint failure: the rules say network,
    # the humans keep saying lint_style; after enough labels the learner says lint_style too
    wrong = _d("network", 0.72, "net.reset", (("network", 0.72), ("lint_style", 0.4)))
    right = _d("oom", 0.9, "oom.killed", (("oom", 0.9),))
    ln = LabelLearner(min_labels=10)
    for _ in range(30):
        ln.learn(wrong, "lint_style")
        ln.learn(right, "oom")
    fixed = ln.predict(wrong)
    assert fixed.category == "lint_style"
    kept = ln.predict(right)
    assert kept.category == "oom" and kept.confidence > 0.8


def test_learner_pickles_and_features_are_plain() -> None:
    ln = LabelLearner()
    d = _d("oom", 0.9, "oom.killed", (("oom", 0.9),))
    ln.learn(d, "oom", exit_code=137)
    again = pickle.loads(pickle.dumps(ln))
    assert again.labels_seen == 1
    x = features(d, 137)
    assert x["score:oom"] == 0.9 and x["pattern:oom.killed"] == 1.0 and x["exit:137"] == 1.0


def test_learner_file_roundtrip_and_refuses_other_pickles(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ln = LabelLearner()
    ln.save(tmp_path / "m.pkl")
    assert LabelLearner.load(tmp_path / "m.pkl").labels_seen == 0
    (tmp_path / "x.pkl").write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(ValueError, match="not a guard label model"):
        LabelLearner.load(tmp_path / "x.pkl")


# --- gate --------------------------------------------------------------------------------------


def test_thresholds_from_measured_precision() -> None:
    preds = [("network", 0.95, True), ("network", 0.9, True), ("network", 0.85, True), ("network", 0.8, True),
             ("network", 0.7, False), ("network", 0.65, True), ("oom", 0.9, True),
             ("disk_full", 0.9, False), ("disk_full", 0.8, False), ("disk_full", 0.7, False),
             ("test_failure", 0.9, False)]
    g = choose_thresholds(preds, target=0.95, min_support=3, default=0.75)
    assert g["network"].threshold == 0.8 and g["network"].precision == 1.0 and g["network"].acted == 4
    assert g["oom"].precision is None  # one example: not measurable, the default applies
    assert g["disk_full"].threshold == NEVER  # never precise enough: always notify
    assert set(g) == set(AUTOMATIC_CATEGORIES) and "test_failure" not in g


def test_equal_confidences_are_not_split() -> None:
    preds = [("network", 0.9, True), ("network", 0.9, True), ("network", 0.9, False), ("network", 0.9, True)]
    assert choose_thresholds(preds, target=0.95, min_support=2)["network"].threshold == NEVER


def test_planner_notifies_below_the_gate_and_acts_above() -> None:
    cfg = PlanConfig(auto_thresholds={"network": 0.8})
    low = Diagnosis("network", 0.7, ())
    high = Diagnosis("network", 0.85, ())
    st, why = _choose(low, (), cfg)
    assert not st.automatic and "0.80" in why
    st, _ = _choose(high, (), cfg)
    assert st.action == "retry_backoff"


def test_packaged_thresholds_cover_every_automatic_category() -> None:
    t = packaged_thresholds()
    assert set(t) == set(AUTOMATIC_CATEGORIES) and all(0.5 <= v <= NEVER for v in t.values())


def test_config_thresholds_are_validated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "healing-config.yml"
    cfg.write_text("pipeline:\n  auto_thresholds:\n    network: 0.9\n")
    assert load_settings(cfg, env={}).auto_thresholds == {"network": 0.9}
    cfg.write_text("pipeline:\n  auto_thresholds:\n    lint_style: 0.9\n")
    with pytest.raises(ConfigError, match="lint_style"):
        load_settings(cfg, env={})
    cfg.write_text("pipeline:\n  auto_thresholds:\n    network: 1.5\n")
    with pytest.raises(ConfigError, match="auto_thresholds"):
        load_settings(cfg, env={})


def test_right_down_to_the_lowest_confidence_caps_at_the_default() -> None:
    preds = [("network", 0.95, True), ("network", 0.9, True), ("network", 0.7, True)]
    e = choose_thresholds(preds, target=0.95, min_support=3, default=0.75, lower_support=3)["network"]
    assert e.threshold == 0.7 and e.acted == 3  # lowest seen, already under the default
    e = choose_thresholds(preds, target=0.95, min_support=3, default=0.75)["network"]
    assert e.threshold == 0.75  # ...but three right answers are too few to go below the default
    preds = [("network", 0.99, True), ("network", 0.98, True), ("network", 0.97, True)]
    e = choose_thresholds(preds, target=0.95, min_support=3, default=0.75)["network"]
    assert e.threshold == 0.75  # no evidence below 0.97 either way: the default, not 0.97
