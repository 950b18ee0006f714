"""``guard backtest``: what the guard would have done on recorded history, and what it would have saved.

Shadow mode over a recording: the records go through the real pipeline (:func:`healing_guard.traffic_replay.replay`:
Tansu, the real Faust worker in event-time mode, a fresh chDB database), every command it emits goes
through the real action executor in dry run (so the report says which API calls it would have made,
and nothing is called), and the ROI report is queried from the facts the replay wrote.

Recordings:

* JSON lines files, one record per line: ``{"topic": "ci.jobs" | "ci.logs" | "ci.tests", "record": {...}}``
  with an optional ``"key"`` (default: the job key; the test id on ``ci.tests``). This is what
  ``guard forward --dry-run`` prints, so a recording can be built from saved logs with it. ``.gz`` files
  are read as gzip. A ``ci.tests`` record may also be a batch of results (schemas/test_batch.py; its key,
  if given, its first test id).
* the guard's own topics on a Kafka cluster (``--from-broker``), read from the beginning to their end at
  the start of the backtest, merged in timestamp order. A ``ci.tests`` message is read as the worker reads
  it (:func:`~healing_guard.schemas.test_batch.decode_tests`: one result, or a batch).

Every result of a batch becomes a record of its own (keyed by its test id), in the batch's order. A line
or message that is not a valid record, or an invalid entry of a batch, is not dropped silently: it is
listed as rejected with its place and the field at fault (``results[3].outcome``), and the rest is
replayed.
"""

from __future__ import annotations

import gzip
import heapq
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .traffic_replay import Message, completed_attempts
from .schemas import SchemaError
from .schemas.records import TOPIC_RECORDS, TestResult
from .schemas.test_batch import DecodedTests, decode_tests
from .topics import DEFAULT_TOPICS, INPUT_TOPICS, Topics

#: every executor service configured with placeholders: a dry run only describes the calls, never makes them
DRY_RUN_ENV = {
    "GUARD_GITHUB_TOKEN": "backtest-placeholder", "GUARD_GITLAB_TOKEN": "backtest-placeholder",
    "GUARD_JENKINS_URL": "https://jenkins.backtest.invalid", "GUARD_JENKINS_USER": "backtest",
    "GUARD_JENKINS_TOKEN": "backtest-placeholder", "GUARD_CIRCLECI_TOKEN": "backtest-placeholder",
    "GUARD_SLACK_WEBHOOK_URL": "https://hooks.slack.backtest.invalid/services/backtest",
    "GUARD_JIRA_URL": "https://jira.backtest.invalid", "GUARD_JIRA_USER": "backtest",
    "GUARD_JIRA_TOKEN": "backtest-placeholder", "GUARD_JIRA_PROJECT": "CI",
    "GUARD_PAGERDUTY_ROUTING_KEY": "backtest-placeholder-routing-key",
}


@dataclass
class Recording:
    messages: list[Message] = field(default_factory=list)
    #: "where: why" for every line or message that is not a valid record
    rejected: list[str] = field(default_factory=list)

    @property
    def by_topic(self) -> dict[str, int]:
        return dict(Counter(t for t, _, _ in self.messages))


def _key(topic: str, rec: Any) -> bytes:
    if isinstance(rec, TestResult):
        return rec.test_id.encode()
    return str(rec.job_key).encode()


def _rejections(where: str, decoded: DecodedTests, prefix: str = "") -> list[str]:
    """One "where: field: why" per invalid entry of a batch (the others are replayed)."""
    return [f"{where}: {prefix}{exc.field or f'results[{i}]'}: {exc.reason}" for i, exc in decoded.errors]


def _test_messages(decoded: DecodedTests) -> list[Message]:
    """Every result of a ci.tests message as a record of its own, keyed by its test id."""
    return [(DEFAULT_TOPICS.tests, r.test_id.encode(), r.to_json()) for r in decoded.results]


