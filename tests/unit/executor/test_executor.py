"""The action executor against local servers that speak each documented API (no Kafka)."""

from __future__ import annotations

import base64
import email.utils
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healing_guard.executor import ALLOWED_ACTIONS, Clients, DoneStore, Executor
from healing_guard.executor.core import ScheduleStore, jenkins_parameters
from healing_guard.schemas import Command, Outcome

from tests.support.fake_apis import Answer, FakeApis

SECRETS = {
    "GUARD_GITHUB_TOKEN": "ghp_SECRETgithub0123456789",
    "GUARD_GITLAB_TOKEN": "glpat-SECRETgitlab987",
    "GUARD_JENKINS_USER": "guard-bot",
    "GUARD_JENKINS_TOKEN": "11SECRETjenkinsapitoken",
    "GUARD_CIRCLECI_TOKEN": "CCIPAT_SECRETcircle",
    "GUARD_JIRA_USER": "bot@example.com",
    "GUARD_JIRA_TOKEN": "ATATT_SECRETjira",
    "GUARD_JIRA_PROJECT": "CI",
    "GUARD_PAGERDUTY_ROUTING_KEY": "R0UTINGKEYSECRET00000000000000ab",
}
SLACK_PATH = "/services/T000/B000/SECRETslackhook"
NOW = 1_700_000_000.0
#: CircleCI workflow ids are UUIDs
WF = "5034460f-c7c4-4c43-9457-de07e2029e7b"


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, s: float) -> None:
        self.calls.append(s)


@pytest.fixture
def api() -> Iterator[FakeApis]:
    with FakeApis() as a:
        yield a


def make_clients(api: FakeApis, sleeps: Sleeps, **env: str) -> Clients:
    e = {**SECRETS, "GUARD_GITHUB_API_URL": api.url, "GUARD_GITLAB_URL": api.url, "GUARD_JENKINS_URL": api.url,
         "GUARD_CIRCLECI_URL": api.url, "GUARD_SLACK_WEBHOOK_URL": api.url + SLACK_PATH, "GUARD_JIRA_URL": api.url,
         "GUARD_PAGERDUTY_URL": api.url, "GUARD_EXECUTOR_TIMEOUT_SECONDS": "5", **env}
    return Clients.from_env(e, sleep=sleeps, clock=lambda: NOW, proxies={})


def make_executor(api: FakeApis, tmp_path: Path, *, dry_run: bool = False, **env: str) -> tuple[Executor, Sleeps]:
    sleeps = Sleeps()
    return Executor(make_clients(api, sleeps, **env), DoneStore(tmp_path), dry_run=dry_run, sleep=sleeps,
                    clock=lambda: NOW), sleeps


def cmd(provider: str = "github", action: str = "retry", *, run_id: str | None = "777", attempt: int = 1,
        parameters: dict[str, Any] | None = None, command_id: str | None = None, owner: str = "acme",
        repo: str = "shop", job_id: str = "4242") -> Command:
    return Command(provider=provider, owner=owner, repo=repo, job_id=job_id,  # type: ignore[arg-type]
                   command_id=command_id or f"c-{provider}-{action}-{attempt}", attempt=attempt, action=action,
                   reason="the runner was lost", category="infra_runner_lost", confidence=0.9,
                   parameters=parameters or {}, run_id=run_id)


def assert_no_secret(*texts: str) -> None:
    for t in texts:
        for s in [*SECRETS.values(), SLACK_PATH]:
            if s in ("guard-bot", "bot@example.com", "CI"):
                continue
            assert s not in t, f"secret leaked: {t}"


# --- each platform's rerun -------------------------------------------------------------------------

def test_github_rerun_failed_jobs_of_the_run(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("github", "retry", run_id="777"))
    assert out.status == "succeeded" and out.http_status == 201, out.detail
    assert out.category == "infra_runner_lost" and out.job_key == "github/acme/shop/4242"
    (r,) = api.requests
    assert (r.method, r.path) == ("POST", "/repos/acme/shop/actions/runs/777/rerun-failed-jobs")
    assert r.headers["Authorization"] == "Bearer " + SECRETS["GUARD_GITHUB_TOKEN"]
    assert r.headers["Accept"] == "application/vnd.github+json"
    assert r.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert_no_secret(out.detail)


