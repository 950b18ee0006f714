"""Secrets never leave the guard: the corpus of fake secrets (tests/support/secrets_corpus.py) against the redactor,
then through every pure surface that emits text from logs, test results or webhooks: findings, commands,
facts, incidents, dead letters, the agents' outputs and tables, `guard analyze`, the Python API, the REST
API (over a real chDB warehouse: tests/integration/rest/test_rest_secrets.py), the webhook receiver,
`guard ingest junit` and the pytest plugin."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest

from healing_guard.patterns.tokenize import (
    REDACTED, redact, redact_bytes, redact_job, redact_lines, redact_test_result, tokenize, tokenize_lines,
)
from healing_guard.engine.core import Engine, dead_letter
from healing_guard.remediate import Ledger
from healing_guard.remediate.incidents import IncidentState
from healing_guard.flaky.quarantine import QuarantineState
from healing_guard.schemas import DeadLetter, JobEvent, LogChunk, TestResult
from healing_guard.settings import Settings
from healing_guard.warehouse.facts import fact_to_json, outcome_fact
from healing_guard.engine.window import JobWindow, Ready
from tests.support.secrets_corpus import CASES, NEGATIVES, Case, all_secrets, failing_lines, leaks, log_lines, pem_blocks
from tests.support.paths import FIXTURES

pytest_plugins = ["pytester"]

SECRETS = all_secrets()
NOW = 1_767_225_600.0


# --------------------------------------------------------------------------------------------------
# the redactor against the corpus
# --------------------------------------------------------------------------------------------------

def test_corpus_is_big_and_distinct() -> None:
    assert len(CASES) >= 60 and len(SECRETS) >= 120 and len(NEGATIVES) >= 30
    assert len(set(SECRETS)) == len(SECRETS)
    for s in SECRETS:  # no secret is a substring of a negative (the negative test would be meaningless)
        assert not any(s in n for n in NEGATIVES)


@pytest.mark.parametrize("case", [c for c in CASES if len(c.lines) == 1], ids=lambda c: c.name)
def test_redact_removes_every_single_line_secret(case: Case) -> None:
    line = case.lines[0]
    for out in (redact(line), tokenize(line), tokenize(f"2026-11-25T10:00:00.1234567Z {line}"),
                tokenize(f"\x1b[31m##[error]{line}\x1b[0m"), redact(json.dumps({"line": line}))):
        assert not [s for s in case.secrets if s in out], (case.name, out)
        assert REDACTED in out
    assert redact(redact(line)) == redact(line)  # idempotent


@pytest.mark.parametrize("case", pem_blocks(), ids=lambda c: c.name)
def test_private_key_blocks_go_whole(case: Case) -> None:
    lines = list(case.lines)
    # consecutive lines (a tail, a chunk): every line of the block, the short last body line included
    for out in (redact_lines(lines), tokenize_lines(lines), tokenize_lines([f"12:00:01 {x}" for x in lines]),
                redact_lines(["$ cat deploy_key", *lines, "Permission denied (publickey)."])):
        assert not leaks("\n".join(out)), case.name
    assert redact_lines(["$ cat k", *lines, "done"])[-1] == "done"  # the block ends at END
    # a tail that starts inside the key: the END marker reaches back over the base64 lines before it
    assert not leaks("\n".join(tokenize_lines(lines[2:])))
    # one text of many lines (a test failure message, a payload): BEGIN to END
    text = "assertion failed, key was:\n" + "\n".join(lines) + "\nend of message"
    out = redact(text)
    assert not leaks(out) and out.startswith("assertion failed") and out.endswith("end of message")
    # one line at a time, a body line of full PEM width is still recognised by its shape
    for body in lines[1:-1]:
        if len(body) >= 40:
            assert redact(body) == REDACTED and tokenize(f"2026-11-25T10:00:00Z {body}") == REDACTED
    assert redact(lines[0]) == REDACTED and redact(lines[-1]) == REDACTED


@pytest.mark.parametrize("line", NEGATIVES)
def test_ordinary_output_is_untouched(line: str) -> None:
    assert redact(line) == line
    assert redact_lines([line]) == [line]


def test_ordinary_logs_are_untouched() -> None:
    from healing_guard.bench.matcher import _sample_bytes

    lines = _sample_bytes(3, 11).decode().split("\n")
    changed = [(x, redact(x)) for x in lines if redact(x) != x]
    # the sample generator plants a few fake credentials on purpose (fake_secret_lines); nothing else changes
    assert all(REDACTED in y for _, y in changed)
    assert len(changed) <= 12, changed


def test_fast_path_returns_the_same_object() -> None:
    for line in ("collected 12 items; 3 passed", "x" * 200, "a/b/c/" * 20, "=" * 80):
        assert redact(line) is line


def test_redact_bytes_is_lossless_apart_from_the_secrets() -> None:
    junk = bytes(range(256))
    assert redact_bytes(junk) == (junk, False)
    line = CASES[0].lines[0].encode()
    raw = b"\xff\xfe\x80 " + line + b" \xc3\x28 tail"
    out, changed = redact_bytes(raw)
    assert changed and out.startswith(b"\xff\xfe\x80 ") and out.endswith(b" \xc3\x28 tail")
    assert not leaks(out) and out.replace(REDACTED.encode(), b"") in raw.replace(CASES[0].secrets[0].encode(), b"")
    # a whole malformed log chunk, lines as JSON strings (PEM bodies included)
    chunk = orjson.dumps({"provider": "github", "seq": "not a number", "lines": log_lines()})
    out, changed = redact_bytes(chunk)
    assert changed and not leaks(out)
    # the redacted payload is still the JSON it was: only values changed
    assert len(orjson.loads(out)["lines"]) <= len(log_lines())


# --------------------------------------------------------------------------------------------------
# the pure engine: findings, commands, facts, incidents, window state, test results, dead letters
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Settings(test_grace_seconds=0.0, chunk_grace_seconds=10.0, tail_lines=400, max_evidence=400,
                           incident_min_jobs=1, incident_min_repos=1, quarantine_threshold=0.01,
                           quarantine_release_runs=2))


def _chunk(seq: int, lines: list[str], eof: bool = False, job_id: str = "7") -> LogChunk:
    return LogChunk(provider="github", owner="acme", repo="web", job_id=job_id, seq=seq, lines=lines, eof=eof)


def _job(job_id: str = "7", **kw: Any) -> JobEvent:
    fields: dict[str, Any] = dict(job_name=f"deploy --token {CASES[0].secrets[0]}",
                      workflow=f"release GITHUB_TOKEN={CASES[5].secrets[0]}",
                      branch=f"fix/{CASES[12].secrets[0]}", url=f"https://ci:{CASES[37].secrets[0]}@ci.example.com/job",
                      runner_labels=["self-hosted", f"password={CASES[36].secrets[0]}"],
                      status="completed", conclusion="failure", exit_code=1, started_at=NOW - 600, completed_at=NOW)
    return JobEvent(provider="github", owner="acme", repo="web", job_id=job_id, **{**fields, **kw})


def _decide_job(engine: Engine, lines: list[str], job_id: str = "7") -> tuple[list[str], Ready]:
    """Feed a log in three chunks, the last first (held out of order), then the completion event.
    Returns every serialized window state on the way (what the changelog topic carries) and the Ready."""
    states: list[str] = []
    third = len(lines) // 3
    parts = [lines[:third], lines[third:2 * third], lines[2 * third:]]
    w = JobWindow(job_key=f"github/acme/web/{job_id}")
    for seq in (2, 0, 1):
        w, out = engine.chunk(w, _chunk(seq, parts[seq], eof=seq == 2, job_id=job_id), NOW)
        states.append(orjson.dumps(w.to_dict()).decode())
        assert not out
    w, out = engine.job_event(w, _job(job_id), NOW)
    states.append(orjson.dumps(w.to_dict()).decode())
    assert len(out) == 1 and isinstance(out[0], Ready)
    return states, out[0]


def test_raw_input_really_carries_the_secrets() -> None:
    """The end-to-end tests below would pass vacuously if the secrets never reached a matched line."""
    assert len(leaks("\n".join(failing_lines() + log_lines()))) == len(SECRETS)
    assert len(leaks(_job().to_json())) == 5


def test_engine_outputs_carry_no_secret(engine: Engine) -> None:
    lines = log_lines() + failing_lines()  # the whole corpus, PEM blocks and all, then the failures
    states, ready = _decide_job(engine, lines)
    for s in states:  # the window table's changelog: held chunks, tail, evidence, the job
        assert not leaks(s)
    assert '"pending":{"0"' not in states[0] and REDACTED in states[0]  # the held chunk was redacted
    assert len(ready.evidence) >= 40  # the failing lines became evidence
    ledger, decision = engine.decide(ready, Ledger(), NOW)
    finding, command = decision.finding.to_json().decode(), decision.command.to_json().decode()
    assert orjson.loads(finding)["category"] == "disk_full" and REDACTED in finding
    assert not leaks(finding) and not leaks(command)
    facts = [fact_to_json(f).decode() for f in decision.facts]
    assert len(facts) >= 3 and not leaks("\n".join(facts))
    sighting = engine.incident_sighting(decision.finding)
    assert sighting is not None and not leaks(orjson.dumps(sighting))
    cmd, fact = engine.incident(IncidentState(), sighting)
    assert cmd is not None and fact is not None
    assert not leaks(cmd.to_json()) and not leaks(fact_to_json(fact))
    assert not leaks(orjson.dumps(ready.tail)) and any(REDACTED in t for t in ready.tail)


def test_an_unknown_failure_signature_carries_no_secret(engine: Engine) -> None:
    # nothing matches: the signature comes from the tail, where the corpus is (the text model is off so
    # that the failure stays unknown: a category it names carries the same redacted evidence)
    import dataclasses

    engine = Engine(dataclasses.replace(engine.settings, text_model="off"), engine.matcher)
    states, ready = _decide_job(engine, ["something odd happened"] + log_lines(), job_id="8")
    _, decision = engine.decide(ready, Ledger(), NOW)
    assert decision.finding.category == "unknown"
    blob = decision.finding.to_json() + decision.command.to_json() + b"".join(map(fact_to_json, decision.facts))
    assert not leaks(blob) and not leaks("".join(states))


def test_closed_job_facts_carry_no_secret(engine: Engine) -> None:
    w = JobWindow(job_key="github/acme/web/9")
    w, out = engine.job_event(w, _job("9", conclusion="success"), NOW)
    facts = engine.closed_facts(out[0])
    assert not leaks(b"".join(map(fact_to_json, facts)))
    assert not leaks(redact_job(_job()).to_json())


def test_test_results_carry_no_secret(engine: Engine) -> None:
    from healing_guard.flaky import TestModel

    model: TestModel | None = None
    q = QuarantineState()
    out: list[bytes] = []
    tid = f"tests/test_login.py::test_token[{CASES[0].secrets[0]}]"
    outcomes = ["failed" if i % 3 == 1 else "passed" for i in range(30)] + ["passed"] * 4
    for i, outcome in enumerate(outcomes):
        r = TestResult(provider="github", owner="acme", repo="web", job_id=str(i), test_id=tid, outcome=outcome,
                       message="\n".join(log_lines()) if outcome == "failed" else None,
                       changed_files=[f"config/token={CASES[3].secrets[0]}"])
        assert leaks(r.to_json())
        r = redact_test_result(r)  # what the tests agent does first
        model, fact, risk = engine.learn_test(model, r)  # type: ignore[arg-type]
        out.append(fact_to_json(fact))
        if risk is not None:
            out.append(risk.to_json())
        cmd, qfact = engine.quarantine(q, model, r, now=NOW + i)
        if cmd is not None and qfact is not None:
            out += [cmd.to_json(), fact_to_json(qfact)]
    assert any(b"quarantine" in x for x in out)  # a command was made, so the test can fail
    assert not leaks(b"\n".join(out))
    assert not leaks(pickle.dumps(model))


def test_outcome_detail_is_redacted() -> None:
    from healing_guard.schemas import Outcome

    o = Outcome(command_id="c" * 32, job_key="github/acme/web/7", action="retry", status="failed",
                detail=f"GitHub answered 401 for Authorization: Bearer {CASES[25].secrets[0]}")
    assert not leaks(fact_to_json(outcome_fact(o)))


@pytest.mark.parametrize("case", [c for c in CASES if len(c.lines) == 1][:20], ids=lambda c: c.name)
def test_dead_letters_carry_no_secret(case: Case) -> None:
    raw = _chunk(0, [case.lines[0]]).to_json().replace(b'"seq":0', b'"seq":"zero"')  # malformed
    dl = dead_letter("ci.logs", raw, f"bad record: {case.lines[0]!r}", key=case.lines[0].encode(), offset=3)
    blob = dl.to_json()
    assert not leaks(blob) and not leaks(base64.b64decode(dl.original_b64))
    assert dl.redacted and dl.original_size == len(raw)
    assert DeadLetter.from_json(blob).redacted


def test_a_clean_dead_letter_keeps_its_exact_bytes() -> None:
    raw = b'\xff{"seq": "x", "lines": ["3 passed"]}'
    dl = dead_letter("ci.logs", raw, "not JSON")
    assert base64.b64decode(dl.original_b64) == raw and not dl.redacted


def test_a_whole_malformed_chunk_dead_letters_without_secrets() -> None:
    raw = orjson.dumps({"provider": "github", "owner": "acme", "repo": "web", "job_id": "7", "seq": -1,
                        "lines": log_lines() + failing_lines()})
    dl = dead_letter("ci.logs", raw, "seq: must be >= 0", field_name="seq")
    assert dl.redacted and not leaks(base64.b64decode(dl.original_b64)) and not leaks(dl.to_json())


# --------------------------------------------------------------------------------------------------
# the agents (real agent code and tables through Faust's test_context, no broker)
# --------------------------------------------------------------------------------------------------

async def test_agents_send_and_store_no_secret() -> None:
    from healing_guard.streams.worker import build_guard
    from tests.unit.agents.test_agents import Capture, put

    s = Settings(broker_url="kafka://127.0.0.1:1", facts_enabled=False, test_grace_seconds=0.0, partitions=1,
                 app_id="unit-secrets", max_evidence=400, tail_lines=400)
    guard = build_guard(s)
    cap = Capture(guard)
    t = s.topics
    key = b"github/acme/web/7"
    lines = log_lines() + failing_lines()
    async with guard.agents["ingest"].test_context() as ctx:
        await put(ctx, t.logs, key, _chunk(1, lines[100:], eof=True).to_json())  # held out of order
        await put(ctx, t.logs, key, _chunk(0, lines[:100]).to_json())
        bad = _chunk(2, lines).to_json().replace(b'"seq":2', b'"seq":"two"')
        await put(ctx, t.logs, key, bad)  # malformed: dead-lettered with its (redacted) bytes
        await put(ctx, t.jobs, key, _job().to_json())
    tid = f"tests/test_login.py::test_token[{CASES[0].secrets[0]}]"
    async with guard.agents["tests"].test_context() as ctx:
        for i, outcome in enumerate(["failed", "passed", "failed"]):
            r = TestResult(provider="github", owner="acme", repo="web", job_id="7", test_id=tid, outcome=outcome,
                           message="\n".join(log_lines()) if outcome == "failed" else None)
            await ctx.put(key=tid.encode(), value=r.to_json())
        await ctx.put(key=b"not-the-id", value=TestResult(provider="github", owner="acme", repo="web", job_id="7",
                                                          test_id=tid, outcome="failed").to_json())
    async with guard.agents["incidents"].test_context() as ctx:
        for _, v in cap.sent.get("incidents", []):
            await ctx.put(key=b"k", value=v)
    sent = {name: b"\n".join(v for _, v in msgs) + b"\n".join(k or b"" for k, _ in msgs)
            for name, msgs in cap.sent.items()}
    assert {"findings", "actions", "deadletter", "facts", "test_risk", "incidents"} <= set(sent)
    for name, blob in sent.items():
        assert not leaks(blob), name
    letters = [DeadLetter.from_dict(d) for d in cap.values("deadletter")]
    assert letters and any(d.redacted for d in letters)
    # only the two bad messages: no agent crashed (and dead-lettered) on a message carrying secrets
    assert [d.source_topic for d in letters] == [t.logs, t.tests]
    assert not any(d.reason.startswith("internal error") for d in letters)
    for d in letters:
        assert not leaks(base64.b64decode(d.original_b64))
    tables = guard.ctx.tables
    for table in (tables.windows, tables.test_models, tables.incidents):
        for k, v in table.items():
            assert not leaks(k) and not leaks(v if isinstance(v, bytes) else pickle.dumps(v))


# --------------------------------------------------------------------------------------------------
# guard analyze, the Python API, the REST API
# --------------------------------------------------------------------------------------------------

def _log_text() -> str:
    return "\n".join(log_lines() + failing_lines() + log_lines()) + "\n"


def test_guard_analyze_prints_no_secret(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from healing_guard.cli import app

    f = tmp_path / "job.log"
    f.write_text(_log_text())
    odd = tmp_path / "odd.log"
    odd.write_text("something odd\n" + "\n".join(log_lines()) + "\n")
    runner = CliRunner()
    for args in (["analyze", "--json", str(f), str(odd)], ["analyze", str(f), str(odd)]):
        res = runner.invoke(app, args, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert "disk_full" in res.output and not leaks(res.output)
    res = runner.invoke(app, ["analyze", "--json"], input=_log_text(), catch_exceptions=False)
    assert res.exit_code == 0 and not leaks(res.output) and REDACTED in res.output


def test_python_api_analyze_failure_returns_no_secret() -> None:
    from healing_guard.pipeline_guard import PipelineGuard

    guard = PipelineGuard(env={})
    for logs in (_log_text(), _log_text().encode(), log_lines() + failing_lines()):
        f = guard.analyze_failure(job_id="7", logs=logs, repo="acme/web", exit_code=1,
                                  job_name=f"deploy --token {CASES[0].secrets[0]}",
                                  failed_tests=[f"tests/x.py::test_y[{CASES[1].secrets[0]}]"])
        assert f.category == "disk_full" and f.evidence
        blob = repr(f) + repr(f.job) + repr(f.tail) + repr(f.evidence) + repr(f.failed_tests) + str(f.signature)
        assert not leaks(blob)


def test_rest_redacts_what_the_warehouse_returns() -> None:
    """Rows written before a rule existed (or by another writer) are redacted on the way out too."""
    from healing_guard.rest.app import redact_tree

    row = {"evidence": [{"line": 1, "text": CASES[0].lines[0]}], "n": 3, "ok": True, "none": None,
           "tests": (CASES[1].lines[0],), "clean": ["3 passed"]}
    out = redact_tree(row)
    assert not leaks(orjson.dumps(out)) and out["n"] == 3 and out["clean"] is row["clean"]
    same = {"a": ["3 passed"], "b": 1}
    assert redact_tree(same) is same


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer hg_000000000000_" + "x" * 43}])
def test_rest_401_help_text_keeps_its_placeholders(tmp_path: Path, headers: dict[str, str]) -> None:
    """The API's error details go through the redactor; its help text names ``<key>``, which is no key."""
    from schemathesis.python.asgi import get_client

    from healing_guard.rest import ApiKeys, create_app

    app: Any = create_app(lambda: None, keys=ApiKeys(tmp_path / "api-keys.json"))
    with get_client(app) as c:
        r = c.get("/api/v1/repos/acme/web/healing/status", headers=headers)
    assert r.status_code == 401
    detail = r.json()["detail"]
    assert "send `Authorization: Bearer <key>` or `X-API-Key: <key>` (create one with" in detail, detail
    assert REDACTED not in detail