def parse_line(raw: bytes, where: str) -> tuple[list[Message], list[str]]:
    """One recorded line into its messages (a ci.tests batch: one per result) and the "where: why" of each
    invalid entry of a batch; ValueError("where: why") when the line as a whole is not a valid record."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object with topic and record")
    named = obj.get("topic")
    # a topic prefix (topic_prefix, as `guard forward --dry-run` prints it) is dropped
    topic = next((t for t in INPUT_TOPICS if isinstance(named, str) and named.endswith(t)), None)
    if topic is None:
        raise ValueError(f"{where}: topic: one of {', '.join(INPUT_TOPICS)} (with any prefix), got {named!r}")
    key = obj.get("key")
    if key is not None and not isinstance(key, str):
        raise ValueError(f"{where}: key: expected a string")
    record = obj.get("record")
    if topic == DEFAULT_TOPICS.tests and isinstance(record, dict) and "results" in record:
        # a batch (schemas/test_batch.py); its key, when the line has none, is its first test id
        entries = record.get("results")
        first = entries[0].get("test_id") if isinstance(entries, list) and entries and isinstance(entries[0], dict) \
            else None
        batch_key = key or (first if isinstance(first, str) else "")
        try:
            decoded = decode_tests(orjson.dumps(record), batch_key.encode())
        except SchemaError as exc:
            at = exc.field if exc.field == "key" else f"record.{exc.field}" if exc.field else "record"
            raise ValueError(f"{where}: {at}: {exc.reason}") from None
        return _test_messages(decoded), _rejections(where, decoded, "record.")
    try:
        rec = TOPIC_RECORDS[topic].from_dict(record, "record")
    except SchemaError as exc:
        raise ValueError(f"{where}: {exc.field or 'record'}: {exc.reason}") from None
    return [(topic, (key.encode() if key else _key(topic, rec)), rec.to_json())], []


def read_files(paths: Sequence[Path]) -> Recording:
    out = Recording()
    for p in paths:
        opener = gzip.open if p.suffix == ".gz" else open
        n = 0
        try:
            with opener(p, "rb") as fp:
                for n, raw in enumerate(fp, 1):
                    if not raw.strip():
                        continue
                    try:
                        messages, rejected = parse_line(raw, f"{p}:{n}")
                    except ValueError as exc:
                        out.rejected.append(str(exc))
                        continue
                    out.messages.extend(messages)
                    out.rejected.extend(rejected)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a truncated or corrupt .gz: keep what was read
            out.rejected.append(f"{p}:{n + 1}: not a readable gzip file ({type(exc).__name__}: {exc})")
    return out


async def read_topics(bootstrap: str, prefix: str = "", *, max_events: int = 2_000_000,
                      security: Mapping[str, Any] | None = None) -> Recording:
    """The guard's input topics from the beginning to their end now, merged in timestamp order.
    ``security``: aiokafka's SASL / TLS keyword arguments (:func:`healing_guard.kafka_auth.client_options`)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    out = Recording()
    streams: list[list[tuple[int, int, str, bytes, bytes]]] = []
    sec = dict(security or {})
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_bytes=32 << 20, max_partition_fetch_bytes=32 << 20, **sec)
    names = [Topics.with_prefix(prefix).named(t) for t in INPUT_TOPICS]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **sec)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    tps = [TopicPartition(d.get("topic") or d.get("name"), int(p["partition"])) for d in described
           if int(d.get("error_code", 0)) == 0 for p in d.get("partitions") or ()]
    if not tps:
        denied = [str(d.get("topic") or d.get("name")) for d in described if int(d.get("error_code", 0)) == 29]
        if denied:  # TOPIC_AUTHORIZATION_FAILED
            raise ValueError(f"not authorized to read {', '.join(denied)} on {bootstrap} (the broker's ACLs; "
                             "GUARD_BROKER_USERNAME names the principal)")
        raise ValueError(f"no topics {', '.join(names)} on {bootstrap} (--topic-prefix?)")
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        seen = 0
        per: dict[TopicPartition, list[tuple[int, int, str, bytes, bytes]]] = defaultdict(list)
        while todo and seen < max_events:
            batch = await consumer.getmany(*todo, timeout_ms=1000, max_records=5000)
            if not batch:
                break
            for tp, records in batch.items():
                topic = tp.topic[len(prefix):]
                for r in records:
                    if r.offset >= ends[tp]:
                        todo.discard(tp)
                        break
                    where = f"{tp.topic}[{tp.partition}]@{r.offset}"
                    try:
                        if topic == DEFAULT_TOPICS.tests:  # one result, or a batch: a record per result
                            decoded = decode_tests(r.value or b"", r.key)
                            out.rejected.extend(_rejections(where, decoded))
                            found = _test_messages(decoded)
                        else:
                            rec = TOPIC_RECORDS[topic].from_json(r.value or b"")
                            found = [(topic, r.key if r.key else _key(topic, rec), r.value or b"")]
                    except SchemaError as exc:
                        out.rejected.append(f"{where}: {exc.field or 'value'}: {exc.reason}")
                        continue
                    for _topic, key, value in found:
                        per[tp].append((r.timestamp, r.offset, topic, key, value))
                    seen += len(found)
                    if r.offset + 1 >= ends[tp]:
                        todo.discard(tp)
        streams = list(per.values())
    finally:
        await consumer.stop()
    # each partition is in order; the merge keeps that order and interleaves partitions by time
    for ts, _, topic, key, value in heapq.merge(*streams, key=lambda e: (e[0], e[1])):
        out.messages.append((topic, key, value))
    return out


def sample_recording(jobs: int, seed: int) -> Recording:
    """The bundled sample traffic (its own historical dates), as a recording."""
    from .samples import generate, messages

    return Recording(messages=list(messages(generate(jobs, seed))))


