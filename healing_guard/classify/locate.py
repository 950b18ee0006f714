"""Where a job failed, for any log: the failing step's exit and the error lines just before it.

Whether or not a pattern names the cause, every CI platform says where the job stopped: GitHub Actions
``##[error]Process completed with exit code N``, GitLab ``ERROR: Job failed``, Jenkins ``script returned
exit code N``, CircleCI ``Exited with code``, Travis ``The command "..." exited with N``. The lines that
explain a failure are the error output just before that point (compiler diagnostics, a test framework's
failure summary, a stack trace, a package manager's error), not the runner's cleanup after it.

The matcher reports three kinds of marker hits for this (never evidence themselves): ``_exit`` (the
platform's failure line), ``_err`` (a line that says error, failed, exception, ...) and ``_detail`` (a
line in a format that starts a failure's details in many tools: ``file:line: message``, a numbered test
failure, an exception's first line, a linter's cross). :class:`Locator` keeps, in bounded state, the
first exit line, the last few error lines before it (not the build tools' "re-run with -X for more"
boilerplate) and the first detail lines of the step that failed (a step or a ``$ command`` starts
afresh; a failed test item and other details are kept apart, and the test item comes first), chunk by
chunk, so the worker's window and a whole-log read find the same lines. :func:`located_evidence` turns them into evidence lines, so a failed job's evidence
is never empty; the engine puts the detail lines right after the strongest pattern line, because the
first failure's details are where a person starts reading (on the hand-marked failure chunks of
``benchmarks/accuracy.py`` that ordering is what lifts located@3).

Pure: no Faust, Kafka or ClickHouse.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from healing_guard.patterns.library import (COMMAND_CATEGORY, DETAIL_CATEGORY, ERROR_CATEGORY, EXIT_CATEGORY,
                                            STEP_CATEGORY)
from healing_guard.patterns.matcher import Hit
from healing_guard.patterns.tokenize import tokenize

from .classifier import MAX_TEXT, EvidenceLine

__all__ = ["CONTEXT_KEPT", "DETAILS_KEPT", "ERRORS_KEPT", "LOCATED_CONTEXT", "LOCATED_DETAIL", "LOCATED_ERROR",
           "LOCATED_EXIT", "Locator", "failing_command", "located_evidence"]

#: error lines kept before the exit (the last ones: closest to where the job stopped)
ERRORS_KEPT = 6
#: detail lines kept: the first ones of the failing step (where its failure's details start)
DETAILS_KEPT = 2
#: pattern ids of located evidence (so a reader can tell them from library patterns)
LOCATED_DETAIL = "_locate.detail"
LOCATED_ERROR = "_locate.error"
LOCATED_EXIT = "_locate.exit"
LOCATED_CONTEXT = "_locate.context"
#: lines kept right before the exit
CONTEXT_KEPT = 2


class Locator:
    """The exit line and the error lines before it, as plain JSON data (it travels in the window)."""

    __slots__ = ("exit", "errors", "step", "context", "details")

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.exit: list[Any] | None = state.get("exit")  # [line, text] of the first failure line
        self.errors: list[list[Any]] = list(state.get("errors") or [])  # [[line, text], ...], in order
        self.step: list[Any] | None = state.get("step")  # [line, text] of the last command echoed before the exit
        #: [[line, text], ...]: the last lines right before the exit (what the step said as it stopped)
        self.context: list[list[Any]] = list(state.get("context") or [])
        #: [[line, text], ...]: the first detail lines since the last step or ``$ command`` started
        self.details: list[list[Any]] = list(state.get("details") or [])

    def to_dict(self) -> dict[str, Any]:
        return {"exit": self.exit, "errors": self.errors, "step": self.step, "context": self.context,
                "details": self.details}

    def observe(self, hits: Sequence[Hit], first_line_no: int,
                lines: Callable[[], Sequence[str]] | None = None, tail: Sequence[str] = ()) -> None:
        """Take one chunk's marker hits (any hits; others are ignored), in line order. ``lines`` gives
        the chunk's lines (asked for only when the exit is in this chunk); ``tail``: the log's last lines
        before this chunk, in case the exit is the chunk's first line."""
        exits = {h.index for h in hits if h.pattern.category == EXIT_CATEGORY}
        for h in hits:
            cat = h.pattern.category
            if cat == COMMAND_CATEGORY:
                if self.exit is None:
                    self.step = [first_line_no + h.index, tokenize(h.text)[:MAX_TEXT]]
                    if h.pattern.id != _TRACE:  # a new step's command (a script's `+ x` trace is not one)
                        self.details = []
            elif cat == STEP_CATEGORY:
                if self.exit is None:
                    self.details = []
            elif cat == DETAIL_CATEGORY:
                if self.exit is not None or h.index in exits:
                    continue
                kind = 0 if h.pattern.id in _TEST_ITEM else 1
                if sum(1 for d in self.details if _kind(d) == kind) >= DETAILS_KEPT:
                    continue
                line = first_line_no + h.index
                if any(d[0] == line for d in self.details):
                    continue
                text = tokenize(h.text)[:MAX_TEXT]
                if text.strip() and not _WARNING.search(text):  # a warning is not where it failed
                    self.details.append([line, text, kind])
            elif cat == EXIT_CATEGORY:
                if self.exit is None:
                    self.exit = [first_line_no + h.index, tokenize(h.text)[:MAX_TEXT]]
                    self._context(h.index, first_line_no, lines, tail)
            elif cat == ERROR_CATEGORY and self.exit is None and h.index not in exits:
                line = first_line_no + h.index
                if self.errors and self.errors[-1][0] == line:
                    continue
                text = tokenize(h.text)[:MAX_TEXT]
                if not text.strip() or _BOILERPLATE.search(text):
                    continue
                self.errors.append([line, text])
                if len(self.errors) > ERRORS_KEPT:
                    del self.errors[0]


    def _context(self, index: int, first_line_no: int, lines: Callable[[], Sequence[str]] | None,
                 tail: Sequence[str]) -> None:
        """The last non-empty lines before the exit at ``index`` of this chunk."""
        found: list[list[Any]] = []
        if lines is not None:
            chunk = lines()
            i = index - 1
            while i >= 0 and len(found) < CONTEXT_KEPT:
                text = tokenize(chunk[i][:4000])[:MAX_TEXT] if i < len(chunk) else ""
                if text.strip() and not _BOILERPLATE.search(text):
                    found.append([first_line_no + i, text])
                i -= 1
            if i < 0 and len(found) < CONTEXT_KEPT:  # the exit is near the chunk's start: the tail before it
                for j, text in enumerate(reversed(tail)):
                    if len(found) >= CONTEXT_KEPT:
                        break
                    if text.strip() and not _BOILERPLATE.search(text):
                        found.append([first_line_no - 1 - j, text[:MAX_TEXT]])
        self.context = list(reversed(found))


