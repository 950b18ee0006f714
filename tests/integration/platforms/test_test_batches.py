"""Test results in batches on real Kafka (schemas/test_batch.py): `guard ingest junit`, `guard forward
--junit` and the pytest plugin send a report in few messages, each on the partition its test ids hash to,
and the backtest reads them back as one record per result."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from healing_guard.brokers import create_topics
from healing_guard.schemas import TestResult
from healing_guard.schemas.test_batch import decode_tests, partition_of
from healing_guard.settings import load_settings
from healing_guard.streams.topics import ensure_topics

from tests.support.paths import FIXTURES

pytestmark = pytest.mark.integration
pytest_plugins = ["pytester"]


async def read_topic(bootstrap: str, topic: str, partitions: int) -> list[Any]:
    """Every record of ``topic`` (of ``partitions``) from its start to its end now, partition by partition."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         fetch_max_bytes=32 << 20, max_partition_fetch_bytes=32 << 20)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        out: list[Any] = []
        while any([await c.position(tp) < ends[tp] for tp in tps]):
            batch = await c.getmany(*tps, timeout_ms=1000)
            for records in batch.values():
                out.extend(records)
        return out
    finally:
        await c.stop()


def decoded(records: list[Any]) -> list[tuple[int, TestResult]]:
    """(partition, result) of every result of every message, each message as the worker reads it."""
    out = []
    for r in records:
        d = decode_tests(r.value, r.key)
        assert not d.errors, d.errors
        out.extend((r.partition, x) for x in d.results)
    return out


def junit_report(path: Path, n: int) -> Path:
    cases = "".join(f'<testcase classname="tests.test_mod{i % 7}" name="test_case_{i}" time="0.01">'
                    + ('<failure message="boom">assert 1 == 2</failure>' if i % 10 == 0 else "") + "</testcase>"
                    for i in range(n))
    path.write_text(f'<?xml version="1.0"?><testsuite name="pytest" tests="{n}">{cases}</testsuite>')
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "healing_guard.cli", *args], capture_output=True, text=True,
                          timeout=120)


