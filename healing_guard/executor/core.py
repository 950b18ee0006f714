"""The action executor: turns a :class:`Command` into platform / notification API calls and an :class:`Outcome`.

* allow-list: an action outside ``allow`` is ``skipped`` with the reason;
* never twice, across restarts too: :class:`DoneStore` (append-only JSON lines under the data dir, fsynced
  per write) keeps the first outcome of every command whose API calls were attempted; a known id returns
  that outcome and calls nothing. Before its first API call a command's *intent* is written (``started``),
  and each call's result as it comes back (``step``); a restart that finds an intent without an outcome
  (the executor was killed mid-command) does not run the command again: it records an ``unknown`` outcome
  whose detail starts ``interrupted:`` and names what was done, what may have gone through and where to
  check. A command whose calls all came back before the stop gets its real outcome. So a multi-step
  command (re-run + Slack) never repeats a step, whether a later step failed or the executor stopped;
* within one call, the transport's retry rules (:mod:`.clients`) repeat only what cannot run twice;
* each stored outcome is published once: ``published`` marks it after the broker acknowledged it, and a
  redelivered or duplicate command is then dropped without a second outcome message (see ``cli``);
* dry run: a ``dry_run`` outcome whose detail lists the calls that would be made; nothing is called and
  nothing is stored (a later live run of the same command still acts);
* ``succeeded`` means the platform *accepted* the call (rerun queued, message posted), not that the job
  turned green: that is seen on ``ci.jobs``.

Action -> calls (``run_id`` is the command's run / pipeline / workflow id):

=======================  ===========================================================================
retry, retry_backoff,    GitHub: ``POST .../actions/runs/{run_id}/rerun-failed-jobs`` (no run id:
retry_tests_isolated,    ``POST .../actions/jobs/{job_id}/rerun``); GitLab: ``POST .../jobs/{job_id}/retry``
rerun_sequential,        (``parameters.scope == "pipeline"``: ``POST .../pipelines/{run_id}/retry``);
rerun_more_memory,       Jenkins: ``POST /job/{owner}/job/{repo}/buildWithParameters`` with ``GUARD_*``
rerun_larger_runner,     build parameters (action, memory factor, runner size, tests, no-cache, ...);
clear_cache_retry,       CircleCI: ``POST /api/v2/workflow/{run_id}/rerun`` ``{"from_failed": true}``.
rebuild_no_layer_cache,  Only Jenkins can carry the resource / cache / test-selection parameters; on the
cleanup_retry, and       other platforms the rerun is plain and ``detail`` says so.
rerun_clean_dependen-    ``retry_backoff`` first waits ``backoff_seconds[attempt-1]``: ``guard executor``
cies                     schedules it (:class:`ScheduleStore`, durable, other commands go on meanwhile);
                         a direct :meth:`Executor.execute` call sleeps (injected sleep).
notify_author,           Slack message
notify_budget
notify_oncall            Slack message; PagerDuty trigger when ``parameters.page``
escalate, open_incident  Jira issue (``ticket``), PagerDuty trigger with ``dedup_key`` = incident id /
                         command id (``page``), Slack message (``slack``); defaults: ticket and slack on,
                         page on for ``open_incident`` only
quarantine_test          Jira issue (``ticket``) + Slack message
release_test             Slack message
=======================  ===========================================================================
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..patterns.tokenize import redact
from ..remediate.actions import EXECUTOR_ACTIONS, RERUN_ACTIONS
from ..schemas import Command, Outcome, SchemaError
from .clients import Clients, JenkinsClient, Response, jenkins_full_name

#: the actions this executor carries out (the vocabulary is remediate/actions.py)
ALLOWED_ACTIONS = EXECUTOR_ACTIONS

#: what a plain rerun cannot do on each platform, per action (said in the outcome's detail)
_PLAIN_NOTE = {
    "retry_tests_isolated": "re-run cannot select tests; all failed jobs run again in full",
    "rerun_sequential": "re-run cannot change test parallelism; plain re-run",
    "rerun_more_memory": "re-run cannot change the memory limit; plain re-run",
    "rerun_larger_runner": "re-run cannot change the runner class; plain re-run",
    "clear_cache_retry": "re-run does not clear the cache; plain re-run",
    "rebuild_no_layer_cache": "re-run cannot disable the layer cache; plain re-run",
    "cleanup_retry": "re-run cannot run cleanup steps; plain re-run (fresh hosted runners start clean)",
    "rerun_clean_dependencies": "re-run cannot clear the dependency cache or freeze the lockfile; plain re-run",
}


def _json_line(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, separators=(",", ":")).encode() + b"\n"


def _append_durably(path: Path, line: bytes) -> None:
    """Append one line to ``path`` and fsync it: the stores' records must survive a kill."""
    with path.open("ab") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


