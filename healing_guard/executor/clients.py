"""Small HTTP clients for the CI platforms and notification services the executor calls.

Stdlib only (``urllib.request``). Each client has a base URL so tests point it at a local server.
Every call goes through :class:`Transport`, which owns the retry rules. They rest on one question:
*could the platform have carried the call out although we got no success answer?*

* **not done** -- the platform says so, or the request never reached it: 429, or 403 with
  ``X-RateLimit-Remaining: 0`` / ``Retry-After`` (GitHub's primary/secondary limits); 500, 503 and any
  other 5xx but 502/504; connection refused, DNS failure, connect timeout (``urllib`` raises
  ``URLError`` only while connecting and sending). Always safe to try again: wait for ``Retry-After``
  (seconds or an HTTP date; on 429/403/5xx) or ``X-RateLimit-Reset`` (epoch seconds), else the
  exponential backoff (1, 2, 4 ... s), then retry, up to ``max_attempts`` attempts in all; a wait over
  ``max_wait_seconds`` is refused at once (the result says how long the platform asked for);
* **ambiguous** -- the request was sent and no answer says what happened: read timeout, connection
  reset or closed before the status line, 502/504 from a proxy or load balancer in front of the API.
  The platform may have done it. Such a failure is retried only for a call that is *safe to repeat*
  (``repeat_safe``): one the platform itself refuses to do twice, or deduplicates:

  - GitHub ``.../actions/jobs/{id}/rerun`` and ``.../runs/{id}/rerun-failed-jobs``: while the run is
    re-running GitHub answers ``403 This workflow is already running``;
  - GitLab ``.../jobs/{id}/retry``: a job that was retried is no longer retryable, GitLab answers
    ``403 Forbidden - Job is not retryable``;
  - PagerDuty Events v2 ``trigger`` with a ``dedup_key``: a repeat joins the open alert.

  When a repeat after an ambiguous attempt gets that "already running / not retryable" refusal, the
  first attempt went through: the call counts as succeeded (``Response.already_done``).
  Calls not safe to repeat -- Slack incoming webhook, Jira create issue, CircleCI workflow rerun,
  Jenkins ``buildWithParameters``, GitLab pipeline retry -- are **not** retried after an ambiguous
  failure: the result is a failure whose message says it may have gone through, that it was not
  repeated so it cannot run twice, and where to check;
* any other 4xx: no retry, the result carries the status and the body's message (truncated).

A 2xx whose body could not be read is a success (the status line says it was done).

What the clients refuse to send (the executor's own checks, :mod:`.core`, refuse such commands first; these
are the last line): every path segment of every platform URL -- API and web link alike -- is URL-encoded,
and an empty, ``.`` or ``..`` segment, or one with a control character, is refused; a Jenkins build
parameter with a shell metacharacter (:data:`SHELL_METACHARACTERS`) is refused. A refused call is not
sent: its result is a failure saying why. Text that reaches people is kept as data: Slack messages are
escaped (``&``, ``<``, ``>``: no ``<!channel>`` or ``<url|label>`` from a log line), Jira issues are
Atlassian Document Format (no wiki markup is interpreted) with log lines in a code block, PagerDuty
fields are JSON strings of bounded length.

Tokens never reach a log or a result: every secret a client holds is registered with the transport,
which masks it in any text it returns.

Configuration (read once at the entry point by :meth:`Clients.from_env`; a service whose variables are
unset is not configured, and actions that need it are skipped with a reason):

====================================  ====================================================
``GUARD_GITHUB_TOKEN``                GitHub token (Actions: write); ``GUARD_GITHUB_API_URL``
                                      (default ``https://api.github.com``; GHES: ``https://HOST/api/v3``)
``GUARD_GITLAB_TOKEN``                GitLab ``PRIVATE-TOKEN``; ``GUARD_GITLAB_URL`` (default ``https://gitlab.com``)
``GUARD_JENKINS_URL``                 Jenkins root URL, with ``GUARD_JENKINS_USER`` / ``GUARD_JENKINS_TOKEN``
                                      (API token: no CSRF crumb needed)
``GUARD_CIRCLECI_TOKEN``              CircleCI personal API token; ``GUARD_CIRCLECI_URL`` (default ``https://circleci.com``)
``GUARD_SLACK_WEBHOOK_URL``           Slack incoming webhook (the URL is the secret)
``GUARD_SLACK_BOT_TOKEN``             Slack bot token (``chat:write``): messages for a named channel go
                                      through ``chat.postMessage``; ``GUARD_SLACK_API_URL`` (default
                                      ``https://slack.com/api``)
``GUARD_JIRA_URL``                    Jira Cloud site, with ``GUARD_JIRA_USER`` (e-mail), ``GUARD_JIRA_TOKEN``,
                                      ``GUARD_JIRA_PROJECT`` (project key) and optional ``GUARD_JIRA_ISSUE_TYPE``
                                      (default ``Task``)
``GUARD_SERVICENOW_URL``              ServiceNow instance, with ``GUARD_SERVICENOW_USER`` /
                                      ``GUARD_SERVICENOW_PASSWORD`` and optional
                                      ``GUARD_SERVICENOW_ASSIGNMENT_GROUP``: tickets as incidents
``GUARD_PAGERDUTY_ROUTING_KEY``       PagerDuty Events API v2 integration key; ``GUARD_PAGERDUTY_URL``
                                      (default ``https://events.pagerduty.com``)
``GUARD_EXECUTOR_MAX_WAIT_SECONDS``   longest rate-limit wait before giving up (default 300)
``GUARD_EXECUTOR_MAX_ATTEMPTS``       attempts per call, first included (default 4)
``GUARD_EXECUTOR_TIMEOUT_SECONDS``    socket timeout per request (default 30)
====================================  ====================================================
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Callable

USER_AGENT = "healing-guard-executor/0.1"
MAX_MESSAGE = 300
#: answers from a gateway in front of the API: the request may have reached the API and been carried out
AMBIGUOUS_STATUSES = frozenset({502, 504})


@dataclass(frozen=True)
class Response:
    """The result of one logical API call (after the transport's retries)."""

    status: int | None  # None: no HTTP answer (network error)
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str = ""  # why it failed, secrets masked, truncated
    attempts: int = 1
    waited_seconds: float = 0.0
    #: sent, but no answer says whether the platform carried it out (read timeout, reset, 502/504)
    ambiguous: bool = False
    #: an earlier, ambiguous attempt went through: a repeat was refused as "already running"
    already_done: bool = False

    @property
    def ok(self) -> bool:
        return self.already_done or (self.status is not None and 200 <= self.status < 300)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


@dataclass
class RetryPolicy:
    max_attempts: int = 4
    max_wait_seconds: float = 300.0  # longest single rate-limit wait we accept
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    timeout_seconds: float = 30.0

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_max_seconds, self.backoff_base_seconds * (2 ** (attempt - 1)))


