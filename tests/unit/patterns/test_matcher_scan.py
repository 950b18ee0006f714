"""The matcher on raw lines: platform decoration, ANSI, CRLF and line confinement, against "clean, then re"."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healing_guard.patterns import Matcher, Pattern, clean
from healing_guard.patterns.matcher import line_form


def pat(pid: str, regex: str, category: str = "network", caseless: bool = False) -> Pattern:
    return Pattern(id=pid, category=category, regex=regex, confidence=0.8, caseless=caseless)


PATTERNS = [
    pat("anch", r"^npm ERR! code (?:ECONNRESET|ETIMEDOUT)"),
    pat("maven", r"^\[ERROR\] Failed to execute goal"),
    pat("space", r"No space\s+left on device"),
    pat("neg", r"error: [^;]+; exit"),
    pat("end", r"\d+ failing$"),
    pat("ci", r"rate limit exceeded", caseless=True),
]


@pytest.fixture(scope="module")
def m() -> Matcher:
    return Matcher(PATTERNS)


@pytest.mark.parametrize(
    "raw",
    [
        "2024-05-06T07:08:09.1234567Z npm ERR! code ECONNRESET",
        "2024-05-06T07:08:09.1234567Z ##[error]npm ERR! code ECONNRESET",
        "[Pipeline] npm ERR! code ETIMEDOUT",
        "[2024-05-06T07:08:09.123Z] npm ERR! code ECONNRESET",
        "section_start:1712345678:step_script\r\x1b[0Knpm ERR! code ECONNRESET",
        "\x1b[31mnpm ERR!\x1b[0m code \x1b[1mECONNRESET\x1b[0m",
        "12:34:56 npm ERR! code ECONNRESET",
    ],
)
def test_anchored_pattern_matches_through_platform_decoration(m: Matcher, raw: str) -> None:
    hits = m.match(["neutral line", raw, "another"])
    assert [(h.index, h.pattern.id) for h in hits] == [(1, "anch")]
    assert "npm ERR!" in clean(hits[0].text)


def test_anchor_still_anchors(m: Matcher) -> None:
    # dropping `^` for Hyperscan widens the candidates; the check on the cleaned line narrows them back
    assert m.match(["echo npm ERR! code ECONNRESET", "x [ERROR] Failed to execute goal"]) == []


def test_maven_colour_codes_inside_the_message(m: Matcher) -> None:
    hits = m.match(["[\x1b[1;31mERROR\x1b[m] Failed to execute goal org.apache:x:1.0"])
    assert [h.pattern.id for h in hits] == ["maven"]


def test_whitespace_and_negated_classes_never_cross_lines(m: Matcher) -> None:
    assert m.match(["No space", "left on device", "error: a", "b; exit"]) == []
    assert [h.index for h in m.match(["x", "No space \t left on device"])] == [1]


def test_crlf_line_ends(m: Matcher) -> None:
    hits = m.match(["  3 failing\r", "ok\r"])
    assert [(h.index, h.pattern.id) for h in hits] == [(0, "end")]
    buf = b"a\r\n  2 failing\r\nb\r\n"
    assert [(h.index, h.pattern.id) for h in m.scan(buf)] == [(1, "end")]


def test_hit_text_is_the_raw_line_without_ansi(m: Matcher) -> None:
    hits = m.scan(b"first\n\x1b[33mAPI RATE LIMIT EXCEEDED\x1b[0m for token\nlast")
    assert [(h.index, h.text) for h in hits] == [(1, "API RATE LIMIT EXCEEDED for token")]


def test_bytes_that_are_not_utf8_are_scanned(m: Matcher) -> None:
    hits = m.scan(b"\xff\xfe garbage\nNo space left on device \xc3\x28\n")
    assert [h.index for h in hits] == [1]


@pytest.mark.parametrize(
    ("regex", "confined"),
    [
        (r"a\s+b", r"a[\t\x0b\x0c\r ]+b"),
        (r"a[^x]b", r"a[^x\n]b"),
        (r"a[\s,]b", r"a[\t\x0b\x0c\r ,]b"),
        (r"^a$", r"a$"),
        (r"\D\W", r"[^0-9\n][^0-9A-Za-z_\n]"),
    ],
)
def test_line_form(regex: str, confined: str) -> None:
    assert line_form(regex)[0] == confined


def test_line_form_reports_what_it_cannot_confine() -> None:
    assert line_form(r"a\nb")[1] is True
    assert line_form(r"[\x00-\x7f]+")[1] is True
    assert line_form(r"^x")[1] is True  # anchored: checked on the cleaned line
    assert line_form(r"a\s+b")[1] is False
    assert line_form(r"[\^x]")[1] is False  # an escaped caret is not an anchor


# Property: on arbitrary decorated lines the matcher finds exactly what "clean the line, then
# re.search every pattern" finds (that is the contract patterns are written against).
_WORDS = ["npm ERR! code ECONNRESET", "[ERROR] Failed to execute goal", "No space left on device", "7 failing",
          "error: disk; exit", "Rate Limit Exceeded", "ok", "", "No space", "left", "echo npm ERR! code ETIMEDOUT"]
_DECOR = ["", "2024-05-06T07:08:09.1234567Z ", "##[error]", "[Pipeline] ", "\x1b[31m", "12:00:01 "]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_DECOR), st.sampled_from(_WORDS), st.sampled_from(["", "\r"])),
                max_size=30))
def test_same_hits_as_clean_then_re(lines: list[tuple[str, str, str]]) -> None:
    m = Matcher(PATTERNS, max_hits_per_pattern=1000)
    raw = [d + w + cr for d, w, cr in lines]
    got = {(h.index, h.pattern.id) for h in m.match(raw)}
    want = set()
    for i, line in enumerate(raw):
        c = clean(line)
        for p in PATTERNS:
            if re.search(p.regex, c, re.ASCII | (re.IGNORECASE if p.caseless else 0)):
                want.add((i, p.id))
    assert got == want


def test_hostile_user_regex_runs_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exponential for a backtracking engine on a near-miss line; both Hyperscan passes stay linear.
    Shown by the work done, not by a clock: Python's ``re`` never runs a user regex while matching, and
    the cleaned-line check runs at most once per line. (The time: benchmarks/goals.py.)"""
    import healing_guard.patterns.matcher as matcher_module

    m = Matcher([pat("evil", r"^(a+)+$"), pat("evil2", r"^(\w+\s?)*!$")])
    line = "2024-05-06T07:08:09.1234567Z " + "a" * 5000 + "b"

    class NoBacktracking:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"re.{name} called while matching")

    monkeypatch.setattr(matcher_module, "re", NoBacktracking())
    checked: list[int] = []
    check = m._check
    monkeypatch.setattr(m, "_check", lambda buf, pid, idx, off: checked.append(idx) or check(buf, pid, idx, off))
    assert {(h.index, h.pattern.id) for h in m.match([line, "aaaa", "word word x!"])} == {(1, "evil"), (2, "evil2")}
    assert len(checked) <= 2 * 3  # at most once per (pattern, line)
    checked.clear()
    assert m.match([line] * 200) == []
    assert len(checked) <= 2 * 200