def test_github_rerun_job_without_run_id_and_resource_change_is_said(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("github", "rerun_more_memory", run_id=None, parameters={"memory_factor": 2}))
    assert out.status == "succeeded"
    assert [(r.method, r.path) for r in api.requests] == [("POST", "/repos/acme/shop/actions/jobs/4242/rerun")]
    assert "guard-directive apply) applies: 2x memory" in out.detail, out.detail
    out = ex.execute(cmd("github", "rerun_larger_runner", command_id="larger", parameters={"runner_size": "next"}))
    assert "cannot change the runner class" in out.detail and "plain re-run" in out.detail


def test_gitlab_retry_job_and_pipeline(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("gitlab", "retry", owner="group/sub", repo="proj", job_id="99", run_id="55"))
    assert out.status == "succeeded" and out.http_status == 201
    out2 = ex.execute(cmd("gitlab", "clear_cache_retry", owner="group", repo="proj", job_id="99", run_id="55",
                          parameters={"scope": "pipeline"}))
    assert out2.status == "succeeded"
    r1, *clear, r2 = api.requests  # clear_cache_retry clears the runner caches first (two calls)
    assert r1.method == "POST" and r1.path == "/api/v4/projects/group%2Fsub%2Fproj/jobs/99/retry"
    assert r1.headers["PRIVATE-TOKEN"] == SECRETS["GUARD_GITLAB_TOKEN"]
    assert [c.path for c in clear] == ["/api/v4/projects/group%2Fproj", "/api/graphql"]
    assert r2.path == "/api/v4/projects/group%2Fproj/pipelines/55/retry"
    assert "runner caches are cleared" in out2.detail


def test_jenkins_build_with_parameters(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    c = cmd("jenkins", "rerun_more_memory", parameters={"memory_factor": 2})
    out = ex.execute(c)
    assert out.status == "succeeded" and out.http_status == 201
    (r,) = api.requests
    assert (r.method, r.path) == ("POST", "/job/acme/job/shop/buildWithParameters")
    user, token = base64.b64decode(r.headers["Authorization"].split(" ", 1)[1]).decode().split(":", 1)
    assert (user, token) == ("guard-bot", SECRETS["GUARD_JENKINS_TOKEN"])
    form = dict(urllib.parse.parse_qsl(r.body.decode()))
    assert form == {"GUARD_ACTION": "rerun_more_memory", "GUARD_COMMAND_ID": c.command_id, "GUARD_MEMORY_FACTOR": "2"}
    assert r.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert_no_secret(out.detail)


def test_jenkins_top_level_job_from_a_webhook(api: FakeApis, tmp_path: Path) -> None:
    # the webhook adapter names a top-level job's owner "jenkins": the build goes to /job/<name>
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("jenkins", "retry", owner="jenkins", repo="tool"))
    assert out.status == "succeeded"
    assert [r.path for r in api.requests] == ["/job/tool/buildWithParameters"]


def test_jenkins_parameters_of_test_selection() -> None:
    p = jenkins_parameters(cmd("jenkins", "retry_tests_isolated",
                               parameters={"tests": ["a::x", "b::y"], "failed_tests_only": True,
                                           "isolation": "fresh_process"}))
    assert p["GUARD_TESTS"] == "a::x b::y" and p["GUARD_FAILED_TESTS_ONLY"] == "true"
    assert p["GUARD_ISOLATION"] == "fresh_process"


def test_circleci_rerun_workflow_from_failed(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("circleci", "retry", run_id=WF))
    assert out.status == "succeeded" and out.http_status == 202
    (r,) = api.requests
    assert (r.method, r.path) == ("POST", f"/api/v2/workflow/{WF}/rerun")
    assert r.headers["Circle-Token"] == SECRETS["GUARD_CIRCLECI_TOKEN"]
    assert r.json() == {"from_failed": True}


def test_circleci_without_workflow_id_is_skipped(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("circleci", "retry", run_id=None))
    assert out.status == "skipped" and "workflow" in out.detail and not api.requests


# --- notifications -------------------------------------------------------------------------------

