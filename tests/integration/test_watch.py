"""``guard watch`` on real Apache Kafka: the real CLI reads what the worker, the executor and the guard's
dead-letter path put on their topics and prints one line per event, filtered by repository, category and
action, or as JSON; a forged command on a signed install is marked as the executor's gate would refuse it."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from healing_guard.engine.core import dead_letter
from healing_guard.schemas import BudgetSnapshot, Command, Evidence, Finding, Outcome
from healing_guard.settings import load_settings
from healing_guard.signing import sign_headers

pytestmark = pytest.mark.integration

GUARD = Path(sys.executable).parent / "guard"
KEY = "watch-test-command-key-0123456789"


def finding(repo: str, job: str, category: str) -> Finding:
    return Finding(provider="github", owner="acme", repo=repo, job_id=job, finding_id=f"f{job}", attempt=1,
                   category=category, confidence=0.93, ts=1_764_000_000.0,
                   evidence=[Evidence(line=12, text="npm ERR! code ECONNRESET", pattern="npm.network")])


def command(repo: str, job: str, action: str, category: str, **kw: object) -> Command:
    return Command(provider="github", owner="acme", repo=repo, job_id=job, command_id=f"c{job}{action}", attempt=1,
                   action=action, reason=f"why {action}", category=category, confidence=0.93,
                   estimated_cost_usd=0.16, ts=1_764_000_001.0, **kw)  # type: ignore[arg-type]


def watch(bootstrap: str, prefix: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    r = subprocess.run([str(GUARD), "watch", "--broker", f"kafka://{bootstrap}", "--topic-prefix", prefix,
                        "--from-beginning", "--idle-timeout", "20", *args], capture_output=True, text=True,
                       timeout=120, env={"PATH": "/usr/bin:/bin", "GUARD_CONFIG": "", **(env or {})})
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


async def test_watch_prints_each_event_and_filters(kafka_bootstrap: str, tmp_path: Path) -> None:
    from healing_guard.streams.topics import ensure_topics

    prefix = f"watch{uuid.uuid4().hex[:8]}."
    s = load_settings(None, env={"GUARD_COMMAND_KEY": KEY}, broker_url=f"kafka://{kafka_bootstrap}",
                      topic_prefix=prefix, partitions=1)
    await ensure_topics(s)
    t = s.topics
    budget = command("web", "1", "notify_budget", "budget", parameters={"scope": "daily", "level": 0.8},
                     budget=BudgetSnapshot(day="2026-12-07", spent_usd=160.0, daily_budget_usd=200.0,
                                           repo_spent_usd=20.0, repo_budget_usd=50.0, job_retries=0,
                                           max_retries_per_job=2))
    retry = command("web", "1", "retry_backoff", "network")
    forged = command("api", "2", "retry", "network")
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await p.start()
    try:
        await p.send_and_wait(t.findings, key=b"k1", value=finding("web", "1", "network").to_json())
        await p.send_and_wait(t.actions, key=b"k1", value=retry.to_json(),
                              headers=sign_headers(s, retry.to_json()))
        await p.send_and_wait(t.actions, key=b"k1", value=budget.to_json(),
                              headers=sign_headers(s, budget.to_json()))
        await p.send_and_wait(t.findings, key=b"k2", value=finding("api", "2", "oom").to_json())
        await p.send_and_wait(t.actions, key=b"k2", value=forged.to_json())  # unsigned: not the guard's
        await p.send_and_wait(t.outcomes, key=b"k1", value=Outcome(
            command_id=retry.command_id, job_key=retry.job_key, action="retry_backoff", status="succeeded",
            detail="re-run requested", http_status=201, ts=1_764_000_002.0).to_json())
        dl = dead_letter(t.jobs, b"{not json", "malformed JSON at byte 1")
        await p.send_and_wait(t.deadletter, key=b"x", value=dl.to_json())
    finally:
        await p.stop()

    env = {"GUARD_COMMAND_KEY": KEY}
    lines = watch(kafka_bootstrap, prefix, "--limit", "7", env=env)
    assert len(lines) == 7, lines
    text = "\n".join(lines)
    assert "finding  github/acme/web/1 #1  network (0.93) | npm ERR! code ECONNRESET" in text
    assert "command  github/acme/web/1 #1  retry_backoff $0.16 (network, 0.93): why retry_backoff" in text
    assert "alert    github/acme/web/1 #1  notify_budget" in text
    assert "outcome  github/acme/web/1  retry_backoff succeeded HTTP 201: re-run requested" in text
    assert "malformed JSON at byte 1" in text
    forged_line = next(x for x in lines if "github/acme/api/2" in x and "retry" in x)
    assert "REFUSED by the executor's gate" in forged_line
    assert not any("REFUSED" in x for x in lines if "github/acme/web/1" in x)

    # each filter up to its count (--limit; the idle timeout is a hang guard): the events it must skip come
    # before and between the ones it keeps, so a filter that let them through would show them here
    only_web = watch(kafka_bootstrap, prefix, "--repo", "acme/web", "--limit", "4", env=env)
    assert len(only_web) == 4 and all("acme/web" in x for x in only_web), only_web
    only_oom = watch(kafka_bootstrap, prefix, "--category", "oom", "--limit", "1", env=env)
    assert len(only_oom) == 1 and "github/acme/api/2" in only_oom[0]
    alerts = [json.loads(x) for x in watch(kafka_bootstrap, prefix, "--action", "notify_budget", "--json",
                                           "--limit", "1", env=env)]
    assert [(a["kind"], a["record"]["action"], a["record"]["parameters"]["level"]) for a in alerts] == [
        ("alert", "notify_budget", 0.8)]
