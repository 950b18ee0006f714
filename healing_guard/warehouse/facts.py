"""Facts: the rows the guard writes to ClickHouse, built from topic records by pure functions.

A :class:`Fact` is one row for one table. Agents build facts and send them over the internal topic
``guard.facts`` as JSON (:func:`fact_to_json`); the sink decodes them (:func:`fact_from_json`) and hands
batches to :class:`healing_guard.warehouse.writer.FactWriter`. Keeping the builders pure (no ClickHouse,
Kafka or Faust import) lets every agent and unit test use them without a database.

Every fact has a deterministic ``id``: the tables are ReplacingMergeTree ordered by ``(owner, repo, id)``
and queried with ``FINAL``, so a fact delivered twice (at-least-once Kafka delivery, a replayed stream,
a restarted worker) counts once. Times are Unix seconds (float) in rows and ``DateTime64(3, 'UTC')``
in ClickHouse; the writer converts. ``ts`` is every table's event time: the partition key and the
ReplacingMergeTree version (the latest event about an id wins, whatever order duplicates arrive in).

:data:`TABLE_COLUMNS` is the one place listing each table's columns; the DDL in
``infra/clickhouse/migrations`` must match it (an integration test checks that).

Every free-text column (evidence, templates, test ids and messages, command reasons and parameters,
outcome details, job names, workflows, branches) goes through :func:`~healing_guard.patterns.tokenize.redact`
here, whatever the builder was given: secrets never reach ClickHouse. Text that has none comes back
as the same object after a few substring tests, so this costs next to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from healing_guard.patterns.tokenize import redact, redact_job, template
from healing_guard.schemas.records import Command, Evidence, Finding, JobEvent, Outcome, TestResult

Kind = Literal["str", "int", "float", "bool", "time", "strs"]


@dataclass(frozen=True)
class Column:
    """One column of a fact table: what Python values it holds and whether it may be null.

    The writer uses ``kind`` to convert values (``time``: Unix seconds to ClickHouse DateTime64) and to
    fill a missing non-nullable column with a neutral default instead of failing a whole batch.
    """

    name: str
    kind: Kind
    nullable: bool = False


@dataclass(frozen=True)
class Fact:
    """One row for one warehouse table. ``row`` values are JSON-serialisable; times are Unix seconds."""

    table: str
    row: dict[str, Any]


def _c(name: str, kind: Kind = "str", nullable: bool = False) -> Column:
    return Column(name, kind, nullable)


_JOB_REF = (_c("id"), _c("job_key"), _c("provider"), _c("owner"), _c("repo"), _c("job_id"))

TABLE_COLUMNS: dict[str, tuple[Column, ...]] = {
    "job_runs": (
        *_JOB_REF,
        _c("job_name"),
        _c("workflow", nullable=True),
        _c("run_id", nullable=True),
        _c("attempt", "int"),
        _c("conclusion", nullable=True),
        _c("exit_code", "int", nullable=True),
        _c("runner_size", nullable=True),
        _c("branch", nullable=True),
        _c("head_sha", nullable=True),
        _c("queued_at", "time", nullable=True),
        _c("started_at", "time", nullable=True),
        _c("completed_at", "time", nullable=True),
        _c("duration_minutes", "float"),
        _c("cost_usd", "float"),
        _c("ts", "time"),
    ),
    "diagnoses": (
        *_JOB_REF,
        _c("attempt", "int"),
        _c("category"),
        _c("confidence", "float"),
        _c("evidence"),
        _c("top_template", nullable=True),
        _c("exit_code", "int", nullable=True),
        _c("failed_tests", "strs"),
        _c("log_lines", "int"),
        _c("log_complete", "bool"),
        _c("ts", "time"),
    ),
    "commands": (
        *_JOB_REF,
        _c("attempt", "int"),
        _c("run_id", nullable=True),
        _c("action"),
        _c("category"),
        _c("confidence", "float"),
        _c("reason"),
        _c("parameters"),
        _c("estimated_cost_usd", "float"),
        _c("budget_day", nullable=True),
        _c("spent_usd", "float", nullable=True),
        _c("daily_budget_usd", "float", nullable=True),
        _c("repo_spent_usd", "float", nullable=True),
        _c("repo_budget_usd", "float", nullable=True),
        _c("job_retries", "int", nullable=True),
        _c("max_retries_per_job", "int", nullable=True),
        _c("ts", "time"),
    ),
    "outcomes": (
        *_JOB_REF,
        _c("action"),
        _c("status"),
        _c("detail"),
        _c("http_status", "int", nullable=True),
        _c("ts", "time"),
    ),
    "test_results": (
        *_JOB_REF,
        _c("attempt", "int"),
        _c("test_id"),
        _c("outcome"),
        _c("duration_s", "float", nullable=True),
        _c("message", nullable=True),
        _c("p_fail", "float", nullable=True),
        _c("ts", "time"),
    ),
}

TABLES: tuple[str, ...] = tuple(TABLE_COLUMNS)

# A template is a grouping key, not a log store: keep it short.
_TEMPLATE_MAX = 500


def _template(line: str) -> str:
    """The pattern library's template (numbers, hex ids, paths… masked) so that the same failure in
    different runs groups under one ``top_template``."""
    return template(line.strip())[:_TEMPLATE_MAX]


def _redact_opt(text: str | None) -> str | None:
    return None if text is None else redact(text)


def _job_ref(provider: str, owner: str, repo: str, job_id: str) -> dict[str, Any]:
    return {
        "job_key": f"{provider}/{owner}/{repo}/{job_id}",
        "provider": provider,
        "owner": owner,
        "repo": repo,
        "job_id": job_id,
    }


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_DATACLASS | orjson.OPT_SORT_KEYS).decode()


def job_run_fact(ev: JobEvent, *, cost_usd: float) -> Fact:
    """One job attempt. Lifecycle events of one attempt share an id; the latest ``ts`` wins.

    ``ts`` is the latest known lifecycle time (completed, else started, else queued), so a
    ``completed`` event replaces an earlier ``in_progress`` row under FINAL. When the event carries
    no time at all ``ts`` is None and the writer stamps the ingest time.
    """
    ref = _job_ref(ev.provider, ev.owner, ev.repo, ev.job_id)
    ev = redact_job(ev)  # job name, workflow, run id, branch: free text
    row: dict[str, Any] = {
        "id": f"{ref['job_key']}#{ev.attempt}",
        **ref,
        "job_name": ev.job_name,
        "workflow": ev.workflow,
        "run_id": ev.run_id,
        "attempt": ev.attempt,
        "conclusion": ev.conclusion,
        "exit_code": ev.exit_code,
        "runner_size": ev.runner_size,
        "branch": ev.branch,
        "head_sha": ev.head_sha,
        "queued_at": ev.queued_at,
        "started_at": ev.started_at,
        "completed_at": ev.completed_at,
        "duration_minutes": ev.duration_minutes,
        "cost_usd": float(cost_usd),
        "ts": _first_time(ev.completed_at, ev.started_at, ev.queued_at),
    }
    return Fact("job_runs", row)


def _first_time(*times: float | None) -> float | None:
    for t in times:
        if t is not None:
            return t
    return None


def _evidence_json(evidence: list[Evidence]) -> str:
    return _json_text([{"line": e.line, "text": redact(e.text), "pattern": e.pattern} for e in evidence])


def diagnosis_fact(f: Finding) -> Fact:
    """One diagnosis; evidence kept as JSON text so analysts can read why without a join."""
    row: dict[str, Any] = {
        "id": f.finding_id,
        **_job_ref(f.provider, f.owner, f.repo, f.job_id),
        "attempt": f.attempt,
        "category": f.category,
        "confidence": float(f.confidence),
        "evidence": _evidence_json(f.evidence),
        # redacted before templating too: masking numbers could hide a secret's shape from redact()
        "top_template": _redact_opt(f.signature or (_template(redact(f.evidence[0].text)) if f.evidence else None)),
        "exit_code": f.exit_code,
        "failed_tests": [redact(t.test_id) for t in f.failed_tests],
        "log_lines": f.log_lines,
        "log_complete": f.log_complete,
        "ts": f.ts,
    }
    return Fact("diagnoses", row)


def command_fact(c: Command) -> Fact:
    """One remediation command, with the budget it was decided under flattened into columns.

    Flattening (rather than a JSON blob) lets the ROI views sum spend against budget directly.
    """
    b = c.budget
    row: dict[str, Any] = {
        "id": c.command_id,
        **_job_ref(c.provider, c.owner, c.repo, c.job_id),
        "attempt": c.attempt,
        "run_id": c.run_id,
        "action": c.action,
        "category": c.category,
        "confidence": float(c.confidence),
        "reason": redact(c.reason),
        "parameters": redact(_json_text(c.parameters)),
        "estimated_cost_usd": float(c.estimated_cost_usd),
        "budget_day": b.day if b else None,
        "spent_usd": b.spent_usd if b else None,
        "daily_budget_usd": b.daily_budget_usd if b else None,
        "repo_spent_usd": b.repo_spent_usd if b else None,
        "repo_budget_usd": b.repo_budget_usd if b else None,
        "job_retries": b.job_retries if b else None,
        "max_retries_per_job": b.max_retries_per_job if b else None,
        "ts": c.ts,
    }
    return Fact("commands", row)


def split_job_key(key: str) -> tuple[str, str, str, str]:
    """``provider/owner/repo/job_id`` back into its parts; owner may hold '/' (GitLab subgroups).

    Raises ValueError when the key has fewer than four parts.
    """
    parts = key.split("/")
    if len(parts) < 4 or not all(parts):
        raise ValueError(f"job key {key!r} is not provider/owner/repo/job_id")
    return parts[0], "/".join(parts[1:-2]), parts[-2], parts[-1]


def outcome_fact(o: Outcome) -> Fact:
    """What a command achieved. Same id as its command, so the two join on ``id``."""
    provider, owner, repo, job_id = split_job_key(o.job_key)
    row: dict[str, Any] = {
        "id": o.command_id,
        **_job_ref(provider, owner, repo, job_id),
        "action": o.action,
        "status": o.status,
        "detail": redact(o.detail),  # a platform's error answer may quote a request
        "http_status": o.http_status,
        "ts": o.ts,
    }
    return Fact("outcomes", row)


#: a test result's failure message is kept up to this many characters
TEST_MESSAGE_CHARS = 4000


def _test_id_prefix(job_key: str, attempt: int) -> str:
    """A test result fact's id is this and the test id: one row per test, attempt and job."""
    return f"{job_key}#{attempt}#"


