"""The agents through Faust's test_context: real agent code and tables, no broker."""

from __future__ import annotations

import base64
from typing import Any
from unittest.mock import AsyncMock

import orjson
import pytest

from healing_guard.engine.state import load_test
from healing_guard.schemas import DeadLetter, JobEvent, LogChunk, TestResult
from healing_guard.schemas.test_batch import encode_batches
from healing_guard.settings import Settings
from healing_guard.streams.worker import Guard, build_guard
from healing_guard.warehouse.facts import facts_from_json

KEY = b"gitlab/platform/api/77"


class Capture:
    """Replaces Topic.send on every output topic and records what was sent."""

    def __init__(self, guard: Guard) -> None:
        self.sent: dict[str, list[tuple[bytes | None, bytes]]] = {}
        for name in ("findings", "actions", "deadletter", "facts", "test_risk", "ticks", "incidents"):
            topic = getattr(guard.ctx.topics, name)
            topic.send = AsyncMock(side_effect=self._recorder(name))  # type: ignore[method-assign]

    def _recorder(self, name: str) -> Any:
        async def send(key: bytes | None = None, value: bytes = b"", partition: int | None = None, **kw: Any) -> None:
            self.sent.setdefault(name, []).append((key, value))
        return send

    def values(self, name: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, v in self.sent.get(name, [])]

    def dead_letters(self) -> list[str]:
        """The reasons of what went to the dead-letter topic. An agent catches its own exceptions and
        dead-letters the message, so a test asserting that something did NOT happen (no command, not
        quarantined, nothing sent) must also see this empty: otherwise a crash passes it."""
        return [DeadLetter.from_dict(d).reason for d in self.values("deadletter")]


async def put(agent_ctx: Any, topic: str, key: bytes | None, value: bytes) -> None:
    """The ingest agent merges four topics into one stream; test_context names such a channel
    '<internal>', so stamp the message with the topic it would really come from."""
    from faust.types import TP

    original = agent_ctx.to_message

    def to_message(k: Any, v: Any, **kw: Any) -> Any:
        m = original(k, v, **kw)
        m.topic, m.tp = topic, TP(topic, m.partition)
        return m

    agent_ctx.to_message = to_message
    try:
        await agent_ctx.put(key=key, value=value)
    finally:
        agent_ctx.to_message = original


@pytest.fixture()
def guard() -> Guard:
    s = Settings(broker_url="kafka://127.0.0.1:1", facts_enabled=False, test_grace_seconds=0.0, partitions=1,
                 app_id="unit-agents")
    return build_guard(s)


def _chunk(seq: int, lines: list[str], eof: bool = False) -> bytes:
    return LogChunk(provider="gitlab", owner="platform", repo="api", job_id="77", seq=seq, lines=lines,
                    first_line=None, eof=eof).to_json()


def _done(conclusion: str = "failure", chunks: int = 2) -> bytes:
    return JobEvent(provider="gitlab", owner="platform", repo="api", job_id="77", job_name="build",
                    status="completed", conclusion=conclusion, exit_code=1, log_chunks=chunks,
                    started_at=1000.0, completed_at=1600.0).to_json()


async def test_ingest_diagnoses_and_commands(guard: Guard) -> None:
    cap = Capture(guard)
    agent = guard.agents["ingest"]
    topic = guard.ctx.settings.topics
    async with agent.test_context() as agent_ctx:
        for value in (_chunk(0, ["$ pip install -r requirements.txt", "Collecting flask==3.0.0"]),
                      _chunk(1, ["ERROR: Could not install packages due to an OSError: [Errno 28] "
                                 "No space left on device", "ERROR: Job failed: exit code 1"], eof=True)):
            await put(agent_ctx, topic.logs, KEY, value)
        # state is kept per job in the windows table until the completion event
        assert guard.ctx.tables.windows.get(KEY) is not None
        await put(agent_ctx, topic.jobs, KEY, _done())
    cmds = cap.values("actions")
    assert len(cmds) == 1 and cmds[0]["category"] == "disk_full" and cmds[0]["action"] == "cleanup_retry"
    assert cmds[0]["evidence"][0]["line"] == 3
    assert cap.values("findings")[0]["log_lines"] == 4
    marker = orjson.loads(guard.ctx.tables.windows.get(KEY))  # decided: only a small marker is left
    assert marker["decided"] and marker["evidence"] == [] and marker["tail"] == []
    # a replayed completion event (at-least-once delivery) decides nothing a second time
    async with agent.test_context() as agent_ctx:
        await put(agent_ctx, topic.jobs, KEY, _done())
    assert len(cap.values("actions")) == 1
    assert cap.dead_letters() == []  # ignored, not crashed on


