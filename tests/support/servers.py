"""Waiting for a server process a test started (on loopback) and stopping it."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

#: loopback needs no proxy, whatever the environment says
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``url`` answers 2xx. Fails with the server's log when the process exits first. No clock of its
    own: a server that never answers is stopped by the suite's per-test timeout (pytest-timeout), not by a
    deadline a busy machine could miss."""
    while True:
        try:
            with _DIRECT.open(url, timeout=2) as r:
                if 200 <= r.status < 300:
                    return
        except OSError:
            pass
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