class Transport:
    """``urllib`` with the retry rules above, an injected ``sleep``/``clock``, and secret masking."""

    def __init__(self, policy: RetryPolicy | None = None, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, proxies: Mapping[str, str] | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        handlers: list[Any] = [] if proxies is None else [urllib.request.ProxyHandler(dict(proxies))]
        self._opener = urllib.request.build_opener(*handlers)
        self._secrets: set[str] = set()

    def add_secret(self, *secrets: str | None) -> None:
        for s in secrets:
            if s:
                self._secrets.add(s)
                self._secrets.add(urllib.parse.quote(s, safe=""))

    def mask(self, text: str) -> str:
        for s in sorted(self._secrets, key=len, reverse=True):
            if s and s in text:
                text = text.replace(s, "***")
        return text

    # --- one call, retried ---------------------------------------------------------------------
    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                json_body: Any = None, data: bytes | None = None, repeat_safe: bool = False,
                already_done: Callable[[Response], bool] | None = None, check: str = "") -> Response:
        """One logical call with the retry rules of the module docstring.

        ``repeat_safe``: the platform refuses or deduplicates a repeat, so an ambiguous failure (sent, no
        answer) may be retried. ``already_done``: recognises the platform's refusal of a repeat ("already
        running"), which after an ambiguous attempt means that attempt went through. ``check``: where a
        person can see whether the call was carried out (said when it may have been).
        """
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        where = self.mask(check or f"{method} {url}")
        waited = 0.0
        maybe_done = False  # an earlier attempt was sent and may have been carried out
        last: Response | None = None
        for attempt in range(1, self.policy.max_attempts + 1):
            resp = replace(self._once(method, url, hdrs, data), attempts=attempt, waited_seconds=waited)
            if resp.ok:
                return resp
            if maybe_done and already_done is not None and already_done(resp):
                return replace(resp, already_done=True, message=self.mask(
                    f"went through on an earlier attempt that got no answer (the repeat got {resp.message})"))
            if resp.ambiguous:
                maybe_done = True
                if not repeat_safe:
                    return replace(resp, message=self.mask(
                        f"{resp.message}; it may have gone through: not repeated, so it cannot run twice; "
                        f"check {where}") + _after(attempt))
            last = resp
            wait = self._retry_wait(resp, attempt)
            if wait is None or attempt == self.policy.max_attempts:
                break
            if wait > self.policy.max_wait_seconds:
                return replace(resp, ambiguous=maybe_done, message=(
                    f"{resp.message}; asked to wait {wait:.0f} s, over the {self.policy.max_wait_seconds:.0f} s "
                    "the executor waits (GUARD_EXECUTOR_MAX_WAIT_SECONDS)") + _maybe(maybe_done, where))
            if wait > 0:
                self.sleep(wait)
                waited += wait
        assert last is not None
        if last.attempts > 1 or maybe_done:
            return replace(last, ambiguous=maybe_done, message=(
                f"{last.message} (gave up after {last.attempts} attempts)" if last.attempts > 1 else last.message)
                + _maybe(maybe_done, where))
        return last

    def _once(self, method: str, url: str, headers: Mapping[str, str], data: bytes | None) -> Response:
        req = urllib.request.Request(url, data=data, headers=dict(headers), method=method)
        timeout = self.policy.timeout_seconds
        try:
            r = self._opener.open(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read() or b""
            except (OSError, http.client.HTTPException):
                body = b""
            hdrs = {k.lower(): v for k, v in (exc.headers.items() if exc.headers else [])}
            return Response(exc.code, body, hdrs, self.mask(f"HTTP {exc.code}: {_error_message(body, exc.reason)}"),
                            ambiguous=exc.code in AMBIGUOUS_STATUSES)
        except urllib.error.URLError as exc:
            # urllib wraps only what fails while connecting and sending: the platform has not got the request
            return Response(None, b"", {}, self.mask(f"network error: {_reason(exc.reason, timeout)}")[:MAX_MESSAGE])
        except (OSError, http.client.HTTPException) as exc:
            # sent, then no status line: read timeout, reset, closed -- the platform may have carried it out
            return Response(None, b"", {}, self.mask(f"network error after the request was sent: no answer "
                                                     f"({_reason(exc, timeout)})")[:MAX_MESSAGE], ambiguous=True)
        with r:
            hdrs = {k.lower(): v for k, v in r.headers.items()}
            try:
                body = r.read()
            except (OSError, http.client.HTTPException) as exc:
                # the status line said it was done; only the body is lost
                return Response(r.status, b"", hdrs, self.mask(f"answer body lost ({_reason(exc, timeout)})"))
            return Response(r.status, body, hdrs)

    def _retry_wait(self, resp: Response, attempt: int) -> float | None:
        """Seconds to wait before the next attempt; None: do not retry."""
        st = resp.status
        h = resp.headers
        # 403 counts as a rate limit only with GitHub's signals (exhausted quota, or a secondary limit's
        # Retry-After); any other 403 is a permission error and is not retried
        limited = st == 429 or (st == 403 and (h.get("x-ratelimit-remaining") == "0" or "retry-after" in h))
        if limited or (st is not None and st >= 500):
            wait = _retry_after(h.get("retry-after"), self.clock())
            if wait is None and limited and h.get("x-ratelimit-reset"):
                try:
                    wait = max(0.0, float(h["x-ratelimit-reset"]) - self.clock())
                except ValueError:
                    wait = None
            return self.policy.backoff(attempt) if wait is None else wait
        if st is None:
            return self.policy.backoff(attempt)
        return None


def _after(attempt: int) -> str:
    return f" (after {attempt} attempts)" if attempt > 1 else ""


def _maybe(maybe_done: bool, where: str) -> str:
    if not maybe_done:
        return ""
    return f"; an earlier attempt got no answer and may have gone through: check {where}"


def _reason(exc: object, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    return str(exc) or type(exc).__name__


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, dt.timestamp() - now)


def _error_message(body: bytes, fallback: Any) -> str:
    """The message of an API error body (GitHub/GitLab/Jira/CircleCI/PagerDuty shapes), truncated."""
    text = body.decode("utf-8", "replace").strip()
    msg: Any = None
    try:
        d = json.loads(text) if text else None
    except ValueError:
        d = None
    if isinstance(d, dict):
        msg = d.get("message") or d.get("error") or d.get("errorMessages") or d.get("errors") or d.get("status")
        if isinstance(msg, (list, dict)):
            msg = json.dumps(msg)
    if not msg:
        msg = text or str(fallback or "")
    msg = " ".join(str(msg).split())
    return msg[:MAX_MESSAGE] + ("..." if len(msg) > MAX_MESSAGE else "")


#: what a shell gives a meaning to (``;|&$`\<>``, quotes) and every control character (newlines
#: included): never in a Jenkins build parameter, a test id or a cleanup step
SHELL_METACHARACTERS = re.compile(r"[;|&$`\\<>'\"\x00-\x1f\x7f]")


class UnsafeValue(ValueError):
    """A value the clients will not put into a URL or a build parameter."""


def _seg(value: object) -> str:
    """One URL path segment, percent-encoded; an empty, ``.`` or ``..`` one or one with a control character
    is refused (``/repos/../../`` must never reach a platform, encoded or not)."""
    s = str(value)
    if not s or s.strip(".") == "" or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in s):
        raise UnsafeValue(f"unsafe URL path segment {s[:80]!r}")
    return urllib.parse.quote(s, safe="")


