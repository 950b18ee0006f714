"""Signed commands end to end on real Apache Kafka: what the worker (its Faust producer, through
``agents.effects.apply``) and the REST API (``KafkaCommandSink``) put on ``guard.actions`` is carried out;
what a plain producer forges -- unsigned, signed with another key, or a signed command altered -- is
dead-lettered with the reason and never reaches the platform's API."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from healing_guard.schemas import Command, DeadLetter, Outcome
from healing_guard.settings import load_settings
from healing_guard.signing import KEY_ID_HEADER, SIGNATURE_HEADER, Keyring
from tests.integration.helpers import collect
from tests.support.fake_apis import FakeApis
from tests.unit.executor.test_executor import Sleeps, make_clients

pytestmark = pytest.mark.integration

OLD = "old-key-of-the-install-0123456789"
NEW = "new-key-of-the-install-0123456789"


def command(prefix: str, n: int) -> Command:
    return Command(provider="github", owner="acme", repo="shop", job_id=str(9000 + n),
                   command_id=f"{prefix}{n}", attempt=1, action="retry", reason="r", category="network",
                   confidence=0.9, run_id=str(700 + n))


def rerun_path(c: Command) -> str:
    return f"/repos/acme/shop/actions/runs/{c.run_id}/rerun-failed-jobs"


async def send_as_worker(settings: Any, commands: list[Command]) -> None:
    """The worker's send path: a Faust app of the settings, its declared topics, ``effects.apply``."""
    from healing_guard.agents.context import AgentContext
    from healing_guard.agents.effects import apply
    from healing_guard.engine.step import Send
    from healing_guard.streams.app import create_app
    from healing_guard.streams.topics import declare_topics

    app = create_app(settings)
    ctx = AgentContext(app=app, settings=settings, topics=declare_topics(app, settings),
                       tables=None, engine=None)  # type: ignore[arg-type]  # apply() of Sends needs neither
    await app.producer.start()
    try:
        await apply(ctx, [Send("actions", c.job_key.encode(), c.to_json()) for c in commands])
        await app.producer.flush()
    finally:
        await app.producer.stop()
    assert ctx.stats.commands == len(commands)


async def test_forged_commands_are_dead_lettered_and_never_executed(kafka_bootstrap: str, tmp_path: Path) -> None:
    from healing_guard.executor.cli import run_executor
    from healing_guard.rest.app import KafkaCommandSink
    from healing_guard.streams.topics import ensure_topics

    prefix = f"sig{uuid.uuid4().hex[:8]}."
    keys = tmp_path / "command-keys"
    keys.write_text(f"k1 {OLD}\n")
    # the install after a rotation: NEW (k2) signs, OLD (k1) is still accepted
    env = {"GUARD_COMMAND_KEY": NEW, "GUARD_COMMAND_KEY_ID": "k2", "GUARD_COMMAND_KEY_FILE": str(keys),
           "GUARD_DATA_DIR": str(tmp_path / "worker")}
    s = load_settings(None, env=env, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix,
                      app_id=prefix.rstrip("."), partitions=1)
    await ensure_topics(s)
    t = s.topics
    c = [command(prefix, n) for n in range(7)]

    await send_as_worker(s, [c[0]])  # signed by the worker (k2)
    sink = KafkaCommandSink(s)
    try:
        await sink.send(c[1])  # signed by the API (k2)
    finally:
        await sink.close()
    old = Keyring(keys={"k1": OLD.encode()}, signing_id="k1")
    attacker = Keyring(keys={"k2": b"what-the-attacker-guessed-0123"}, signing_id="k2")
    tampered = c[5].to_json()
    genuine = Keyring(keys={"k2": NEW.encode()}, signing_id="k2").headers(tampered)
    forged: list[tuple[bytes, list[tuple[str, bytes]] | None]] = [
        (c[2].to_json(), old.headers(c[2].to_json())),  # signed before the rotation: accepted
        (c[3].to_json(), None),  # unsigned
        (c[4].to_json(), attacker.headers(c[4].to_json())),  # signed with another key
        (tampered.replace(b'"run_id":"705"', b'"run_id":"999"'), genuine),  # altered after signing
        (c[6].to_json(), [(KEY_ID_HEADER, b"k2")]),  # a key id and no signature
    ]
    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap, acks="all")  # anyone who can write the topic
    await producer.start()
    try:
        for value, headers in forged:
            await producer.send_and_wait(t.actions, key=b"github/acme/shop/x", value=value, headers=headers)
    finally:
        await producer.stop()
    assert b'"run_id":"999"' in forged[3][0]

    with FakeApis() as api:
        counts = await run_executor(s, dry_run=False, data_dir=tmp_path / "executor", once=True,
                                    clients=make_clients(api, Sleeps()))
        called = sorted(r.path for r in api.requests)
    assert called == sorted(rerun_path(x) for x in c[:3])  # the worker's, the API's and the pre-rotation one
    assert counts == {"succeeded": 3, "deadletter": 4}

    outcomes = [Outcome.from_json(r.value) for r in await collect(s.bootstrap, t.outcomes, 3, 20)]
    assert sorted(o.command_id for o in outcomes) == sorted(x.command_id for x in c[:3])
    letters = [DeadLetter.from_json(r.value) for r in await collect(s.bootstrap, t.deadletter, 4, 20)]
    assert [d.source_topic for d in letters] == [t.actions] * 4
    assert {d.field_name for d in letters} == {f"headers.{SIGNATURE_HEADER}"}
    reasons = [d.reason for d in letters]
    assert reasons[0].startswith("refused: unsigned command")
    assert reasons[1].startswith("refused: bad signature for key id k2")
    assert reasons[2].startswith("refused: bad signature for key id k2")
    assert reasons[3].startswith("refused: unsigned command")  # a key id is no signature
    assert b'"run_id":"999"' in __import__("base64").b64decode(letters[2].original_b64)  # the original is kept
