"""Log files through the engine: what ``guard analyze``, ``guard unknowns`` and ``guard learn`` run.

Glue between files and the engine (:class:`~healing_guard.engine.Engine`): each file is read as the
worker's window would hold the same log, diagnosed by the engine's ``diagnose`` and given the command the
worker's planner would send for it (``decide`` on a fresh budget), so ``guard analyze`` says what the
worker would do. The same path serves the accuracy benchmark, so what is measured is what users run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .classify.log_stream import Analysis
from .engine import Decision, Engine, offline_job
from .engine.window import Ready
from .patterns.library import Pattern
from .patterns.matcher import Matcher
from .remediate import Ledger
from .remediate.actions import is_automatic
from .schemas import JobEvent
from .settings import Settings

if TYPE_CHECKING:
    from .classify.learner import LabelLearner

__all__ = ["Analyzer", "FileResult", "STDIN"]

STDIN = "-"


@dataclass(frozen=True)
class FileResult:
    """One analysed file (or the reason it could not be read)."""

    file: str
    analysis: Analysis | None
    error: str | None = None
    ready: Ready | None = None  # what the engine diagnosed (None: not read)


class Analyzer:
    """Whole log files through the engine (one compiled matcher, the gate, the optional label model)."""

    def __init__(self, settings: Settings, *, matcher: Matcher | None = None,
                 learner: LabelLearner | None = None, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or Engine(settings, matcher)
        if learner is not None:
            self.engine.learner = learner
        self.matcher = self.engine.matcher
        self.by_id: dict[str, Pattern] = {p.id: p for p in self.matcher.patterns}

    @property
    def learner(self) -> LabelLearner | None:
        return self.engine.learner

    def read(self, fp: BinaryIO, job: JobEvent) -> tuple[Ready, Analysis]:
        return self.engine.read_log(fp, job)

    def analyze(self, fp: BinaryIO, *, exit_code: int | None = None, conclusion: str | None = None,
                job_id: str = "local", duration_minutes: float | None = None) -> Analysis:
        return self.read(fp, offline_job(job_id, exit_code=exit_code, conclusion=conclusion,
                                         duration_minutes=duration_minutes))[1]

    def analyze_paths(self, paths: Sequence[str], *, exit_code: int | None = None,
                      conclusion: str | None = None, duration_minutes: float | None = None) -> Iterator[FileResult]:
        """One result per path, in order; ``-`` is stdin. Unreadable files give an error result."""
        for p in paths:
            job = offline_job(Path(p).name if p != STDIN else "stdin", exit_code=exit_code, conclusion=conclusion,
                              duration_minutes=duration_minutes)
            try:
                if p == STDIN:
                    ready, a = self.read(sys.stdin.buffer, job)
                else:
                    with open(p, "rb") as fp:
                        ready, a = self.read(fp, job)
            except OSError as exc:
                yield FileResult(p, None, f"cannot read: {exc.strerror or exc}")
                continue
            yield FileResult(p, a, ready=ready)

    def decide(self, ready: Ready, analysis: Analysis) -> Decision:
        """The command the worker would send for this failure on a fresh day's budget."""
        _, decision = self.engine.decide(ready, Ledger(), diagnosis=analysis.diagnosis)
        return decision

    def report(self, r: FileResult) -> dict[str, Any]:
        """The JSON object ``guard analyze --json`` prints for one file."""
        if r.analysis is None or r.ready is None:
            return {"file": r.file, "error": r.error}
        a = r.analysis
        d = a.diagnosis
        cmd = self.decide(r.ready, a).command
        remediation = next((self.by_id[e.pattern].remediation for e in d.evidence
                            if e.pattern in self.by_id and self.by_id[e.pattern].remediation), None)
        out: dict[str, Any] = {
            "file": r.file,
            "category": d.category,
            "confidence": round(d.confidence, 4),
            "learned": d.learned,  # the category came from the text model, not a pattern
            "evidence": [{"line": e.line, "text": e.text, "pattern": e.pattern} for e in d.evidence],
            "remediation": remediation or cmd.reason,
            "action": cmd.action,
            "automatic": is_automatic(cmd.action),
            "reason": cmd.reason,
            "parameters": cmd.parameters,
            "lines": a.total_lines,
        }
        if a.truncated_lines:
            out["truncated_lines"] = a.truncated_lines
        if a.signature is not None and d.category == "unknown":
            out["signature"] = a.signature
        return out


def read_labels(path: Path) -> list[tuple[str, str]]:
    """``file,category`` rows of a labels CSV (extra columns ignored)."""
    import csv

    from .schemas.records import CATEGORIES

    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"file", "category"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))} (need file,category)")
        out = []
        for i, row in enumerate(reader, 2):
            if row["category"] not in CATEGORIES:
                raise ValueError(f"{path}:{i}: category: unknown category {row['category']!r}")
            out.append((row["file"], row["category"]))
        return out