def _segs(path: str) -> str:
    """A ``/``-separated path (a GitLab group with subgroups, a Jenkins folder), each segment :func:`_seg`."""
    return "/".join(_seg(p) for p in str(path).split("/"))


def _refused(exc: Exception) -> Response:
    """The result of a call refused before it was sent (nothing reached the platform)."""
    return Response(None, message=f"refused, not sent: {exc}"[:MAX_MESSAGE])


def slack_escape(text: str) -> str:
    """Slack's three control characters escaped (``&`` first): ``<!channel>``, ``<@U123>`` and
    ``<https://evil|label>`` from a log line stay text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def plain(text: str, limit: int) -> str:
    """Text for a JSON field read by a person: control characters but newline and tab dropped, bounded."""
    return _CONTROL.sub("", text)[:limit]


def _basic(user: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode("ascii")


def _q(s: str) -> str:
    return urllib.parse.quote(str(s), safe="")


def _refused_as(status: int, *phrases: str) -> Callable[[Response], bool]:
    """The platform's refusal of a repeat (``status`` with one of ``phrases`` in its message)."""
    def check(resp: Response) -> bool:
        text = (resp.message + " " + resp.body.decode("utf-8", "replace")).lower()
        return resp.status == status and any(p in text for p in phrases)
    return check


