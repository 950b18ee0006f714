"""`guard backtest` recordings on file: a ci.tests batch (schemas/test_batch.py) is read as one record per
result, its invalid entries rejected with their place and field, the one-result lines as before."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from healing_guard.backtest import parse_line, read_files
from healing_guard.schemas import TestResult
from healing_guard.schemas.test_batch import encode_batches


def _results(n: int) -> list[TestResult]:
    return [TestResult(provider="github", owner="acme", repo="web", job_id="42", attempt=1, head_sha="abc",
                       test_id=f"tests/test_a.py::test_{i}", outcome="failed" if i % 5 == 0 else "passed",
                       duration_s=0.5, message="boom" if i % 5 == 0 else None, failed_in_run=n // 5)
               for i in range(n)]


def test_a_batch_line_is_a_record_per_result(tmp_path: Path) -> None:
    results = _results(40)
    lines = []
    for i, (_p, key, value) in enumerate(encode_batches(results, 3)):
        line = {"topic": "acme.ci.tests", "record": orjson.loads(value)}
        if i % 2:
            line["key"] = key.decode()  # the key is optional; given, it must be the first test id
        lines.append(orjson.dumps(line))
    single = results[0]
    lines.append(orjson.dumps({"topic": "ci.tests", "record": single.to_dict()}))
    f = tmp_path / "rec.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    rec = read_files([f])
    assert rec.rejected == []
    assert rec.by_topic == {"ci.tests": 41}
    got = [TestResult.from_json(v) for _t, _k, v in rec.messages]
    assert all(k == r.test_id.encode() for (_t, k, _v), r in zip(rec.messages, got))
    assert sorted(r.to_json() for r in got[:-1]) == sorted(r.to_json() for r in results)
    assert got[-1] == single


def test_a_batchs_bad_entries_are_rejected_by_place_and_field() -> None:
    (_p, key, value), = encode_batches(_results(3), 1)
    batch = orjson.loads(value)
    batch["results"][1]["outcome"] = "exploded"
    messages, rejected = parse_line(orjson.dumps({"topic": "ci.tests", "record": batch}), "rec.jsonl:7")
    assert [m[1] for m in messages] == [b"tests/test_a.py::test_0", b"tests/test_a.py::test_2"]
    assert len(rejected) == 1 and rejected[0].startswith("rec.jsonl:7: record.results[1].outcome: expected one of")


@pytest.mark.parametrize(("line", "where"), [
    ({"topic": "ci.tests", "key": "tests/test_a.py::test_1"}, "rec.jsonl:3: key: "),
    ({"topic": "ci.tests", "record_v": 9}, "rec.jsonl:3: record.v: unknown batch version"),
    ({"topic": "ci.tests", "record_job": {"provider": "travis"}}, "rec.jsonl:3: record.job"),
])
def test_a_batch_that_cannot_be_read_is_one_rejected_line(line: dict, where: str) -> None:
    (_p, _key, value), = encode_batches(_results(3), 1)
    batch = orjson.loads(value)
    if "record_v" in line:
        batch["v"] = line.pop("record_v")
    if "record_job" in line:
        batch["job"].update(line.pop("record_job"))
    with pytest.raises(ValueError) as e:
        parse_line(orjson.dumps({**line, "record": batch}), "rec.jsonl:3")
    assert str(e.value).startswith(where), str(e.value)