# --------------------------------------------------------------------------------------------------
# the producers: webhook receiver (ci.jobs), guard ingest junit and the pytest plugin (ci.tests)
# --------------------------------------------------------------------------------------------------

def test_guard_forward_completion_event_carries_no_secret() -> None:
    """`guard forward` puts its completion event on ci.jobs: a job name with a secret in it is redacted."""
    from healing_guard.platforms.forward import completion

    names = [c.lines[0][:300] for c in CASES if len(c.lines) == 1]
    for name in names:
        ev = completion(provider="github", owner="acme", repo="web", job_id="1", attempt=1, conclusion="failure",
                        exit_code=1, chunks=1, job_name=name, run_id="r1", now=NOW)
        assert not leaks(ev.to_json()), (name, ev.job_name)
    assert any(REDACTED in completion(provider="github", owner="acme", repo="web", job_id="1", attempt=1,
                                      conclusion="failure", exit_code=1, chunks=1, job_name=n, run_id=None,
                                      now=NOW).job_name for n in names)


async def test_webhook_receiver_sends_no_secret() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from healing_guard.platforms.receiver import make_app

    sent: list[tuple[str, bytes, bytes]] = []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        sent.append((topic, key, value))

    fix = FIXTURES / "webhooks" / "github_workflow_job_completed_failure.json"
    payload = orjson.loads(fix.read_bytes())
    payload["workflow_job"]["name"] = f"deploy GITHUB_TOKEN={CASES[0].secrets[0]}"
    payload["workflow_job"]["head_branch"] = f"hotfix/password={CASES[36].secrets[0]}"
    payload["workflow_job"]["labels"] = ["ubuntu-latest", f"token={CASES[5].secrets[0]}"]
    body = orjson.dumps(payload)
    broken = orjson.dumps({"workflow_job": {"name": CASES[1].lines[0]}, "action": "completed"})
    app = make_app(send, jobs_topic="ci.jobs", deadletter_topic="guard.deadletter", secrets={"github": "s3cret"})
    c = TestClient(TestServer(app))
    await c.start_server()
    try:
        for i, b in enumerate((body, broken)):
            sig = "sha256=" + hmac.new(b"s3cret", b, hashlib.sha256).hexdigest()
            r = await c.post("/webhooks/github", data=b, headers={
                "X-Hub-Signature-256": sig, "X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": f"d-{i}",
                "Content-Type": "application/json"})
            assert r.status in (202, 400)
            assert not leaks(await r.read())
    finally:
        await c.close()
    topics = {t for t, _, _ in sent}
    assert topics == {"ci.jobs", "guard.deadletter"}, sent
    for topic, k, v in sent:
        assert not leaks(k + v), topic
        if topic == "guard.deadletter":
            assert not leaks(base64.b64decode(orjson.loads(v)["original_b64"]))
    job = JobEvent.from_json(next(v for t, _, v in sent if t == "ci.jobs"))
    assert REDACTED in job.job_name and job.job_name.startswith("deploy GITHUB_TOKEN=")


