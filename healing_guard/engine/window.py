"""Per-job window: assembles a job's log chunks in order and keeps only what a diagnosis needs.

Lines are matched as soon as their chunk is in order, so the state a job carries between messages is
small and bounded (evidence lines, a short tail, counters and a bounded set of out-of-order chunks),
whatever the log's size. The diagnosis itself happens when the job's completion event has arrived
and the log is complete, or when a grace period for missing chunks / test results has run out.

Shaped ``step(state, event) -> (state, outputs)``; no Faust, Kafka or ClickHouse here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..classify import EvidenceLine, evidence_from_hits
from ..classify.classifier import step_start
from ..classify.log_stream import keep_strongest
from ..classify.locate import Locator, failing_command, located_evidence
from ..patterns import masks
from ..patterns.matcher import Matcher
from ..patterns.tokenize import redact_job, redact_lines, tokenize_lines
from ..schemas import JobEvent, LogChunk, TestRisk


@dataclass
class JobWindow:
    job_key: str
    attempt: int = 1
    next_seq: int = 0
    lines_seen: int = 0
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    gaps: int = 0
    eof: bool = False
    evidence: list[dict[str, Any]] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    job: dict[str, Any] | None = None
    risks: list[dict[str, Any]] = field(default_factory=list)
    deadline: float | None = None
    waited_for_tests: bool = False
    partition: int = 0  # source partition, so deadline ticks return to the same worker
    touched: float = 0.0  # last update; a window never completed is dropped after Limits.window_ttl_seconds
    decided: bool = False  # this attempt is done: replayed messages of it must not decide it again
    step_start: int = 0  # line where the log's last CI step starts (0: no step marker seen)
    #: the automatic action taken on the previous attempt, [action, category]: how this attempt ends is
    #: how well that action worked (the planner learns from it)
    retried: list[str] | None = None
    #: where the job stopped and the error lines before it (classify/locate.py), bounded
    located: dict[str, Any] | None = None
    #: a decided marker's commands as sent (JSON text): sent again, same ids, when a message of this attempt
    #: is read again after a crash, since the marker may have reached its changelog while they did not
    resend: list[str] | None = None
    #: the same for the decision's facts (guard.facts): the warehouse drops a repeat (ReplacingMergeTree)
    resend_facts: list[str] | None = None
    #: values the job's log registered with ``::add-mask::``, as (length, digest): masked in its later lines
    #: (patterns/masks.py; never the value itself, the window is stored)
    masks: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # shallow on purpose (called after every chunk): the values are already plain JSON data
        d = {f.name: getattr(self, f.name) for f in _FIELDS}
        d["pending"] = {str(k): v for k, v in self.pending.items()}  # JSON object keys are strings
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobWindow:
        w = cls(**d)
        # JSON object keys come back as strings
        w.pending = {int(k): v for k, v in w.pending.items()}
        return w

    @property
    def completed(self) -> JobEvent | None:
        return JobEvent.from_dict(self.job) if self.job is not None else None

    def log_complete(self) -> bool:
        if self.eof and not self.pending:
            return True
        if self.job is not None and self.job.get("log_chunks") is not None:
            return self.next_seq >= int(self.job["log_chunks"]) and not self.pending
        return False


_FIELDS = dataclasses.fields(JobWindow)


@dataclass(frozen=True)
class Limits:
    max_pending_chunks: int = 256
    tail_lines: int = 20
    max_evidence: int = 64
    chunk_grace_seconds: float = 10.0
    test_grace_seconds: float = 2.0
    window_ttl_seconds: float = 6 * 3600.0


@dataclass(frozen=True)
class Ready:
    """A failed job whose log is assembled (or whose grace period ran out): diagnose it now."""

    job: JobEvent
    evidence: tuple[EvidenceLine, ...]
    total_lines: int
    log_complete: bool
    risks: tuple[TestRisk, ...]
    tail: tuple[str, ...]
    step_start: int | None = None  # line where the log's last CI step starts
    retried: tuple[str, str] | None = None  # (action, category) of the automatic action that led here
    #: where the job stopped and the error lines before it, as evidence (classify/locate.py)
    located: tuple[EvidenceLine, ...] = ()
    command: str | None = None  # the failing step's command, when the log shows it


@dataclass(frozen=True)
class Closed:
    """A job finished without needing a diagnosis (success, cancelled, skipped)."""

    job: JobEvent
    retried: tuple[str, str] | None = None  # (action, category) of the automatic action that led here


@dataclass(frozen=True)
class Expired:
    """A window whose job never completed (lost completion event, or late test results for a job
    already decided): dropped so that state stays bounded."""

    job_key: str
    lines: int


Output = Ready | Closed | Expired


def _reset_if_new_attempt(w: JobWindow, attempt: int) -> JobWindow:
    if attempt > w.attempt:
        # the next attempt after an automatic action: it will tell whether the action worked
        carried = w.retried if (w.decided and attempt == w.attempt + 1) else None
        return JobWindow(job_key=w.job_key, attempt=attempt, retried=carried)
    return w


def _consume_lines(w: JobWindow, chunk: dict[str, Any], matcher: Matcher, limits: Limits) -> None:
    lines: list[str] = chunk["lines"]  # raw: the matcher copes with decoration, hit lines get cleaned
    if w.masks:
        lines = masks.apply(lines, w.masks)
    first = chunk.get("first_line") or (w.lines_seen + 1)
    hits = matcher.match(lines)
    if hits:
        w.step_start = step_start(hits, first) or w.step_start
        if w.located is None or w.located.get("exit") is None:  # nothing changes once the exit is found
            loc = Locator(w.located)
            loc.observe(hits, first, lambda: lines, w.tail)
            w.located = loc.to_dict()
        new = evidence_from_hits(hits, first)
        # what dataclasses.asdict gives, without its deep copy (the values are immutable); every field, so
        # a field added to EvidenceLine is kept
        w.evidence.extend(dict(vars(e)) for e in new)
        keep_strongest(w.evidence, limits.max_evidence, key=lambda e: (e["weight"], e["line"]))
    if lines:
        # a tail is consecutive lines: a private key printed in it goes whole, body lines included
        # cut before redacting (a line may be megabytes; only 500 characters are kept), as evidence is
        tail = [x[:500] for x in tokenize_lines([x[:4000] for x in lines[-limits.tail_lines:]])]
        w.tail = (w.tail + tail)[-limits.tail_lines:]
    w.lines_seen = max(w.lines_seen, first - 1 + len(lines))
    w.next_seq = chunk["seq"] + 1
    if chunk.get("eof"):
        w.eof = True


def decided(job_key: str, attempt: int, partition: int, now: float,
            acted: tuple[str, str] | None = None, resend: list[str] | None = None,
            resend_facts: list[str] | None = None) -> JobWindow:
    """What stays of a window once its attempt is decided: a marker, dropped after the TTL. ``acted``:
    the automatic (action, category) taken on this attempt, carried to the next attempt; ``resend`` /
    ``resend_facts``: the commands and facts sent for it (JSON text), to send again when this attempt's
    messages are read again."""
    return JobWindow(job_key=job_key, attempt=attempt, decided=True, touched=now, partition=partition,
                     retried=list(acted) if acted else None, resend=resend or None,
                     resend_facts=resend_facts or None)


def on_chunk(w: JobWindow, chunk: LogChunk, matcher: Matcher, limits: Limits, now: float) -> tuple[JobWindow, list[Output]]:
    w = _reset_if_new_attempt(w, chunk.attempt)
    if w.decided or chunk.attempt < w.attempt or chunk.seq < w.next_seq or chunk.seq in w.pending:
        return w, []  # stale attempt or duplicate delivery: already counted
    if masks.learn(chunk.lines, w.masks):  # before any line is used: a chunk held back may come first
        for held in w.pending.values():  # stored before the value was known: mask it now
            held["lines"] = masks.apply(held["lines"], w.masks)
    w.pending[chunk.seq] = {"seq": chunk.seq, "lines": chunk.lines, "first_line": chunk.first_line,
                            "eof": chunk.eof}
    while w.next_seq in w.pending:
        _consume_lines(w, w.pending.pop(w.next_seq), matcher, limits)
    if len(w.pending) > limits.max_pending_chunks:
        # a chunk never came: give up on it rather than hold memory without bound
        nxt = min(w.pending)
        w.gaps += nxt - w.next_seq
        w.next_seq = nxt
        while w.next_seq in w.pending:
            _consume_lines(w, w.pending.pop(w.next_seq), matcher, limits)
    if chunk.seq in w.pending and w.pending[chunk.seq]["lines"] is chunk.lines:
        # held out of order: the window is stored (in a changelog topic) with it, so no raw secrets.
        # Only the secrets change, so matching the redacted lines later finds the same failures.
        w.pending[chunk.seq]["lines"] = redact_lines(masks.apply(chunk.lines, w.masks))
    return _maybe_ready(w, limits, now)


def on_job_event(w: JobWindow, ev: JobEvent, limits: Limits, now: float) -> tuple[JobWindow, list[Output]]:
    w = _reset_if_new_attempt(w, ev.attempt)
    if w.decided or ev.attempt < w.attempt or ev.status != "completed":
        w.touched = now
        return w, []
    w.job = redact_job(ev).to_dict()  # stored with the window, and the diagnosis' job: no raw secrets
    if ev.conclusion not in ("failure", "timed_out"):
        return w, [Closed(ev, retried=tuple(w.retried) if w.retried else None)]  # type: ignore[arg-type]
    return _maybe_ready(w, limits, now)


def on_risk(w: JobWindow, risk: TestRisk, attempt: int, limits: Limits, now: float) -> tuple[JobWindow, list[Output]]:
    w = _reset_if_new_attempt(w, attempt)
    if w.decided or attempt < w.attempt:
        return w, []
    if all(r["test_id"] != risk.test_id for r in w.risks) and len(w.risks) < 200:
        w.risks.append(risk.to_dict())
    w.touched = now
    return w, []


def on_tick(w: JobWindow, limits: Limits, now: float) -> tuple[JobWindow, list[Output]]:
    if (w.job is None or w.decided) and now - w.touched >= limits.window_ttl_seconds:
        return w, [Expired(w.job_key, w.lines_seen)]
    if w.decided:
        return w, []
    if w.deadline is None or now < w.deadline:
        return w, []
    return _maybe_ready(w, limits, now, force=True)


TEST_CATEGORIES = ("test_failure", "test_timeout")


def _maybe_ready(w: JobWindow, limits: Limits, now: float, force: bool = False) -> tuple[JobWindow, list[Output]]:
    w.touched = now
    # the stored completion event is parsed only once a diagnosis is due: this runs after every chunk
    if w.job is None or w.job.get("conclusion") not in ("failure", "timed_out"):
        return w, []
    complete = w.log_complete()
    if not complete and not force:
        if w.deadline is None:
            w.deadline = now + limits.chunk_grace_seconds
        return w, []
    evidence = tuple(EvidenceLine(**e) for e in w.evidence)
    # test results travel on their own topic (keyed by test id) and may trail the completion event
    if not w.risks and not w.waited_for_tests and limits.test_grace_seconds > 0 and any(
        e.category in TEST_CATEGORIES for e in evidence
    ):
        w.waited_for_tests = True
        w.deadline = now + limits.test_grace_seconds
        return w, []
    if w.waited_for_tests and not force and w.deadline is not None and now < w.deadline:
        return w, []
    job = JobEvent.from_dict(w.job)
    ready = Ready(
        job=job,
        evidence=evidence,
        total_lines=w.lines_seen,
        log_complete=complete and w.gaps == 0,
        risks=tuple(TestRisk.from_dict(r) for r in w.risks),
        tail=tuple(w.tail),
        step_start=w.step_start or None,
        retried=tuple(w.retried) if w.retried else None,  # type: ignore[arg-type]
        located=located_evidence(w.located),
        command=failing_command(w.located),
    )
    return w, [ready]
