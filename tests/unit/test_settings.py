from pathlib import Path

import pytest

from healing_guard.settings import ConfigError, load_settings


def test_defaults_and_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "healing-config.yml"
    cfg.write_text("broker:\n  url: kafka://10.1.1.1:9093\n  partitions: 8\ncost_tracking:\n  daily_budget_usd: 10\n")
    s = load_settings(cfg, env={"GUARD_PARTITIONS": "6"}, daily_budget_usd=None, topic_prefix="t1.")
    assert s.broker_url == "kafka://10.1.1.1:9093"  # file
    assert s.partitions == 6  # env beats file
    assert s.daily_budget_usd == 10.0
    assert s.topic_prefix == "t1."  # flag
    assert s.topics.logs == "t1.ci.logs" and s.topics.deadletter == "t1.guard.deadletter"
    assert s.bootstrap == "10.1.1.1:9093"
    with pytest.raises(Exception):
        s.partitions = 3  # type: ignore[misc]  # frozen


def test_unknown_key_names_file_key_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "healing-config.yml"
    cfg.write_text("broker:\n  url: kafka://h:1\n\ncost_tracking:\n  daily_budgt_usd: 5\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env={})
    msg = str(exc.value)
    assert str(cfg) in msg and ":5:" in msg and "cost_tracking.daily_budgt_usd" in msg and "daily_budget_usd" in msg


@pytest.mark.parametrize(
    "body, key",
    [
        ("broker:\n  partitions: 0\n", "broker.partitions"),
        ("broker:\n  url: http://x:1\n", "broker.url"),
        ("clickhouse:\n  database: 'x; DROP'\n", "clickhouse.database"),
        ("pipeline:\n  confidence_threshold: 1.5\n", "pipeline.confidence_threshold"),
        ("executor:\n  dry_run: maybe\n", "executor.dry_run"),
        ("nosuch:\n  a: 1\n", "nosuch.a"),
        ("broker: [1, 2]\n", "broker"),
    ],
)
def test_bad_values_refused(tmp_path: Path, body: str, key: str) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env={})
    assert exc.value.key == key
    assert exc.value.source == str(cfg)


def test_bad_env_and_flag_named() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(None, env={"GUARD_DAILY_BUDGET_USD": "lots"})
    assert exc.value.key == "GUARD_DAILY_BUDGET_USD"
    with pytest.raises(ConfigError) as exc2:
        load_settings(None, env={}, partitions="-1")
    assert exc2.value.key == "--partitions"


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("broker:\n  url: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env={})
    assert "not valid YAML" in str(exc.value)
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "missing.yml", env={})