async def test_ingest_dead_letters_bad_input_and_keeps_going(guard: Guard) -> None:
    cap = Capture(guard)
    agent = guard.agents["ingest"]
    t = guard.ctx.settings.topics
    async with agent.test_context() as agent_ctx:
        await put(agent_ctx, t.logs, KEY, b"\xff\xfe not json")
        await put(agent_ctx, t.jobs, KEY, b'{"provider": "github"}')
        await put(agent_ctx, t.logs, b"some/other/key/1", _chunk(0, ["x"]))  # key is not the job key
        await put(agent_ctx, t.logs, None, _chunk(0, ["x"]))
        await put(agent_ctx, t.logs, KEY, _chunk(0, ["still", "working"]))
    assert guard.stats.chunks == 1  # the worker kept going after bad input
    letters = [DeadLetter.from_dict(d) for d in cap.values("deadletter")]
    assert len(letters) == 4
    assert "not valid JSON" in letters[0].reason and letters[0].original_size == len(b"\xff\xfe not json")
    assert letters[1].field_name == "owner" and "required" in letters[1].reason
    assert letters[2].field_name == "key"
    assert "no key" in letters[3].reason


async def test_tests_agent_learns_model_and_routes_risk(guard: Guard) -> None:
    cap = Capture(guard)
    agent = guard.agents["tests"]
    test_id = "tests/test_a.py::test_b"
    async with agent.test_context() as agent_ctx:
        for i, outcome in enumerate(["passed", "failed", "passed", "passed", "failed"]):
            r = TestResult(provider="github", owner="o", repo="r", job_id=str(i), test_id=test_id, outcome=outcome)
            await agent_ctx.put(key=test_id.encode(), value=r.to_json())
        model = load_test(guard.ctx.tables.test_models.get(test_id.encode())).model
    assert model is not None and model.runs == 5 and model.fails == 2
    risks = cap.sent["test_risk"]
    assert [k for k, _ in risks] == [b"github/o/r/1", b"github/o/r/4"]  # re-keyed by job key
    assert cap.dead_letters() == []  # no risk for the passes because they passed, not because of a crash
    assert orjson.loads(risks[-1][1])["risk"]["runs"] == 5


async def test_tests_agent_learns_a_batch_and_dead_letters_only_its_bad_entry(guard: Guard) -> None:
    cap = Capture(guard)
    agent = guard.agents["tests"]
    rs = [TestResult(provider="github", owner="o", repo="r", job_id="9", test_id=f"tests/test_m.py::test_{i}",
                     outcome="failed" if i == 2 else "passed", message="boom" if i == 2 else None) for i in range(5)]
    [(_p, key, value)] = encode_batches(rs, 1)
    bad = orjson.loads(value)
    bad["results"][3]["outcome"] = "exploded"
    async with agent.test_context() as agent_ctx:
        await agent_ctx.put(key=key, value=orjson.dumps(bad))
        states = {r.test_id: load_test(guard.ctx.tables.test_models.get(r.test_id.encode())) for r in rs}
    assert [tid for tid, st in states.items() if st.model is not None] == [rs[i].test_id for i in (0, 1, 2, 4)]
    [letter] = [DeadLetter.from_dict(d) for d in cap.values("deadletter")]
    assert letter.field_name == "results[3].outcome" and b"exploded" in base64.b64decode(letter.original_b64)
    assert letter.original_size < 200  # the entry, not the whole batch
    [risk] = cap.sent["test_risk"]
    assert risk[0] == b"github/o/r/9"
    rows = [f.row for _, v in cap.sent["facts"] for f in facts_from_json(v)]
    assert len(rows) == 4 and len(cap.sent["facts"]) == 1


async def test_tests_agent_redacts_a_batch_it_reads(guard: Guard) -> None:
    """A producer that did not redact (not ours): the worker's decoding does, before anything is kept."""
    cap = Capture(guard)
    agent = guard.agents["tests"]
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    batch = {"v": 1, "job": {"provider": "github", "owner": "o", "repo": "r", "job_id": "3",
                             "changed_files": [f"cfg/{token}.env"]},
             "results": [{"test_id": f"tests/test_api.py::test_login[{token}]", "outcome": "failed",
                          "message": f"AssertionError: token {token} rejected"},
                         {"test_id": "tests/test_api.py::test_ok", "outcome": "passed"}]}
    key = batch["results"][0]["test_id"].encode()
    async with agent.test_context() as agent_ctx:
        await agent_ctx.put(key=key, value=orjson.dumps(batch))
        keys = list(guard.ctx.tables.test_models.keys())
    assert len(keys) == 2 and not any(token.encode() in k for k in keys)
    assert any(b"[REDACTED]" in k for k in keys)
    sent = b"".join(v for topic in cap.sent.values() for _, v in topic)
    assert sent and token.encode() not in sent and b"[REDACTED]" in sent


