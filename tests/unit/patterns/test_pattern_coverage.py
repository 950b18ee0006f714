"""Coverage of the built-in pattern library: real tools' failure lines, per ecosystem and category.

The fixture (``fixtures/pattern_coverage.yml``) lists the lines tools print when a job fails, tagged with
the ecosystem and the category they prove, plus lines that healthy logs and code failures print and that
must never be read as a transient cause (those trigger automatic, paid retries). Every line goes through
the same path as a real log: wrapped in a few neutral lines, decorated like the platform would decorate it
(GitHub timestamps, ANSI colours), matched by one Hyperscan database and classified.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
import yaml

from healing_guard.classify import Diagnosis, classify, evidence_from_hits
from healing_guard.patterns import Matcher, load_library
from healing_guard.patterns.library import PATTERN_CATEGORIES
from healing_guard.remediate.gate import AUTOMATIC_CATEGORIES
from tests.support.paths import FIXTURES

FIXTURE = FIXTURES / "pattern_coverage.yml"
DOC: dict[str, Any] = yaml.safe_load(FIXTURE.read_text(encoding="utf-8"))
POSITIVES: list[dict[str, str]] = DOC["positives"]
NEGATIVES: list[str] = DOC["negatives"]

#: Categories whose diagnosis triggers an automatic retry or cleanup.
TRANSIENT = frozenset(AUTOMATIC_CATEGORIES)

#: Lines a job prints before its failure that no pattern may read.
NEUTRAL = [
    "Run ./ci/build.sh",
    "+ echo 'building app'",
    "building app",
    "Step 3/9 : WORKDIR /app",
    "Downloading https://files.example.com/app-1.0.tar.gz (12 kB)",
]

TS = "2024-05-06T07:08:09.1234567Z "
RED, RESET = "\x1b[31m", "\x1b[0m"

#: Every category (but unknown) must be proven by lines of at least this many ecosystems.
MIN_ECOSYSTEMS: dict[str, int] = {c: 3 for c in PATTERN_CATEGORIES}
MIN_ECOSYSTEMS.update({"test_timeout": 5, "test_failure": 6, "compilation_error": 6, "network": 8, "oom": 8,
                       "disk_full": 8, "rate_limit": 6, "docker_registry": 4, "infra_runner_lost": 4})


def _label(item: dict[str, str]) -> str:
    return f"{item['ecosystem']}-{item['category']}-{item['line'][:40]}"


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(load_library())


def diagnose(matcher: Matcher, line: str, *, style: str = "plain") -> Diagnosis:
    """The diagnosis of a small log ending in ``line``, decorated as ``style`` would decorate it."""
    raw = [*NEUTRAL, line]
    if style == "github":
        raw = [TS + ln for ln in raw]
        raw[-1] = TS + "##[error]" + line
    elif style == "ansi":
        raw = [*NEUTRAL, RED + line + RESET]
    ev = evidence_from_hits(matcher.match(raw), 1)
    return classify(ev, total_lines=len(raw))


def test_fixture_is_well_formed() -> None:
    assert len(POSITIVES) >= 150
    for item in POSITIVES:
        assert set(item) == {"ecosystem", "category", "line"}, item
        assert item["category"] in PATTERN_CATEGORIES, item
        assert item["line"].strip(), item
    assert len(NEGATIVES) >= 30
    lines = [p["line"] for p in POSITIVES] + NEGATIVES
    assert len(set(lines)) == len(lines), "duplicate fixture lines"


def test_neutral_lines_match_nothing(matcher: Matcher) -> None:
    assert matcher.match(NEUTRAL) == []


@pytest.mark.parametrize("item", POSITIVES, ids=_label)
def test_positive_line_is_diagnosed(matcher: Matcher, item: dict[str, str]) -> None:
    d = diagnose(matcher, item["line"])
    assert d.category == item["category"], (item, d.scores, [e.pattern for e in d.evidence])
    assert all(e.category == item["category"] for e in d.evidence)


@pytest.mark.parametrize("style", ["github", "ansi"])
def test_decoration_does_not_change_the_diagnosis(matcher: Matcher, style: str) -> None:
    # Anchored patterns are confirmed on the cleaned line: timestamps, ##[error] and colours are invisible.
    wrong = []
    for item in POSITIVES:
        d = diagnose(matcher, item["line"], style=style)
        if d.category != item["category"]:
            wrong.append((item["line"], d.category))
    assert wrong == []


@pytest.mark.parametrize("line", NEGATIVES)
def test_negative_line_is_not_transient(matcher: Matcher, line: str) -> None:
    for style in ("plain", "github"):
        d = diagnose(matcher, line, style=style)
        assert d.category not in TRANSIENT, (line, d.scores, [e.pattern for e in d.evidence])


def test_negatives_never_reach_the_automatic_gate(matcher: Matcher) -> None:
    # Even as supporting evidence next to each other, quoted or recovered transient words stay below
    # the confidence at which a retry would run by itself.
    ev = evidence_from_hits(matcher.match([*NEUTRAL, *NEGATIVES]), 1)
    d = classify(ev, total_lines=len(NEUTRAL) + len(NEGATIVES))
    assert d.category not in TRANSIENT or d.confidence < 0.85, (d.category, d.confidence, d.scores)


def test_every_category_is_covered_for_several_ecosystems() -> None:
    table: dict[str, set[str]] = defaultdict(set)
    for item in POSITIVES:
        table[item["category"]].add(item["ecosystem"])
    short = {c: sorted(table[c]) for c, n in MIN_ECOSYSTEMS.items() if len(table[c]) < n}
    assert short == {}, short


@pytest.mark.parametrize(
    "ecosystem",
    ["python", "javascript", "java", "go", "rust", "cpp", "ruby", "dotnet", "docker", "kubernetes",
     "github_actions", "gitlab_ci", "jenkins", "circleci"],
)
def test_every_ecosystem_has_its_failure_modes(ecosystem: str) -> None:
    cats = {p["category"] for p in POSITIVES if p["ecosystem"] == ecosystem}
    assert len(cats) >= 5, (ecosystem, sorted(cats))