#: GitHub refuses a re-run while the run is re-running: ``403 {"message": "This workflow is already running"}``
github_already_running = _refused_as(403, "already running")
#: GitLab refuses to retry a job that was retried: ``403 {"message": "403 Forbidden - Job is not retryable"}``
gitlab_not_retryable = _refused_as(403, "not retryable")


# --- CI platforms --------------------------------------------------------------------------------

class GitHubClient:
    """GitHub Actions REST API (re-run endpoints answer 201 Created with an empty body)."""

    def __init__(self, token: str, base_url: str = "https://api.github.com", *, transport: Transport) -> None:
        self.base = base_url.rstrip("/")
        self.t = transport
        self._token = token
        transport.add_secret(token)
        # the web UI of the API: github.com for api.github.com, https://HOST for GHES's https://HOST/api/v3
        web = "https://github.com" if self.base == "https://api.github.com" else self.base
        self.web = web[: -len("/api/v3")] if web.endswith("/api/v3") else web

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"}

    def run_url(self, owner: str, repo: str, run_id: str) -> str:
        return f"{self.web}/{_seg(owner)}/{_seg(repo)}/actions/runs/{_seg(run_id)}"

    def job_url(self, owner: str, repo: str, job_id: str) -> str:
        return f"{self.web}/{_seg(owner)}/{_seg(repo)}/runs/{_seg(job_id)}"  # a job's html_url (its check run)

    def rerun_failed_jobs(self, owner: str, repo: str, run_id: str) -> Response:
        try:
            url = f"{self.base}/repos/{_seg(owner)}/{_seg(repo)}/actions/runs/{_seg(run_id)}/rerun-failed-jobs"
            check = self.run_url(owner, repo, run_id)
        except UnsafeValue as exc:
            return _refused(exc)
        return self.t.request("POST", url, headers=self._headers(), json_body={}, repeat_safe=True,
                              already_done=github_already_running, check=check)

    def rerun_job(self, owner: str, repo: str, job_id: str) -> Response:
        try:
            url = f"{self.base}/repos/{_seg(owner)}/{_seg(repo)}/actions/jobs/{_seg(job_id)}/rerun"
            check = self.job_url(owner, repo, job_id)
        except UnsafeValue as exc:
            return _refused(exc)
        return self.t.request("POST", url, headers=self._headers(), json_body={}, repeat_safe=True,
                              already_done=github_already_running, check=check)


    def caches_url(self, owner: str, repo: str, ref: str) -> str:
        return (f"{self.web}/{_seg(owner)}/{_seg(repo)}/actions/caches?query="
                + urllib.parse.quote(f"branch:{ref.removeprefix('refs/heads/')}"))

    def delete_caches(self, owner: str, repo: str, ref: str) -> Response:
        """Delete the GitHub Actions caches of ``ref`` (``refs/heads/main``; a bare branch name gets the
        prefix): ``GET .../actions/caches?ref=`` then ``DELETE .../actions/caches/{id}`` for each, so the
        next attempt's ``actions/cache`` restores nothing and saves a fresh cache. Deleting is idempotent:
        repeats are safe. The ``Response`` tells how many were deleted."""
        if not ref.startswith("refs/"):
            ref = "refs/heads/" + ref
        try:
            base = f"{self.base}/repos/{_seg(owner)}/{_seg(repo)}/actions/caches"
            check = self.caches_url(owner, repo, ref)
        except UnsafeValue as exc:
            return _refused(exc)
        ids: list[int] = []
        for page in range(1, 11):  # at most 1,000 caches of one ref
            listed = self.t.request("GET", f"{base}?{urllib.parse.urlencode({'ref': ref, 'per_page': 100, 'page': page})}",
                                    headers=self._headers(), repeat_safe=True, check=check)
            if not listed.ok:
                return listed
            caches = (listed.json() or {}).get("actions_caches") or []
            ids += [int(c["id"]) for c in caches if isinstance(c, dict) and isinstance(c.get("id"), int)]
            if len(caches) < 100:
                break
        for cid in ids:
            gone = self.t.request("DELETE", f"{base}/{cid}", headers=self._headers(), repeat_safe=True, check=check)
            if not gone.ok and gone.status != 404:  # 404: deleted meanwhile
                return replace(gone, message=f"deleting cache {cid} of {ref}: {gone.message}")
        return Response(200, message=f"deleted {len(ids)} cache(s) of {ref}")


