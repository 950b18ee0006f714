"""Where a job failed, for any log: the failing step's exit and the error lines just before it.

Whether or not a pattern names the cause, every CI platform says where the job stopped: GitHub Actions
``##[error]Process completed with exit code N``, GitLab ``ERROR: Job failed``, Jenkins ``script returned
exit code N``, CircleCI ``Exited with code``, Travis ``The command "..." exited with N``. The lines that
explain a failure are the error output just before that point (compiler diagnostics, a test framework's
failure summary, a stack trace, a package manager's error), not the runner's cleanup after it.

The matcher reports two kinds of marker hits for this (never evidence themselves): ``_exit`` (the
platform's failure line) and ``_err`` (a line that says error, failed, exception, ...). :class:`Locator`
keeps, in bounded state, the first exit line and the last few error lines before it, chunk by chunk, so
the worker's window and a whole-log read find the same lines. :func:`located_evidence` turns them into
evidence lines, so a failed job's evidence is never empty.

Pure: no Faust, Kafka or ClickHouse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from healing_guard.patterns.library import ERROR_CATEGORY, EXIT_CATEGORY
from healing_guard.patterns.matcher import Hit
from healing_guard.patterns.tokenize import tokenize

from .classifier import MAX_TEXT, EvidenceLine

__all__ = ["ERRORS_KEPT", "LOCATED_ERROR", "LOCATED_EXIT", "Locator", "located_evidence"]

#: error lines kept before the exit (the last ones: closest to where the job stopped)
ERRORS_KEPT = 6
#: pattern ids of located evidence (so a reader can tell them from library patterns)
LOCATED_ERROR = "_locate.error"
LOCATED_EXIT = "_locate.exit"


class Locator:
    """The exit line and the error lines before it, as plain JSON data (it travels in the window)."""

    __slots__ = ("exit", "errors")

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.exit: list[Any] | None = state.get("exit")  # [line, text] of the first failure line
        self.errors: list[list[Any]] = list(state.get("errors") or [])  # [[line, text], ...], in order

    def to_dict(self) -> dict[str, Any]:
        return {"exit": self.exit, "errors": self.errors}

    def observe(self, hits: Sequence[Hit], first_line_no: int) -> None:
        """Take one chunk's marker hits (any hits; others are ignored), in line order."""
        exits = {h.index for h in hits if h.pattern.category == EXIT_CATEGORY}
        for h in hits:
            cat = h.pattern.category
            if cat == EXIT_CATEGORY:
                if self.exit is None:
                    self.exit = [first_line_no + h.index, tokenize(h.text)[:MAX_TEXT]]
            elif cat == ERROR_CATEGORY and self.exit is None and h.index not in exits:
                line = first_line_no + h.index
                if self.errors and self.errors[-1][0] == line:
                    continue
                text = tokenize(h.text)[:MAX_TEXT]
                if not text.strip():
                    continue
                self.errors.append([line, text])
                if len(self.errors) > ERRORS_KEPT:
                    del self.errors[0]


def located_evidence(state: dict[str, Any] | None) -> tuple[EvidenceLine, ...]:
    """The located lines as evidence, most telling first: the last error line before the exit, then the
    earlier ones, then the exit line itself (the platform's word that the step failed)."""
    loc = Locator(state)
    out = [EvidenceLine(line=int(ln), text=str(text), pattern=LOCATED_ERROR, category="unknown", weight=0.0)
           for ln, text in reversed(loc.errors)]
    if loc.exit is not None:
        out.append(EvidenceLine(line=int(loc.exit[0]), text=str(loc.exit[1]), pattern=LOCATED_EXIT,
                                category="unknown", weight=0.0))
    return tuple(out)
