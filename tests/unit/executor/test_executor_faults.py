"""Executor faults against local HTTP servers: 5xx, 429 / rate limits, read timeouts, refused connections,
and the never-twice rules (ambiguous failures, write-ahead intents, multi-step commands). No Kafka: the
Kafka loop under faults and a SIGKILL is tests/integration/test_executor_faults.py."""

from __future__ import annotations

import email.utils
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from healing_guard.executor import Clients, DoneStore, Executor
from healing_guard.schemas import Outcome

from tests.support.fake_apis import Answer, FakeApis
from .test_executor import NOW, SECRETS, SLACK_PATH, WF, Sleeps, assert_no_secret, cmd, make_clients

GH_JOB = "/repos/acme/shop/actions/jobs/4242/rerun"
GH_RUN = "/repos/acme/shop/actions/runs/777/rerun-failed-jobs"
GL_JOB = "/api/v4/projects/acme%2Fshop/jobs/4242/retry"
JENKINS = "/job/acme/job/shop/buildWithParameters"
CIRCLE = f"/api/v2/workflow/{WF}/rerun"
JIRA = "/rest/api/3/issue"
TIMEOUT = 0.3  # RetryPolicy.timeout_seconds in the read-timeout tests
STALL = 2.0  # how long the server holds a stalled answer (> TIMEOUT)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not an Exception, so nothing catches it on the way)."""


@pytest.fixture
def api() -> Iterator[FakeApis]:
    with FakeApis(stateful=True) as a:
        yield a


def executor(api: FakeApis, tmp_path: Path, sleeps: Sleeps | None = None, **env: str) -> tuple[Executor, Sleeps]:
    sleeps = sleeps or Sleeps()
    return Executor(make_clients(api, sleeps, **env), DoneStore(tmp_path), dry_run=False, sleep=sleeps,
                    clock=lambda: NOW), sleeps


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens: connection refused
    return port


# --- not done: always retried, honouring Retry-After ----------------------------------------------