class GitLabClient:
    """GitLab REST v4. The project is addressed by its URL-encoded path ``group[/subgroup]/project``."""

    def __init__(self, token: str, base_url: str = "https://gitlab.com", *, transport: Transport) -> None:
        self.base = base_url.rstrip("/")
        self.t = transport
        self._token = token
        transport.add_secret(token)

    def _project(self, owner: str, repo: str) -> str:
        """The project path as one URL segment (``group%2Fsub%2Fproject``); each of its segments is checked."""
        _segs(f"{owner}/{repo}")
        return _q(f"{owner}/{repo}")

    def job_url(self, owner: str, repo: str, job_id: str) -> str:
        return f"{self.base}/{_segs(owner)}/{_seg(repo)}/-/jobs/{_seg(job_id)}"

    def pipeline_url(self, owner: str, repo: str, pipeline_id: str) -> str:
        return f"{self.base}/{_segs(owner)}/{_seg(repo)}/-/pipelines/{_seg(pipeline_id)}"

    def retry_job(self, owner: str, repo: str, job_id: str) -> Response:
        try:
            url = f"{self.base}/api/v4/projects/{self._project(owner, repo)}/jobs/{_seg(job_id)}/retry"
            check = self.job_url(owner, repo, job_id)
        except UnsafeValue as exc:
            return _refused(exc)
        return self.t.request("POST", url, headers={"PRIVATE-TOKEN": self._token}, repeat_safe=True,
                              already_done=gitlab_not_retryable, check=check)

    def clear_runner_caches(self, owner: str, repo: str) -> Response:
        """Clear the project's runner caches (the "Clear runner caches" button): GraphQL ``runnerCacheClear``,
        which needs the project's numeric id (``GET /api/v4/projects/:path``). GitLab then gives every
        cache key a new index, so the next attempt starts with an empty cache. Idempotent enough: a repeat
        only advances the index again."""
        try:
            url = f"{self.base}/api/v4/projects/{self._project(owner, repo)}"
            check = f"{self.base}/{_segs(owner)}/{_seg(repo)}/-/pipelines (Clear runner caches)"
        except UnsafeValue as exc:
            return _refused(exc)
        got = self.t.request("GET", url, headers={"PRIVATE-TOKEN": self._token}, repeat_safe=True, check=check)
        if not got.ok:
            return got
        pid = (got.json() or {}).get("id")
        if not isinstance(pid, int):
            return Response(None, message=f"GitLab did not say the id of project {owner}/{repo}")
        query = "mutation($id: ProjectID!) { runnerCacheClear(input: {projectId: $id}) { errors } }"
        done = self.t.request("POST", f"{self.base}/api/graphql",
                              headers={"Authorization": f"Bearer {self._token}"}, repeat_safe=True, check=check,
                              json_body={"query": query, "variables": {"id": f"gid://gitlab/Project/{pid}"}})
        if not done.ok:
            return done
        body = done.json() or {}
        errors = body.get("errors") or ((body.get("data") or {}).get("runnerCacheClear") or {}).get("errors")
        if errors or not (body.get("data") or {}).get("runnerCacheClear"):
            return replace(done, status=None, message=f"runnerCacheClear refused: {str(errors)[:300]}")
        return done

    def retry_pipeline(self, owner: str, repo: str, pipeline_id: str) -> Response:
        try:
            url = f"{self.base}/api/v4/projects/{self._project(owner, repo)}/pipelines/{_seg(pipeline_id)}/retry"
            check = self.pipeline_url(owner, repo, pipeline_id)
        except UnsafeValue as exc:
            return _refused(exc)
        # not repeat-safe: GitLab documents no refusal of a second retry of the same pipeline
        return self.t.request("POST", url, headers={"PRIVATE-TOKEN": self._token}, check=check)


class JenkinsClient:
    """Jenkins remote access API with an API token (basic auth ``user:token``; no crumb needed)."""

    def __init__(self, base_url: str, user: str, token: str, *, transport: Transport) -> None:
        self.base = base_url.rstrip("/")
        self.t = transport
        self._auth = _basic(user, token)
        transport.add_secret(token, self._auth.split(" ", 1)[1])

    @staticmethod
    def job_path(full_name: str) -> str:
        """``folder/sub/job`` -> ``/job/folder/job/sub/job/job``."""
        return "".join(f"/job/{_seg(p)}" for p in full_name.split("/") if p)

    def job_url(self, full_name: str, command_id: str = "") -> str:
        url = f"{self.base}{self.job_path(full_name)}/"
        return url + (f" (a build with GUARD_COMMAND_ID={command_id})" if command_id else "")

    def build_with_parameters(self, full_name: str, parameters: Mapping[str, Any]) -> Response:
        form = {k: _param(v) for k, v in parameters.items()}
        try:
            for k, v in form.items():
                bad = SHELL_METACHARACTERS.search(k) or SHELL_METACHARACTERS.search(v)
                if bad:
                    raise UnsafeValue(f"build parameter {k[:60]!r} holds a shell metacharacter {bad.group()!r}")
            path = self.job_path(full_name)
            check = self.job_url(full_name, str(parameters.get("GUARD_COMMAND_ID") or ""))
        except UnsafeValue as exc:
            return _refused(exc)
        body = urllib.parse.urlencode(form).encode()
        # not repeat-safe: every accepted request queues a build (once one started, a repeat queues another)
        return self.t.request("POST", f"{self.base}{path}/buildWithParameters",
                              headers={"Authorization": self._auth,
                                       "Content-Type": "application/x-www-form-urlencoded"}, data=body, check=check)


def jenkins_full_name(owner: str, repo: str) -> str:
    """The Jenkins job of ``owner/repo`` (the webhook names a top-level job's owner ``jenkins``)."""
    return repo if owner == "jenkins" else f"{owner}/{repo}"


def _param(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v)
    return str(v)


#: the CircleCI project variable a cache key holds (``{{ .Environment.GUARD_CACHE_EPOCH }}``) so that the
#: executor can start a fresh cache (ci/healing-guard.circleci.yml)
CIRCLECI_CACHE_VARIABLE = "GUARD_CACHE_EPOCH"


