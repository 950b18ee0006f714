"""The ci.tests batch format (schemas/test_batch.py): the partition a test id goes to, batches that keep
every field and the report's order, and what a reader refuses."""

from __future__ import annotations

import random
import string

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from healing_guard.schemas import SchemaError, TestResult
from healing_guard.schemas.test_batch import (BATCH_MAX_BYTES, BATCH_TARGET_BYTES, BATCH_VERSION, decode_tests,
                                              encode_batches, partition_of)

#: Kafka's own test vectors of ``Utils.murmur2`` (the Java client's UtilsTest: signed 32-bit results),
#: repeated by other clients' tests (KafkaEx, kafkabr, ClickHouse's kafkaMurmurHash)
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def _java_partition(key: bytes, n: int) -> int:
    """The Java client's default partition: ``Utils.toPositive(Utils.murmur2(key)) % numPartitions``."""
    return (JAVA_MURMUR2[key] & 0x7FFFFFFF) % n


@pytest.mark.parametrize("partitions", [1, 2, 3, 7, 12, 64])
def test_partition_of_agrees_with_kafkas_java_murmur2(partitions: int) -> None:
    for key in JAVA_MURMUR2:
        assert partition_of(key, partitions) == _java_partition(key, partitions), key


def test_partition_of_agrees_with_aiokafkas_default_partitioner() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "/_.:[]-#$ ›é"
    keys = [f"tests/test_{i}.py::test_{''.join(rng.choices(alphabet, k=rng.randint(0, 40)))}".encode()
            for i in range(3000)] + [b"", b"a", bytes(range(256))]
    for n in (1, 2, 3, 5, 8, 13, 100):
        parts = list(range(n))
        for key in keys:
            assert partition_of(key, n) == DefaultPartitioner()(key, parts, parts), (key, n)
    # the hash spreads test ids: every partition of a few gets some of 3,000 ids
    assert {partition_of(k, 8) for k in keys} == set(range(8))


def _result(i: int, **kw: object) -> TestResult:
    base: dict[str, object] = dict(provider="github", owner="acme", repo="web", job_id="42", attempt=2,
                                   head_sha="f" * 40, failed_in_run=3, test_id=f"tests/test_m{i % 9}.py::test_{i}",
                                   outcome=("passed", "failed", "skipped", "error")[i % 4])
    if i % 3 == 0:
        base.update(duration_s=i / 100, ts=1_700_000_000.5 + i)
    if i % 4 in (1, 3):
        base["message"] = f"AssertionError: {i} != {i + 1}"
    base.update(kw)
    return TestResult(**base)  # type: ignore[arg-type]


def _decode_all(messages: list[tuple[int, bytes, bytes]]) -> list[tuple[int, TestResult]]:
    out = []
    for partition, key, value in messages:
        d = decode_tests(value, key)
        assert d.batch and not d.errors
        out.extend((partition, r) for r in d.results)
    return out


def test_round_trip_keeps_every_field_and_each_result_is_on_its_partition() -> None:
    results = [_result(i) for i in range(500)]
    # a second job attempt and a result with changed files travel in batches of their own
    results += [_result(i, attempt=3, head_sha=None, failed_in_run=None) for i in range(500, 520)]
    results += [_result(520, changed_files=["src/a.py", "src/b.py"])]
    messages = encode_batches(results, 5)
    got = _decode_all(messages)
    assert sorted((r.to_dict() for _, r in got), key=lambda d: d["test_id"]) == \
        sorted((r.to_dict() for r in results), key=lambda d: d["test_id"])
    for partition, r in got:
        assert partition == partition_of(r.test_id.encode(), 5)
    for partition, key, value in messages:
        assert key == orjson.loads(value)["results"][0]["test_id"].encode()  # the key is the first test id
        assert orjson.loads(value)["v"] == BATCH_VERSION
    # few messages: one per (job attempt, partition) at this size
    assert len(messages) == len({(r.attempt, r.changed_files == [], partition_of(r.test_id.encode(), 5))
                                 for r in results})


def test_batches_stay_under_the_target_and_a_partition_keeps_the_report_order() -> None:
    big = "x" * 3000
    results = [_result(i, message=f"boom {i}: {big}") for i in range(1200)]
    messages = encode_batches(results, 3)
    assert all(len(v) <= BATCH_TARGET_BYTES for _, _, v in messages)
    assert len(messages) > 3  # ~3.6 MB of results do not fit in one message per partition
    for p in range(3):
        sent = [r.test_id for q, r in _decode_all(messages) if q == p]
        want = [r.test_id for r in results if partition_of(r.test_id.encode(), 3) == p]
        assert sent == want
    # a smaller target cuts more messages, never a larger one
    small = encode_batches(results, 3, target_bytes=64 * 1024)
    assert all(len(v) <= 64 * 1024 for _, _, v in small) and len(small) > len(messages)
    # a single result over the target is a message of its own
    (only,) = encode_batches([_result(1, message="y" * 10_000)], 1, target_bytes=4096)
    assert len(only[2]) > 4096 and len(decode_tests(only[2], only[1]).results) == 1


