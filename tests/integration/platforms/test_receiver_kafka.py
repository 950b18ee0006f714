"""The webhook receiver producing to real Apache Kafka: a signed delivery too big or unreadable still
leaves a dead letter on guard.deadletter, never a 500 with nothing kept."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer

from healing_guard.platforms.receiver import PRODUCER_MAX_REQUEST, make_app
from healing_guard.settings import load_settings
from healing_guard.streams.topics import ensure_topics

from ..helpers import collect

SECRET = "s3cret"


def _headers(body: bytes, delivery: str) -> dict[str, str]:
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": sig, "X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": delivery,
            "Content-Type": "application/json"}


async def test_a_signed_body_over_the_producers_default_limit_is_dead_lettered(kafka_bootstrap: str) -> None:
    prefix = f"rk{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix,
                             partitions=1, app_id=prefix.rstrip("."))
    await ensure_topics(settings)
    # configured as `guard webhooks` configures its producer (platforms/receiver.py:serve)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True,
                                max_request_size=PRODUCER_MAX_REQUEST)
    await producer.start()

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await producer.send_and_wait(topic, key=key, value=value)

    app = make_app(send, jobs_topic=settings.topics.jobs, deadletter_topic=settings.topics.deadletter,
                   secrets={"github": SECRET})
    client = TestClient(TestServer(app))
    await client.start_server()
    statuses: list[int] = []
    bodies: dict[int, bytes] = {}
    try:
        for size in (2 << 20, 20 << 20):  # over aiokafka's 1 MiB default; over what a dead letter carries whole
            body = b'{"action": "completed", "workflow_job": ' + b'"' + b"x" * size + b'"}'
            bodies[len(body)] = body
            r = await client.post("/webhooks/github", data=body, headers=_headers(body, f"big-{size}"))
            statuses.append(r.status)
    finally:
        await client.close()
        await producer.stop()
    assert statuses == [400, 400], statuses
    letters = [orjson.loads(r.value) for r in await collect(kafka_bootstrap, settings.topics.deadletter, 2, 30)]
    assert len(letters) == 2, letters
    by_size: dict[int, Any] = {d["original_size"]: d for d in letters}
    assert set(by_size) == set(bodies)
    small, big = sorted(by_size)
    assert not by_size[small]["original_truncated"]
    assert base64.b64decode(by_size[small]["original_b64"]) == bodies[small]
    assert by_size[big]["original_truncated"] and "first" in by_size[big]["reason"]
    assert by_size[big]["original_sha256"] == hashlib.sha256(bodies[big]).hexdigest()
    assert bodies[big].startswith(base64.b64decode(by_size[big]["original_b64"]))