class CircleCIClient:
    """CircleCI API v2 (``POST /api/v2/workflow/{id}/rerun`` answers 202 with ``{"workflow_id"}``)."""

    def __init__(self, token: str, base_url: str = "https://circleci.com", *, transport: Transport) -> None:
        self.base = base_url.rstrip("/")
        self.t = transport
        self._token = token
        transport.add_secret(token)

    def workflow_url(self, workflow_id: str) -> str:
        web = "https://app.circleci.com" if self.base == "https://circleci.com" else self.base
        return f"{web}/pipelines/workflows/{_seg(workflow_id)} (the pipeline's workflows)"

    def project_url(self, owner: str, repo: str) -> str:
        web = "https://app.circleci.com" if self.base == "https://circleci.com" else self.base
        return f"{web}/settings/project/.../{_seg(owner)}/{_seg(repo)}/environment-variables"

    def set_cache_epoch(self, workflow_id: str, owner: str, repo: str, value: str) -> Response:
        """Start a fresh cache for the project of ``workflow_id``: set its environment variable
        :data:`CIRCLECI_CACHE_VARIABLE` to ``value`` (``POST /api/v2/project/{slug}/envvar``). CircleCI
        fixes ``restore_cache`` keys when a job starts and has no API to delete caches, but a key that
        holds ``{{ .Environment.GUARD_CACHE_EPOCH }}`` reads the project's variables: from the rerun on,
        every job restores nothing and saves under the new key (the corrupt cache is never read again).
        The project's slug comes from the workflow (``GET /api/v2/workflow/{id}``), and must name
        ``owner/repo``: a command cannot reach another project's settings. Setting the same value again is
        harmless (repeat-safe)."""
        headers = {"Circle-Token": self._token, "Accept": "application/json"}
        try:
            url = f"{self.base}/api/v2/workflow/{_seg(workflow_id)}"
            check = self.project_url(owner, repo)
        except UnsafeValue as exc:
            return _refused(exc)
        got = self.t.request("GET", url, headers=headers, repeat_safe=True, check=check)
        if not got.ok:
            return got
        slug = str((got.json() or {}).get("project_slug") or "")
        parts = slug.split("/")
        if len(parts) != 3 or [x.lower() for x in parts[1:]] != [owner.lower(), repo.lower()]:
            return Response(None, message=f"workflow {workflow_id} belongs to project {slug[:200]!r}, not "
                                          f"{owner}/{repo}: refused, not sent")
        try:
            envvar = f"{self.base}/api/v2/project/{_segs(slug)}/envvar"
        except UnsafeValue as exc:
            return _refused(exc)
        done = self.t.request("POST", envvar, headers=headers, repeat_safe=True, check=check,
                              json_body={"name": CIRCLECI_CACHE_VARIABLE, "value": value})
        return replace(done, message=f"{CIRCLECI_CACHE_VARIABLE}={value} in {slug}") if done.ok else done

    def rerun_workflow(self, workflow_id: str, *, from_failed: bool = True,
                       jobs: list[str] | None = None) -> Response:
        body: dict[str, Any] = {"jobs": jobs} if jobs else {"from_failed": from_failed}
        try:
            url = f"{self.base}/api/v2/workflow/{_seg(workflow_id)}/rerun"
            check = self.workflow_url(workflow_id)
        except UnsafeValue as exc:
            return _refused(exc)
        # not repeat-safe: every accepted rerun starts a new workflow
        return self.t.request("POST", url, headers={"Circle-Token": self._token, "Accept": "application/json"},
                              json_body=body, check=check)


# --- notifications -------------------------------------------------------------------------------

class SlackClient:
    """Slack incoming webhook: ``POST`` ``{"text": ...}``, answers 200 ``ok``. The text is sent escaped
    (:func:`slack_escape`): nothing in it is a mention, a link or a channel-wide notification.

    A message for a named channel (``notifications.slack.channel``, ``cost_control.alerts.slack``) goes
    through the Web API's ``chat.postMessage`` when a bot token is configured (``GUARD_SLACK_BOT_TOKEN``,
    scope ``chat:write``; the bot must be in the channel): an incoming webhook posts only to the channel it
    was made for, and Slack ignores a channel named in its body. Without a bot token the message goes to
    the webhook's channel, and :meth:`channel_note` says so."""

    CHECK = "the channel the Slack webhook posts to"
    MAX_TEXT = 3000  # characters before escaping

    def __init__(self, webhook_url: str = "", *, transport: Transport, bot_token: str = "",
                 api_url: str = "https://slack.com/api") -> None:
        self._url = webhook_url
        self._bot = bot_token
        self._api = api_url.rstrip("/")
        self.t = transport
        if webhook_url:
            transport.add_secret(webhook_url, urllib.parse.urlsplit(webhook_url).path)
        if bot_token:
            transport.add_secret(bot_token)

    def channel_note(self, channel: str) -> str:
        """What happens to a message meant for ``channel`` ('' when it goes there)."""
        if not channel or self._bot:
            return ""
        return (f"Slack channel {channel} asked for: posted to the webhook's own channel (a webhook cannot "
                "choose one; set GUARD_SLACK_BOT_TOKEN to post to named channels)")

    def check(self, channel: str = "") -> str:
        return f"Slack channel {channel}" if channel and self._bot else self.CHECK

    def post(self, text: str, channel: str = "") -> Response:
        body = slack_escape(plain(text, self.MAX_TEXT))
        if channel and self._bot:
            # not repeat-safe: every accepted post is a new message. Slack answers 200 with
            # {"ok": false, "error": ...} for a refusal (channel_not_found, not_in_channel, invalid_auth)
            r = self.t.request("POST", f"{self._api}/chat.postMessage",
                               headers={"Authorization": f"Bearer {self._bot}"},
                               json_body={"channel": channel, "text": body}, check=self.check(channel))
            answer = r.json() if r.ok else None
            if r.ok and not (isinstance(answer, dict) and answer.get("ok") is True):
                why = answer.get("error") if isinstance(answer, dict) else "not a Slack Web API answer"
                return replace(r, status=400, message=f"Slack refused the message to {channel}: {why}")
            return r
        if not self._url:
            return Response(None, message="no Slack webhook configured (GUARD_SLACK_WEBHOOK_URL) for a message "
                                          "without a channel")
        return self.t.request("POST", self._url, json_body={"text": body}, check=self.CHECK)