def test_result_fact(t: TestResult, *, p_fail: float | None) -> Fact:
    """One test in one attempt, with the per-test model's P(fail) as it stood before learning it."""
    ref = _job_ref(t.provider, t.owner, t.repo, t.job_id)
    # secrets never reach ClickHouse
    message = None if t.message is None else redact(t.message[:TEST_MESSAGE_CHARS])
    return Fact("test_results", _test_row(ref, t, redact(t.test_id), message, p_fail))


test_result_fact.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def _test_row(ref: dict[str, Any], t: TestResult, test_id: str, message: str | None,
              p_fail: float | None) -> dict[str, Any]:
    return {"id": _test_id_prefix(ref["job_key"], t.attempt) + test_id, **ref, "attempt": t.attempt, "test_id": test_id,
            "outcome": t.outcome, "duration_s": t.duration_s, "message": message,
            "p_fail": None if p_fail is None else float(p_fail), "ts": t.ts}


def test_result_rows(results: list[TestResult], p_fails: list[float | None]) -> list[dict[str, Any]]:
    """The rows of :func:`test_result_fact` of many results already redacted (a batch of the test agent),
    the job's fields built once per job rather than once per row."""
    refs: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    rows = []
    for t, p in zip(results, p_fails):
        jk = (t.provider, t.owner, t.repo, t.job_id)
        ref = refs.get(jk)
        if ref is None:
            ref = refs[jk] = _job_ref(*jk)
        rows.append(_test_row(ref, t, t.test_id, None if t.message is None else t.message[:TEST_MESSAGE_CHARS], p))
    return rows


