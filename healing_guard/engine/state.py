"""Table codecs: how each value of the worker's Faust tables is written as bytes, and read back.

The tables hold raw bytes (``streams/tables.py``), so the changelog format is set here, explicitly, and
does not depend on Faust's codecs: windows, ledgers and incident states are orjson, test models pickle
(River models are not JSON). Pure: no Faust, Kafka or ClickHouse; the agents read a table, call these,
and write what the steps (``engine/step.py``) return.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..flaky import TestModel
from ..flaky.quarantine import QuarantineState
from ..remediate import Ledger
from ..remediate.incidents import IncidentState
from ..remediate.outcomes import SuccessStats
from .window import JobWindow

__all__ = [
    "TestState", "dump_incident", "dump_partition", "dump_test", "dump_window", "ledger_key", "load_incident",
    "load_partition", "load_test", "load_window", "window_deadline",
]


# --- ledgers: b"ledger:<partition>" -> this partition's budget ledger and learned action success rates ---
def ledger_key(partition: int) -> bytes:
    """Each partition owns a slice of the budget: one ledger value per partition, on that partition."""
    return f"ledger:{partition}".encode()


def load_partition(raw: bytes | None) -> tuple[Ledger, SuccessStats]:
    """This partition's budget ledger and learned action success rates (one table value)."""
    if not raw:
        return Ledger(), SuccessStats()
    d = orjson.loads(raw)
    return Ledger.from_dict(d), SuccessStats.from_dict(d.get("success"))


def dump_partition(ledger: Ledger, success: SuccessStats) -> bytes:
    return orjson.dumps({**ledger.to_dict(), "success": success.to_dict()})


# --- windows: job key -> the job's window (or the small marker of a decided attempt) ---------------------
def load_window(raw: bytes | None, key: bytes) -> JobWindow:
    """The job's window, or a new one for a job not seen yet."""
    if raw:
        return JobWindow.from_dict(orjson.loads(raw))
    return JobWindow(job_key=key.decode("utf-8", "replace"))


def dump_window(w: JobWindow) -> bytes:
    return orjson.dumps(w.to_dict())


def window_deadline(raw: bytes, ttl_seconds: float) -> tuple[float, int] | None:
    """When a stored window must be woken, as (time, partition): its grace deadline, or its TTL when it
    never saw its completion event (decided markers included); None when it only waits for messages.

    The deadline index is process memory: after a restart or a rebalance it is rebuilt from the table."""
    state = orjson.loads(raw)
    if state.get("deadline") is not None:
        return state["deadline"], state.get("partition", 0)
    if state.get("job") is None:
        return state.get("touched", 0.0) + ttl_seconds, state.get("partition", 0)
    return None


# --- test models: test id -> pickle({"model", "quarantine", "applied"}) ------------------------------------
@dataclass
class TestState:
    """A test's table value: its model, quarantine state and the (partition, offset) of the last
    ci.tests message it learned (older values hold the bare model, or no offset)."""

    __test__ = False  # not a pytest test class

    model: TestModel | None = None
    quarantine: QuarantineState = field(default_factory=QuarantineState)
    applied: tuple[int, int] | None = None

    def has_learned(self, partition: int, offset: int) -> bool:
        """Whether the message at ``offset`` was learned already: read again after a crash, but the
        changelog already holds what it taught the model."""
        return (self.model is not None and self.applied is not None and self.applied[0] == partition
                and offset <= self.applied[1])


def load_test(raw: bytes | None) -> TestState:
    if not raw:
        return TestState()
    obj: Any = pickle.loads(raw)
    if isinstance(obj, dict):
        applied = obj.get("applied")
        return TestState(obj["model"], QuarantineState.from_dict(obj.get("quarantine")),
                         None if applied is None else (int(applied[0]), int(applied[1])))
    return TestState(obj)


def dump_test(model: TestModel, quarantine: QuarantineState, applied: tuple[int, int]) -> bytes:
    return pickle.dumps({"model": model, "quarantine": quarantine.to_dict(), "applied": applied},
                        protocol=pickle.HIGHEST_PROTOCOL)


# --- incidents: template hash -> recent failures with that template ----------------------------------------
def load_incident(raw: bytes | None) -> IncidentState:
    return IncidentState.from_dict(orjson.loads(raw) if raw else None)


def dump_incident(state: IncidentState) -> bytes:
    return orjson.dumps(state.to_dict())
