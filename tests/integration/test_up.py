"""``guard up`` as a user runs it: one command starts Apache Kafka (Java is here), the worker, the executor,
the webhook receiver and the API; a forwarded failed job is decided, carried out (dry run) and counted in
the warehouse the API owns; Ctrl-C stops every process; a second ``guard up`` on the same data directory
prints the same API key and still knows the job (it is not decided twice: the window's marker came back from
Kafka), and the warehouse kept it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("guard_up")]

GUARD = Path(sys.executable).parent / "guard"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
LOG = ("Run npm ci\nnpm ERR! code ECONNRESET\n"
       "npm ERR! network request to https://registry.npmjs.org/left-pad failed, reason: read ECONNRESET\n"
       "##[error]Process completed with exit code 1.\n")


class Up:
    def __init__(self, data: Path, out: Path) -> None:
        self.out = out
        self.f = out.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
        self.proc = subprocess.Popen([str(GUARD), "up", "--data-dir", str(data), "--api-port", "0",
                                      "--webhook-port", "0"], stdout=self.f, stderr=subprocess.STDOUT, env=env,
                                     cwd=data.parent)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, pattern: str) -> re.Match[str]:
        """Until the output matches; fails with the output if guard up exits. No clock of its own: a hang is
        stopped by the suite's per-test timeout (its output stays in the test's tmp_path)."""
        while True:
            m = re.search(pattern, self.text())
            if m:
                return m
            assert self.proc.poll() is None, self.text()[-4000:]
            time.sleep(0.3)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:  # say where it hangs: its own last lines and its threads' stacks
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(f"guard up did not stop within 120 s of Ctrl-C:\n{self.text()[-8000:]}") from None
        finally:
            self.f.close()


def get(url: str, key: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with _DIRECT.open(req, timeout=10) as r:
        return json.loads(r.read())


def forward(broker: str, log: Path, tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUARD_", "GITHUB_", "GITLAB_", "CI"))}
    r = subprocess.run([str(GUARD), "forward", "--broker", broker, "--provider", "github", "--repo", "acme/web",
                        "--job-id", "1", "--job-name", "build", "--conclusion", "failure", "--duration-minutes", "5",
                        str(log)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp)
    assert r.returncode == 0, r.stderr


def watched_commands(broker: str) -> list[dict[str, Any]]:
    r = subprocess.run([str(GUARD), "watch", "--broker", broker, "--from-beginning", "--idle-timeout", "4",
                        "--action", "retry_backoff", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [e for e in map(json.loads, r.stdout.splitlines()) if e["kind"] == "command"]


def test_guard_up_runs_the_whole_guard_and_keeps_what_it_learned(tmp_path: Path) -> None:
    data = tmp_path / "guard"
    log = tmp_path / "build.log"
    log.write_text(LOG)
    up = Up(data, tmp_path / "up1.log")
    try:
        up.wait_for(r"the guard is up")
        text = up.text()
        broker = re.search(r"broker\s+(kafka://\S+)\s+\(Apache Kafka", text)
        api = re.search(r"REST API\s+(http://\S+)", text)
        key = re.search(r"API key\s+(\S+)", text)
        hooks = re.search(r"webhooks\s+(http://\S+)/webhooks/", text)
        assert broker and api and key and hooks, text
        assert f"dashboard   {api.group(1)}/dashboard#key={key.group(1)}" in text
        assert "survives a restart" in text
        with _DIRECT.open(hooks.group(1) + "/healthz", timeout=10) as r:
            assert r.status == 200

        forward(broker.group(1), log, tmp_path)
        up.wait_for(r"github/acme/web/1 attempt 1: network \([0-9.]+\) -> retry_backoff")
        up.wait_for(r"executor \| .*retry_backoff github/acme/web/1")  # the executor's outcome line
        roi_url = f"{api.group(1)}/api/v1/repos/acme/web/roi?days=30"
        while get(roi_url, key.group(1))["report"]["jobs"] < 1:  # the API process wrote the job's facts
            assert up.proc.poll() is None, up.text()[-3000:]
            time.sleep(0.5)
        report = get(roi_url, key.group(1))["report"]
        assert (report["jobs"], report["failed_jobs"], report["auto_commands"]) == (1, 1, 1)
    finally:
        code = up.stop()
    assert code == 0, up.text()[-3000:]
    assert "stopping the broker" in up.text()
    leftovers = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout  # no process of this guard up is left

    again = Up(data, tmp_path / "up2.log")
    try:
        again.wait_for(r"the guard is up")
        assert f"API key     {key.group(1)}" in again.text()  # the same key, kept
        broker2 = re.search(r"broker\s+(kafka://\S+)", again.text())
        assert broker2 is not None and broker2.group(1) == broker.group(1)  # the same broker and port
        forward(broker.group(1), log, tmp_path)  # the same completion delivered again
        again.wait_for(r"worker \| .*chunks=1 ")  # the worker has read the repeated job
        # its window's marker came back from the changelog: no second decision (the marker may send the same
        # command again, with the same id, which the executor drops)
        assert "github/acme/web/1 attempt 1: network" not in again.text()
        assert len({c["record"]["command_id"] for c in watched_commands(broker.group(1))}) == 1
        api2 = re.search(r"REST API\s+(http://\S+)", again.text())
        assert api2 is not None
        report = get(f"{api2.group(1)}/api/v1/repos/acme/web/roi?days=30", key.group(1))["report"]
        assert report["jobs"] == 1  # the warehouse kept the first run's facts
    finally:
        assert again.stop() == 0, again.text()[-3000:]
