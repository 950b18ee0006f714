"""Test results on ``ci.tests``: one result per message, or a batch of one report's results per message.

A report of 50,000 tests sent one result per message costs the broker and the worker 50,000 messages. A
producer that has a whole report (the JUnit ingester, the pytest plugin, ``guard forward --junit``, the
Action) sends it as few messages as possible instead: the results are grouped by the partition their test
ids hash to (Kafka's default partitioner: murmur2 of the key, :func:`partition_of`), so every test's
results still reach the one partition, and the one worker, that owns its model; each group is cut into
messages of at most :data:`BATCH_TARGET_BYTES`.

A batch message (value; the key is the first result's test id, the partition is set explicitly)::

    {"v": 1,
     "job": {"provider": "github", "owner": "acme", "repo": "web", "job_id": "123", "attempt": 1,
             "head_sha": "...", "failed_in_run": 2},
     "results": [{"test_id": "tests/test_a.py::test_x", "outcome": "passed", "duration_s": 0.01, "ts": ...},
                 {"test_id": "...", "outcome": "failed", "message": "AssertionError: ..."}]}

``job`` holds the fields every result of the report shares (those of :class:`TestBatchJob`); each entry of
``results`` those of :class:`BatchedResult`. A one-result message (a :class:`TestResult`, keyed by its
test id) stays valid: :func:`decode_tests` reads both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import orjson

from ..topics import DEFAULT_TOPICS as _TOPICS
from .base import Record, SchemaError, check_size, field, load_json
from .records import JobRef, TestResult

__all__ = ["BATCH_MAX_BYTES", "BATCH_TARGET_BYTES", "BATCH_VERSION", "BatchedResult", "DecodedTests",
           "TestBatchJob", "TestResultBatch", "decode_tests", "encode_batches", "partition_of"]

BATCH_VERSION = 1
#: a producer cuts a partition's results into messages of at most this many bytes (Kafka's default
#: max.message.bytes is 1 MiB)
BATCH_TARGET_BYTES = 512 * 1024
#: the largest ci.tests message the worker reads
BATCH_MAX_BYTES = 4 << 20
_OUTCOMES = frozenset(("passed", "failed", "skipped", "error"))
_JOB_FIELDS = ("provider", "owner", "repo", "job_id", "attempt", "head_sha", "changed_files", "failed_in_run")
_RESULT_FIELDS = ("test_id", "outcome", "duration_s", "ts", "message")


@dataclasses.dataclass
class TestBatchJob(JobRef):
    """What every result of one batch shares: the job attempt they ran in."""

    __test__ = False
    attempt: int = field("run attempt, 1-based", default=1)
    head_sha: str | None = field("commit under test", default=None)
    changed_files: list[str] = field("files changed by the commit under test", default_factory=list)
    failed_in_run: int | None = field("how many tests failed in the same run", default=None)


@dataclasses.dataclass
class BatchedResult(Record):
    """One test's result within a batch."""

    test_id: str = field("stable test identifier")
    outcome: str = field("passed, failed, skipped or error")
    duration_s: float | None = field("test duration in seconds", default=None)
    ts: float | None = field("when the test finished", default=None)
    message: str | None = field("failure message (redacted before storage)", default=None)


@dataclasses.dataclass
class TestResultBatch(Record):
    """Results of one report whose test ids hash to one partition."""

    __test__ = False
    topic: ClassVar[str] = _TOPICS.tests
    description: ClassVar[str] = ("A batch: key = the first result's test id, partition = the one every test id "
                                  "of the batch hashes to (murmur2).")
    max_bytes: ClassVar[int] = BATCH_MAX_BYTES

    v: int = field("format version (1)")
    job: TestBatchJob = field("the job attempt the results ran in")
    results: list[BatchedResult] = field("the results")