async def test_ingest_junit_sends_a_report_in_a_message_per_partition(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"jb{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}ci.tests"
    await create_topics(kafka_bootstrap, {topic: 3})
    report = junit_report(tmp_path / "report.xml", 300)
    r = await asyncio.to_thread(cli, "ingest", "junit", "--provider", "github", "--repo", "acme/web", "--job-id", "77",
                                "--attempt", "2", "--head-sha", "abc123", "--broker", f"kafka://{kafka_bootstrap}",
                                "--topic-prefix", prefix, str(report))
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(rf"sent 300 test results in (\d) messages? from 1 file\(s\) to {re.escape(topic)}", r.stdout.strip())
    assert m, r.stdout
    records = await read_topic(kafka_bootstrap, topic, 3)
    assert len(records) == int(m.group(1)) <= 3
    got = decoded(records)
    assert sorted(x.test_id for _, x in got) == sorted(f"tests/test_mod{i % 7}.py::test_case_{i}" for i in range(300))
    # every result sits on the partition its test id hashes to, as a one-result message keyed by it would
    assert all(p == partition_of(x.test_id.encode(), 3) for p, x in got)
    assert {p for p, _ in got} == {0, 1, 2}
    assert {(x.provider, x.owner, x.repo, x.job_id, x.attempt, x.head_sha, x.failed_in_run) for _, x in got} == {
        ("github", "acme", "web", "77", 2, "abc123", 30)}
    assert sum(x.outcome == "failed" for _, x in got) == 30
    # a partition's results keep the report's order
    for p in range(3):
        ids = [x.test_id for q, x in got if q == p]
        assert ids == sorted(ids, key=lambda t: int(t.rsplit("_", 1)[1]))


async def test_a_missing_topic_is_a_clear_error(kafka_bootstrap: str) -> None:
    from healing_guard.platforms.junit_cli import TopicUnavailable, send_results

    topic = f"nope{uuid.uuid4().hex[:8]}.ci.tests"
    r = TestResult(provider="github", owner="o", repo="r", job_id="1", test_id="t", outcome="passed")
    with pytest.raises(TopicUnavailable, match=re.escape(topic) + " does not exist"):
        await send_results([r], kafka_bootstrap, topic, request_timeout_ms=3000)


async def test_forward_sends_the_jobs_reports_before_its_completion(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"fj{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix, partitions=2)
    await ensure_topics(settings)
    log = tmp_path / "build.log"
    log.write_text("collected 120 items\nFAILED tests/test_mod0.py::test_case_0\n")
    report = junit_report(tmp_path / "report.xml", 120)
    r = await asyncio.to_thread(cli, "forward", "--provider", "github", "--repo", "acme/web", "--job-id", "42",
                                "--attempt", "3", "--commit", "beef", "--from-env", "off", "--conclusion", "failure",
                                "--junit", str(report), "--junit", str(FIXTURES / "junit" / "malformed.xml"),
                                "--broker", f"kafka://{kafka_bootstrap}", "--topic-prefix", prefix, str(log))
    # the bad report is named and makes the exit status 1; the log, the good report and the completion went
    assert r.returncode == 1
    assert "malformed.xml:4: malformed XML" in r.stderr and "1 of 2 JUnit report(s) could not be read" in r.stderr
    m = re.search(r"sent 1 chunks \(2 lines\) of github/acme/web/42, 120 test results in (\d) messages? and its "
                  r"completion \(failure\)", r.stdout)
    assert m, r.stdout
    tests = await read_topic(kafka_bootstrap, settings.topics.tests, 2)
    jobs = await read_topic(kafka_bootstrap, settings.topics.jobs, 2)
    logs = await read_topic(kafka_bootstrap, settings.topics.logs, 2)
    assert len(tests) == int(m.group(1)) <= 2 and len(jobs) == 1 and len(logs) == 1
    got = decoded(tests)
    assert len(got) == 120 and all(p == partition_of(x.test_id.encode(), 2) for p, x in got)
    assert {(x.job_id, x.attempt, x.head_sha) for _, x in got} == {("42", 3, "beef")}
    completion = orjson.loads(jobs[0].value)
    assert (completion["job_id"], completion["attempt"], completion["head_sha"]) == ("42", 3, "beef")
    # acknowledged before the completion was sent
    assert max(t.timestamp for t in tests) <= jobs[0].timestamp


def test_pytest_plugin_sends_batches_and_says_so(pytester: pytest.Pytester, kafka_bootstrap: str) -> None:
    prefix = f"pp{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}ci.tests"
    asyncio.run(create_topics(kafka_bootstrap, {topic: 2}))
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_many="""
        import pytest

        @pytest.mark.parametrize("i", range(40))
        def test_n(i):
            assert i % 8
    """)
    res = pytester.runpytest("-p", "healing_guard.pytest_plugin", "--guard-broker", f"kafka://{kafka_bootstrap}",
                             "--guard-topic-prefix", prefix, "--guard-repo", "acme/app", "--guard-job-id", "9",
                             "--guard-provider", "gitlab", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=35, failed=5)
    res.stdout.re_match_lines([rf"healing-guard: sent 40 test results in [12] messages? to {re.escape(topic)}"])
    got = decoded(asyncio.run(read_topic(kafka_bootstrap, topic, 2)))
    assert sorted(x.test_id for _, x in got) == sorted(f"test_many.py::test_n[{i}]" for i in range(40))
    assert all(p == partition_of(x.test_id.encode(), 2) for p, x in got)
    assert sum(x.outcome == "failed" for _, x in got) == 5


async def test_the_backtest_reads_a_batch_as_a_record_per_result(kafka_bootstrap: str) -> None:
    from healing_guard.backtest import read_topics
    from healing_guard.platforms.junit_cli import send_results

    from tests.integration.helpers import produce

    prefix = f"bb{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix, partitions=2)
    await ensure_topics(settings)
    results = [TestResult(provider="github", owner="acme", repo="web", job_id="5", test_id=f"t{i}",
                          outcome="failed" if i % 4 == 0 else "passed", ts=1_700_000_000.0 + i) for i in range(50)]
    sent = await send_results(results, kafka_bootstrap, settings.topics.tests)
    assert (sent.results, sent.messages) == (50, 2)
    one = TestResult(provider="github", owner="acme", repo="web", job_id="6", test_id="single", outcome="passed")
    bad = orjson.dumps({"v": 1, "job": {"provider": "github", "owner": "acme", "repo": "web", "job_id": "7"},
                        "results": [{"test_id": "b0", "outcome": "passed"}, {"test_id": "b1", "outcome": "??"}]})
    await produce(kafka_bootstrap, prefix, [("ci.tests", b"single", one.to_json()), ("ci.tests", b"b0", bad)])
    rec = await read_topics(kafka_bootstrap, prefix)
    assert rec.by_topic == {"ci.tests": 52}
    assert sorted(k.decode() for _, k, _ in rec.messages) == sorted([f"t{i}" for i in range(50)] + ["single", "b0"])
    assert all(TestResult.from_json(v).test_id.encode() == k for _, k, v in rec.messages)
    assert len(rec.rejected) == 1 and re.fullmatch(rf"{re.escape(prefix)}ci\.tests\[\d\]@\d+: results\[1\]\.outcome: .*",
                                                   rec.rejected[0])
