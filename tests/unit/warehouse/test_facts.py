"""Fact builders, the guard.facts JSON envelope and the migration file splitter: no database needed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import TypedDict

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healing_guard.patterns.tokenize import template
from healing_guard.schemas import BudgetSnapshot, Command, Evidence, Finding, JobEvent, Outcome, TestResult, TestRisk
from healing_guard.schemas.records import Provider
from healing_guard.warehouse import facts
from healing_guard.warehouse.migrate import DEFAULT_DDL_DIR, MigrationError, load_migrations, split_statements
from tests.support.paths import ROOT

T0 = 1_760_000_000.0


class _Ref(TypedDict):
    provider: Provider
    owner: str
    repo: str
    job_id: str


REF: _Ref = {"provider": "gitlab", "owner": "acme/platform", "repo": "web", "job_id": "991"}
KEY = "gitlab/acme/platform/web/991"


def _columns(table: str) -> list[str]:
    return [c.name for c in facts.TABLE_COLUMNS[table]]


def test_module_is_pure() -> None:
    """Agents import facts; it must not drag in ClickHouse, Kafka or Faust (checked in a clean interpreter)."""
    code = (
        "import sys, healing_guard.warehouse.facts; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('clickhouse_connect', 'chdb', 'faust', 'aiokafka')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_job_run_fact() -> None:
    ev = JobEvent(**REF, job_name="unit", status="completed", conclusion="failure", attempt=2, exit_code=1,
                  runner_size="linux-4", queued_at=T0, started_at=T0 + 60, completed_at=T0 + 660)
    f = facts.job_run_fact(ev, cost_usd=0.16)
    assert f.table == "job_runs"
    assert list(f.row) == _columns("job_runs")
    assert f.row["id"] == f"{KEY}#2"
    assert f.row["job_key"] == KEY
    assert f.row["duration_minutes"] == 10.0
    assert f.row["cost_usd"] == 0.16
    assert f.row["ts"] == T0 + 660  # latest lifecycle time: a completed event replaces in_progress


def test_job_run_fact_ts_falls_back_to_earlier_times() -> None:
    ev = JobEvent(**REF, job_name="unit", status="in_progress", started_at=T0)
    assert facts.job_run_fact(ev, cost_usd=0).row["ts"] == T0
    ev = JobEvent(**REF, job_name="unit", status="queued")
    assert facts.job_run_fact(ev, cost_usd=0).row["ts"] is None  # the writer stamps ingest time


def test_diagnosis_fact() -> None:
    fi = Finding(**REF, finding_id="f-1", attempt=1, category="oom", confidence=0.9, ts=T0,
                 evidence=[Evidence(line=12, text="Killed process 4711 (java) total-vm:8123456kB", pattern="oom.killed"),
                           Evidence(line=13, text="second", pattern="p")],
                 failed_tests=[TestRisk(test_id="t::a", p_fail=0.1, p_retry_pass=0.9, runs=5)],
                 log_lines=400, log_complete=False)
    f = facts.diagnosis_fact(fi)
    assert f.table == "diagnoses" and list(f.row) == _columns("diagnoses")
    assert f.row["id"] == "f-1"
    assert f.row["top_template"] == template(fi.evidence[0].text)
    assert "4711" not in f.row["top_template"]
    assert orjson.loads(f.row["evidence"])[0] == {"line": 12, "text": fi.evidence[0].text, "pattern": "oom.killed"}
    assert f.row["failed_tests"] == ["t::a"]
    assert f.row["log_complete"] is False
    empty = facts.diagnosis_fact(Finding(**REF, finding_id="f-2", attempt=1))
    assert empty.row["top_template"] is None and empty.row["evidence"] == "[]"


def test_command_fact_flattens_budget() -> None:
    budget = BudgetSnapshot(day="2025-10-09", spent_usd=3.5, daily_budget_usd=50, repo_spent_usd=1.0,
                            repo_budget_usd=10, job_retries=1, max_retries_per_job=3)
    c = Command(**REF, command_id="c-1", attempt=1, action="retry_isolated", reason="flaky", category="test_failure",
                confidence=0.8, parameters={"b": 1, "a": [1, 2]}, budget=budget, estimated_cost_usd=0.12, ts=T0)
    f = facts.command_fact(c)
    assert f.table == "commands" and list(f.row) == _columns("commands")
    assert f.row["id"] == "c-1"
    assert f.row["parameters"] == '{"a":[1,2],"b":1}'  # sorted keys: same command, same text
    assert (f.row["spent_usd"], f.row["repo_budget_usd"], f.row["max_retries_per_job"]) == (3.5, 10, 3)
    nob = facts.command_fact(Command(**REF, command_id="c-2", attempt=1, action="notify_author", reason="r",
                                     category="lint_style", confidence=1.0))
    assert nob.row["budget_day"] is None and nob.row["spent_usd"] is None


def test_outcome_fact_splits_job_key_with_subgroups() -> None:
    o = Outcome(command_id="c-1", job_key=KEY, action="retry_isolated", status="succeeded", http_status=201, ts=T0)
    f = facts.outcome_fact(o)
    assert f.table == "outcomes" and list(f.row) == _columns("outcomes")
    assert (f.row["id"], f.row["owner"], f.row["repo"], f.row["job_id"]) == ("c-1", "acme/platform", "web", "991")
    with pytest.raises(ValueError, match="provider/owner/repo/job_id"):
        facts.outcome_fact(Outcome(command_id="c", job_key="github/x", action="a", status="failed"))


def test_test_result_fact() -> None:
    t = TestResult(**REF, test_id="tests/test_x.py::test_y", outcome="failed", attempt=3, duration_s=1.5, ts=T0)
    f = facts.test_result_fact(t, p_fail=0.25)
    assert f.table == "test_results" and list(f.row) == _columns("test_results")
    assert f.row["id"] == f"{KEY}#3#tests/test_x.py::test_y"
    assert f.row["p_fail"] == 0.25
    assert facts.test_result_fact(t, p_fail=None).row["p_fail"] is None


def test_tables() -> None:
    assert facts.TABLES == ("job_runs", "diagnoses", "commands", "outcomes", "test_results")
    for table, cols in facts.TABLE_COLUMNS.items():
        names = [c.name for c in cols]
        assert names[0] == "id" and "ts" in names and len(set(names)) == len(names), table


def test_json_round_trip() -> None:
    ev = JobEvent(**REF, job_name="unit", status="completed", conclusion="success", completed_at=T0,
                  runner_labels=["a"])
    f = facts.job_run_fact(ev, cost_usd=0.5)
    raw = facts.fact_to_json(f)
    assert orjson.loads(raw)["table"] == "job_runs"
    assert facts.fact_from_json(raw) == f


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"row": {"id": "x"}}', "no string 'table'"),
        (b'{"table": "jobs", "row": {"id": "x"}}', "'jobs' is unknown"),
        (b'{"table": "job_runs"}', "no 'row' object"),
        (b'{"table": "job_runs", "row": []}', "no 'row' object"),
        (b'{"table": "job_runs", "row": {"ts": 1}}', "no non-empty string 'id'"),
        (b'{"table": "job_runs", "row": {"id": ""}}', "no non-empty string 'id'"),
        (b'{"table": "job_runs", "row": {"id": "x"}, "extra": 1}', "unexpected keys: extra"),
    ],
)
def test_bad_json_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        facts.fact_from_json(raw)


def test_split_statements_respects_quotes_and_comments() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE a (x String COMMENT 'semi; colon', y String DEFAULT 'it''s') ENGINE = Memory;
    /* block; comment */
    CREATE VIEW b AS SELECT "we;ird", `q;` FROM a;
    -- trailing comment only
    """
    stmts = split_statements(sql)
    assert len(stmts) == 2
    assert stmts[0].endswith("ENGINE = Memory") and "'semi; colon'" in stmts[0]
    assert stmts[1].startswith("/* block; comment */") and stmts[1].endswith("FROM a")