def test_notify_author_posts_to_slack(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("github", "notify_author"))
    assert out.status == "succeeded" and out.http_status == 200
    (r,) = api.requests
    assert r.path == SLACK_PATH and "github/acme/shop/4242" in r.json()["text"]
    assert_no_secret(out.detail)


def test_a_named_slack_channel_goes_through_chat_post_message_with_a_bot_token(api: FakeApis, tmp_path: Path) -> None:
    """notifications.slack.channel / cost_control.alerts.slack: with a bot token the message is posted to that
    channel (Slack's Web API), the budget alert to its own channel; Slack's 200 {"ok": false} is a failure."""
    sleeps = Sleeps()
    clients = make_clients(api, sleeps, GUARD_SLACK_BOT_TOKEN="xoxb-0000-SECRETbot", GUARD_SLACK_API_URL=api.url + "/api")
    ex = Executor(clients, DoneStore(tmp_path), dry_run=False, sleep=sleeps, clock=lambda: NOW,
                  slack_channel="#ci-alerts", budget_slack_channel="#cost-alerts")
    out = ex.execute(cmd("github", "notify_author"))
    assert out.status == "succeeded", out.detail
    budget = ex.execute(cmd("github", "notify_budget", command_id="b-1",
                            parameters={"scope": "daily", "level": 0.8, "spent_usd": 8.0, "budget_usd": 10.0}))
    assert budget.status == "succeeded", budget.detail
    posts = [r for r in api.requests if r.path == "/api/chat.postMessage"]
    assert [r.json()["channel"] for r in posts] == ["#ci-alerts", "#cost-alerts"]
    assert all(r.headers["Authorization"] == "Bearer xoxb-0000-SECRETbot" for r in posts)
    assert "github/acme/shop/4242" in posts[0].json()["text"] and not any(r.path == SLACK_PATH for r in api.requests)
    # a channel the bot is not in: Slack answers 200 {"ok": false, "error": "channel_not_found"}
    out = ex.execute(cmd("github", "notify_author", command_id="n-2", parameters={"channel": "#nowhere"}))
    assert out.status == "failed" and "channel_not_found" in out.detail and "#nowhere" in out.detail
    assert "xoxb-0000-SECRETbot" not in out.detail


def test_a_named_slack_channel_without_a_bot_token_is_said(api: FakeApis, tmp_path: Path) -> None:
    sleeps = Sleeps()
    ex = Executor(make_clients(api, sleeps), DoneStore(tmp_path), dry_run=False, sleep=sleeps, clock=lambda: NOW,
                  slack_channel="#ci-alerts")
    out = ex.execute(cmd("github", "notify_author"))
    assert out.status == "succeeded"
    (r,) = api.requests
    assert r.path == SLACK_PATH  # the webhook's own channel
    assert "#ci-alerts" in out.detail and "GUARD_SLACK_BOT_TOKEN" in out.detail
    bad = ex.execute(cmd("github", "notify_author", command_id="n-3", parameters={"channel": "<!channel>"}))
    assert bad.status == "refused" and "parameters.channel" in bad.detail


