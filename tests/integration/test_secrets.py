"""Secrets never leave the guard, on a real broker with the real worker and chDB.

Log chunks (valid, out of order, and one malformed so it dead-letters), job events and test results
carrying the whole corpus of fake secrets (tests/support/secrets_corpus.py) go in, through the guard's own
producers where the guard has one (job events: the webhook receiver; test results: `guard ingest junit`'s
sender; logs: raw, as a forwarder ships them); then EVERY topic the guard
owns (its prefix, and its app's changelog topics) except ci.logs is read from the start, dead letters'
payloads base64-decoded, and EVERY table and view of the warehouse queried: no secret anywhere, while
findings, commands, facts and dead letters were written (so the test can fail).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from healing_guard.schemas import LogChunk, TestResult
from healing_guard.schemas.test_batch import decode_tests
from healing_guard.settings import load_settings
from healing_guard.warehouse.facts import facts_from_json
from healing_guard.streams.topics import ensure_topics
from tests.support.secrets_corpus import CASES, all_secrets, failing_lines, leaks, log_lines

from .helpers import chdb_query, collect, produce, start_worker, stop_worker, wait_status
from tests.support.paths import FIXTURES

pytestmark = pytest.mark.integration

SECRETS = all_secrets()
NOW = 1_767_225_600.0


WEBHOOK = FIXTURES / "webhooks" / "github_workflow_job_completed_failure.json"
WEBHOOK_SECRET = "it-s3cret"


def _webhook(job_id: int) -> bytes:
    """A GitHub workflow_job delivery for a failed job whose name, branch and labels quote secrets."""
    d = orjson.loads(WEBHOOK.read_bytes())
    d["workflow_job"].update(id=job_id, name=f"deploy --token {CASES[0].secrets[0]}",
                             head_branch=f"fix/password={CASES[36].secrets[0]}",
                             labels=["ubuntu-latest", f"GITHUB_TOKEN={CASES[5].secrets[0]}"])
    d["repository"].update(full_name="acme/web", name="web")
    d["repository"].setdefault("owner", {})["login"] = "acme"
    return orjson.dumps(d)


def _log_messages(keys: dict[str, bytes]) -> list[tuple[str, bytes | None, bytes]]:
    """ci.logs: the raw log, secrets and all (the one topic that may carry them)."""
    out: list[tuple[str, bytes | None, bytes]] = []
    # job 101: the corpus, then failing lines quoting it (evidence); chunk 2 first (held out of order)
    # job 102: only the corpus (an unknown failure: its signature comes from the tail)
    for job_id, lines in (("101", log_lines() + failing_lines()), ("102", ["something odd happened", *log_lines()])):
        key = keys[job_id]
        provider, owner, repo, jid = key.decode().split("/")
        third = len(lines) // 3
        parts = [lines[:third], lines[third:2 * third], lines[2 * third:]]
        for seq in (2, 0, 1):
            chunk = LogChunk(provider=provider, owner=owner, repo=repo, job_id=jid, seq=seq,  # type: ignore[arg-type]
                             lines=parts[seq], eof=seq == 2)
            out.append(("ci.logs", key, chunk.to_json()))
        if job_id == "101":  # malformed: seq is not a number -> guard.deadletter with the (redacted) bytes
            bad = LogChunk(provider=provider, owner=owner, repo=repo, job_id=jid, seq=7,  # type: ignore[arg-type]
                           lines=lines).to_json()
            out.append(("ci.logs", key, bad.replace(b'"seq":7', b'"seq":"seven"')))
    return out


def _test_results(key: bytes) -> list[TestResult]:
    """ci.tests: parametrized ids and failure messages quoting secrets (sent by `guard ingest junit`'s code)."""
    provider, owner, repo, jid = key.decode().split("/")
    tid = f"tests/test_login.py::test_token[password={CASES[36].secrets[0]}]"
    return [TestResult(provider=provider, owner=owner, repo=repo, job_id=jid, test_id=tid,  # type: ignore[arg-type]
                       outcome="failed" if i % 2 == 0 else "passed", ts=NOW + i,
                       message="\n".join(log_lines()) if i % 2 == 0 else None)
            for i in range(6)]


async def _deliver_webhooks(bootstrap: str, prefix: str, bodies: list[bytes]) -> list[int]:
    """POST deliveries to the real webhook receiver, which publishes to the real broker."""
    from aiohttp.test_utils import TestClient, TestServer
    from aiokafka import AIOKafkaProducer

    from healing_guard.platforms.receiver import make_app

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await producer.send_and_wait(topic, key=key, value=value)

    app = make_app(send, jobs_topic=prefix + "ci.jobs", deadletter_topic=prefix + "guard.deadletter",
                   secrets={"github": WEBHOOK_SECRET})
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        codes = []
        for i, body in enumerate(bodies):
            sig = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
            r = await client.post("/webhooks/github", data=body, headers={
                "X-Hub-Signature-256": sig, "X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": f"it-{i}",
                "Content-Type": "application/json"})
            assert not leaks(await r.read())
            codes.append(r.status)
        return codes
    finally:
        await client.close()
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, partitions: int) -> list[Any]:
    """Every record of ``topic`` from the start to its current end."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         fetch_max_bytes=64 << 20, max_partition_fetch_bytes=64 << 20)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        end = await c.end_offsets(tps)
        out: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30

        async def done() -> bool:
            return all([await c.position(tp) >= end[tp] for tp in tps])

        while loop.time() < deadline:
            if await done():
                break
            batch = await c.getmany(*tps, timeout_ms=500)
            for records in batch.values():
                out.extend(records)
        assert await done(), f"{topic} not read to its end"
        return out
    finally:
        await c.stop()


async def test_no_secret_reaches_a_topic_or_the_warehouse(kafka_bootstrap: str, tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap
    prefix = f"sec{uuid.uuid4().hex[:8]}."
    app_id = prefix.rstrip(".")
    settings = load_settings(None, env={}, broker_url=f"kafka://{bootstrap}", topic_prefix=prefix, partitions=2,
                             app_id=app_id)
    await ensure_topics(settings)
    t = settings.topics
    dsn = f"chdb://{tmp_path / 'chdb'}"
    log = tmp_path / "worker.log"
    from healing_guard.platforms.junit_cli import send_results
    from healing_guard.platforms.webhooks import normalize

    bodies = [_webhook(101), _webhook(102)]
    keys = {}
    for jid, body in zip(("101", "102"), bodies):
        (ev,) = normalize("github", {"X-GitHub-Event": "workflow_job"}, body)
        keys[jid] = ev.job_key.encode()
    logs = _log_messages(keys)
    results = _test_results(keys["101"])
    broken = orjson.dumps({"action": "completed", "workflow_job": {"name": CASES[1].lines[0]}})
    raw_in = b"".join(v for _, _, v in logs) + b"".join(bodies) + b"".join(r.to_json() for r in results)
    assert len(leaks(raw_in)) == len(SECRETS)  # the input really carries every secret of the corpus
    proc = start_worker(bootstrap, prefix, dsn, log)
    try:
        await produce(bootstrap, prefix, logs)
        assert (await send_results(results, bootstrap, t.tests)).results == len(results)
        assert await _deliver_webhooks(bootstrap, prefix, [*bodies, broken]) == [202, 202, 400]
        findings = await collect(bootstrap, t.findings, 2, 120, proc, settle=1.0)
        assert len(findings) == 2
        dead = await collect(bootstrap, t.deadletter, 2, 60, proc, settle=1.0)
        assert len(dead) >= 2
        # 2 job runs + 2 diagnoses + >= 2 commands + 6 test results
        await asyncio.to_thread(wait_status, log.with_suffix(".status.json"), "facts_written", 12, 60, proc)
        await asyncio.sleep(1.0)  # let the changelogs and last sends flush
    finally:
        code = stop_worker(proc)
    assert code == 0, log.read_text()[-4000:]

    # --- every topic but ci.logs ------------------------------------------------------------------
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = sorted(n for n in await admin.list_topics() if n.startswith((prefix, app_id + "-")))
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    assert t.logs in names and t.findings in names and t.deadletter in names
    partitions = {d["topic"]: len(d["partitions"]) for d in described}
    seen: dict[str, int] = {}
    for name in names:
        if name == t.logs:
            continue
        records = await _read_all(bootstrap, name, partitions[name])
        # ci.tests: batches (schemas/test_batch.py), counted by the results they hold; guard.facts by rows
        if name == t.tests:
            seen[name] = sum(len(decode_tests(r.value, r.key).results) for r in records)
        elif name == t.facts:
            seen[name] = sum(len(facts_from_json(r.value)) for r in records)
        else:
            seen[name] = len(records)
        for r in records:
            blob = (r.key or b"") + b"\n" + (r.value or b"")
            assert not leaks(blob), (name, leaks(blob)[:3])
            if name == t.deadletter:
                d = orjson.loads(r.value)
                assert not leaks(base64.b64decode(d["original_b64"])), name
    assert seen[t.findings] == 2 and seen[t.actions] >= 2 and seen[t.facts] >= 12 and seen[t.deadletter] >= 2
    assert seen[t.test_risk] >= 1 and seen[t.incidents] >= 1 and seen[t.jobs] == 2 and seen[t.tests] == 6
    assert any(n.endswith("-changelog") and seen[n] for n in seen)  # the tables' state was read too
    letters = [orjson.loads(r.value) for r in await _read_all(bootstrap, t.deadletter, partitions[t.deadletter])]
    assert any(d["redacted"] and d["source_topic"] == t.logs for d in letters)
    assert any(d["source_topic"] == "webhook:github" for d in letters)
    (tmp_path / "seen.json").write_text(json.dumps(seen, indent=1))

    # --- every table and view of the warehouse ----------------------------------------------------
    tables = chdb_query(dsn, "guard_it", {"t": "SELECT name FROM system.tables WHERE database = '{db}' ORDER BY name"})
    names_ch = [row[0] for row in tables["t"]]
    assert {"job_runs", "diagnoses", "commands", "test_results"} <= set(names_ch)
    rows = chdb_query(dsn, "guard_it", {n: f"SELECT * FROM {{db}}.`{n}`" for n in names_ch})
    for n, content in rows.items():
        blob = json.dumps(content, default=str)
        assert not leaks(blob), (n, leaks(blob)[:3])
    assert rows["diagnoses"] and rows["commands"] and rows["test_results"] and rows["job_runs"]
    assert "[REDACTED]" in json.dumps(rows["diagnoses"])