def test_deadlines_heap_skips_superseded_and_repeated_entries() -> None:
    from healing_guard.agents.context import Deadlines

    d = Deadlines()
    for _ in range(100):  # a waiting window re-registers on every message it gets
        d[b"a"] = (10.0, 0)
    d[b"b"] = (5.0, 1)
    d[b"b"] = (20.0, 1)  # moved later: the old entry must not fire
    d[b"c"] = (1.0, 0)
    d.pop(b"c")
    assert len(d._heap) == 4
    assert d.due(15.0) == [(b"a", 0)]
    assert b"a" not in d and len(d) == 1
    assert d.due(25.0) == [(b"b", 1)]


async def test_outcomes_teach_this_partitions_planner(guard: Guard) -> None:
    from healing_guard.schemas import Outcome

    cap = Capture(guard)
    agent = guard.agents["ingest"]
    topic = guard.ctx.settings.topics
    failed = Outcome(command_id="c1", job_key=KEY.decode(), action="cleanup_retry", status="failed",
                     category="disk_full").to_json()
    async with agent.test_context() as agent_ctx:
        for _ in range(3):
            await put(agent_ctx, topic.outcomes, KEY, failed)
        await put(agent_ctx, topic.outcomes, KEY, Outcome(command_id="c2", job_key=KEY.decode(), action="retry",
                                                          status="dry_run", category="network").to_json())
    state = orjson.loads(guard.ctx.tables.ledgers.get(b"ledger:0"))
    assert state["success"]["counts"]["disk_full|platform/api|cleanup_retry"] == [0.0, 3.0]
    assert not any(k.startswith("network|") for k in state["success"]["counts"])  # a dry run teaches nothing
    assert guard.ctx.stats.outcomes_learned == 3
    assert cap.dead_letters() == []  # ...because it is a dry run, not because handling it crashed


async def test_flaky_test_is_quarantined_once_then_released(guard: Guard) -> None:
    cap = Capture(guard)
    agent = guard.agents["tests"]
    test_id = "tests/test_a.py::test_flaky"
    outcomes = ["failed" if i % 3 == 1 else "passed" for i in range(30)] + ["passed"] * 60
    async with agent.test_context() as agent_ctx:
        for i, outcome in enumerate(outcomes):
            r = TestResult(provider="github", owner="o", repo="r", job_id=str(i), test_id=test_id, outcome=outcome)
            await agent_ctx.put(key=test_id.encode(), value=r.to_json())
    cmds = cap.values("actions")
    assert [c["action"] for c in cmds] == ["quarantine_test", "release_test"]
    assert cmds[0]["parameters"]["test_id"] == test_id and "flaky" in cmds[0]["reason"]
    facts = [orjson.loads(v) for _, v in cap.sent["facts"]]
    assert sum(1 for f in facts if f.get("table") == "commands") == 2  # visible in ClickHouse
    state = load_test(guard.ctx.tables.test_models.get(test_id.encode()))
    assert state.quarantine.quarantined is False and state.quarantine.episode == 1
    assert state.model is not None and state.model.runs == len(outcomes)  # every result learned: quarantined once, not crashed after
    assert cap.dead_letters() == []


async def test_broken_test_is_not_quarantined(guard: Guard) -> None:
    cap = Capture(guard)
    agent = guard.agents["tests"]
    test_id = "tests/test_a.py::test_broken"
    async with agent.test_context() as agent_ctx:
        for i in range(40):  # green, then red for good: a regression for the author, not a flake
            outcome = "passed" if i < 20 else "failed"
            r = TestResult(provider="github", owner="o", repo="r", job_id=str(i), test_id=test_id, outcome=outcome)
            await agent_ctx.put(key=test_id.encode(), value=r.to_json())
    assert cap.values("actions") == []
    # not quarantined because the model judged it, not because learning crashed (the agent would have
    # dead-lettered every result): all 40 results learned, the quarantine state looked at and left alone
    assert cap.dead_letters() == []
    state = load_test(guard.ctx.tables.test_models.get(test_id.encode()))
    assert state.model is not None and state.model.runs == 40 and state.model.fails == 20
    assert state.quarantine.quarantined is False and state.quarantine.episode == 0


