"""Platform adapters against real Kafka: the webhook receiver process and `guard ingest junit`."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest

from healing_guard.brokers import free_port
from healing_guard.schemas.test_batch import decode_tests
from healing_guard.settings import load_settings
from healing_guard.streams.topics import ensure_topics

from tests.integration.helpers import collect
from tests.support.paths import FIXTURES
from tests.support.servers import wait_healthy

pytestmark = pytest.mark.integration
FIX = FIXTURES


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


async def test_webhook_receiver_publishes_job_events(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"wh{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix)
    await ensure_topics(settings)
    port = free_port()
    env = {**os.environ, "GUARD_WEBHOOK_SECRET_GITHUB": "s3cret", "GUARD_DATA_DIR": str(tmp_path)}  # its own delivery log
    log = tmp_path / "receiver.log"
    proc = subprocess.Popen([sys.executable, "-m", "healing_guard.cli", "webhook", "serve", "--port", str(port),
                             "--broker", f"kafka://{kafka_bootstrap}", "--topic-prefix", prefix],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_healthy, url + "/healthz", proc, log)
        body = (FIX / "webhooks" / "github_workflow_job_completed_failure.json").read_bytes()
        sig = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": sig, "X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": "abc"}
        assert await asyncio.to_thread(_post, url + "/webhooks/github", body, headers) == 202
        assert await asyncio.to_thread(_post, url + "/webhooks/github", body, headers) == 200  # replay dropped
        bad = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64, "X-GitHub-Delivery": "abd"}
        assert await asyncio.to_thread(_post, url + "/webhooks/github", body, bad) == 401
        records = await collect(kafka_bootstrap, settings.topics.jobs, 1, 30, settle=1.0)
        assert len(records) == 1
        ev = orjson.loads(records[0].value)
        assert records[0].key.decode() == f"github/{ev['owner']}/{ev['repo']}/{ev['job_id']}"
        assert ev["conclusion"] == "failure" and ev["status"] == "completed"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def test_ingest_junit_sends_test_results(kafka_bootstrap: str) -> None:
    prefix = f"ju{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix)
    await ensure_topics(settings)
    files = [str(FIX / "junit" / "pytest.xml"), str(FIX / "junit" / "TEST-com.acme.FooTest.xml")]
    r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "healing_guard.cli", "ingest", "junit",
                                                 "--provider", "github", "--repo", "acme/web", "--job-id", "7",
                                                 "--broker", f"kafka://{kafka_bootstrap}", "--topic-prefix", prefix,
                                                 *files], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    dry = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "healing_guard.cli", "ingest", "junit",
                                                   "--provider", "github", "--repo", "acme/web", "--job-id", "7",
                                                   "--dry-run", *files], capture_output=True, text=True, timeout=60)
    want = [orjson.loads(x) for x in dry.stdout.splitlines()]
    # batches: at most a message per report (its failed_in_run is the report's) and partition of ci.tests,
    # each result as the dry run prints it
    messages = await collect(kafka_bootstrap, settings.topics.tests, 1, 30, settle=1.0)
    assert 1 <= len(messages) <= len(files) * settings.partitions
    assert f"sent {len(want)} test results in {len(messages)} message" in r.stdout
    got = [x.to_dict() for rec in messages for x in decode_tests(rec.value, rec.key).results]
    assert len(want) > 5
    assert sorted(got, key=lambda d: d["test_id"]) == sorted(want, key=lambda d: d["test_id"])
    assert {x["outcome"] for x in got} >= {"passed", "failed"}


async def test_forward_feeds_a_worker_end_to_end(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A CI step without webhooks or a forwarder: `guard forward --conclusion failure` is enough for the
    worker to diagnose the job and emit its command."""
    from tests.integration.helpers import start_worker, stop_worker

    prefix = f"fw{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix,
                             partitions=2, app_id=prefix.rstrip("."))
    await ensure_topics(settings)
    log = tmp_path / "build.log"
    log.write_text("".join(f"2024-05-06T07:08:{i % 60:02d}.0Z compiling module {i}\n" for i in range(1200))
                   + "2024-05-06T07:09:00.0Z npm ERR! code ECONNRESET\n"
                   + "2024-05-06T07:09:00.0Z npm ERR! network request to https://registry.npmjs.org/x failed, "
                     "reason: read ECONNRESET\n")
    wlog = tmp_path / "worker.log"
    proc = start_worker(kafka_bootstrap, prefix, f"chdb://{tmp_path / 'ch'}", wlog, "--no-facts")
    try:
        r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "healing_guard.cli", "forward",
                                                     "--provider", "github", "--repo", "acme/web", "--job-id", "42",
                                                     "--conclusion", "failure", "--exit-code", "1",
                                                     "--broker", f"kafka://{kafka_bootstrap}",
                                                     "--topic-prefix", prefix, str(log)],
                                    capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "sent 3 chunks (1202 lines)" in r.stdout
        actions = await collect(kafka_bootstrap, settings.topics.actions, 1, 90, proc)
        cmd = orjson.loads(actions[0].value)
        assert cmd["job_id"] == "42" and cmd["category"] == "network" and cmd["action"] == "retry_backoff"
        assert cmd["evidence"][0]["line"] in (1201, 1202)
    finally:
        assert stop_worker(proc) == 0, wlog.read_text()[-3000:]


