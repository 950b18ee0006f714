"""Streaming analysis of whole logs: any split of the bytes gives the same answer, in bounded memory."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healing_guard.classify.log_stream import LogAnalyzer, analyze_stream
from healing_guard.patterns import Matcher, load_library

LOG = (
    b"2024-05-06T07:08:09.1234567Z ##[group]Run npm ci\n"
    b"2024-05-06T07:08:10.1234567Z npm WARN deprecated x@1.0.0\n"
    + b"2024-05-06T07:08:11.1234567Z added 1 package in 3s\n" * 40
    + b"2024-05-06T07:08:12.1234567Z \x1b[31mnpm ERR!\x1b[0m code ECONNRESET\n"
    b"2024-05-06T07:08:12.1234567Z npm ERR! network aborted while fetching https://registry.npmjs.org/x "
    b"token=ghp_abcdefghijklmnopqrstuvwxyz0123456789\n"
    b"2024-05-06T07:08:13.1234567Z ##[error]Process completed with exit code 1.\n"
)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(load_library())


def test_diagnosis_with_line_numbers_and_redaction(matcher: Matcher) -> None:
    a = analyze_stream(io.BytesIO(LOG), matcher)
    assert a.total_lines == LOG.count(b"\n")
    d = a.diagnosis
    assert d.category == "network"
    lines = LOG.split(b"\n")
    for e in d.evidence:
        assert e.line >= 1
        raw = lines[e.line - 1].decode()
        assert e.text.split()[0] in raw  # the evidence line number points at the line it quotes
    assert not any("ghp_" in e.text for e in d.evidence)
    assert all("2024-05-06" not in e.text for e in d.evidence)  # cleaned


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(LOG)), max_size=12), st.integers(min_value=16, max_value=4096))
def test_any_split_and_block_size_gives_the_same_result(cuts: list[int], block: int) -> None:
    matcher = _MATCHER
    whole = analyze_stream([LOG], matcher)
    pieces = [LOG[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(LOG)])]
    split = analyze_stream(pieces, matcher, block_bytes=block)
    assert split.total_lines == whole.total_lines
    assert split.diagnosis == whole.diagnosis


_MATCHER = Matcher(load_library())


def test_last_line_without_newline_and_empty_log(matcher: Matcher) -> None:
    a = analyze_stream([b"ok\nNo space left on device"], matcher)
    assert a.total_lines == 2 and a.diagnosis.category == "disk_full"
    assert a.diagnosis.evidence[0].line == 2
    empty = analyze_stream([], matcher)
    assert empty.total_lines == 0 and empty.diagnosis.category == "unknown" and empty.signature is None


def test_over_long_line_is_cut_but_counted(matcher: Matcher) -> None:
    a = LogAnalyzer(matcher, max_line_bytes=1000, block_bytes=4096)
    a.feed(b"start\n" + b"x" * 3000)
    a.feed(b"y" * 5000 + b" No space left on device (hidden past the cut)\n")  # the tail of the long line
    a.feed(b"z" * 2500 + b"\nfatal: unable to access 'https://github.com/o/r.git/': Could not resolve host: github.com\n")
    res = a.finish()
    assert res.total_lines == 4
    assert res.truncated_lines == 2
    assert res.diagnosis.category == "network"
    assert [e.line for e in res.diagnosis.evidence] == [4]


def _fifty_mb_line() -> Iterator[bytes]:
    yield b"Downloading "
    block = b"#" * (1 << 20)
    for _ in range(50):
        yield block
    yield b"\nError: ENOSPC: no space left on device, write\n"


def test_fifty_megabyte_single_line_in_bounded_memory(matcher: Matcher) -> None:
    tracemalloc.start()
    try:
        a = analyze_stream(_fifty_mb_line(), matcher)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert a.total_lines == 2 and a.truncated_lines == 1
    assert a.diagnosis.category == "disk_full" and a.diagnosis.evidence[0].line == 2
    assert peak < 12 << 20, f"peak {peak / 2**20:.1f} MiB"


def _hundred_mb_log() -> Iterator[bytes]:
    block = (b"2024-05-06T07:08:11.1234567Z [INFO] Building module 42 of 97 ... ok\n" * 15_000)
    sent = 0
    while sent < 100 << 20:
        yield block
        sent += len(block)
    yield b"2024-05-06T07:08:12.1234567Z java.lang.OutOfMemoryError: Java heap space\n"


def test_hundred_megabyte_log_in_bounded_memory(matcher: Matcher) -> None:
    tracemalloc.start()
    try:
        a = analyze_stream(_hundred_mb_log(), matcher)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert a.bytes_read >= 100 << 20
    assert a.total_lines > 1_500_000
    assert a.diagnosis.category == "oom"
    assert a.diagnosis.evidence[0].line == a.total_lines
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_feed_after_finish_is_refused(matcher: Matcher) -> None:
    a = LogAnalyzer(matcher)
    a.finish()
    with pytest.raises(RuntimeError):
        a.feed(b"x")


def test_step_markers_mark_the_failing_step_and_are_not_evidence() -> None:
    from healing_guard.classify import evidence_from_hits
    from healing_guard.classify.classifier import step_start

    m = Matcher(load_library(), markers=True)
    lines = ["2024-05-06T07:08:09.1Z ##[group]Run npm ci", "ok",
             "2024-05-06T07:08:10.1Z ##[group]Run npm test", "x",
             "section_start:1712345678:step_script\r\x1b[0KExecuting step", "[Pipeline] { (Build)"]
    hits = m.match(lines)
    assert step_start(hits, 101) == 106
    assert evidence_from_hits(hits, 101) == []
    assert "_step" not in m.categories()


def test_the_failing_step_counts_as_the_end_of_the_log() -> None:
    from healing_guard.classify import EvidenceLine, classify

    early = EvidenceLine(100, "npm WARN network ECONNRESET, retried", "n", "network", 0.7)
    failing = EvidenceLine(300, "FAIL src/a.test.js", "t", "test_failure", 0.7)
    # 700 lines of post-job cleanup follow the failing step, which starts at line 250
    without = classify([early, failing], total_lines=1000)
    with_step = classify([early, failing], total_lines=1000, step=250)
    assert with_step.category == "test_failure" and with_step.confidence == 0.7
    # without step markers the failing line is far from the end and too weak to decide
    assert without.category == "unknown" and dict(without.scores)["test_failure"] < 0.5


def test_analyzer_uses_step_markers() -> None:
    m = Matcher(load_library(), markers=True)
    log = (b"2024-05-06T07:08:09.1Z ##[group]Run ./lint.sh\n"
           b"2024-05-06T07:08:09.1Z src/app.py:3:1: E302 expected 2 blank lines, found 1\n"
           + b"2024-05-06T07:08:10.1Z Post job cleanup: removing /tmp/cache/file\n" * 900)
    with_markers = analyze_stream([log], m)
    plain = analyze_stream([log], Matcher(load_library()))
    assert with_markers.diagnosis.category == plain.diagnosis.category == "lint_style"
    assert with_markers.diagnosis.confidence > plain.diagnosis.confidence