async def test_a_burst_across_repositories_is_one_incident(guard: Guard) -> None:
    from healing_guard.remediate.incidents import template_key

    cap = Capture(guard)
    agent = guard.agents["incidents"]
    template = "docker: Error response from daemon: Get <URL>: net/http: TLS handshake timeout"
    key = template_key(template)
    async with agent.test_context() as agent_ctx:
        for i in range(12):  # 12 jobs in 3 repositories within 4 minutes, then a replay of one of them
            s = {"template": template, "provider": "github", "owner": "acme", "repo": f"r{i % 3}",
                 "job_id": str(i), "attempt": 1, "category": "docker_registry", "ts": 1000.0 + 20 * i}
            await agent_ctx.put(key=key, value=orjson.dumps(s))
        await agent_ctx.put(key=key, value=orjson.dumps({**s, "ts": 1300.0}))
        # an hour later the same line again: a new burst is a new incident
        for i in range(5):
            s = {**s, "job_id": f"late{i}", "repo": f"r{i % 2}", "ts": 5000.0 + i}
            await agent_ctx.put(key=key, value=orjson.dumps(s))
    cmds = cap.values("actions")
    assert [c["action"] for c in cmds] == ["open_incident", "open_incident"]
    first = cmds[0]
    assert first["parameters"]["jobs"] == 5 and first["parameters"]["repositories"] == ["acme/r0", "acme/r1", "acme/r2"]
    assert cmds[0]["command_id"] != cmds[1]["command_id"]
    state = orjson.loads(guard.ctx.tables.incidents.get(key))
    assert state["open_id"] == cmds[1]["command_id"] and len(state["recent"]) <= 200
    assert cap.dead_letters() == []  # the replay and the rest of the burst opened nothing, without a crash


async def test_ingest_sends_each_finding_to_the_incidents_topic(guard: Guard) -> None:
    from healing_guard.remediate.incidents import template_key

    cap = Capture(guard)
    agent = guard.agents["ingest"]
    topic = guard.ctx.settings.topics
    async with agent.test_context() as agent_ctx:
        await put(agent_ctx, topic.logs, KEY, _chunk(0, ["x", "fatal: unable to access 'https://github.com/o/r.git/': "
                                                         "Could not resolve host: github.com"], eof=True))
        await put(agent_ctx, topic.jobs, KEY, _done(chunks=1))
    sent = cap.sent["incidents"]
    assert len(sent) == 1
    k, v = sent[0]
    sighting = orjson.loads(v)
    assert k == template_key(sighting["template"]) and "Could not resolve host" in sighting["template"]
    assert sighting["category"] == "network" and sighting["repo"] == "api"
    assert cap.dead_letters() == []


async def test_the_next_attempt_tells_whether_the_action_worked(guard: Guard) -> None:
    cap = Capture(guard)
    agent = guard.agents["ingest"]
    topic = guard.ctx.settings.topics

    def done(attempt: int, conclusion: str) -> bytes:
        return JobEvent(provider="gitlab", owner="platform", repo="api", job_id="77", job_name="build",
                        status="completed", conclusion=conclusion, exit_code=1, log_chunks=1, attempt=attempt,
                        started_at=1000.0, completed_at=1600.0).to_json()

    def chunk(attempt: int) -> bytes:
        return LogChunk(provider="gitlab", owner="platform", repo="api", job_id="77", seq=0, attempt=attempt,
                        lines=["ERROR: Could not install packages due to an OSError: [Errno 28] "
                               "No space left on device"], eof=True).to_json()

    async with agent.test_context() as agent_ctx:
        await put(agent_ctx, topic.logs, KEY, chunk(1))
        await put(agent_ctx, topic.jobs, KEY, done(1, "failure"))
        assert cap.values("actions")[0]["action"] == "cleanup_retry"
        await put(agent_ctx, topic.jobs, KEY, done(2, "success"))  # the retry went green
    state = orjson.loads(guard.ctx.tables.ledgers.get(b"ledger:0"))
    assert state["success"]["counts"]["disk_full|platform/api|cleanup_retry"] == [1.0, 0.0]
    assert len(cap.values("actions")) == 1 and cap.dead_letters() == []  # the green attempt commands nothing