def test_open_incident_files_jira_pages_with_dedup_and_posts_slack(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    c = cmd("github", "open_incident", command_id="inc-1",
            parameters={"incident_id": "inc-1", "page": True, "ticket": True, "slack": True,
                        "repositories": ["acme/a", "acme/b"], "jobs": 6})
    out = ex.execute(c)
    assert out.status == "succeeded", out.detail
    paths = [r.path for r in api.requests]
    assert paths == ["/rest/api/3/issue", "/v2/enqueue", SLACK_PATH]
    jira, pd, _ = api.requests
    f = jira.json()["fields"]
    assert f["project"] == {"key": "CI"} and f["issuetype"] == {"name": "Task"}
    assert f["description"]["type"] == "doc"
    assert jira.headers["Authorization"].startswith("Basic ")
    body = pd.json()
    assert body["routing_key"] == SECRETS["GUARD_PAGERDUTY_ROUTING_KEY"]
    assert body["event_action"] == "trigger" and body["dedup_key"] == "inc-1"
    assert body["payload"]["severity"] == "critical" and body["payload"]["summary"] and body["payload"]["source"]
    assert_no_secret(out.detail)


def test_escalate_defaults_ticket_and_slack_without_page(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("gitlab", "escalate", parameters={"ticket": True, "slack": True, "page": False}))
    assert out.status == "succeeded"
    assert [r.path for r in api.requests] == ["/rest/api/3/issue", SLACK_PATH]


SERVICENOW = {"GUARD_SERVICENOW_USER": "guard.bot", "GUARD_SERVICENOW_PASSWORD": "SN-SECRET-pass-0123"}


def test_escalation_opens_a_servicenow_incident_beside_jira_for_its_assignee(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path, GUARD_SERVICENOW_URL=api.url, GUARD_SERVICENOW_ASSIGNMENT_GROUP="CI Platform",
                          **SERVICENOW)
    out = ex.execute(cmd("github", "escalate", command_id="esc-1",
                         parameters={"ticket": True, "slack": False, "assign_to": "@oncall"}))
    assert out.status == "succeeded", out.detail
    assert [r.path for r in api.requests] == ["/rest/api/3/issue", "/api/now/table/incident"]
    jira, sn = api.requests
    assert "Assign to: @oncall" in json.dumps(jira.json()["fields"]["description"])
    body = sn.json()
    assert body["correlation_id"] == "esc-1" and body["assignment_group"] == "CI Platform"
    assert body["urgency"] == "2" and body["short_description"].startswith("[guard] escalate")
    assert "Assign to: @oncall" in body["description"]
    user, _, password = base64.b64decode(sn.headers["Authorization"].split(" ", 1)[1]).decode().partition(":")
    assert (user, password) == ("guard.bot", SERVICENOW["GUARD_SERVICENOW_PASSWORD"])
    assert SERVICENOW["GUARD_SERVICENOW_PASSWORD"] not in out.detail


def test_a_ticket_without_jira_or_servicenow_is_said(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path, GUARD_JIRA_URL="")
    out = ex.execute(cmd("github", "escalate", parameters={"ticket": True, "slack": True}))
    assert out.status == "succeeded" and "no Jira or ServiceNow configured: no ticket" in out.detail
    assert [r.path for r in api.requests] == [SLACK_PATH]
    api.requests.clear()
    ex2, _ = make_executor(api, tmp_path / "sn", GUARD_JIRA_URL="", GUARD_SERVICENOW_URL=api.url, **SERVICENOW)
    out = ex2.execute(cmd("github", "open_incident", command_id="inc-9",
                          parameters={"incident_id": "inc-9", "ticket": True, "slack": False, "page": False}))
    assert out.status == "succeeded" and [r.path for r in api.requests] == ["/api/now/table/incident"]
    assert api.requests[0].json()["urgency"] == "1"  # an incident across repositories is more urgent


def test_notification_without_configured_service_is_skipped(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path, GUARD_SLACK_WEBHOOK_URL="")
    out = ex.execute(cmd("github", "notify_author"))
    assert out.status == "skipped" and "Slack" in out.detail and not api.requests


# --- idempotence, dry run, allow-list ------------------------------------------------------------

def test_same_command_twice_calls_once_also_after_restart(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    c = cmd("github", "retry")
    first = ex.execute(c)
    again = ex.execute(c)
    assert again == first and len(api.requests) == 1
    ex2, _ = make_executor(api, tmp_path)  # a restart: new executor, same data dir
    assert ex2.execute(c) == first
    assert len(api.requests) == 1
    # a torn last line (crash mid-write) is ignored
    with (tmp_path / DoneStore.FILE).open("ab") as f:
        f.write(b'{"command_id": "half')
    assert DoneStore(tmp_path).get(c.command_id) == first


def test_dry_run_calls_nothing_and_is_not_remembered(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path, dry_run=True)
    c = cmd("github", "retry_backoff", attempt=2, parameters={"backoff_seconds": [30, 120, 480]})
    out = ex.execute(c)
    assert out.status == "dry_run" and "would wait 120 s" in out.detail and "run 777" in out.detail
    assert not api.requests and not sleeps.calls
    live, _ = make_executor(api, tmp_path)
    assert live.execute(c).status == "succeeded"


def test_not_allow_listed_action_is_skipped(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("github", "delete_repository"))
    assert out.status == "skipped" and "allow-list" in out.detail and not api.requests
    narrow = Executor(ex.clients, DoneStore(tmp_path / "n"), dry_run=False, allow={"notify_author"})
    assert narrow.execute(cmd("github", "retry")).status == "skipped"
    assert "retry" in ALLOWED_ACTIONS and not api.requests


def test_retry_backoff_waits_scheduled_seconds(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path)
    out = ex.execute(cmd("github", "retry_backoff", attempt=2, parameters={"backoff_seconds": [30, 120, 480]}))
    assert out.status == "succeeded" and sleeps.calls == [120.0]
    out = ex.execute(cmd("github", "retry_backoff", attempt=9, parameters={"backoff_seconds": [30, 120, 480]}))
    assert sleeps.calls == [120.0, 480.0]


def test_a_scheduled_backoff_does_not_sleep_and_survives_restarts(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path)
    slow = cmd("github", "retry_backoff", attempt=2, parameters={"backoff_seconds": [30, 120]})
    assert ex.backoff_of(slow) == 120.0 and ex.backoff_of(cmd("github", "retry")) == 0.0
    dry, _ = make_executor(api, tmp_path / "dry", dry_run=True)
    assert dry.backoff_of(slow) == 0.0  # a dry run reports the wait instead

    sched = ScheduleStore(tmp_path)
    assert sched.add(slow, NOW + 120) and not sched.add(slow, NOW + 500)  # redelivered: scheduled once
    other = cmd("gitlab", "retry_backoff", parameters={"backoff_seconds": [5]})
    sched.add(other, NOW + 5)
    assert sched.due(NOW) == [] and sched.next_due() == NOW + 5
    sched = ScheduleStore(tmp_path)  # an executor restart reads the schedule back
    assert len(sched) == 2 and [c.command_id for c in sched.due(NOW + 200)] == [other.command_id, slow.command_id]

    out = ex.execute(other, waited=True)
    assert out.status == "succeeded" and sleeps.calls == [] and "waited 5 s (backoff)" in out.detail
    sched.published(other.command_id)
    ex.execute(slow, waited=True)  # carried out, but the executor dies before its outcome is published
    calls = len(api.requests)
    sched = ScheduleStore(tmp_path)
    assert [c.command_id for c in sched.due(NOW)] == [] and [c.command_id for c in sched.due(NOW + 120)] == [slow.command_id]
    again, _ = make_executor(api, tmp_path)
    assert again.backoff_of(slow) == 0.0  # done: the loop answers it from the store at once
    assert again.execute(slow, waited=True).status == "succeeded" and len(api.requests) == calls
    sched.published(slow.command_id)
    assert len(ScheduleStore(tmp_path)) == 0
    with (tmp_path / ScheduleStore.FILE).open("ab") as f:
        f.write(b'{"due": 1, "comm')  # a torn last line from a crash is ignored
    assert len(ScheduleStore(tmp_path)) == 0


# --- rate limits and errors ----------------------------------------------------------------------

def test_429_retry_after_seconds_is_honoured(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path)
    api.script("/api/v4/projects/acme%2Fshop/jobs/4242/retry",
               Answer(429, b'{"message":"429 Too Many Requests"}', {"Retry-After": "2"}))
    out = ex.execute(cmd("gitlab", "retry"))
    assert out.status == "succeeded" and out.http_status == 201
    assert sleeps.calls == [2.0] and len(api.requests) == 2
    assert "waiting 2 s" in out.detail


def test_429_retry_after_http_date(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path)
    api.script(SLACK_PATH, Answer(429, b"rate_limited", {"Retry-After": email.utils.formatdate(NOW + 7, usegmt=True)}))
    assert ex.execute(cmd("github", "notify_author")).status == "succeeded"
    assert sleeps.calls == [7.0]


def test_github_rate_limit_headers_are_honoured(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path)
    api.script("/repos/acme/shop/actions/runs/777/rerun-failed-jobs",
               Answer(403, b'{"message":"API rate limit exceeded"}',
                      {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW + 42))}))
    out = ex.execute(cmd("github", "retry"))
    assert out.status == "succeeded" and sleeps.calls == [42.0] and len(api.requests) == 2


