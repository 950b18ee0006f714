"""Analyse a whole log from a byte stream in bounded memory: the engine behind ``guard analyze``.

Bytes go in as they arrive (a file read in blocks, stdin, an HTTP body); complete lines are scanned by
the matcher a block at a time, so memory holds one block, the bounded evidence and a short tail,
whatever the size of the log. A line longer than ``max_line_bytes`` (a minified bundle, a base64 blob,
a 50 MB progress bar) keeps its first ``max_line_bytes`` bytes and is still counted as one line, so line
numbers stay right.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from healing_guard.patterns import masks
from healing_guard.patterns.matcher import Matcher
from healing_guard.patterns.tokenize import tokenize_lines

from .classifier import Diagnosis, EvidenceLine, classify, evidence_from_hits, step_start
from .locate import Locator, failing_command, located_evidence
from .unknowns import signature_line

__all__ = ["Analysis", "CollectedLog", "LogAnalyzer", "analyze_stream", "keep_strongest"]

BLOCK_BYTES = 1 << 20
MAX_LINE_BYTES = 64 * 1024
#: the worker's limits (settings ``max_evidence`` / ``tail_lines``): the engine passes its own, so a whole
#: log read here keeps exactly the evidence the worker's window keeps for the same log
MAX_EVIDENCE = 64
TAIL_LINES = 20


def keep_strongest(evidence: list[Any], limit: int,
                   key: Callable[[Any], tuple[float, int]] = lambda e: (e.weight, e.line)) -> None:
    """Trim ``evidence`` (in line order) to ``limit`` lines in place: the strongest, and among equals the
    latest (the end of a log explains the failure). ``key`` gives an item's (weight, line): the worker's
    window keeps its evidence as dicts and trims it with this same rule."""
    if len(evidence) > limit:
        evidence.sort(key=key)
        del evidence[: len(evidence) - limit]
        evidence.sort(key=lambda e: key(e)[1])


@dataclass(frozen=True)
class CollectedLog:
    """What a whole log leaves for a diagnosis, before classification (the engine classifies)."""

    evidence: tuple[EvidenceLine, ...]
    total_lines: int
    truncated_lines: int
    bytes_read: int
    tail: tuple[str, ...]
    step_start: int | None
    located: tuple[EvidenceLine, ...] = ()  # where the job stopped and the error lines before it
    command: str | None = None  # the failing step's command, when the log shows it


@dataclass(frozen=True)
class Analysis:
    """What one log says: its diagnosis plus the facts about the log the diagnosis was made from."""

    diagnosis: Diagnosis
    total_lines: int
    truncated_lines: int  # lines longer than max_line_bytes, cut before matching
    bytes_read: int
    signature: str | None  # the templated line that best describes the failure (clusters unknowns)
    tail: tuple[str, ...] = field(default=())  # last lines, cleaned and redacted


class LogAnalyzer:
    """Feed bytes with :meth:`feed`, then :meth:`finish` once. Not thread-safe (shares the matcher)."""

    def __init__(
        self,
        matcher: Matcher,
        *,
        block_bytes: int = BLOCK_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_evidence: int = MAX_EVIDENCE,
        tail_lines: int = TAIL_LINES,
    ) -> None:
        if block_bytes < 1 or max_line_bytes < 1:
            raise ValueError("block_bytes and max_line_bytes must be >= 1")
        self.matcher = matcher
        self.block_bytes = block_bytes
        self.max_line_bytes = max_line_bytes
        self.max_evidence = max_evidence
        self._pending = bytearray()  # complete lines not scanned yet, plus the current partial line
        self._partial_start = 0  # where the unfinished last line starts in _pending
        self._skipping = False  # inside an over-long line: drop bytes until its newline
        self._lines_done = 0
        self._step: int | None = None  # where the last CI step starts (needs a Matcher with markers)
        self._locator = Locator()  # where the job stopped, and the error lines before it
        self._evidence: list[EvidenceLine] = []
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self.truncated_lines = 0
        self.bytes_read = 0
        self._finished = False
        self._masks: list[masks.Mask] = []  # values the log registered with ::add-mask:: (patterns/masks.py)

    # ------------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Take the next bytes of the log (any split: mid-line, mid-UTF-8 sequence, empty).

        No per-line Python work unless a line is over-long: the bytes are appended, and line lengths
        are only checked (split + max in C) when the piece is longer than ``max_line_bytes``.
        """
        if self._finished:
            raise RuntimeError("finish() was already called")
        self.bytes_read += len(data)
        if self._skipping:  # inside an over-long line: drop its rest
            nl = data.find(b"\n")
            if nl < 0:
                return
            data = data[nl + 1 :]
            self._skipping = False
        nl = data.rfind(b"\n")
        if nl < 0:
            self._pending += data
            self._cap_partial()
            return
        complete, rest = data[:nl], data[nl + 1 :]
        limit = self.max_line_bytes
        partial = len(self._pending) - self._partial_start
        if partial + len(complete) > limit:
            parts = complete.split(b"\n")
            if partial + len(parts[0]) > limit or max(map(len, parts)) > limit:
                cut: list[bytes] = []
                for i, part in enumerate(parts):
                    lim = limit - partial if i == 0 else limit
                    if len(part) > lim:
                        part = part[:lim]
                        self.truncated_lines += 1
                    cut.append(part)
                complete = b"\n".join(cut)
        self._pending += complete
        self._pending += b"\n"
        self._partial_start = len(self._pending)
        self._pending += rest
        self._cap_partial()
        if self._partial_start >= self.block_bytes:
            self._scan(self._partial_start)

    def _cap_partial(self) -> None:
        """Cut the unfinished last line at ``max_line_bytes`` and skip the rest of it."""
        if len(self._pending) - self._partial_start > self.max_line_bytes:
            del self._pending[self._partial_start + self.max_line_bytes :]
            self._pending += b"\n"
            self._partial_start = len(self._pending)
            self.truncated_lines += 1
            self._skipping = True

    def finish(
        self,
        *,
        exit_code: int | None = None,
        conclusion: str | None = None,
        threshold: float = 0.5,
    ) -> Analysis:
        """Scan what is left and classify the whole log (the engine's ``analyze_log`` classifies through
        its own ``diagnose`` instead, with the learned model; this is the rules alone)."""
        self._finish_scan()
        total = self._lines_done
        d = classify(self._evidence, total_lines=total, exit_code=exit_code, conclusion=conclusion,
                     threshold=threshold, step=self._step)
        sig = signature_line(d.evidence if d.category != "unknown" else self._evidence, tuple(self._tail))
        return Analysis(diagnosis=d, total_lines=total, truncated_lines=self.truncated_lines,
                        bytes_read=self.bytes_read, signature=sig, tail=tuple(self._tail))

    def collect(self) -> CollectedLog:
        """Scan what is left; the evidence, counts and tail, unclassified."""
        self._finish_scan()
        return CollectedLog(evidence=tuple(self._evidence), total_lines=self._lines_done,
                            truncated_lines=self.truncated_lines, bytes_read=self.bytes_read,
                            tail=tuple(self._tail), step_start=self._step,
                            located=located_evidence(self._locator.to_dict()),
                            command=failing_command(self._locator.to_dict()))

    def _finish_scan(self) -> None:
        if not self._finished:
            self._finished = True
            if len(self._pending) > self._partial_start:  # last line without a newline
                self._pending += b"\n"
                self._partial_start = len(self._pending)
            if self._partial_start:
                self._scan(self._partial_start)

    # ------------------------------------------------------------------------------------------
    def _scan(self, upto: int) -> None:
        """Scan the complete lines ``_pending[:upto]`` (which ends with a newline) and drop them."""
        buf = bytes(self._pending[: upto - 1])  # without the final newline: n lines, n-1 separators
        del self._pending[:upto]
        self._partial_start -= upto
        n_lines = buf.count(b"\n") + 1
        if b"::add-mask::" in buf:
            masks.learn(buf.decode("utf-8", "replace").split("\n"), self._masks)
        hits = self.matcher.scan(buf)
        if hits:
            self._step = step_start(hits, self._lines_done + 1) or self._step
            self._locator.observe(hits, self._lines_done + 1,
                                  lambda: masks.apply(buf.decode("utf-8", "replace").split("\n"), self._masks),
                                  tuple(self._tail))
            new = evidence_from_hits(hits, self._lines_done + 1)
            if self._masks:
                new = [replace(e, text=masks.apply([e.text], self._masks)[0]) for e in new]
            self._evidence.extend(new)
            keep_strongest(self._evidence, self.max_evidence)
        want = self._tail.maxlen or 0
        if want:  # the last lines of the block, without splitting the whole block
            # consecutive lines: a private key printed at the end of a block goes whole, body included
            last = masks.apply([raw.decode("utf-8", "replace") for raw in buf.rsplit(b"\n", want)[-want:]], self._masks)
            self._tail.extend(x[:500] for x in tokenize_lines(last))
        self._lines_done += n_lines


def analyze_stream(
    fp: BinaryIO | Iterable[bytes],
    matcher: Matcher,
    *,
    exit_code: int | None = None,
    conclusion: str | None = None,
    threshold: float = 0.5,
    read_bytes: int = BLOCK_BYTES,
    **kw: int,
) -> Analysis:
    """Analyse a binary file object (read in blocks) or an iterable of byte chunks."""
    a = LogAnalyzer(matcher, **kw)
    if hasattr(fp, "read"):
        while True:
            data = fp.read(read_bytes)
            if not data:
                break
            a.feed(data)
    else:
        for data in fp:
            a.feed(data)
    return a.finish(exit_code=exit_code, conclusion=conclusion, threshold=threshold)