class JiraClient:
    """Jira Cloud REST v3 (``POST /rest/api/3/issue``; description in Atlassian Document Format).

    ADF text nodes are plain text (no wiki markup is interpreted: ``{code}``, ``[link|url]``, ``|`` stay
    characters); log lines go into a ``codeBlock`` node; the summary is one line."""

    def __init__(self, base_url: str, user: str, token: str, project: str, *, issue_type: str = "Task",
                 transport: Transport) -> None:
        self.base = base_url.rstrip("/")
        self.project = project
        self.issue_type = issue_type
        self.t = transport
        self._auth = _basic(user, token)
        transport.add_secret(token, self._auth.split(" ", 1)[1])

    def search_url(self) -> str:
        jql = f'project = "{self.project}" AND labels = "healing-guard" ORDER BY created DESC'
        return f"{self.base}/issues/?jql={urllib.parse.quote(jql)}"

    def create_issue(self, summary: str, description: str, *, labels: list[str] | None = None,
                     code: Sequence[str] = ()) -> Response:
        """``description``: paragraphs separated by blank lines; ``code``: lines (from a log) shown verbatim
        in a code block."""
        content: list[dict[str, Any]] = [
            {"type": "paragraph", "content": [{"type": "text", "text": plain(para, 5000)}]}
            for para in description.split("\n\n") if plain(para, 5000).strip()]
        block = plain("\n".join(code), 10000)
        if block.strip():
            content.append({"type": "codeBlock", "attrs": {}, "content": [{"type": "text", "text": block}]})
        doc = {"type": "doc", "version": 1, "content": content}
        fields: dict[str, Any] = {"project": {"key": self.project}, "summary": " ".join(summary.split())[:250],
                                  "issuetype": {"name": self.issue_type}, "description": doc}
        if labels:
            fields["labels"] = [lb.replace(" ", "_") for lb in labels]
        # not repeat-safe: every accepted request creates an issue
        return self.t.request("POST", f"{self.base}/rest/api/3/issue", json_body={"fields": fields},
                              headers={"Authorization": self._auth, "Accept": "application/json"},
                              check=self.search_url())


class ServiceNowClient:
    """ServiceNow Table API (``POST /api/now/table/incident``, basic auth; answers 201 with ``{"result":
    {"sys_id", "number", ...}}``). ``description`` is plain text (log lines appended verbatim);
    ``correlation_id`` carries the guard's command (or incident) id, so a person finds every incident the
    guard opened for one failure."""

    def __init__(self, base_url: str, user: str, password: str, *, assignment_group: str = "",
                 transport: Transport) -> None:
        self.base = base_url.rstrip("/")
        self.assignment_group = assignment_group
        self.t = transport
        self._auth = _basic(user, password)
        transport.add_secret(password, self._auth.split(" ", 1)[1])

    def list_url(self, correlation_id: str) -> str:
        query = urllib.parse.quote(f"correlation_id={correlation_id}", safe="=")
        return f"{self.base}/incident_list.do?sysparm_query={query}"

    def create_incident(self, short_description: str, description: str, *, correlation_id: str,
                        urgency: int = 2, code: Sequence[str] = ()) -> Response:
        text = plain(description, 8000)
        block = plain("\n".join(code), 8000)
        if block.strip():
            text += "\n\nLog:\n" + block
        body: dict[str, Any] = {"short_description": " ".join(short_description.split())[:160],
                                "description": text, "urgency": str(urgency), "impact": str(urgency),
                                "correlation_id": correlation_id[:100], "correlation_display": "healing-guard"}
        if self.assignment_group:
            body["assignment_group"] = self.assignment_group
        # not repeat-safe: every accepted request creates an incident
        return self.t.request("POST", f"{self.base}/api/now/table/incident?sysparm_input_display_value=true",
                              json_body=body, headers={"Authorization": self._auth, "Accept": "application/json"},
                              check=self.list_url(correlation_id))


