"""Find which lines of a log chunk match which library patterns, in one Hyperscan pass.

A worker sees every line of every failed job, so matching is the hot loop. All patterns live in one
Hyperscan block-mode database and a whole chunk is scanned as one buffer: the cost is then nearly
independent of the number of patterns, and Python pays one call per chunk plus one callback per match
rather than one call per line per pattern.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import hyperscan

from .hs_cache import DEFAULT_CACHE_DIR, compile_database

from .library import MARKER_CATEGORIES, STEP_MARKERS, Pattern, hs_flags
from .tokenize import clean, strip_ansi

__all__ = ["Hit", "MAX_HIT_TEXT", "Matcher", "line_form"]


#: Longest text kept per hit: evidence is truncated further downstream, this only bounds memory.
MAX_HIT_TEXT = 4000


# Escapes that may match a newline and that line_form() cannot confine: their hits are re-checked.
_UNSAFE_ESCAPES = frozenset("nxvRXCpPe01234567cVNQ")
_HSPACE = r"\t\x0b\x0c\r "  # \s without the newline


def line_form(regex: str) -> tuple[str, bool]:
    """The regex as Hyperscan scans it, and whether its hits must be checked on the cleaned line.

    The buffer the matcher scans is raw: lines still carry platform decoration (timestamps,
    ``##[error]``, ``[Pipeline]``, GitLab section markers) that :func:`~healing_guard.patterns.tokenize.clean`
    would strip, and cleaning every line in Python would cost more than the scan. So:

    * constructs that match a newline byte are confined to one line (``\\s`` loses ``\\n``, negated
      classes gain it), because many lines are scanned as one buffer;
    * every line anchor ``^`` is dropped, which can only widen what matches. Hits of such patterns
      are candidates: the matcher cleans just those lines and confirms them with Python's ``re`` and
      the original regex, i.e. exactly "clean, then match" — paid only where the automaton found one.

    What cannot be confined (``\\n``, hex escapes, ``(?s)``, ...) is reported the same way.
    """
    out: list[str] = []
    verify = "\n" in regex or bool(re.search(r"\(\?[a-zA-Z\-]*s", regex))
    i, n = 0, len(regex)
    while i < n:
        c = regex[i]
        if c == "\\":
            esc = regex[i + 1 : i + 2]
            if esc == "s":
                out.append("[" + _HSPACE + "]")
            elif esc == "D":
                out.append(r"[^0-9\n]")
            elif esc == "W":
                out.append(r"[^0-9A-Za-z_\n]")
            else:
                verify = verify or esc in _UNSAFE_ESCAPES
                out.append(regex[i : i + 2])
            i += 2
        elif c == "[":
            j = i + 1
            negated = j < n and regex[j] == "^"
            if negated:
                j += 1
            body_start = j
            if j < n and regex[j] == "]":
                j += 1
            while j < n and regex[j] != "]":
                if regex[j] == "\\":
                    j += 2
                elif regex.startswith("[:", j):
                    k = regex.find(":]", j + 2)
                    j = k + 2 if k >= 0 else j + 1
                else:
                    j += 1
            body = regex[body_start:j]
            if negated:
                out.append("[^" + body + r"\n]")
            else:
                body2 = body.replace(r"\s", _HSPACE)
                if re.search(r"\\[DWnxvRpP0-7c]|\[:(?:space|cntrl|print|graph):\]", body.replace("\\\\", "")):
                    verify = True
                out.append("[" + body2 + "]")
            i = j + 1
        elif c == "^":
            verify = True  # dropped here, checked on the cleaned line
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out), verify


@dataclass(frozen=True)
class Hit:
    """Pattern ``pattern`` matched line ``index`` (0-based, into the lines or buffer scanned).

    ``text`` is the raw line (ANSI escapes removed, otherwise as printed, at most MAX_HIT_TEXT
    characters): the caller cleans and redacts it before it leaves the worker.
    """

    index: int
    pattern: Pattern
    text: str = ""


class Matcher:
    """One compiled Hyperscan database for a pattern library, plus its scratch space.

    ``markers=True`` adds the step markers (:data:`~healing_guard.patterns.library.STEP_MARKERS`): their
    hits tell where the failing step starts and are never evidence.

    Not thread-safe: the scratch space is allocated once and reused by every scan, which is what makes
    a scan cheap. Give each thread (each Faust worker is single-threaded) its own Matcher.

    ``max_hits_per_pattern`` bounds the work and output on pathological logs (a pattern matching every
    line of a million-line log): per pattern the first half of the budget and the most recent half are
    kept, because the start of a failure and the end of the log are both what a diagnosis needs.

    ``cache_dir``: where compiled databases are kept by what they were compiled from (``hs_cache.py``), so
    a second process with the same library loads in milliseconds instead of compiling for seconds;
    ``None`` compiles every time.
    """

    def __init__(self, patterns: Sequence[Pattern], *, max_hits_per_pattern: int = 50, markers: bool = False,
                 cache_dir: Path | None = DEFAULT_CACHE_DIR) -> None:
        if max_hits_per_pattern < 1:
            raise ValueError("max_hits_per_pattern must be >= 1")
        self.patterns: tuple[Pattern, ...] = tuple(patterns) + (STEP_MARKERS if markers else ())
        ids = [p.id for p in self.patterns]
        if len(set(ids)) != len(ids):
            raise ValueError("pattern ids must be unique")
        self.max_hits_per_pattern = max_hits_per_pattern
        forms = [line_form(p.regex) for p in self.patterns]
        self._verify = [v for _, v in forms]
        # Patterns whose hits are checked on the cleaned line, in a second Hyperscan database of their
        # original regexes: the check is exact ("clean, then match") and, like the scan, linear in the
        # line (a hostile user regex cannot make it backtrack).
        checked = [i for i, v in enumerate(self._verify) if v]
        self._exact_db: hyperscan.Database | None = None
        self._exact_scratch: hyperscan.Scratch | None = None
        if checked:
            xdb = compile_database([self.patterns[i].regex.encode("utf-8") for i in checked], checked,
                                   [hs_flags(self.patterns[i]) for i in checked], cache_dir=cache_dir)
            self._exact_db = xdb
            self._exact_scratch = hyperscan.Scratch(xdb)
        self._cleaned: tuple[int, set[int]] = (-1, set())  # (line index, checked pids it matches)
        self._db: hyperscan.Database | None = None
        self._scratch: hyperscan.Scratch | None = None
        if self.patterns:
            try:
                db = compile_database([rx.encode("utf-8") for rx, _ in forms], list(range(len(self.patterns))),
                                      [hs_flags(p) for p in self.patterns], cache_dir=cache_dir)
            except hyperscan.error as exc:
                raise ValueError(f"the pattern library does not compile as one database: {exc}") from None
            self._db = db
            self._scratch = hyperscan.Scratch(db)

    def categories(self) -> set[str]:
        """Categories some pattern can produce (lets callers tell "no evidence possible" apart)."""
        return {p.category for p in self.patterns if p.category not in MARKER_CATEGORIES}

    @staticmethod
    def _buffer(lines: Sequence[str]) -> bytes:
        """Join lines into one UTF-8 buffer with exactly ``len(lines) - 1`` newline bytes.

        No per-line work on the common path: join, count and encode all run in C. Embedded newlines
        (a caller passing unsplit text) would shift line numbers, so they are replaced by spaces.
        Unencodable code points (lone surrogates) become '?' so any str can be scanned.
        """
        joined = "\n".join(lines)
        if joined.count("\n") != len(lines) - 1:
            joined = "\n".join(s.replace("\n", " ") for s in lines)
        return joined.encode("utf-8", "replace")

    def match(self, lines: Sequence[str]) -> list[Hit]:
        """Hits sorted by line index then pattern id; at most one per (line, pattern).

        Lines may be raw: ANSI escapes, timestamps and CI markers do not hide messages from anchored
        patterns (see :func:`line_form`).
        """
        if self._db is None or not lines:
            return []
        return self.scan(self._buffer(lines))

    def scan(self, buf: bytes) -> list[Hit]:
        """Hits in a buffer of newline-separated lines (UTF-8 or anything else: bytes are matched as
        bytes). Line ``index`` counts newline bytes before the match. This is the hot path: no
        per-line Python work, one Hyperscan pass, one callback per match, and a Python check only for
        candidate hits of patterns that need one (see :func:`line_form`)."""
        if self._db is None or not buf:
            return []
        buf = strip_ansi(buf)
        if b"\r" in buf:  # CRLF line ends: clean() drops the \r, and `$` must see the line end
            buf = buf.replace(b"\r\n", b"\n")
            if buf.endswith(b"\r"):
                buf = buf[:-1]
        n_pat = len(self.patterns)
        head_cap = (self.max_hits_per_pattern + 1) // 2
        tail_cap = self.max_hits_per_pattern - head_cap
        # per pattern, created on its first hit: a chunk hits a handful of the ~280 patterns, and
        # building 2 x 280 containers per call would cost more than the scan of a small chunk
        heads: dict[int, list[int]] = {}
        tails: dict[int, deque[int]] = {}
        last_line = [-1] * n_pat
        offsets: dict[int, int] = {}  # line index -> an offset inside that line
        verify = self._verify
        # Candidates past a full head: only the latest few are kept (with slack for the ones the check
        # drops) and checked at the end, so a pathological log cannot cause unbounded checks.
        cand_tails: dict[int, deque[tuple[int, int]]] = {}
        cand_tail_cap = 4 * tail_cap
        # Line of the last reported offset: Hyperscan reports matches in increasing end offset, so
        # counting newlines since the previous match costs O(buffer) in total, not per match.
        cursor = [0, 0]  # [byte offset, newlines before it]
        count = buf.count
        check = self._check

        def on_match(pid: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
            off = to - 1 if to > 0 else 0  # last byte of the match
            if off >= cursor[0]:
                cursor[1] += count(b"\n", cursor[0], off)
            else:  # out-of-order report: recount from the start (never expected, kept correct)
                cursor[1] = count(b"\n", 0, off)
            cursor[0] = off
            idx = cursor[1]
            if idx == last_line[pid]:
                return
            last_line[pid] = idx
            h = heads.get(pid)
            if h is None:
                h = heads[pid] = []
            if verify[pid]:
                if len(h) < head_cap:
                    if check(buf, pid, idx, off):
                        offsets[idx] = off
                        h.append(idx)
                elif cand_tail_cap:
                    cand_tails.setdefault(pid, deque(maxlen=cand_tail_cap)).append((idx, off))
                return
            offsets[idx] = off
            if len(h) < head_cap:
                h.append(idx)
            elif tail_cap:
                t = tails.get(pid)
                if t is None:
                    t = tails[pid] = deque(maxlen=tail_cap)
                t.append(idx)

        self._cleaned = (-1, set())
        self._db.scan(buf, match_event_handler=on_match, scratch=self._scratch)
        for pid, cands in cand_tails.items():
            kept: list[int] = []
            for idx, off in reversed(cands):
                if len(kept) >= tail_cap:
                    break
                if check(buf, pid, idx, off):
                    offsets[idx] = off
                    kept.append(idx)
            if kept:
                tails.setdefault(pid, deque(maxlen=tail_cap)).extend(reversed(kept))

        out: list[Hit] = []
        for pid in sorted(heads.keys() | tails.keys()):
            idxs = sorted(set(heads.get(pid, ())))
            tail = tails.get(pid)
            if tail:
                last = idxs[-1] if idxs else -1
                idxs += sorted({i for i in tail if i > last})
            if idxs:
                pat = self.patterns[pid]
                out.extend(Hit(i, pat, self._line_text(buf, offsets[i])) for i in idxs)
        out.sort(key=lambda h: (h.index, h.pattern.id))
        return out

    def _check(self, buf: bytes, pid: int, idx: int, off: int) -> bool:
        """Does pattern ``pid`` match line ``idx`` once cleaned? (Each line is cleaned and scanned once.)"""
        if self._cleaned[0] != idx:
            found: set[int] = set()
            if self._exact_db is not None:
                line = clean(self._line_text(buf, off)).encode("utf-8", "replace")

                def on_line(i: int, _f: int, _t: int, _fl: int, _c: object) -> None:
                    found.add(i)

                self._exact_db.scan(line, match_event_handler=on_line, scratch=self._exact_scratch)
            self._cleaned = (idx, found)
        return pid in self._cleaned[1]

    @staticmethod
    def _line_text(buf: bytes, off: int) -> str:
        start = buf.rfind(b"\n", 0, off) + 1
        stop = buf.find(b"\n", off)
        if stop < 0:
            stop = len(buf)
        stop = min(stop, start + MAX_HIT_TEXT * 4)
        return buf[start:stop].decode("utf-8", "replace")[:MAX_HIT_TEXT]
