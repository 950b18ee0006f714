"""The executor acts only on well-formed commands: the parameter schema, shell-safe Jenkins parameters, the
repository allow-list, safe URL path segments, text from logs kept as data, dry runs that name their
target, and notify_author's Jira / PagerDuty requests (issue 17)."""

from __future__ import annotations

import dataclasses
import json
import logging
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healing_guard.executor import Clients, DoneStore, Executor
from healing_guard.executor.clients import (
    CircleCIClient,
    GitHubClient,
    GitLabClient,
    JenkinsClient,
    Transport,
    slack_escape,
)
from healing_guard.executor.core import MAX_BACKOFF_SECONDS, ScheduleStore, jenkins_parameters, repo_entry
from healing_guard.remediate import strategies as table
from healing_guard.schemas import Command, Evidence

from tests.support.fake_apis import FakeApis
from .test_executor import NOW, SLACK_PATH, WF, Sleeps, cmd, make_clients, make_executor

JIRA = "/rest/api/3/issue"
PD = "/v2/enqueue"


@pytest.fixture
def api() -> Iterator[FakeApis]:
    with FakeApis() as a:
        yield a


def refused(out: Any, field: str) -> bool:
    return out.status == "refused" and out.detail.startswith(f"refused: {field}")


# --- 1. the parameter schema ------------------------------------------------------------------------

def test_a_backoff_of_1e12_seconds_is_refused_without_waiting_or_calling(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path)
    c = cmd("github", "retry_backoff", parameters={"backoff_seconds": [1e12]})
    assert ex.backoff_of(c) == 0.0  # the Kafka loop does not schedule it: it gets its outcome at once
    out = ex.execute(c)
    assert refused(out, "parameters.backoff_seconds[0]"), out.detail
    assert "3600" in out.detail
    assert not sleeps.calls and not api.requests
    assert ex.store.get(c.command_id) is None  # not stored: nothing was called


def test_backoff_limits(api: FakeApis, tmp_path: Path) -> None:
    ex, sleeps = make_executor(api, tmp_path)
    longest = cmd("github", "retry_backoff", command_id="ok", parameters={"backoff_seconds": [MAX_BACKOFF_SECONDS]})
    assert ex.backoff_of(longest) == MAX_BACKOFF_SECONDS
    assert ex.execute(longest).status == "succeeded" and sleeps.calls == [MAX_BACKOFF_SECONDS]
    too_many = cmd("github", "retry_backoff", command_id="many", parameters={"backoff_seconds": [1] * 11})
    assert refused(ex.execute(too_many), "parameters.backoff_seconds")
    for bad in ([], [-1], ["30"], [True], "30", [30, None]):
        c = cmd("github", "retry_backoff", command_id=f"bad-{len(str(bad))}", parameters={"backoff_seconds": bad})
        assert refused(ex.execute(c), "parameters.backoff_seconds"), bad
    assert len(api.requests) == 1


