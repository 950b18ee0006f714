"""The common case of a batch of test results, in columns: a pass of a test whose last run passed too.

Nearly every result of a big report is one: a test that passed last time passes again. Learning it is the
filter's update and a few counters; it has no failure context, no risk, and (when the test is neither
quarantined nor close enough to it) no quarantine transition. So those tests stay NumPy records
(engine/state.py's ``RECORD``) from the table's bytes to the table's bytes, with no ``TestModel`` object:
read as columns, learned as arrays (``FlakePrior.learn_arrays``, ``count_passes``), written as columns.

Every other result of the batch takes the object path: a failure, the run after a failure, a quarantined
test or one that may be quarantined by this pass, a value in an older encoding, a message read again after
a crash, a test named twice in one message, a new test that belongs to another partition. Both paths are
learned in one call in the message's order (``Engine.learn_tests``), so the prior sees the same sequence
either way; a unit test checks that both give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import orjson

from ..flaky.model import _LOGZ_START, _U_START
from ..flaky.quarantine import QuarantinePolicy
from ..schemas import TestResult
from .state import RECORD, RECORD_SIZE, TEST_STATE_V1, read_records, tail, write_records

__all__ = ["Passes", "passes", "write_passes"]


@dataclass
class Passes:
    """The passes of a batch learned as columns: positions in the message's items, the tests' records
    (counters, quarantine state, applied offset), their stored tails and their filters' arrays (float64)."""

    items: list[int]
    rec: np.ndarray
    tails: list[bytes]
    u: np.ndarray
    logz: np.ndarray


def passes(items: list[tuple[bytes, TestResult]], models: Mapping[bytes, bytes | None], *, partition: int,
           offset: int, policy: QuarantinePolicy, elsewhere: Callable[[bytes], bool]) -> Passes | None:
    """The items of a message that can be learned as columns (None: none can). ``models``: the tests' stored
    values; ``elsewhere(key)``: whether a new test belongs to another partition (it is sent on, not learned)."""
    keys = [k for k, _ in items]
    unique = len(set(keys)) == len(keys)
    if not unique:
        seen: dict[bytes, int] = {}
        for k in keys:
            seen[k] = seen.get(k, 0) + 1
    new: list[int] = []
    old: list[int] = []
    old_raws: list[bytes] = []
    get = models.get
    for i, (key, result) in enumerate(items):
        if result.outcome != "passed" or (not unique and seen[key] > 1):
            continue
        raw = get(key)
        if raw is None:
            if not elsewhere(key):
                new.append(i)
        elif raw[0] == TEST_STATE_V1 and len(raw) >= RECORD_SIZE:
            old.append(i)
            old_raws.append(raw)
    if old:
        rec, tails = read_records(old_raws)
        ok = (rec["last_failed"] == 0) & ~rec["quarantined"] & ~((rec["part"] == partition) & (rec["off"] >= offset))
        if policy.enabled:  # a pass of a test that has enough runs and recoveries may quarantine it: object path
            fixed = rec["fixed_by_change"].astype(np.int64)
            recoveries = (rec["after_fail"].astype(np.int64) - rec["after_fail_fails"] - fixed + fixed // 2)
            ok &= (rec["runs"].astype(np.int64) + 1 < policy.min_runs) | (recoveries < policy.min_recoveries)
        ok &= np.fromiter((b'"ctx"' not in t for t in tails), bool, len(tails))  # the run after a failure
        if not ok.all():
            keep = np.flatnonzero(ok).tolist()
            old = [old[j] for j in keep]
            rec, tails = rec[keep], [tails[j] for j in keep]
    else:
        rec, tails = np.zeros(0, RECORD), []
    if not new:  # the usual case once a suite is known: already in the message's order
        return Passes(old, rec, tails, rec["u"].astype(np.float64), rec["logz"].astype(np.float64)) if old else None
    at = old + new
    order = np.argsort(np.asarray(at), kind="stable").tolist()
    all_rec = np.concatenate([rec, np.zeros(len(new), RECORD)])[order]
    all_tails = tails + [b""] * len(new)
    u = np.empty((len(at), *_U_START.shape))
    logz = np.empty((len(at), *_LOGZ_START.shape))
    u[: len(old)] = rec["u"]
    logz[: len(old)] = rec["logz"]
    u[len(old):] = _U_START
    logz[len(old):] = _LOGZ_START
    return Passes([at[j] for j in order], all_rec, [all_tails[j] for j in order], u[order], logz[order])


def write_passes(p: Passes, items: list[tuple[bytes, TestResult]], *, partition: int, offset: int) -> list[bytes]:
    """The table values of learned passes: their records with the new arrays and applied offset, each tail
    naming the pass's commit (and the test's last failure template, kept)."""
    p.rec["part"] = partition
    p.rec["off"] = offset
    p.rec["u"] = p.u
    p.rec["logz"] = p.logz
    by_sha: dict[str | None, bytes] = {}
    tails = []
    for i, old in zip(p.items, p.tails):
        sha = items[i][1].head_sha
        if b'"tpl"' in old:
            tails.append(tail(sha, orjson.loads(old).get("tpl")))
            continue
        t = by_sha.get(sha)
        if t is None:
            t = by_sha[sha] = tail(sha, None)
        tails.append(t)
    return write_records(p.rec, tails)
