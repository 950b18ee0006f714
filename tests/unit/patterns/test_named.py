"""The named pattern format (patterns/named.py): the product document's ``NAME: {regex, indicators,
remediation}`` beside the list format, with the same strict, line-aware refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from healing_guard.directives import CLEANUPS
from healing_guard.patterns import Matcher, Pattern, PatternError, load_library, parse_library
from healing_guard.patterns.library import PATTERN_CATEGORIES
from healing_guard.patterns.named import (INFERRED_CONFIDENCE, NAME_CONFIDENCE, NAME_WORDS, TEST_CATEGORIES, VOCABULARY,
                                          Remediation, pattern_remedies)
from healing_guard.remediate.actions import RERUN_ACTIONS
from healing_guard.remediate.strategies import STRATEGIES


def write(tmp_path: Path, text: str, name: str = "team.yml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


NAMED = """\
patterns:
  slow_poll:
    regex: "(poll deadline|gave up waiting)"
    indicators:
      - "assertion failed after \\\\d+ms"
    remediation:
      - increase_timeout: 3x
      - add_retry_logic: true
  disk_pressure:
    indicators: ["no space left on device", "disk quota exceeded"]
    remediation:
      - cleanup_artifacts: true
      - prune_docker
      - expand_volume: "+10GB"
"""

LISTED = """\
patterns:
  - id: team.quota
    category: rate_limit
    regex: 'deploy quota exceeded'
    remediation: Wait for tomorrow.