@pytest.mark.parametrize("action,parameters,field", [
    ("rerun_more_memory", {"memory_factor": 100}, "parameters.memory_factor"),
    ("rerun_more_memory", {"memory_factor": 1}, "parameters.memory_factor"),
    ("rerun_more_memory", {"memory_factor": "2"}, "parameters.memory_factor"),
    ("rerun_more_memory", {"memory_factor": True}, "parameters.memory_factor"),
    ("rerun_larger_runner", {"runner_size": "huge"}, "parameters.runner_size"),
    ("rerun_larger_runner", {"runner_size": 4}, "parameters.runner_size"),
    ("retry_tests_isolated", {"tests": "a::x"}, "parameters.tests"),
    ("retry_tests_isolated", {"tests": ["a::x", 7]}, "parameters.tests[1]"),
    ("retry_tests_isolated", {"tests": ["t::x" + "x" * 500]}, "parameters.tests[0]"),
    ("retry_tests_isolated", {"tests": [f"t::{i}" for i in range(501)]}, "parameters.tests"),
    ("retry_tests_isolated", {"tests": ["a::x\nrm -rf /"]}, "parameters.tests[0]"),
    ("retry_tests_isolated", {"tests": [" "]}, "parameters.tests[0]"),
    ("retry_tests_isolated", {"failed_tests_only": "yes"}, "parameters.failed_tests_only"),
    ("retry_tests_isolated", {"isolation": "chroot"}, "parameters.isolation"),
    ("rerun_sequential", {"parallelism": 0}, "parameters.parallelism"),
    ("rerun_sequential", {"parallelism": 1.5}, "parameters.parallelism"),
    ("retry", {"scope": "everything"}, "parameters.scope"),
    ("rebuild_no_layer_cache", {"no_cache": "false"}, "parameters.no_cache"),
    ("cleanup_retry", {"cleanup": ["docker system prune -af && curl evil"]}, "parameters.cleanup[0]"),
    ("cleanup_retry", {"cleanup": ["a,b"]}, "parameters.cleanup[0]"),
    ("cleanup_retry", {"cleanup": []}, "parameters.cleanup"),
    ("notify_oncall", {"page": "false"}, "parameters.page"),
    ("notify_author", {"slack": 1}, "parameters.slack"),
    ("open_incident", {"incident_id": "inc 1"}, "parameters.incident_id"),
    ("open_incident", {"jobs": -1}, "parameters.jobs"),
    ("open_incident", {"repositories": ["acme/../x"]}, "parameters.repositories[0]"),
    ("open_incident", {"template": "x" * 4001}, "parameters.template"),
    ("quarantine_test", {"test_id": "t::x\x1b[31m"}, "parameters.test_id"),
    ("notify_budget", {"level": 7}, "parameters.level"),
])
def test_a_parameter_outside_the_schema_is_refused_before_any_call(api: FakeApis, tmp_path: Path, action: str,
                                                                   parameters: dict[str, Any], field: str) -> None:
    for dry_run in (False, True):
        ex, sleeps = make_executor(api, tmp_path / str(dry_run), dry_run=dry_run)
        out = ex.execute(cmd("github", action, parameters=parameters))
        assert refused(out, field), out.detail
        assert not api.requests and not sleeps.calls


def test_every_parameter_set_of_the_strategy_table_passes(api: FakeApis, tmp_path: Path) -> None:
    """What the planner and the heal requests send is well formed (else the schema is too strict)."""
    ex, _ = make_executor(api, tmp_path, dry_run=True)
    remedies = [*table.STRATEGIES.values(), *(r for alts in table.ALTERNATIVES.values() for r in alts),
                table.FLAKY_RETRY, table.RACE_RETRY, table.CLEAN_DEPENDENCIES, table.ESCALATE]
    for provider in ("github", "gitlab", "jenkins", "circleci"):
        for r in remedies:
            params = {**r.parameters, "requested_by": "api-key:k1", "strategy": "auto"}
            if r.action in (table.FLAKY_RETRY.action, table.RACE_RETRY.action):
                params["tests"] = ["tests/test_a.py::test_b[x-1]", "com.acme.FooTest#bar", "Cart › adds an item"]
                params["failed_tests"] = params["tests"]
            c = cmd(provider, r.action, parameters=params, run_id=WF if provider == "circleci" else "777")
            assert ex.refusal(c) is None, (provider, r.action, ex.refusal(c))
            assert ex.execute(c).status == "dry_run", (provider, r.action)
    # the guard's own notification commands: budget alert, incident, quarantine
    for action, params in [
        ("notify_budget", {"scope": "repo:acme/shop", "level": 0.8, "spent_usd": 40.1, "budget_usd": 50.0}),
        ("open_incident", {"incident_id": "0f" * 16, "jobs": 6, "repositories": ["acme/a", "group/sub/b"],
                           "template": "npm ERR! <*> ETIMEDOUT", "page": True, "ticket": True, "slack": True}),
        ("quarantine_test", {"test_id": "tests/test_x.py::test_y", "episode": 2, "ticket": True}),
    ]:
        assert ex.refusal(cmd("github", action, parameters=params)) is None, action
    assert not api.requests