def test_shipped_migrations_load_in_order() -> None:
    migs = load_migrations(DEFAULT_DDL_DIR)
    assert [m.version for m in migs][:2] == ["001", "002"]
    assert all("{db}" in m.sql for m in migs)


def test_misnamed_migration_refused(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNN_name.sql"):
        load_migrations(tmp_path)
    (tmp_path / "1_x.sql").unlink()
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "001_b.sql").write_text("SELECT 2;")
    with pytest.raises(MigrationError, match="version 001 is also used"):
        load_migrations(tmp_path)


def test_test_result_message_is_redacted() -> None:
    from healing_guard.schemas import TestResult
    from healing_guard.warehouse.facts import test_result_fact

    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    t = TestResult(provider="github", owner="o", repo="r", job_id="1", test_id="t", outcome="failed",
                   message=f"HTTP 401 with Authorization: token {token}")
    row = test_result_fact(t, p_fail=0.1).row
    assert token not in row["message"] and "REDACTED" in row["message"]


def test_many_rows_go_in_few_messages_each_under_the_size_and_come_back_in_order() -> None:
    facts_from_json, facts_to_json_many = facts.facts_from_json, facts.facts_to_json_many
    rows = [{"id": f"job#{i}", "test_id": f"t{i}", "message": "x" * (i % 50)} for i in range(3000)]
    one = facts_to_json_many("test_results", rows)
    assert len(one) == 1
    small = facts_to_json_many("test_results", rows, target_bytes=8_000)
    assert all(len(m) <= 8_000 for m in small)
    assert len(small) <= 2 * (len(one[0]) // 8_000 + 1)  # about as few as the size allows
    for msgs in (one, small):
        back = [f.row for m in msgs for f in facts_from_json(m)]
        assert back == rows
    huge = [{"id": "a", "message": "y" * 20_000}, {"id": "b"}]
    assert [f.row["id"] for m in facts_to_json_many("test_results", huge, target_bytes=8_000)
            for f in facts_from_json(m)] == ["a", "b"]
    assert facts_to_json_many("test_results", []) == []


def _report(n: int, job: str = "7") -> list[TestResult]:
    return [TestResult(provider="gitlab", owner="grp/sub", repo="svc", job_id=job, test_id=f"pkg/t.py::test_{i}",
                       outcome="failed" if i % 7 == 0 else "passed", attempt=2,
                       duration_s=None if i % 5 == 0 else 0.5 * i, ts=1_767_225_600.0 + i,
                       message=("E" * 5000 if i == 14 else f"boom {i}") if i % 7 == 0 else None)
            for i in range(n)]


def test_a_reports_rows_as_columns_come_back_as_the_same_rows_in_half_the_bytes() -> None:
    from healing_guard.warehouse.facts import facts_to_json_columns, test_result_columns, test_result_rows

    results = _report(2000)
    p_fails = [None if i % 3 == 0 else i / 2000 for i in range(2000)]
    rows = test_result_rows(results, p_fails)
    columns = test_result_columns(results, p_fails)
    assert columns is not None
    msgs = facts_to_json_columns("test_results", *columns)
    assert len(msgs) == 1
    back = facts.facts_from_json(msgs[0])
    assert [f.table for f in back] == ["test_results"] * 2000
    assert [f.row for f in back] == rows  # every field of every row, the 4,000-character message cut too
    assert len(msgs[0]) < 0.6 * sum(len(m) for m in facts.facts_to_json_many("test_results", rows))
    small = facts_to_json_columns("test_results", *columns, target_bytes=8_000)
    assert len(small) > 10 and all(len(m) <= 8_000 for m in small)
    assert [f.row for m in small for f in facts.facts_from_json(m)] == rows  # in order
    one_big = facts_to_json_columns("test_results", columns[0], {k: v[14:15] for k, v in columns[1].items()},
                                    target_bytes=1_000)
    assert len(one_big) == 1 and [f.row for f in facts.facts_from_json(one_big[0])] == rows[14:15]
    assert facts_to_json_columns("test_results", columns[0], {k: [] for k in columns[1]}) == []


def test_results_of_two_jobs_or_attempts_are_not_columns() -> None:
    from dataclasses import replace

    from healing_guard.warehouse.facts import test_result_columns

    results = _report(3)
    assert test_result_columns(results, [None] * 3) is not None
    assert test_result_columns([*results, *_report(1, job="8")], [None] * 4) is None
    assert test_result_columns([*results, replace(results[0], attempt=3)], [None] * 4) is None
    assert test_result_columns([], []) is None


@pytest.mark.parametrize(("message", "says"), [
    ({"table": "test_results", "columns": {"id": ["a"], "x": [1, 2]}}, "column 'x' has 2 values, column 'id' has 1"),
    ({"table": "test_results", "columns": {"id": "a"}}, "column 'id' must be a list"),
    ({"table": "test_results", "columns": {}}, "'columns' must be a non-empty object"),
    ({"table": "test_results", "columns": [["a"]]}, "'columns' must be a non-empty object"),
    ({"table": "test_results", "shared": [1], "columns": {"id": ["a"]}}, "'shared' must be an object"),
    ({"table": "test_results", "shared": {"id": "s"}, "columns": {"id": ["a"]}}, "'id' is both shared and a column"),
    ({"table": "test_results", "columns": {"id": ["a", ""]}}, "no non-empty string 'id' in row 1 of the columns"),
    ({"table": "test_results", "columns": {"test_id": ["a"]}}, "no non-empty string 'id' in row 0"),
    ({"table": "nope", "columns": {"id": ["a"]}}, "fact table 'nope' is unknown"),
    ({"table": "test_results", "columns": {"id": ["a"]}, "rows": []}, "unexpected keys: rows"),
])
def test_a_bad_columns_message_says_what_is_wrong(message: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        facts.facts_from_json(orjson.dumps(message))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None, database=None)
@given(st.data())
def test_any_facts_message_is_rows_or_a_value_error(data: st.DataObject) -> None:
    """The fact writer dead-letters a message facts_from_json refuses with ValueError; anything else would
    stop it. Messages near the three forms (one field replaced or added) and arbitrary JSON."""
    from healing_guard.warehouse.facts import facts_to_json_columns, test_result_columns

    columns = test_result_columns(_report(3), [0.1] * 3)
    assert columns is not None
    seeds = [orjson.loads(facts_to_json_columns("test_results", *columns)[0]),
             {"table": "test_results", "rows": [{"id": "a", "x": 1}, {"id": "b"}]},
             {"table": "test_results", "row": {"id": "a"}}]
    msg = data.draw(st.sampled_from(seeds))
    how = data.draw(st.integers(0, 3))
    if how == 0:  # a top-level field replaced or added
        field = data.draw(st.sampled_from(["table", "shared", "columns", "rows", "row", "x"]))
        msg = {**msg, field: data.draw(_JSON)}
    elif how == 1 and "columns" in msg:  # one column replaced or added
        column = data.draw(st.sampled_from(["id", "test_id", "new"]))
        msg = {**msg, "columns": {**msg["columns"], column: data.draw(_JSON)}}
    elif how == 2:
        msg = data.draw(_JSON)
    try:
        out = facts.facts_from_json(orjson.dumps(msg))
    except ValueError:
        return
    assert all(isinstance(f.row.get("id"), str) and f.row["id"] for f in out)
