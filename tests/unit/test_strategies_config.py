"""``healing-strategies.yml``: the example loads, and every mistake names the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from healing_guard.settings import ConfigError
from healing_guard.strategies_config import (
    CATALOGUE,
    FEATURES,
    Strategy,
    load_strategies,
    parse_strategies,
    parse_strategy_name,
)
from healing_guard.schemas import CATEGORIES
from tests.support.paths import ROOT

EXAMPLE = ROOT / "docs" / "healing-strategies.example.yml"


def test_example_file_loads() -> None:
    cfg = load_strategies(EXAMPLE)
    assert cfg.source == str(EXAMPLE)
    assert cfg.ml_model.type == "flake_filter" and cfg.ml_model.prior_strength == 20
    assert set(cfg.features) <= set(FEATURES) and cfg.features
    t = cfg.thresholds
    assert (t.flaky, t.quarantine, t.confidence, t.min_runs) == (0.6, 0.3, 0.5, 5)
    assert cfg.patterns == ()
    flaky = cfg.actions[Strategy.FLAKY_TEST_RETRY]
    assert (flaky.enabled, flaky.confidence_threshold, flaky.max_retries) == (True, 0.8, 3)
    assert dict(cfg.actions[Strategy.NETWORK_BACKOFF].parameters) == {"backoff_seconds": [30, 120, 480]}
    assert cfg.actions[Strategy.DEPENDENCY_HELL].enabled is False
    assert cfg.actions[Strategy.OOM_RECOVERY].enabled is None  # not set: the default stays


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    p = tmp_path / "s.yml"
    p.write_text("# nothing yet\n")
    cfg = load_strategies(p)
    assert cfg.actions == {} and cfg.thresholds.flaky is None and cfg.patterns == ()


def test_catalogue_covers_every_category_once() -> None:
    owners: dict[str, list[Strategy]] = {}
    for s, info in CATALOGUE.items():
        if s is Strategy.RACE_CONDITION:  # refines the flaky retry; shares its categories
            continue
        for c in info.categories:
            owners.setdefault(c, []).append(s)
    assert set(owners) == set(CATEGORIES)
    assert all(len(v) == 1 for v in owners.values()), owners
    assert not CATALOGUE[Strategy.DEPENDENCY_HELL].enabled


def test_pattern_files_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "team.yml").write_text("patterns: []\n")
    p = tmp_path / "conf" / "healing-strategies.yml"
    p.write_text("patterns:\n  - team.yml\n")
    assert load_strategies(p).patterns == (str(tmp_path / "conf" / "team.yml"),)


@pytest.mark.parametrize(
    "body, key, line",
    [
        ("versoin: 1\n", "versoin", 1),
        ("version: 2\n", "version", 1),
        ("ml_model:\n  type: river_logistic\n", "ml_model.type", 2),
        ("ml_model:\n  type: flake_filter\n  prior_strength: 0\n", "ml_model.prior_strength", 3),
        ("ml_model:\n  learning_rate: 0.05\n", "ml_model.learning_rate", 2),
        ("features: [fail_rate, colour]\n", "features[1]", 1),
        ("features:\n  - fail_rate\n  - fail_rate\n", "features[1]", 3),
        ("features: []\n", "features", 1),
        ("thresholds:\n  flaky: 1.5\n", "thresholds.flaky", 2),
        ("thresholds:\n  confidence: high\n", "thresholds.confidence", 2),
        ("thresholds:\n  min_runs: 0\n", "thresholds.min_runs", 2),
        ("thresholds:\n  flakey: 0.6\n", "thresholds.flakey", 2),
        ("patterns:\n  - nowhere.yml\n", "patterns[0]", 2),
        ("patterns: team.yml\n", "patterns", 1),
        ("actions:\n  flaky_retry:\n    enabled: true\n", "actions.flaky_retry", 2),
        ("actions:\n  oom_recovery:\n    confidence_treshold: 0.9\n", "actions.oom_recovery.confidence_treshold", 3),
        ("actions:\n  oom_recovery:\n    confidence_threshold: 1.2\n", "actions.oom_recovery.confidence_threshold", 3),
        ("actions:\n  oom_recovery:\n    enabled: yes please\n", "actions.oom_recovery.enabled", 3),
        ("actions:\n  network_backoff:\n    max_retries: -1\n", "actions.network_backoff.max_retries", 3),
        ("actions:\n  network_backoff:\n    max_retries: 1.5\n", "actions.network_backoff.max_retries", 3),
        ("actions:\n  network_backoff:\n    parameters: [1, 2]\n", "actions.network_backoff.parameters", 3),
        ("actions:\n  flaky_test_retry:\n    parameters: {tests: [a]}\n", "actions.flaky_test_retry.parameters", 3),
        ("actions:\n  skip_and_notify:\n    enabled: false\n", "actions.skip_and_notify.enabled", 3),
        ("actions:\n  skip_and_notify:\n    max_retries: 2\n", "actions.skip_and_notify.max_retries", 3),
        ("actions:\n  oom_recovery: {max_retries: 1}\n  oom_recovery: {max_retries: 2}\n", "actions.oom_recovery", 3),
        ("actions: [oom_recovery]\n", "actions", 1),
    ],
)
def test_mistakes_name_file_line_and_key(tmp_path: Path, body: str, key: str, line: int) -> None:
    p = tmp_path / "healing-strategies.yml"
    p.write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_strategies(p)
    e = exc.value
    assert (e.source, e.key, e.line) == (str(p), key, line), str(e)
    assert str(e).startswith(f"{p}:{line}: {key}: ") and e.reason


def test_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_strategies("actions:\n  oom_recovery:\n    confidence_treshold: 0.9\n", "s.yml")
    assert "known: enabled, confidence_threshold, max_retries, parameters" in str(exc.value)
    with pytest.raises(ConfigError, match="unknown strategy; known: flaky_test_retry, oom_recovery"):
        parse_strategies("actions:\n  flaky:\n    enabled: true\n", "s.yml")


def test_invalid_yaml_missing_file_and_wrong_top_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_strategies("actions:\n  oom_recovery: {enabled: [\n", "s.yml")
    assert "not valid YAML" in str(exc.value) and exc.value.line
    with pytest.raises(ConfigError, match="file not found"):
        load_strategies(tmp_path / "missing.yml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_strategies("- a\n- b\n", "s.yml")


def test_strategy_names() -> None:
    assert parse_strategy_name(Strategy.OOM_RECOVERY) is Strategy.OOM_RECOVERY
    assert parse_strategy_name("oom_recovery") is Strategy.OOM_RECOVERY
    assert parse_strategy_name("FLAKY_TEST_RETRY") is Strategy.FLAKY_TEST_RETRY
    assert parse_strategy_name("flaky-test-retry") is Strategy.FLAKY_TEST_RETRY
    with pytest.raises(ValueError, match=r"^strategy: unknown strategy 'flaky'; known: flaky_test_retry"):
        parse_strategy_name("flaky")
    with pytest.raises(TypeError, match="^strategy: expected a Strategy"):
        parse_strategy_name(3)


def test_the_yaml_in_the_python_api_docs_is_valid(tmp_path: Path) -> None:
    import re

    doc = (EXAMPLE.parent / "python-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    assert len(blocks) == 1
    (tmp_path / "team-patterns.yml").write_text("patterns: []\n")
    cfg = parse_strategies(blocks[0], "python-api.md", tmp_path)
    assert cfg.actions[Strategy.DEPENDENCY_HELL].enabled is True
    assert cfg.patterns == (str(tmp_path / "team-patterns.yml"),)
