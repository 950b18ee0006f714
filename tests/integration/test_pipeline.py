"""The whole pipeline on a real broker: events in with aiokafka, the real worker process, the exact
commands on guard.actions, dead letters with reasons, and the rows in ClickHouse (chDB)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path

import orjson
import pytest

from healing_guard.remediate import command_id
from healing_guard.settings import load_settings
from healing_guard.streams.topics import ensure_topics

from . import scenario
from .helpers import chdb_query, collect, produce, start_worker, stop_worker, wait_status

pytestmark = pytest.mark.integration


@pytest.fixture(params=["kafka", "tansu"])
def bootstrap(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_bootstrap")


async def test_scenario_end_to_end(bootstrap: str, tmp_path: Path) -> None:
    prefix = f"it{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{bootstrap}", topic_prefix=prefix, partitions=2,
                             app_id=prefix.rstrip("."))
    await ensure_topics(settings)
    sc = scenario.build()
    dsn = f"chdb://{tmp_path / 'chdb'}"
    log = tmp_path / "worker.log"
    # the flaky-test job is decided once its test's risk arrived, or after the grace: on a busy machine
    # (the suite runs on two workers) the 40 earlier results can take longer than the default 1.5 s to be
    # learned, and the job would go to its author without them
    proc = start_worker(bootstrap, prefix, dsn, log, env={"GUARD_TEST_GRACE_SECONDS": "15"})
    try:
        await produce(bootstrap, prefix, sc.messages)
        t = settings.topics
        actions = await collect(bootstrap, t.actions, len(sc.expected_actions), 120, proc, settle=2.0)
        cmds = {r.key.decode(): orjson.loads(r.value) for r in actions}
        assert len(actions) == len(sc.expected_actions), [(k, c["action"]) for k, c in cmds.items()]
        assert {k: c["action"] for k, c in cmds.items()} == sc.expected_actions
        for key, c in cmds.items():
            assert c["category"] == sc.expected_categories[key], (key, c)
            assert c["command_id"] == command_id(key, 1, c["action"])
            assert c["evidence"], c
        oom = cmds["github/acme/reports/1001"]
        assert any("OutOfMemoryError" in e["text"] for e in oom["evidence"])
        assert oom["evidence"][0]["line"] == 3002  # line numbers count across all chunks
        assert oom["estimated_cost_usd"] > 0 and oom["budget"]["max_retries_per_job"] == 2
        assert cmds["github/acme/auth/5005"]["parameters"]["tests"] == [scenario.FLAKY_TEST]
        assert cmds["jenkins/acme/billing/3003"]["estimated_cost_usd"] == 0.0

        findings = await collect(bootstrap, t.findings, len(sc.expected_actions), 30, proc)
        assert {r.key.decode() for r in findings} == set(sc.expected_actions)

        dead = await collect(bootstrap, t.deadletter, len(sc.expected_dead_letters), 60, proc, settle=1.0)
        letters = [orjson.loads(r.value) for r in dead]
        (tmp_path / "letters.json").write_bytes(orjson.dumps([{k: v for k, v in d.items() if k != "original_b64"} for d in letters], option=orjson.OPT_INDENT_2))
        assert len(letters) == len(sc.expected_dead_letters), letters
        for fragment, field in sc.expected_dead_letters.items():
            match = [d for d in letters if fragment in d["reason"]]
            assert len(match) == 1, (fragment, [d["reason"] for d in letters])
            assert (match[0]["field_name"] or "") == field, [(d["reason"], d["field_name"], d["source_topic"]) for d in letters]
            assert base64.b64decode(match[0]["original_b64"])  # the original bytes travel with the reason
            assert match[0]["original_size"] == len(base64.b64decode(match[0]["original_b64"]))
        assert proc.poll() is None, "bad input must not stop the worker"
        # every job run, diagnosis, command and test result is a fact; wait until all are written
        want = sc.jobs + 2 * len(sc.expected_actions) + sc.test_results
        await asyncio.to_thread(wait_status, log.with_suffix(".status.json"), "facts_written", want, 60, proc)
    finally:
        code = stop_worker(proc)
    assert code == 0, log.read_text()[-4000:]

    rows = chdb_query(dsn, "guard_it", {
        "jobs": "SELECT count(), countIf(conclusion = 'failure') FROM {db}.job_runs FINAL",
        "diag": "SELECT job_key, category FROM {db}.diagnoses FINAL ORDER BY job_key",
        "cmds": "SELECT job_key, action, estimated_cost_usd FROM {db}.commands FINAL ORDER BY job_key",
        "tests": "SELECT count(), countIf(outcome = 'failed') FROM {db}.test_results FINAL",
    })
    assert rows["jobs"] == [[sc.jobs, len(sc.expected_actions)]]
    assert {k: c for k, c in rows["diag"]} == sc.expected_categories
    assert {k: a for k, a, _ in rows["cmds"]} == sc.expected_actions
    assert rows["tests"][0][0] == sc.test_results