def test_github_secondary_rate_limit_403_with_retry_after(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path)
    api.script("/repos/acme/shop/actions/jobs/4242/rerun",
               Answer(403, b'{"message":"You have exceeded a secondary rate limit"}', {"Retry-After": "60"}))
    assert ex.execute(cmd("github", "retry", run_id=None)).status == "succeeded" and sleeps.calls == [60.0]


def test_rate_limit_longer_than_max_wait_fails_without_waiting(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path, GUARD_EXECUTOR_MAX_WAIT_SECONDS="60")
    api.script("/repos/acme/shop/actions/runs/777/rerun-failed-jobs",
               Answer(403, b'{"message":"API rate limit exceeded"}',
                      {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW + 3600))}))
    out = ex.execute(cmd("github", "retry"))
    assert out.status == "failed" and out.http_status == 403 and not sleeps.calls
    assert "3600 s" in out.detail and len(api.requests) == 1


def test_plain_403_is_not_retried(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path)
    api.script("/repos/acme/shop/actions/runs/777/rerun-failed-jobs",
               Answer(403, b'{"message":"Resource not accessible by integration"}', {"X-RateLimit-Remaining": "4999"}))
    out = ex.execute(cmd("github", "retry"))
    assert out.status == "failed" and out.http_status == 403 and not sleeps.calls
    assert "Resource not accessible by integration" in out.detail


