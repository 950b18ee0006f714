"""`guard api` as a user runs it: a real process over a chDB warehouse holding the hand-worked facts of
test_roi.py, heal requests onto real Kafka, the SDK and a Prometheus scrape against it.

chDB allows one process per data directory, so the facts are written by a child process that exits
before `guard api` opens the directory.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from healing_guard import GuardClient
from healing_guard.brokers import free_port
from healing_guard.schemas import Command
from healing_guard.sdk import GuardAPIError
from healing_guard.settings import load_settings
from healing_guard.streams.topics import ensure_topics

from tests.integration.helpers import collect
from tests.support.paths import ROOT
from tests.support.servers import stop, wait_healthy

# one worker runs the whole module under `pytest -n 2 --dist loadgroup` (its fixture starts a server)
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("test_api_live")]
pytest.importorskip("chdb", reason="chDB is the [embedded] extra")

DB = "guard_live"
SHA = "0123456789abcdef0123456789abcdef01234567"


def directive_facts() -> list[Any]:
    """A matrix job of run 777 that the guard re-ran a moment ago with its flaky tests one at a time, and a
    job of the same run re-run plainly (no directive)."""
    from healing_guard.schemas import JobEvent
    from healing_guard.warehouse import command_fact, job_run_fact

    now = time.time()
    out = []
    for job_id, name, action, params in (
            ("501", "test (3.11)", "rerun_sequential", {"parallelism": 1, "failed_tests_only": True,
                                                         "tests": ["tests/test_db.py::test_pool"]}),
            ("502", "lint", "retry", {})):
        ev = JobEvent(provider="github", owner="acme", repo="web", job_id=job_id, job_name=name, status="completed",
                      conclusion="failure", run_id="777", head_sha=SHA, started_at=now - 120, completed_at=now - 60)
        out.append(job_run_fact(ev, cost_usd=0.01))
        out.append(command_fact(Command(provider="github", owner="acme", repo="web", job_id=job_id,
                                        command_id=f"dir-{job_id}", attempt=1, action=action, reason="r",
                                        category="test_failure", confidence=0.9, parameters=params, run_id="777",
                                        ts=now - 30)))
    return out


@pytest.fixture(scope="module")
def live_api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("live_api")
    dsn = f"chdb://{tmp / 'chdb'}"
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from healing_guard.warehouse import FactWriter, connect, migrate
        from tests.integration.warehouse.test_roi import FACTS, OUTCOME
        from tests.integration.rest.test_api_live import directive_facts
        c = connect({dsn!r})
        migrate(c, {DB!r})
        FactWriter(c, {DB!r}).write([*FACTS, OUTCOME, *directive_facts()])
        c.close()
        """)], cwd=ROOT, check=True, timeout=120)
    prefix = f"live{uuid.uuid4().hex[:6]}."
    asyncio.run(ensure_topics(load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix)))
    env = {**os.environ, "GUARD_TOPIC_PREFIX": prefix, "GUARD_DATA_DIR": str(tmp)}
    guard = [sys.executable, "-m", "healing_guard.cli"] if (ROOT / "healing_guard" / "__main__.py").exists() \
        else [str(Path(sys.executable).parent / "guard")]
    keys = {}
    for name, scope in (("web", ["--repo", "acme/web"]), ("api", ["--repo", "acme/api"])):
        res = subprocess.run([*guard, "api-keys", "create", *scope], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=60, check=True)
        keys[name] = res.stdout.strip()
    port = free_port()
    log = (tmp / "api.log").open("wb")
    proc = subprocess.Popen([*guard, "api", "--port", str(port), "--broker", f"kafka://{kafka_bootstrap}",
                             "--clickhouse-dsn", dsn, "--database", DB], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base + "/health", proc, tmp / "api.log")
        yield {"base": base, "keys": keys, "prefix": prefix, "bootstrap": kafka_bootstrap, "log": tmp / "api.log"}
    finally:
        stop(proc)
        log.close()


