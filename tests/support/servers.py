"""Waiting for a server process a test started (on loopback) and stopping it."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

#: loopback needs no proxy, whatever the environment says
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Until ``url`` answers 2xx. Fails with the server's log when the process exits first or ``timeout``
    seconds pass: a hang guard, not a timing claim."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _DIRECT.open(url, timeout=2) as r:
                if 200 <= r.status < 300:
                    return
        except OSError:
            pass
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout:g} s"
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
