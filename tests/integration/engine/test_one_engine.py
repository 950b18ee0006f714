"""One engine: the same failed job judged by every front end gives the same diagnosis and action.

The same log goes through the worker's agents (chunks and completion event, Faust test_context), the
REST analysis (the worker's facts written to chDB, read back by the real FastAPI app), ``guard analyze
--json`` and ``PipelineGuard.analyze_failure`` + ``heal``; category, confidence, evidence lines and
action must agree. An integration test: it starts chDB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from schemathesis.python.asgi import get_client
from typer.testing import CliRunner

from healing_guard.cli import app as cli_app
from healing_guard.pipeline_guard import PipelineGuard
from healing_guard.rest import ApiKeys, create_app
from healing_guard.samples.generator import SampleJob, generate
from healing_guard.settings import Settings
from healing_guard.streams.worker import Guard, build_guard
from healing_guard.warehouse import FactWriter, fact_from_json
from healing_guard.warehouse.read import WarehouseReader
from tests.unit.agents.test_agents import Capture, put

pytestmark = pytest.mark.integration

#: a job of each kind whose fate differs between the front ends if any of them judged it alone
CATEGORIES = ("oom", "network", "rate_limit", "cache_corruption", "compilation_error", "dependency_resolution",
              "infra_runner_lost", "unknown")


def _pick() -> list[SampleJob]:
    jobs = [j for j in generate(n_jobs=300, seed=11) if j.expected_category and not j.flaky]
    out = []
    for cat in CATEGORIES:
        job = next((j for j in jobs if j.expected_category == cat and j.completed.attempt == 1), None)
        if job is not None:
            out.append(job)
    assert len(out) >= 6, "the sample generator no longer produces these categories"
    return out


JOBS = _pick()


def _log(job: SampleJob) -> str:
    return "\n".join(job.log_lines) + "\n"


async def _worker(job: SampleJob) -> tuple[dict[str, Any], dict[str, Any], list[bytes]]:
    s = Settings(broker_url="kafka://127.0.0.1:1", facts_enabled=False, test_grace_seconds=0.0, partitions=1,
                 app_id="one-engine")
    guard: Guard = build_guard(s)
    cap = Capture(guard)
    names = s.topics
    key = job.key.encode()
    async with guard.agents["ingest"].test_context() as ctx:
        for c in job.chunks:
            await put(ctx, names.logs, key, c.to_json())
        await put(ctx, names.jobs, key, job.completed.to_json())
    assert cap.sent.get("deadletter") is None, cap.values("deadletter")
    findings, actions = cap.values("findings"), cap.values("actions")
    assert len(findings) == 1 and len(actions) >= 1
    return findings[0], actions[0], [v for _, v in cap.sent["facts"]]


def _evidence(items: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(int(e["line"]), e["text"], e["pattern"]) for e in items]


@pytest.mark.parametrize("job", JOBS, ids=[j.expected_category or "" for j in JOBS])
async def test_every_front_end_gives_the_same_diagnosis_and_action(job: SampleJob, ch_client: Any, migrated: str,
                                                                   tmp_path: Path) -> None:
    done = job.completed
    minutes = done.duration_minutes
    finding, command, facts = await _worker(job)
    worker = (finding["category"], finding["confidence"], _evidence(finding["evidence"]), command["action"])

    # the REST analysis: what the worker stored, read back through the real app
    FactWriter(ch_client, migrated).write([fact_from_json(f) for f in facts])
    keys = ApiKeys(tmp_path / "keys.json")
    _, token = keys.create(["*"])
    reader = WarehouseReader(ch_client, migrated)
    with get_client(create_app(lambda: reader, keys=keys)) as client:
        res = client.get(f"/api/v1/repos/{done.owner}/{done.repo}/failures/{done.job_id}/analysis"
                         f"?provider={done.provider}",
                         headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 200, res.text
    body = res.json()
    rest = (body["category"], body["confidence"], _evidence(body["evidence"]), body["recommendations"][0]["action"])

    # guard analyze --json on the same log as a file
    path = tmp_path / "job.log"
    path.write_text(_log(job), encoding="utf-8")
    args = ["analyze", "--json", str(path), "--duration-minutes", repr(minutes)]
    if done.exit_code is not None:
        args += ["--exit-code", str(done.exit_code)]
    if done.conclusion == "timed_out":
        args += ["--conclusion", "timed_out"]
    out = CliRunner().invoke(cli_app, args, env={"GUARD_CONFIG": ""})
    assert out.exit_code == 0, out.output
    import orjson

    rep = orjson.loads(out.stdout.strip().splitlines()[-1])
    cli = (rep["category"], rep["confidence"], _evidence(rep["evidence"]), rep["action"])

    # the Python API
    guard = PipelineGuard(env={})
    failure = guard.analyze_failure(job_id=done.job_id, logs=_log(job), provider=done.provider,
                                    repo=f"{done.owner}/{done.repo}", exit_code=done.exit_code,
                                    duration_minutes=minutes, runner_size=done.runner_size,
                                    conclusion=done.conclusion or "failure")
    api = (failure.category, failure.confidence,
           [(e.line, e.text, e.pattern) for e in failure.evidence], guard.heal(failure).action)

    assert worker[3] == command["action"]
    assert rest == worker, f"REST {rest} != worker {worker}"
    assert cli == worker, f"guard analyze {cli} != worker {worker}"
    assert api == worker, f"PipelineGuard {api} != worker {worker}"