def _directive_step(live_api: dict[str, Any], tmp_path: Path, key: str, job: str,
                    attempt: str = "2") -> subprocess.CompletedProcess[str]:
    """`guard directive apply` as a re-run GitHub job's first step runs it."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "GITHUB_ACTIONS": "true",
           "GITHUB_REPOSITORY": "acme/web", "GITHUB_RUN_ID": "777", "GITHUB_RUN_ATTEMPT": attempt,
           "GITHUB_SHA": SHA, "GITHUB_JOB": job, "GITHUB_ENV": str(tmp_path / "github_env"),
           "GUARD_API_URL": live_api["base"], "GUARD_API_KEY": key}
    return subprocess.run([sys.executable, "-m", "healing_guard.cli", "directive", "apply", "--out-dir",
                           str(tmp_path / ".guard")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_rerun_job_obtains_its_directive_from_the_api(live_api: dict[str, Any], tmp_path: Path) -> None:
    out = _directive_step(live_api, tmp_path, live_api["keys"]["web"], "test")  # matrix "test (3.11)"
    assert out.returncode == 0, out.stderr
    env = dict(ln.split("=", 1) for ln in (tmp_path / "github_env").read_text().splitlines())
    assert env["GUARD_DIRECTIVE"] == "dir-501" and env["GUARD_SEQUENTIAL"] == "true"
    assert Path(env["GUARD_TESTS_FILE"]).read_text() == "tests/test_db.py::test_pool\n"
    # the plain re-run of the same run has none; nor has the attempt after the next one; nor a key of
    # another repository
    for job, attempt, key, said in (("lint", "2", "web", "no directive"), ("test", "3", "web", "no directive"),
                                    ("test", "2", "api", "answered 403")):
        (tmp_path / "github_env").unlink(missing_ok=True)
        out = _directive_step(live_api, tmp_path, live_api["keys"][key], job, attempt)
        assert out.returncode == 0 and said in out.stderr and not (tmp_path / "github_env").exists(), out.stderr


def test_the_sdk_reads_health_and_analyses_from_the_real_warehouse(live_api: dict[str, Any]) -> None:
    client = GuardClient(api_key=live_api["keys"]["web"], base_url=live_api["base"])
    health = client.get_repo_health("acme/web")
    assert health.healing_success_rate == 100.0 and health.healing_success_fraction == 1.0
    # flaky: t1 (failed and passed on one commit) and tests/test_db.py::test_pool (the guard re-ran it as flaky,
    # directive_facts), of 4 tests seen
    assert health.flaky_test_rate == pytest.approx(0.5, abs=1e-3) and health.flaky_rate == 50.0
    assert health.time_saved_minutes == pytest.approx(28.0)
    analysis = client.analyze_failure(repo="acme/web", job_id="100")
    assert analysis.category == "infra_runner_lost" and analysis.confidence == pytest.approx(90.0)
    assert analysis.recommendations[0].action == "retry" and analysis.recommendations[0].confidence > 0
    with pytest.raises(GuardAPIError) as e:
        client.analyze_failure(repo="acme/api", job_id="900")  # a key for acme/web only
    assert e.value.status == 403
    with pytest.raises(GuardAPIError) as e:
        GuardClient(api_key="hg_wrong_key", base_url=live_api["base"]).get_repo_health("acme/web")
    assert e.value.status == 401


async def test_heal_queues_one_command_on_kafka_however_often_it_is_asked(live_api: dict[str, Any]) -> None:
    client = GuardClient(api_key=live_api["keys"]["web"], base_url=live_api["base"])
    first = client.heal(repo="acme/web", job_id="400", strategy="network_backoff")
    again = client.heal(repo="acme/web", job_id="400", strategy="network_backoff")
    assert first.command_id == again.command_id and first.action == "retry_backoff"
    recs = await collect(live_api["bootstrap"], live_api["prefix"] + "guard.actions", 2, 30, settle=0.5)
    cmds = [Command.from_json(r.value) for r in recs]
    assert [c.command_id for c in cmds] == [first.command_id] * 2  # the executor drops the repeat by id
    assert cmds[0].job_key == "github/acme/web/400" and cmds[0].action == "retry_backoff"
    assert recs[0].key == b"github/acme/web/400"


def test_prometheus_scrapes_the_apis_metrics(live_api: dict[str, Any]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(live_api["base"] + "/metrics", timeout=10) as r:
        text = r.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("healing_guard_warehouse_up", ())] == 1
    assert samples[("healing_guard_time_saved_minutes_total", (("repo", "acme/web"),))] == pytest.approx(28.0)
    assert samples[("healing_guard_cost_saved_usd_total", (("repo", "acme/web"),))] == pytest.approx(5.5)
    assert samples[("healing_guard_failure_classification_total", (("category", "oom"), ("repo", "acme/api")))] == 1
    names = {n for n, _ in samples}
    for name in ("healing_guard_recovery_rate", "healing_guard_flaky_test_detection"):
        assert name in names, name


def test_the_openapi_document_and_the_dashboard_page_are_served(live_api: dict[str, Any]) -> None:
    with urllib.request.urlopen(live_api["base"] + "/openapi.json", timeout=10) as r:
        doc = orjson.loads(r.read())
    assert "/api/v1/repos/{owner}/{repo}/failures/{job_id}/heal" in str(doc["paths"])
    with urllib.request.urlopen(live_api["base"] + "/dashboard", timeout=10) as r:
        assert r.status == 200 and b"<html" in r.read().lower()


def test_the_dashboard_draws_the_real_report_in_headless_chromium(live_api: dict[str, Any], tmp_path: Path) -> None:
    """The page served by `guard api`, fed by the real warehouse, in Debian's Chromium, with a screenshot."""
    from tests.integration.rest.test_dashboard import assert_screenshot, body_attr, chromium

    shot = tmp_path / "dashboard.png"
    dom = chromium(f"{live_api['base']}/dashboard#key={live_api['keys']['web']}&repo=acme/web&days=30", tmp_path,
                   screenshot=shot)
    assert body_attr(dom, "data-error") is None, body_attr(dom, "data-error")
    assert body_attr(dom, "data-ready") == "1", dom[-3000:]
    assert "28.0 min" in dom and "$0.50" in dom and "$1.90" in dom  # time saved, cost saved, re-run cost
    assert ">t1<" in dom or "t1" in dom  # the flaky test
    assert_screenshot(shot.read_bytes())
    dom = chromium(f"{live_api['base']}/dashboard#key={live_api['keys']['api']}&repo=acme/web&days=30", tmp_path)
    error = body_attr(dom, "data-error")
    assert error is not None and "403" in error


def test_guard_api_says_where_it_listens(live_api: dict[str, Any]) -> None:
    """Once the socket is bound, one line on stderr: the URL, the dashboard, the keys file, the warehouse
    and where heal requests go."""
    text = Path(live_api["log"]).read_text(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith("REST API on ")), None)
    assert line is not None, text[-2000:]
    base = live_api["base"]
    assert line.startswith(f"REST API on {base}  (dashboard {base}/dashboard, OpenAPI {base}/docs")
    assert "2 API key(s) in " in line and f"heal requests to {live_api['bootstrap']}" in line