test_result_rows.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def test_result_columns(results: list[TestResult],
                        p_fails: list[float | None]) -> tuple[dict[str, Any], dict[str, list[Any]]] | None:
    """:func:`test_result_rows` as ``(shared, columns)`` for :func:`facts_to_json_columns` when every result
    is of one job attempt (a batch of the test agent: one report), else None. The same rows, without the
    job's fields and the key names repeated in each."""
    if not results:
        return None
    first = results[0]
    job = (first.provider, first.owner, first.repo, first.job_id, first.attempt)
    if any((t.provider, t.owner, t.repo, t.job_id, t.attempt) != job for t in results):
        return None
    shared = {**_job_ref(*job[:4]), "attempt": first.attempt}
    prefix = _test_id_prefix(shared["job_key"], first.attempt)
    ids = [t.test_id for t in results]
    return shared, {
        "id": [prefix + tid for tid in ids], "test_id": ids, "outcome": [t.outcome for t in results],
        "duration_s": [t.duration_s for t in results],
        "message": [None if t.message is None else t.message[:TEST_MESSAGE_CHARS] for t in results],
        "p_fail": [None if p is None else float(p) for p in p_fails], "ts": [t.ts for t in results]}


test_result_columns.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def fact_to_json(f: Fact) -> bytes:
    """The ``guard.facts`` message value: ``{"table": ..., "row": {...}}``."""
    return orjson.dumps({"table": f.table, "row": f.row})


