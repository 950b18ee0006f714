"""Whether a partition's ci.logs are read to the end: a deadline tick waits for it (engine.step)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types import TP

from healing_guard.agents.logs_progress import LogsProgress


def _app(highwater: dict[int, int | None], read: dict[int, int] | None = None) -> Any:
    consumer = SimpleNamespace(highwater=lambda tp: highwater.get(tp.partition),
                               _read_offset={TP("ci.logs", p): o for p, o in (read or {}).items()})
    return SimpleNamespace(consumer=consumer)


def test_a_partition_whose_end_is_not_known_yet_is_not_caught_up() -> None:
    """Just taken over from a worker that died: nothing fetched yet, so its backlog is unknown. Judging it
    caught up let a deadline decide a job from the chunks read so far (the crash matrix's two-worker run)."""
    lp = LogsProgress("ci.logs")
    assert lp.caught_up(_app({0: None}, {0: 10}), 0) is False


def test_caught_up_by_position_against_the_high_water_mark() -> None:
    lp = LogsProgress("ci.logs")
    assert lp.caught_up(_app({0: 0}), 0) is True  # an empty partition
    assert lp.caught_up(_app({0: 50}, {0: 10}), 0) is False  # from the committed position: behind
    lp.read(0, 49)
    assert lp.caught_up(_app({0: 50}), 0) is True
    assert lp.caught_up(_app({0: 51}), 0) is False
