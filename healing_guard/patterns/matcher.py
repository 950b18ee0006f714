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

import hyperscan

from .library import Pattern, hs_flags

__all__ = ["Hit", "Matcher"]

# Regex pieces that can match a newline byte in Hyperscan even without DOTALL: negated classes, \s,
# \D, \W, explicit newline escapes, hex/octal escapes, (?s). A match of such a pattern may span two
# lines of the joined buffer, so its hits are re-checked against the single line (see Matcher.match).
_MAY_CROSS_LINES = re.compile(r"\[\^|\\[sDWnxvRXCpPe0-7cVNQ]|\(\?[a-zA-Z\-]*s|\n|\\\\")


@dataclass(frozen=True)
class Hit:
    """Pattern ``pattern`` matched line ``index`` (0-based, into the lines passed to ``match``)."""

    index: int
    pattern: Pattern


class Matcher:
    """One compiled Hyperscan database for a pattern library, plus its scratch space.

    Not thread-safe: the scratch space is allocated once and reused by every scan, which is what makes
    a scan cheap. Give each thread (each Faust worker is single-threaded) its own Matcher.

    ``max_hits_per_pattern`` bounds the work and output on pathological logs (a pattern matching every
    line of a million-line log): per pattern the first half of the budget and the most recent half are
    kept, because the start of a failure and the end of the log are both what a diagnosis needs.
    """

    def __init__(self, patterns: Sequence[Pattern], *, max_hits_per_pattern: int = 50) -> None:
        if max_hits_per_pattern < 1:
            raise ValueError("max_hits_per_pattern must be >= 1")
        self.patterns: tuple[Pattern, ...] = tuple(patterns)
        ids = [p.id for p in self.patterns]
        if len(set(ids)) != len(ids):
            raise ValueError("pattern ids must be unique")
        self.max_hits_per_pattern = max_hits_per_pattern
        self._verify = [bool(_MAY_CROSS_LINES.search(p.regex)) for p in self.patterns]
        self._db: hyperscan.Database | None = None
        self._scratch: hyperscan.Scratch | None = None
        if self.patterns:
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            try:
                db.compile(
                    expressions=[p.regex.encode("utf-8") for p in self.patterns],
                    ids=list(range(len(self.patterns))),
                    elements=len(self.patterns),
                    flags=[hs_flags(p) for p in self.patterns],
                )
            except hyperscan.error as exc:
                raise ValueError(f"the pattern library does not compile as one database: {exc}") from None
            self._db = db
            self._scratch = hyperscan.Scratch(db)

    def categories(self) -> set[str]:
        """Categories some pattern can produce (lets callers tell "no evidence possible" apart)."""
        return {p.category for p in self.patterns}

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

        Lines should be cleaned (see :func:`~healing_guard.patterns.tokenize.clean`) so platform
        decoration does not hide messages from anchored patterns.
        """
        if self._db is None or not lines:
            return []
        buf = self._buffer(lines)
        n_pat = len(self.patterns)
        head_cap = (self.max_hits_per_pattern + 1) // 2
        tail_cap = self.max_hits_per_pattern - head_cap
        heads: list[list[int]] = [[] for _ in range(n_pat)]
        tails: list[deque[int]] = [deque(maxlen=tail_cap) for _ in range(n_pat)]
        last_line = [-1] * n_pat
        verify = self._verify
        # Candidates of newline-capable patterns, bounded the same way (with slack for the ones the
        # single-line check will drop) so a pathological log cannot cause unbounded rescans.
        cand_heads: dict[int, list[tuple[int, int]]] = {}
        cand_tails: dict[int, deque[tuple[int, int]]] = {}
        cand_head_cap = 4 * head_cap
        cand_tail_cap = 4 * tail_cap
        # Line of the last reported offset: Hyperscan reports matches in increasing end offset, so
        # counting newlines since the previous match costs O(buffer) in total, not per match.
        cursor = [0, 0]  # [byte offset, newlines before it]
        count = buf.count

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
            if verify[pid]:
                ch = cand_heads.setdefault(pid, [])
                if len(ch) < cand_head_cap:
                    ch.append((idx, off))
                elif cand_tail_cap:
                    cand_tails.setdefault(pid, deque(maxlen=cand_tail_cap)).append((idx, off))
                return
            h = heads[pid]
            if len(h) < head_cap:
                h.append(idx)
            elif tail_cap:
                tails[pid].append(idx)

        self._db.scan(buf, match_event_handler=on_match, scratch=self._scratch)

        if cand_heads:
            pending = {pid: ch + list(cand_tails.get(pid, ())) for pid, ch in cand_heads.items()}
            self._confirm(buf, pending, heads, tails, head_cap, tail_cap)

        out: list[Hit] = []
        for pid in range(n_pat):
            idxs = sorted(set(heads[pid]))
            if tails[pid]:
                idxs += sorted({i for i in tails[pid] if i > idxs[-1]})
            if idxs:
                pat = self.patterns[pid]
                out.extend(Hit(i, pat) for i in idxs)
        out.sort(key=lambda h: (h.index, h.pattern.id))
        return out

    def _confirm(
        self,
        buf: bytes,
        pending: dict[int, list[tuple[int, int]]],
        heads: list[list[int]],
        tails: list[deque[int]],
        head_cap: int,
        tail_cap: int,
    ) -> None:
        """Keep only those hits of newline-capable patterns that also match their line alone.

        Rescanning one line with the same database is exact (same engine, same flags) and cheap, and
        it happens only for lines that already produced a candidate hit.
        """
        assert self._db is not None
        by_line: dict[int, tuple[int, set[int]]] = {}
        for pid, cands in pending.items():
            for idx, off in cands:
                entry = by_line.setdefault(idx, (off, set()))
                entry[1].add(pid)
        confirmed: dict[int, list[int]] = {}
        for idx in sorted(by_line):
            off, pids = by_line[idx]
            start = buf.rfind(b"\n", 0, off) + 1
            stop = buf.find(b"\n", off)
            if stop < 0:
                stop = len(buf)
            found: set[int] = set()

            def on_line(pid: int, _f: int, _t: int, _fl: int, _c: object, found: set[int] = found) -> None:
                found.add(pid)

            self._db.scan(buf[start:stop], match_event_handler=on_line, scratch=self._scratch)
            for pid in pids & found:
                confirmed.setdefault(pid, []).append(idx)
        for pid, idxs in confirmed.items():
            h = heads[pid]
            for idx in idxs:  # ascending: lines were visited in order
                if len(h) < head_cap:
                    h.append(idx)
                elif tail_cap:
                    tails[pid].append(idx)