#: a message of many rows (:func:`facts_to_json_many`) is cut at about this many bytes
FACTS_MESSAGE_BYTES = 512 * 1024


def facts_to_json_many(table: str, rows: list[dict[str, Any]], *,
                       target_bytes: int = FACTS_MESSAGE_BYTES) -> list[bytes]:
    """Rows of one table as few ``guard.facts`` messages as possible: ``{"table": ..., "rows": [...]}``, each
    at most about ``target_bytes`` (a batch of test results writes one row per result)."""
    out: list[bytes] = []
    head = b'{"table":%s,"rows":[' % orjson.dumps(table)
    if not rows:
        return out
    whole = orjson.dumps(rows)  # the usual case: one call for a batch's rows, which fit in a message or two
    if len(head) + len(whole) <= target_bytes:
        return [head + whole[1:-1] + b"]}"]
    if len(rows) > 1 and len(whole) < 16 * target_bytes:
        half = len(rows) // 2
        return (facts_to_json_many(table, rows[:half], target_bytes=target_bytes)
                + facts_to_json_many(table, rows[half:], target_bytes=target_bytes))
    cur: list[bytes] = []
    size = len(head)
    for row in rows:
        b = orjson.dumps(row)
        if cur and size + len(b) > target_bytes:
            out.append(head + b",".join(cur) + b"]}")
            cur, size = [], len(head)
        cur.append(b)
        size += len(b) + 1
    if cur:
        out.append(head + b",".join(cur) + b"]}")
    return out