def murmur2(data: bytes) -> int:
    """MurmurHash2 (32-bit, seed 0x9747b28c) as Kafka's default partitioner computes it (unsigned; Java's
    int is the same bits). Written here from the algorithm: schemas are pure (no client library)."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    n = len(data)
    h = (0x9747B28C ^ n) & mask
    full = n - n % 4
    for i in range(0, full, 4):
        k = (int.from_bytes(data[i:i + 4], "little") * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = n - full
    if tail:
        if tail == 3:
            h ^= data[full + 2] << 16
        if tail >= 2:
            h ^= data[full + 1] << 8
        h ^= data[full]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java client, aiokafka, librdkafka's murmur2 partitioner)
    sends ``key`` to, of ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _job_of(r: TestResult) -> tuple[Any, ...]:
    return (r.provider, r.owner, r.repo, r.job_id, r.attempt, r.head_sha, tuple(r.changed_files), r.failed_in_run)


def encode_batches(results: Iterable[TestResult], partitions: int, *,
                   target_bytes: int = BATCH_TARGET_BYTES) -> list[tuple[int, bytes, bytes]]:
    """``results`` as batch messages ``(partition, key, value)``: grouped by job attempt and by the partition
    their test ids hash to, in report order within a group, each value at most ``target_bytes`` (a single
    result larger than that is a batch of its own)."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    groups: dict[tuple[tuple[Any, ...], int], tuple[dict[str, Any], list[bytes]]] = {}
    for r in results:
        p = partition_of(r.test_id.encode(), partitions)
        gk = (_job_of(r), p)
        group = groups.get(gk)
        if group is None:
            job = {f: getattr(r, f) for f in _JOB_FIELDS}
            if not job["changed_files"]:
                del job["changed_files"]
            group = groups[gk] = ({k: v for k, v in job.items() if v is not None}, [])
        entry = {"test_id": r.test_id, "outcome": r.outcome}
        for f in ("duration_s", "ts", "message"):
            v = getattr(r, f)
            if v is not None:
                entry[f] = v
        group[1].append(orjson.dumps(entry))
    out: list[tuple[int, bytes, bytes]] = []
    for (_job, p), (job, entries) in groups.items():
        head = b'{"v":%d,"job":%s,"results":[' % (BATCH_VERSION, orjson.dumps(job))
        cur: list[bytes] = []
        size = len(head) + 2
        for e in entries:
            if cur and size + len(e) + 1 > target_bytes:
                out.append((p, orjson.loads(cur[0])["test_id"].encode(), head + b",".join(cur) + b"]}"))
                cur, size = [], len(head) + 2
            cur.append(e)
            size += len(e) + 1
        if cur:
            out.append((p, orjson.loads(cur[0])["test_id"].encode(), head + b",".join(cur) + b"]}"))
    return out


@dataclasses.dataclass
class DecodedTests:
    """What one ci.tests message holds: its results, in order, and the entries that are not valid (each
    ``(index, error)``, the error naming the field, e.g. ``results[3].outcome``)."""

    results: list[TestResult]
    errors: list[tuple[int, SchemaError]]
    batch: bool


def _opt_num(v: Any, path: str) -> float | None:
    if v is None:
        return None
    if type(v) is float or (type(v) is int):
        return float(v)
    raise SchemaError(f"expected a number or null, got {type(v).__name__}", path)


def _entry(e: Any, path: str, shared: dict[str, Any]) -> TestResult:
    """One entry of a batch, field by field: the error names the first field that is not valid."""
    if not isinstance(e, dict):
        raise SchemaError(f"expected an object, got {type(e).__name__}", path)
    tid = e.get("test_id")
    if type(tid) is not str or not tid:
        raise SchemaError("must be a non-empty string", f"{path}.test_id")
    outcome = e.get("outcome")
    if outcome not in _OUTCOMES:
        raise SchemaError(f"expected one of passed, failed, skipped, error; got {outcome!r}", f"{path}.outcome")
    msg = e.get("message")
    if msg is not None and type(msg) is not str:
        raise SchemaError(f"expected a string or null, got {type(msg).__name__}", f"{path}.message")
    duration = _opt_num(e.get("duration_s"), f"{path}.duration_s")
    ts = _opt_num(e.get("ts"), f"{path}.ts")
    r = object.__new__(TestResult)
    r.__dict__ = {**shared, "test_id": tid, "outcome": outcome, "duration_s": duration, "ts": ts, "message": msg}
    return r