class PagerDutyClient:
    """PagerDuty Events API v2 (``POST /v2/enqueue``, answers 202 ``{"status": "success", "dedup_key"}``)."""

    def __init__(self, routing_key: str, base_url: str = "https://events.pagerduty.com", *,
                 transport: Transport) -> None:
        self.base = base_url.rstrip("/")
        self._key = routing_key
        self.t = transport
        transport.add_secret(routing_key)

    def trigger(self, summary: str, *, dedup_key: str, source: str, severity: str = "error",
                custom_details: Mapping[str, Any] | None = None) -> Response:
        body: dict[str, Any] = {
            "routing_key": self._key, "event_action": "trigger", "dedup_key": dedup_key[:255],
            "payload": {"summary": plain(summary, 1024), "source": plain(source, 255), "severity": severity,
                        "component": "healing-guard"},
        }
        if custom_details:
            body["payload"]["custom_details"] = dict(custom_details)
        # repeat-safe: PagerDuty folds a trigger with the dedup_key of an open alert into that alert
        return self.t.request("POST", f"{self.base}/v2/enqueue", json_body=body, repeat_safe=True,
                              check=f"PagerDuty alerts with dedup_key {dedup_key[:255]}")


# --- the set of configured clients ---------------------------------------------------------------

@dataclass
class Clients:
    """The clients the executor may call; ``None`` for a service that is not configured."""

    transport: Transport
    github: GitHubClient | None = None
    gitlab: GitLabClient | None = None
    jenkins: JenkinsClient | None = None
    circleci: CircleCIClient | None = None
    slack: SlackClient | None = None
    jira: JiraClient | None = None
    pagerduty: PagerDutyClient | None = None
    servicenow: ServiceNowClient | None = None

    def configured(self) -> list[str]:
        return [n for n in ("github", "gitlab", "jenkins", "circleci", "slack", "jira", "servicenow", "pagerduty")
                if getattr(self, n) is not None]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, proxies: Mapping[str, str] | None = None) -> Clients:
        """Build from ``GUARD_*`` variables (see the module docstring). Called once, at the entry point."""
        env = os.environ if env is None else env
        g = lambda k, d="": (env.get(k) or d).strip()  # noqa: E731
        policy = RetryPolicy(max_attempts=max(1, int(g("GUARD_EXECUTOR_MAX_ATTEMPTS", "4"))),
                             max_wait_seconds=float(g("GUARD_EXECUTOR_MAX_WAIT_SECONDS", "300")),
                             timeout_seconds=float(g("GUARD_EXECUTOR_TIMEOUT_SECONDS", "30")))
        t = Transport(policy, sleep=sleep, clock=clock, proxies=proxies)
        c = cls(transport=t)
        if g("GUARD_GITHUB_TOKEN"):
            c.github = GitHubClient(g("GUARD_GITHUB_TOKEN"), g("GUARD_GITHUB_API_URL", "https://api.github.com"),
                                    transport=t)
        if g("GUARD_GITLAB_TOKEN"):
            c.gitlab = GitLabClient(g("GUARD_GITLAB_TOKEN"), g("GUARD_GITLAB_URL", "https://gitlab.com"), transport=t)
        if g("GUARD_JENKINS_URL") and g("GUARD_JENKINS_USER") and g("GUARD_JENKINS_TOKEN"):
            c.jenkins = JenkinsClient(g("GUARD_JENKINS_URL"), g("GUARD_JENKINS_USER"), g("GUARD_JENKINS_TOKEN"),
                                      transport=t)
        if g("GUARD_CIRCLECI_TOKEN"):
            c.circleci = CircleCIClient(g("GUARD_CIRCLECI_TOKEN"), g("GUARD_CIRCLECI_URL", "https://circleci.com"),
                                        transport=t)
        if g("GUARD_SLACK_WEBHOOK_URL") or g("GUARD_SLACK_BOT_TOKEN"):
            c.slack = SlackClient(g("GUARD_SLACK_WEBHOOK_URL"), transport=t, bot_token=g("GUARD_SLACK_BOT_TOKEN"),
                                  api_url=g("GUARD_SLACK_API_URL", "https://slack.com/api"))
        if all(g(k) for k in ("GUARD_JIRA_URL", "GUARD_JIRA_USER", "GUARD_JIRA_TOKEN", "GUARD_JIRA_PROJECT")):
            c.jira = JiraClient(g("GUARD_JIRA_URL"), g("GUARD_JIRA_USER"), g("GUARD_JIRA_TOKEN"),
                                g("GUARD_JIRA_PROJECT"), issue_type=g("GUARD_JIRA_ISSUE_TYPE", "Task"), transport=t)
        if all(g(k) for k in ("GUARD_SERVICENOW_URL", "GUARD_SERVICENOW_USER", "GUARD_SERVICENOW_PASSWORD")):
            c.servicenow = ServiceNowClient(g("GUARD_SERVICENOW_URL"), g("GUARD_SERVICENOW_USER"),
                                            g("GUARD_SERVICENOW_PASSWORD"),
                                            assignment_group=g("GUARD_SERVICENOW_ASSIGNMENT_GROUP"), transport=t)
        if g("GUARD_PAGERDUTY_ROUTING_KEY"):
            c.pagerduty = PagerDutyClient(g("GUARD_PAGERDUTY_ROUTING_KEY"),
                                          g("GUARD_PAGERDUTY_URL", "https://events.pagerduty.com"), transport=t)
        return c