async def test_fetcher_fetches_logs_nobody_forwarded(kafka_bootstrap: str) -> None:
    """A failed job arrives on ci.jobs without any log: the fetcher downloads its GitLab trace and
    publishes the chunks on ci.logs; a job whose log did arrive is left alone."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from healing_guard.executor.clients import Clients
    from healing_guard.platforms.fetch import run_fetcher
    from healing_guard.schemas import JobEvent, LogChunk

    from tests.integration.helpers import produce

    requests: list[str] = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = b"".join(b"step %d\n" % i for i in range(700)) + b"ERROR: Job failed: exit code 137\n"
            self.send_response(200 if self.path.endswith("/jobs/11/trace") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        prefix = f"fe{uuid.uuid4().hex[:8]}."
        settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix,
                                 app_id=prefix.rstrip("."))
        await ensure_topics(settings)

        def failed(job_id: str) -> JobEvent:
            return JobEvent(provider="gitlab", owner="grp", repo="app", job_id=job_id, job_name="build",
                            status="completed", conclusion="failure", completed_at=time.time())

        forwarded = LogChunk(provider="gitlab", owner="grp", repo="app", job_id="12", seq=0, lines=["x"], eof=True)
        await produce(kafka_bootstrap, prefix, [("ci.logs", forwarded.job_key.encode(), forwarded.to_json()),
                                                ("ci.jobs", failed("11").job_key.encode(), failed("11").to_json()),
                                                ("ci.jobs", failed("12").job_key.encode(), failed("12").to_json())])
        url = f"http://127.0.0.1:{server.server_address[1]}"
        clients = Clients.from_env({"GUARD_GITLAB_TOKEN": "t", "GUARD_GITLAB_URL": url})
        counts = await asyncio.wait_for(run_fetcher(settings, clients=clients, once=True, grace_seconds=0.5), 60)
        assert counts["fetched"] == 1 and counts["failed"] == 0, counts
        assert requests == ["/api/v4/projects/grp%2Fapp/jobs/11/trace"]
        logs = await collect(kafka_bootstrap, settings.topics.logs, 3, 30, settle=1.0)
        fetched = [orjson.loads(r.value) for r in logs if r.key == b"gitlab/grp/app/11"]
        assert [c["seq"] for c in fetched] == [0, 1] and fetched[-1]["eof"] is True
        assert fetched[-1]["lines"][-1] == "ERROR: Job failed: exit code 137"
        assert sum(len(c["lines"]) for c in fetched) == 701
    finally:
        server.shutdown()
        server.server_close()


async def test_executor_schedules_backoffs_without_holding_other_commands(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A retry_backoff command waits in the executor's durable schedule while the commands behind it are
    carried out; stopped mid-wait and restarted, the executor calls the API for it once, when it is due."""
    from healing_guard.executor.cli import run_executor
    from healing_guard.executor.clients import Clients
    from healing_guard.schemas import Command, Outcome

    from tests.support.fake_apis import FakeApis
    from tests.integration.helpers import produce

    prefix = f"xs{uuid.uuid4().hex[:8]}."
    settings = load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix,
                             app_id=prefix.rstrip("."))
    await ensure_topics(settings)

    def command(job_id: str, action: str, **parameters: object) -> Command:
        return Command(provider="github", owner="acme", repo="shop", job_id=job_id, command_id=f"{prefix}{job_id}", attempt=1,
                       action=action, reason="r", category="network", confidence=0.9, parameters=parameters)

    slow, quick = command("1", "retry_backoff", backoff_seconds=[6]), command("2", "retry")
    made = time.time()
    await produce(kafka_bootstrap, prefix, [("guard.actions", c.job_key.encode(), c.to_json()) for c in (slow, quick)])
    with FakeApis() as api:
        clients = Clients.from_env({"GUARD_GITHUB_TOKEN": "ghs_testtoken0123456789", "GUARD_GITHUB_API_URL": api.url}, proxies={})
        stop = asyncio.Event()
        first = asyncio.create_task(run_executor(settings, dry_run=False, data_dir=tmp_path, clients=clients, stop=stop))
        outs = await collect(kafka_bootstrap, settings.topics.outcomes, 1, 60)
        assert [Outcome.from_json(r.value).command_id for r in outs] == [quick.command_id]
        assert [r.path for r in api.requests] == ["/repos/acme/shop/actions/jobs/2/rerun"]
        stop.set()
        # the quick command was carried out (above: its outcome first, its API call the only one) while
        # the backoff still waited in the schedule: it did not wait behind it
        assert await asyncio.wait_for(first, 30) == {"scheduled": 1, "succeeded": 1}

        counts = await asyncio.wait_for(run_executor(settings, dry_run=False, data_dir=tmp_path, clients=clients,
                                                     once=True), 60)
        assert counts == {"succeeded": 1}  # from the schedule on disk: the offsets were committed
        outs = await collect(kafka_bootstrap, settings.topics.outcomes, 2, 30, settle=0.5)
        done = Outcome.from_json(outs[-1].value)
        assert done.command_id == slow.command_id and "waited 6 s (backoff)" in done.detail
        assert done.ts >= made + 6
        assert [r.path for r in api.requests].count("/repos/acme/shop/actions/jobs/1/rerun") == 1
