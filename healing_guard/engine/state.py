"""Table codecs: how each value of the worker's Faust tables is written as bytes, and read back.

The tables hold raw bytes (``streams/tables.py``), so the changelog format is set here, explicitly, and
does not depend on Faust's codecs: windows, ledgers and incident states are orjson, test models a compact
versioned binary (``dump_test``; pickles of earlier versions are still read). Pure: no Faust, Kafka or
ClickHouse; the agents read a table, call these, and write what the steps (``engine/step.py``) return.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..flaky import TestModel
from ..flaky.model import DELTAS, GRID, FlakeFilter
from ..flaky.quarantine import QuarantineState
from ..remediate import Ledger
from ..remediate.incidents import IncidentState
from ..remediate.outcomes import SuccessStats
from .window import JobWindow

__all__ = [
    "TestState", "dump_incident", "dump_partition", "dump_test", "dump_tests", "dump_window", "ledger_key",
    "load_incident", "load_partition", "load_test", "load_tests", "load_window", "read_records", "tail",
    "window_deadline", "write_records",
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


# --- test models: test id -> compact binary state (version 1; older values: pickle) ---------------------
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


#: version 1 of a test's value: a version byte, then fixed-size little-endian fields (the applied offset, the
#: model's counters, the quarantine state), the filter's arrays as float32, then the rare variable fields
#: (commit, failure template, pending failure context) as one orjson object, empty when none is set.
#: A pickle (every earlier value) starts with 0x80, never with this byte.
TEST_STATE_V1 = 1
#: the fixed fields, in order: (name, struct code); the counters are named as TestModel's, the quarantine
#: state's as QuarantineState's
_FIELDS = (("version", "B"), ("part", "i"), ("off", "q"), ("runs", "I"), ("fails", "I"), ("streak", "I"),
           ("flips", "I"), ("timed_runs", "I"), ("after_fail", "I"), ("after_fail_fails", "I"), ("after_pass", "I"),
           ("after_pass_fails", "I"), ("fixed_by_change", "I"), ("last_failed", "B"), ("fail_ewm", "d"),
           ("mean_duration", "d"), ("m2_duration", "d"), ("quarantined", "?"), ("episode", "I"),
           ("passes_since", "I"), ("since", "d"))
_HEAD = struct.Struct("<" + "".join(code for _, code in _FIELDS))
_U_SIZE = len(DELTAS) * len(GRID)
_ARRAYS = 4 * (_U_SIZE + len(DELTAS))
#: the same fixed part with the filter's arrays, as a NumPy record: many values read and written as columns
#: (``read_records``, ``write_records``; the batch path of engine/test_columns.py)
RECORD = np.dtype([*((name, "<" + code) for name, code in _FIELDS), ("u", "<f4", (len(DELTAS), len(GRID))),
                   ("logz", "<f4", (len(DELTAS),))])
RECORD_SIZE = _HEAD.size + _ARRAYS
assert RECORD.itemsize == RECORD_SIZE


def load_test(raw: bytes | None) -> TestState:
    if not raw:
        return TestState()
    if raw[0] == TEST_STATE_V1:
        return _load_v1(raw)
    if raw[0] != 0x80:
        raise ValueError(f"unknown test state encoding (first byte {raw[0]:#x})")
    obj: Any = pickle.loads(raw)  # values written before version 1 (an upgrade rewrites them on next run)
    if isinstance(obj, dict):
        applied = obj.get("applied")
        return TestState(obj["model"], QuarantineState.from_dict(obj.get("quarantine")),
                         None if applied is None else (int(applied[0]), int(applied[1])))
    return TestState(obj)


def _load_v1(raw: bytes, u: np.ndarray | None = None, logz: np.ndarray | None = None) -> TestState:
    """A version-1 value; ``u``, ``logz``: its filter's arrays, already decoded (:func:`load_tests`)."""
    (_v, part, off, runs, fails, streak, flips, timed, af, aff, ap, apf, fixed, last_failed, ewm, mean_d, m2,
     quarantined, episode, passes_since, since) = _HEAD.unpack_from(raw)
    pos = _HEAD.size
    if u is None or logz is None:
        arrays = np.frombuffer(raw, dtype="<f4", count=_U_SIZE + len(DELTAS), offset=pos).astype(np.float64)
        u, logz = arrays[:_U_SIZE].reshape(len(DELTAS), len(GRID)), arrays[_U_SIZE:]
    f = FlakeFilter.__new__(FlakeFilter)
    f.u, f.logz = u, logz
    extra = orjson.loads(raw[pos + _ARRAYS:]) if len(raw) > pos + _ARRAYS else _NO_EXTRA
    m = TestModel.__new__(TestModel)  # every field set here, at once (a dataclass __init__ costs a few µs)
    m.__dict__ = {"runs": runs, "fails": fails, "last_failed": bool(last_failed), "streak": streak, "fail_ewm": ewm,
                  "flips": flips, "mean_duration": mean_d, "timed_runs": timed, "m2_duration": m2,
                  "last_template": extra.get("tpl"), "pending_context": extra.get("ctx"), "after_fail": af,
                  "after_fail_fails": aff, "after_pass": ap, "after_pass_fails": apf, "model": f,
                  "last_sha": extra.get("sha"), "fixed_by_change": fixed}
    return TestState(m, QuarantineState(quarantined, episode, passes_since, since),
                     None if part < 0 else (part, off))


