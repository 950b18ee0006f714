"""``guard forward``: ship a job's log (files or stdin) to ``ci.logs`` for users without a log forwarder.

The log is read as bytes in blocks (with ``--follow``, as the file grows, until it has been quiet for
``--idle-timeout`` seconds) and cut into ordered chunks of at most ``chunk_lines`` lines or
``chunk_bytes`` bytes (whichever comes first; a longer single line is cut into pieces, never dropped),
numbered from ``seq`` 0, the last one marked ``eof``. With ``--conclusion`` a completed ``ci.jobs``
event follows the log, so a CI step can report a failed job without webhooks. Log lines are not redacted
here (ci.logs is the one topic that holds raw text; the guard redacts every line before it stores or sends
anything), but the values the platform would mask are (``--mask-env``, on by default: credentials in the
environment and ``::add-mask::`` values, see patterns/masks.py); the completion event on ci.jobs is
redacted.

With ``--junit`` the job's JUnit XML reports are parsed (:func:`junit_results`, for the job the log belongs
to: its provider, repository, job id, attempt and commit) once the log has been sent, and their results go
to ci.tests in batches (:func:`healing_guard.platforms.junit_cli.send_batches`, redacted), before the
completion event, so the worker has them when it decides. A report that cannot be read is reported (naming
the file) and the rest is still sent: the log, the other reports, the completion.

The completion describes the job as the worker needs it to price it and to group its attempts: its name,
run, attempt, workflow, branch, commit, runner (labels, and the size class the cost table prices) and
start. :func:`job_details` takes them from the flags, else from the CI platform's own environment
variables (:func:`job_from_env`), so a step that runs ``guard forward --conclusion failure`` inside the job
needs no more flags for the job's cost to be right. Which variable gives what, per platform, and where the
start time comes from where the platform sets none: docs/platforms.md, "What guard forward reads".
A value the guard cannot read (a start time that is not a time, a negative duration) is left out with a
warning that names its variable or flag: the job is sent all the same.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

from ..patterns.masks import Mask, apply, learn
from ..patterns.tokenize import redact_job
from ..schemas import PROVIDERS, JobEvent, LogChunk, TestResult
from ..schemas.records import Provider

__all__ = ["ENV_SCOPES", "JobInfo", "chunk_lines", "completion", "env_attempt", "env_head_sha", "follow_blocks",
           "job_details", "job_from_env", "junit_results", "log_chunks", "parse_time", "runner_size"]


def _json_len(text: str) -> int:
    """Bytes the line takes in the chunk's JSON: control characters and NUL become ``\\u0000`` (6 bytes for
    1) and every invalid byte a 3-byte U+FFFD, so the byte length of the raw line is not a bound."""
    return len(orjson.dumps(text)) + 1  # with its comma


def _boundary(raw: bytes, start: int, stop: int) -> int:
    """``stop`` moved back to the start of a UTF-8 character (at most 3 bytes), so a cut does not turn
    one character into two replacement characters."""
    if stop >= len(raw):
        return len(raw)
    j = stop
    while j > start and stop - j < 3 and raw[j] & 0xC0 == 0x80:
        j -= 1
    return j if j > start else stop


def _pieces(raw: bytes, piece: int, limit: int) -> Iterator[str]:
    """One line's text, cut into pieces of at most ``piece`` bytes whose JSON form fits ``limit``."""
    i, n = 0, len(raw)
    if n == 0:
        yield ""
        return
    while i < n:
        step = piece
        while True:
            j = _boundary(raw, i, min(n, i + step))
            text = raw[i:j].decode("utf-8", "replace")
            if step <= 8 or _json_len(text) <= limit:
                break
            step //= 2
        yield text
        i = j