class DoneStore:
    """Outcomes of carried-out commands by ``command_id``, with the write-ahead intents that make them
    never-twice: append-only JSON lines, fsynced per write. Four kinds of line:

    * ``{"started": id, "ts", "job_key", "action", "category", "steps": [{"describe", "check"}]}`` before
      the command's first API call;
    * ``{"step": id, "n", "ok", "result", "http_status"}`` as each call comes back;
    * an :class:`Outcome` once all calls came back;
    * ``{"published": id}`` once the outcome is on ``guard.outcomes``.

    The whole file is read at start (a few small lines per command); a torn last line from a crash is
    ignored. An intent without an outcome gets one there and then (:meth:`interrupted_outcome`), without
    any API call. Older executors read outcome lines only and skip the others.
    """

    FILE = "executor-done.jsonl"

    def __init__(self, data_dir: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(data_dir) / self.FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._done: dict[str, Outcome] = {}
        self._intents: dict[str, dict[str, Any]] = {}
        self._steps: dict[str, list[dict[str, Any]]] = {}
        self._published: set[str] = set()
        self._lock = threading.Lock()
        #: outcomes made at start for commands the executor was carrying out when it stopped
        self.recovered: list[Outcome] = []
        if self.path.exists():
            with self.path.open("rb") as f:
                for line in f:
                    self._load(line)
        for cid, intent in list(self._intents.items()):
            if cid not in self._done:
                out = self.interrupted_outcome(intent, self._steps.get(cid, []), clock())
                self.put(out)
                self.recovered.append(out)

    def _load(self, line: bytes) -> None:
        try:
            rec = json.loads(line)
        except ValueError:
            return  # a torn last line from a crash
        if not isinstance(rec, dict):
            return
        if "started" in rec:
            self._intents.setdefault(str(rec["started"]), rec)
        elif "step" in rec:
            self._steps.setdefault(str(rec["step"]), []).append(rec)
        elif "published" in rec:
            self._published.add(str(rec["published"]))
        else:
            try:
                o = Outcome.from_dict(rec)
            except SchemaError:
                return
            self._done.setdefault(o.command_id, o)

    def _append(self, rec: dict[str, Any] | bytes) -> None:
        _append_durably(self.path, rec + b"\n" if isinstance(rec, bytes) else _json_line(rec))

    def get(self, command_id: str) -> Outcome | None:
        return self._done.get(command_id)

    def put(self, outcome: Outcome) -> None:
        with self._lock:
            if outcome.command_id in self._done:
                return
            self._append(outcome.to_json())
            self._done[outcome.command_id] = outcome

    # --- write-ahead intent --------------------------------------------------------------------
    def start(self, cmd: Command, steps: list[tuple[str, str]], ts: float) -> None:
        """Durably note that ``cmd``'s API calls (``(describe, check)`` each) are about to be made."""
        rec = {"started": cmd.command_id, "ts": ts, "job_key": cmd.job_key, "action": cmd.action,
               "category": cmd.category, "steps": [{"describe": d, "check": c} for d, c in steps]}
        with self._lock:
            self._append(rec)
            self._intents[cmd.command_id] = rec

    def step(self, command_id: str, n: int, ok: bool, result: str, http_status: int | None,
             ambiguous: bool = False) -> None:
        """Durably note that call ``n`` of the command came back (``ok`` or not, ``ambiguous``: sent and
        unanswered) with ``result``."""
        rec = {"step": command_id, "n": n, "ok": ok, "result": result, "http_status": http_status,
               "ambiguous": ambiguous}
        with self._lock:
            self._append(rec)
            self._steps.setdefault(command_id, []).append(rec)

    @staticmethod
    def interrupted_outcome(intent: dict[str, Any], steps: list[dict[str, Any]], ts: float) -> Outcome:
        """The outcome of a command whose intent was written but whose outcome was not."""
        described = intent.get("steps") or []
        came_back = {int(r["n"]): r for r in steps if isinstance(r.get("n"), int)}
        results = [str(came_back[n]["result"]) for n in range(len(described)) if n in came_back]
        status = next((came_back[n].get("http_status") for n in sorted(came_back, reverse=True)
                       if came_back[n].get("ok")), None)
        if described and len(came_back) >= len(described):  # every call came back: the real outcome
            # the outcome execute() would have written: the first failed call decides, and one that may
            # have gone through (sent, unanswered) makes it "unknown"
            first_failed = next((came_back[n] for n in sorted(came_back) if not came_back[n].get("ok")), None)
            if first_failed is None:
                word, http = "succeeded", status
            else:
                word = "unknown" if first_failed.get("ambiguous") else "failed"
                http = first_failed.get("http_status")
            return Outcome(command_id=str(intent["started"]), job_key=str(intent.get("job_key", "")),
                           action=str(intent.get("action", "")), status=word,  # type: ignore[arg-type]
                           detail=("; ".join(results) + "; (recorded at restart: the executor stopped before "
                                   "writing the outcome)")[:2000],
                           http_status=http, ts=ts, category=intent.get("category"))
        parts = ["interrupted: the executor stopped while carrying this out; not repeated so the job cannot run "
                 "twice"]
        if results:
            parts.append("done before the stop: " + "; ".join(results))
        pending = described[len(came_back):]
        if pending:
            first = pending[0]
            parts.append(f"{first.get('describe')}: may have gone through, check {first.get('check')}")
        if len(pending) > 1:
            parts.append("not started: " + "; ".join(str(d.get("describe")) for d in pending[1:]))
        return Outcome(command_id=str(intent["started"]), job_key=str(intent.get("job_key", "")),
                       action=str(intent.get("action", "")), status="unknown" if pending else "failed",
                       detail="; ".join(parts)[:2000],
                       http_status=None, ts=ts, category=intent.get("category"))

    # --- publication ---------------------------------------------------------------------------
    def was_published(self, command_id: str) -> bool:
        return command_id in self._published

    def mark_published(self, command_id: str) -> None:
        with self._lock:
            if command_id in self._published or command_id not in self._done:
                return
            self._append({"published": command_id})
            self._published.add(command_id)

    def unpublished(self) -> list[Outcome]:
        """Stored outcomes of commands carried out with an intent (this version) and not yet published:
        the executor stopped between the store and the broker. Outcomes of older files are not included."""
        return [o for cid, o in self._done.items() if cid in self._intents and cid not in self._published]

    def __len__(self) -> int:
        return len(self._done)


class ScheduleStore:
    """Commands waiting for their backoff, durable across executor restarts.

    Append-only JSON lines: ``{"due": t, "command": {...}}`` when a command is scheduled (before its Kafka
    offset is committed) and ``{"published": id}`` once its outcome is on ``guard.outcomes``. At start the
    file is read back and rewritten with what is still pending. A command that was carried out but whose
    outcome was not yet published stays pending: when it comes due again the :class:`DoneStore` answers
    it without calling any API, and its outcome is published.
    """

    FILE = "executor-scheduled.jsonl"

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / self.FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pending: dict[str, tuple[float, Command]] = {}
        if self.path.exists():
            with self.path.open("rb") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        if "published" in rec:
                            self._pending.pop(str(rec["published"]), None)
                        else:
                            cmd = Command.from_dict(rec["command"])
                            self._pending.setdefault(cmd.command_id, (float(rec["due"]), cmd))
                    except (ValueError, KeyError, TypeError, SchemaError):
                        continue  # a torn last line from a crash
            tmp = self.path.with_suffix(".tmp")
            with tmp.open("wb") as f:
                for due, cmd in self._pending.values():
                    f.write(_json_line({"due": due, "command": cmd.to_dict()}))
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)

    def _append(self, rec: dict[str, Any]) -> None:
        _append_durably(self.path, _json_line(rec))

    def add(self, cmd: Command, due: float) -> bool:
        """Schedule ``cmd`` at ``due`` (Unix seconds); False when it is already scheduled."""
        if cmd.command_id in self._pending:
            return False
        self._append({"due": due, "command": cmd.to_dict()})
        self._pending[cmd.command_id] = (due, cmd)
        return True

    def due(self, now: float) -> list[Command]:
        """The commands whose time has come, earliest first (they stay pending until :meth:`published`)."""
        return [c for d, c in sorted(self._pending.values(), key=lambda x: x[0]) if d <= now]

    def next_due(self) -> float | None:
        return min((d for d, _ in self._pending.values()), default=None)

    def published(self, command_id: str) -> None:
        if self._pending.pop(command_id, None) is not None:
            self._append({"published": command_id})

    def __len__(self) -> int:
        return len(self._pending)


