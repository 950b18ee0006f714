"""Offline analysis of log files: what ``guard analyze``, ``guard unknowns`` and ``guard learn`` run.

Glue between files and the pure pieces (matcher, analyzer, classifier, learner, strategy table). The
same path serves the accuracy benchmark, so what is measured is what users run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .classify.log_stream import Analysis, analyze_stream
from .classify.learner import LabelLearner
from .patterns.library import Pattern, load_library
from .patterns.matcher import Matcher
from .remediate.gate import packaged_thresholds
from .remediate.strategies import STRATEGIES
from .settings import Settings

__all__ = ["Analyzer", "FileResult", "STDIN"]

STDIN = "-"


@dataclass(frozen=True)
class FileResult:
    """One analysed file (or the reason it could not be read)."""

    file: str
    analysis: Analysis | None
    error: str | None = None


class Analyzer:
    """Settings-driven analysis of whole logs: one compiled matcher, the gate, the optional label model."""

    def __init__(self, settings: Settings, *, matcher: Matcher | None = None,
                 learner: LabelLearner | None = None) -> None:
        self.settings = settings
        self.matcher = matcher or Matcher(load_library(settings.pattern_files), markers=True)
        self.by_id: dict[str, Pattern] = {p.id: p for p in self.matcher.patterns}
        self.gate = {**packaged_thresholds(), **settings.auto_thresholds}
        if learner is None and settings.label_model:
            learner = LabelLearner.load(settings.label_model)
        self.learner = learner

    def analyze(self, fp: BinaryIO, *, exit_code: int | None = None, conclusion: str | None = None) -> Analysis:
        a = analyze_stream(fp, self.matcher, exit_code=exit_code, conclusion=conclusion,
                           threshold=self.settings.confidence_threshold)
        if self.learner is not None:
            d = self.learner.predict(a.diagnosis, exit_code, a.signature)
            if d is not a.diagnosis:
                from dataclasses import replace

                a = replace(a, diagnosis=d)
        return a

    def analyze_paths(self, paths: Sequence[str], *, exit_code: int | None = None,
                      conclusion: str | None = None) -> Iterator[FileResult]:
        """One result per path, in order; ``-`` is stdin. Unreadable files give an error result."""
        for p in paths:
            try:
                if p == STDIN:
                    a = self.analyze(sys.stdin.buffer, exit_code=exit_code, conclusion=conclusion)
                else:
                    with open(p, "rb") as fp:
                        a = self.analyze(fp, exit_code=exit_code, conclusion=conclusion)
            except OSError as exc:
                yield FileResult(p, None, f"cannot read: {exc.strerror or exc}")
                continue
            yield FileResult(p, a)

    def report(self, r: FileResult) -> dict[str, Any]:
        """The JSON object ``guard analyze --json`` prints for one file."""
        if r.analysis is None:
            return {"file": r.file, "error": r.error}
        a = r.analysis
        d = a.diagnosis
        st = STRATEGIES.get(d.category, STRATEGIES["unknown"])
        remediation = next((self.by_id[e.pattern].remediation for e in d.evidence
                            if e.pattern in self.by_id and self.by_id[e.pattern].remediation), None)
        gate = self.gate.get(d.category)
        automatic = st.automatic and gate is not None and d.confidence >= gate
        out: dict[str, Any] = {
            "file": r.file,
            "category": d.category,
            "confidence": d.confidence,
            "evidence": [{"line": e.line, "text": e.text, "pattern": e.pattern} for e in d.evidence],
            "remediation": remediation or st.why,
            "action": st.action if automatic or not st.automatic else "notify_oncall",
            "automatic": automatic,
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