def test_5xx_is_retried_with_backoff_then_fails(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path)
    path = f"/api/v2/workflow/{WF}/rerun"
    api.script(path, *[Answer(500, b"internal error")] * 4)  # a 500 was not carried out: safe to repeat
    out = ex.execute(cmd("circleci", "retry", run_id=WF))
    assert out.status == "failed" and out.http_status == 500
    assert sleeps.calls == [1.0, 2.0, 4.0] and len(api.requests) == 4
    assert "after 4 attempts" in out.detail
    # a failed outcome is remembered too: no second round of calls
    assert ex.execute(cmd("circleci", "retry", run_id=WF)).status == "failed" and len(api.requests) == 4


def test_5xx_then_success(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path)
    api.script("/job/acme/job/shop/buildWithParameters", Answer(503, b"starting"))
    assert ex.execute(cmd("jenkins", "retry")).status == "succeeded" and sleeps.calls == [1.0]


def test_4xx_fails_with_truncated_message_and_no_token(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    token = SECRETS["GUARD_GITLAB_TOKEN"]
    msg = f"token {token} cannot retry this job " + "x" * 1000
    api.script("/api/v4/projects/acme%2Fshop/jobs/4242/retry", Answer(404, json.dumps({"message": msg}).encode()))
    out = ex.execute(cmd("gitlab", "retry"))
    assert out.status == "failed" and out.http_status == 404
    assert "cannot retry this job" in out.detail and len(out.detail) < 600
    assert_no_secret(out.detail, out.to_json().decode())


def test_network_error_fails_without_http_status(tmp_path: Path) -> None:
    sleeps = Sleeps()
    clients = Clients.from_env({"GUARD_GITHUB_TOKEN": "t0ken", "GUARD_GITHUB_API_URL": "http://127.0.0.1:9",
                                "GUARD_EXECUTOR_MAX_ATTEMPTS": "2"}, sleep=sleeps, proxies={})
    out = Executor(clients, DoneStore(tmp_path), dry_run=False, sleep=sleeps).execute(cmd("github", "retry"))
    assert out.status == "failed" and out.http_status is None and "network error" in out.detail
    assert sleeps.calls == [1.0]


def test_unconfigured_platform_is_skipped(tmp_path: Path) -> None:
    ex = Executor(Clients.from_env({}), DoneStore(tmp_path), dry_run=False)
    out = ex.execute(cmd("github", "retry"))
    assert out.status == "skipped" and "GUARD_GITHUB_TOKEN" in out.detail


def test_every_outcome_round_trips_its_schema(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    for action in sorted(ALLOWED_ACTIONS):
        out = ex.execute(cmd("github", action, parameters={"test_id": "t::x", "backoff_seconds": [1]}))
        assert Outcome.from_json(out.to_json()) == out
        assert out.status == "succeeded", (action, out.detail)
        assert_no_secret(out.detail)


# --- the typer command and the Kafka loop ---------------------------------------------------------

def test_executor_command_registers_and_refuses_embedded_broker(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from healing_guard.executor.cli import executor_command

    app = typer.Typer()
    app.command("executor")(executor_command)
    app.command("other")(lambda: None)
    runner = CliRunner()
    res = runner.invoke(app, ["executor", "--help"])
    assert res.exit_code == 0 and "--dry-run" in res.output and "--live" in res.output
    res = runner.invoke(app, ["executor", "--broker", "embedded", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2


def test_a_live_executor_without_a_command_key_refuses_to_start(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from healing_guard.executor.cli import executor_command

    app = typer.Typer()
    app.command("executor")(executor_command)
    app.command("other")(lambda: None)
    env = {"GUARD_COMMAND_KEY": None, "GUARD_COMMAND_KEY_FILE": None, "GUARD_EXECUTOR_ALLOW_UNSIGNED": None,
           "GUARD_CONFIG": None}
    # port 9 (discard) on loopback: the check comes before any connection
    res = CliRunner().invoke(app, ["executor", "--live", "--broker", "kafka://127.0.0.1:9", "--data-dir",
                                   str(tmp_path)], env=env)
    assert res.exit_code == 2 and "acts only on signed commands" in res.output, res.output
    assert "healing_guard.signing new-key" in res.output and "--allow-unsigned" in res.output
    bad = tmp_path / "missing.keys"  # a key file that cannot be read is a configuration error, not "unsigned"
    res = CliRunner().invoke(app, ["executor", "--live", "--broker", "kafka://127.0.0.1:9", "--data-dir",
                                   str(tmp_path)], env={**env, "GUARD_COMMAND_KEY_FILE": str(bad)})
    assert res.exit_code == 2 and "configuration error" in res.output and "missing.keys" in res.output, res.output


# --- clearing a corrupt cache on the platform's side ------------------------------------------------

def test_github_clear_cache_deletes_the_branchs_caches_before_the_rerun(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("github", "clear_cache_retry", parameters={"clear_cache": True, "ref": "main"}))
    assert out.status == "succeeded", out.detail
    calls = [(r.method, r.path) for r in api.requests]
    assert calls == [("GET", "/repos/acme/shop/actions/caches"), ("DELETE", "/repos/acme/shop/actions/caches/505"),
                     ("DELETE", "/repos/acme/shop/actions/caches/506"),
                     ("POST", "/repos/acme/shop/actions/runs/777/rerun-failed-jobs")]
    assert "GitHub delete the Actions caches of main: HTTP 200 (deleted 2 cache(s) of refs/heads/main)" in out.detail
    # a failed deletion stops before the re-run (a re-run on the corrupt cache would fail the same way)
    api.script("/repos/acme/shop/actions/caches/505", Answer(403, b'{"message": "Resource not accessible"}'))
    api.requests.clear()
    out = ex.execute(cmd("github", "clear_cache_retry", command_id="again", parameters={"clear_cache": True, "ref": "main"}))
    assert out.status == "failed" and "rerun-failed-jobs" not in " ".join(r.path for r in api.requests), out.detail
    assert "re-run failed jobs of run 777: not done (GitHub delete the Actions caches of main failed)" in out.detail


def test_github_clear_cache_without_a_branch_says_what_the_directive_does(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("github", "clear_cache_retry", parameters={"clear_cache": True}))
    assert [(r.method, r.path) for r in api.requests] == [("POST", "/repos/acme/shop/actions/runs/777/rerun-failed-jobs")]
    assert "no branch known" in out.detail and "GUARD_CACHE_SUFFIX" in out.detail


def test_gitlab_clear_cache_clears_the_runner_caches_before_the_retry(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("gitlab", "clear_cache_retry", owner="grp/sub", parameters={"clear_cache": True}))
    assert out.status == "succeeded", out.detail
    calls = [(r.method, r.path) for r in api.requests]
    assert calls == [("GET", "/api/v4/projects/grp%2Fsub%2Fshop"), ("POST", "/api/graphql"),
                     ("POST", "/api/v4/projects/grp%2Fsub%2Fshop/jobs/4242/retry")]
    gql = json.loads(api.requests[1].body)
    assert "runnerCacheClear" in gql["query"] and gql["variables"] == {"id": "gid://gitlab/Project/4321"}
    # GraphQL answers 200 with errors when the token may not clear caches: that is a failure
    api.script("/api/graphql", Answer(200, b'{"data": {"runnerCacheClear": {"errors": ["not allowed"]}}}'))
    api.requests.clear()
    out = ex.execute(cmd("gitlab", "clear_cache_retry", owner="grp/sub", command_id="g2", parameters={"clear_cache": True}))
    assert out.status == "failed" and "not allowed" in out.detail and not any("retry" in r.path for r in api.requests)


def test_circleci_clear_cache_sets_the_projects_cache_epoch_before_the_rerun(api: FakeApis, tmp_path: Path) -> None:
    from healing_guard.directives import cache_suffix

    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("circleci", "clear_cache_retry", run_id=WF, parameters={"clear_cache": True}))
    assert out.status == "succeeded", out.detail
    calls = [(r.method, r.path) for r in api.requests]
    assert calls == [("GET", f"/api/v2/workflow/{WF}"), ("POST", "/api/v2/project/gh/acme/shop/envvar"),
                     ("POST", f"/api/v2/workflow/{WF}/rerun")]
    epoch = cache_suffix("c-circleci-clear_cache_retry-1")
    assert api.requests[1].json() == {"name": "GUARD_CACHE_EPOCH", "value": epoch}
    assert api.requests[1].headers["Circle-Token"] == SECRETS["GUARD_CIRCLECI_TOKEN"]
    assert "GUARD_CACHE_EPOCH" in out.detail and "fresh cache" in out.detail
    # a workflow of another project: its settings are not touched, and the re-run is not started
    api.script(f"/api/v2/workflow/{WF}", Answer(200, b'{"id": "w", "project_slug": "gh/other/repo"}'))
    api.requests.clear()
    out = ex.execute(cmd("circleci", "clear_cache_retry", run_id=WF, command_id="cc2", parameters={"clear_cache": True}))
    assert out.status == "failed" and "gh/other/repo" in out.detail, out.detail
    assert [(r.method, r.path) for r in api.requests] == [("GET", f"/api/v2/workflow/{WF}")]
    # a token that may not set project variables: no re-run on the corrupt cache either
    api.script("/api/v2/project/gh/acme/shop/envvar", Answer(403, b'{"message": "Permission denied"}'))
    api.requests.clear()
    out = ex.execute(cmd("circleci", "clear_cache_retry", run_id=WF, command_id="cc3", parameters={"clear_cache": True}))
    assert out.status == "failed" and "Permission denied" in out.detail, out.detail
    assert [(r.method, r.path) for r in api.requests] == [("GET", f"/api/v2/workflow/{WF}"),
                                                          ("POST", "/api/v2/project/gh/acme/shop/envvar")]


def test_the_planner_names_the_branch_whose_caches_go() -> None:
    from healing_guard.classify import Diagnosis
    from healing_guard.remediate import Ledger, PlanConfig, plan
    from healing_guard.schemas import JobEvent

    job = JobEvent(provider="github", owner="acme", repo="shop", job_id="1", job_name="build", status="completed",
                   conclusion="failure", branch="feature/x", started_at=NOW - 600, completed_at=NOW)
    d = Diagnosis(category="cache_corruption", confidence=0.95, evidence=())
    _, command = plan(job, d, (), Ledger(), PlanConfig(), 0.008, now=NOW)
    assert command.action == "clear_cache_retry" and command.parameters["ref"] == "feature/x"


def test_a_recovery_only_posts_to_slack(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("github", "notify_recovery", attempt=2,
                         parameters={"slack": True, "healed_by": "cleanup_retry", "ticket": True}))
    assert out.status == "succeeded" and [r.path for r in api.requests] == [SLACK_PATH], out.detail
    assert "a recovery only posts to Slack" in out.detail  # the ticket asked for is said, not dropped
