"""The product document's REST API block, run as written against the real `guard api` process.

The calls (method, path template, JSON body) are parsed from the document's ``REST API`` block, so a change
to the document changes what runs; the owner, repo and job id are those of a failure in the warehouse facts
of ``tests/integration/rest/test_api_live.py`` (test_roi's story: ``deploy``, job 400 of acme/web, failed on
a network error). Each answer is checked as docs/rest-api.md describes it: the status code and the fields.
"""

from __future__ import annotations

import json
import re
import string
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

from healing_guard.schemas import Command
from tests.document.examples import block
from tests.integration.helpers import collect
from tests.integration.rest.test_api_live import live_api  # noqa: F401  (the fixture: `guard api` over chDB)

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("document_rest")]

#: a failure of the facts: deploy (job 400) of acme/web, diagnosed as a network error at 0.9, attempt 1
FAILURE = {"owner": "acme", "repo": "web", "job_id": "400"}
_CALL = re.compile(r"^(GET|POST|PUT|PATCH|DELETE)\s+(/\S*)$")


@dataclass(frozen=True)
class Call:
    method: str
    template: str
    body: Any  # the JSON body, or None

    def path(self, values: dict[str, str]) -> str:
        names = {n for _, n, _, _ in string.Formatter().parse(self.template) if n}
        assert names <= set(values), f"{self.template}: no value for {sorted(names - set(values))}"
        return self.template.format(**values)


def calls(text: str) -> list[Call]:
    """``METHOD /path`` lines, each followed by its JSON body (if any); ``#`` lines are comments."""
    found: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _CALL.match(stripped)
        if m:
            found.append((m[1], m[2], []))
        else:
            assert found, f"a body line before any call: {line!r}"
            found[-1][2].append(line)
    return [Call(method, template, json.loads("\n".join(body)) if body else None) for method, template, body in found]


def request(base: str, key: str, call: Call) -> tuple[int, dict[str, Any]]:
    data = None if call.body is None else json.dumps(call.body).encode()
    req = urllib.request.Request(base + call.path(FAILURE), data=data, method=call.method,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_block_holds_the_three_documented_calls() -> None:
    found = calls(block("REST API", "bash").text)
    assert [(c.method, c.template) for c in found] == [
        ("GET", "/api/v1/repos/{owner}/{repo}/healing/status"),
        ("GET", "/api/v1/repos/{owner}/{repo}/failures/{job_id}/analysis"),
        ("POST", "/api/v1/repos/{owner}/{repo}/failures/{job_id}/heal")]
    assert [c.body for c in found] == [None, None, {"strategy": "aggressive", "notify": True}]


async def test_the_documents_calls_answer_as_the_rest_api_describes(live_api: dict[str, Any]) -> None:  # noqa: F811
    base, key = live_api["base"], live_api["keys"]["web"]
    answers = {c.template.rsplit("/", 1)[-1]: (c, *request(base, key, c)) for c in calls(block("REST API", "bash").text)}
    assert set(answers) == {"status", "analysis", "heal"}

    _, code, status = answers["status"]
    assert code == 200, status
    assert set(status) >= {"repo", "days", "jobs", "failed_jobs", "failure_rate", "healing_success_rate",
                           "flaky_test_rate", "flaky_tests", "auto_commands", "time_saved_minutes", "cost_saved_usd",
                           "last_failure_at"}
    assert status["repo"] == "acme/web" and status["days"] == 30  # the default window
    assert status["failed_jobs"] >= 1 and status["healing_success_rate"] == 1.0
    # t1 failed and passed on one commit; tests/test_db.py::test_pool the guard re-ran as flaky: 2 of 4 tests
    assert status["flaky_test_rate"] == pytest.approx(0.5, abs=1e-3) and status["last_failure_at"]

    _, code, analysis = answers["analysis"]
    assert code == 200, analysis
    assert (analysis["job_key"], analysis["category"]) == ("github/acme/web/400", "network")
    assert analysis["confidence"] == pytest.approx(0.9)
    assert analysis["evidence"][0]["text"] == "connection reset by peer"
    assert [c["action"] for c in analysis["commands"]] == ["retry_backoff"]
    assert analysis["recommendations"] and {"action", "confidence", "reason", "automatic"} <= set(
        analysis["recommendations"][0])

    call, code, healed = answers["heal"]
    assert code == 202, healed
    # the preset decided: a network failure at 0.9 gets its backoff under aggressive; notify: true adds
    # a notify_oncall command that says a person asked for the rerun
    assert healed["status"] == "queued" and healed["strategy"] == call.body["strategy"] == "aggressive"
    assert healed["action"] == "retry_backoff" and healed["job_key"] == "github/acme/web/400"
    assert healed["command_id"] and healed["notify_command_id"] and healed["notify_command_id"] != healed["command_id"]
    recs = await collect(live_api["bootstrap"], live_api["prefix"] + "guard.actions", 2, 30, settle=0.5)
    cmds = {c.command_id: c for c in (Command.from_json(r.value) for r in recs)}
    rerun, note = cmds[healed["command_id"]], cmds[healed["notify_command_id"]]
    assert rerun.action == "retry_backoff" and rerun.parameters["strategy"] == "aggressive"
    assert rerun.parameters["backoff_seconds"] == [30, 120, 480]
    assert note.action == "notify_oncall" and note.parameters["slack"] is True
    assert {r.key for r in recs} == {b"github/acme/web/400"}