def decode_tests(raw: bytes, key: bytes | None, *, clean: Callable[[list[str]], list[str]] | None = None) -> DecodedTests:
    """The results of one ci.tests message, a batch or a single result. Raises :class:`SchemaError` when
    the message as a whole is unreadable (not JSON, too large, a bad ``job``, a single result that is not
    valid, a key that is not its test id); an invalid entry of a batch only costs that entry.

    ``clean``: applied to the free text of a batch's results (test ids, messages, the job's changed files;
    the worker passes its redaction), a list of texts at a time, the shared fields once per message rather
    than once per result. A one-result message is returned as read."""
    data = load_json(raw, BATCH_MAX_BYTES)
    if not isinstance(data, dict):
        raise SchemaError(f"expected an object, got {type(data).__name__}")
    if "results" not in data:  # one result per message
        check_size(raw, TestResult.max_bytes)
        result = TestResult.from_dict(data)
        if key is None or key.decode("utf-8", "replace") != result.test_id:
            raise SchemaError(f"message key must be the test id {result.test_id!r}", "key")
        return DecodedTests([result], [], False)
    if data.get("v") != BATCH_VERSION:
        raise SchemaError(f"unknown batch version {data.get('v')!r}; this worker reads version {BATCH_VERSION}", "v")
    job = TestBatchJob.from_dict(data.get("job"), "job")
    entries = data["results"]
    if not isinstance(entries, list):
        raise SchemaError(f"expected a list, got {type(entries).__name__}", "results")
    if key is None:
        raise SchemaError("a batch's message key must be its first test id", "key")
    shared = {f: getattr(job, f) for f in _JOB_FIELDS}
    if clean is not None and shared["changed_files"]:
        shared["changed_files"] = clean(list(shared["changed_files"]))
    results: list[TestResult] = []
    new = object.__new__
    errors: list[tuple[int, SchemaError]] = []
    for i, e in enumerate(entries):
        if type(e) is dict:  # the usual entry, checked in one expression; anything else is looked at closer
            tid, outcome, msg = e.get("test_id"), e.get("outcome"), e.get("message")
            duration, ts = e.get("duration_s"), e.get("ts")
            if (type(tid) is str and tid and outcome in _OUTCOMES and (msg is None or type(msg) is str)
                    and (duration is None or type(duration) is float)
                    and (ts is None or type(ts) is float or type(ts) is int)):
                # every field checked, the job's once: the dataclass's own __init__ and validation would
                # cost more than the rest of the decoding together
                r = new(TestResult)
                r.__dict__ = {**shared, "test_id": tid, "outcome": outcome, "duration_s": duration,
                              "ts": None if ts is None else float(ts), "message": msg}
                results.append(r)
                continue
        try:
            results.append(_entry(e, f"results[{i}]", shared))
        except SchemaError as exc:
            errors.append((i, exc))
    if clean is not None and results:
        for r, tid in zip(results, clean([r.test_id for r in results])):
            r.test_id = tid
        failed = [r for r in results if r.message is not None]
        for r, msg in zip(failed, clean([r.message for r in failed])):  # type: ignore[misc]
            r.message = msg
    first = entries[0].get("test_id") if entries and isinstance(entries[0], dict) else None
    # checked against a first entry that has an id (a bad first entry is that entry's error, not the key's)
    if results and type(first) is str and first and key.decode("utf-8", "replace") != first:
        raise SchemaError("a batch's message key must be its first test id", "key")
    return DecodedTests(results, errors, True)