def located_evidence(state: dict[str, Any] | None) -> tuple[EvidenceLine, ...]:
    """The located lines as evidence, most telling first: where the failing step's details start, the
    last error line before the exit, then the earlier ones, then the exit line itself (the platform's
    word that the step failed)."""
    loc = Locator(state)
    details = sorted(loc.details, key=lambda d: (_kind(d), int(d[0])))  # a failed test item first
    out = [EvidenceLine(line=int(d[0]), text=str(d[1]), pattern=LOCATED_DETAIL, category="unknown", weight=0.0)
           for d in details]
    have = {e.line for e in out}
    out += [EvidenceLine(line=int(ln), text=str(text), pattern=LOCATED_ERROR, category="unknown", weight=0.0)
            for ln, text in reversed(loc.errors) if int(ln) not in have]
    have = {e.line for e in out}
    out += [EvidenceLine(line=int(ln), text=str(text), pattern=LOCATED_CONTEXT, category="unknown", weight=0.0)
            for ln, text in reversed(loc.context) if int(ln) not in have]
    if loc.exit is not None:
        out.append(EvidenceLine(line=int(loc.exit[0]), text=str(loc.exit[1]), pattern=LOCATED_EXIT,
                                category="unknown", weight=0.0))
    return tuple(out)


_TRACE = "_cmd.trace"
#: detail markers that name a failed test or check (a numbered failure, a ``[-]`` item, a cross, a test
#: runner's FAIL line): kept apart from the other details (a file:line diagnostic, an exception) and put
#: first, since a test run prints many exceptions of tests that pass or set up
_TEST_ITEM = frozenset({"_detail.numbered", "_detail.failed_item", "_detail.cross", "_detail.test"})


def _kind(detail: Sequence[Any]) -> int:
    """0 for a failed test item, 1 for another detail (state written before kinds were kept: 1)."""
    return int(detail[2]) if len(detail) > 2 else 1

_WARNING = re.compile(r"\bwarn(?:ing)?\b", re.IGNORECASE)
#: what build tools print after every failure, whatever failed (how to get more output, where help is,
#: how to resume): it says "error" but never why
_BOILERPLATE = re.compile(
    r"To see the full stack trace of the errors|Re-run Maven using the -X switch"
    r"|For more information about the errors and possible solutions|\[Help \d+\] https?://"
    r"|After correcting the problems, you can resume the build|mvn <args> -rf "
    r"|^\s*\* Try:|Run with --(?:stacktrace|info|debug|scan) option|Get more help at https://help\.gradle\.org"
    r"|A complete log of this run can be found in|^(?:\[ERROR\]|npm ERR!|ERROR:?)\s*$")

_COMMAND = (re.compile(r"^(?:##\[group\])?Run (.+)"), re.compile(r"^\+ (.+)"), re.compile(r"^\$ (.+)"),
            re.compile(r'The command "(.+)" (?:failed and )?exited with'))


def failing_command(state: dict[str, Any] | None) -> str | None:
    """The failing step's command, when the step's start or the exit line shows it."""
    loc = Locator(state)
    for item in (loc.exit, loc.step):  # Travis names the command in its exit line
        if item is None:
            continue
        for rx in _COMMAND:
            m = rx.search(str(item[1]))
            if m:
                return m.group(1)[:200]
    return None
