"""CI webhooks in: signature checks, delivery de-duplication and normalization to :class:`JobEvent`.

Pure code: no HTTP server, no Kafka. The receiver (not here) calls, per request::

    verify(provider, headers, body, secret)        # SignatureError -> 401
    if deduper.seen(provider, headers, body): ...  # replayed delivery -> drop (200)
    events = normalize(provider, headers, body)    # WebhookError -> 400 / dead letter

One vocabulary for all platforms: ``status`` is ``queued``, ``in_progress`` or ``completed``;
``conclusion`` is ``success``, ``failure``, ``cancelled``, ``skipped`` or ``timed_out`` once
completed, else None. Ids are kept as the platform writes them, as strings. Times are Unix seconds.

Events per platform (see :func:`parse`, which also says why an event yields nothing):

* GitHub ``workflow_job`` -> one record. ``workflow_run`` -> none: a run carries no per-job data,
  and every job of the run sends its own ``workflow_job``. ``ping`` and other events -> none.
* GitLab ``Job Hook`` (``object_kind: build``) -> one record. ``Pipeline Hook`` -> none by
  default (the Job Hook already reports every job); with ``pipeline_builds=True`` one record per
  entry of ``builds`` (for projects that only send pipeline events).
* CircleCI ``job-completed`` -> one record; ``workflow-completed`` -> none.
* Jenkins Notification plugin (``{"name", "url", "build": {"phase", "status", ...}}``) -> one
  record per phase: ``QUEUED`` queued, ``STARTED`` in_progress, ``COMPLETED`` and ``FINALIZED``
  completed (both are emitted, so that either notification setting works; the job window keeps
  the first decision).

Owner / repo:

* GitHub ``repository.full_name``; GitLab ``project.path_with_namespace`` split at the *last*
  ``/`` (subgroups stay in the owner); CircleCI ``project.slug`` ``vcs/org/repo`` -> ``org``,
  ``repo`` (GitLab-backed slugs ``circleci/<org-id>/<project-id>`` give ids).
* Jenkins: the job's full name, taken from the notification's ``url`` (``job/a/job/b/job/c/`` ->
  ``a/b/c``; falls back to ``name``): the repo is the last segment, the owner the folders before
  it, or ``jenkins`` for a top-level job. For a multibranch job the last segment is the branch.
  The build number is both ``job_id`` and ``run_id``.

Signature headers (all compared with :func:`hmac.compare_digest`; names case-insensitive):

* GitHub ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``
* GitLab ``X-Gitlab-Token: <secret>``
* CircleCI ``circleci-signature: v1=<hex HMAC-SHA256 of the body>[,v2=...]``
* Jenkins (the Notification plugin signs nothing; add one of these in front of it or with a custom
  notifier): ``X-Guard-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` (checked first when
  present) or ``X-Guard-Token: <secret>``.

Delivery ids (:func:`delivery_id`): GitHub ``X-GitHub-Delivery``; GitLab ``Idempotency-Key``
(stable across GitLab's retries), else ``X-Gitlab-Event-UUID``; CircleCI the payload ``id``;
Jenkins, and any platform whose id is missing, ``sha256:<hex of the body>``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

import orjson

from ..schemas import JobEvent, SchemaError
from ..schemas.records import PROVIDERS

__all__ = [
    "DeliveryDeduper", "JENKINS_SIGNATURE_HEADER", "JENKINS_TOKEN_HEADER", "Parsed", "SignatureError",
    "WebhookError", "delivery_id", "event_type", "normalize", "parse", "verify",
]

JENKINS_TOKEN_HEADER = "X-Guard-Token"
JENKINS_SIGNATURE_HEADER = "X-Guard-Signature-256"

Headers = Union[Mapping[str, str], Iterable[tuple[str, str]], None]


class WebhookError(SchemaError):
    """A webhook body the guard cannot use; ``field`` names the offending field (dotted path).

    A :class:`~healing_guard.schemas.SchemaError`, so a receiver can dead-letter it like any other
    undecodable message (HTTP 400).
    """


class SignatureError(Exception):
    """The request is not signed with the configured secret (HTTP 401)."""


@dataclass
class Parsed:
    """What :func:`parse` made of one delivery: the records, or why there are none."""

    events: list[JobEvent] = field(default_factory=list)
    event: str | None = None  # the platform's event type, e.g. "workflow_job", "Job Hook"
    skipped: str | None = None  # set when the delivery is valid but yields no record


# --------------------------------------------------------------------------------------- helpers


def _headers(headers: Headers) -> dict[str, str]:
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(k).strip().lower(): str(v).strip() for k, v in items}


def _provider(provider: str) -> str:
    p = (provider or "").strip().lower()
    if p not in PROVIDERS:
        raise WebhookError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}", "provider")
    return p


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookError(f"not valid JSON/UTF-8: {exc}", "body") from None
    if not isinstance(data, dict):
        raise WebhookError(f"expected a JSON object, got {type(data).__name__}", "body")
    return data


_MISSING = object()

#: longest string the guard takes from a payload field (names, ids, urls, labels): every platform's own
#: limits are far lower, and the job record must stay within the ``ci.jobs`` message limit
MAX_FIELD_CHARS = 4096


def _get(obj: Any, path: str, default: Any = _MISSING, *, kind: type | tuple[type, ...] | None = None) -> Any:
    """``obj[a][b]...`` for ``path='a.b'``; raises WebhookError naming the path when missing/null."""
    cur = obj
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if not isinstance(cur, dict):
            raise WebhookError("expected an object", ".".join(walked[:-1]) or "body")
        cur = cur.get(part)
        if cur is None:
            if default is not _MISSING:
                return default
            raise WebhookError("required field is missing", path)
    if kind is not None and (not isinstance(cur, kind) or isinstance(cur, bool) and bool not in _tuple(kind)):
        names = "/".join(k.__name__ for k in _tuple(kind))
        raise WebhookError(f"expected {names}, got {type(cur).__name__}", path)
    if isinstance(cur, str) and len(cur) > MAX_FIELD_CHARS:
        raise WebhookError(f"longer than {MAX_FIELD_CHARS} characters", path)
    return cur


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _id(obj: Any, path: str, default: Any = _MISSING) -> Any:
    v = _get(obj, path, default, kind=(int, str))
    if v is None:
        return None
    s = str(v)
    if not s:
        raise WebhookError("must not be empty", path)
    return s


def _str(obj: Any, path: str, default: Any = _MISSING) -> Any:
    return _get(obj, path, default, kind=str)


_GITLAB_TS = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*(UTC|Z|[+-]\d{2}:?\d{2})?$")


def _ts(obj: Any, path: str) -> float | None:
    """ISO 8601 (``...Z``, ``+01:00``) or GitLab's ``2021-02-23 02:41:37 UTC`` -> Unix seconds."""
    v = _get(obj, path, None)
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if not isinstance(v, str):
        raise WebhookError(f"expected a timestamp, got {type(v).__name__}", path)
    m = _GITLAB_TS.match(v.strip())
    if not m:
        raise WebhookError(f"not a timestamp: {v!r}", path)
    date, time, tz = m.groups()
    tz = "+00:00" if tz in (None, "UTC", "Z") else tz
    if len(tz) == 5:  # +0100
        tz = tz[:3] + ":" + tz[3:]
    try:
        return datetime.fromisoformat(f"{date}T{time}{tz}").astimezone(timezone.utc).timestamp()
    except (ValueError, OverflowError):  # OverflowError: year 1 / 9999 pushed out of range by the offset
        raise WebhookError(f"not a timestamp: {v!r}", path) from None


