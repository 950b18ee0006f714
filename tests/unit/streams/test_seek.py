"""streams/seek.py: which partitions a worker reads from the beginning after Faust's seek to committed."""

from __future__ import annotations

from faust.transport.consumer import Consumer
from faust.types import TP

from healing_guard.streams import seek


def test_uncommitted_stream_partitions_are_read_from_the_beginning() -> None:
    assigned = {TP("p.guard.facts", 1), TP("p.guard.facts", 0), TP("p.ci.logs", 0), TP("p.ci.logs", 1),
                TP("p-windows-changelog", 0)}
    committed = {TP("p.ci.logs", 0): 12, TP("p.ci.logs", 1): 0, TP("p.guard.facts", 1): None}
    got = seek.uncommitted_stream_partitions(assigned, committed, {"p-windows-changelog"})
    # 0 counts as nothing committed (Faust and aiokafka skip a seek to 0); changelogs are recovery's
    assert got == [TP("p.ci.logs", 1), TP("p.guard.facts", 0), TP("p.guard.facts", 1)]


def test_install_wraps_faust_s_seek_once() -> None:
    seek.install()
    wrapped = Consumer.perform_seek
    seek.install()
    assert Consumer.perform_seek is wrapped
    assert wrapped.__module__ == seek.__name__
