"""The action executor: turns a :class:`Command` into platform / notification API calls and an :class:`Outcome`.

* allow-list: an action outside ``allow`` is ``skipped`` with the reason;
* well-formed commands only: before any API call (and in a dry run too) :meth:`Executor.check` runs the
  checks below; a command that fails one is *refused*: a ``refused`` outcome whose detail starts
  ``refused: <field>: <reason>``, and nothing is called or stored. The checks:

  - identity: ``command_id`` (and ``incident_id``) 1-200 of ``[A-Za-z0-9_.:@+-]``; ``category`` a category
    name; ``attempt`` 1..10000; ``owner`` / ``repo`` / ``job_id`` / ``run_id`` each a URL path segment that
    is never empty, ``.`` or ``..`` and holds no control, shell or URL-special character (``/?#%``; a
    GitLab / Jenkins ``owner`` is ``/``-separated segments, a GitHub one is one segment). GitHub, GitLab
    and CircleCI owner and repository names are ``[A-Za-z0-9_.-]``; GitHub job and run ids and GitLab
    job and pipeline ids are numbers; a CircleCI workflow id (``run_id``) is a UUID. The clients
    URL-encode every path segment of every platform URL on top of that and refuse ``.``/``..``;
  - repository: with an allow-list (``repos``: ``guard executor --repo owner/name``, repeatable, or
    ``owner/*``; ``GUARD_EXECUTOR_REPOS``), ``owner/repo`` must be on it. Without one every repository
    is acted on, as before, and a live executor logs a warning once (at its first command);
  - parameters, per action (:func:`parameter_schema`; reruns share one table, notifications and test
    actions another; ``null`` is absent; a name the table lacks is never sent anywhere):
    ``backoff_seconds`` 1-10 numbers in 0..3600 (so no wait is longer than an hour); ``memory_factor`` a
    number in (1, 8]; ``runner_size`` one of ``runner_sizes`` (``next`` and the priced sizes);
    ``parallelism`` an integer 1..64; ``isolation`` one of :data:`ISOLATION_MODES`; ``scope`` ``job`` or
    ``pipeline``; ``tests`` at most 500 test ids and ``test_id`` one, each 1-500 characters without shell
    metacharacters; ``tests`` must be among the failed tests the guard received, which a command that
    selects tests lists in ``failed_tests`` (the worker and the API put them there; a command with
    ``tests`` and no ``failed_tests`` is refused), and so must ``test_id`` when ``failed_tests`` is given; ``cleanup`` 1-10 steps without shell metacharacters or commas;
    ``slack`` / ``ticket`` / ``page`` / ``no_cache`` / ... booleans (``"false"`` is not false);
    ``repositories`` ``owner/name`` strings; ``template``, ``requested_by``, ``strategy`` and a budget
    alert's ``scope`` bounded text;
  - Jenkins reruns: ``jenkins_job`` must be the repository's job or one inside it, and no build parameter
    (``GUARD_*``) may hold a shell metacharacter (``;|&$`\\<>``, quotes, newlines, control characters):
    the refusal names the command field it came from. The Jenkins client refuses such a call too;
* text from a log (evidence lines) and from the command stays data: Slack messages are escaped (``&``,
  ``<``, ``>``; no ``<!channel>`` or ``<url|label>``), the Jira issue is Atlassian Document Format (plain
  text nodes, no wiki markup) with the log lines in a code block, PagerDuty fields are JSON strings cut
  to 1024 characters;
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
* dry run: a ``dry_run`` outcome whose detail lists the calls that would be made and names the target
  (``target: provider/owner/repo job <job_id>``); nothing is called and nothing is stored (a later live
  run of the same command still acts);
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
rebuild_no_layer_cache,  Only Jenkins re-runs take parameters; elsewhere the fix travels as a directive
cleanup_retry, and       that the next attempt's first step applies (docs/directives.md), and ``detail``
                         says so. ``clear_cache_retry`` first clears the platform's side: GitHub deletes
                         the branch's caches, GitLab ``runnerCacheClear``, CircleCI sets the project
                         variable ``GUARD_CACHE_EPOCH`` that cache keys hold.
rerun_clean_dependen-    ``retry_backoff`` first waits ``backoff_seconds[attempt-1]``: ``guard executor``
cies                     schedules it (:class:`ScheduleStore`, durable, other commands go on meanwhile);
                         a direct :meth:`Executor.execute` call sleeps (injected sleep).
notify_author            Slack message; Jira issue when ``parameters.ticket``, PagerDuty trigger when
                         ``parameters.page`` (a person's heal request may ask for them)
notify_budget            Slack message (a ``ticket`` / ``page`` request is said to be not done)
notify_oncall            Slack message; PagerDuty trigger when ``parameters.page``
escalate, open_incident  Jira issue (``ticket``), PagerDuty trigger with ``dedup_key`` = incident id /
                         command id (``page``), Slack message (``slack``); defaults: ticket and slack on,
                         page on for ``open_incident`` only
quarantine_test          Jira issue (``ticket``) + Slack message
release_test             Slack message (a ``ticket`` request is said to be not done)
=======================  ===========================================================================

Jenkins build parameters: ``GUARD_ACTION``, ``GUARD_COMMAND_ID`` and, when the command has them,
``GUARD_MEMORY_FACTOR``, ``GUARD_RUNNER_SIZE``, ``GUARD_TESTS`` (space-separated), ``GUARD_CLEANUP``
(comma-separated steps), ``GUARD_FAILED_TESTS_ONLY``, ``GUARD_ISOLATION``, ``GUARD_PARALLELISM``,
``GUARD_NO_CACHE``, ``GUARD_CLEAR_CACHE``, ``GUARD_CLEAR_DEPENDENCY_CACHE``, ``GUARD_FROZEN_LOCKFILE``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..directives import JENKINS_PARAMETERS, MAX_MEMORY_ADD_MB, MAX_TIMEOUT_FACTOR, cache_suffix, from_command
from ..patterns.tokenize import redact
from ..remediate.actions import EXECUTOR_ACTIONS, NOTIFY_ACTIONS, RERUN_ACTIONS, TEST_ACTIONS
from ..schemas import Command, Outcome, SchemaError
from ..settings import DEFAULT_PRICES
from .clients import (CIRCLECI_CACHE_VARIABLE, SHELL_METACHARACTERS, Clients, JenkinsClient, Response,
                      jenkins_full_name, plain)

log = logging.getLogger("healing_guard.executor")

#: the actions this executor carries out (the vocabulary is remediate/actions.py)
ALLOWED_ACTIONS = EXECUTOR_ACTIONS

def _directive_note(cmd: Command, platform: str) -> str | None:
    """What the next attempt of a re-run with a fix does on a platform whose re-run API takes no parameters
    (said in the outcome's detail; docs/directives.md has the table)."""
    if cmd.action == "rerun_larger_runner":
        return f"{platform} cannot change the runner class of a re-run; plain re-run"
    if cmd.action == "clear_cache_retry" and platform == "GitLab":
        return "the runner caches are cleared before the retry"
    if cmd.action == "clear_cache_retry" and platform == "CircleCI":
        return (f"the project variable {CIRCLECI_CACHE_VARIABLE} is set before the re-run: cache keys that "
                f"hold {{{{ .Environment.{CIRCLECI_CACHE_VARIABLE} }}}} start a fresh cache")
    if cmd.action == "clear_cache_retry" and not isinstance(cmd.parameters.get("ref"), str):
        return ("no branch known, so no Actions cache deleted; the next attempt's first step "
                "(guard-directive apply) sets GUARD_CACHE_SUFFIX for cache keys")
    d = from_command(cmd)
    if d is None:
        return None
    return (f"the next attempt's first step (guard-directive apply) applies: {', '.join(d.changes)}; "
            "a job without that step runs as before")


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

    def commands(self) -> list[Command]:
        """Every pending command, due or not."""
        return [c for _, c in self._pending.values()]

    def published(self, command_id: str) -> None:
        if self._pending.pop(command_id, None) is not None:
            self._append({"published": command_id})

    def __len__(self) -> int:
        return len(self._pending)


# --- what the executor acts on: the command checks ---------------------------------------------------

#: longest wait one ``backoff_seconds`` step may ask for, and the most steps the list may have
MAX_BACKOFF_SECONDS = 3600.0
MAX_BACKOFF_STEPS = 10
#: ``memory_factor``: more than 1 (it is a rerun with *more* memory), at most 8
MEMORY_FACTOR_MAX = 8.0
MAX_PARALLELISM = 64
#: ``tests``: at most this many test ids, each at most this long
MAX_TESTS = 500  # as many as a directive carries (directives.MAX_TESTS)
MAX_TEST_ID = 500
MAX_CLEANUP_STEPS = 10
ISOLATION_MODES = ("fresh_process", "fresh_container", "none")
#: runner sizes a ``rerun_larger_runner`` may ask for: ``next`` (the next larger class) or a priced size
#: (``guard executor`` passes ``cost_tracking.price_per_minute_usd``'s sizes)
DEFAULT_RUNNER_SIZES: tuple[str, ...] = ("next", *DEFAULT_PRICES)

_NUMERIC = re.compile(r"[0-9]{1,20}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: an owner / repository / project path segment on GitHub, GitLab and CircleCI
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
#: command ids, incident ids (hex hashes in practice)
_ID = re.compile(r"[A-Za-z0-9_.:@+-]{1,200}")
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SIZE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
#: characters that have a meaning in a URL path beyond their own, besides SHELL_METACHARACTERS
_URL_SPECIAL = re.compile(r"[/?#%]")


class Refusal(ValueError):
    """Why the executor will not act on a command: ``field`` names the part at fault (dotted path)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


Check = Callable[[Any, str], None]


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _boolean(v: Any, path: str) -> None:
    if not isinstance(v, bool):
        raise Refusal(path, f"must be true or false, got {_show(v)}")


def _number(lo: float, hi: float, *, above: bool = False, integer: bool = False) -> Check:
    """A number (``integer``: an integer) with ``lo <= v <= hi`` (``above``: ``lo < v``); never a boolean."""
    def check(v: Any, path: str) -> None:
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
            raise Refusal(path, f"must be {'an integer' if integer else 'a number'}, got {_show(v)}")
        if isinstance(v, float) and not math.isfinite(v):
            raise Refusal(path, f"must be a finite number, got {_show(v)}")
        if v < lo or (above and v == lo) or v > hi:
            raise Refusal(path, f"must be {'>' if above else '>='} {lo:g} and <= {hi:g}, got {_show(v)}")
    return check


def _one_of(*values: str) -> Check:
    def check(v: Any, path: str) -> None:
        if not isinstance(v, str) or v not in values:
            raise Refusal(path, f"must be one of {', '.join(values)}; got {_show(v)}")
    return check


def _text(max_len: int) -> Check:
    """A string of at most ``max_len`` characters (shown to people, never to a shell or in a URL)."""
    def check(v: Any, path: str) -> None:
        if not isinstance(v, str):
            raise Refusal(path, f"must be a string, got {_show(v)}")
        if len(v) > max_len:
            raise Refusal(path, f"must be at most {max_len} characters, got {len(v)}")
    return check


def _word(max_len: int) -> Check:
    """A non-empty string of at most ``max_len`` characters without shell metacharacters (``;|&$`\\<>``,
    quotes, newlines or any control character): what may reach a build parameter."""
    def check(v: Any, path: str) -> None:
        _text(max_len)(v, path)
        if not v.strip():
            raise Refusal(path, "must not be empty")
        bad = SHELL_METACHARACTERS.search(v)
        if bad:
            raise Refusal(path, f"must not contain shell metacharacters; found {bad.group()!r} in {_show(v)}")
    return check


def _list_of(item: Check, max_items: int, *, min_items: int = 0) -> Check:
    def check(v: Any, path: str) -> None:
        if not isinstance(v, list):
            raise Refusal(path, f"must be a list, got {_show(v)}")
        if not min_items <= len(v) <= max_items:
            raise Refusal(path, f"must have {min_items} to {max_items} items, got {len(v)}")
        for i, x in enumerate(v):
            item(x, f"{path}[{i}]")
    return check


def _repo_name(v: Any, path: str) -> None:
    """``owner/name`` (GitLab: ``group/sub/name``), every segment a plain name."""
    _text(200)(v, path)
    parts = v.split("/")
    if len(parts) < 2 or any(not _NAME.fullmatch(x) or not x.strip(".") for x in parts):
        raise Refusal(path, f"must be owner/name of letters, digits, '_', '.', '-'; got {_show(v)}")


def _id_check(v: Any, path: str) -> None:
    if not isinstance(v, str) or not _ID.fullmatch(v):
        raise Refusal(path, f"must be 1-200 of letters, digits and _.:@+-; got {_show(v)}")


def _TEST_ID(v: Any, path: str) -> None:
    """A test id: a non-empty line without control characters. Java's nested classes (``Outer$Inner``)
    and pytest's parametrised ids (quotes) are test ids too; no platform but Jenkins passes them on, and
    there every ``GUARD_*`` value is checked for shell metacharacters (:func:`jenkins_parameters`); the
    directive's client shell-quotes what it prints."""
    _text(MAX_TEST_ID)(v, path)
    if not v.strip():
        raise Refusal(path, "must not be empty")
    bad = re.search(r"[\x00-\x1f\x7f]", v)
    if bad:
        raise Refusal(path, f"must not contain control characters; found {bad.group()!r} in {_show(v)}")


def _git_ref(v: Any, path: str) -> None:
    """A branch or ref (``main``, ``refs/heads/feature/x``, ``refs/pull/7/merge``) as git allows them,
    without ``..``."""
    _text(255)(v, path)
    if not re.fullmatch(r"[A-Za-z0-9._/+-]+", v) or ".." in v or v.startswith(("/", "-")):
        raise Refusal(path, f"must be a git ref (letters, digits and ._/+-, no '..'), got {_show(v)}")


#: a Slack channel: ``#name`` (lower-case letters, digits, ``-``, ``_``; at most 80) or a channel id
SLACK_CHANNEL = re.compile(r"#[a-z0-9_-][a-z0-9_.-]{0,79}|[CDG][A-Z0-9]{6,20}")


def _slack_channel(v: Any, path: str) -> None:
    if not isinstance(v, str) or not SLACK_CHANNEL.fullmatch(v):
        raise Refusal(path, f"must be a Slack channel, #name (lower-case letters, digits, -, _) or an id like "
                            f"C0123ABCD; got {_show(v)}")


def _cleanup_step(v: Any, path: str) -> None:
    _word(200)(v, path)
    if "," in v:  # GUARD_CLEANUP joins the steps with commas
        raise Refusal(path, f"must not contain ',', got {_show(v)}")
_ANY_PARAMS: dict[str, Check] = {"requested_by": _text(200), "strategy": _text(100)}
#: received test ids a command may carry: ``tests`` / ``test_id`` must then be among them
_FAILED_TESTS = _list_of(_TEST_ID, 5000)


def parameter_schema(runner_sizes: Iterable[str] = DEFAULT_RUNNER_SIZES) -> dict[str, dict[str, Check]]:
    """Action -> parameter name -> check. A parameter the schema does not name is never sent anywhere (no
    client reads it) and is let through; ``null`` is the same as absent."""
    sizes = tuple(dict.fromkeys(runner_sizes))
    rerun: dict[str, Check] = {
        **_ANY_PARAMS,
        "scope": _one_of("job", "pipeline"),
        "jenkins_job": _text(400),  # and inside the command's repository: see Executor.check
        "backoff_seconds": _list_of(_number(0, MAX_BACKOFF_SECONDS), MAX_BACKOFF_STEPS, min_items=1),
        "honour_reset_headers": _boolean,
        "memory_factor": _number(1, MEMORY_FACTOR_MAX, above=True),
        "memory_add_mb": _number(1, MAX_MEMORY_ADD_MB, integer=True),
        "timeout_factor": _number(1, MAX_TIMEOUT_FACTOR, above=True),
        "runner_size": _one_of(*sizes),
        "tests": _list_of(_TEST_ID, MAX_TESTS),
        "failed_tests": _FAILED_TESTS,
        "failed_tests_only": _boolean,
        "isolation": _one_of(*ISOLATION_MODES),
        "parallelism": _number(1, MAX_PARALLELISM, integer=True),
        "no_cache": _boolean,
        "clear_cache": _boolean,
        "ref": _git_ref,
        "cleanup": _list_of(_cleanup_step, MAX_CLEANUP_STEPS, min_items=1),
        "clear_dependency_cache": _boolean,
        "frozen_lockfile": _boolean,
    }
    notify: dict[str, Check] = {
        **_ANY_PARAMS,
        "slack": _boolean, "ticket": _boolean, "page": _boolean,
        "channel": _slack_channel,  # notifications.slack.channel / cost_control.alerts.slack
        "incident_id": _id_check,
        "assign_to": _text(200),
        "healed_by": _text(100),  # notify_recovery: the action after which the job turned green
        "jobs": _number(0, 10**9, integer=True),
        "repositories": _list_of(_repo_name, 1000),
        "template": _text(4000),
        # notify_budget
        "scope": _text(300), "level": _number(0, 1), "spent_usd": _number(0, 1e12), "budget_usd": _number(0, 1e12),
        # quarantine_test / release_test
        "test_id": _TEST_ID, "failed_tests": _FAILED_TESTS, "episode": _number(0, 10**9, integer=True),
    }
    return {**{a: rerun for a in RERUN_ACTIONS}, **{a: notify for a in NOTIFY_ACTIONS | TEST_ACTIONS}}


def _segment(v: Any, path: str, *, numeric: bool = False, uuid: bool = False, name: bool = False) -> None:
    """One URL path segment: never empty, ``.`` or ``..``; ``numeric`` / ``uuid`` / ``name`` narrow it."""
    if not isinstance(v, str) or not v:
        raise Refusal(path, "must not be empty")
    if numeric and not _NUMERIC.fullmatch(v):
        raise Refusal(path, f"must be a number (digits only), got {_show(v)}")
    if uuid and not _UUID.fullmatch(v):
        raise Refusal(path, f"must be a UUID (a CircleCI workflow id), got {_show(v)}")
    if name and not _NAME.fullmatch(v):
        raise Refusal(path, f"must be letters, digits, '_', '.', '-' (at most 100), got {_show(v)}")
    if not v.strip("."):
        raise Refusal(path, f"must not be {v!r} (a path traversal)")
    if len(v) > 200 or SHELL_METACHARACTERS.search(v) or _URL_SPECIAL.search(v):
        raise Refusal(path, f"must be at most 200 characters without control, shell or URL special characters "
                            f"(/?#%); got {_show(v)}")


def _jenkins_name(full: str, path: str) -> None:
    parts = full.split("/")
    for i, part in enumerate(parts):
        _segment(part, f"{path} segment {i + 1}")


def repo_entry(entry: str) -> str:
    """An allow-list entry (``owner/name`` or ``owner/*``) as matched (lower case); ValueError if malformed."""
    e = entry.strip().strip("/").lower()
    owner, _, name = e.rpartition("/")
    if not owner or not name or any(not x.strip(".") for x in e.split("/")):
        raise ValueError(f"repository {entry!r}: expected owner/name (or owner/*)")
    return e


@dataclass
class Step:
    """One API call of a plan: ``describe`` for dry runs and details, ``call`` to carry it out."""

    service: str
    describe: str
    call: Callable[[], Response]
    check: str = ""  # where a person sees whether the call was carried out
    #: the steps after this one make no sense if it failed (a re-run on a cache that could not be cleared)
    required: bool = False


class Executor:
    """``repos``: the repositories this executor acts on (``owner/name``, or ``owner/*`` for all of an
    owner's; case-insensitive); none: any repository (a live executor logs a warning once).
    ``runner_sizes``: what ``runner_size`` may ask for."""

    def __init__(self, clients: Clients, store: DoneStore, *, dry_run: bool = True,
                 allow: Iterable[str] = ALLOWED_ACTIONS, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, repos: Iterable[str] | None = None,
                 runner_sizes: Iterable[str] = DEFAULT_RUNNER_SIZES, slack_channel: str = "",
                 budget_slack_channel: str = "") -> None:
        self.clients = clients
        # notifications.slack.channel and cost_control.alerts.slack (budget alerts; else the first)
        self.slack_channel = slack_channel
        self.budget_slack_channel = budget_slack_channel or slack_channel
        self.store = store
        self.dry_run = dry_run
        self.allow = frozenset(allow)
        self.sleep = sleep
        self.clock = clock
        self.repos = frozenset(repo_entry(r) for r in (repos or ()))
        # a size that is not a plain word (letters, digits, _.-) is never asked for
        self.schema = parameter_schema(sz for sz in runner_sizes if _SIZE.fullmatch(sz))
        self._warned_any_repo = False

    # --- entry point -----------------------------------------------------------------------------
    def backoff_of(self, cmd: Command) -> float:
        """Seconds a live run of ``cmd`` must wait before its calls (0 for anything not to be carried out,
        a refused command included: it gets its outcome at once)."""
        if (self.dry_run or cmd.action != "retry_backoff" or cmd.action not in self.allow
                or self.store.get(cmd.command_id) is not None or self.refusal(cmd) is not None):
            return 0.0
        return self._backoff(cmd)

    # --- the checks ------------------------------------------------------------------------------
    def refusal(self, cmd: Command) -> str | None:
        """Why the executor will not act on ``cmd`` (``field: reason``); None when it is well formed."""
        try:
            self.check(cmd)
        except Refusal as exc:
            return str(exc)
        return None

    def check(self, cmd: Command) -> None:
        """Raise :class:`Refusal` unless ``cmd`` is well formed and for a repository this executor acts on
        (see the module docstring)."""
        self._check_identity(cmd)
        self._check_repository(cmd)
        self._check_parameters(cmd)
        if cmd.provider == "jenkins" and cmd.action in RERUN_ACTIONS:
            self._check_jenkins(cmd)

    @staticmethod
    def _check_identity(cmd: Command) -> None:
        _id_check(cmd.command_id, "command_id")
        if not isinstance(cmd.category, str) or not _CATEGORY.fullmatch(cmd.category):
            raise Refusal("category", f"must be a category name (a-z, 0-9, _), got {_show(cmd.category)}")
        if not 1 <= cmd.attempt <= 10_000:
            raise Refusal("attempt", f"must be >= 1 and <= 10000, got {cmd.attempt}")
        pv = cmd.provider
        owner = cmd.owner.split("/")
        if pv == "github" and len(owner) != 1:
            raise Refusal("owner", f"a GitHub owner has no '/', got {_show(cmd.owner)}")
        strict = pv != "jenkins"  # Jenkins job and folder names may hold spaces and more
        for i, part in enumerate(owner):
            _segment(part, "owner" if len(owner) == 1 else f"owner segment {i + 1}", name=strict)
        _segment(cmd.repo, "repo", name=strict)
        # GitHub job ids and GitLab job ids are numbers; Jenkins' are build numbers or names
        _segment(cmd.job_id, "job_id", numeric=pv in ("github", "gitlab"))
        if cmd.run_id:
            # GitHub run ids and GitLab pipeline ids are numbers, CircleCI workflow ids UUIDs
            _segment(cmd.run_id, "run_id", numeric=pv in ("github", "gitlab"), uuid=pv == "circleci")

    def _check_repository(self, cmd: Command) -> None:
        if not self.repos:
            return
        full = f"{cmd.owner}/{cmd.repo}".lower()
        if full in self.repos or f"{cmd.owner.lower()}/*" in self.repos:
            return
        known = ", ".join(sorted(self.repos)[:5]) + (", ..." if len(self.repos) > 5 else "")
        raise Refusal("repo", f"{cmd.owner}/{cmd.repo} is not a repository this executor acts on ({known}; "
                              "guard executor --repo)")

    def _check_parameters(self, cmd: Command) -> None:
        p = cmd.parameters
        for key, check in self.schema.get(cmd.action, {}).items():
            if p.get(key) is not None:
                check(p[key], f"parameters.{key}")
        received = p.get("failed_tests")
        if p.get("tests") and not isinstance(received, list):
            raise Refusal("parameters.failed_tests", "a command that selects tests (parameters.tests) must list the "
                                                     "failed tests the guard received")
        if isinstance(received, list):  # the command says which failed tests the guard received
            known = set(received)
            for i, t in enumerate(p.get("tests") or []):
                if t not in known:
                    raise Refusal(f"parameters.tests[{i}]", f"{_show(t)} is not among the failed tests the guard "
                                                            "received (parameters.failed_tests)")
            if p.get("test_id") is not None and p["test_id"] not in known:
                raise Refusal("parameters.test_id", f"{_show(p['test_id'])} is not among the failed tests the "
                                                    "guard received (parameters.failed_tests)")

    @staticmethod
    def _check_jenkins(cmd: Command) -> None:
        own = jenkins_full_name(cmd.owner, cmd.repo)
        job = cmd.parameters.get("jenkins_job")
        if job is not None:
            _jenkins_name(job, "parameters.jenkins_job")
            if job != own and not job.startswith(own + "/"):
                raise Refusal("parameters.jenkins_job", f"must be the repository's job {own!r} or a job inside "
                                                        f"it, got {_show(job)}")
        for name, value in jenkins_parameters(cmd).items():
            bad = SHELL_METACHARACTERS.search(value)
            if bad:
                raise Refusal(_JENKINS_SOURCE.get(name, name), f"holds a shell metacharacter {bad.group()!r}: "
                                                               f"not passed to Jenkins ({name})")

    def execute(self, cmd: Command, *, waited: bool = False) -> Outcome:
        """Carry ``cmd`` out (or answer it from the store). ``waited``: its backoff has already passed
        (the executor loop scheduled it), so do not sleep here."""
        done = self.store.get(cmd.command_id)
        if done is not None:
            return done
        if cmd.action not in self.allow:
            return self._outcome(cmd, "skipped", f"action {cmd.action!r} is not on the executor's allow-list")
        if not self.repos and not self.dry_run and not self._warned_any_repo:  # a dry run acts on nothing
            self._warned_any_repo = True
            log.warning("no repository allow-list (guard executor --repo owner/name, GUARD_EXECUTOR_REPOS): "
                        "acting on commands for any repository")
        why = self.refusal(cmd)
        if why is not None:  # before any API call, and in a dry run too
            return self._outcome(cmd, "refused", self._mask(f"refused: {why}"))
        try:
            steps, notes, wait = self._plan(cmd)
        except ValueError as exc:
            return self._outcome(cmd, "skipped", str(exc))
        if not steps:
            return self._outcome(cmd, "skipped", "; ".join(notes) or "nothing to do")
        if self.dry_run:
            what = "; ".join(s.describe for s in steps)
            pre = f"would wait {wait:g} s, then " if wait else "would "
            target = f" (target: {cmd.provider}/{cmd.owner}/{cmd.repo} job {cmd.job_id})"
            return self._outcome(cmd, "dry_run", self._mask("; ".join([pre + what + target, *notes])))
        if wait > 0 and not waited:
            self.sleep(wait)
        # write-ahead: from here on a restart does not call anything for this command again
        self.store.start(cmd, [(self._mask(s.describe), self._mask(s.check)) for s in steps], self.clock())
        results: list[str] = []
        failed: Response | None = None
        status: int | None = None
        blocker: Step | None = None  # a required step that failed: the later steps are not called
        for n, s in enumerate(steps):
            if blocker is not None:
                results.append(f"{s.describe}: not done ({blocker.describe} failed)")
                self.store.step(cmd.command_id, n, False, self._mask(results[-1]), None, False)
                continue
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
                    said = f" ({r.message})" if r.message else ""
                    results.append(f"{s.describe}: HTTP {r.status}{said}{extra}")
            else:
                failed = failed or r
                results.append(f"{s.describe}: FAILED {r.message or r.status}")
                if s.required:
                    blocker = s
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
            wait = float(seq[min(max(cmd.attempt, 1), len(seq)) - 1])
        except (TypeError, ValueError, OverflowError):
            return 0.0
        # the schema refuses longer waits; this cap holds for any caller
        return min(MAX_BACKOFF_SECONDS, max(0.0, wait)) if math.isfinite(wait) else 0.0

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
            steps = [step]
            if cmd.action == "clear_cache_retry" and isinstance(p.get("ref"), str):
                ref = p["ref"]
                # the platform's half of a fresh cache: the branch's caches go before the re-run starts
                steps.insert(0, Step("github", f"GitHub delete the Actions caches of {ref}",
                                     lambda: gh.delete_caches(cmd.owner, cmd.repo, ref),
                                     gh.caches_url(cmd.owner, cmd.repo, ref), required=True))
            note = _directive_note(cmd, "GitHub")
            if note:
                notes.append(note)
            return steps, notes
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
            steps = [step]
            if cmd.action == "clear_cache_retry":
                # GitLab fixes cache keys before a job starts: clearing the runner caches is the way
                steps.insert(0, Step("gitlab", f"GitLab clear the runner caches of {cmd.owner}/{cmd.repo}",
                                     lambda: gl.clear_runner_caches(cmd.owner, cmd.repo),
                                     f"{gl.base}/{cmd.owner}/{cmd.repo}/-/pipelines (Clear runner caches)",
                                     required=True))
            note = _directive_note(cmd, "GitLab")
            if note:
                notes.append(note)
            return steps, notes
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
            steps = [Step("circleci", f"CircleCI re-run workflow {cmd.run_id} from failed",
                          lambda: cc.rerun_workflow(cmd.run_id or "", from_failed=True),
                          cc.workflow_url(cmd.run_id))]
            if cmd.action == "clear_cache_retry":
                epoch = cache_suffix(cmd.command_id)
                steps.insert(0, Step("circleci", f"CircleCI set {CIRCLECI_CACHE_VARIABLE}={epoch} in project "
                                                 f"{cmd.owner}/{cmd.repo}",
                                     lambda: cc.set_cache_epoch(cmd.run_id or "", cmd.owner, cmd.repo, epoch),
                                     cc.project_url(cmd.owner, cmd.repo), required=True))
            note = _directive_note(cmd, "CircleCI")
            if note:
                notes.append(note)
            return steps, notes
        raise ValueError(f"unknown provider {cmd.provider!r}")

    def _notify(self, cmd: Command) -> tuple[list[Step], list[str]]:
        c = self.clients
        p = cmd.parameters
        a = cmd.action
        incident = a in ("open_incident", "escalate")
        want_slack = bool(p.get("slack", True))
        want_ticket = bool(p.get("ticket", incident or a == "quarantine_test"))
        want_page = bool(p.get("page", a == "open_incident"))
        steps: list[Step] = []
        notes: list[str] = []
        # notify_author: Slack by default, Jira / PagerDuty when the command asks (a person's heal request
        # with notify: [jira, pagerduty]). notify_budget and release_test only post: a request for more is
        # said, not dropped in silence
        if a in _SLACK_ONLY:
            for key, what, want in (("ticket", "Jira issue", want_ticket), ("page", "PagerDuty page", want_page)):
                if want:
                    notes.append(f"{what} requested ({key}) but not done: {_SLACK_ONLY[a]}")
            want_ticket, want_page = False, False
        if a == "release_test":
            want_slack = True
        text = self._text(cmd)
        if want_ticket:
            summary = self._summary(cmd)
            body = self._text(cmd, with_log=False)
            if p.get("assign_to"):  # healing.escalation.assign_to: a handle, said in the ticket
                body += f"\n\nAssign to: {plain(str(p['assign_to']), 200)}"
            log_lines = self._log_lines(cmd)  # verbatim in a code block, never read as markup
            if c.jira is None and c.servicenow is None:
                notes.append("no Jira or ServiceNow configured: no ticket")
            if c.jira is not None:
                jira = c.jira
                labels = ["healing-guard", cmd.category, a]
                steps.append(Step("jira", f"Jira issue in {jira.project}",
                                  lambda: jira.create_issue(summary, body, labels=labels, code=log_lines),
                                  jira.search_url()))
            if c.servicenow is not None:
                sn = c.servicenow
                correlation = str(p.get("incident_id") or cmd.command_id)
                urgency = 1 if a == "open_incident" else 2
                steps.append(Step("servicenow", "ServiceNow incident",
                                  lambda: sn.create_incident(summary, body, correlation_id=correlation,
                                                             urgency=urgency, code=log_lines),
                                  sn.list_url(correlation)))
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
                    if p.get(k) is not None:  # kept as JSON data, bounded
                        v = p[k]
                        details[k] = plain(v, 1024) if isinstance(v, str) else v[:100] if isinstance(v, list) else v
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
                channel = str(p.get("channel") or (self.budget_slack_channel if a == "notify_budget"
                                                    else self.slack_channel))
                if sl.channel_note(channel):
                    notes.append(sl.channel_note(channel))
                steps.append(Step("slack", f"Slack message{' to ' + channel if channel else ''}",
                                  lambda: sl.post(text, channel), sl.check(channel)))
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

    def _text(self, cmd: Command, *, with_log: bool = True) -> str:
        """The message about ``cmd`` (paragraphs); ``with_log``: with its evidence lines (Slack escapes the
        whole text; Jira gets them apart, in a code block)."""
        lines = [self._summary(cmd),
                 f"job {cmd.job_key} attempt {cmd.attempt}" + (f", run {cmd.run_id}" if cmd.run_id else ""),
                 f"why: {cmd.reason[:1000]}",
                 f"category {cmd.category} (confidence {cmd.confidence:.2f}); command {cmd.command_id}"]
        if with_log:
            lines.extend(self._log_lines(cmd))
        return "\n\n".join(lines)

    @staticmethod
    def _log_lines(cmd: Command) -> list[str]:
        return [f"line {e.line}: {' '.join(e.text[:200].splitlines())}" for e in cmd.evidence[:3]]

    def _mask(self, text: str) -> str:
        return self.clients.transport.mask(text)[:2000]

    def _outcome(self, cmd: Command, status: str, detail: str, http_status: int | None = None) -> Outcome:
        # an API's error body may echo what it was sent: nothing secret-shaped reaches guard.outcomes
        return Outcome(command_id=cmd.command_id, job_key=cmd.job_key, action=cmd.action, status=status,  # type: ignore[arg-type]
                       detail=redact(detail), http_status=http_status, ts=self.clock(), category=cmd.category)


#: command parameter -> Jenkins build parameter (one table with the directive's reader)
_JENKINS_PARAMETERS = JENKINS_PARAMETERS
#: Jenkins build parameter -> the command field it comes from (named in a refusal)
_JENKINS_SOURCE: Mapping[str, str] = {"GUARD_ACTION": "action", "GUARD_COMMAND_ID": "command_id",
                                      **{v: f"parameters.{k}" for k, v in _JENKINS_PARAMETERS.items()}}
#: notification actions that only post to Slack, and why (said when a command asks for more)
_SLACK_ONLY = {
    "notify_budget": "a budget alert only posts to Slack",
    "notify_recovery": "a recovery only posts to Slack (notifications.on_recovery)",
    "release_test": "a release only posts to Slack (the quarantine's Jira issue is not closed by the executor)",
}


def jenkins_parameters(cmd: Command) -> dict[str, str]:
    """Build parameters for a Jenkins rerun: what the command asks for, as ``GUARD_*`` strings. Lists are
    joined by a space (``tests``) or a comma (``cleanup``: its steps hold spaces); no value may hold a shell
    metacharacter (:meth:`Executor.check` refuses the command, the client the call)."""
    p = cmd.parameters
    out = {"GUARD_ACTION": cmd.action, "GUARD_COMMAND_ID": cmd.command_id}
    for k, name in _JENKINS_PARAMETERS.items():
        if k in p and p[k] is not None:
            v = p[k]
            if isinstance(v, bool):
                out[name] = "true" if v else "false"
            elif isinstance(v, list):
                out[name] = ",".join(str(x) for x in v) if k == "cleanup" else " ".join(str(x) for x in v)
            elif isinstance(v, dict):
                out[name] = json.dumps(v)
            else:
                out[name] = str(v)
    return out
