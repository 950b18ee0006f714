"""The Faust application: only the App and its broker tuning live here."""

from __future__ import annotations

from pathlib import Path

import faust

from ..kafka_auth import faust_credentials
from ..settings import Settings
from . import flush, seek


def create_app(settings: Settings, *, store: str = "memory://") -> faust.App:
    flush.install()  # commit only what was sent (see streams/flush.py)
    seek.install()  # read from the beginning what no one committed (see streams/seek.py)
    broker = settings.broker_url
    faust_dir = Path(settings.data_dir) / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    return faust.App(
        settings.app_id,
        broker=broker,
        # SASL / TLS to the broker (broker.sasl_mechanism, broker.username, ...); None: PLAINTEXT
        broker_credentials=faust_credentials(settings),
        store=store,
        web_enabled=False,
        # Faust's own directory (empty with the memory store) under the guard's data directory, not the cwd
        datadir=str(faust_dir / "{conf.name}-data"),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,  # topics are created explicitly, see streams.topics.ensure_topics
        # fast joins on a single-host broker (DESIGN.md: otherwise 30-110 s to join a group)
        broker_session_timeout=4,
        broker_heartbeat_interval=0.5,
        broker_rebalance_timeout=4,
        producer_max_request_size=16 << 20,
        # produce batches of up to 1 MiB (Faust's default is 16 KiB): the test agent writes thousands of
        # test states per message straight into them (agents/effects.py::write_table)
        producer_max_batch_size=1 << 20,
        # Faust's default linger of 0 sends a produce request per message: thousands of small requests a
        # second under load, each a syscall (a fifth of the worker's CPU at twice the demo's rate).
        # 5 ms batches them; a command waits at most 5 ms more.
        producer_linger=0.005,
        consumer_max_fetch_size=16 << 20,
        broker_commit_every=1000,
        broker_commit_interval=settings.commit_interval_seconds,
        table_cleanup_interval=60.0,
        stream_wait_empty=False,
    )
