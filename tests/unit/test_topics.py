"""healing_guard.topics is the one home of topic names and specs; the settings only add the prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from healing_guard.schemas import TOPIC_RECORDS, Command, DeadLetter, Finding, JobEvent, LogChunk, Outcome, TestResult
from healing_guard.settings import Settings, load_settings
from healing_guard.topics import (
    DEFAULT_TOPICS,
    INPUT_TOPICS,
    TABLE_NAMES,
    Topics,
    internal_topics,
    topic_specs,
)

NAMES = ["ci.logs", "ci.jobs", "ci.tests", "guard.findings", "guard.actions", "guard.outcomes", "guard.deadletter",
         "guard.facts", "guard.test-risk", "guard.ticks", "guard.incidents"]
BIG = {"max.message.bytes": str(16 << 20)}


def test_default_names_and_the_records_on_them() -> None:
    assert list(DEFAULT_TOPICS.all().values()) == NAMES
    assert Settings().topics == DEFAULT_TOPICS
    assert INPUT_TOPICS == ("ci.jobs", "ci.logs", "ci.tests")
    assert [r.topic for r in (LogChunk, JobEvent, TestResult, Finding, Command, Outcome, DeadLetter)] == NAMES[:7]
    assert set(TOPIC_RECORDS) <= set(NAMES)


def test_the_prefix_overrides_every_name(tmp_path: Path) -> None:
    cfg = tmp_path / "healing-config.yml"
    cfg.write_text("topics:\n  prefix: file.\n")
    for s, prefix in ((load_settings(env={"GUARD_TOPIC_PREFIX": "env."}), "env."),
                      (load_settings(cfg, env={}), "file."),
                      (load_settings(cfg, env={"GUARD_TOPIC_PREFIX": "env."}, topic_prefix="flag."), "flag.")):
        assert list(s.topics.all().values()) == [prefix + n for n in NAMES]
        assert s.topics == Topics.with_prefix(prefix)
        assert s.topics.named("guard.test-risk") == prefix + "guard.test-risk"
    with pytest.raises(KeyError):
        DEFAULT_TOPICS.named("guard.nope")


def test_specs() -> None:
    s = Settings(topic_prefix="x-", partitions=7, app_id="a1")
    specs = topic_specs(s)
    assert list(specs) == ["x-" + n for n in NAMES]
    assert specs["x-ci.logs"] == (7, BIG) and specs["x-guard.deadletter"] == (7, BIG)
    assert all(v == (7, {}) for k, v in specs.items() if k not in ("x-ci.logs", "x-guard.deadletter"))
    assert internal_topics(s) == {
        **{f"a1-{t}-changelog": (7, {"cleanup.policy": "compact"}) for t in TABLE_NAMES},
        "a1-__assignor-__leader": (1, {}),
    }
    assert TABLE_NAMES == ("windows", "ledgers", "test_models", "incidents")
