"""Faults on real Kafka, counted: a worker killed with SIGKILL mid-stream, a broker restarted mid-stream,
and ClickHouse (chDB) held by another process while facts arrive.

Each test counts what came out against what went in: API calls per job at a local GitHub, runs per test in
the recovered models, rows per table in ClickHouse.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from healing_guard.agents.facts import group_id as facts_group
from healing_guard.brokers import KafkaBroker
from healing_guard.schemas import TestResult
from healing_guard.settings import Settings
from healing_guard.streams.topics import ensure_topics

from .helpers import (T0, broker_settings, chdb_query, collect, hold_chdb, oom_job, produce, start_worker,
                      stop_worker, wait_consumed, wait_ready, wait_status, worker_status)
from tests.support.paths import ROOT

pytestmark = pytest.mark.integration

def _test_result(test: int, run: int, outcome: str) -> tuple[str, bytes, bytes]:
    tid = f"tests/test_mod{test}.py::test_case"
    r = TestResult(provider="github", owner="acme", repo="svc0", job_id=f"t{test}-{run}", test_id=tid,
                   outcome=outcome, duration_s=1.0, ts=T0 + run * 60)
    return "ci.tests", tid.encode(), r.to_json()


def _wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


async def _run_executor(settings: Settings, data_dir: Path, api_url: str, stop: asyncio.Event) -> Any:
    from healing_guard.executor.cli import run_executor
    from healing_guard.executor.clients import Clients

    clients = Clients.from_env({"GUARD_GITHUB_TOKEN": "ghs_faulttesttoken0123456789", "GUARD_GITHUB_API_URL": api_url},
                               proxies={})
    return asyncio.create_task(run_executor(settings, dry_run=False, data_dir=data_dir, clients=clients, stop=stop))


async def _most_runs(bootstrap: str, topic: str, tests: int, want: int, proc: Any,
                     timeout: float = 120) -> dict[str, int]:
    """Per test id, the most runs any risk record on ``topic`` reports, once every test reached ``want``."""
    deadline = time.monotonic() + timeout
    most: dict[str, int] = {}
    while time.monotonic() < deadline:
        for r in await collect(bootstrap, topic, 1 << 30, 3, proc):
            risk = orjson.loads(r.value)["risk"]
            most[risk["test_id"]] = max(most.get(risk["test_id"], 0), int(risk["runs"]))
        if len(most) >= tests and min(most.values()) >= want:
            return most
    raise AssertionError(f"risk records never reached {want} runs for {tests} tests: {most}")


# --------------------------------------------------------------------------------------------------
# 1. a worker killed with SIGKILL mid-stream
# --------------------------------------------------------------------------------------------------

# A crash test, run by `make test-all` (slow marker) rather than in CI for now: on 2026-12-07 it failed in one
# of five clean runs with a test model holding 11 of its 13 runs after the SIGKILL (two results lost). That is
# the loss issue 16 is about; it is kept here, unweakened, to be fixed there and brought back into CI.
@pytest.mark.slow
async def test_sigkill_of_one_of_two_workers_loses_nothing_and_retries_nothing_twice(kafka_bootstrap: str,
                                                                                    tmp_path: Path) -> None:
    """Two workers in one group; one is killed with SIGKILL while it works. It commits its offsets only every
    60 s, so everything it did is read again by the survivor, which recovers the victim's tables from their
    changelogs: jobs the victim decided are not decided again (their windows' markers), and test results the
    victim learned are not learned again (the offset each model last learned). Counted: each job is re-run
    exactly once at the (local) GitHub API, and each test's model holds each of its runs exactly once."""
    from tests.support.fake_apis import FakeApis

    prefix = f"ck{uuid.uuid4().hex[:8]}."
    settings = broker_settings(kafka_bootstrap, prefix)
    await ensure_topics(settings)
    jobs, tests, runs = 24, 8, 12
    logs = {name: tmp_path / f"{name}.log" for name in ("victim", "survivor")}
    no_commit = {"GUARD_COMMIT_INTERVAL_SECONDS": "60"}  # the victim's work is never committed
    victim = start_worker(kafka_bootstrap, prefix, "chdb://unused", logs["victim"], "--no-facts", partitions=4,
                          env=no_commit)
    survivor = start_worker(kafka_bootstrap, prefix, "chdb://unused", logs["survivor"], "--no-facts", partitions=4)
    stop = asyncio.Event()
    with FakeApis() as api:
        executor = await _run_executor(settings, tmp_path / "executor", api.url, stop)
        try:
            # both workers up and in the group before any traffic
            await asyncio.to_thread(_wait_for, lambda: all(worker_status(lg) for lg in logs.values()), 90, "both workers")
            await asyncio.sleep(6)  # the group's rebalance settles (session timeout 4 s)

            first: list[tuple[str, bytes, bytes]] = []
            for i in range(jobs // 2):
                first += oom_job(i)
            first += [_test_result(t, r, "failed" if r % 3 == 1 else "passed") for r in range(runs) for t in range(tests)]
            await produce(kafka_bootstrap, prefix, first)
            # the victim has done part of its share, then dies without a chance to commit or flush anything
            await asyncio.to_thread(_wait_for, lambda: worker_status(logs["victim"]).get("commands", 0) >= 2
                                    and worker_status(logs["victim"]).get("tests", 0) >= 2, 90, "the victim to work")
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            done_by_victim = worker_status(logs["victim"])

            second: list[tuple[str, bytes, bytes]] = []
            for i in range(jobs // 2, jobs):
                second += oom_job(i)
            second += [_test_result(t, runs, "failed") for t in range(tests)]  # each test's risk, after all runs
            await produce(kafka_bootstrap, prefix, second)

            final = await _most_runs(kafka_bootstrap, settings.topics.test_risk, tests, runs + 1, survivor)
            await asyncio.to_thread(_wait_for, lambda: len({r.path for r in api.requests}) >= jobs, 120,
                                    f"{jobs} jobs re-run at the API")
            await asyncio.sleep(3)  # duplicates, if any, would arrive now
        finally:
            stop.set()
            counts = await asyncio.wait_for(executor, 30)
            code = stop_worker(survivor)
            if victim.poll() is None:
                victim.kill()
        assert code == 0, logs["survivor"].read_text()[-3000:]

        calls = Counter(r.path for r in api.requests)
    expected = {f"/repos/acme/svc{i % 5}/actions/jobs/{7000 + i}/rerun" for i in range(jobs)}
    assert set(calls) == expected, sorted(set(calls) ^ expected)
    assert max(calls.values()) == 1, [p for p, n in calls.items() if n > 1]  # exactly once each
    assert counts.get("succeeded") == jobs, counts

    actions = await collect(kafka_bootstrap, settings.topics.actions, jobs, 10)
    on_topic = Counter(c["command_id"] for c in map(orjson.loads, (r.value for r in actions))
                       if c["action"] == "rerun_more_memory")
    assert len(on_topic) == jobs, on_topic
    assert done_by_victim["commands"] >= 2, done_by_victim  # the victim had decided some jobs before it died

    # the models: every test's history holds each of its runs exactly once, whichever worker learned it
    assert set(final) == {f"tests/test_mod{t}.py::test_case" for t in range(tests)}, final
    assert set(final.values()) == {runs + 1}, final
    survivor_status = worker_status(logs["survivor"])
    # Whether the victim's learning reached its changelog before the kill depends on the moment (on a busy host
    # its producer may not have flushed): then the survivor learns those results for the first time instead of
    # recognising a replay. Either way each run is in each model exactly once (asserted above); how many
    # replays were recognised is reported, not required.
    print(f"replayed test results recognised by the survivor: {survivor_status['tests_replayed']}")
    (tmp_path / "counts.json").write_bytes(orjson.dumps({"victim": done_by_victim, "survivor": survivor_status,
                                                         "commands_on_topic": sum(on_topic.values()),
                                                         "api_calls": sum(calls.values())}))


# --------------------------------------------------------------------------------------------------
# 2. the broker restarted mid-stream
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.crash  # a broker of its own stopped and started again: with the crash matrix in `make crash`
async def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    """A broker of its own (the session's is shared), stopped and started on the same data and port while a
    worker and the executor are connected and traffic is half through. Both reconnect; every job is re-run
    exactly once and every test result is learned exactly once."""
    from tests.support.fake_apis import FakeApis

    broker = KafkaBroker(tmp_path / "kafka")
    bootstrap = broker.start()
    prefix = f"br{uuid.uuid4().hex[:8]}."
    settings = broker_settings(bootstrap, prefix, partitions=2)
    jobs, tests, runs = 16, 4, 12
    log = tmp_path / "worker.log"
    stop = asyncio.Event()
    proc: subprocess.Popen[bytes] | None = None
    try:
        await ensure_topics(settings)
        proc = start_worker(bootstrap, prefix, "chdb://unused", log, "--no-facts", partitions=2)
        with FakeApis() as api:
            executor = await _run_executor(settings, tmp_path / "executor", api.url, stop)
            try:
                first: list[tuple[str, bytes, bytes]] = []
                for i in range(jobs // 2):
                    first += oom_job(i)
                first += [_test_result(t, r, "failed" if r % 3 == 1 else "passed") for r in range(runs // 2)
                          for t in range(tests)]
                await produce(bootstrap, prefix, first)
                await asyncio.to_thread(_wait_for, lambda: len(api.requests) >= 2, 90, "the first re-runs")

                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(5)  # clients see the connection refused and keep retrying
                assert proc.poll() is None, "the worker exited while the broker was away"
                assert await asyncio.to_thread(broker.start) == bootstrap

                second: list[tuple[str, bytes, bytes]] = []
                for i in range(jobs // 2, jobs):
                    second += oom_job(i)
                second += [_test_result(t, r, "failed" if r % 3 == 1 else "passed") for r in range(runs // 2, runs)
                           for t in range(tests)]
                second += [_test_result(t, runs, "failed") for t in range(tests)]
                await produce(bootstrap, prefix, second)
                most = await _most_runs(bootstrap, settings.topics.test_risk, tests, runs + 1, proc, timeout=180)
                await asyncio.to_thread(_wait_for, lambda: len({r.path for r in api.requests}) >= jobs, 180,
                                        f"{jobs} jobs re-run at the API")
                await asyncio.sleep(3)
            finally:
                stop.set()
                counts = await asyncio.wait_for(executor, 60)
            calls = Counter(r.path for r in api.requests)
        assert set(calls) == {f"/repos/acme/svc{i % 5}/actions/jobs/{7000 + i}/rerun" for i in range(jobs)}
        assert max(calls.values()) == 1, calls
        assert counts.get("succeeded") == jobs, counts
        assert set(most.values()) == {runs + 1}, most
        dead = await collect(bootstrap, settings.topics.deadletter, 1, 3)
        assert dead == [], [orjson.loads(r.value)["reason"] for r in dead]
    finally:
        if proc is not None:
            code = stop_worker(proc)
            assert code == 0, log.read_text()[-3000:]
        broker.stop()


# --------------------------------------------------------------------------------------------------
# 3. ClickHouse unavailable: the chDB directory held by another process
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("traffic_during_takeover", [
    False,
    # Known to fail on a busy host (README "What is not done yet"): records that arrive while the new
    # worker recovers its tables are sometimes dropped by faust-streaming's consumer and their offsets
    # committed anyway. Out of make test; `make crash` runs it.
    pytest.param(True, marks=[pytest.mark.slow, pytest.mark.crash]),
], ids=["after-takeover", "during-takeover"])
async def test_facts_wait_while_clickhouse_is_held_and_are_written_once_when_it_returns(
        kafka_bootstrap: str, tmp_path: Path, traffic_during_takeover: bool) -> None:
    """The worker's chDB directory is held by another process. Facts cannot be written, so they stay
    unacknowledged on guard.facts; the worker is even killed (SIGKILL) meanwhile and a second one takes over
    (and must read the facts the first read but never wrote: nothing committed them). When the directory
    is released every fact is written, and each table holds each fact once. The second half of the
    traffic is sent once the second worker is ready, or while it starts (``traffic_during_takeover``)."""
    prefix = f"ch{uuid.uuid4().hex[:8]}."
    settings = broker_settings(kafka_bootstrap, prefix, partitions=2)
    await ensure_topics(settings)
    path = tmp_path / "chdb"
    dsn = f"chdb://{path}"
    jobs, tests, runs = 10, 3, 6
    holder = hold_chdb(path, cwd=ROOT)
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    w2: subprocess.Popen[bytes] | None = None
    try:
        w1 = start_worker(kafka_bootstrap, prefix, dsn, logs[0], partitions=2)
        first: list[tuple[str, bytes, bytes]] = []
        for i in range(jobs // 2):
            first += oom_job(i)
        first += [_test_result(t, r, "passed") for r in range(runs // 2) for t in range(tests)]
        await produce(kafka_bootstrap, prefix, first)
        s1 = await asyncio.to_thread(wait_status, logs[0].with_suffix(".status.json"), "fact_errors", 2, 90, w1)
        assert s1["facts_written"] == 0, s1
        await asyncio.to_thread(wait_status, logs[0].with_suffix(".status.json"), "findings", jobs // 2, 90, w1)
        w1.send_signal(signal.SIGKILL)
        w1.wait(10)

        w2 = start_worker(kafka_bootstrap, prefix, dsn, logs[1], partitions=2)
        if not traffic_during_takeover:
            wait_ready(w2, logs[1])
        second: list[tuple[str, bytes, bytes]] = []
        for i in range(jobs // 2, jobs):
            second += oom_job(i)
        second += [_test_result(t, r, "passed") for r in range(runs // 2, runs) for t in range(tests)]
        await produce(kafka_bootstrap, prefix, second)
        s2 = await asyncio.to_thread(wait_status, logs[1].with_suffix(".status.json"), "fact_errors", 2, 90, w2)
        assert s2["facts_written"] == 0, s2

        assert holder.stdin is not None
        holder.stdin.close()  # ClickHouse is back
        holder.wait(30)
        want = 3 * jobs + tests * runs  # per job: its run, its diagnosis, its command; per test result: one row
        # the second worker's own jobs and results are in (what the first read but left uncommitted is read
        # again and counts in the status too), and every fact on guard.facts is written and acknowledged:
        # facts_written alone can pass while some are still to come, since facts read twice are written twice
        for topic in (settings.topics.jobs, settings.topics.logs, settings.topics.tests):
            await wait_consumed(kafka_bootstrap, settings.app_id, topic, 90, w2)
        await asyncio.to_thread(wait_status, logs[1].with_suffix(".status.json"), "findings", jobs // 2, 90, w2)
        s2 = await asyncio.to_thread(wait_status, logs[1].with_suffix(".status.json"), "facts_written", want, 90, w2)
        await wait_consumed(kafka_bootstrap, facts_group(settings), settings.topics.facts, 90, w2)
    finally:
        if holder.poll() is None:
            holder.kill()
        code = stop_worker(w2) if w2 is not None else 0
    assert code == 0, logs[1].read_text()[-3000:]

    tables = ("job_runs", "diagnoses", "commands", "test_results")
    rows = chdb_query(dsn, "guard_it", {
        **{t: f"SELECT count() FROM {{db}}.{t} FINAL" for t in tables},
        "actions": "SELECT action, count() FROM {db}.commands FINAL GROUP BY action ORDER BY action",
        **{f"{t}_raw": f"SELECT count() FROM {{db}}.{t}" for t in tables},
    })
    # one command per job, plus the incident the same OOM in five repositories opens
    assert dict(map(tuple, rows["actions"])) == {"rerun_more_memory": jobs, "open_incident": 1}, rows
    assert {t: rows[t][0][0] for t in tables} == {"job_runs": jobs, "diagnoses": jobs, "commands": jobs + 1,
                                                  "test_results": tests * runs}, rows
    raw = {t: rows[f"{t}_raw"][0][0] for t in tables}
    assert all(raw[t] >= rows[t][0][0] for t in tables), rows
    (tmp_path / "counts.json").write_bytes(orjson.dumps({"written": s2["facts_written"], "errors": s2["fact_errors"],
                                                         "raw": raw}))