def test_503_then_success(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = executor(api, tmp_path)
    api.script(GH_JOB, Answer(503, b'{"message":"Service Unavailable"}'))
    out = ex.execute(cmd("github", "retry", run_id=None))
    assert out.status == "succeeded" and out.http_status == 201, out.detail
    assert sleeps.calls == [1.0] and len(api.requests) == 2 and api.executed[GH_JOB] == 1


def test_503_with_retry_after_waits_that_long(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = executor(api, tmp_path)
    api.script(JENKINS, Answer(503, b"Jenkins is getting ready to work", {"Retry-After": "3"}))
    assert ex.execute(cmd("jenkins", "retry")).status == "succeeded"
    assert sleeps.calls == [3.0] and api.executed[JENKINS] == 1


def test_429_retry_after_seconds(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = executor(api, tmp_path)
    api.script(GL_JOB, Answer(429, b'{"message":"429 Too Many Requests"}', {"Retry-After": "2"}))
    out = ex.execute(cmd("gitlab", "retry"))
    assert out.status == "succeeded" and sleeps.calls == [2.0]
    assert "after waiting 2 s" in out.detail and api.executed[GL_JOB] == 1 and len(api.requests) == 2


def test_429_retry_after_http_date(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = executor(api, tmp_path)
    api.script(CIRCLE, Answer(429, b'{"message":"Too many requests"}',
                              {"Retry-After": email.utils.formatdate(NOW + 5, usegmt=True)}))
    assert ex.execute(cmd("circleci", "retry", run_id=WF)).status == "succeeded"
    assert sleeps.calls == [5.0] and api.executed[CIRCLE] == 1


def test_github_403_rate_limit_reset(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = executor(api, tmp_path)
    api.script(GH_RUN, Answer(403, b'{"message":"API rate limit exceeded for installation ID 1."}',
                              {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW + 42))}))
    out = ex.execute(cmd("github", "retry"))
    assert out.status == "succeeded" and sleeps.calls == [42.0] and api.executed[GH_RUN] == 1


def test_500_forever_gives_up_after_max_attempts(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = executor(api, tmp_path)
    api.script(GL_JOB, *[Answer(500, b'{"message":"500 Internal Server Error"}')] * 4)
    out = ex.execute(cmd("gitlab", "retry"))
    assert out.status == "failed" and out.http_status == 500
    assert "HTTP 500: 500 Internal Server Error (gave up after 4 attempts)" in out.detail
    assert "may have gone through" not in out.detail  # a 500 is the platform saying it did not do it
    assert sleeps.calls == [1.0, 2.0, 4.0] and len(api.requests) == 4 and api.executed[GL_JOB] == 0


def test_retry_after_longer_than_max_wait_is_refused(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = executor(api, tmp_path, GUARD_EXECUTOR_MAX_WAIT_SECONDS="60")
    api.script(SLACK_PATH, Answer(429, b"rate_limited", {"Retry-After": "600"}))
    out = ex.execute(cmd("github", "notify_author"))
    assert out.status == "failed" and out.http_status == 429 and not sleeps.calls
    assert "asked to wait 600 s, over the 60 s the executor waits" in out.detail and len(api.requests) == 1
    assert_no_secret(out.detail)


def test_connection_refused_is_retried_then_fails(tmp_path: Path) -> None:
    # the request never reached a server: safe to repeat, even for a call that is not (Slack)
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{closed_port()}"
    clients = Clients.from_env({"GUARD_SLACK_WEBHOOK_URL": url + SLACK_PATH, "GUARD_GITHUB_TOKEN": "t0ken",
                                "GUARD_GITHUB_API_URL": url}, sleep=sleeps, clock=lambda: NOW, proxies={})
    ex = Executor(clients, DoneStore(tmp_path), dry_run=False, sleep=sleeps, clock=lambda: NOW)
    out = ex.execute(cmd("github", "notify_author"))
    assert out.status == "failed" and out.http_status is None
    assert "network error" in out.detail and "refused" in out.detail.lower()
    assert "(gave up after 4 attempts)" in out.detail and "may have gone through" not in out.detail
    assert sleeps.calls == [1.0, 2.0, 4.0]
    assert_no_secret(out.detail)


# --- ambiguous: sent, no answer ---------------------------------------------------------------------

def test_read_timeout_of_a_repeat_safe_call_that_went_through(api: FakeApis, tmp_path: Path) -> None:
    """GitHub re-ran the job, but the answer never came: the repeat is refused as already running, which
    proves the first attempt went through -- succeeded, and the job ran once."""
    ex, sleeps = executor(api, tmp_path, GUARD_EXECUTOR_TIMEOUT_SECONDS=str(TIMEOUT))
    api.script(GH_JOB, Answer(201, delay=STALL))
    out = ex.execute(cmd("github", "retry", run_id=None))
    assert out.status == "succeeded" and out.http_status == 403, out.detail
    assert "went through on an earlier attempt that got no answer" in out.detail
    assert "This workflow is already running" in out.detail
    assert api.executed[GH_JOB] == 1 and len(api.requests) == 2 and sleeps.calls == [1.0]


def test_read_timeout_of_a_repeat_safe_call_that_did_not_go_through(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = executor(api, tmp_path, GUARD_EXECUTOR_TIMEOUT_SECONDS=str(TIMEOUT))
    api.script(GL_JOB, Answer(503, delay=STALL, executes=False))
    out = ex.execute(cmd("gitlab", "retry"))
    assert out.status == "succeeded" and out.http_status == 201, out.detail
    assert api.executed[GL_JOB] == 1 and len(api.requests) == 2


def test_gitlab_not_retryable_after_a_timeout_counts_as_done(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = executor(api, tmp_path, GUARD_EXECUTOR_TIMEOUT_SECONDS=str(TIMEOUT))
    api.script(GL_JOB, Answer(201, json.dumps({"id": 4243, "status": "pending"}).encode(), delay=STALL))
    out = ex.execute(cmd("gitlab", "retry"))
    assert out.status == "succeeded" and "Job is not retryable" in out.detail
    assert api.executed[GL_JOB] == 1 and len(api.requests) == 2


def test_not_retryable_without_an_earlier_timeout_is_a_failure(api: FakeApis, tmp_path: Path) -> None:
    # someone else retried the job: nothing says *we* did it
    ex, sleeps = executor(api, tmp_path)
    api.script(GL_JOB, Answer(403, b'{"message":"403 Forbidden - Job is not retryable"}'))
    out = ex.execute(cmd("gitlab", "retry"))
    assert out.status == "failed" and out.http_status == 403 and not sleeps.calls and len(api.requests) == 1


@pytest.mark.parametrize("provider,action,path,check", [
    ("jenkins", "retry", JENKINS, "/job/acme/job/shop/ (a build with GUARD_COMMAND_ID=c-jenkins-retry-1)"),
    ("circleci", "retry", CIRCLE, f"/pipelines/workflows/{WF}"),
    ("github", "notify_author", SLACK_PATH, "the channel the Slack webhook posts to"),
    ("github", "quarantine_test", JIRA, "/issues/?jql=project%20%3D%20%22CI%22"),
])
def test_read_timeout_of_a_call_not_safe_to_repeat_is_not_repeated(api: FakeApis, tmp_path: Path, provider: str,
                                                                   action: str, path: str, check: str) -> None:
    ex, sleeps = executor(api, tmp_path, GUARD_EXECUTOR_TIMEOUT_SECONDS=str(TIMEOUT))
    api.script(path, Answer(201, delay=STALL))
    out = ex.execute(cmd(provider, action, run_id=WF if provider == "circleci" else "777"))
    assert out.status == "unknown" and out.http_status is None, out.detail
    assert f"timed out after {TIMEOUT:g} s" in out.detail
    assert "it may have gone through: not repeated, so it cannot run twice; check" in out.detail
    assert check in out.detail
    assert [r.path for r in api.requests].count(path) == 1 and api.executed[path] == 1
    assert not sleeps.calls or action == "quarantine_test"  # (the quarantine's Slack step is a separate call)
    assert_no_secret(out.detail)
    # and it is done: a redelivery calls nothing
    n = len(api.requests)
    assert ex.execute(cmd(provider, action, run_id=WF if provider == "circleci" else "777")) == out
    assert len(api.requests) == n


def test_502_is_ambiguous(api: FakeApis, tmp_path: Path) -> None:
    """A gateway's 502/504: the API behind it may have done it. Not repeated for CircleCI; repeated for
    GitHub, whose repeat is refused if the first went through."""
    ex, sleeps = executor(api, tmp_path)
    api.script(CIRCLE, Answer(502, b"<html>502 Bad Gateway</html>", executes=True))
    out = ex.execute(cmd("circleci", "retry", run_id=WF))
    assert out.status == "unknown" and out.http_status == 502 and "not repeated" in out.detail
    assert api.executed[CIRCLE] == 1 and len(api.requests) == 1 and not sleeps.calls

    api.script(GH_RUN, Answer(504, b"<html>504 Gateway Time-out</html>", executes=True))
    out = ex.execute(cmd("github", "retry", command_id="gh-504"))
    assert out.status == "succeeded" and "already running" in out.detail
    assert api.executed[GH_RUN] == 1 and sleeps.calls == [1.0]


def test_ambiguous_every_time_gives_up_and_says_it_may_have_gone_through(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = executor(api, tmp_path, GUARD_EXECUTOR_MAX_ATTEMPTS="2")
    api.script(GH_JOB, *[Answer(504, b"gateway timeout", executes=False)] * 2)
    out = ex.execute(cmd("github", "retry", run_id=None))
    assert out.status == "unknown" and out.http_status == 504
    assert "gave up after 2 attempts" in out.detail and "may have gone through: check" in out.detail
    assert "/acme/shop/runs/4242" in out.detail  # the job's page on the platform


def test_pagerduty_trigger_is_repeated_after_a_timeout(api: FakeApis, tmp_path: Path) -> None:
    # dedup_key makes the repeat join the same alert: safe
    ex, _ = executor(api, tmp_path, GUARD_EXECUTOR_TIMEOUT_SECONDS=str(TIMEOUT))
    api.script("/v2/enqueue", Answer(202, b'{"status":"success"}', delay=STALL))
    out = ex.execute(cmd("github", "notify_oncall", parameters={"page": True, "slack": False}))
    assert out.status == "succeeded", out.detail
    keys = [r.json()["dedup_key"] for r in api.requests if r.path == "/v2/enqueue"]
    assert len(keys) == 2 and keys[0] == keys[1]


# --- never twice: multi-step commands and restarts --------------------------------------------------

def test_multi_step_failure_does_not_repeat_the_steps_that_worked(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = executor(api, tmp_path)
    api.script(SLACK_PATH, Answer(404, b"no_service"))
    c = cmd("github", "open_incident", parameters={"incident_id": "inc-1"})
    out = ex.execute(c)
    assert out.status == "failed" and "Jira issue in CI: HTTP 201" in out.detail
    assert "Slack message: FAILED" in out.detail
    n = len(api.requests)
    assert ex.execute(c) == out and len(api.requests) == n  # redelivered: nothing again
    ex2, _ = executor(api, tmp_path)  # restarted
    assert ex2.execute(c) == out and len(api.requests) == n
    assert api.executed[JIRA] == 1 and api.executed["/v2/enqueue"] == 1


def test_killed_mid_command_is_not_run_again_after_restart(api: FakeApis, tmp_path: Path) -> None:
    """Killed while the Slack step waits for its retry, after Jira and PagerDuty answered: the restart gives
    the command an ``interrupted`` outcome naming what was done and what may have gone through."""
    def kill(_: float) -> None:
        raise Killed

    sleeps = Sleeps()
    clients = make_clients(api, sleeps)
    clients.transport.sleep = kill
    ex = Executor(clients, DoneStore(tmp_path), dry_run=False, sleep=sleeps, clock=lambda: NOW)
    api.script(SLACK_PATH, Answer(503, b"busy"))
    c = cmd("github", "open_incident", parameters={"incident_id": "inc-1"})
    with pytest.raises(Killed):
        ex.execute(c)
    n = len(api.requests)
    assert n == 3

    store = DoneStore(tmp_path, clock=lambda: NOW + 60)  # the restart
    (out,) = store.recovered
    assert out.command_id == c.command_id and out.status == "unknown" and out.job_key == c.job_key
    assert out.action == "open_incident" and out.category == c.category and out.ts == NOW + 60
    assert out.detail.startswith("interrupted: the executor stopped while carrying this out; not repeated so the "
                                 "job cannot run twice")
    assert ("done before the stop: Jira issue in CI: HTTP 201; PagerDuty trigger dedup_key=inc-1: HTTP 202"
            in out.detail)
    assert "Slack message: may have gone through, check the channel the Slack webhook posts to" in out.detail
    assert store.unpublished() == [out]
    ex2 = Executor(make_clients(api, sleeps), store, dry_run=False, sleep=sleeps, clock=lambda: NOW)
    assert ex2.execute(c) == out and len(api.requests) == n
    # a second restart finds the outcome, not the intent: recovered once
    assert DoneStore(tmp_path).recovered == [] and DoneStore(tmp_path).get(c.command_id) == out


def test_killed_after_every_call_came_back_gets_the_real_outcome(api: FakeApis, tmp_path: Path) -> None:
    class DiesBeforeTheOutcome(DoneStore):
        def put(self, outcome: Outcome) -> None:
            raise Killed

    sleeps = Sleeps()
    ex = Executor(make_clients(api, sleeps), DiesBeforeTheOutcome(tmp_path), dry_run=False, sleep=sleeps,
                  clock=lambda: NOW)
    c = cmd("gitlab", "retry")
    with pytest.raises(Killed):
        ex.execute(c)
    (out,) = DoneStore(tmp_path).recovered
    assert out.status == "succeeded" and out.http_status == 201
    assert out.detail.startswith("GitLab retry job 4242: HTTP 201; (recorded at restart")
    assert api.executed[GL_JOB] == 1


def test_killed_after_an_unanswered_call_came_back_gets_unknown_as_execute_would(api: FakeApis,
                                                                                 tmp_path: Path) -> None:
    """The recovered outcome is the one execute() would have written: a Jenkins build that timed out (sent,
    not repeated) is ``unknown``, not ``failed``, so the planner does not learn from it."""
    class DiesBeforeTheOutcome(DoneStore):
        def put(self, outcome: Outcome) -> None:
            raise Killed

    sleeps = Sleeps()
    api.script(JENKINS, Answer(201, delay=STALL))
    ex = Executor(make_clients(api, sleeps, GUARD_EXECUTOR_TIMEOUT_SECONDS=str(TIMEOUT)),
                  DiesBeforeTheOutcome(tmp_path), dry_run=False, sleep=sleeps, clock=lambda: NOW)
    c = cmd("jenkins", "retry")
    with pytest.raises(Killed):
        ex.execute(c)
    (out,) = DoneStore(tmp_path).recovered
    assert out.status == "unknown" and out.http_status is None, out
    assert "(recorded at restart" in out.detail and "may have gone through" in out.detail
    assert len(api.requests) == 1


def test_killed_during_the_backoff_before_any_call_runs_it_after_restart(api: FakeApis, tmp_path: Path) -> None:
    # nothing was called, so nothing can run twice: the restart carries it out
    def kill(_: float) -> None:
        raise Killed

    sleeps = Sleeps()
    ex = Executor(make_clients(api, sleeps), DoneStore(tmp_path), dry_run=False, sleep=kill, clock=lambda: NOW)
    c = cmd("github", "retry_backoff", parameters={"backoff_seconds": [30]})
    with pytest.raises(Killed):
        ex.execute(c)
    store = DoneStore(tmp_path)
    assert not api.requests and not store.recovered and store.get(c.command_id) is None
    out = Executor(make_clients(api, sleeps), store, dry_run=False, sleep=sleeps, clock=lambda: NOW).execute(c)
    assert out.status == "succeeded" and api.executed[GH_RUN] == 1


def test_publication_marks_and_old_files(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = executor(api, tmp_path)
    c = cmd("github", "retry")
    out = ex.execute(c)
    assert ex.store.unpublished() == [out] and not ex.store.was_published(c.command_id)
    ex.store.mark_published(c.command_id)
    again = DoneStore(tmp_path)
    assert again.was_published(c.command_id) and again.unpublished() == [] and again.get(c.command_id) == out
    # a file written by an older executor (outcome lines only) publishes nothing at start
    old = tmp_path / "old"
    old.mkdir()
    (old / DoneStore.FILE).write_bytes(out.to_json() + b"\n" + b'{"started": "torn')
    s = DoneStore(old)
    assert s.get(c.command_id) == out and s.unpublished() == [] and s.recovered == []


def test_no_secret_in_the_intent_log(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = executor(api, tmp_path, GUARD_EXECUTOR_TIMEOUT_SECONDS=str(TIMEOUT))
    api.script(SLACK_PATH, Answer(200, b"ok", delay=STALL))
    for action in ("open_incident", "notify_author"):
        ex.execute(cmd("jenkins", action))
    ex.execute(cmd("jenkins", "retry"))
    text = (tmp_path / DoneStore.FILE).read_text()
    assert '"started"' in text and '"step"' in text
    assert_no_secret(text)
    assert SECRETS["GUARD_JENKINS_TOKEN"] not in text


class HangUp:
    """A server that reads each request and closes the connection without answering (a crashed backend)."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    if conn.recv(65536):
                        self.requests += 1
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_connection_closed_without_an_answer_is_ambiguous(tmp_path: Path) -> None:
    hang = HangUp()
    try:
        sleeps = Sleeps()
        clients = Clients.from_env({"GUARD_SLACK_WEBHOOK_URL": hang.url + SLACK_PATH, "GUARD_GITLAB_TOKEN": "t0ken",
                                    "GUARD_GITLAB_URL": hang.url}, sleep=sleeps, clock=lambda: NOW, proxies={})
        ex = Executor(clients, DoneStore(tmp_path), dry_run=False, sleep=sleeps, clock=lambda: NOW)
        out = ex.execute(cmd("gitlab", "notify_author"))  # Slack: not safe to repeat
        assert out.status == "unknown" and "no answer" in out.detail and "not repeated" in out.detail
        assert hang.requests == 1 and not sleeps.calls
        out = ex.execute(cmd("gitlab", "retry"))  # GitLab job retry: safe, repeated until it gives up
        assert out.status == "unknown" and "(gave up after 4 attempts)" in out.detail
        assert "may have gone through: check " + hang.url + "/acme/shop/-/jobs/4242" in out.detail
        assert hang.requests == 5 and sleeps.calls == [1.0, 2.0, 4.0]
    finally:
        hang.close()