def test_test_ids_are_checked_against_the_failed_tests_the_command_carries(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    received = ["a::x", "b::y"]
    out = ex.execute(cmd("jenkins", "retry_tests_isolated", command_id="extra",
                         parameters={"tests": ["a::x", "c::z"], "failed_tests": received}))
    assert refused(out, "parameters.tests[1]") and "c::z" in out.detail and not api.requests
    out = ex.execute(cmd("github", "retry_tests_isolated", command_id="unlisted", parameters={"tests": ["a::x"]}))
    assert refused(out, "parameters.failed_tests") and not api.requests  # tests without what was received
    out = ex.execute(cmd("github", "quarantine_test", command_id="q",
                         parameters={"test_id": "c::z", "failed_tests": received}))
    assert refused(out, "parameters.test_id") and not api.requests
    out = ex.execute(cmd("jenkins", "retry_tests_isolated", command_id="ok",
                         parameters={"tests": ["b::y"], "failed_tests": received}))
    assert out.status == "succeeded", out.detail
    (r,) = api.requests
    assert dict(urllib.parse.parse_qsl(r.body.decode()))["GUARD_TESTS"] == "b::y"


def test_parameters_the_schema_does_not_name_are_never_sent(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("jenkins", "retry", parameters={"custom": "a; rm -rf /", "memory_factor": None}))
    assert out.status == "succeeded", out.detail
    (r,) = api.requests
    form = dict(urllib.parse.parse_qsl(r.body.decode()))
    assert set(form) == {"GUARD_ACTION", "GUARD_COMMAND_ID"}  # null is absent, the unknown key is not sent


def test_runner_sizes_come_from_the_executor(api: FakeApis, tmp_path: Path) -> None:
    sleeps = Sleeps()
    ex = Executor(make_clients(api, sleeps), DoneStore(tmp_path), dry_run=True, sleep=sleeps, clock=lambda: NOW,
                  runner_sizes=("next", "gpu-xl", "bad size;"))
    assert ex.refusal(cmd("jenkins", "rerun_larger_runner", parameters={"runner_size": "gpu-xl"})) is None
    assert ex.refusal(cmd("jenkins", "rerun_larger_runner", parameters={"runner_size": "next"})) is None
    for size in ("large", "bad size;"):  # not offered / not a plain word
        why = ex.refusal(cmd("jenkins", "rerun_larger_runner", parameters={"runner_size": size}))
        assert why is not None and why.startswith("parameters.runner_size")


# --- 2. Jenkins build parameters --------------------------------------------------------------------

@pytest.mark.parametrize("char", list(";|&$`\\<>'\"\n\r"))
def test_no_shell_metacharacter_reaches_a_jenkins_build_parameter(api: FakeApis, tmp_path: Path, char: str) -> None:
    ex, _ = make_executor(api, tmp_path)
    for n, params in enumerate([{"tests": [f"a::x{char}id"]}, {"cleanup": [f"rm -rf ~/.cache{char}id"]}]):
        out = ex.execute(cmd("jenkins", "retry_tests_isolated", command_id=f"c{n}", parameters=params))
        assert out.status == "refused" and out.detail.startswith("refused: parameters."), out.detail
    out = ex.execute(cmd("jenkins", "retry", command_id=f"x{char}y"))
    assert refused(out, "command_id")
    assert not api.requests


def test_the_jenkins_parameter_check_names_the_build_parameter(api: FakeApis, tmp_path: Path) -> None:
    # a size the operator priced with a metacharacter never passes the schema; a value that got past a
    # schema (here: no schema for the action) is still stopped by the Jenkins check itself
    ex, _ = make_executor(api, tmp_path)
    ex.schema = {}
    out = ex.execute(cmd("jenkins", "rerun_larger_runner", parameters={"runner_size": "x;reboot"}))
    assert refused(out, "parameters.runner_size") and "GUARD_RUNNER_SIZE" in out.detail and not api.requests


def test_the_jenkins_client_refuses_a_metacharacter_itself(api: FakeApis) -> None:
    jk = JenkinsClient(api.url, "bot", "t0ken", transport=Transport(proxies={}))
    r = jk.build_with_parameters("acme/shop", {"GUARD_ACTION": "retry", "GUARD_TESTS": "a::x $(id)"})
    assert not r.ok and r.status is None and "refused, not sent" in r.message and "GUARD_TESTS" in r.message
    assert not api.requests


def test_cleanup_steps_are_comma_separated_without_metacharacters() -> None:
    p = jenkins_parameters(cmd("jenkins", "cleanup_retry", parameters=dict(table.STRATEGIES["disk_full"].parameters)))
    assert p["GUARD_CLEANUP"] == "docker system prune -af,rm -rf ~/.cache"
    assert not any(ch in v for v in p.values() for ch in ";|&$`\\<>'\"\n")


def test_jenkins_job_must_be_the_repositorys(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    for n, job in enumerate(["other/deploy-prod", "acme/shopping", "acme/shop/../../admin", "acme//shop", ""]):
        out = ex.execute(cmd("jenkins", "retry", command_id=f"j{n}", parameters={"jenkins_job": job}))
        assert refused(out, "parameters.jenkins_job"), (job, out.detail)
    assert not api.requests
    out = ex.execute(cmd("jenkins", "retry", command_id="ok", parameters={"jenkins_job": "acme/shop/main"}))
    assert out.status == "succeeded"
    assert [r.path for r in api.requests] == ["/job/acme/job/shop/job/main/buildWithParameters"]


# --- 3. the repository allow-list -------------------------------------------------------------------

def allow_listed(api: FakeApis, tmp_path: Path, repos: list[str]) -> Executor:
    sleeps = Sleeps()
    return Executor(make_clients(api, sleeps), DoneStore(tmp_path), dry_run=False, sleep=sleeps, clock=lambda: NOW,
                    repos=repos)


def test_a_command_for_another_repository_is_refused(api: FakeApis, tmp_path: Path) -> None:
    ex = allow_listed(api, tmp_path, ["acme/shop", "group/sub/proj", "tools/*"])
    for c in (cmd("github", "retry", owner="evil", repo="shop", command_id="a"),
              cmd("github", "retry", owner="acme", repo="shop2", command_id="b"),
              cmd("gitlab", "retry", owner="group", repo="proj", command_id="c"),
              cmd("github", "notify_author", owner="evil", repo="x", command_id="d")):
        out = ex.execute(c)
        assert refused(out, "repo") and f"{c.owner}/{c.repo} is not a repository" in out.detail, out.detail
    assert not api.requests
    for c in (cmd("github", "retry", owner="ACME", repo="Shop", command_id="e"),  # names are case-insensitive
              cmd("gitlab", "retry", owner="group/sub", repo="proj", command_id="f"),
              cmd("github", "retry", owner="tools", repo="anything", command_id="g")):
        assert ex.execute(c).status == "succeeded", c
    assert len(api.requests) == 3


def test_without_an_allow_list_every_repository_is_acted_on_with_one_warning(
        api: FakeApis, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="healing_guard.executor")
    ex, _ = make_executor(api, tmp_path)
    assert ex.execute(cmd("github", "retry", owner="anyone", command_id="a")).status == "succeeded"
    assert ex.execute(cmd("github", "retry", owner="someone", command_id="b")).status == "succeeded"
    warnings = [r for r in caplog.records if "no repository allow-list" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    caplog.clear()
    allow_listed(api, tmp_path / "2", ["acme/shop"]).execute(cmd("github", "retry"))
    dry, _ = make_executor(api, tmp_path / "3", dry_run=True)  # a dry run (the backtest) acts on nothing
    assert dry.execute(cmd("github", "retry", command_id="dry")).status == "dry_run"
    assert not [r for r in caplog.records if "allow-list" in r.getMessage()]


def test_allow_list_entries_are_checked(tmp_path: Path) -> None:
    assert repo_entry(" Acme/Shop ") == "acme/shop" and repo_entry("acme/*") == "acme/*"
    for bad in ("shop", "/shop", "acme/", "../x", "acme/.."):
        with pytest.raises(ValueError):
            repo_entry(bad)
    with pytest.raises(ValueError):
        Executor(Clients.from_env({}), DoneStore(tmp_path), repos=["noslash"])


def test_cli_repo_option(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from healing_guard.executor.cli import executor_command

    app = typer.Typer()
    app.command("executor")(executor_command)
    app.command("other")(lambda: None)
    runner = CliRunner()
    assert "--repo" in runner.invoke(app, ["executor", "--help"]).output
    base = ["executor", "--broker", "embedded", "--data-dir", str(tmp_path)]
    res = runner.invoke(app, [*base, "--repo", "acme/shop", "--repo", "noslash"])
    assert res.exit_code == 2 and "--repo: repository 'noslash'" in res.output
    res = runner.invoke(app, base, env={"GUARD_EXECUTOR_REPOS": "acme/shop alsobad"})
    assert res.exit_code == 2 and "'alsobad'" in res.output
    res = runner.invoke(app, [*base, "--repo", "acme/shop"])  # accepted; then the embedded broker is refused
    assert res.exit_code == 2 and "--repo" not in res.output and "needs the guard's broker" in res.output


# --- 4. path segments and ids -----------------------------------------------------------------------

@pytest.mark.parametrize("provider,fields,field", [
    ("github", {"owner": ".."}, "owner"),
    ("github", {"repo": ".."}, "repo"),
    ("github", {"job_id": "..", "run_id": None}, "job_id"),
    ("github", {"run_id": "../../orgs"}, "run_id"),
    ("github", {"run_id": "12a"}, "run_id"),
    ("github", {"job_id": "4242x"}, "job_id"),
    ("github", {"owner": "acme/evil"}, "owner"),
    ("github", {"repo": "shop?x=1"}, "repo"),
    ("github", {"repo": "shop%2F.."}, "repo"),
    ("gitlab", {"job_id": "retry"}, "job_id"),
    ("gitlab", {"owner": "group/../x"}, "owner segment 2"),
    ("gitlab", {"run_id": "1/../2"}, "run_id"),
    ("circleci", {"run_id": "wf-1"}, "run_id"),
    ("circleci", {"run_id": "../../project/gh/acme/shop/envvar"}, "run_id"),
    ("jenkins", {"repo": "."}, "repo"),
    ("jenkins", {"owner": "a/../b"}, "owner segment 2"),
    ("jenkins", {"job_id": "1\n2"}, "job_id"),
])
def test_unsafe_ids_are_refused(api: FakeApis, tmp_path: Path, provider: str, fields: dict[str, Any],
                                field: str) -> None:
    ex, _ = make_executor(api, tmp_path)
    c = dataclasses.replace(cmd(provider, "retry", run_id=WF if provider == "circleci" else "777"), **fields)
    out = ex.execute(c)
    assert refused(out, field), out.detail
    assert not api.requests


def test_command_id_and_category_are_checked(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    assert refused(ex.execute(cmd("github", "retry", command_id="a/../b")), "command_id")
    assert refused(ex.execute(dataclasses.replace(cmd("github", "notify_author"), category="Bad Cat")), "category")
    assert refused(ex.execute(dataclasses.replace(cmd("github", "retry"), attempt=0)), "attempt")
    assert not api.requests


def test_clients_encode_every_segment_and_refuse_dot_segments(api: FakeApis) -> None:
    t = Transport(proxies={})
    gh = GitHubClient("t0ken", api.url, transport=t)
    gl = GitLabClient("t0ken", api.url, transport=t)
    cc = CircleCIClient("t0ken", api.url, transport=t)
    jk = JenkinsClient(api.url, "bot", "t0ken", transport=t)
    for r in (gh.rerun_job("..", "..", "1"), gh.rerun_failed_jobs("acme", "shop", ".."),
              gl.retry_job("group/..", "proj", "1"), gl.retry_pipeline("g", "p", "."), cc.rerun_workflow(".."),
              jk.build_with_parameters("acme/../admin", {"GUARD_ACTION": "retry"})):
        assert not r.ok and r.status is None and "refused, not sent" in r.message and not r.ambiguous
    assert not api.requests
    gh.rerun_job("ac me", "sh#op", "1")
    jk.build_with_parameters("my folder/shop", {"GUARD_ACTION": "retry"})
    gl.retry_job("group/sub", "proj", "99")
    assert [r.path for r in api.requests] == ["/repos/ac%20me/sh%23op/actions/jobs/1/rerun",
                                              "/job/my%20folder/job/shop/buildWithParameters",
                                              "/api/v4/projects/group%2Fsub%2Fproj/jobs/99/retry"]
    assert gh.run_url("a", "b?c", "1").endswith("/a/b%3Fc/actions/runs/1")
    assert gl.job_url("group/sub", "p r", "9").endswith("/group/sub/p%20r/-/jobs/9")
    with pytest.raises(ValueError):
        gh.job_url("..", "shop", "1")


def test_a_jenkins_folder_with_a_space_is_encoded(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("jenkins", "retry", owner="my folder", repo="shop"))
    assert out.status == "succeeded", out.detail
    assert [r.path for r in api.requests] == ["/job/my%20folder/job/shop/buildWithParameters"]


# --- 5. text from a log stays data ------------------------------------------------------------------

INJECT = "<!channel> login at <https://evil.example/x|your bank> & {code}x{code} [a|http://e] *b* |c|"


def with_log(c: Command) -> Command:
    return dataclasses.replace(c, reason="tests failed <@U0123> & more",
                               evidence=[Evidence(line=3, text=INJECT, pattern="p")])


def test_slack_text_is_escaped(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    assert ex.execute(with_log(cmd("github", "notify_author"))).status == "succeeded"
    (r,) = api.requests
    text = r.json()["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt;" in text and "&lt;https://evil.example/x|your bank&gt;" in text
    assert "&lt;@U0123&gt; &amp; more" in text and "&amp; {code}" in text
    assert slack_escape("a&lt;<b>") == "a&amp;lt;&lt;b&gt;"  # & first: an escape in the log stays text


def test_jira_gets_log_lines_in_a_code_block(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    c = with_log(cmd("github", "escalate", parameters={"ticket": True, "slack": False, "page": False}))
    assert ex.execute(c).status == "succeeded"
    (r,) = api.requests
    f = r.json()["fields"]
    doc = f["description"]
    assert doc["type"] == "doc" and doc["version"] == 1
    *paras, block = doc["content"]
    assert {p["type"] for p in paras} == {"paragraph"} and block["type"] == "codeBlock"
    assert block["content"] == [{"type": "text", "text": f"line 3: {INJECT}"}]  # verbatim, as data
    assert not any("{code}" in p["content"][0]["text"] for p in paras)
    assert all("marks" not in p["content"][0] for p in paras)  # plain text nodes: no links, no formatting
    jira = ex.clients.jira
    assert jira is not None
    jira.create_issue("flaky\ntest  [x|y]", "why", code=[])  # the summary is one line; no empty code block
    last = api.requests[-1].json()["fields"]
    assert last["summary"] == "flaky test [x|y]" and [n["type"] for n in last["description"]["content"]] == ["paragraph"]


def test_pagerduty_fields_are_bounded_json_strings(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    template = '"}, "routing_key": "x' + "\x07<tag>" + "y" * 3000
    c = cmd("github", "open_incident", command_id="inc-9",
            parameters={"incident_id": "inc-9", "page": True, "ticket": False, "slack": False,
                        "template": template, "repositories": ["acme/a"], "jobs": 5})
    assert ex.execute(c).status == "succeeded"
    (r,) = api.requests
    body = json.loads(r.body)
    details = body["payload"]["custom_details"]
    assert len(details["template"]) == 1024 and details["template"].startswith('"}, "routing_key": "x<tag>')
    assert body["routing_key"] != "x" and details["repositories"] == ["acme/a"] and details["jobs"] == 5
    assert len(body["payload"]["summary"]) <= 1024


# --- 6. dry runs name their target ------------------------------------------------------------------

@pytest.mark.parametrize("provider,action,job_id", [
    ("github", "retry", "4242"), ("gitlab", "retry_backoff", "4242"), ("jenkins", "rerun_more_memory", "main-7"),
    ("circleci", "clear_cache_retry", "4242"), ("github", "open_incident", "4242"),
    ("gitlab", "quarantine_test", "4242"),
])
def test_every_dry_run_detail_names_repository_and_job(api: FakeApis, tmp_path: Path, provider: str, action: str,
                                                       job_id: str) -> None:
    ex, _ = make_executor(api, tmp_path, dry_run=True)
    params: dict[str, Any] = {"backoff_seconds": [30], "memory_factor": 2, "test_id": "t::x"}
    out = ex.execute(cmd(provider, action, job_id=job_id, run_id=WF if provider == "circleci" else "777",
                         parameters={k: v for k, v in params.items()
                                     if action != "quarantine_test" or k == "test_id"}))
    assert out.status == "dry_run" and out.detail.startswith("would"), out.detail
    assert f"target: {provider}/acme/shop job {job_id}" in out.detail
    assert not api.requests


# --- 7. notify_author with Jira / PagerDuty ---------------------------------------------------------

def test_notify_author_carries_out_the_jira_and_pagerduty_it_asks_for(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("github", "notify_author", parameters={"slack": True, "ticket": True, "page": True,
                                                                "requested_by": "api-key:k1"}))
    assert out.status == "succeeded", out.detail
    assert [r.path for r in api.requests] == [JIRA, PD, SLACK_PATH]
    api.requests.clear()
    out = ex.execute(cmd("github", "notify_author", command_id="plain"))  # the default stays Slack only
    assert [r.path for r in api.requests] == [SLACK_PATH]


def test_notify_author_says_why_jira_or_pagerduty_was_not_done(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path, GUARD_JIRA_URL="", GUARD_PAGERDUTY_ROUTING_KEY="")
    out = ex.execute(cmd("github", "notify_author", parameters={"ticket": True, "page": True}))
    assert out.status == "succeeded"
    assert "no Jira or ServiceNow configured: no ticket" in out.detail and "no PagerDuty configured: nobody paged" in out.detail
    assert [r.path for r in api.requests] == [SLACK_PATH]


def test_slack_only_actions_say_a_ticket_or_page_was_not_done(api: FakeApis, tmp_path: Path) -> None:
    ex, _ = make_executor(api, tmp_path)
    out = ex.execute(cmd("github", "notify_budget", parameters={"ticket": True, "page": True}))
    assert "Jira issue requested (ticket) but not done" in out.detail
    assert "PagerDuty page requested (page) but not done" in out.detail
    out = ex.execute(cmd("github", "release_test", parameters={"test_id": "t::x", "ticket": True}))
    assert "Jira issue requested (ticket) but not done" in out.detail
    assert [r.path for r in api.requests] == [SLACK_PATH, SLACK_PATH]


# --- the Kafka loop's schedule ----------------------------------------------------------------------

def test_schedule_lists_its_commands_for_the_start_check(api: FakeApis, tmp_path: Path) -> None:
    """A command an older executor scheduled a trillion seconds ahead is refused now: ``guard executor``
    answers it at start instead of waiting for it (cli.run_executor)."""
    ex, _ = make_executor(api, tmp_path)
    stuck = cmd("github", "retry_backoff", command_id="stuck", parameters={"backoff_seconds": [1e12]})
    fine = cmd("github", "retry_backoff", command_id="fine", parameters={"backoff_seconds": [30]})
    sched = ScheduleStore(tmp_path)
    sched.add(stuck, NOW + 1e12)
    sched.add(fine, NOW + 30)
    pending = ScheduleStore(tmp_path).commands()
    assert sorted(c.command_id for c in pending) == ["fine", "stuck"]
    assert [c.command_id for c in pending if ex.refusal(c) is not None] == ["stuck"]


def test_java_nested_classes_and_quoted_parameters_are_test_ids_off_jenkins(api: FakeApis, tmp_path: Path) -> None:
    """Only Jenkins passes test ids on (as build parameters, where a Jenkinsfile may put them in a shell):
    elsewhere `Outer$Inner#m` and `t.py::x["a b"]` are ordinary test ids."""
    ex, _ = make_executor(api, tmp_path)
    ids = ["com.acme.Outer$Inner#works", 't.py::test_x["a b"]']
    out = ex.execute(cmd("github", "retry_tests_isolated", command_id="gh",
                         parameters={"tests": ids, "failed_tests": ids}))
    assert out.status == "succeeded", out.detail
    out = ex.execute(cmd("jenkins", "retry_tests_isolated", command_id="jk",
                         parameters={"tests": ids, "failed_tests": ids}))
    assert out.status == "refused" and out.detail.startswith("refused: parameters.tests"), out.detail