def test_no_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        encode_batches([_result(1)], 0)
    assert encode_batches([], 3) == []


def _batch(entries: list[object], job: object = None, v: object = BATCH_VERSION) -> bytes:
    return orjson.dumps({"v": v, "job": job if job is not None else {"provider": "gitlab", "owner": "g/sub",
                                                                      "repo": "p", "job_id": "9", "attempt": 1},
                         "results": entries})


def test_an_invalid_entry_is_named_and_the_others_decode() -> None:
    entries: list[object] = [{"test_id": "t1", "outcome": "passed"},
                             {"test_id": "t2", "outcome": "exploded"},
                             {"test_id": "t3", "outcome": "failed", "duration_s": "slow"},
                             "not an object",
                             {"test_id": "", "outcome": "passed"},
                             {"test_id": "t6", "outcome": "failed", "message": 12},
                             {"test_id": "t7", "outcome": "error", "duration_s": 2, "ts": 1.5, "message": "m"}]
    d = decode_tests(_batch(entries), b"t1")
    assert [r.test_id for r in d.results] == ["t1", "t7"]
    assert [(i, e.field) for i, e in d.errors] == [(1, "results[1].outcome"), (2, "results[2].duration_s"),
                                                    (3, "results[3]"), (4, "results[4].test_id"),
                                                    (5, "results[5].message")]
    assert "exploded" in d.errors[0][1].reason
    t7 = d.results[1]
    assert (t7.provider, t7.owner, t7.repo, t7.job_id, t7.attempt) == ("gitlab", "g/sub", "p", "9", 1)
    assert (t7.duration_s, t7.ts, t7.message) == (2.0, 1.5, "m")


def test_a_key_that_is_not_the_first_test_id_is_refused() -> None:
    value = _batch([{"test_id": "t1", "outcome": "passed"}, {"test_id": "t2", "outcome": "passed"}])
    for key in (b"t2", b"", None):
        with pytest.raises(SchemaError) as e:
            decode_tests(value, key)
        assert e.value.field == "key"
    assert len(decode_tests(value, b"t1").results) == 2
    # a bad first entry is that entry's error; the others still decode whatever the key
    bad_first = _batch([{"outcome": "passed"}, {"test_id": "t2", "outcome": "passed"}])
    d = decode_tests(bad_first, b"t0")
    assert [r.test_id for r in d.results] == ["t2"] and [e.field for _, e in d.errors] == ["results[0].test_id"]


def test_one_result_messages_still_decode() -> None:
    r = _result(5, changed_files=["a.py"])
    d = decode_tests(r.to_json(), r.test_id.encode())
    assert not d.batch and not d.errors and d.results == [r]
    with pytest.raises(SchemaError) as e:
        decode_tests(r.to_json(), b"another id")
    assert e.value.field == "key"
    with pytest.raises(SchemaError):  # one result that is not valid costs the message
        decode_tests(orjson.dumps({**r.to_dict(), "outcome": "exploded"}), r.test_id.encode())


def test_unknown_version_bad_job_and_unreadable_messages_are_refused() -> None:
    entries = [{"test_id": "t1", "outcome": "passed"}]
    for v in (2, 0, None, "1"):
        with pytest.raises(SchemaError) as e:
            decode_tests(_batch(entries, v=v), b"t1")
        assert e.value.field == "v" and "unknown batch version" in e.value.reason
    with pytest.raises(SchemaError) as e:
        decode_tests(_batch(entries, job={"provider": "travis", "owner": "o", "repo": "r", "job_id": "1"}), b"t1")
    assert e.value.field is not None and e.value.field.startswith("job")
    with pytest.raises(SchemaError) as e:
        decode_tests(orjson.dumps({"v": 1, "job": {"provider": "github", "owner": "o", "repo": "r", "job_id": "1"},
                                   "results": {"test_id": "t1"}}), b"t1")
    assert e.value.field == "results"
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(SchemaError):
            decode_tests(raw, b"t1")
    with pytest.raises(SchemaError, match="over the limit"):
        decode_tests(b" " * (BATCH_MAX_BYTES + 1), b"t1")