def write_recording(msgs: Iterable[Message], path: Path) -> int:
    """Write messages as a JSON lines recording (the format :func:`read_files` reads)."""
    n = 0
    with path.open("wb") as fp:
        for topic, key, value in msgs:
            fp.write(orjson.dumps({"topic": topic, "key": key.decode("utf-8", "replace"),
                                   "record": orjson.loads(value)}) + b"\n")
            n += 1
    return n


def dry_run(commands: Sequence[dict[str, Any]], data_dir: Path) -> list[dict[str, Any]]:
    """Each command through the real executor in dry run: what it would have called."""
    from .executor import Clients, DoneStore, Executor
    from .schemas import Command

    ex = Executor(Clients.from_env(DRY_RUN_ENV), DoneStore(data_dir), dry_run=True)
    out: list[dict[str, Any]] = []
    for d in commands:
        try:
            cmd = Command.from_dict(d)
        except SchemaError as exc:  # the worker only emits valid commands; say so if not
            out.append({"command_id": str(d.get("command_id")), "status": "invalid", "would": exc.reason})
            continue
        o = ex.execute(cmd)
        out.append({"command_id": cmd.command_id, "job_key": cmd.job_key, "attempt": cmd.attempt,
                    "category": cmd.category, "action": cmd.action, "status": o.status, "would": o.detail})
    return out


def summarize(rec: Recording, findings: dict[tuple[str, int], dict[str, Any]],
              commands: Sequence[dict[str, Any]], executed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts per category and action, from what the replay produced."""
    from .remediate.actions import NOTIFY_ACTIONS

    jobs, failed = completed_attempts(rec.messages)
    matrix: dict[str, Counter[str]] = defaultdict(Counter)
    first: dict[tuple[str, int], dict[str, Any]] = {}
    for d in commands:
        k = (f"{d['provider']}/{d['owner']}/{d['repo']}/{d['job_id']}", int(d.get("attempt") or 1))
        if d.get("category") != "budget":
            first.setdefault(k, d)
    for d in first.values():
        matrix[d["category"]][d["action"]] += 1
    actions = Counter(d["action"] for d in commands)
    would: dict[str, Any] = {}
    for e in executed:
        would.setdefault(e["action"], e["would"])
    return {
        "events": len(rec.messages), "by_topic": rec.by_topic, "rejected": rec.rejected,
        "jobs": len(jobs), "failed_jobs": len(failed), "diagnosed": len(findings),
        "undecided": sorted(f"{k}#{a}" for k, a in failed - set(first))[:50],
        "by_category": {c: dict(v) for c, v in sorted(matrix.items(), key=lambda kv: -sum(kv[1].values()))},
        "by_action": dict(actions.most_common()),
        "automatic": sum(n for a, n in actions.items() if a not in NOTIFY_ACTIONS),
        "notifications": sum(n for a, n in actions.items() if a in NOTIFY_ACTIONS),
        "would": would,
        "dry_run": list(executed),
    }


def print_summary(console: Any, summary: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]backtest[/bold]: {summary['events']:,} events replayed "
                  f"({', '.join(f'{t} {n:,}' for t, n in sorted(summary['by_topic'].items()))}); "
                  f"{summary['jobs']:,} completed jobs, {summary['failed_jobs']:,} failed, "
                  f"{summary['diagnosed']:,} diagnosed", highlight=False)
    if summary["rejected"]:
        console.print(f"[yellow]{len(summary['rejected'])} records rejected[/yellow] (not replayed):", highlight=False)
        for r in summary["rejected"][:10]:
            console.print(f"  {escape(r)}", highlight=False)
    if summary["undecided"]:
        console.print(f"[yellow]{len(summary['undecided'])} failed jobs got no command[/yellow] "
                      f"(e.g. {escape(', '.join(summary['undecided'][:3]))})", highlight=False)
    t = Table(title="what the guard would have done, per failure category", show_header=True)
    t.add_column("category")
    t.add_column("failed jobs", justify="right")
    t.add_column("actions")
    for cat, acts in summary["by_category"].items():
        t.add_row(cat, str(sum(acts.values())), ", ".join(f"{a} {n}" for a, n in sorted(acts.items(), key=lambda kv: -kv[1])))
    console.print(t)
    console.print(f"{summary['automatic']:,} automatic actions, {summary['notifications']:,} notifications; "
                  "the executor, in dry run, would have:", highlight=False)
    for action, detail in summary["would"].items():
        console.print(f"  [green]{escape(action)}[/green]: {escape(detail[:160])}", highlight=False)


def write_json(summary: dict[str, Any], roi: dict[str, Any]) -> bytes:
    return orjson.dumps({**summary, "roi": roi})
