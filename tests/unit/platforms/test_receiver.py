"""The webhook receiver over real HTTP (aiohttp test server), with a recording Kafka stand-in."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from healing_guard.platforms.receiver import make_app
from healing_guard.schemas import DeadLetter, JobEvent
from tests.support.paths import FIXTURES

FIX = FIXTURES / "webhooks"
SECRET = "s3cret"


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail = fail

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((topic, key, value))


async def client(rec: Recorder, **kw: Any) -> TestClient:
    app = make_app(rec, jobs_topic="ci.jobs", deadletter_topic="guard.deadletter",
                   secrets={"github": SECRET, "gitlab": SECRET}, **kw)
    c = TestClient(TestServer(app))
    await c.start_server()
    return c


def gh_headers(body: bytes, delivery: str = "d-1", secret: str = SECRET) -> dict[str, str]:
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": sig, "X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": delivery,
            "Content-Type": "application/json"}


async def test_signed_delivery_becomes_one_job_record_and_a_replay_is_dropped() -> None:
    rec = Recorder()
    c = await client(rec)
    try:
        body = (FIX / "github_workflow_job_completed_failure.json").read_bytes()
        r = await c.post("/webhooks/github", data=body, headers=gh_headers(body))
        assert r.status == 202 and (await r.json()) == {"accepted": 1}
        topic, key, value = rec.sent[0]
        ev = JobEvent.from_json(value)
        assert topic == "ci.jobs" and key == ev.job_key.encode() and ev.conclusion == "failure"
        r = await c.post("/webhooks/github", data=body, headers=gh_headers(body))  # redelivery
        assert r.status == 200 and (await r.json())["duplicate"] is True and len(rec.sent) == 1
    finally:
        await c.close()


@pytest.mark.parametrize("headers", [{}, {"X-Hub-Signature-256": "sha256=" + "0" * 64}])
async def test_bad_or_missing_signature_is_401_and_produces_nothing(headers: dict[str, str]) -> None:
    rec = Recorder()
    c = await client(rec)
    try:
        body = (FIX / "github_workflow_job_completed_failure.json").read_bytes()
        r = await c.post("/webhooks/github", data=body, headers={"X-GitHub-Event": "workflow_job", **headers})
        assert r.status == 401 and rec.sent == []
        r = await c.post("/webhooks/jenkins", data=b"{}", headers={"X-Guard-Token": ""})  # no secret configured
        assert r.status == 401 and rec.sent == []
    finally:
        await c.close()


async def test_unreadable_payload_is_dead_lettered_with_the_field() -> None:
    rec = Recorder()
    c = await client(rec)
    try:
        body = orjson.dumps({"action": "completed", "workflow_job": {"id": 1}, "repository": {}})
        r = await c.post("/webhooks/github", data=body, headers=gh_headers(body, "d-2"))
        assert r.status == 400 and (await r.json())["field"]
        topic, _, value = rec.sent[0]
        dl = DeadLetter.from_json(value)
        assert topic == "guard.deadletter" and dl.field_name and dl.source_topic == "webhook:github"
        bad = b"{not json"
        r = await c.post("/webhooks/github", data=bad, headers=gh_headers(bad, "d-3"))
        assert r.status == 400 and len(rec.sent) == 2
    finally:
        await c.close()


async def test_unknown_provider_oversized_body_and_health() -> None:
    rec = Recorder()
    c = await client(rec, max_body_bytes=1000)
    try:
        assert (await c.post("/webhooks/travis", data=b"{}")).status == 404
        big = b"{" + b" " * 5000 + b"}"
        assert (await c.post("/webhooks/github", data=big, headers=gh_headers(big, "d-4"))).status == 413
        h = await c.get("/healthz")
        assert h.status == 200 and (await h.json())["ok"] is True
    finally:
        await c.close()


async def test_broker_down_is_503_and_the_redelivery_gets_through() -> None:
    rec = Recorder(fail=True)
    c = await client(rec)
    try:
        body = (FIX / "github_workflow_job_completed_failure.json").read_bytes()
        r = await c.post("/webhooks/github", data=body, headers=gh_headers(body, "d-5"))
        assert r.status == 503
        rec.fail = False
        r = await c.post("/webhooks/github", data=body, headers=gh_headers(body, "d-5"))
        assert r.status == 202 and len(rec.sent) == 1
    finally:
        await c.close()


async def test_a_captured_delivery_posted_again_is_dropped_under_a_new_id_and_after_a_restart(tmp_path: Any) -> None:
    from healing_guard.platforms.webhooks import DeliveryDeduper

    rec = Recorder()
    body = (FIX / "github_workflow_job_completed_failure.json").read_bytes()
    c = await client(rec, deduper=DeliveryDeduper(path=tmp_path / "deliveries.log"))
    try:
        assert (await c.post("/webhooks/github", data=body, headers=gh_headers(body, "d-1"))).status == 202
        r = await c.post("/webhooks/github", data=body, headers=gh_headers(body, "d-forged-new-id"))
        assert r.status == 200 and (await r.json())["duplicate"] is True and len(rec.sent) == 1
    finally:
        await c.close()
    cc_body = (FIX / "circleci_job_completed_failed.json").read_bytes()
    cc_headers = {"circleci-signature": "v1=" + hmac.new(SECRET.encode(), cc_body, hashlib.sha256).hexdigest(),
                  "Content-Type": "application/json", "circleci-event-type": "job-completed"}
    for restart in range(2):  # the same delivery, before and after a receiver restart
        app = make_app(rec, jobs_topic="ci.jobs", deadletter_topic="guard.deadletter", secrets={"circleci": SECRET},
                       deduper=DeliveryDeduper(path=tmp_path / "deliveries.log"))
        c = TestClient(TestServer(app))
        await c.start_server()
        try:
            r = await c.post("/webhooks/circleci", data=cc_body, headers=cc_headers)
            assert r.status == (202 if restart == 0 else 200), (restart, await r.text())
        finally:
            await c.close()
    assert len(rec.sent) == 2  # one GitHub record, one CircleCI record