def _split_last(full: str, path: str) -> tuple[str, str]:
    full = full.strip("/")
    if "/" not in full:
        raise WebhookError(f"expected 'owner/name', got {full!r}", path)
    owner, _, repo = full.rpartition("/")
    if not owner or not repo:
        raise WebhookError(f"expected 'owner/name', got {full!r}", path)
    return owner, repo


def _labels(v: Any, path: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise WebhookError("expected a list of strings", path)
    if len(v) > 100 or any(len(x) > MAX_FIELD_CHARS for x in v):
        raise WebhookError(f"at most 100 labels of at most {MAX_FIELD_CHARS} characters", path)
    return list(v)


def _event(provider: str, **kw: Any) -> JobEvent:
    ev = JobEvent(provider=provider, **kw)  # type: ignore[arg-type]
    try:
        ev.validate()
    except SchemaError as exc:
        raise WebhookError(exc.reason, exc.field) from None
    size = len(ev.to_json())
    if size > JobEvent.max_bytes:  # the worker would dead-letter it after the platform got a 202
        raise WebhookError(f"the job record would be {size} bytes, over the ci.jobs limit of {JobEvent.max_bytes}",
                           "body")
    return ev


# ------------------------------------------------------------------------------------ event type


def event_type(provider: str, headers: Headers, data: Mapping[str, Any]) -> str | None:
    """The platform's event type: from its header when given, else inferred from the payload."""
    p = _provider(provider)
    h = _headers(headers)
    if p == "github":
        if h.get("x-github-event"):
            return h["x-github-event"]
        for key in ("workflow_job", "workflow_run", "check_run", "check_suite"):
            if key in data:
                return key
        return "ping" if "zen" in data else None
    if p == "gitlab":
        if h.get("x-gitlab-event"):
            return h["x-gitlab-event"]
        kind = data.get("object_kind")
        return {"build": "Job Hook", "pipeline": "Pipeline Hook"}.get(kind, kind) if isinstance(kind, str) else None
    if p == "circleci":
        t = data.get("type") or h.get("circleci-event-type")
        return t if isinstance(t, str) else None
    build = data.get("build")
    return "build" if isinstance(build, dict) else None


# ------------------------------------------------------------------------------------- normalize


def normalize(provider: str, headers: Headers, body: bytes, *, pipeline_builds: bool = False) -> list[JobEvent]:
    """The job records of one delivery ([] for an event the guard does not use).

    Raises :class:`WebhookError` (with ``field``) on an unknown provider, malformed JSON or a
    missing / mistyped field.
    """
    return parse(provider, headers, body, pipeline_builds=pipeline_builds).events


def parse(provider: str, headers: Headers, body: bytes, *, pipeline_builds: bool = False) -> Parsed:
    """Like :func:`normalize`, and says which event it saw and why it yields nothing."""
    p = _provider(provider)
    data = _load(body)
    ev = event_type(p, headers, data)
    if p == "github":
        return _github(data, ev)
    if p == "gitlab":
        return _gitlab(data, ev, pipeline_builds)
    if p == "circleci":
        return _circleci(data, ev)
    return _jenkins(data, ev)


# GitHub ---------------------------------------------------------------------------------------

_GH_STATUS = {"queued": "queued", "waiting": "queued", "pending": "queued", "requested": "queued",
              "in_progress": "in_progress", "completed": "completed"}
_GH_CONCLUSION = {"success": "success", "neutral": "success", "failure": "failure",
                  "action_required": "failure", "startup_failure": "failure", "cancelled": "cancelled",
                  "stale": "cancelled", "skipped": "skipped", "timed_out": "timed_out"}


def _github(data: dict[str, Any], ev: str | None) -> Parsed:
    if ev != "workflow_job":
        why = ("workflow_run carries no per-job data; jobs come from workflow_job events"
               if ev == "workflow_run" else f"event {ev or 'unknown'!r} is not used")
        return Parsed(event=ev, skipped=why)
    job = _get(data, "workflow_job", kind=dict)
    owner, repo = _split_last(_str(data, "repository.full_name"), "repository.full_name")
    raw_status = _str(data, "workflow_job.status", None) or _str(data, "action")
    status = _GH_STATUS.get(raw_status)
    if status is None:
        raise WebhookError(f"unknown status {raw_status!r}", "workflow_job.status")
    conclusion = None
    if status == "completed":
        raw = _str(job, "conclusion", None)
        if raw is None:
            raise WebhookError("required when status is completed", "workflow_job.conclusion")
        conclusion = _GH_CONCLUSION.get(raw)
        if conclusion is None:
            raise WebhookError(f"unknown conclusion {raw!r}", "workflow_job.conclusion")
    attempt = _get(job, "run_attempt", 1, kind=int)
    return Parsed([_event(
        "github", owner=owner, repo=repo,
        job_id=_id(data, "workflow_job.id"),
        job_name=_str(data, "workflow_job.name"),
        status=status, conclusion=conclusion, attempt=attempt,
        run_id=_id(data, "workflow_job.run_id", None),
        workflow=_str(job, "workflow_name", None),
        runner_labels=_labels(job.get("labels"), "workflow_job.labels"),
        branch=_str(job, "head_branch", None),
        head_sha=_str(job, "head_sha", None),
        queued_at=_ts(data, "workflow_job.created_at"),
        # GitHub fills started_at with the creation time while a job is still queued.
        started_at=_ts(data, "workflow_job.started_at") if status != "queued" else None,
        completed_at=_ts(data, "workflow_job.completed_at") if status == "completed" else None,
        url=_str(job, "html_url", None),
    )], event=ev)


# GitLab ---------------------------------------------------------------------------------------

_GL_STATUS: dict[str, tuple[str, str | None]] = {
    "created": ("queued", None), "pending": ("queued", None), "waiting_for_resource": ("queued", None),
    "preparing": ("queued", None), "scheduled": ("queued", None), "manual": ("queued", None),
    "waiting_for_callback": ("in_progress", None),
    "running": ("in_progress", None), "canceling": ("in_progress", None),
    "success": ("completed", "success"), "failed": ("completed", "failure"),
    "canceled": ("completed", "cancelled"), "cancelled": ("completed", "cancelled"),
    "skipped": ("completed", "skipped"),
}
_GL_TIMEOUT_REASONS = {"job_execution_timeout", "stuck_or_timeout_failure"}


def _gl_status(raw: str, failure_reason: Any, path: str) -> tuple[str, str | None]:
    st = _GL_STATUS.get(raw)
    if st is None:
        raise WebhookError(f"unknown status {raw!r}", path)
    # failure_reason is not checked elsewhere: a list or object here must not raise (unhashable)
    if st == ("completed", "failure") and isinstance(failure_reason, str) and failure_reason in _GL_TIMEOUT_REASONS:
        return "completed", "timed_out"
    return st


def _gl_project(data: dict[str, Any]) -> tuple[str, str]:
    full = _str(data, "project.path_with_namespace")
    return _split_last(full, "project.path_with_namespace")


def _gitlab(data: dict[str, Any], ev: str | None, pipeline_builds: bool) -> Parsed:
    kind = data.get("object_kind")
    if ev == "Job Hook" or (ev is None and kind == "build"):
        return Parsed([_gitlab_job(data)], event=ev)
    if ev == "Pipeline Hook":
        if not pipeline_builds:
            return Parsed(event=ev, skipped="pipeline events are not expanded; jobs come from Job Hook events")
        return Parsed(_gitlab_pipeline(data), event=ev)
    return Parsed(event=ev, skipped=f"event {ev or 'unknown'!r} is not used")


def _gitlab_job(data: dict[str, Any]) -> JobEvent:
    if data.get("object_kind") not in (None, "build"):
        raise WebhookError(f"expected 'build' for a Job Hook, got {data.get('object_kind')!r}", "object_kind")
    owner, repo = _gl_project(data)
    status, conclusion = _gl_status(_str(data, "build_status"), data.get("build_failure_reason"), "build_status")
    job_id = _id(data, "build_id")
    web = _str(data, "project.web_url", None)
    retries = _get(data, "retries_count", 0, kind=int)
    return _event(
        "gitlab", owner=owner, repo=repo, job_id=job_id,
        job_name=_str(data, "build_name"),
        status=status, conclusion=conclusion, attempt=retries + 1,
        run_id=_id(data, "pipeline_id", None),
        workflow=_str(data, "build_stage", None),
        runner_labels=_labels(_get(data, "runner.tags", None), "runner.tags"),
        branch=_str(data, "ref", None),
        head_sha=_str(data, "sha", None),
        queued_at=_ts(data, "build_created_at"),
        started_at=_ts(data, "build_started_at"),
        completed_at=_ts(data, "build_finished_at") if status == "completed" else None,
        url=f"{web.rstrip('/')}/-/jobs/{job_id}" if web else None,
    )


def _gitlab_pipeline(data: dict[str, Any]) -> list[JobEvent]:
    if data.get("object_kind") not in (None, "pipeline"):
        raise WebhookError(f"expected 'pipeline' for a Pipeline Hook, got {data.get('object_kind')!r}",
                           "object_kind")
    owner, repo = _gl_project(data)
    run_id = _id(data, "object_attributes.id")
    builds = _get(data, "builds", [], kind=list)
    web = _str(data, "project.web_url", None)
    out = []
    for i, b in enumerate(builds):
        path = f"builds.{i}"
        if not isinstance(b, dict):
            raise WebhookError("expected an object", path)
        try:
            status, conclusion = _gl_status(_str(b, "status"), b.get("failure_reason"), "status")
            job_id = _id(b, "id")
            out.append(_event(
                "gitlab", owner=owner, repo=repo, job_id=job_id,
                job_name=_str(b, "name"), status=status, conclusion=conclusion,
                run_id=run_id, workflow=_str(b, "stage", None),
                runner_labels=_labels(_get(b, "runner.tags", None), "runner.tags"),
                branch=_str(data, "object_attributes.ref", None),
                head_sha=_str(data, "object_attributes.sha", None),
                queued_at=_ts(b, "created_at"), started_at=_ts(b, "started_at"),
                completed_at=_ts(b, "finished_at") if status == "completed" else None,
                url=f"{web.rstrip('/')}/-/jobs/{job_id}" if web else None,
            ))
        except WebhookError as exc:
            raise WebhookError(exc.reason, f"{path}.{exc.field}" if exc.field else path) from None
    return out


# CircleCI -------------------------------------------------------------------------------------

_CC_STATUS: dict[str, tuple[str, str | None]] = {
    "queued": ("queued", None), "not_running": ("queued", None), "on_hold": ("queued", None),
    "blocked": ("queued", None), "running": ("in_progress", None),
    "success": ("completed", "success"), "fixed": ("completed", "success"), "failed": ("completed", "failure"),
    "infrastructure_fail": ("completed", "failure"), "unauthorized": ("completed", "failure"),
    "terminated-unknown": ("completed", "failure"), "canceled": ("completed", "cancelled"),
    "cancelled": ("completed", "cancelled"), "timedout": ("completed", "timed_out"),
    "not_run": ("completed", "skipped"),
}


def _circleci(data: dict[str, Any], ev: str | None) -> Parsed:
    if ev != "job-completed":
        why = ("workflow-completed carries no per-job data; jobs come from job-completed events"
               if ev == "workflow-completed" else f"event {ev or 'unknown'!r} is not used")
        return Parsed(event=ev, skipped=why)
    slug = _str(data, "project.slug")
    parts = slug.strip("/").split("/")
    if len(parts) < 3 or not all(parts):
        raise WebhookError(f"expected 'vcs/org/repo', got {slug!r}", "project.slug")
    owner, repo = parts[-2], parts[-1]
    job = _get(data, "job", kind=dict)
    raw = _str(data, "job.status")
    st = _CC_STATUS.get(raw)
    if st is None:
        raise WebhookError(f"unknown status {raw!r}", "job.status")
    status, conclusion = st
    number = _id(job, "number", None)
    job_id = number if number is not None else _id(data, "job.id")
    vcs = data.get("pipeline", {}).get("vcs") if isinstance(data.get("pipeline"), dict) else None
    git = _get(data, "pipeline.trigger_parameters.git", None)
    branch = sha = None
    if isinstance(vcs, dict):
        branch, sha = vcs.get("branch"), vcs.get("revision")
    if isinstance(git, dict):
        branch = branch or git.get("branch")
        sha = sha or git.get("checkout_sha")
    wf_url = _str(data, "workflow.url", None)
    return Parsed([_event(
        "circleci", owner=owner, repo=repo, job_id=job_id,
        job_name=_str(data, "job.name"), status=status, conclusion=conclusion,
        run_id=_id(data, "workflow.id", None), workflow=_str(data, "workflow.name", None),
        branch=branch if isinstance(branch, str) else None,
        head_sha=sha if isinstance(sha, str) else None,
        started_at=_ts(data, "job.started_at"),
        completed_at=_ts(data, "job.stopped_at") if status == "completed" else None,
        url=f"{wf_url.rstrip('/')}/jobs/{number}" if wf_url and number else wf_url,
    )], event=ev)


# Jenkins --------------------------------------------------------------------------------------

_JK_PHASE = {"QUEUED": "queued", "STARTED": "in_progress", "COMPLETED": "completed", "FINALIZED": "completed"}
_JK_RESULT = {"SUCCESS": "success", "FAILURE": "failure", "UNSTABLE": "failure", "ABORTED": "cancelled",
              "NOT_BUILT": "skipped"}


def _jenkins_full_name(data: dict[str, Any]) -> str:
    url = data.get("url")
    if isinstance(url, str) and len(url) > MAX_FIELD_CHARS:
        raise WebhookError(f"longer than {MAX_FIELD_CHARS} characters", "url")
    if isinstance(url, str) and url:
        segs = [s for s in url.strip("/").split("/") if s]
        names = [segs[i + 1] for i in range(len(segs) - 1) if segs[i] == "job"]
        if names:
            return "/".join(names)
    return _str(data, "name")


def _jenkins(data: dict[str, Any], ev: str | None) -> Parsed:
    if ev != "build":
        raise WebhookError("required field is missing", "build")
    full = _jenkins_full_name(data)
    owner, _, repo = full.strip("/").rpartition("/")
    owner = owner or "jenkins"
    if not repo:
        raise WebhookError("must not be empty", "name")
    phase = _str(data, "build.phase").upper()
    status = _JK_PHASE.get(phase)
    if status is None:
        raise WebhookError(f"unknown phase {phase!r}", "build.phase")
    conclusion = None
    if status == "completed":
        raw = _str(data, "build.status").upper()
        conclusion = _JK_RESULT.get(raw)
        if conclusion is None:
            raise WebhookError(f"unknown status {raw!r}", "build.status")
    number = _id(data, "build.number")
    started_ms = _get(data, "build.timestamp", None, kind=(int, float))
    duration_ms = _get(data, "build.duration", None, kind=(int, float))
    started = started_ms / 1000.0 if started_ms is not None and status != "queued" else None
    completed = (started_ms + duration_ms) / 1000.0 if (
        status == "completed" and started_ms is not None and duration_ms) else None
    branch = _get(data, "build.scm.branch", None, kind=str)
    return Parsed([_event(
        "jenkins", owner=owner, repo=repo, job_id=number,
        job_name=_str(data, "display_name", None) or _str(data, "name", None) or repo,
        status=status, conclusion=conclusion, run_id=number, workflow=full,
        branch=branch, head_sha=_get(data, "build.scm.commit", None, kind=str),
        started_at=started, completed_at=completed,
        url=_str(data, "build.full_url", None),
    )], event=ev)


# ------------------------------------------------------------------------------------ signatures


def _enc(s: str) -> bytes:
    """A header value or secret as bytes: undecodable header bytes come back as they were sent
    (surrogateescape); any other lone surrogate is encoded losslessly instead of raising."""
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


def _hmac_hex(secret: str, body: bytes) -> bytes:
    return hmac.new(_enc(secret), body, hashlib.sha256).hexdigest().encode()


def _eq(a: bytes, b: str) -> bool:
    return hmac.compare_digest(a, _enc(b))


def verify(provider: str, headers: Headers, body: bytes, secret: str) -> None:
    """Raise :class:`SignatureError` unless the delivery is signed with ``secret``."""
    p = _provider(provider)
    if not secret:
        raise SignatureError("no webhook secret is configured")
    h = _headers(headers)

    def need(name: str) -> str:
        v = h.get(name.lower())
        if not v:
            raise SignatureError(f"missing header {name}")
        return v

    if p == "github":
        sig = need("X-Hub-Signature-256")
        if not _eq(b"sha256=" + _hmac_hex(secret, body), sig.lower()):
            raise SignatureError("X-Hub-Signature-256 does not match")
    elif p == "gitlab":
        if not _eq(_enc(secret), need("X-Gitlab-Token")):
            raise SignatureError("X-Gitlab-Token does not match")
    elif p == "circleci":
        sig = need("circleci-signature")
        want = _hmac_hex(secret, body)
        ok = False
        for part in sig.split(","):
            version, _, value = part.strip().partition("=")
            if version == "v1" and _eq(want, value.strip().lower()):
                ok = True
        if not ok:
            raise SignatureError("circleci-signature has no matching v1 signature")
    else:
        if h.get(JENKINS_SIGNATURE_HEADER.lower()):
            sig = h[JENKINS_SIGNATURE_HEADER.lower()]
            if not _eq(b"sha256=" + _hmac_hex(secret, body), sig.lower()):
                raise SignatureError(f"{JENKINS_SIGNATURE_HEADER} does not match")
        elif h.get(JENKINS_TOKEN_HEADER.lower()):
            if not _eq(_enc(secret), h[JENKINS_TOKEN_HEADER.lower()]):
                raise SignatureError(f"{JENKINS_TOKEN_HEADER} does not match")
        else:
            raise SignatureError(f"missing header {JENKINS_SIGNATURE_HEADER} or {JENKINS_TOKEN_HEADER}")


# ---------------------------------------------------------------------------------------- dedupe


def delivery_id(provider: str, headers: Headers, body: bytes) -> str:
    """The id a platform gives one delivery (kept across its retries), else a hash of the body."""
    p = _provider(provider)
    h = _headers(headers)
    did: Optional[str] = None
    if p == "github":
        did = h.get("x-github-delivery")
    elif p == "gitlab":
        did = h.get("idempotency-key") or h.get("x-gitlab-event-uuid")
    elif p == "circleci":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("id"), str) and data["id"]:
            did = data["id"]
    return did or "sha256:" + hashlib.sha256(body).hexdigest()