@dataclass
class Step:
    """One API call of a plan: ``describe`` for dry runs and details, ``call`` to carry it out."""

    service: str
    describe: str
    call: Callable[[], Response]
    check: str = ""  # where a person sees whether the call was carried out


class Executor:
    def __init__(self, clients: Clients, store: DoneStore, *, dry_run: bool = True,
                 allow: Iterable[str] = ALLOWED_ACTIONS, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        self.clients = clients
        self.store = store
        self.dry_run = dry_run
        self.allow = frozenset(allow)
        self.sleep = sleep
        self.clock = clock

    # --- entry point -----------------------------------------------------------------------------
    def backoff_of(self, cmd: Command) -> float:
        """Seconds a live run of ``cmd`` must wait before its calls (0 for anything not to be carried out)."""
        if (self.dry_run or cmd.action != "retry_backoff" or cmd.action not in self.allow
                or self.store.get(cmd.command_id) is not None):
            return 0.0
        return self._backoff(cmd)

    def execute(self, cmd: Command, *, waited: bool = False) -> Outcome:
        """Carry ``cmd`` out (or answer it from the store). ``waited``: its backoff has already passed
        (the executor loop scheduled it), so do not sleep here."""
        done = self.store.get(cmd.command_id)
        if done is not None:
            return done
        if cmd.action not in self.allow:
            return self._outcome(cmd, "skipped", f"action {cmd.action!r} is not on the executor's allow-list")
        try:
            steps, notes, wait = self._plan(cmd)
        except ValueError as exc:
            return self._outcome(cmd, "skipped", str(exc))
        if not steps:
            return self._outcome(cmd, "skipped", "; ".join(notes) or "nothing to do")
        if self.dry_run:
            what = "; ".join(s.describe for s in steps)
            pre = f"would wait {wait:g} s, then " if wait else "would "
            return self._outcome(cmd, "dry_run", self._mask("; ".join([pre + what, *notes])))
        if wait > 0 and not waited:
            self.sleep(wait)
        # write-ahead: from here on a restart does not call anything for this command again
        self.store.start(cmd, [(self._mask(s.describe), self._mask(s.check)) for s in steps], self.clock())
        results: list[str] = []
        failed: Response | None = None
        status: int | None = None
        for n, s in enumerate(steps):
            try:
                r = s.call()
            except Exception as exc:  # a bug, not a platform answer: record it, never run the command again
                r = Response(None, message=f"internal error: {type(exc).__name__}: {exc}", ambiguous=True)
            if r.ok:
                status = r.status
                extra = f" after waiting {r.waited_seconds:g} s" if r.waited_seconds else ""
                if r.already_done:
                    results.append(f"{s.describe}: {r.message}{extra}")
                else:
                    results.append(f"{s.describe}: HTTP {r.status}{extra}")
            else:
                failed = failed or r
                results.append(f"{s.describe}: FAILED {r.message or r.status}")
            self.store.step(cmd.command_id, n, r.ok, self._mask(results[-1]), r.status, r.ambiguous)
        if wait:
            results.insert(0, f"waited {wait:g} s (backoff)")
        detail = self._mask("; ".join(results + notes))
        if failed is not None:  # "unknown": the call was sent, no answer came, and it was not repeated
            out = self._outcome(cmd, "unknown" if failed.ambiguous else "failed", detail, failed.status)
        else:
            out = self._outcome(cmd, "succeeded", detail, status)
        self.store.put(out)
        return out

    # --- planning ----------------------------------------------------------------------------------
    def _plan(self, cmd: Command) -> tuple[list[Step], list[str], float]:
        if cmd.action in RERUN_ACTIONS:
            steps, notes = self._rerun(cmd)
            wait = self._backoff(cmd) if cmd.action == "retry_backoff" else 0.0
            return steps, notes, wait
        return (*self._notify(cmd), 0.0)

    def _backoff(self, cmd: Command) -> float:
        seq = cmd.parameters.get("backoff_seconds") or []
        if not isinstance(seq, list) or not seq:
            return 0.0
        try:
            return max(0.0, float(seq[min(max(cmd.attempt, 1), len(seq)) - 1]))
        except (TypeError, ValueError):
            return 0.0

    def _rerun(self, cmd: Command) -> tuple[list[Step], list[str]]:
        c = self.clients
        p = cmd.parameters
        notes: list[str] = []
        if cmd.provider == "github":
            if c.github is None:
                raise ValueError("GitHub is not configured (set GUARD_GITHUB_TOKEN)")
            gh = c.github
            if cmd.run_id:
                step = Step("github", f"GitHub re-run failed jobs of run {cmd.run_id}",
                            lambda: gh.rerun_failed_jobs(cmd.owner, cmd.repo, cmd.run_id or ""),
                            gh.run_url(cmd.owner, cmd.repo, cmd.run_id))
            else:
                step = Step("github", f"GitHub re-run job {cmd.job_id}",
                            lambda: gh.rerun_job(cmd.owner, cmd.repo, cmd.job_id),
                            gh.job_url(cmd.owner, cmd.repo, cmd.job_id))
            if cmd.action in _PLAIN_NOTE:
                notes.append("GitHub " + _PLAIN_NOTE[cmd.action])
            return [step], notes
        if cmd.provider == "gitlab":
            if c.gitlab is None:
                raise ValueError("GitLab is not configured (set GUARD_GITLAB_TOKEN)")
            gl = c.gitlab
            if p.get("scope") == "pipeline" and cmd.run_id:
                step = Step("gitlab", f"GitLab retry failed jobs of pipeline {cmd.run_id}",
                            lambda: gl.retry_pipeline(cmd.owner, cmd.repo, cmd.run_id or ""),
                            gl.pipeline_url(cmd.owner, cmd.repo, cmd.run_id))
            else:
                step = Step("gitlab", f"GitLab retry job {cmd.job_id}",
                            lambda: gl.retry_job(cmd.owner, cmd.repo, cmd.job_id),
                            gl.job_url(cmd.owner, cmd.repo, cmd.job_id))
            if cmd.action in _PLAIN_NOTE:
                notes.append("GitLab job " + _PLAIN_NOTE[cmd.action].replace("re-run", "retry"))
            return [step], notes
        if cmd.provider == "jenkins":
            if c.jenkins is None:
                raise ValueError("Jenkins is not configured (set GUARD_JENKINS_URL, GUARD_JENKINS_USER, "
                                 "GUARD_JENKINS_TOKEN)")
            jk = c.jenkins
            name = str(p.get("jenkins_job") or jenkins_full_name(cmd.owner, cmd.repo))
            params = jenkins_parameters(cmd)
            step = Step("jenkins", f"Jenkins build {JenkinsClient.job_path(name)} with "
                                   f"{', '.join(f'{k}={v}' for k, v in params.items())}",
                        lambda: jk.build_with_parameters(name, params), jk.job_url(name, cmd.command_id))
            notes.append("the Jenkinsfile must declare the GUARD_* parameters it honours (undeclared ones are "
                         "ignored)")
            return [step], notes
        if cmd.provider == "circleci":
            if c.circleci is None:
                raise ValueError("CircleCI is not configured (set GUARD_CIRCLECI_TOKEN)")
            if not cmd.run_id:
                raise ValueError("CircleCI re-runs a workflow and the command has no run_id (workflow id)")
            cc = c.circleci
            step = Step("circleci", f"CircleCI re-run workflow {cmd.run_id} from failed",
                        lambda: cc.rerun_workflow(cmd.run_id or "", from_failed=True),
                        cc.workflow_url(cmd.run_id))
            if cmd.action in _PLAIN_NOTE:
                notes.append("CircleCI " + _PLAIN_NOTE[cmd.action])
            return [step], notes
        raise ValueError(f"unknown provider {cmd.provider!r}")

    def _notify(self, cmd: Command) -> tuple[list[Step], list[str]]:
        c = self.clients
        p = cmd.parameters
        a = cmd.action
        incident = a in ("open_incident", "escalate")
        want_slack = bool(p.get("slack", True))
        want_ticket = bool(p.get("ticket", incident or a == "quarantine_test"))
        want_page = bool(p.get("page", a == "open_incident"))
        if a in ("notify_author", "notify_budget", "release_test"):
            want_ticket, want_page = False, False
        if a == "release_test":
            want_slack = True
        steps: list[Step] = []
        notes: list[str] = []
        text = self._text(cmd)
        if want_ticket:
            if c.jira is None:
                notes.append("no Jira configured: no ticket")
            else:
                jira = c.jira
                summary = self._summary(cmd)
                labels = ["healing-guard", cmd.category, a]
                steps.append(Step("jira", f"Jira issue in {jira.project}",
                                  lambda: jira.create_issue(summary, text, labels=labels), jira.search_url()))
        if want_page:
            if c.pagerduty is None:
                notes.append("no PagerDuty configured: nobody paged")
            else:
                pd = c.pagerduty
                dedup = str(p.get("incident_id") or cmd.command_id)
                severity = "critical" if a == "open_incident" else "error"
                details = {"job_key": self._job_key(cmd), "category": cmd.category, "action": a,
                           "attempt": cmd.attempt}
                for k in ("jobs", "repositories", "template"):
                    if k in p:
                        details[k] = p[k]
                summary = self._summary(cmd)
                steps.append(Step("pagerduty", f"PagerDuty trigger dedup_key={dedup}",
                                  lambda: pd.trigger(summary, dedup_key=dedup, source=f"{cmd.provider}/{cmd.owner}/"
                                                     f"{cmd.repo}", severity=severity, custom_details=details),
                                  f"PagerDuty alerts with dedup_key {dedup}"))
        if want_slack:
            if c.slack is None:
                notes.append("no Slack webhook configured: no message")
            else:
                sl = c.slack
                steps.append(Step("slack", "Slack message", lambda: sl.post(text), sl.CHECK))
        return steps, notes

    # --- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _job_key(cmd: Command) -> str:
        return cmd.job_key

    def _summary(self, cmd: Command) -> str:
        p = cmd.parameters
        if cmd.action in ("quarantine_test", "release_test"):
            verb = "Quarantined" if cmd.action == "quarantine_test" else "Released"
            return f"[guard] {verb} flaky test {p.get('test_id', '?')} ({cmd.owner}/{cmd.repo})"
        if cmd.action == "open_incident":
            return f"[guard] CI incident: {cmd.category} across {len(p.get('repositories') or [])} repositories"
        return f"[guard] {cmd.action}: {cmd.category} in {cmd.owner}/{cmd.repo} job {cmd.job_id}"

    def _text(self, cmd: Command) -> str:
        lines = [self._summary(cmd),
                 f"job {cmd.job_key} attempt {cmd.attempt}" + (f", run {cmd.run_id}" if cmd.run_id else ""),
                 f"why: {cmd.reason}",
                 f"category {cmd.category} (confidence {cmd.confidence:.2f}); command {cmd.command_id}"]
        for e in cmd.evidence[:3]:
            lines.append(f"line {e.line}: {e.text[:200]}")
        return "\n\n".join(lines)

    def _mask(self, text: str) -> str:
        return self.clients.transport.mask(text)[:2000]

    def _outcome(self, cmd: Command, status: str, detail: str, http_status: int | None = None) -> Outcome:
        # an API's error body may echo what it was sent: nothing secret-shaped reaches guard.outcomes
        return Outcome(command_id=cmd.command_id, job_key=cmd.job_key, action=cmd.action, status=status,  # type: ignore[arg-type]
                       detail=redact(detail), http_status=http_status, ts=self.clock(), category=cmd.category)


def jenkins_parameters(cmd: Command) -> dict[str, str]:
    """Build parameters for a Jenkins rerun: what the command asks for, as ``GUARD_*`` strings."""
    p = cmd.parameters
    out = {"GUARD_ACTION": cmd.action, "GUARD_COMMAND_ID": cmd.command_id}
    mapping = {"memory_factor": "GUARD_MEMORY_FACTOR", "runner_size": "GUARD_RUNNER_SIZE",
               "tests": "GUARD_TESTS", "failed_tests_only": "GUARD_FAILED_TESTS_ONLY",
               "isolation": "GUARD_ISOLATION", "parallelism": "GUARD_PARALLELISM", "no_cache": "GUARD_NO_CACHE",
               "clear_cache": "GUARD_CLEAR_CACHE", "cleanup": "GUARD_CLEANUP",
               "clear_dependency_cache": "GUARD_CLEAR_DEPENDENCY_CACHE", "frozen_lockfile": "GUARD_FROZEN_LOCKFILE"}
    for k, name in mapping.items():
        if k in p and p[k] is not None:
            v = p[k]
            if isinstance(v, bool):
                out[name] = "true" if v else "false"
            elif isinstance(v, list):
                out[name] = ";".join(str(x) for x in v) if k == "cleanup" else " ".join(str(x) for x in v)
            elif isinstance(v, dict):
                out[name] = json.dumps(v)
            else:
                out[name] = str(v)
    return out
