"""What the in-pipeline guard decides, and how it says so: no network, no files.

* :class:`Pipeline`: what the pipeline asked for (``strategy``: a preset, ``auto``, ``off`` or strategy names;
  ``max-retries``), and the guard's settings under it;
* :func:`diagnose`: one failed job's log through :class:`~healing_guard.pipeline_guard.PipelineGuard` (the
  worker's engine and policy) into a :class:`JobDecision`;
* :func:`plan_run`: whether the run's failed jobs are re-run, and why not when they are not;
* :func:`report` and :func:`slack_text`: the job summary and the Slack message;
* :func:`record` / :func:`read_record`: the decision file the GitHub companion workflow carries out.

The re-run rule: the platforms re-run a run's failed jobs together (GitHub ``rerun-failed-jobs``) or one
by one (GitLab), and a run passes only when every failed job does. So the failed jobs are re-run only
when the guard chose an automatic re-run for *each* of them; when one of them needs a person (a code
failure, an unknown cause, the retry limit reached) or its log could not be read yet, nothing is re-run:
a re-run of the others would spend money on a run that fails anyway.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..presets import PRESET_NAMES, is_preset, normalize_preset, preset_settings
from ..remediate.actions import is_automatic
from ..settings import Settings

RECORD_VERSION = 1
#: re-runs whose fix the platform's re-run API cannot carry (it re-runs the job as it was): with only a
#: token, these become plain re-runs, and the report says so
NEEDS_DIRECTIVE = {
    "rerun_more_memory": "more memory",
    "rerun_larger_runner": "a larger runner",
    "retry_tests_isolated": "only the failed tests, isolated",
    "rerun_sequential": "the tests one at a time",
    "rebuild_no_layer_cache": "a build without the layer cache",
    "cleanup_retry": "a disk cleanup first",
    "rerun_clean_dependencies": "a clean dependency cache",
}
#: ticket / page defaults per action (the executor's own, healing_guard/executor/core.py)
TICKET_ACTIONS = ("escalate", "open_incident", "quarantine_test")
PAGE_ACTIONS = ("open_incident",)


# --- what the pipeline asked for -------------------------------------------------------------------

@dataclass(frozen=True)
class Pipeline:
    """``strategy`` as given, its meaning, and ``max_retries`` (re-runs of a job: attempt N is the
    (N-1)th re-run, so attempt N may be re-run while N <= max_retries)."""

    strategy: str
    preset: str | None  # the preset it names (``auto`` is ``auto-detect``), None for off / strategy names
    healing_strategy: str  # what the planner reads on the job: auto, off, or strategy names
    max_retries: int

    def settings(self, base: Settings) -> Settings:
        """``base`` under the preset (or the defaults' auto-detect), with the pipeline's retry limit."""
        return preset_settings(dataclasses.replace(base, dry_run=False), self.preset or "auto-detect",
                               max_retries=self.max_retries)

    def describe(self) -> str:
        what = f"preset {self.preset}" if self.preset else f"strategy {self.healing_strategy}"
        return f"{what}, max-retries {self.max_retries}"


def parse_pipeline(strategy: str, max_retries: str | int) -> Pipeline:
    """The pipeline's ``strategy`` and ``max-retries`` inputs; ValueError saying what is accepted."""
    from ..strategies_config import Strategy

    raw = str(strategy).strip()
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    known = {s.value for s in Strategy}
    if not names or names == ["auto"]:
        preset: str | None = "auto-detect"
        healing = "auto"  # the Action's old default: the same as the auto-detect preset
    elif len(names) == 1 and is_preset(names[0]):
        preset, healing = normalize_preset(names[0]), "auto"
    elif names == ["off"]:
        preset, healing = None, "off"
    elif all(n in known for n in names):
        preset, healing = None, ",".join(names)
    else:
        bad = [n for n in names if n not in known and not is_preset(n) and n not in ("auto", "off")] or names
        raise ValueError(
            f"strategy: unknown {', '.join(map(repr, bad))}; expected a preset ({', '.join(PRESET_NAMES)}), auto, "
            f"off, or healing-strategies.yml strategy names, comma-separated ({', '.join(sorted(known))})")
    text = str(max_retries).strip()
    try:
        limit = int(text)
    except ValueError:
        raise ValueError(f"max-retries: expected a whole number >= 0, got {text!r}") from None
    if limit < 0:
        raise ValueError(f"max-retries: expected a whole number >= 0, got {limit}")
    return Pipeline(strategy=raw or "auto", preset=preset, healing_strategy=healing, max_retries=limit)


# --- one failed job ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FailedJob:
    """A failed job as the platform lists it."""

    job_id: str
    name: str
    attempt: int = 1
    conclusion: str = "failure"  # failure or timed_out
    running: bool = False  # still in progress (a job whose `if: failure()` step is running)
    this_job: bool = False  # the job this command runs in
    failed_steps: tuple[str, ...] = ()
    duration_minutes: float | None = None
    url: str | None = None


@dataclass(frozen=True)
class JobDecision:
    """The diagnosis of one failed job and what the guard chose for it (or why it could not yet)."""

    job_id: str
    name: str
    attempt: int
    url: str | None = None
    failed_steps: tuple[str, ...] = ()
    this_job: bool = False
    diagnosed: bool = False
    why_pending: str = ""  # not diagnosed: why (its log could not be read)
    category: str = ""
    confidence: float = 0.0
    evidence: tuple[tuple[int, str], ...] = ()  # (line, text): the lines that decided, strongest first
    action: str = ""
    automatic: bool = False
    reason: str = ""
    cost_usd: float = 0.0  # estimated cost of the automatic action (0 for a notification)
    time_saved_minutes: float = 0.0  # expected saving of the automatic action
    command: Mapping[str, Any] | None = None  # the planner's command (Command.to_dict())
    notified: bool = False  # a notification about this decision was sent

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["failed_steps"] = list(self.failed_steps)
        d["evidence"] = [list(e) for e in self.evidence]
        d["command"] = dict(self.command) if self.command is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobDecision:
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        kw["failed_steps"] = tuple(str(s) for s in kw.get("failed_steps") or ())
        kw["evidence"] = tuple((int(e[0]), str(e[1])) for e in kw.get("evidence") or ())
        return cls(**kw)

    @property
    def wants_ticket(self) -> bool:
        p = (self.command or {}).get("parameters") or {}
        return bool(p.get("ticket", self.action in TICKET_ACTIONS))

    @property
    def wants_page(self) -> bool:
        p = (self.command or {}).get("parameters") or {}
        return bool(p.get("page", self.action in PAGE_ACTIONS))


def pending(job: FailedJob, why: str) -> JobDecision:
    return JobDecision(job_id=job.job_id, name=job.name, attempt=job.attempt, url=job.url,
                       failed_steps=job.failed_steps, this_job=job.this_job, diagnosed=False, why_pending=why)


def diagnose(guard: Any, pipeline: Pipeline, job: FailedJob, log: Path, *, run_id: str | None,
             branch: str | None = None) -> JobDecision:
    """Diagnose ``job`` from its log file with ``guard`` (a PipelineGuard under ``pipeline.settings``) and
    choose its remediation under the pipeline's strategy and retry limit (the job's attempt counts)."""
    failure = guard.analyze_failure(job_id=job.job_id, logs=log, attempt=job.attempt, job_name=job.name,
                                    run_id=run_id, duration_minutes=job.duration_minutes,
                                    conclusion="timed_out" if job.conclusion == "timed_out" else "failure")
    failure = dataclasses.replace(failure, job=dataclasses.replace(
        failure.job, healing_strategy=pipeline.healing_strategy, max_retries=pipeline.max_retries,
        branch=branch or failure.job.branch, url=job.url))
    result = guard.heal(failure)
    # the lines of the diagnosed cause (the others matched patterns of causes that lost)
    own = [(e.line, e.text) for e, d in zip(failure.evidence, failure.diagnosis.evidence)
           if d.category == failure.category]
    evidence = tuple((own or [(e.line, e.text) for e in failure.evidence])[:3])
    return JobDecision(
        job_id=job.job_id, name=job.name, attempt=job.attempt, url=job.url, failed_steps=job.failed_steps,
        this_job=job.this_job, diagnosed=True, category=failure.category, confidence=failure.confidence,
        evidence=evidence, action=result.action,
        automatic=is_automatic(result.action), reason=result.reason, cost_usd=round(result.cost_usd, 4),
        time_saved_minutes=result.time_saved_minutes, command=result.command.to_dict())


# --- the run ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    """Whether the failed jobs are re-run; ``why`` in one sentence either way."""

    rerun: bool
    why: str
    wait_seconds: float = 0.0  # the backoff waited before the re-run (the longest asked, capped)
    asked_wait_seconds: float = 0.0  # the longest backoff the decisions asked for
    clear_cache: bool = False  # a decision asked for a fresh cache before the re-run
    notes: tuple[str, ...] = ()


def _backoff(d: JobDecision) -> float:
    if d.action != "retry_backoff":
        return 0.0
    seq = ((d.command or {}).get("parameters") or {}).get("backoff_seconds") or []
    if not isinstance(seq, list) or not seq:
        return 0.0
    try:
        wait = float(seq[min(max(d.attempt, 1), len(seq)) - 1])
    except (TypeError, ValueError):
        return 0.0
    return wait if math.isfinite(wait) and wait > 0 else 0.0


def plan_run(decisions: Sequence[JobDecision], *, max_wait_seconds: float) -> RunPlan:
    """The run-level decision (see the module docstring for the rule)."""
    if not decisions:
        return RunPlan(False, "no failed job to act on")
    waiting = [d for d in decisions if not d.diagnosed]
    if waiting:
        return RunPlan(False, f"not re-run yet: the log of {_names(waiting)} could not be read yet, so "
                              f"{'it is' if len(waiting) == 1 else 'they are'} not diagnosed")
    people = [d for d in decisions if not d.automatic]
    if people:
        first = people[0]
        why = f"not re-run: {_names(people)} needs a person ({first.action}: {first.reason})"
        if len(decisions) > len(people):
            why += "; a re-run of the other failed jobs cannot make this run pass"
        return RunPlan(False, why)
    asked = max(_backoff(d) for d in decisions)
    wait = min(asked, max(0.0, max_wait_seconds))
    notes = [f"{d.name}: {d.action} asks for {NEEDS_DIRECTIVE[d.action]}; a re-run through the platform's API runs "
             "the job as it was (the fix reaches a re-run only through the guard service's directive, "
             "docs/directives.md)" for d in decisions if d.action in NEEDS_DIRECTIVE]
    if asked > wait:
        notes.append(f"the backoff asked for {asked:g} s; waited {wait:g} s (max-wait-seconds)")
    why = f"re-run the failed jobs: {', '.join(f'{d.name} ({d.category}: {d.action})' for d in decisions)}"
    return RunPlan(True, why, wait_seconds=wait, asked_wait_seconds=asked,
                   clear_cache=any(d.action == "clear_cache_retry" for d in decisions), notes=tuple(notes))


def _names(ds: Iterable[JobDecision]) -> str:
    return ", ".join(f"job {d.name}" for d in ds)


# --- what it says -----------------------------------------------------------------------------------

def money(usd: float) -> str:
    return f"${usd:.2f}" if usd >= 0.01 or usd == 0 else f"${usd:.4f}"


def _fence(lines: Iterable[str]) -> list[str]:
    """Log lines in a fenced block: nothing in them is read as Markdown or HTML."""
    return ["```text", *(line.replace("```", "'''") for line in lines), "```"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def job_section(d: JobDecision) -> list[str]:
    where = f"job {d.job_id}, attempt {d.attempt}" + (", the job this step runs in" if d.this_job else "")
    out = [f"### {_cell(d.name)} ({where})", ""]
    if d.failed_steps:
        out.append(f"- **failed step:** {_cell(', '.join(d.failed_steps))}")
    if not d.diagnosed:
        out += [f"- **cause:** not diagnosed yet: {_cell(d.why_pending)}", ""]
        return out
    out.append(f"- **cause:** {d.category} (confidence {d.confidence:.2f})")
    if d.evidence:
        out += ["- **evidence:**", "", *_fence(f"line {n}: {text[:500]}" for n, text in d.evidence), ""]
    out.append(f"- **action:** {d.action}: {_cell(d.reason)}")
    if d.automatic:
        out.append(f"- **cost:** {money(d.cost_usd)} estimated for the re-run; expected saving "
                   f"{d.time_saved_minutes:g} min")
    else:
        out.append(f"- **cost:** {money(0.0)} (no re-run: a person is told)")
    out.append("")
    return out


def report(title: str, decisions: Sequence[JobDecision], plan: RunPlan | None, *, context: Sequence[str] = (),
           done: Sequence[str] = (), notes: Sequence[str] = (), extra: Sequence[str] = ()) -> str:
    """The Markdown report: the run, a table of the failed jobs, one section per job, what was done."""
    out = [f"## {title}", ""]
    for c in context:
        out += [c, ""]
    if decisions:
        out += ["| job | cause | action | cost |", "|---|---|---|---|"]
        for d in decisions:
            cause = f"{d.category} ({d.confidence:.2f})" if d.diagnosed else "not diagnosed yet"
            out.append(f"| {_cell(d.name)} | {cause} | {d.action or '-'} | "
                       f"{money(d.cost_usd) if d.diagnosed else '-'} |")
        out.append("")
        for d in decisions:
            out += job_section(d)
    if plan is not None:
        out += [f"**Decision:** {_cell(plan.why)}", ""]
    if done:
        out += ["**Done:**", "", *[f"- {_cell(x)}" for x in done], ""]
    if notes or (plan is not None and plan.notes):
        out += ["**Notes:**", "", *[f"- {_cell(x)}" for x in (*(plan.notes if plan else ()), *notes)], ""]
    out += list(extra)
    return "\n".join(out).rstrip() + "\n"


def slack_text(title: str, decisions: Sequence[JobDecision], outcome: str, link: str | None = None) -> str:
    """The Slack message (the Slack client escapes it: log text never becomes a mention or a link)."""
    lines = [f"[guard] {title}: {len(decisions)} failed job(s)"]
    for d in decisions:
        if d.diagnosed:
            first = f" - {d.evidence[0][1][:200]}" if d.evidence else ""
            cost = f", est. {money(d.cost_usd)}" if d.automatic else ""
            lines.append(f"- {d.name}: {d.category} ({d.confidence:.2f}) -> {d.action}{cost}{first}")
        else:
            lines.append(f"- {d.name}: not diagnosed yet ({d.why_pending[:200]})")
    lines.append(outcome)
    if link:
        lines.append(link)
    return "\n".join(lines)


# --- the decision record (the GitHub companion workflow reads it) -----------------------------------

@dataclass(frozen=True)
class Record:
    """What the in-job step decided, for the companion workflow to carry out once the run completed."""

    provider: str
    repo: str
    run_id: str
    attempt: int
    strategy: str
    max_retries: int
    jobs: tuple[JobDecision, ...] = ()
    rerun_attempted: bool = False
    rerun_ok: bool = False
    rerun_message: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def record(r: Record) -> str:
    return json.dumps({
        "version": RECORD_VERSION, "provider": r.provider, "repo": r.repo, "run_id": r.run_id, "attempt": r.attempt,
        "strategy": r.strategy, "max_retries": r.max_retries, "jobs": [j.to_dict() for j in r.jobs],
        "rerun": {"attempted": r.rerun_attempted, "ok": r.rerun_ok, "message": r.rerun_message}, **r.extra,
    }, indent=2)


def read_record(text: str | bytes) -> Record:
    """A decision record; ValueError when it is not one."""
    d = json.loads(text)
    if not isinstance(d, dict) or d.get("version") != RECORD_VERSION:
        raise ValueError("not a healing-guard decision record (version 1)")
    rerun = d.get("rerun") or {}
    return Record(provider=str(d["provider"]), repo=str(d["repo"]), run_id=str(d["run_id"]),
                  attempt=int(d["attempt"]), strategy=str(d["strategy"]), max_retries=int(d["max_retries"]),
                  jobs=tuple(JobDecision.from_dict(j) for j in d.get("jobs") or ()),
                  rerun_attempted=bool(rerun.get("attempted")), rerun_ok=bool(rerun.get("ok")),
                  rerun_message=str(rerun.get("message") or ""))