class DeliveryDeduper:
    """Remembers the last ``capacity`` deliveries (LRU), by the SHA-256 of their signed body: a captured
    delivery posted again, under a new delivery-id header or none, is reported as seen (the headers are
    not signed; the body is, and a platform's redelivery repeats it byte for byte). With ``path`` the
    memory survives a restart: each delivery is appended to that file (``+ provider hash``, ``-`` when
    forgotten again) and read back on start; the file is rewritten when it holds twice ``capacity``."""

    def __init__(self, capacity: int = 100_000, path: str | os.PathLike[str] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self.path = Path(path) if path is not None else None
        self._lines = 0
        self._fp: Any = None
        if self.path is not None:
            self._load()

    def __len__(self) -> int:
        return len(self._ids)

    @staticmethod
    def _key(provider: str, body: bytes) -> tuple[str, str]:
        return (_provider(provider), hashlib.sha256(body).hexdigest())

    def forget(self, provider: str, headers: Headers, body: bytes) -> None:
        """Drop a delivery again (its records could not be published: the platform's retry must pass)."""
        key = self._key(provider, body)
        with self._lock:
            self._ids.pop(key, None)
            self._log("-", key)

    def seen(self, provider: str, headers: Headers, body: bytes) -> bool:
        """True when this delivery was seen before (the caller drops it); else remember it."""
        key = self._key(provider, body)
        with self._lock:
            if key in self._ids:
                self._ids.move_to_end(key)
                return True
            self._ids[key] = None
            if len(self._ids) > self.capacity:
                self._ids.popitem(last=False)
            self._log("+", key)
            return False

    # --- the file ----------------------------------------------------------------------------------
    def _load(self) -> None:
        assert self.path is not None
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] not in "+-" or len(parts[2]) != 64:
                continue  # a torn last line after a crash, or garbage: skipped
            key = (parts[1], parts[2])
            if parts[0] == "+":
                self._ids[key] = None
                self._ids.move_to_end(key)
                if len(self._ids) > self.capacity:
                    self._ids.popitem(last=False)
            else:
                self._ids.pop(key, None)
            self._lines += 1
        self._compact()

    def _log(self, op: str, key: tuple[str, str]) -> None:
        if self.path is None:
            return
        if self._lines >= 2 * self.capacity:
            self._compact()
        if self._fp is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fp = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open: one write a delivery)
        self._fp.write(f"{op} {key[0]} {key[1]}\n")
        self._fp.flush()  # in the kernel before the delivery is answered: a killed receiver keeps it
        self._lines += 1

    def _compact(self) -> None:
        """Rewrite the file with what is remembered (atomically), so it stays about ``capacity`` lines."""
        assert self.path is not None
        if self._fp is not None:
            self._fp.close()
            self._fp = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(f"+ {p} {h}\n" for p, h in self._ids), encoding="utf-8")
        os.replace(tmp, self.path)
        self._lines = len(self._ids)

    def close(self) -> None:
        with self._lock:
            if self._fp is not None:
                self._fp.close()
                self._fp = None
