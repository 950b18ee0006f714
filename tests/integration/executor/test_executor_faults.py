"""The real `guard executor` process on real Kafka against CI APIs that fail: 503, 429 with Retry-After, a
stalled answer (read timeout) for a call safe to repeat and for one that is not, duplicate commands, and a
SIGKILL while a platform holds a request -- then a restart. Every action runs on the platform at most
once (exactly once unless the kill interrupted it) and every command gets exactly one outcome message."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from healing_guard.schemas import Command, Outcome
from healing_guard.settings import load_settings
from healing_guard.streams.topics import ensure_topics

from tests.support.fake_apis import Answer, FakeApis
from tests.integration.helpers import collect, produce

pytestmark = pytest.mark.integration

TIMEOUT = 2.0  # GUARD_EXECUTOR_TIMEOUT_SECONDS
GH = "/repos/acme/shop/actions/jobs/{}/rerun"
GL = "/api/v4/projects/acme%2Fshop/jobs/{}/retry"
JK = "/job/acme/job/shop/buildWithParameters"


def start_executor(bootstrap: str, prefix: str, api_url: str, data_dir: Path, log: Path,
                   *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update({"GUARD_TOPIC_PREFIX": prefix, "GUARD_APP_ID": prefix.rstrip("."), "GUARD_LOG_LEVEL": "info",
                "GUARD_METRICS_PORT": "0", "NO_PROXY": "127.0.0.1,localhost",
                "GUARD_GITHUB_TOKEN": "ghs_faulttoken0123456789", "GUARD_GITHUB_API_URL": api_url,
                "GUARD_GITLAB_TOKEN": "glpat-faulttoken", "GUARD_GITLAB_URL": api_url,
                "GUARD_JENKINS_URL": api_url, "GUARD_JENKINS_USER": "bot", "GUARD_JENKINS_TOKEN": "jenkinstoken0",
                "GUARD_EXECUTOR_TIMEOUT_SECONDS": str(TIMEOUT), "GUARD_EXECUTOR_MAX_ATTEMPTS": "4"})
    env.pop("GUARD_CONFIG", None)
    return subprocess.Popen([sys.executable, "-m", "healing_guard.cli", "executor", "--live", "--allow-unsigned",
                             "--broker", f"kafka://{bootstrap}", "--data-dir", str(data_dir), *extra],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


async def test_executor_faults_and_sigkill_never_run_a_command_twice(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"xf{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix,
                             app_id=prefix.rstrip("."), partitions=1)  # one partition: a known order
    await ensure_topics(settings)

    def command(n: int, provider: str) -> Command:
        return Command(provider=provider, owner="acme", repo="shop", job_id=str(n),  # type: ignore[arg-type]
                       command_id=f"{prefix}{n}", attempt=1, action="retry", reason="r", category="network",
                       confidence=0.9)

    c = {1: command(1, "github"),   # 503, then 201
         2: command(2, "gitlab"),   # 429 Retry-After: 1, then 201
         3: command(3, "github"),   # done, answer stalled past the timeout: repeat refused "already running"
         4: command(4, "jenkins"),  # done, answer stalled: not safe to repeat -> failed, not repeated
         5: command(5, "github"),   # done, answer held while the executor is SIGKILLed
         6: command(6, "gitlab"),   # after the restart: 201
         7: command(7, "github")}   # after the restart: 201
    path = {1: GH.format(1), 2: GL.format(2), 3: GH.format(3), 4: JK, 5: GH.format(5), 6: GL.format(6),
            7: GH.format(7)}
    order = [1, 2, 3, 4, 1, 5, 6, 2, 5, 6, 7]  # 1, 2, 5 and 6 twice: the duplicates
    with FakeApis(stateful=True) as api:
        api.script(path[1], Answer(503, b'{"message":"Service Unavailable"}'))
        api.script(path[2], Answer(429, b'{"message":"429 Too Many Requests"}', {"Retry-After": "1"}))
        api.script(path[3], Answer(201, delay=TIMEOUT + 1.5))
        api.script(path[4], Answer(201, b"", {"Location": "http://jenkins.local/queue/item/7/"}, delay=TIMEOUT + 1.5))
        api.script(path[5], Answer(201, delay=120))
        await produce(kafka_bootstrap, prefix, [("guard.actions", c[n].job_key.encode(), c[n].to_json())
                                                for n in order])
        data, log = tmp_path / "executor", tmp_path / "executor.log"
        first = start_executor(kafka_bootstrap, prefix, api.url, data, log)
        try:
            # no clock of its own: a hang is stopped by the suite's per-test timeout
            while path[5] not in [r.path for r in api.requests]:  # the platform holds command 5's request
                assert first.poll() is None, log.read_text()[-3000:]
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
        finally:
            first.kill()  # SIGKILL
            first.wait(10)
        before_kill = Counter(r.path for r in api.requests)

        second = start_executor(kafka_bootstrap, prefix, api.url, data, log, "--once")
        try:
            rc = await asyncio.to_thread(second.wait, 50)
        except subprocess.TimeoutExpired:
            second.kill()
            raise AssertionError(log.read_text()[-3000:]) from None
        assert rc == 0, log.read_text()[-3000:]
        requests = Counter(r.path for r in api.requests)
        executed = dict(api.executed)

    records = await collect(kafka_bootstrap, settings.topics.outcomes, 7, 20, settle=1.0)
    outcomes = [Outcome.from_json(r.value) for r in records]
    per_command = Counter(o.command_id for o in outcomes)
    by_id = {o.command_id: o for o in outcomes}

    # the platform carried each action out once -- the interrupted one too (before the kill), never again
    assert executed == {path[n]: 1 for n in c}, executed
    # and was asked: 1 and 2 twice (503 / 429, then 201), 3 twice (timeout, then "already running"),
    # 4 once (timeout, not repeated), 5 once (the kill; not asked again after the restart), 6 and 7 once
    assert requests == {path[1]: 2, path[2]: 2, path[3]: 2, path[4]: 1, path[5]: 1, path[6]: 1, path[7]: 1}, requests
    assert before_kill == {path[1]: 2, path[2]: 2, path[3]: 2, path[4]: 1, path[5]: 1}, before_kill
    # exactly one outcome message per command, duplicates and redelivery included
    assert per_command == {c[n].command_id: 1 for n in c}, per_command
    o = {n: by_id[c[n].command_id] for n in c}
    assert o[1].status == "succeeded" and o[1].http_status == 201
    assert o[2].status == "succeeded" and "after waiting 1 s" in o[2].detail
    assert o[3].status == "succeeded" and "went through on an earlier attempt that got no answer" in o[3].detail
    assert o[4].status == "unknown" and "it may have gone through: not repeated, so it cannot run twice" in o[4].detail
    assert "GUARD_COMMAND_ID=" + c[4].command_id in o[4].detail
    assert o[5].status == "unknown" and o[5].detail.startswith("interrupted: the executor stopped while carrying")
    assert "/acme/shop/runs/5" in o[5].detail  # where to check
    assert o[6].status == o[7].status == "succeeded"
    text = log.read_text()
    assert "ghs_faulttoken0123456789" not in text and "jenkinstoken0" not in text