"""


def load(tmp_path: Path, text: str) -> dict[str, Pattern]:
    return {p.id: p for p in load_library([write(tmp_path, text)], include_builtin=False)}


# --- what a named file becomes -------------------------------------------------------------------

def test_named_patterns_become_namespaced_caseless_patterns(tmp_path: Path) -> None:
    lib = {p.id: p for p in load_library([write(tmp_path, NAMED)], include_builtin=False)}
    assert list(lib) == ["user.slow_poll", "user.slow_poll.0", "user.disk_pressure.0", "user.disk_pressure.1"]
    poll, poll0 = lib["user.slow_poll"], lib["user.slow_poll.0"]
    assert poll.regex == "(poll deadline|gave up waiting)" and poll0.regex == r"assertion failed after \d+ms"
    assert poll.category == poll0.category == "test_timeout"
    assert poll.confidence == INFERRED_CONFIDENCE == 0.8
    assert poll.caseless and poll0.caseless
    assert poll.remedy == poll0.remedy == Remediation(
        pattern="user.slow_poll", action=None, parameters=(("timeout_factor", 3.0),),
        advice=(VOCABULARY["add_retry_logic"].advice,))
    assert poll.remediation == ("rerun with a 3x test timeout; for the author: "
                                + VOCABULARY["add_retry_logic"].advice)
    disk = lib["user.disk_pressure.1"]
    assert disk.category == "disk_full" and disk.regex == "disk quota exceeded"
    assert disk.remedy is not None and disk.remedy.action == "cleanup_retry"
    # cleanups add up, in the order written, each once
    assert disk.remedy.params() == {"cleanup": ["git clean -ffdx", "docker system prune -af", "rm -rf ~/.cache"]}
    assert disk.remedy.notes == ("the guard cannot grow a job's disk (+10GB asked); hosted runners have fixed "
                                 "disks: cleaning up instead",)
    assert set(pattern_remedies(lib.values())) == set(lib)


def test_named_patterns_match_in_any_case(tmp_path: Path) -> None:
    m = Matcher(load_library([write(tmp_path, NAMED)], include_builtin=False), cache_dir=None)
    hits = m.match(["ok", "write /out: No Space Left On Device", "Assertion failed after 120ms", "DISK quota"])
    assert [(h.index, h.pattern.id) for h in hits] == [(1, "user.disk_pressure.0"), (2, "user.slow_poll.0")]
    sensitive = NAMED.replace('    indicators: ["no space', '    caseless: false\n    indicators: ["no space')
    m = Matcher(load_library([write(tmp_path, sensitive)], include_builtin=False), cache_dir=None)
    assert [h.pattern.id for h in m.match(["No Space Left On Device", "no space left on device"])] == [
        "user.disk_pressure.0"]


def test_the_list_format_is_unchanged_and_both_formats_load_together(tmp_path: Path) -> None:
    named, listed = write(tmp_path, NAMED, "named.yml"), write(tmp_path, LISTED, "listed.yml")
    builtin = {p.id for p in load_library()}
    lib = {p.id: p for p in load_library([named, listed])}
    assert len(lib) == len(builtin) + 5
    quota = lib["team.quota"]
    assert (quota.category, quota.confidence, quota.caseless, quota.remediation, quota.remedy) == (
        "rate_limit", 0.8, False, "Wait for tomorrow.", None)
    assert not any(i.startswith("user.") for i in builtin)  # the namespace cannot collide with a built-in
    # loading the same files again gives the same patterns (parsed once per text)
    assert load_library([named, listed]) == list(lib.values())


@pytest.mark.parametrize(("entry", "category"), [
    ("increase_timeout: 2x", "test_timeout"),
    ("increase_memory: 2", "oom"),
    ("retry_with_backoff: true", "network"),
    ("clear_cache: true", "cache_corruption"),
    ("rebuild_without_cache: true", "docker_registry"),
    ("cleanup_artifacts: true", "disk_full"),
    ("prune_docker: true", "disk_full"),
    ("expand_volume: 20G", "disk_full"),
    ("mock_external_services: true", "network"),
    ("add_circuit_breaker: true", "network"),
])
def test_the_category_follows_from_the_remediation(tmp_path: Path, entry: str, category: str) -> None:
    lib = load(tmp_path, f"patterns:\n  thing:\n    regex: 'boom'\n    remediation:\n      - {entry}\n")
    p = lib["user.thing"]
    assert (p.category, p.confidence) == (category, INFERRED_CONFIDENCE)


def test_failing_that_the_name_then_an_explicit_category(tmp_path: Path) -> None:
    lib = load(tmp_path, "patterns:\n  registry_hiccup:\n    regex: 'x'\n    remediation: [add_retry_logic]\n")
    p = lib["user.registry_hiccup"]
    assert (p.category, p.confidence) == ("docker_registry", NAME_CONFIDENCE)
    lib = load(tmp_path, "patterns:\n  registry_hiccup:\n    category: network\n    regex: 'x'\n"
                         "    confidence: 0.9\n    remediation: [retry_with_backoff]\n")
    p = lib["user.registry_hiccup"]
    assert (p.category, p.confidence) == ("network", 0.9)
    assert NAME_CONFIDENCE < 0.75  # below the lowest automatic gate: a guessed category is never acted on


# --- refusals: file, line, key, reason ------------------------------------------------------------

HEAD = "patterns:\n  timing_sensitive:\n"


@pytest.mark.parametrize(("body", "line", "key", "reason"), [
    # regexes: every check the list format makes
    ('    regex: "(timeout|deadline"\n', 3, "patterns.timing_sensitive.regex", "not a valid regular expression"),
    ('    indicators:\n      - "ok"\n      - "failed after (\\\\d+)+$"\n    remediation: [increase_timeout]\n',
     5, "patterns.timing_sensitive.indicators[1]", "nested unbounded quantifiers"),
    ('    regex: "(a)\\\\1"\n', 3, "patterns.timing_sensitive.regex", "back-references"),
    ('    regex: "foo(?=bar)"\n', 3, "patterns.timing_sensitive.regex", "look-around"),
    ('    regex: "x{5000}"\n', 3, "patterns.timing_sensitive.regex", "repeat count 5000"),
    ('    regex: "(?:x|)"\n    remediation: [increase_timeout]\n', 3, "patterns.timing_sensitive.regex",
     "hyperscan refuses"),
    ('    indicators: "one"\n', 3, "patterns.timing_sensitive.indicators", "non-empty list"),
    ('    indicators: ["ok", ""]\n', 3, "patterns.timing_sensitive.indicators[1]", "non-empty string"),
    # remediation entries
    ('    regex: "x"\n    remediation:\n      - increase_timeout: 2x\n      - restart_the_world: true\n',
     6, "patterns.timing_sensitive.remediation[1]", "unknown remediation 'restart_the_world'; known: increase_timeout"),
    ('    regex: "x"\n    remediation:\n      - increase_timeout: 50x\n', 5,
     "patterns.timing_sensitive.remediation[0]", "at most 10"),
    ('    regex: "x"\n    remediation:\n      - increase_timeout: soon\n', 5,
     "patterns.timing_sensitive.remediation[0]", "a factor such as 2x"),
    ('    regex: "x"\n    remediation:\n      - prune_docker: yes please\n', 5,
     "patterns.timing_sensitive.remediation[0]", "true or false"),
    ('    regex: "x"\n    remediation:\n      - {prune_docker: true, cleanup_artifacts: true}\n', 5,
     "patterns.timing_sensitive.remediation[0]", "one 'key: value'"),
    ('    regex: "x"\n    remediation:\n      - prune_docker\n      - prune_docker\n', 6,
     "patterns.timing_sensitive.remediation[1]", "given twice"),
    ('    regex: "x"\n    remediation: increase the timeout\n', 4, "patterns.timing_sensitive.remediation",
     "must be a list"),
    ('    category: disk_full\n    regex: "x"\n    remediation:\n      - prune_docker\n'
     '      - rebuild_without_cache\n', 7, "patterns.timing_sensitive.remediation[1]", "one action"),
    # what a category cannot do
    ('    category: compilation_error\n    regex: "x"\n    remediation:\n      - clear_cache: true\n', 6,
     "patterns.timing_sensitive.remediation[0]", "a code failure is never rerun"),
    ('    category: test_failure\n    regex: "x"\n    remediation:\n      - prune_docker: true\n', 6,
     "patterns.timing_sensitive.remediation[0]", "failed tests are rerun only"),
    # the category
    ('    category: flaky\n    regex: "x"\n', 3, "patterns.timing_sensitive.category", "unknown category"),
    ('    regex: "x"\n    remediation:\n      - prune_docker\n      - mock_external_services\n', 2,
     "patterns.timing_sensitive", "several categories (prune_docker -> disk_full, mock_external_services -> network)"),
    # the shape
    ('    regex: "x"\n    colour: red\n', 4, "patterns.timing_sensitive.colour", "unknown key"),
    ('    remediation: [increase_timeout]\n', 2, "patterns.timing_sensitive", "needs a regex or indicators"),
    ('    regex: "x"\n    confidence: 2\n    remediation: [increase_timeout]\n', 4,
     "patterns.timing_sensitive.confidence", "between 0 and 1"),
    ('    regex: "x"\n    caseless: sometimes\n    remediation: [increase_timeout]\n', 4,
     "patterns.timing_sensitive.caseless", "true or false"),
])
def test_refusals_name_file_line_and_key(tmp_path: Path, body: str, line: int, key: str, reason: str) -> None:
    f = write(tmp_path, HEAD + body)
    with pytest.raises(PatternError) as ei:
        load_library([f], include_builtin=False)
    err = ei.value
    assert (err.file, err.line, err.key) == (str(f), line, key), str(err)
    assert reason in err.reason, err.reason
    assert str(err).startswith(f"{f}:{line}: {key}: ")


def test_an_undecidable_category_asks_for_category(tmp_path: Path) -> None:
    f = write(tmp_path, "patterns:\n  disk_ok:\n    regex: 'a'\n  mystery_thing:\n    regex: 'x'\n"
                        "    remediation:\n      - add_retry_logic: true\n")
    with pytest.raises(PatternError) as ei:
        load_library([f], include_builtin=False)
    assert (ei.value.line, ei.value.key) == (4, "patterns.mystery_thing")
    assert "cannot tell the category" in ei.value.reason and "add category:" in ei.value.reason
    # "ok" has no remediation and a name that says nothing either: refused the same way, first
    f = write(tmp_path, "patterns:\n  ok:\n    regex: 'a'\n")
    with pytest.raises(PatternError, match=r":2: patterns\.ok: cannot tell the category"):
        load_library([f], include_builtin=False)
    f = write(tmp_path, "patterns:\n  flaky-heap:\n    regex: 'a'\n")
    with pytest.raises(PatternError, match=r"several categories \(flaky -> test_failure, heap -> oom\)"):
        load_library([f], include_builtin=False)


def test_names_and_top_level_shapes(tmp_path: Path) -> None:
    with pytest.raises(PatternError) as ei:
        load_library([write(tmp_path, "patterns:\n  'bad.name':\n    regex: 'x'\n")], include_builtin=False)
    assert (ei.value.line, ei.value.key) == (2, "patterns.bad.name") and "letters, digits" in ei.value.reason
    with pytest.raises(PatternError) as ei:
        load_library([write(tmp_path, "patterns:\n  a_disk:\n    regex: 'x'\n  a_disk:\n    regex: 'y'\n")],
                     include_builtin=False)
    assert (ei.value.line, ei.value.key) == (4, "patterns.a_disk") and "duplicate key" in ei.value.reason
    with pytest.raises(PatternError) as ei:
        load_library([write(tmp_path, "patterns: 3\n")], include_builtin=False)
    assert ei.value.key == "patterns" and "or a mapping of named patterns" in ei.value.reason
    assert parse_library("patterns:\n  disk_full_now:\n    regex: 'x'\n")[0].category == "disk_full"


# --- the vocabulary stays within what the guard can do --------------------------------------------

def test_the_vocabulary_names_only_real_actions_cleanups_and_categories() -> None:
    for key, step in VOCABULARY.items():
        assert step.action is None or step.action in RERUN_ACTIONS, key
        assert step.category is None or step.category in PATTERN_CATEGORIES, key
        assert all(c in CLEANUPS for c in step.parameters.get("cleanup", ())), key
        assert step.action or step.factor or step.advice or step.value == "text", key
    assert set(NAME_WORDS.values()) <= set(PATTERN_CATEGORIES)
    assert set(TEST_CATEGORIES) <= set(PATTERN_CATEGORIES)
    # a category whose table answer is automatic takes every entry; the test categories are the flaky rule's
    assert not any(STRATEGIES[c].automatic for c in TEST_CATEGORIES)
