"""SASL and ACLs on a real Apache Kafka of the test's own (``KafkaBroker(sasl_users=...)``, loopback, free
port, stopped at the end): only the worker's principal can write ``guard.actions``; the executor's principal
can read it and cannot write it; another principal, a wrong password and a client without SASL get nothing."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from healing_guard.brokers import KafkaBroker, create_acls, create_topics, describe_acls
from healing_guard.kafka_auth import client_options, guard_acls, sasl_options
from healing_guard.schemas import Outcome
from healing_guard.settings import Settings, load_settings
from healing_guard.topics import internal_topics

# one worker runs the whole module under `pytest -n 2 --dist loadgroup` (its fixture starts a server)
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("test_kafka_acls")]

USERS = {"admin": "admin-pw-0123", "worker": "worker-pw-0123", "executor": "executor-pw-0123",
         "forwarder": "forwarder-pw-0123", "mallory": "mallory-pw-0123"}
KEY = "the-install-command-key-0123456789"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-sasl"), sasl_users=USERS)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def as_user(s: Settings, user: str) -> Settings:
    return dataclasses.replace(s, broker_sasl_mechanism="PLAIN", broker_username=user, broker_password=USERS[user])


async def produce(bootstrap: str, topic: str, value: bytes, **security: Any) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10_000, **security)
    try:
        await p.start()
        await p.send_and_wait(topic, key=b"github/acme/shop/1", value=value)
    finally:
        await p.stop()


async def test_only_the_worker_principal_writes_guard_actions(sasl_broker: KafkaBroker, tmp_path: Path) -> None:
    from healing_guard.executor.cli import run_executor
    from tests.integration.executor.test_signed_commands import command, send_as_worker
    from tests.support.fake_apis import FakeApis
    from tests.unit.executor.test_executor import Sleeps, make_clients

    prefix = f"acl{uuid.uuid4().hex[:8]}."
    bootstrap = sasl_broker.bootstrap
    s = load_settings(None, env={"GUARD_DATA_DIR": str(tmp_path)}, broker_url=f"kafka://{bootstrap}",
                      topic_prefix=prefix, app_id=prefix.rstrip("."), partitions=1)
    t = s.topics
    admin = sasl_broker.admin_options
    await create_topics(bootstrap, {**{n: 1 for n in t.all().values()}, **{n: 1 for n in internal_topics(s)}},
                        client_options=admin)
    acls = guard_acls(s)
    await create_acls(bootstrap, acls, client_options=admin)
    listed = await describe_acls(bootstrap, client_options=admin)
    assert set(acls) <= set(listed)
    assert {(a.principal, a.operation) for a in listed if a.name == t.actions} == {
        ("User:worker", "write"), ("User:worker", "describe"), ("User:executor", "read"), ("User:executor", "describe")}

    worker, executor = as_user(s, "worker"), as_user(s, "executor")
    # the worker principal writes guard.actions: with a plain aiokafka producer, and through Faust (the
    # worker's own send path, its credentials from broker.sasl_mechanism / username / password)
    c = [command(prefix, n) for n in range(2)]
    await produce(bootstrap, t.actions, c[0].to_json(), **client_options(worker))
    await send_as_worker(worker, [c[1]])

    # the executor principal, another principal, a wrong password, and no SASL at all cannot
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(bootstrap, t.actions, b"{}", **client_options(executor))
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(bootstrap, t.actions, b"{}", **sasl_options("mallory", USERS["mallory"]))
    with pytest.raises(KafkaConnectionError):  # SaslAuthenticationFailed: the connection is closed
        await produce(bootstrap, t.actions, b"{}", **sasl_options("worker", "not-the-password"))
    with pytest.raises(KafkaConnectionError):  # no PLAINTEXT listener: nothing without SASL
        await produce(bootstrap, t.actions, b"{}")

    # mallory cannot read it either
    spy = AIOKafkaConsumer(t.actions, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                           **sasl_options("mallory", USERS["mallory"]))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await spy.start()
            for _ in range(40):
                await spy.getmany(timeout_ms=250)
    finally:
        await spy.stop()

    # the executor principal reads guard.actions in its group and writes its outcomes: exactly the two
    # commands the worker wrote (no key is configured here: signatures are the other test's subject)
    with FakeApis() as api:
        counts = await run_executor(executor, dry_run=True, data_dir=tmp_path / "executor", once=True,
                                    clients=make_clients(api, Sleeps()))
        assert api.requests == []
    assert counts == {"dry_run": 2}
    reader = AIOKafkaConsumer(t.outcomes, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                              **admin)
    await reader.start()
    try:
        got: list[bytes] = []
        for _ in range(40):
            for recs in (await reader.getmany(timeout_ms=250)).values():
                got += [r.value for r in recs]
            if len(got) >= 2:
                break
    finally:
        await reader.stop()
    assert sorted(Outcome.from_json(v).command_id for v in got) == sorted(x.command_id for x in c)


async def test_the_real_worker_under_its_acls_signs_what_the_executor_carries_out(sasl_broker: KafkaBroker,
                                                                                 tmp_path: Path) -> None:
    """Both halves together: the `guard worker` process as principal ``worker`` (SASL, only the ACLs of
    ``guard_acls``) diagnoses a job a ``forwarder`` wrote and signs its command; the executor as principal
    ``executor`` verifies it and re-runs the job, once."""
    import asyncio

    from healing_guard.executor.cli import run_executor
    from tests.integration.helpers import oom_job, start_worker, stop_worker, wait_status
    from tests.support.fake_apis import FakeApis
    from tests.unit.executor.test_executor import Sleeps, make_clients

    prefix = f"aclw{uuid.uuid4().hex[:8]}."
    bootstrap = sasl_broker.bootstrap
    admin = sasl_broker.admin_options
    env = {"GUARD_COMMAND_KEY": KEY, "GUARD_DATA_DIR": str(tmp_path / "worker")}
    s = load_settings(None, env=env, broker_url=f"kafka://{bootstrap}", topic_prefix=prefix,
                      app_id=prefix.rstrip("."), partitions=2)
    t = s.topics
    await create_topics(bootstrap, {**{n: 2 for n in t.all().values()},
                                    **{n: p for n, (p, _) in internal_topics(s).items()}},
                        config={n: c for n, (_, c) in internal_topics(s).items() if c}, client_options=admin)
    await create_acls(bootstrap, guard_acls(s, forwarders=["forwarder"]), client_options=admin)

    log = tmp_path / "worker.log"
    proc = start_worker(bootstrap, prefix, f"chdb://{tmp_path / 'chdb'}", log, "--no-create-topics", "--no-facts",
                        env={**env, "GUARD_BROKER_SASL_MECHANISM": "PLAIN", "GUARD_BROKER_USERNAME": "worker",
                             "GUARD_BROKER_PASSWORD": USERS["worker"]})
    try:
        # the job's log and completion through `guard forward`, as a CI step sends them: as principal
        # `forwarder` (broker.sasl_* from its environment); then as `mallory`, who is refused
        lines = [orjson.loads(v)["lines"] for tp, _, v in oom_job(0, noise=50) if tp == "ci.logs"]
        logfile = tmp_path / "job.log"
        logfile.write_text("\n".join(x for chunk in lines for x in chunk) + "\n")

        def forward(user: str) -> subprocess.CompletedProcess[str]:
            cmd = [sys.executable, "-m", "healing_guard.cli", "forward", "--provider", "github", "--repo", "acme/svc0",
                   "--job-id", "90000", "--run-id", "5", "--conclusion", "failure", "--exit-code", "137",
                   "--broker", f"kafka://{bootstrap}", "--topic-prefix", prefix, str(logfile)]
            e = {**os.environ, "GUARD_BROKER_SASL_MECHANISM": "PLAIN", "GUARD_BROKER_USERNAME": user,
                 "GUARD_BROKER_PASSWORD": USERS[user]}
            return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=120)

        sent = await asyncio.to_thread(forward, "forwarder")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        refused = await asyncio.to_thread(forward, "mallory")
        assert refused.returncode != 0 and "Authorization" in refused.stdout + refused.stderr, refused
        await asyncio.to_thread(wait_status, log.with_suffix(".status.json"), "commands", 1, 120, proc)
    finally:
        code = stop_worker(proc)
    assert code == 0, log.read_text()[-4000:]

    with FakeApis() as api:
        counts = await run_executor(as_user(s, "executor"), dry_run=False, data_dir=tmp_path / "executor",
                                    once=True, clients=make_clients(api, Sleeps()))
        paths = [r.path for r in api.requests]
    assert counts == {"succeeded": 1}, (counts, paths)
    assert len(paths) == 1 and paths[0].startswith("/repos/acme/svc0/actions/")

    # the same topics replayed by `guard backtest --from-broker` as principal `worker` (its credentials
    # from the environment reach the reader; the replay's own embedded broker takes none of them)
    e = {**os.environ, "GUARD_BROKER_SASL_MECHANISM": "PLAIN", "GUARD_BROKER_USERNAME": "worker",
         "GUARD_BROKER_PASSWORD": USERS["worker"]}
    e.pop("GUARD_CONFIG", None)
    bt = await asyncio.to_thread(
        subprocess.run, [str(Path(sys.executable).parent / "guard"), "backtest", "--from-broker", f"kafka://{bootstrap}",
                         "--topic-prefix", prefix, "--json"],
        cwd=tmp_path, env=e, capture_output=True, text=True, timeout=600)
    assert bt.returncode == 0, bt.stderr[-3000:]
    got = orjson.loads(bt.stdout.splitlines()[-1])
    assert got["failed_jobs"] == 1 and got["diagnosed"] == 1 and list(got["by_category"]) == ["oom"], got
    e["GUARD_BROKER_USERNAME"] = "mallory"  # a principal without read access to the ci.* topics gets nothing
    e["GUARD_BROKER_PASSWORD"] = USERS["mallory"]
    bt = await asyncio.to_thread(
        subprocess.run, [str(Path(sys.executable).parent / "guard"), "backtest", "--from-broker", f"kafka://{bootstrap}",
                         "--topic-prefix", prefix, "--json"],
        cwd=tmp_path, env=e, capture_output=True, text=True, timeout=600)
    assert bt.returncode == 1 and "not authorized to read" in bt.stderr and "Traceback" not in bt.stderr, bt.stderr[-3000:]
