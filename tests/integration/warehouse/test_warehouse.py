"""The warehouse against a real ClickHouse engine (chDB, in this process).

chDB opens one data directory per process, so every test shares ONE client on ONE session directory
(``<basetemp>/chdb``, the ``ch_client`` fixture of tests/conftest.py) and isolates itself with a random
database that it drops afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("chdb", reason="chDB is the [embedded] extra")

from healing_guard.schemas import BudgetSnapshot, Command, Evidence, Finding, JobEvent, Outcome, TestResult  # noqa: E402
from healing_guard.warehouse import (  # noqa: E402
    TABLE_COLUMNS,
    Fact,
    FactWriter,
    MigrationError,
    WarehouseConnectionError,
    command_fact,
    connect,
    diagnosis_fact,
    job_run_fact,
    migrate,
    outcome_fact,
    test_result_fact,
)
from healing_guard.warehouse.migrate import DEFAULT_DDL_DIR  # noqa: E402
from healing_guard.warehouse.read import WarehouseReader  # noqa: E402

from tests.integration.helpers import hold_chdb  # noqa: E402
from tests.support.paths import ROOT

pytestmark = pytest.mark.integration

# Recent times: facts far in the past would still be kept (TTL runs on ingested_at), but keep the data
# realistic for the partitioning.
NOW = float(int(time.time()))


def _count(client: Any, db: str, table: str, final: bool = True) -> int:
    return int(client.command(f"SELECT count() FROM {db}.{table}{' FINAL' if final else ''}"))


def _job(job_id: str, conclusion: str, minutes: float, *, repo: str = "web", attempt: int = 1) -> JobEvent:
    return JobEvent(provider="github", owner="acme", repo=repo, job_id=job_id, job_name="test", status="completed",
                    conclusion=conclusion, attempt=attempt,  # type: ignore[arg-type]
                    started_at=NOW - minutes * 60, completed_at=NOW)


def _command(job_id: str, action: str, cost: float, *, category: str = "test_failure", repo: str = "web") -> Command:
    return Command(provider="github", owner="acme", repo=repo, job_id=job_id, command_id=f"cmd-{job_id}-{action}",
                   attempt=1, action=action, reason="because", category=category, confidence=0.9,
                   estimated_cost_usd=cost, ts=NOW,
                   budget=BudgetSnapshot(day="2025-01-01", spent_usd=1.0, daily_budget_usd=50.0, repo_spent_usd=0.5,
                                         repo_budget_usd=10.0, job_retries=0, max_retries_per_job=3))


def _finding(job_id: str, category: str, repo: str = "web") -> Finding:
    return Finding(provider="github", owner="acme", repo=repo, job_id=job_id, finding_id=f"f-{job_id}", attempt=1,
                   category=category, confidence=0.9, ts=NOW,
                   evidence=[Evidence(line=3, text="error 0xdeadbeef at 12", pattern="p")])


def test_migrate_twice_applies_nothing_the_second_time(ch_client: Any, db: str) -> None:
    assert migrate(ch_client, db) == ["001", "002", "003", "004"]
    assert migrate(ch_client, db) == []
    recorded = ch_client.query(f"SELECT version, checksum FROM {db}.schema_migrations FINAL ORDER BY version")
    assert [r[0] for r in recorded.result_rows] == ["001", "002", "003", "004"]


def test_ddl_matches_fact_columns(ch_client: Any, migrated: str) -> None:
    """facts.TABLE_COLUMNS and the DDL are written by hand in two places; keep them in step."""
    for table, cols in TABLE_COLUMNS.items():
        rows = ch_client.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
            parameters={"db": migrated, "t": table},
        ).result_rows
        types = dict(rows)
        assert set(types) == {c.name for c in cols} | {"ingested_at"}, table
        for c in cols:
            assert types[c.name].startswith("Nullable") or "(Nullable" in types[c.name] or not c.nullable, c
            assert not (c.kind == "time") or "DateTime64(3, 'UTC')" in types[c.name], c
        engine = ch_client.command(
            f"SELECT engine_full FROM system.tables WHERE database = '{migrated}' AND name = '{table}'"
        )
        assert "ReplacingMergeTree(ts)" in engine and "ORDER BY (owner, repo, id)" in engine, engine


def test_changed_checksum_refused_and_new_file_applied(ch_client: Any, db: str, tmp_path: Path) -> None:
    ddl = tmp_path / "ddl"
    shutil.copytree(DEFAULT_DDL_DIR, ddl)
    assert migrate(ch_client, db, ddl) == ["001", "002", "003", "004"]
    (ddl / "900_extra.sql").write_text(
        "CREATE TABLE IF NOT EXISTS {db}.extra (x String COMMENT 'a; b') ENGINE = MergeTree ORDER BY x;\n"
        "ALTER TABLE {db}.extra ADD COLUMN IF NOT EXISTS y UInt8;\n"
    )
    assert migrate(ch_client, db, ddl) == ["900"]
    assert ch_client.command(f"SELECT count() FROM system.columns WHERE database = '{db}' AND table = 'extra'") == 2
    with open(ddl / "001_facts.sql", "a") as fh:
        fh.write("\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError, match=r"001_facts\.sql was applied .* new NNN_\*\.sql"):
        migrate(ch_client, db, ddl)


def test_failed_statement_names_the_file(ch_client: Any, db: str, tmp_path: Path) -> None:
    (tmp_path / "001_bad.sql").write_text("CREATE TABLE {db}.t (x Strin) ENGINE = Memory;\n")
    with pytest.raises(MigrationError, match=r"001_bad\.sql, statement 1"):
        migrate(ch_client, db, tmp_path)
    assert ch_client.command(f"SELECT count() FROM {db}.schema_migrations") == 0


def _sample_batch() -> list[Fact]:
    out: list[Fact] = []
    for i in range(50):
        out.append(job_run_fact(_job(str(i), "failure" if i % 5 == 0 else "success", 2.0), cost_usd=0.016))
        out.append(test_result_fact(
            TestResult(provider="github", owner="acme", repo="web", job_id=str(i), test_id=f"t{i}", outcome="passed",
                       ts=NOW), p_fail=0.1))
    out.append(diagnosis_fact(_finding("0", "oom")))
    out.append(command_fact(_command("0", "retry_more_memory", 0.05)))
    out.append(outcome_fact(Outcome(command_id="cmd-0-retry_more_memory", job_key="github/acme/web/0",
                                    action="retry_more_memory", status="succeeded", ts=NOW)))
    return out


def test_duplicates_are_not_counted_twice(ch_client: Any, migrated: str) -> None:
    writer = FactWriter(ch_client, migrated)
    batch = _sample_batch()
    assert writer.write(batch) == len(batch)
    assert writer.write(batch) == len(batch)  # the sink restarted before committing: same batch again
    assert _count(ch_client, migrated, "job_runs", final=False) == 100  # really stored twice…
    expected = {"job_runs": 50, "test_results": 50, "diagnoses": 1, "commands": 1, "outcomes": 1}
    for table, n in expected.items():
        assert _count(ch_client, migrated, table) == n, table  # …counted once
    assert WarehouseReader(ch_client, migrated).report()["jobs"] == 50


def test_latest_event_wins(ch_client: Any, migrated: str) -> None:
    writer = FactWriter(ch_client, migrated)
    done = job_run_fact(_job("7", "failure", 3.0), cost_usd=0.3)
    running = job_run_fact(JobEvent(provider="github", owner="acme", repo="web", job_id="7", job_name="test",
                                    status="in_progress", started_at=NOW - 180), cost_usd=0.0)
    writer.write([done])
    writer.write([running])  # arrives late: an older event must not replace the completed one
    row = ch_client.query(f"SELECT conclusion, cost_usd FROM {migrated}.job_runs FINAL").result_rows
    assert row == [("failure", 0.3)]


def test_duplicates_in_different_partitions_collapse(ch_client: Any, migrated: str) -> None:
    """A command re-decided after a restart keeps its id but may get a ts in the next month."""
    writer = FactWriter(ch_client, migrated)
    first = command_fact(_command("5", "retry_isolated", 0.05))
    later = Fact("commands", {**first.row, "ts": NOW + 40 * 86400, "reason": "re-decided"})
    writer.write([later])
    writer.write([first])
    assert ch_client.command(f"SELECT uniqExact(_partition_id) FROM {migrated}.commands") == 2
    rows = ch_client.query(f"SELECT reason FROM {migrated}.commands FINAL").result_rows
    assert rows == [("re-decided",)]


def test_missing_optional_columns_and_times(ch_client: Any, migrated: str) -> None:
    writer = FactWriter(ch_client, migrated)
    writer.write([Fact("outcomes", {"id": "c-9", "provider": "github", "owner": "acme", "repo": "web",
                                    "new_column_not_yet_migrated": 1})])
    row = ch_client.query(
        f"SELECT status, http_status, detail, ts > now64(3) - INTERVAL 1 MINUTE FROM {migrated}.outcomes FINAL"
    ).result_rows
    assert row == [("", None, "", True)]  # missing ts: stamped with the ingest time
    writer.write([job_run_fact(_job("t", "success", 1.5), cost_usd=0.0)])
    got = ch_client.query(
        f"SELECT toUnixTimestamp64Milli(completed_at), toUnixTimestamp64Milli(started_at), queued_at "
        f"FROM {migrated}.job_runs FINAL"
    ).result_rows
    assert got == [(int(NOW * 1000), int((NOW - 90) * 1000), None)]


def test_unknown_table_refused_before_writing(ch_client: Any, migrated: str) -> None:
    writer = FactWriter(ch_client, migrated)
    good = job_run_fact(_job("1", "success", 1.0), cost_usd=0.0)
    with pytest.raises(ValueError, match="'nope'"):
        writer.write([good, Fact("nope", {"id": "x"})])
    assert _count(ch_client, migrated, "job_runs") == 0


def test_legacy_roi_daily_view_known_answers(ch_client: Any, migrated: str) -> None:
    jobs = [
        job_run_fact(_job("1", "failure", 10.0), cost_usd=0.08),
        job_run_fact(_job("2", "timed_out", 30.0), cost_usd=0.24),
        job_run_fact(_job("3", "success", 5.0), cost_usd=0.04),
        job_run_fact(_job("4", "failure", 2.0, repo="api"), cost_usd=0.02),
        job_run_fact(_job("1", "success", 4.0, attempt=2), cost_usd=0.03),  # the successful retry of job 1
    ]
    diagnoses = [diagnosis_fact(_finding("1", "test_failure")), diagnosis_fact(_finding("2", "infra_timeout")),
                 diagnosis_fact(_finding("4", "lint_style", repo="api"))]
    commands = [command_fact(_command("1", "retry_isolated", 0.05)),
                command_fact(_command("2", "retry_backoff", 0.25)),
                command_fact(_command("4", "notify_author", 0.0, category="lint_style", repo="api"))]
    outcomes = [outcome_fact(Outcome(command_id="cmd-1-retry_isolated", job_key="github/acme/web/1",
                                     action="retry_isolated", status="succeeded", ts=NOW)),
                outcome_fact(Outcome(command_id="cmd-2-retry_backoff", job_key="github/acme/web/2",
                                     action="retry_backoff", status="failed", ts=NOW)),
                outcome_fact(Outcome(command_id="cmd-4-notify_author", job_key="github/acme/api/4",
                                     action="notify_author", status="succeeded", ts=NOW))]
    batch = jobs + diagnoses + commands + outcomes
    writer = FactWriter(ch_client, migrated)
    writer.write(batch)
    writer.write(batch[::2])  # partial re-delivery

    daily = ch_client.query(
        f"SELECT repo, jobs, failed_jobs, round(ci_minutes, 6), commands, auto_commands, round(retry_cost_usd, 6) "
        f"FROM {migrated}.roi_daily ORDER BY repo"
    ).result_rows
    assert daily == [("api", 1, 1, 2.0, 1, 0, 0.0), ("web", 4, 2, 49.0, 2, 2, 0.3)]


def test_report_of_an_empty_warehouse(ch_client: Any, migrated: str) -> None:
    roi = WarehouseReader(ch_client, migrated).report()
    assert roi["jobs"] == 0 and roi["auto_commands"] == 0 and roi["failures_by_category"] == {}
    assert roi["mttg_minutes"] is None and roi["recovery_rate"] is None and roi["budget"] == []


def test_ten_thousand_facts_go_in_one_insert_per_table(ch_client: Any, migrated: str) -> None:
    """10k facts are two column-oriented INSERTs, one per table, not 10k (what makes them fast; the
    rows/s, against one INSERT per row: benchmarks/ingest.py)."""
    batch = [job_run_fact(_job(str(i), "failure", 1.0), cost_usd=0.01) for i in range(5_000)]
    batch += [command_fact(_command(str(i), "retry_isolated", 0.01)) for i in range(5_000)]
    inserts: list[tuple[str, int]] = []

    class CountingClient:
        def insert(self, table: str, data: Any, **kw: Any) -> Any:
            inserts.append((table, len(data[0])))
            return ch_client.insert(table, data, **kw)

        def __getattr__(self, name: str) -> Any:
            return getattr(ch_client, name)

    writer = FactWriter(CountingClient(), migrated)
    writer.write(batch[:2])  # warm-up: reads the column types once
    inserts.clear()
    assert writer.write(batch) == 10_000
    assert sorted(inserts) == [("commands", 5_000), ("job_runs", 5_000)]
    assert _count(ch_client, migrated, "commands") == 5_000
    assert _count(ch_client, migrated, "job_runs") == 5_000  # the warm-up wrote two of the same facts


def test_second_chdb_directory_in_this_process_is_explained(ch_client: Any, tmp_path: Path) -> None:
    with pytest.raises(WarehouseConnectionError, match="one data directory per process"):
        connect("chdb://" + str(tmp_path / "other"))


def test_directory_held_by_another_process_is_explained(tmp_path: Path) -> None:
    """Two child processes: the first holds the directory, the second must get a clear message."""
    path = tmp_path / "held"
    holder = hold_chdb(path, cwd=ROOT)
    try:
        second = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(f"""
                from healing_guard.warehouse import connect
                try:
                    connect("chdb://{path}")
                except Exception as exc:
                    print(type(exc).__name__, exc)
            """)],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )
        assert "WarehouseConnectionError" in second.stdout
        assert f"in use by another process (PID {holder.pid})" in second.stdout
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_server_dsn_error_masks_password() -> None:
    with pytest.raises(WarehouseConnectionError) as info:
        connect("http://guard:s3cret@127.0.0.1:1")
    assert "s3cret" not in str(info.value) and "guard:***@127.0.0.1:1" in str(info.value)


def test_unknown_dsn_refused() -> None:
    with pytest.raises(WarehouseConnectionError, match="is not chdb"):
        connect("postgres://x@y/z")


def test_unknown_clusters_largest_first(ch_client: Any, migrated: str) -> None:
    from healing_guard.warehouse.unknowns import unknown_clusters

    def unknown(job_id: str, sig: str | None) -> Finding:
        return Finding(provider="gitlab", owner="acme", repo="web", job_id=job_id, finding_id=f"u-{job_id}",
                       attempt=1, category="unknown", confidence=1.0, ts=NOW, signature=sig)

    findings = [unknown(str(i), "Error: lease <UUID> expired") for i in range(4)]
    findings += [unknown("10", "quota of <NUM> exceeded"), unknown("11", None), _finding("12", "network")]
    writer = FactWriter(ch_client, migrated)
    writer.write([diagnosis_fact(f) for f in findings] * 2)  # at-least-once delivery: counted once
    clusters = unknown_clusters(ch_client, migrated, top=10, examples=2)
    assert [(c["signature"], c["count"]) for c in clusters] == [
        ("Error: lease <UUID> expired", 4), ("<no signature>", 1), ("quota of <NUM> exceeded", 1)]
    assert len(clusters[0]["examples"]) == 2 and clusters[0]["examples"][0].startswith("gitlab/acme/web/")
    assert unknown_clusters(ch_client, migrated, top=1)[0]["count"] == 4