def _junit_xml(tmp_path: Path) -> Path:
    from xml.sax.saxutils import escape, quoteattr

    cases = []
    for i, c in enumerate(CASES):
        body = escape("\n".join(c.lines))
        param = c.lines[0]  # a parametrized id quoting the line
        cases.append(f'<testcase classname="tests.test_x" name={quoteattr(f"test_{i}[{param}]")} time="0.1">'
                     f'<failure message={quoteattr(c.lines[0])}>{body}</failure></testcase>')
    f = tmp_path / "report.xml"
    f.write_text(f'<testsuite name="s" tests="{len(cases)}">{"".join(cases)}</testsuite>')
    return f


def test_guard_ingest_junit_sends_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from healing_guard.cli import app

    report = _junit_xml(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", "junit", str(report), "--provider", "github", "--repo", "acme/web",
                              "--job-id", "7", "--dry-run"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = [orjson.loads(x) for x in res.stdout.splitlines()]
    assert len(rows) == len(CASES) and all(r["outcome"] == "failed" for r in rows)
    assert not leaks(res.stdout)

    sent: list[tuple[int, bytes, bytes]] = []

    class Producer:  # what leaves the process, without a broker (tests/integration: the real one)
        def __init__(self, **kw: Any) -> None: ...
        async def start(self) -> None: ...
        async def stop(self) -> None: ...

        async def partitions_for(self, topic: str) -> set[int]:
            return {0, 1, 2}

        async def send(self, topic: str, key: bytes, value: bytes, partition: int) -> Any:
            sent.append((partition, key, value))
            import asyncio
            f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            f.set_result(None)
            return f

    import aiokafka
    from healing_guard.schemas.test_batch import decode_tests, partition_of

    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", Producer)
    res = runner.invoke(app, ["ingest", "junit", str(report), "--provider", "github", "--repo", "acme/web",
                              "--job-id", "7", "--broker", "kafka://127.0.0.1:1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert 1 <= len(sent) <= 3  # one batch per partition
    got = []
    for p, k, v in sent:
        assert not leaks(k + v)
        results = decode_tests(v, k).results  # the key is the batch's first (redacted) test id
        assert {partition_of(r.test_id.encode(), 3) for r in results} == {p}  # the redacted id's partition
        got.extend(results)
    assert len(got) == len(CASES)


def test_pytest_plugin_results_carry_no_secret(pytester: pytest.Pytester) -> None:
    secret = CASES[0].secrets[0]
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.parametrize("tok", ["{secret}"])
        def test_login(tok):
            assert tok == "{CASES[1].secrets[0]}", "{CASES[30].lines[0]}"
    """)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    out = pytester.path / "results.jsonl"
    res = pytester.runpytest("-p", "healing_guard.pytest_plugin", "--guard-output", str(out), "--guard-provider",
                             "github", "--guard-repo", "acme/web", "--guard-job-id", "7", "-p", "no:cacheprovider")
    res.assert_outcomes(failed=1)
    text = out.read_text()
    assert "test_login" in text and not leaks(text)


@pytest.mark.parametrize(("line", "want"), [
    ('mysql -u root -p"$MYSQL_ROOT_PASSWORD" -e "select 1"', 'mysql -u root -p"$MYSQL_ROOT_PASSWORD" -e "select 1"'),
    ("DB_PASSWORD=${DB_PASSWORD:?missing}", "DB_PASSWORD=${DB_PASSWORD:?missing}"),
    ('curl -H "Authorization: Bearer $API_TOKEN" https://x', 'curl -H "Authorization: Bearer $API_TOKEN" https://x'),
    ("docker login -u ci -p *** registry", "docker login -u ci -p *** registry"),
    ("token=$TOKEN password=hunter2hunter2", "token=$TOKEN password=[REDACTED]"),
    # not a variable reference: a password that starts with '$'
    ("mysql -u root -p$ecretPass1 -e x", "mysql -u root -p[REDACTED] -e x"),
    ("DB_PASSWORD=$3cr3t-value", "DB_PASSWORD=[REDACTED]"),
])
def test_variable_references_and_platform_masks_are_not_secrets(line: str, want: str) -> None:
    assert redact(line) == want


@pytest.mark.parametrize("line", [
    "no API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>` (create one with `guard api-keys create`)",
    'curl -H "Authorization: Bearer <token>" https://api.example.com',
    "Authorization: Bearer <your-token>",
    "Authorization: token YOUR_TOKEN",
    'api_key: "<API_KEY>"',
    "X-API-Key: <API_KEY>",
    "export NPM_TOKEN=YOUR_NPM_TOKEN",
    "GITLAB_TOKEN=your-gitlab-token",
    "token={token}",
    "url = f'https://x/?token={}'",
    "password: <your password here>",
    "GITHUB_TOKEN: {{ secrets.GITHUB_TOKEN }}",
    "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
    'curl -H "Authorization: Bearer {{ token }}" https://x',
    "openssl rsa -passin pass:<passphrase> -in key.pem",
    "echo <token> | docker login ghcr.io -u ci --password-stdin",
    "token=$(cat /run/secrets/token)",
])
def test_placeholders_are_not_secrets(line: str) -> None:
    """Help text, docs and templates show where a secret goes: ``<key>``, ``{token}``, ``{{ secrets.X }}``,
    ``YOUR_TOKEN``. They are put back like variable references (``_keep_references``)."""
    assert redact(line) == line
    assert tokenize(line) == line


_FAKE = "aZ3kq9Lm2Xp8Rt5Vw1Yc7Nb4Hd6Jf0Gs"  # random-looking, in no provider's shape


@pytest.mark.parametrize(("line", "secret"), [
    # a secret in a placeholder's brackets is still a secret
    ("Authorization: Bearer <ghp_" + "a1B2" * 9 + ">", "a1B2" * 9),
    ("Authorization: Bearer <AKIA" + "Q7X2" * 4 + ">", "Q7X2" * 4),
    (f"Authorization: Bearer <{_FAKE}>", _FAKE),
    (f"token={{{_FAKE}}}", _FAKE),
    (f"token=your-token-{_FAKE}", _FAKE),
    # a placeholder's shape with more after it, or a case mix a password has
    ("Authorization: Bearer <key>hunter2hunter2hunter2", "hunter2hunter2"),
    ("password=YOUR_PASSWORDhunter2", "hunter2"),
    ("password=Your_Pass_1", "Your_Pass_1"),
])
def test_placeholder_shapes_do_not_hide_secrets(line: str, secret: str) -> None:
    out = redact(line)
    assert secret not in out and REDACTED in out, out