def facts_to_json_columns(table: str, shared: dict[str, Any], columns: dict[str, list[Any]], *,
                          target_bytes: int = FACTS_MESSAGE_BYTES) -> list[bytes]:
    """Rows of one table as columns, in as few ``guard.facts`` messages as possible:
    ``{"table": ..., "shared": {field: value of every row}, "columns": {field: [a value per row]}}``, each
    at most about ``target_bytes`` (a message of one row may be larger). For a batch of test results about
    half the bytes of :func:`facts_to_json_many`'s rows, and cheaper to encode. Read by
    :func:`facts_from_json` as the same rows."""
    n = len(next(iter(columns.values()), []))
    if not n:
        return []
    whole = orjson.dumps({"table": table, "shared": shared, "columns": columns})
    if len(whole) <= target_bytes or n == 1:
        return [whole]
    parts = min(n, -(-len(whole) // target_bytes))  # about even cuts; each cut again if it is still too large
    step = -(-n // parts)
    return [m for i in range(0, n, step)
            for m in facts_to_json_columns(table, shared, {k: v[i:i + step] for k, v in columns.items()},
                                           target_bytes=target_bytes)]


def _column_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of a message of :func:`facts_to_json_columns`; ValueError naming what is wrong."""
    shared = data.get("shared", {})
    if not isinstance(shared, Mapping):
        raise ValueError("facts' 'shared' must be an object")
    columns = data["columns"]
    if not isinstance(columns, Mapping) or not columns:
        raise ValueError("facts' 'columns' must be a non-empty object of lists")
    names = list(columns)
    values = list(columns.values())
    n = len(values[0]) if isinstance(values[0], list) else -1
    for name, col in zip(names, values):
        if not isinstance(col, list):
            raise ValueError(f"facts' column {name!r} must be a list")
        if len(col) != n:
            raise ValueError(f"facts' column {name!r} has {len(col)} values, column {names[0]!r} has {n}")
        if name in shared:
            raise ValueError(f"facts' field {name!r} is both shared and a column")
    return [{**shared, **dict(zip(names, row))} for row in zip(*values)]


def _fact(table: Any, row: Any, where: str = "") -> Fact:
    if not isinstance(table, str):
        raise ValueError("fact has no string 'table'")
    if table not in TABLE_COLUMNS:
        raise ValueError(f"fact table {table!r} is unknown; known tables: {', '.join(TABLES)}")
    if not isinstance(row, dict):
        raise ValueError(f"fact for table {table!r} has no {where or repr('row')} object")
    rid = row.get("id")
    if not isinstance(rid, str) or not rid:
        raise ValueError(f"fact for table {table!r} has no non-empty string 'id'{' in ' + where if where else ''}")
    return Fact(table, row)


def facts_from_json(raw: bytes) -> list[Fact]:
    """Decode a ``guard.facts`` message, one fact (:func:`fact_to_json`) or many rows of one table, as rows
    (:func:`facts_to_json_many`) or as columns (:func:`facts_to_json_columns`); ValueError with the reason
    when it is not facts.

    Only the envelope is checked here (table known, every row an object with a non-empty string ``id``);
    column values are the writer's business, so a new optional column needs no change here.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"fact is not valid JSON/UTF-8: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"fact must be a JSON object, got {type(data).__name__}")
    if "columns" in data:
        extra = set(data) - {"table", "shared", "columns"}
        if extra:
            raise ValueError(f"facts have unexpected keys: {', '.join(sorted(extra))}")
        return [_fact(data.get("table"), row, f"row {i} of the columns") for i, row in enumerate(_column_rows(data))]
    if "rows" in data:
        extra = set(data) - {"table", "rows"}
        if extra:
            raise ValueError(f"facts have unexpected keys: {', '.join(sorted(extra))}")
        rows = data["rows"]
        if not isinstance(rows, list):
            raise ValueError("facts' 'rows' must be a list")
        return [_fact(data.get("table"), row, f"rows[{i}]") for i, row in enumerate(rows)]
    extra = set(data) - {"table", "row"}
    fact = _fact(data.get("table"), data.get("row"))
    if extra:
        raise ValueError(f"fact has unexpected keys: {', '.join(sorted(extra))}")
    return [fact]


def fact_from_json(raw: bytes) -> Fact:
    """Decode a one-fact ``guard.facts`` message (see :func:`facts_from_json`)."""
    facts = facts_from_json(raw)
    if len(facts) != 1:
        raise ValueError(f"expected one fact, got {len(facts)}")
    return facts[0]