def chunk_lines(blocks: Iterable[bytes], *, chunk_lines: int = 500, chunk_bytes: int = 1 << 20) -> Iterator[list[str]]:
    """Lists of decoded lines (invalid UTF-8 replaced), each list within the limits: at most
    ``chunk_lines`` lines and ``chunk_bytes`` bytes of JSON-encoded text, however long a line and
    whatever bytes it holds (a line without a newline is cut as it arrives, so memory stays bounded)."""
    pending = b""
    out: list[str] = []
    size = 0
    piece = max(1, chunk_bytes // 2)

    def add(text: str) -> Iterator[list[str]]:
        nonlocal out, size
        n = _json_len(text)
        if out and (len(out) >= chunk_lines or size + n > chunk_bytes):
            yield out
            out, size = [], 0
        out.append(text)
        size += n

    for block in blocks:
        pending += block
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            for text in _pieces(raw, piece, chunk_bytes):  # a giant line becomes several lines' worth
                yield from add(text)
        while len(pending) > chunk_bytes:  # no newline for a long time: ship what there is
            j = _boundary(pending, 0, piece)
            head, pending = pending[:j], pending[j:]
            for text in _pieces(head, piece, chunk_bytes):
                yield from add(text)
    if pending:
        for text in _pieces(pending, piece, chunk_bytes):
            yield from add(text)
    if out:
        yield out


def read_blocks(fp: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        b = fp.read(size)
        if not b:
            return
        yield b


def follow_blocks(fp: BinaryIO, *, idle_timeout: float, poll: float = 0.25, size: int = 1 << 20,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> Iterator[bytes]:
    """Blocks of a file that is still being written (``tail -f``): ends once the file has not grown for
    ``idle_timeout`` seconds, or on Ctrl-C, so that the last chunk can be marked ``eof``."""
    last = clock()
    try:
        while True:
            b = fp.read(size)
            if b:
                last = clock()
                yield b
                continue
            if clock() - last >= idle_timeout:
                return
            sleep(poll)
    except KeyboardInterrupt:
        return


def log_chunks(blocks: Iterable[bytes], *, provider: str, owner: str, repo: str, job_id: str, attempt: int = 1,
               chunk_lines_max: int = 500, chunk_bytes: int = 1 << 20,
               masks: list[Mask] | None = None) -> Iterator[LogChunk]:
    """The ``ci.logs`` records of one job's log, in order, the last one with ``eof``.

    ``masks`` (patterns/masks.py): values to mask as the platform would, e.g. ``from_environ(os.environ)``;
    then the values of the log's ``::add-mask::`` lines are masked too, from that line on (the line
    included). ``None``: the lines are sent as read."""
    platform = _provider(provider)
    first = 1
    seq = 0
    prev: list[str] | None = None
    for lines in chunk_lines(blocks, chunk_lines=chunk_lines_max, chunk_bytes=chunk_bytes):
        if masks is not None:
            learn(lines, masks)
            lines = apply(lines, masks)
        if prev is not None:
            yield LogChunk(provider=platform, owner=owner, repo=repo, job_id=job_id, attempt=attempt, seq=seq,
                           lines=prev, first_line=first, eof=False)
            first += len(prev)
            seq += 1
        prev = lines
    yield LogChunk(provider=platform, owner=owner, repo=repo, job_id=job_id, attempt=attempt, seq=seq,
                   lines=prev or [], first_line=first, eof=True)


def _provider(name: str) -> Provider:
    """``name`` as a record's provider; the CLI has checked it against ``PROVIDERS`` already."""
    if name not in PROVIDERS:
        raise ValueError(f"unknown CI provider {name!r}: one of {', '.join(PROVIDERS)}")
    return cast(Provider, name)


def completion(*, provider: str, owner: str, repo: str, job_id: str, attempt: int, conclusion: str,
               exit_code: int | None, chunks: int, job_name: str, run_id: str | None, now: float,
               healing_strategy: str | None = None, max_retries: int | None = None, workflow: str | None = None,
               branch: str | None = None, head_sha: str | None = None, runner_labels: Iterable[str] = (),
               runner_size: str | None = None, started_at: float | None = None,
               completed_at: float | None = None) -> JobEvent:
    """The completion event that follows the log (``completed_at`` defaults to ``now``). Its free text goes
    through the redactor: unlike the log lines it travels on ci.jobs, and only ci.logs may carry raw text."""
    ev = JobEvent(provider=provider, owner=owner, repo=repo, job_id=job_id, job_name=job_name,  # type: ignore[arg-type]
                  status="completed", conclusion=conclusion, exit_code=exit_code, attempt=attempt,  # type: ignore[arg-type]
                  run_id=run_id, workflow=workflow, runner_labels=list(runner_labels), runner_size=runner_size,
                  branch=branch, head_sha=head_sha, started_at=started_at,
                  completed_at=now if completed_at is None else completed_at, log_chunks=chunks,
                  healing_strategy=healing_strategy, max_retries=max_retries)
    return redact_job(ev)


# --- the job's description: flags, else the CI platform's environment ------------------------------

Warn = Callable[[str], None]

#: which of the platform's variables describe the job that is sent (``--from-env``):
#: ``job``: all of them (the process runs inside that job); ``run``: only those of the run / pipeline /
#: workflow (the process runs in another job of it, as the Action's and the GitLab template's step does);
#: ``off``: none; ``auto``: ``job``, unless the platform's own job id variable names another job
ENV_SCOPES = ("auto", "job", "run", "off")

#: the variable that holds the running job's id, per platform (GitHub gives a job no variable with its id)
_JOB_ID_VARS = {"gitlab": "CI_JOB_ID", "jenkins": "BUILD_NUMBER", "circleci": "CIRCLE_BUILD_NUM"}

#: earliest time taken for a job's start or end (a 0 or a day count is not a time)
_EARLIEST = 946684800.0  # 2000-01-01T00:00:00Z
_HTTP_TIMEOUT = 5.0
_MAX_LABELS = 100
_MAX_LABEL_CHARS = 256


@dataclass
class JobInfo:
    """What the environment says about the job; ``None`` / empty where it says nothing."""

    job_name: str | None = None
    run_id: str | None = None
    attempt: int | None = None
    workflow: str | None = None
    branch: str | None = None
    head_sha: str | None = None
    runner: str | None = None
    runner_labels: list[str] = field(default_factory=list)
    started_at: float | None = None
    #: where ``started_at`` came from (a variable's name, or a lookup), for the warnings
    started_from: str | None = None
    scope: str = "job"


def parse_time(text: str) -> float:
    """A time as CI platforms and scripts write it, in Unix seconds: ISO 8601 (``2024-05-06T07:08:09Z``,
    ``+02:00``, GitLab's ``2024-05-06 07:08:09 UTC``), Unix seconds, or Unix milliseconds (a number from
    1e11 up: Jenkins' ``currentBuild.startTimeInMillis``). ``ValueError`` for anything else, and for a
    time before 2000."""
    from .webhooks import WebhookError, _ts

    t = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        v = float(t)
        value = v / 1000.0 if v >= 1e11 else v
    else:
        try:
            parsed = _ts({"t": t}, "t") if t else None
        except WebhookError:
            parsed = None
        if parsed is None:
            raise ValueError(f"not a time: {text!r} (ISO 8601, Unix seconds or milliseconds)")
        value = parsed
    if not _EARLIEST <= value < 32503680000.0:  # 2000 .. 3000
        raise ValueError(f"not a plausible time: {text!r}")
    return value


def runner_size(labels: Iterable[str], runner: str | None, sizes: Iterable[str]) -> str | None:
    """The size class (a key of ``cost_tracking.price_per_minute_usd``) that a runner's labels or name
    name: a label that is a priced size (``large``), else the first word of a label, then of the runner's
    name, that is one (``saas-linux-large-amd64`` -> ``large``; CircleCI's ``medium+`` -> ``medium``).
    Words, not substrings: ``xlarge`` is not ``large``. ``None`` when nothing matches: the worker then
    prices the job at its ``default_runner_size``."""
    priced = {s.lower(): s for s in sizes}
    texts = [x for x in (*labels, runner or "") if x]
    for text in texts:
        if text.strip().lower() in priced:
            return priced[text.strip().lower()]
    for text in texts:
        for word in re.split(r"[^a-z0-9+]+", text.lower()):
            if word in priced:
                return priced[word]
            if word.endswith("+") and word.rstrip("+") in priced:
                return priced[word.rstrip("+")]
    return None


def _v(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def _labels(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for x in values:
        x = x.strip()
        if x and x not in out:
            out.append(x[:_MAX_LABEL_CHARS])
    return out[:_MAX_LABELS]


def _gitlab_tags(text: str | None) -> list[str]:
    """``CI_RUNNER_TAGS``: a JSON array (``["docker", "linux"]``) or, from older runners, a comma-separated list."""
    if not text:
        return []
    if text.startswith("["):
        try:
            tags = json.loads(text)
            if isinstance(tags, list):
                return _labels(str(t) for t in tags)
        except ValueError:
            pass
    return _labels(t.strip().strip("\"'") for t in text.strip("[]").split(","))


def _int_var(env: Mapping[str, str], name: str, warn: Warn) -> int | None:
    text = _v(env, name)
    if text is None:
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    warn(f"{name}: expected a whole number >= 1, got {text!r}; ignored")
    return None


def _github_head_sha(env: Mapping[str, str], warn: Warn) -> str | None:
    """The commit GitHub's API gives the run (``head_sha``): on a pull request event the pull request's
    head (``GITHUB_SHA`` is then the merge commit GitHub made), from the event payload."""
    if (_v(env, "GITHUB_EVENT_NAME") or "").startswith("pull_request") and _v(env, "GITHUB_EVENT_PATH"):
        path = _v(env, "GITHUB_EVENT_PATH") or ""
        try:
            sha = json.loads(Path(path).read_text(encoding="utf-8"))["pull_request"]["head"]["sha"]
            if isinstance(sha, str) and sha:
                return sha
            raise TypeError("no pull_request.head.sha")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warn(f"GITHUB_EVENT_PATH: cannot read the pull request's head commit ({exc}); using GITHUB_SHA")
    return _v(env, "GITHUB_SHA")


#: the variable with the commit under test, per platform (GitHub: :func:`_github_head_sha`)
_HEAD_SHA_VARS = {"gitlab": "CI_COMMIT_SHA", "jenkins": "GIT_COMMIT", "circleci": "CIRCLE_SHA1"}


def _head_sha(provider: str, env: Mapping[str, str], warn: Warn) -> str | None:
    if provider == "github":
        return _github_head_sha(env, warn)
    var = _HEAD_SHA_VARS.get(provider)
    return _v(env, var) if var else None


def env_head_sha(provider: str, env: Mapping[str, str], *, job_id: str, scope: str = "auto",
                 warn: Warn = lambda _m: None) -> str | None:
    """The commit under test as :func:`job_from_env` reads it (``--from-env`` applies the same way), without
    the platforms' APIs it may ask for the rest: what ``guard forward --junit`` tags the test results with
    when no completion (``--conclusion``) is sent."""
    if effective_scope(provider, env, job_id, scope, warn) == "off":
        return None
    return _head_sha(provider, env, warn)


def junit_results(paths: Iterable[Path], *, provider: str, owner: str, repo: str, job_id: str, attempt: int,
                  head_sha: str | None) -> tuple[list[TestResult], list[str]]:
    """The test results of this job's JUnit XML reports (``guard forward --junit``), in report order (a file
    given twice is read once), and one error per report that cannot be read (naming the file: the others
    are sent all the same)."""
    from .junit import JUnitError, one_run, parse_junit

    results: list[TestResult] = []
    errors: list[str] = []
    seen: set[str] = set()
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:  # two overlapping globs: a report's results are sent once
            continue
        seen.add(real)
        try:
            results.extend(parse_junit(path, provider=provider, owner=owner, repo=repo, job_id=job_id,
                                       attempt=attempt, head_sha=head_sha))
        except JUnitError as exc:  # names the file (and line)
            errors.append(str(exc))
        except ValueError as exc:  # the job's fields, not valid in a test result
            errors.append(f"{os.fspath(path)}: {exc}")
    return one_run(results), errors  # failed_in_run: of the job's reports together


def _jenkins_branch(env: Mapping[str, str]) -> str | None:
    """``BRANCH_NAME`` (multibranch), else ``GIT_BRANCH`` without its remote (``origin/main`` -> ``main``)."""
    b = _v(env, "BRANCH_NAME") or _v(env, "GIT_BRANCH")
    if b is None:
        return None
    for prefix in ("refs/heads/", "refs/remotes/origin/", "remotes/origin/", "origin/"):
        if b.startswith(prefix):
            return b[len(prefix):] or None
    return b


def effective_scope(provider: str, env: Mapping[str, str], job_id: str, scope: str, warn: Warn) -> str:
    """``--from-env`` as applied: ``auto`` is ``job``, unless the platform's job id variable names another
    job than ``--job-id`` (then ``run``; on Jenkins a build number names the whole build: ``off``)."""
    if scope != "auto":
        return scope
    var = _JOB_ID_VARS.get(provider)
    own = _v(env, var) if var else None
    if own is None or own == job_id:
        return "job"
    if provider == "jenkins":
        warn(f"{var} {own} is not --job-id {job_id}: this build's variables are not read (--from-env job reads "
             "them all the same)")
        return "off"
    warn(f"{var} {own} is not --job-id {job_id}: only the pipeline's variables are read, not this job's "
         "(--from-env job reads them all the same)")
    return "run"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib would carry the credentials along to wherever it points."""

    def redirect_request(self, *a: Any, **kw: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _http_json(url: str, headers: Mapping[str, str], timeout: float) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    with _OPENER.open(req, timeout=timeout) as resp:
        return json.loads(resp.read(16 << 20))


def _origin(url: str) -> tuple[str, str]:
    u = urllib.parse.urlsplit(url)
    return u.scheme.lower(), u.netloc.lower()


def _jenkins_started(env: Mapping[str, str], warn: Warn, timeout: float) -> float | None:
    """The build's start from Jenkins' REST API: ``GET ${BUILD_URL}api/json?tree=timestamp`` (``timestamp``:
    the build's start, Unix ms), as the guard's Jenkins account (``GUARD_JENKINS_USER`` /
    ``GUARD_JENKINS_TOKEN``, sent only to ``GUARD_JENKINS_URL``'s host when that is set) or anonymously."""
    build_url = _v(env, "BUILD_URL")
    if build_url is None or not build_url.lower().startswith(("http://", "https://")):
        return None
    api = build_url.rstrip("/") + "/api/json?tree=timestamp"
    headers: dict[str, str] = {}
    user, token, base = _v(env, "GUARD_JENKINS_USER"), _v(env, "GUARD_JENKINS_TOKEN"), _v(env, "GUARD_JENKINS_URL")
    if user and token and (base is None or _origin(base) == _origin(build_url)):
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
    try:
        ts = _http_json(api, headers, timeout).get("timestamp")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)):
            raise ValueError(f"no timestamp in the answer: {ts!r}")
        return parse_time(str(int(ts)))
    except Exception as exc:  # an unreachable Jenkins must not stop the job from being sent
        warn(f"BUILD_URL: could not read the build's start from {api} ({exc}); set GUARD_JENKINS_USER and "
             "GUARD_JENKINS_TOKEN, or pass --started-at ${currentBuild.startTimeInMillis}")
        return None


def _circleci_build(env: Mapping[str, str], warn: Warn, timeout: float) -> dict[str, Any] | None:
    """The job as CircleCI's API v1.1 describes it (``start_time``, ``picard.resource_class.class``,
    ``workflows.workflow_name``), with the guard's ``GUARD_CIRCLECI_TOKEN`` (``GUARD_CIRCLECI_URL``,
    default https://circleci.com): the job's environment holds neither its start nor its resource class."""
    token = _v(env, "GUARD_CIRCLECI_TOKEN")
    if token is None:
        return None
    build_url = _v(env, "CIRCLE_BUILD_URL") or ""
    parts = [p for p in urllib.parse.urlsplit(build_url).path.split("/") if p]
    vcs = {"gh": "github", "github": "github", "bb": "bitbucket", "bitbucket": "bitbucket"}.get(
        parts[-4].lower() if len(parts) >= 4 else "")
    if vcs is None or not parts[-1].isdigit():
        warn(f"CIRCLE_BUILD_URL: {build_url!r} names no vcs/org/repo/number job (API v1.1 reads only GitHub and "
             "Bitbucket OAuth projects); the job's start and resource class are unknown")
        return None
    base = (_v(env, "GUARD_CIRCLECI_URL") or "https://circleci.com").rstrip("/")
    url = "/".join([f"{base}/api/v1.1/project", vcs, *(urllib.parse.quote(p, safe="") for p in parts[-3:])])
    try:
        data = _http_json(url, {"Circle-Token": token}, timeout)
        if not isinstance(data, dict):
            raise ValueError("the answer is not an object")
        return data
    except Exception as exc:
        warn(f"GUARD_CIRCLECI_TOKEN: could not read job {parts[-1]} from {url} ({exc}); its start and resource "
             "class are unknown")
        return None


def _proc_stat(pid: int) -> tuple[str, int, int]:
    """(command name, parent pid, start in clock ticks after boot) of a Linux process."""
    text = Path(f"/proc/{pid}/stat").read_text()
    comm = text[text.index("(") + 1:text.rindex(")")]
    rest = text[text.rindex(")") + 2:].split()
    return comm, int(rest[1]), int(rest[19])


def _github_worker_started() -> float | None:
    """The start of the runner's ``Runner.Worker`` process among this process's ancestors: the runner
    starts one for each job, so its start is the job's (Linux: /proc; not inside a job container)."""
    try:
        pid = os.getpid()
        for _ in range(64):
            comm, ppid, ticks = _proc_stat(pid)
            if comm == "Runner.Worker":
                # a process's start is counted in clock ticks on the kernel's boot clock
                boot = getattr(time, "CLOCK_BOOTTIME", None)
                since_boot = time.clock_gettime(boot) if boot is not None else \
                    float(Path("/proc/uptime").read_text().split()[0])
                return time.time() - (since_boot - ticks / os.sysconf("SC_CLK_TCK"))
            if ppid <= 1:
                return None
            pid = ppid
    except (OSError, ValueError, IndexError):
        return None
    return None


def env_attempt(provider: str, env: Mapping[str, str], *, scope: str = "auto",
                warn: Warn = lambda _m: None) -> int | None:
    """The run attempt the environment gives (GitHub's ``GITHUB_RUN_ATTEMPT``, which every job of the run
    shares; the other platforms give none): the log's chunks and the completion must carry the same."""
    if provider != "github" or scope == "off":
        return None
    return _int_var(env, "GITHUB_RUN_ATTEMPT", warn)


def job_from_env(provider: str, env: Mapping[str, str], *, job_id: str, scope: str = "auto",
                 warn: Warn = lambda _m: None, need_start: bool = True, need_attempt: bool = True,
                 timeout: float = _HTTP_TIMEOUT) -> JobInfo:
    """The job as the CI platform's environment describes it (docs/platforms.md, "What guard forward
    reads"). ``scope``: :data:`ENV_SCOPES`. ``need_start``: look the start up where the platform sets no
    variable for it (Jenkins' API, GitHub's runner process); a ``--started-at`` makes that needless."""
    s = effective_scope(provider, env, job_id, scope, warn)
    info = JobInfo(scope=s)
    if s == "off":
        return info
    mine = s == "job"
    build: dict[str, Any] | None = None
    if provider == "github":
        info.run_id = _v(env, "GITHUB_RUN_ID")
        info.attempt = env_attempt(provider, env, scope=s, warn=warn) if need_attempt else None
        info.workflow = _v(env, "GITHUB_WORKFLOW")
        info.branch = _v(env, "GITHUB_HEAD_REF") or _v(env, "GITHUB_REF_NAME")
        info.head_sha = _head_sha(provider, env, warn)
        if mine:
            info.job_name = _v(env, "GITHUB_JOB")
            info.runner = _v(env, "RUNNER_NAME")
            hosted = "self-hosted" if _v(env, "RUNNER_ENVIRONMENT") == "self-hosted" else ""
            info.runner_labels = _labels([hosted, env.get("RUNNER_OS", ""), env.get("RUNNER_ARCH", "")])
    elif provider == "gitlab":
        info.run_id = _v(env, "CI_PIPELINE_ID")
        info.branch = _v(env, "CI_COMMIT_REF_NAME")
        info.head_sha = _head_sha(provider, env, warn)
        if mine:
            info.job_name = _v(env, "CI_JOB_NAME")
            info.workflow = _v(env, "CI_JOB_STAGE")  # what GitLab's job events and API call the job's stage
            info.runner = _v(env, "CI_RUNNER_DESCRIPTION")
            info.runner_labels = _gitlab_tags(_v(env, "CI_RUNNER_TAGS"))
    elif provider == "jenkins":
        info.run_id = _v(env, "BUILD_NUMBER")
        info.workflow = _v(env, "JOB_NAME")
        info.branch = _jenkins_branch(env)
        info.head_sha = _head_sha(provider, env, warn)
        if mine:
            full = _v(env, "JOB_NAME")
            info.job_name = _v(env, "JOB_BASE_NAME") or (full.rsplit("/", 1)[-1] if full else None)
            info.runner = _v(env, "NODE_NAME")
            info.runner_labels = _labels((_v(env, "NODE_LABELS") or "").split())
    elif provider == "circleci":
        info.run_id = _v(env, "CIRCLE_WORKFLOW_ID")
        info.branch = _v(env, "CIRCLE_BRANCH")
        info.head_sha = _head_sha(provider, env, warn)
        if mine:
            info.job_name = _v(env, "CIRCLE_JOB")
            total = _v(env, "CIRCLE_NODE_TOTAL")
            if total and total.isdigit() and int(total) > 1:
                warn(f"CIRCLE_NODE_INDEX {_v(env, 'CIRCLE_NODE_INDEX') or '?'} of CIRCLE_NODE_TOTAL {total}: every "
                     f"parallel node of this job has job id {job_id}; send the job from one node (index 0), or "
                     "give each node its own --job-id")
            build = _circleci_build(env, warn, timeout)
            if build is not None:
                wf = build.get("workflows")
                name = wf.get("workflow_name") if isinstance(wf, dict) else None
                info.workflow = name if isinstance(name, str) and name else None
                rc = build.get("picard")
                rc = rc.get("resource_class") if isinstance(rc, dict) else None
                cls = rc.get("class") if isinstance(rc, dict) else None
                info.runner_labels = _labels([cls]) if isinstance(cls, str) else []
    if not mine:
        return info
    # the start: a variable the pipeline set, the platform's variable, else what the platform can tell
    names = ["GUARD_JOB_STARTED_AT"] + (["CI_JOB_STARTED_AT"] if provider == "gitlab" else [])
    for name in names:
        text = _v(env, name)
        if text is None:
            continue
        try:
            info.started_at, info.started_from = parse_time(text), name
            break
        except ValueError as exc:
            warn(f"{name}: {exc}; ignored")
    if info.started_at is None and provider == "circleci" and build is not None:
        start = build.get("start_time")
        if isinstance(start, str) and start:
            try:
                info.started_at, info.started_from = parse_time(start), "CircleCI's API (start_time)"
            except ValueError as exc:
                warn(f"GUARD_CIRCLECI_TOKEN: the API's start_time: {exc}; ignored")
    if info.started_at is None and need_start:
        if provider == "jenkins":
            info.started_at = _jenkins_started(env, warn, timeout)
            info.started_from = "BUILD_URL (Jenkins' API)" if info.started_at is not None else None
        elif provider == "github" and _v(env, "GITHUB_ACTIONS") == "true":
            info.started_at = _github_worker_started()
            info.started_from = "the runner's Runner.Worker process" if info.started_at is not None else None
    return info


_NO_START = {
    "github": "GitHub sets no variable with a job's start, and no Runner.Worker process was found among this "
              "process's parents (a job container, or not Linux)",
    "gitlab": "CI_JOB_STARTED_AT gives none",
    "jenkins": "Jenkins sets no variable with a build's start, and BUILD_URL's API did not give it",
    "circleci": "CircleCI sets no variable with a job's start; with GUARD_CIRCLECI_TOKEN its API gives it",
}


def _flag_text(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def job_details(provider: str, *, job_id: str, env: Mapping[str, str], sizes: Iterable[str], now: float,
                warn: Warn = lambda _m: None, scope: str = "auto", job_name: str | None = None,
                run_id: str | None = None, attempt: int | None = None, workflow: str | None = None,
                branch: str | None = None, commit: str | None = None, runner: str | None = None,
                runner_labels: str | None = None, size: str | None = None, started_at: str | None = None,
                completed_at: str | None = None, duration_minutes: str | None = None,
                timeout: float = _HTTP_TIMEOUT) -> dict[str, Any]:
    """The completion's description of the job (keyword arguments of :func:`completion`): each flag
    given (an empty one counts as not given) wins over the environment (:func:`job_from_env`).

    Times: ``completed_at`` is the flag, else ``now``. ``duration_minutes`` with ``started_at`` and no
    ``completed_at`` sets the end; with the end, or alone (ending ``now``), it sets the start; with both
    times it is not needed. A start from the environment is taken only when the flags give none. A value
    that cannot be read, a negative duration, or a start after the end is left out with a warning."""
    names = {"started_at": "--started-at", "completed_at": "--completed-at"}
    flags: dict[str, float | None] = {}
    for key, text in (("started_at", started_at), ("completed_at", completed_at)):
        t = _flag_text(text)
        flags[key] = None
        if t is not None:
            try:
                flags[key] = parse_time(t)
            except ValueError as exc:
                warn(f"{names[key]}: {exc}; ignored")
    dur: float | None = None
    t = _flag_text(duration_minutes)
    if t is not None:
        try:
            dur = float(t)
        except ValueError:
            dur = None
        if dur is None or not 0 <= dur < float("inf"):
            warn(f"--duration-minutes: expected a number of minutes >= 0, got {t!r}; ignored")
            dur = None
    start, end = flags["started_at"], flags["completed_at"]
    start_from = "--started-at" if start is not None else None
    if dur is not None:
        if start is not None and end is None:
            end = start + dur * 60.0
        elif start is None:
            end = now if end is None else end
            start, start_from = end - dur * 60.0, "--duration-minutes"
    end_from = "--completed-at" if flags["completed_at"] is not None else None
    if end is None:
        end = now
    info = job_from_env(provider, env, job_id=job_id, scope=scope, warn=warn, need_start=start is None,
                        need_attempt=attempt is None, timeout=timeout)
    if start is None and info.started_at is not None:
        start, start_from = info.started_at, info.started_from
    if start is not None and start > end:
        warn(f"{start_from}: the start is after the job's end ({end_from or 'now'}), which would be a negative "
             "duration; ignored")
        start = None
    elif start is None:
        why = _NO_START.get(provider, "") if info.scope == "job" else f"--from-env {info.scope} reads no job's start"
        warn(f"no start time for job {job_id}: {why}. Its duration, and so its cost, are unknown: pass --started-at "
             "or --duration-minutes" + (", or set GUARD_JOB_STARTED_AT when the job starts" if info.scope == "job"
                                        else ""))
    labels = _labels(x for x in (_flag_text(runner_labels) or "").split(",")) if _flag_text(runner_labels) \
        else info.runner_labels
    runner_name = _flag_text(runner) or info.runner
    priced = list(sizes)
    chosen = _flag_text(size)
    if chosen is not None and chosen not in priced:
        warn(f"--runner-size: {chosen!r} has no price in this cost table ({', '.join(priced)}); sent as given, the "
             "worker prices it by its own table")
    chosen = chosen or runner_size(labels, runner_name, priced)
    name = _flag_text(job_name) or info.job_name or f"job-{job_id}"
    return {"job_name": name, "run_id": _flag_text(run_id) or info.run_id,
            "attempt": attempt if attempt is not None else (info.attempt or 1),
            "workflow": _flag_text(workflow) or info.workflow, "branch": _flag_text(branch) or info.branch,
            "head_sha": _flag_text(commit) or info.head_sha, "runner_labels": labels, "runner_size": chosen,
            "started_at": start, "completed_at": end}
