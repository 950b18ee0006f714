"""Every Grafana panel query (and the repo variable's query) runs against a chDB database migrated with
``healing_guard.warehouse.migrate`` and filled with a few facts, with Grafana's template variables and the
ClickHouse plugin's macros expanded the way Grafana would (the static checks: tests/unit/deploy/test_grafana.py).

chDB opens ONE data directory per process: this module uses the session client ``ch_client`` of
tests/conftest.py (``<basetemp>/chdb``) and a random database of its own that it drops afterwards.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from tests.unit.deploy.test_grafana import SCHEMA, expand, load_dashboard, panel_queries

# one worker runs the whole module under `pytest -n 2 --dist loadgroup` (module-scoped fixture)
pytestmark = pytest.mark.xdist_group("test_grafana")


@pytest.fixture(scope="module")
def facts_db(ch_client: Any) -> Iterator[str]:
    """A few facts of acme/web (and one of acme/api) whose ROI is worked out by hand in the test below.

    acme/web, minutes ago:
      job 1 "test": attempt 1 failed (90, flaky test), re-run in isolation at 88 (retry_tests_isolated),
                    attempt 2 green (60) on the same commit: recovered; reaction 2 min, so 30 - 2 = 28 min saved;
                    the flaky test failed on attempt 1 and passed on attempt 2 of commit abc.
      job 2 "lint": green (50).
      job 3 "e2e":  timed out (40, network), retry_backoff at 38, not re-run yet (still red).
      job 4 "build": failed (35, compile), notify_author: a useless retry avoided, 5 min x $0.008.
    acme/api: job 9 failed (30, compile), notify_author.
    Budget: the retry spend is the commands' estimated cost, 0.10 + 0.24, against 200 a day (50 per repository).
    """
    from healing_guard.warehouse import migrate

    db = f"guard_grafana_{uuid4().hex[:8]}"
    migrate(ch_client, db)
    now = int(time.time())
    day = time.strftime("%Y-%m-%d", time.gmtime(now))

    def ts(minutes_ago: float) -> str:
        return f"fromUnixTimestamp64Milli({int((now - minutes_ago * 60) * 1000)}, 'UTC')"

    def job(owner_repo: str, j: str, name: str, attempt: int, conclusion: str, minutes: float, ago: float) -> str:
        owner, repo = owner_repo.split("/")
        key = f"github/{owner}/{repo}/{j}"
        return (f"('{key}#{attempt}', '{key}', 'github', '{owner}', '{repo}', '{j}', '{name}', {attempt}, "
                f"'{conclusion}', 'abc{j}', {minutes}, {minutes * 0.008}, {ts(ago - 0.5)}, {ts(ago)}, {ts(ago)})")

    def diag(owner_repo: str, j: str, category: str, ago: float) -> str:
        owner, repo = owner_repo.split("/")
        return f"('f-{j}', 'github/{owner}/{repo}/{j}', 'github', '{owner}', '{repo}', '{j}', 1, '{category}', 0.9, '[]', [], {ts(ago)})"

    def cmd(owner_repo: str, j: str, action: str, category: str, cost: float, budget: str, ago: float) -> str:
        owner, repo = owner_repo.split("/")
        return (f"('cmd-{j}', 'github/{owner}/{repo}/{j}', 'github', '{owner}', '{repo}', '{j}', 1, '{action}', "
                f"'{category}', 0.9, 'why', '{{}}', {cost}, {budget}, {ts(ago)})")

    def outcome(j: str, action: str, status: str, ago: float) -> str:
        return f"('cmd-{j}', 'github/acme/web/{j}', 'github', 'acme', 'web', '{j}', '{action}', '{status}', '', {ts(ago)})"

    def test(i: int, attempt: int, test_id: str, result: str, ago: float) -> str:
        return (f"('t-{i}', 'github/acme/web/1', 'github', 'acme', 'web', '1', {attempt}, '{test_id}', '{result}', "
                f"{ts(ago)})")

    rows = {
        "job_runs": [
            job("acme/web", "1", "test", 1, "failure", 12.0, 90), job("acme/web", "1", "test", 2, "success", 11.0, 60),
            job("acme/web", "2", "lint", 1, "success", 9.5, 50), job("acme/web", "3", "e2e", 1, "timed_out", 30.0, 40),
            job("acme/web", "4", "build", 1, "failure", 5.0, 35), job("acme/api", "9", "build", 1, "failure", 3.0, 30),
        ],
        "diagnoses": [diag("acme/web", "1", "flaky_test", 89.9), diag("acme/web", "3", "network", 39.9),
                      diag("acme/web", "4", "compile", 34.9), diag("acme/api", "9", "compile", 29.9)],
        "commands": [
            cmd("acme/web", "1", "retry_tests_isolated", "flaky_test", 0.1, f"'{day}', 12.5, 50.0, 3.0, 10.0", 88),
            cmd("acme/web", "3", "retry_backoff", "network", 0.24, f"'{day}', 20.0, 50.0, 4.5, 10.0", 38),
            cmd("acme/web", "4", "notify_author", "compile", 0.0, "NULL, NULL, NULL, NULL, NULL", 34.8),
            cmd("acme/api", "9", "notify_author", "compile", 0.0, "NULL, NULL, NULL, NULL, NULL", 29.8),
        ],
        "outcomes": [outcome("1", "retry_tests_isolated", "succeeded", 87), outcome("3", "retry_backoff", "failed", 20)],
        "test_results": [
            test(0, 1, "tests/test_x.py::test_race", "failed", 89.9), test(1, 2, "tests/test_x.py::test_race", "passed", 60),
            test(2, 1, "tests/test_x.py::test_ok", "passed", 89.9), test(3, 2, "tests/test_x.py::test_ok", "passed", 60),
        ],
    }
    columns = {
        "job_runs": "id, job_key, provider, owner, repo, job_id, job_name, attempt, conclusion, head_sha, "
                    "duration_minutes, cost_usd, started_at, completed_at, ts",
        "diagnoses": "id, job_key, provider, owner, repo, job_id, attempt, category, confidence, evidence, failed_tests, ts",
        "commands": "id, job_key, provider, owner, repo, job_id, attempt, action, category, confidence, reason, parameters, "
                    "estimated_cost_usd, budget_day, spent_usd, daily_budget_usd, repo_spent_usd, repo_budget_usd, ts",
        "outcomes": "id, job_key, provider, owner, repo, job_id, action, status, detail, ts",
        "test_results": "id, job_key, provider, owner, repo, job_id, attempt, test_id, outcome, ts",
    }
    for table, values in rows.items():
        ch_client.command(f"INSERT INTO {db}.{table} ({columns[table]}) VALUES " + ", ".join(values))
    # re-delivered duplicates: FINAL (in the panels and in the views) must count them once
    ch_client.command(f"INSERT INTO {db}.commands ({columns['commands']}) VALUES {rows['commands'][0]}")
    ch_client.command(f"INSERT INTO {db}.job_runs ({columns['job_runs']}) VALUES {rows['job_runs'][0]}")
    try:
        yield db
    finally:
        ch_client.command(f"DROP DATABASE IF EXISTS {db} SYNC")


def run(client: Any, db: str, sql: str, **kw: Any) -> list[tuple[Any, ...]]:
    """Run a dashboard query in ``db`` (Grafana's data source sets the default database instead)."""
    qualified = re.sub(r"\b(FROM|JOIN)\s+(" + "|".join(SCHEMA) + r")\b", rf"\1 {db}.\2", expand(sql, **kw))
    return list(client.query(qualified).result_rows)


def test_every_panel_query_runs_on_the_migrated_schema(ch_client: Any, facts_db: str) -> None:
    dash = load_dashboard()
    web: dict[str, list[tuple[Any, ...]]] = {}
    everything: dict[str, list[tuple[Any, ...]]] = {}
    for title, sql in panel_queries(dash):
        for repo in ("__all", "acme/web", "nobody/nothing", "it's"):
            rows = run(ch_client, facts_db, sql, repo=repo)
            if repo == "acme/web":
                web[title] = rows
            elif repo == "__all":
                everything[title] = rows
            elif repo == "nobody/nothing":
                assert all(v in (0, None) for row in rows for v in row), (title, rows)
        outside = run(ch_client, facts_db, sql, repo="acme/web", start=0, end=1)  # a time range with no facts
        assert all(v in (0, None) for row in outside for v in row), (title, outside)

    def one(title: str, rows: dict[str, list[tuple[Any, ...]]] = web) -> Any:
        ((value,),) = rows[title]
        return value

    assert one("Time saved") == pytest.approx(28.0, abs=0.01)
    assert one("Cost saved (useless retries avoided)") == pytest.approx(5.0 * 0.008)
    assert one("Cost saved (useless retries avoided)", everything) == pytest.approx(8.0 * 0.008)
    assert one("Rerun cost") == pytest.approx(11.0 * 0.008 + 0.24)      # job 1's next attempt ran; job 3's estimate
    assert one("Recovery rate") == pytest.approx(1.0)                     # job 3's re-run is not decided yet
    assert one("Mean time to green") == pytest.approx(30.0, abs=0.01)     # 90 -> 60 minutes ago
    assert web["Failed jobs / jobs"] == [(3, 5)]
    assert everything["Failed jobs / jobs"] == [(4, 6)]
    # summed over the days: the facts span 30-90 minutes ago, which crosses midnight in the first 90 minutes of a
    # UTC day (the last day's row alone failed the test then)
    saved_per_day = web["Time and money saved per day"]
    assert sum(r[1] for r in saved_per_day) == pytest.approx(28.0, abs=0.01)
    assert sum(r[2] for r in saved_per_day) == pytest.approx(0.04)
    assert sum(r[1] for r in web["Mean time to green per day"] if r[1] is not None) == pytest.approx(30.0, abs=0.01)
    daily = web["Daily failed jobs"]
    assert sum(r[1] for r in daily) == 3 and sum(r[2] for r in daily) == 5
    roi = web["Jobs, commands and cost per day (roi_daily view)"]
    assert [sum(r[i] for r in roi) for i in (1, 2, 3, 4)] == [5, 3, 3, 2]
    assert {a: (n, ok, bad) for a, n, ok, bad in web["Commands by action"]} == {
        "retry_tests_isolated": (1, 1, 0), "retry_backoff": (1, 0, 1), "notify_author": (1, 0, 0)}
    assert dict(web["Failures by category"]) == {"flaky_test": 1, "network": 1, "compile": 1}
    assert dict(everything["Failures by category"])["compile"] == 2
    assert web["Flakiest tests"] == [("tests/test_x.py::test_race", 2, 1, 1, 0.5)]
    # the guard's retry spend (estimated costs 0.10 + 0.24) against the configured budgets
    ((_, spent, budget, burn),) = web["Budget spend per day"]
    assert (spent, budget, burn) == (pytest.approx(0.34), 50.0, 0.7)    # the repository's own budget
    ((_, spent, budget, burn),) = everything["Budget spend per day"]
    assert (spent, budget, burn) == (pytest.approx(0.34), 200.0, 0.2)   # the guard's daily budget


def test_repo_variable_query_lists_repositories(ch_client: Any, facts_db: str) -> None:
    (var,) = [v for v in load_dashboard()["templating"]["list"] if v["name"] == "repo"]
    assert run(ch_client, facts_db, var["query"]) == [("acme/api",), ("acme/web",)]
