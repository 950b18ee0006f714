"""``guard fetcher``: download a failed job's log through the platform's API when no forwarder shipped it.

Endpoints (base URLs and tokens come from :meth:`healing_guard.executor.clients.Clients.from_env`):

=========  ==========================================================================================
GitHub     ``GET {api}/repos/{owner}/{repo}/actions/jobs/{job_id}/logs`` answers ``302`` to a short-lived
           download URL; the redirect is followed *without* the ``Authorization`` header when it leaves
           the API host (the URL is pre-signed). Plain text.
GitLab     ``GET {url}/api/v4/projects/{url-encoded owner/repo}/jobs/{job_id}/trace`` (``PRIVATE-TOKEN``).
           Plain text.
Jenkins    ``GET {url}/job/{a}/job/{b}/{build}/consoleText`` (the executor's job path rule on
           ``owner/repo``; the webhook's ``jenkins`` owner of a top-level job is dropped). Basic auth.
CircleCI   ``GET {url}/api/v1.1/project/{vcs}/{org}/{repo}/{build_num}`` (``Circle-Token``) lists
           ``steps[].actions[].output_url``; each output (a pre-signed URL, fetched without the token)
           is downloaded in step order and concatenated. An output is a JSON array of
           ``{"message", "type", "time"}``; its messages are the log text.
=========  ==========================================================================================

The body is streamed in blocks (:data:`BLOCK_SIZE`), never held whole (a CircleCI action's output is
JSON and is read whole, one action at a time). Retries follow the executor's :class:`Transport` rules
(429 / GitHub rate limits / 5xx / network errors), applied before the first byte of a body; a
connection lost mid-body is a :class:`FetchError`. Secrets are masked in every message.

:func:`run_fetcher` consumes ``ci.jobs`` and ``ci.logs`` (group ``<app_id>-fetcher``): a completed job
whose conclusion is ``failure`` or ``timed_out`` and whose log has not shown up on ``ci.logs`` within
``grace_seconds`` is fetched and published to ``ci.logs`` keyed by the job key, in order, the last
chunk ``eof``. A fetch failure goes to ``guard.deadletter`` with the reason; the loop never crashes
on one job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..brokers import consumer_drained
from ..executor.clients import Clients, JenkinsClient, Response, Transport, _error_message, _q, jenkins_full_name
from ..schemas import JobEvent, LogChunk, SchemaError
from .forward import log_chunks

__all__ = ["BLOCK_SIZE", "FetchError", "FetchScheduler", "fetch_log", "publish_log", "run_fetcher"]

log = logging.getLogger("healing_guard.fetcher")

BLOCK_SIZE = 64 * 1024
MAX_REDIRECTS = 5
FETCH_CONCLUSIONS = ("failure", "timed_out")

Send = Callable[[str, bytes, bytes], Awaitable[Any]]


class FetchError(Exception):
    """The platform refused the log (``http_status`` set) or the service is not configured."""

    def __init__(self, provider: str, reason: str, http_status: int | None = None) -> None:
        self.provider = provider
        self.reason = reason
        self.http_status = http_status
        super().__init__(f"{provider}: {reason}" + (f" (HTTP {http_status})" if http_status is not None else ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects come back as ``HTTPError`` so that we decide which headers follow them."""

    def redirect_request(self, *a: Any, **kw: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
_REDIRECTS = (301, 302, 303, 307, 308)
_AUTH_HEADERS = ("authorization", "private-token", "circle-token")


def _open(t: Transport, provider: str, url: str, headers: Mapping[str, str], what: str) -> Any:
    """The open response of ``GET url`` after redirects and the transport's retry rules."""
    hdrs = {"User-Agent": "healing-guard-fetcher/0.1", **headers}
    policy = t.policy
    redirects = 0
    attempt = 1
    while True:
        req = urllib.request.Request(url, headers=hdrs, method="GET")
        try:
            return _OPENER.open(req, timeout=policy.timeout_seconds)
        except urllib.error.HTTPError as exc:
            status = exc.code
            h = {k.lower(): v for k, v in (exc.headers.items() if exc.headers else [])}
            if status in _REDIRECTS and h.get("location"):
                exc.close()
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise FetchError(provider, f"{what}: more than {MAX_REDIRECTS} redirects", status) from None
                new = urllib.parse.urljoin(url, h["location"])
                if urllib.parse.urlsplit(new).netloc != urllib.parse.urlsplit(url).netloc:
                    hdrs = {k: v for k, v in hdrs.items() if k.lower() not in _AUTH_HEADERS}
                url = new
                continue
            try:
                body = exc.read() or b""
            except OSError:
                body = b""
            exc.close()
            resp = Response(status, body, h, t.mask(f"HTTP {status}: {_error_message(body, exc.reason)}"))
        except (urllib.error.URLError, OSError) as exc:
            resp = Response(None, b"", {}, t.mask(f"network error: {getattr(exc, 'reason', exc)}")[:300])
        wait = t._retry_wait(resp, attempt)  # the executor's retry rules
        if wait is None or attempt >= policy.max_attempts:
            more = f" (after {attempt} attempts)" if attempt > 1 else ""
            raise FetchError(provider, f"{what}: {resp.message}{more}", resp.status)
        if wait > policy.max_wait_seconds:
            raise FetchError(provider, f"{what}: {resp.message}; rate limited for {wait:.0f} s, over the "
                                       f"{policy.max_wait_seconds:.0f} s the guard waits", resp.status)
        if wait > 0:
            t.sleep(wait)
        attempt += 1


def _blocks(t: Transport, provider: str, resp: Any, what: str, block_size: int) -> Iterator[bytes]:
    try:
        while True:
            try:
                b = resp.read(block_size)
            except OSError as exc:
                raise FetchError(provider, t.mask(f"{what}: connection lost mid-log: {exc}")) from None
            if not b:
                return
            yield b
    finally:
        resp.close()


def _not_configured(provider: str, service: str, variables: str) -> FetchError:
    return FetchError(provider, f"{service} is not configured (set {variables})")


def fetch_log(clients: Clients, job: JobEvent, *, block_size: int = BLOCK_SIZE,
              circleci_vcs: str = "github") -> Iterator[bytes]:
    """The job's log as byte blocks, in order.

    Configuration and the first request are checked before this returns: a missing service or a
    platform that says no raises :class:`FetchError` here; a failure later in the body raises it from
    the iterator.
    """
    p = job.provider
    what = f"log of {job.job_key}"
    t = clients.transport
    if p == "github":
        gh = clients.github
        if gh is None:
            raise _not_configured(p, "GitHub", "GUARD_GITHUB_TOKEN")
        url = f"{gh.base}/repos/{_q(job.owner)}/{_q(job.repo)}/actions/jobs/{_q(job.job_id)}/logs"
        return _blocks(t, p, _open(t, p, url, gh._headers(), what), what, block_size)
    if p == "gitlab":
        gl = clients.gitlab
        if gl is None:
            raise _not_configured(p, "GitLab", "GUARD_GITLAB_TOKEN")
        url = f"{gl.base}/api/v4/projects/{gl._project(job.owner, job.repo)}/jobs/{_q(job.job_id)}/trace"
        return _blocks(t, p, _open(t, p, url, {"PRIVATE-TOKEN": gl._token}, what), what, block_size)
    if p == "jenkins":
        jk = clients.jenkins
        if jk is None:
            raise _not_configured(p, "Jenkins", "GUARD_JENKINS_URL, GUARD_JENKINS_USER, GUARD_JENKINS_TOKEN")
        path = JenkinsClient.job_path(jenkins_full_name(job.owner, job.repo))
        url = f"{jk.base}{path}/{_q(job.job_id)}/consoleText"
        return _blocks(t, p, _open(t, p, url, {"Authorization": jk._auth}, what), what, block_size)
    if p == "circleci":
        cc = clients.circleci
        if cc is None:
            raise _not_configured(p, "CircleCI", "GUARD_CIRCLECI_TOKEN")
        url = (f"{cc.base}/api/v1.1/project/{_q(circleci_vcs)}/{_q(job.owner)}/{_q(job.repo)}/"
               f"{_q(job.job_id)}")
        r = t.request("GET", url, headers={"Circle-Token": cc._token, "Accept": "application/json"})
        if not r.ok:
            raise FetchError(p, f"{what}: {r.message}", r.status)
        doc = r.json()
        if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
            raise FetchError(p, f"{what}: the build has no 'steps' list", r.status)
        urls = [a["output_url"] for s in doc["steps"] if isinstance(s, dict)
                for a in (s.get("actions") or []) if isinstance(a, dict) and a.get("output_url")]
        return _circleci_outputs(t, urls, what, block_size)
    raise FetchError(p, f"no log API known for provider {p!r}")


def _circleci_outputs(t: Transport, urls: list[str], what: str, block_size: int) -> Iterator[bytes]:
    for i, u in enumerate(urls):
        resp = _open(t, "circleci", u, {}, f"{what} (step output {i + 1}/{len(urls)})")
        body = b"".join(_blocks(t, "circleci", resp, what, block_size))
        yield from _circleci_text(body)


def _circleci_text(body: bytes) -> Iterator[bytes]:
    """An action output: JSON ``[{"message": ...}, ...]`` -> the messages; anything else as it is."""
    try:
        items = json.loads(body) if body.lstrip()[:1] == b"[" else None
    except ValueError:
        items = None
    if not isinstance(items, list):
        if body:
            yield body if body.endswith(b"\n") else body + b"\n"
        return
    text = "".join(str(m.get("message", "")) for m in items if isinstance(m, dict))
    if text:
        yield (text if text.endswith("\n") else text + "\n").encode("utf-8", "replace")


# --- publishing ----------------------------------------------------------------------------------

async def publish_log(send: Send, settings: Any, job: JobEvent, *, clients: Clients,
                      circleci_vcs: str = "github") -> int:
    """Fetch ``job``'s log and send its chunks to ``ci.logs`` in order; a failure goes to the dead
    letter topic. Returns the number of chunks sent (0 on failure). Never raises :class:`FetchError`."""
    from ..engine.core import dead_letter

    t = settings.topics
    key = job.job_key.encode()
    sent = 0
    try:
        blocks = await asyncio.to_thread(fetch_log, clients, job, circleci_vcs=circleci_vcs)
        it = log_chunks(blocks, provider=job.provider, owner=job.owner, repo=job.repo, job_id=job.job_id,
                        attempt=job.attempt)
        while True:
            chunk: LogChunk | None = await asyncio.to_thread(next, it, None)
            if chunk is None:
                break
            chunk.ts = time.time()
            await send(t.logs, key, chunk.to_json())
            sent += 1
    except FetchError as exc:
        reason = f"log fetch failed for {job.job_key} attempt {job.attempt}" + (
            f" after {sent} chunks" if sent else "") + f": {exc}"
        log.warning("%s", reason)
        await send(t.deadletter, key, dead_letter(t.jobs, job.to_json(), reason, key=key).to_json())
        return 0
    return sent


# --- which jobs to fetch -------------------------------------------------------------------------

@dataclass
class FetchScheduler:
    """Pure bookkeeping of the loop: failed jobs wait ``grace_seconds`` for their log on ``ci.logs``.

    Memory is bounded: at most ``max_seen`` job attempts whose log was seen and ``max_pending`` jobs
    waiting (the oldest is dropped first).
    """

    grace_seconds: float = 30.0
    max_seen: int = 100_000
    max_pending: int = 10_000

    def __post_init__(self) -> None:
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.pending: OrderedDict[str, tuple[float, JobEvent]] = OrderedDict()

    @staticmethod
    def _k(job_key: str, attempt: int) -> str:
        return f"{job_key}#{attempt}"

    def on_chunk(self, chunk: LogChunk) -> None:
        k = self._k(chunk.job_key, chunk.attempt)
        self.seen[k] = None
        self.seen.move_to_end(k)
        while len(self.seen) > self.max_seen:
            self.seen.popitem(last=False)
        self.pending.pop(k, None)

    def on_job(self, ev: JobEvent, now: float) -> bool:
        """True when the job now waits for its log."""
        if ev.status != "completed" or ev.conclusion not in FETCH_CONCLUSIONS:
            return False
        if ev.log_chunks:  # a forwarder shipped it
            return False
        k = self._k(ev.job_key, ev.attempt)
        if k in self.seen or k in self.pending:
            return False
        self.pending[k] = (now + self.grace_seconds, ev)
        while len(self.pending) > self.max_pending:
            dropped = self.pending.popitem(last=False)
            log.warning("fetcher: too many jobs waiting, dropped %s", dropped[0])
        return True

    def due(self, now: float) -> list[JobEvent]:
        """Jobs whose grace ran out without a log, removed from the waiting list (in arrival order)."""
        out = [k for k, (deadline, _) in self.pending.items() if deadline <= now]
        jobs = []
        for k in out:
            _, ev = self.pending.pop(k)
            self.seen[k] = None  # never fetched twice
            jobs.append(ev)
        while len(self.seen) > self.max_seen:
            self.seen.popitem(last=False)
        return jobs


async def run_fetcher(settings: Any, *, clients: Clients | None = None, once: bool = False,
                      grace_seconds: float = 30.0, env: Mapping[str, str] | None = None,
                      stop: asyncio.Event | None = None, circleci_vcs: str = "github") -> dict[str, int]:
    """Run until ``stop`` is set (or, with ``once``, until both topics are drained and no job waits).

    Returns counts: ``fetched`` (jobs), ``chunks``, ``failed`` (sent to the dead letter topic).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    t = settings.topics
    clients = clients or Clients.from_env(env)
    sched = FetchScheduler(grace_seconds=grace_seconds)
    from ..kafka_auth import client_options

    consumer = AIOKafkaConsumer(t.jobs, t.logs, bootstrap_servers=settings.bootstrap,
                                group_id=f"{settings.app_id}-fetcher", enable_auto_commit=True,
                                auto_offset_reset="earliest", max_poll_interval_ms=3_600_000,
                                **client_options(settings))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=5,
                                **client_options(settings))
    counts = {"fetched": 0, "chunks": 0, "failed": 0}

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await producer.send_and_wait(topic, key=key, value=value)

    await consumer.start()
    await producer.start()
    try:
        idle = 0
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            now = time.time()
            for records in batch.values():
                for r in records:
                    try:
                        if r.topic == t.logs:
                            sched.on_chunk(LogChunk.from_json(r.value or b""))
                        else:
                            sched.on_job(JobEvent.from_json(r.value or b""), now)
                    except SchemaError:
                        pass  # the guard's agents dead-letter malformed records; not ours to repeat
            for job in sched.due(time.time()):
                try:
                    n = await publish_log(send, settings, job, clients=clients, circleci_vcs=circleci_vcs)
                except Exception:  # noqa: BLE001 - one job never stops the loop
                    log.exception("fetcher: publishing the log of %s failed", job.job_key)
                    n = 0
                counts["fetched" if n else "failed"] += 1
                counts["chunks"] += n
            if batch:
                idle = 0
                continue
            idle += 1
            if once and not sched.pending and await consumer_drained(consumer, idle):
                break
    finally:
        await producer.stop()
        await consumer.stop()
    return counts
