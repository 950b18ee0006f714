"""Passes learned in columns (engine/test_columns.py) against the object path: the same bytes, the same sends.

The same history of reports goes through ``results_batch_step`` twice: as batches (most passes in columns)
and with the columns off (``batch=False``: every result through TestModel objects). Tables, facts, risks and
commands must be identical, byte for byte, and the columns must have carried most of the results.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from healing_guard.engine import core
from healing_guard.engine.core import Engine
from healing_guard.engine.state import RECORD, dump_test, load_test, read_records, write_records
from healing_guard.engine.step import Send, StoreMany, results_batch_step
from healing_guard.engine.test_columns import passes
from healing_guard.flaky import TestModel
from healing_guard.flaky.model import count_passes
from healing_guard.flaky.quarantine import QuarantinePolicy, QuarantineState
from healing_guard.schemas import TestResult
from healing_guard.settings import Settings

T0 = 1_767_225_600.0


def history(tests: int = 120, reports: int = 80, seed: int = 5) -> list[list[TestResult]]:
    """Reports of a suite with stable, flaky (quarantined, then released once fixed), broken and regressing
    tests; commits that change or are missing, durations missing, skips, and a test named twice."""
    rng = random.Random(seed)
    ids = [f"pkg{i % 3}/test_m{i % 12}.py::TestC{i % 30}::test_{i}" for i in range(tests)]
    kind = [rng.choice(["stable"] * 6 + ["flaky", "flaky", "broken", "regress"]) for _ in ids]
    out = []
    for r in range(reports):
        sha = None if r % 7 == 3 else f"{r // 2:040x}"
        rep = []
        for t, k in zip(ids, kind):
            if k == "flaky":
                p = 0.45 if r < 25 else 0.0
            else:
                p = {"stable": 0.0, "broken": 1.0, "regress": 1.0 if 15 <= r < 22 else 0.0}[k]
            outcome = "skipped" if rng.random() < 0.02 else ("failed" if rng.random() < p else "passed")
            rep.append(TestResult(provider="github", owner="o", repo="r", job_id=str(100 + r), test_id=t,
                                  outcome=outcome, duration_s=None if rng.random() < 0.1 else rng.uniform(0, 3),
                                  ts=T0 + 60 * r, head_sha=sha, failed_in_run=1,
                                  message=f"assert {rng.randint(0, 3)} == 0" if outcome == "failed" else None))
        if r % 5 == 0:
            rep.append(rep[r % tests])  # a test named twice in one message
        out.append(rep)
    return out


def run(reports: list[list[TestResult]], batch: bool) -> tuple[dict[bytes, Any], list[Any], int]:
    engine = Engine(Settings(broker_url="kafka://127.0.0.1:1", test_grace_seconds=0.0, partitions=1))
    engine.retry_context  # noqa: B018
    table: dict[bytes, Any] = {}
    sends = []
    in_columns = 0
    for off, rep in enumerate(reports):
        items = [(r.test_id.encode(), r) for r in rep]
        if batch:
            cols = passes(items, table, partition=0, offset=off, policy=engine.quarantine_policy,
                          elsewhere=lambda _k: False)
            in_columns += len(cols.items) if cols is not None else 0
        for e in results_batch_step(engine, table, items, partition=0, offset=off, batch=batch):
            if isinstance(e, StoreMany):
                table.update(e.items)
            elif isinstance(e, Send):
                sends.append((e.topic, e.key, e.value))
            else:
                sends.append(e)
    return table, sends, in_columns


def test_passes_in_columns_give_the_same_bytes_and_sends_as_the_object_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.time, "time", lambda: T0)  # quarantine commands and states carry the time
    reports = history()
    cols_table, cols_sends, in_columns = run(reports, batch=True)
    obj_table, obj_sends, _ = run(reports, batch=False)
    total = sum(len(r) for r in reports)
    assert in_columns > 0.6 * total  # most results took the columns
    assert cols_table.keys() == obj_table.keys()
    differ = [k for k in cols_table if cols_table[k] != obj_table[k]]
    assert not differ, (differ[:3], load_test(cols_table[differ[0]]), load_test(obj_table[differ[0]]))
    assert cols_sends == obj_sends
    actions = {e[2] for e in obj_sends if isinstance(e, tuple) and e[0] == "actions"}
    assert any(b"quarantine_test" in a for a in actions) and any(b"release_test" in a for a in actions)


def test_a_message_read_again_after_a_crash_is_not_learned_in_columns() -> None:
    engine = Engine(Settings(broker_url="kafka://127.0.0.1:1", test_grace_seconds=0.0, partitions=1))
    rep = history(tests=50, reports=1)[0][:50]  # without the test named twice
    items = [(r.test_id.encode(), r) for r in rep]
    table: dict[bytes, Any] = {}
    for e in results_batch_step(engine, table, items, partition=0, offset=7):
        if isinstance(e, StoreMany):
            table.update(e.items)
    policy = QuarantinePolicy()
    assert passes(items, table, partition=0, offset=7, policy=policy, elsewhere=lambda _k: False) is None
    again = passes(items, table, partition=0, offset=8, policy=policy, elsewhere=lambda _k: False)
    assert again is not None and len(again.items) == sum(r.outcome == "passed" for r in rep)


def test_count_passes_counts_as_test_model_count() -> None:
    rng = random.Random(2)
    models = []
    for _ in range(200):
        m = TestModel()
        for _ in range(rng.randint(0, 12)):
            m.count(rng.random() < 0.3, None if rng.random() < 0.3 else rng.uniform(0, 5), "a" * 40)
        if m.last_failed:
            m.count(False, 1.0, "a" * 40)
        models.append(m)
    raws = [dump_test(m, QuarantineState(), (0, 1)) for m in models]
    rec, _ = read_records(raws)
    durations = np.array([np.nan if rng.random() < 0.3 else rng.uniform(0, 5) for _ in models])
    count_passes(rec, durations)
    for m, d in zip(models, durations):
        m.count(False, None if np.isnan(d) else float(d), "a" * 40)
    again = [load_test(raw).model for raw in write_records(rec, [b""] * len(models))]
    fields = ["runs", "fails", "streak", "flips", "timed_runs", "after_fail", "after_fail_fails", "after_pass",
              "after_pass_fails", "fixed_by_change", "last_failed", "fail_ewm", "mean_duration", "m2_duration"]
    for m, a in zip(models, again):
        assert a is not None
        assert {f: getattr(a, f) for f in fields} == {f: getattr(m, f) for f in fields}


def test_records_read_and_write_the_version_1_encoding() -> None:
    m = TestModel()
    m.learn(True, 0.5, head_sha="b" * 40)
    raw = dump_test(m, QuarantineState(True, 2, 3, T0), (1, 99))
    rec, tails = read_records([raw])
    assert rec.dtype == RECORD and rec["off"][0] == 99 and rec["episode"][0] == 2 and rec["runs"][0] == 1
    assert write_records(rec, tails) == [raw]
