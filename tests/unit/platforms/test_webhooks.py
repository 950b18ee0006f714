"""Webhook normalization, signatures and delivery de-duplication (healing_guard.platforms.webhooks)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healing_guard.platforms import webhooks as wh
from healing_guard.platforms.webhook_cli import webhook_app
from healing_guard.platforms.webhooks import (
    DeliveryDeduper, SignatureError, WebhookError, delivery_id, normalize, parse, verify,
)
from healing_guard.schemas import JobEvent, SchemaError
from tests.support.paths import FIXTURES

FIX = FIXTURES / "webhooks"


def body(name: str) -> bytes:
    return (FIX / name).read_bytes()


def one(provider: str, name: str, headers: dict[str, str] | None = None, **kw) -> JobEvent:
    evs = normalize(provider, headers or {}, body(name), **kw)
    assert len(evs) == 1
    # every record survives the topic's own decoder
    assert JobEvent.from_json(evs[0].to_json()) == evs[0]
    return evs[0]


# ------------------------------------------------------------------------------------- GitHub


def test_github_queued_has_no_start_time() -> None:
    ev = one("github", "github_workflow_job_queued.json", {"X-GitHub-Event": "workflow_job"})
    assert (ev.provider, ev.owner, ev.repo, ev.job_id, ev.run_id) == (
        "github", "octo-org", "example-workflow", "29679449", "940463255")
    assert (ev.status, ev.conclusion, ev.attempt) == ("queued", None, 1)
    assert ev.queued_at == 1623784946.0 and ev.started_at is None and ev.completed_at is None
    assert ev.runner_labels == ["gpu", "db-app", "dc-03"]
    assert (ev.workflow, ev.branch, ev.head_sha[:7]) == ("CI", "main", "e3103f8")
    assert ev.url == "https://github.com/octo-org/example-workflow/runs/29679449"


def test_github_in_progress_and_attempt() -> None:
    ev = one("github", "github_workflow_job_in_progress.json")  # event inferred from the payload
    assert (ev.status, ev.conclusion, ev.attempt, ev.started_at) == ("in_progress", None, 2, 1623784947.0)


def test_github_completed_failure() -> None:
    ev = one("github", "github_workflow_job_completed_failure.json", {"x-github-event": "workflow_job"})
    assert (ev.status, ev.conclusion) == ("completed", "failure")
    assert (ev.started_at, ev.completed_at) == (1623784947.0, 1623784971.0)
    assert ev.job_key == "github/octo-org/example-workflow/29679449"


@pytest.mark.parametrize("raw,want", [("success", "success"), ("cancelled", "cancelled"), ("skipped", "skipped"),
                                      ("timed_out", "timed_out"), ("neutral", "success"),
                                      ("action_required", "failure")])
def test_github_conclusions(raw: str, want: str) -> None:
    data = json.loads(body("github_workflow_job_completed_failure.json"))
    data["workflow_job"]["conclusion"] = raw
    [ev] = normalize("github", {"X-GitHub-Event": "workflow_job"}, json.dumps(data).encode())
    assert (ev.status, ev.conclusion) == ("completed", want)


def test_github_workflow_run_and_ping_yield_nothing() -> None:
    p = parse("github", {"X-GitHub-Event": "workflow_run"}, body("github_workflow_run_completed.json"))
    assert p.events == [] and p.event == "workflow_run" and "workflow_job" in p.skipped
    assert normalize("github", {}, body("github_workflow_run_completed.json")) == []
    assert normalize("github", {"X-GitHub-Event": "ping"}, b'{"zen": "Keep it logically awesome."}') == []
    assert normalize("github", {"X-GitHub-Event": "push"}, b'{"ref": "refs/heads/main"}') == []


# ------------------------------------------------------------------------------------- GitLab


def test_gitlab_running_with_subgroups() -> None:
    ev = one("gitlab", "gitlab_job_running.json", {"X-Gitlab-Event": "Job Hook"})
    assert (ev.owner, ev.repo, ev.job_id, ev.run_id) == ("gitlab-org/sub", "gitlab-test", "1977", "2366")
    assert (ev.status, ev.conclusion, ev.attempt) == ("in_progress", None, 1)
    assert ev.runner_labels == ["linux", "docker"]
    assert ev.queued_at == pytest.approx(1614048097.886) and ev.started_at == 1614048099.0
    assert ev.url == "http://192.168.64.1:3005/gitlab-org/sub/gitlab-test/-/jobs/1977"


def test_gitlab_failed_utc_times_and_retry() -> None:
    ev = one("gitlab", "gitlab_job_failed.json")  # object_kind: build
    assert (ev.status, ev.conclusion, ev.attempt) == ("completed", "failure", 2)
    assert (ev.started_at, ev.completed_at) == (1614048099.0, 1614048159.0)


@pytest.mark.parametrize("raw,reason,want", [
    ("created", None, ("queued", None)), ("pending", None, ("queued", None)),
    ("running", None, ("in_progress", None)), ("success", None, ("completed", "success")),
    ("canceled", None, ("completed", "cancelled")), ("skipped", None, ("completed", "skipped")),
    ("failed", "job_execution_timeout", ("completed", "timed_out")),
])
def test_gitlab_statuses(raw: str, reason: str | None, want: tuple) -> None:
    data = json.loads(body("gitlab_job_failed.json"))
    data["build_status"], data["build_failure_reason"] = raw, reason
    [ev] = normalize("gitlab", {"X-Gitlab-Event": "Job Hook"}, json.dumps(data).encode())
    assert (ev.status, ev.conclusion) == want
    assert (ev.completed_at is not None) == (want[0] == "completed")


def test_gitlab_pipeline_skipped_unless_expanded() -> None:
    p = parse("gitlab", {"X-Gitlab-Event": "Pipeline Hook"}, body("gitlab_pipeline.json"))
    assert p.events == [] and p.skipped
    evs = normalize("gitlab", {}, body("gitlab_pipeline.json"), pipeline_builds=True)
    assert [(e.job_id, e.status, e.conclusion, e.run_id) for e in evs] == [
        ("380", "completed", "skipped", "31"), ("377", "completed", "cancelled", "31")]
    assert evs[1].runner_labels == ["docker"] and (evs[0].owner, evs[0].repo) == ("gitlab-org", "gitlab-test")


def test_gitlab_pipeline_bad_build_names_its_path() -> None:
    data = json.loads(body("gitlab_pipeline.json"))
    del data["builds"][1]["name"]
    with pytest.raises(WebhookError) as ei:
        normalize("gitlab", {}, json.dumps(data).encode(), pipeline_builds=True)
    assert ei.value.field == "builds.1.name"


# ----------------------------------------------------------------------------------- CircleCI


def test_circleci_job_completed_failed() -> None:
    ev = one("circleci", "circleci_job_completed_failed.json")
    assert (ev.owner, ev.repo, ev.job_id) == ("circleci", "webhook-service", "136")
    assert (ev.status, ev.conclusion) == ("completed", "failure")
    assert ev.run_id == "fda08377-fe7e-46b1-8992-3a7aaecac9c3" and ev.workflow == "build-test-deploy"
    assert (ev.branch, ev.head_sha[:7]) == ("tmp-2021-09-01-0", "1dc6aa6")
    assert ev.started_at == pytest.approx(1630536568.841) and ev.completed_at == pytest.approx(1630536574.17)
    assert ev.url.endswith("/workflows/fda08377-fe7e-46b1-8992-3a7aaecac9c3/jobs/136")


def test_circleci_gitlab_project_slug_and_trigger_parameters() -> None:
    ev = one("circleci", "circleci_job_completed_success_gitlab.json")
    assert (ev.owner, ev.repo, ev.conclusion) == ("9z8PamRuKaKWrW91o7Kqvn", "AHWysFUuUfBgs6VeUqm6tg", "success")
    assert (ev.branch, ev.head_sha[:7]) == ("circleci-project-setup", "9e2e4be")


@pytest.mark.parametrize("raw,want", [("canceled", "cancelled"), ("timedout", "timed_out"),
                                      ("infrastructure_fail", "failure"), ("not_run", "skipped")])
def test_circleci_statuses(raw: str, want: str) -> None:
    data = json.loads(body("circleci_job_completed_failed.json"))
    data["job"]["status"] = raw
    [ev] = normalize("circleci", {}, json.dumps(data).encode())
    assert ev.conclusion == want


def test_circleci_workflow_completed_yields_nothing() -> None:
    assert normalize("circleci", {}, body("circleci_workflow_completed.json")) == []


# ------------------------------------------------------------------------------------ Jenkins


def test_jenkins_started_folder_job() -> None:
    ev = one("jenkins", "jenkins_started.json")
    assert (ev.owner, ev.repo, ev.job_id, ev.run_id) == ("platform", "api", "18", "18")
    assert (ev.status, ev.conclusion, ev.started_at) == ("in_progress", None, 1623784946.0)
    assert (ev.branch, ev.url) == ("origin/main", "http://jenkins.example.com/job/platform/job/api/18/")


def test_jenkins_completed_aborted() -> None:
    ev = one("jenkins", "jenkins_completed_aborted.json")
    assert (ev.status, ev.conclusion, ev.completed_at) == ("completed", "cancelled", 1623785007.5)


@pytest.mark.parametrize("phase,status,want", [
    ("QUEUED", None, ("queued", None)), ("COMPLETED", "SUCCESS", ("completed", "success")),
    ("FINALIZED", "FAILURE", ("completed", "failure")), ("COMPLETED", "UNSTABLE", ("completed", "failure")),
    ("COMPLETED", "NOT_BUILT", ("completed", "skipped")),
])
def test_jenkins_phases(phase: str, status: str | None, want: tuple) -> None:
    data = json.loads(body("jenkins_completed_aborted.json"))
    data["build"]["phase"] = phase
    data["build"]["status"] = status
    [ev] = normalize("jenkins", {}, json.dumps(data).encode())
    assert (ev.status, ev.conclusion) == want


def test_jenkins_top_level_job() -> None:
    data = {"name": "nightly", "url": "job/nightly/", "build": {"number": 7, "phase": "STARTED"}}
    [ev] = normalize("jenkins", {}, json.dumps(data).encode())
    assert (ev.owner, ev.repo, ev.job_id) == ("jenkins", "nightly", "7")


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("provider,raw,field", [
    ("github", b"{not json", "body"),
    ("github", b"[1, 2]", "body"),
    ("gitlab", b'{"object_kind": "build", "build_status": "failed"}', "project.path_with_namespace"),
    ("circleci", b'{"type": "job-completed", "project": {"slug": "gh/a/b"}}', "job"),
    ("jenkins", b'{"name": "x"}', "build"),
    ("bamboo", b"{}", "provider"),
])
def test_bad_input_names_the_field(provider: str, raw: bytes, field: str) -> None:
    with pytest.raises(WebhookError) as ei:
        normalize(provider, {}, raw)
    assert ei.value.field == field
    assert isinstance(ei.value, SchemaError)


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d["workflow_job"].pop("id"), "workflow_job.id"),
    (lambda d: d["workflow_job"].pop("name"), "workflow_job.name"),
    (lambda d: d["repository"].pop("full_name"), "repository.full_name"),
    (lambda d: d["workflow_job"].update(conclusion=None), "workflow_job.conclusion"),
    (lambda d: d["workflow_job"].update(conclusion="weird"), "workflow_job.conclusion"),
    (lambda d: d["workflow_job"].update(completed_at="yesterday"), "workflow_job.completed_at"),
    (lambda d: d["workflow_job"].update(labels="ubuntu"), "workflow_job.labels"),
    (lambda d: d["repository"].update(full_name="noslash"), "repository.full_name"),
])
def test_github_missing_or_bad_fields(mutate, field: str) -> None:
    data = json.loads(body("github_workflow_job_completed_failure.json"))
    mutate(data)
    with pytest.raises(WebhookError) as ei:
        normalize("github", {"X-GitHub-Event": "workflow_job"}, json.dumps(data).encode())
    assert ei.value.field == field


# --------------------------------------------------------------------------------- signatures

SECRET = "It's a Secret to Everybody"
PAYLOAD = b"Hello, World!"
# GitHub's documented test vector for X-Hub-Signature-256
GH_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def _hex(secret: str, raw: bytes) -> str:
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def test_github_signature_documented_vector() -> None:
    verify("github", {"X-Hub-Signature-256": GH_SIG}, PAYLOAD, SECRET)
    verify("github", {"x-hub-signature-256": GH_SIG}, PAYLOAD, SECRET)  # header names are case-insensitive


@pytest.mark.parametrize("provider,good,bad", [
    ("github", {"X-Hub-Signature-256": "sha256=" + _hex(SECRET, PAYLOAD)},
     {"X-Hub-Signature-256": "sha256=" + _hex("other", PAYLOAD)}),
    ("gitlab", {"X-Gitlab-Token": SECRET}, {"X-Gitlab-Token": SECRET + "x"}),
    ("circleci", {"Circleci-Signature": f"v0=abc,v1={_hex(SECRET, PAYLOAD)}"},
     {"circleci-signature": f"v2={_hex(SECRET, PAYLOAD)},v1={_hex('other', PAYLOAD)}"}),
    ("jenkins", {"X-Guard-Token": SECRET}, {"X-Guard-Token": "nope"}),
    ("jenkins", {"X-Guard-Signature-256": "sha256=" + _hex(SECRET, PAYLOAD)},
     {"X-Guard-Signature-256": "sha256=" + _hex(SECRET, PAYLOAD + b" "), "X-Guard-Token": SECRET}),
])
def test_signatures(provider: str, good: dict, bad: dict) -> None:
    verify(provider, good, PAYLOAD, SECRET)
    with pytest.raises(SignatureError):
        verify(provider, bad, PAYLOAD, SECRET)
    with pytest.raises(SignatureError):
        verify(provider, {}, PAYLOAD, SECRET)  # missing header
    with pytest.raises(SignatureError):
        verify(provider, good, PAYLOAD, "")  # an empty secret never passes
    signs_body = provider in ("github", "circleci") or "X-Guard-Signature-256" in good
    if signs_body:
        with pytest.raises(SignatureError):
            verify(provider, good, PAYLOAD + b"tampered", SECRET)


def test_signature_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(wh.hmac, "compare_digest", spy)
    verify("github", {"X-Hub-Signature-256": GH_SIG}, PAYLOAD, SECRET)
    verify("gitlab", {"X-Gitlab-Token": SECRET}, PAYLOAD, SECRET)
    verify("circleci", {"circleci-signature": "v1=" + _hex(SECRET, PAYLOAD)}, PAYLOAD, SECRET)
    verify("jenkins", {"X-Guard-Token": SECRET}, PAYLOAD, SECRET)
    assert len(calls) == 4


def test_non_ascii_signature_is_rejected_not_crashing() -> None:
    with pytest.raises(SignatureError):
        verify("gitlab", {"X-Gitlab-Token": "sécret"}, PAYLOAD, SECRET)


# ------------------------------------------------------------------------------------- dedupe


def test_delivery_ids() -> None:
    assert delivery_id("github", {"X-GitHub-Delivery": "72d3162e"}, b"{}") == "72d3162e"
    assert delivery_id("gitlab", {"Idempotency-Key": "k1", "X-Gitlab-Event-UUID": "u1"}, b"{}") == "k1"
    assert delivery_id("gitlab", {"X-Gitlab-Event-UUID": "u1"}, b"{}") == "u1"
    assert delivery_id("circleci", {}, body("circleci_job_completed_failed.json")) == \
        "3888f21b-eaa7-38e3-8f3d-75a63bba8895"
    assert delivery_id("jenkins", {}, b"abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    assert delivery_id("github", {}, b"abc").startswith("sha256:")  # no header: hash of the body


def test_deduper_drops_replays_and_is_bounded() -> None:
    d = DeliveryDeduper(capacity=2)
    h = {"X-GitHub-Delivery": "a"}
    assert not d.seen("github", h, b"{}")
    # the signed body decides, not the unsigned delivery-id header: a captured delivery posted again under a
    # new id is a replay; another body is another delivery whatever id it claims
    assert d.seen("github", {"X-GitHub-Delivery": "b"}, b"{}")
    assert not d.seen("github", h, b'{"other": 1}')
    assert not d.seen("gitlab", {"Idempotency-Key": "a"}, b"{}")  # per provider
    assert len(d) == 2
    assert not d.seen("github", h, b"{}")  # evicted (least recently used) -> new again
    assert d.seen("gitlab", {}, b"{}")


def test_deduper_remembers_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "deliveries.log"
    d = DeliveryDeduper(capacity=3, path=path)
    bodies = [b'{"id": "%d"}' % i for i in range(5)]
    for b in bodies:
        assert not d.seen("circleci", {}, b)
    d.forget("circleci", {}, bodies[4])  # not published: its redelivery must get through
    d.close()
    again = DeliveryDeduper(capacity=3, path=path)  # a restarted receiver
    assert [again.seen("circleci", {}, b) for b in bodies[2:4]] == [True, True]
    assert not again.seen("circleci", {}, bodies[4])
    assert len(path.read_text().splitlines()) <= 2 * 3 + 1  # rewritten, not growing without bound
    with path.open("a") as fp:
        fp.write("+ circleci 12")  # a torn last line (killed mid-write) is skipped
    assert DeliveryDeduper(capacity=3, path=path).seen("circleci", {}, bodies[3])


# ---------------------------------------------------------------------------------------- CLI

runner = CliRunner()


def test_cli_prints_json_lines() -> None:
    res = runner.invoke(webhook_app, ["parse", "--provider", "github", str(FIX / "github_workflow_job_queued.json"),
                                      "--header", "X-GitHub-Event: workflow_job"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert list(rec)[:12] == ["provider", "repo", "run_id", "job_id", "job_name", "attempt", "status", "conclusion",
                              "started_at", "completed_at", "runner_labels", "url"]
    assert rec["repo"] == "octo-org/example-workflow" and rec["owner"] == "octo-org"
    assert (rec["job_id"], rec["run_id"], rec["status"], rec["conclusion"]) == ("29679449", "940463255", "queued", None)
    assert rec["job_key"] == "github/octo-org/example-workflow/29679449"


def test_cli_infers_gitlab_event_and_expands_pipelines() -> None:
    args = ["parse", "--provider", "gitlab", str(FIX / "gitlab_pipeline.json")]
    res = runner.invoke(webhook_app, args)
    assert res.exit_code == 0 and res.stdout.strip() == ""
    res = runner.invoke(webhook_app, [*args, "--pipeline-builds"])
    assert res.exit_code == 0
    assert [json.loads(ln)["job_id"] for ln in res.stdout.splitlines()] == ["380", "377"]


def test_cli_bad_input_exits_2_naming_the_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text('{"object_kind": "build", "build_status": "failed", "project": {}}')
    res = runner.invoke(webhook_app, ["parse", "--provider", "gitlab", str(f)])
    assert res.exit_code == 2
    assert "project.path_with_namespace" in res.output
    res = runner.invoke(webhook_app, ["parse", "--provider", "bamboo", str(f)])
    assert res.exit_code == 2 and "provider" in res.output
    res = runner.invoke(webhook_app, ["parse", "--provider", "gitlab", str(f), "--header", "no-colon"])
    assert res.exit_code == 2