_NO_EXTRA: dict[str, Any] = {}


def load_tests(raws: list[bytes | None]) -> list[TestState]:
    """:func:`load_test` of many values, the filters' floats of all version-1 values decoded at once."""
    v1 = [i for i, raw in enumerate(raws) if raw and raw[0] == TEST_STATE_V1]
    out = [load_test(raw) if not raw or raw[0] != TEST_STATE_V1 else None for raw in raws]
    if v1:
        start = _HEAD.size
        blob = b"".join([raws[i][start:start + _ARRAYS] for i in v1])  # type: ignore[index]
        arrays = np.frombuffer(blob, dtype="<f4").astype(np.float64).reshape(len(v1), -1)
        us = arrays[:, :_U_SIZE].reshape(len(v1), len(DELTAS), len(GRID))
        logzs = arrays[:, _U_SIZE:]
        for j, i in enumerate(v1):
            out[i] = _load_v1(raws[i], us[j], logzs[j])  # type: ignore[arg-type]
    return out  # type: ignore[return-value]


def read_records(raws: list[bytes]) -> tuple[np.ndarray, list[bytes]]:
    """Version-1 values as columns: their fixed parts as one array of :data:`RECORD` (a copy: writable) and
    their variable tails (empty when none)."""
    rec = np.frombuffer(b"".join([raw[:RECORD_SIZE] for raw in raws]), RECORD).copy()
    return rec, [raw[RECORD_SIZE:] for raw in raws]


def write_records(rec: np.ndarray, tails: list[bytes]) -> list[bytes]:
    """The values of :func:`read_records`' columns (version set here), each with its tail."""
    rec["version"] = TEST_STATE_V1
    blob = rec.tobytes()
    return [blob[i * RECORD_SIZE:(i + 1) * RECORD_SIZE] + tail for i, tail in enumerate(tails)]


def _head(model: TestModel, quarantine: QuarantineState, applied: tuple[int, int]) -> bytes:
    return _HEAD.pack(TEST_STATE_V1, applied[0], applied[1], model.runs, model.fails, model.streak, model.flips,
                      model.timed_runs, model.after_fail, model.after_fail_fails, model.after_pass,
                      model.after_pass_fails, model.fixed_by_change, model.last_failed, model.fail_ewm,
                      model.mean_duration, model.m2_duration, quarantine.quarantined, quarantine.episode,
                      quarantine.passes_since, quarantine.since)


def _extra(model: TestModel) -> bytes:
    return tail(model.last_sha, model.last_template, model.pending_context)


def tail(sha: str | None, template: str | None, context: dict[str, float] | None = None) -> bytes:
    """The variable tail of a version-1 value: a test's last commit, failure template and pending failure
    context, those that are set, as one orjson object (empty when none is)."""
    extra: dict[str, Any] = {}
    if sha:
        extra["sha"] = sha
    if template:
        extra["tpl"] = template
    if context is not None:
        extra["ctx"] = context
    return orjson.dumps(extra) if extra else b""


def dump_test(model: TestModel, quarantine: QuarantineState, applied: tuple[int, int]) -> bytes:
    """The compact value of a test (about 0.9 KB: the filter's 200 floats are most of it)."""
    return dump_tests([TestState(model, quarantine, applied)])[0]


def dump_tests(states: list[TestState]) -> list[bytes]:
    """:func:`dump_test` of many states (each with a model and an applied offset), the filters' floats of
    all of them encoded at once."""
    if not states:
        return []
    floats = np.concatenate([np.stack([st.model.model.u.reshape(-1) for st in states]),  # type: ignore[union-attr]
                             np.stack([st.model.model.logz for st in states])], axis=1)  # type: ignore[union-attr]
    blob = floats.astype("<f4").tobytes()
    return [b"".join((_head(st.model, st.quarantine, st.applied), blob[i * _ARRAYS:(i + 1) * _ARRAYS],  # type: ignore[arg-type]
                      _extra(st.model)))  # type: ignore[arg-type]
            for i, st in enumerate(states)]


# --- incidents: template hash -> recent failures with that template ----------------------------------------
def load_incident(raw: bytes | None) -> IncidentState:
    return IncidentState.from_dict(orjson.loads(raw) if raw else None)


def dump_incident(state: IncidentState) -> bytes:
    return orjson.dumps(state.to_dict())
