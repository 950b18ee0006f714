"""The Grafana provisioning in infra/grafana and its service in docker-compose.yml.

Static checks: the data source, the dashboard provider and the compose service agree with each other;
every panel's SQL reads only tables / views and columns that the migrations create (parsed from the
CREATE statements). Then every panel query (and the repo variable's query) runs against a chDB database
migrated with ``healing_guard.warehouse.migrate`` and filled with a few facts, with Grafana's template
variables and the ClickHouse plugin's macros expanded the way Grafana would.

chDB opens ONE data directory per process: this module uses the session client ``ch_client`` of
tests/conftest.py (``<basetemp>/chdb``) and a random database of its own that it drops afterwards.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml

from healing_guard.warehouse.migrate import DEFAULT_DDL_DIR

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "guard-roi.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "clickhouse.yml"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "guard.yml"
PLUGIN = "grafana-clickhouse-datasource"

# Words that may stand in the panels' SQL without being a column (functions are recognised by their "(").
SQL_WORDS = {
    "select", "from", "where", "and", "or", "not", "in", "is", "null", "as", "on", "group", "by", "order",
    "having", "limit", "desc", "asc", "final", "left", "right", "inner", "outer", "join", "distinct",
    "union", "all", "interval", "day", "case", "when", "then", "else", "end", "like", "between", "with",
    "settings", "join_use_nulls", "true", "false",
}


# ---------------------------------------------------------------------------------------------- schema


def _strip_sql_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside parentheses and string literals."""
    parts, depth, cur, quoted = [], 0, [], False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif quoted:
            pass
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def migration_schema() -> dict[str, set[str]]:
    """{table or view: column names} from the CREATE TABLE / CREATE VIEW statements of the migrations."""
    schema: dict[str, set[str]] = {}
    for path in sorted(DEFAULT_DDL_DIR.glob("*.sql")):
        sql = _strip_sql_comments(path.read_text())
        for m in re.finditer(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)\s*\((.*?)\)\s*ENGINE", sql, re.S):
            cols = {line.split()[0] for line in _split_top_level(m.group(2))}
            schema[m.group(1)] = cols
        for m in re.finditer(r"CREATE VIEW IF NOT EXISTS \{db\}\.(\w+) AS\s*SELECT(.*?)\bFROM\b", sql, re.S):
            cols = set()
            for item in _split_top_level(m.group(2)):
                alias = re.search(r"\bAS\s+(\w+)\s*$", item, re.I)
                cols.add(alias.group(1) if alias else item.split(".")[-1])
            schema[m.group(1)] = cols
    return schema


SCHEMA = migration_schema()


def test_migration_schema_parsed() -> None:
    assert {"job_runs", "diagnoses", "commands", "outcomes", "test_results", "roi_daily"} <= set(SCHEMA)
    assert {"spent_usd", "daily_budget_usd", "budget_day", "action"} <= SCHEMA["commands"]
    assert {"day", "owner", "repo", "auto_commands", "retry_cost_usd"} <= SCHEMA["roi_daily"]
    assert "ingested_at" in SCHEMA["job_runs"] and "ENGINE" not in SCHEMA["job_runs"]


# ------------------------------------------------------------------------------------------- the files


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panel_queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """[(panel title, rawSql)] of every query of every panel (rows' nested panels included)."""
    out = []
    stack = list(dash["panels"])
    while stack:
        p = stack.pop(0)
        stack.extend(p.get("panels", []))
        for t in p.get("targets", []):
            out.append((p["title"], t["rawSql"]))
    return out


def test_datasource_provisioning() -> None:
    doc = yaml.safe_load(DATASOURCE.read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == PLUGIN and ds["uid"] == "guard-clickhouse"
    jd = ds["jsonData"]
    assert jd["defaultDatabase"] == "guard" and jd["protocol"] == "http" and jd["port"] == 8123
    assert jd["host"].startswith("$") and jd["username"].startswith("$"), "server and user come from the environment"
    assert ds["secureJsonData"]["password"].startswith("$"), "no password in the repository"


def test_dashboard_provider_and_compose_service_agree() -> None:
    provider = yaml.safe_load(PROVIDER.read_text())["providers"][0]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = compose["services"]["grafana"]
    assert svc["image"].startswith("grafana/grafana")
    assert PLUGIN in svc["environment"]["GF_INSTALL_PLUGINS"]
    assert "clickhouse" in svc["depends_on"]
    mounts = {m.split(":")[0]: m.split(":")[1] for m in svc["volumes"]}
    assert mounts["./infra/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./infra/grafana/dashboards"] == provider["options"]["path"]
    env = svc["environment"]
    ds = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    for value in (ds["jsonData"]["host"], ds["jsonData"]["username"], ds["secureJsonData"]["password"]):
        assert value.strip("${}") in env, f"{value} is not set on the grafana service"
    ch = compose["services"]["clickhouse"]["environment"]
    assert env["CLICKHOUSE_USER"] == ch["CLICKHOUSE_USER"]
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home is None or home == provider["options"]["path"] + "/" + DASHBOARD.name


def test_dashboard_shape() -> None:
    dash = load_dashboard()
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["repo"]["type"] == "query" and variables["repo"]["includeAll"]
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for wanted in ("failed jobs", "commands by action", "failures by category", "flakiest tests", "budget", "roi_daily"):
        assert wanted in titles, wanted
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "guard-clickhouse"
        for t in p["targets"]:
            assert t["datasource"]["type"] == PLUGIN and t["rawSql"].strip()
            assert "${repo:sqlstring}" in t["rawSql"], f"{p['title']}: not filtered by the repo variable"
    for title, sql in panel_queries(dash):
        for table in ("job_runs", "diagnoses", "commands", "outcomes", "test_results"):
            for m in re.finditer(rf"\b(?:FROM|JOIN)\s+{table}\b(\s+AS\s+\w+)?(\s+FINAL)?", sql):
                assert m.group(2), f"{title}: {table} read without FINAL (duplicates would count twice)"


# ---------------------------------------------------------------------------------- static SQL checks


def expand(sql: str, *, repo: str = "__all", start: int = 0, end: int = 4_102_444_800) -> str:
    """The SQL as Grafana + the ClickHouse plugin would send it."""
    quoted = "'" + repo.replace("\\", "\\\\").replace("'", "''") + "'"
    sql = sql.replace("${repo:sqlstring}", quoted).replace("$human_minutes", "30")
    sql = sql.replace("$daily_budget_usd", "200").replace("$repo_budget_usd", "50")
    sql = re.sub(r"\$__timeFilter\(([\w.]+)\)", rf"\1 >= toDateTime({start}) AND \1 <= toDateTime({end})", sql)
    assert "$" not in sql, f"unexpanded variable or macro: {sql}"
    return sql


def referenced(sql: str) -> tuple[dict[str, str], set[str], set[str]]:
    """(alias -> table, column-like identifiers, output aliases) of one expanded query."""
    body = re.sub(r"'(?:[^'\\]|\\.|'')*'", "''", sql)  # string literals out
    ctes = {m.group(1) for m in re.finditer(r"\b(\w+)\s+AS\s*\(", body, re.I)}  # WITH name AS (...)
    tables: dict[str, str] = {}
    subqueries = {m.group(1) for m in re.finditer(r"\)\s+AS\s+(\w+)", body, re.I)} | set(ctes)
    for m in re.finditer(r"\b(?:FROM|JOIN)\s+(\w+)(?:\s+AS\s+(\w+))?", body, re.I):
        name = m.group(1)
        if name.lower() in SQL_WORDS:
            continue
        if name in ctes:
            if m.group(2):
                subqueries.add(m.group(2))
            continue
        tables[name] = name
        if m.group(2):
            tables[m.group(2)] = name
    aliases = {m.group(1) for m in re.finditer(r"\bAS\s+(\w+)", body, re.I)}
    idents: set[str] = set()
    for m in re.finditer(r"\b([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?\b(\s*\()?", body):
        if m.group(3):  # a function call
            continue
        if m.group(2):
            assert m.group(1) in tables or m.group(1) in subqueries, f"unknown table alias {m.group(1)!r}"
            idents.add(m.group(2))
        else:
            idents.add(m.group(1))
    idents -= {w for w in idents if w.lower() in SQL_WORDS or re.fullmatch(r"\d.*", w)}
    idents -= set(tables) | aliases | subqueries
    return tables, idents, aliases


def test_panel_sql_reads_only_existing_tables_and_columns() -> None:
    dash = load_dashboard()
    queries = panel_queries(dash) + [("variable " + v["name"], v["query"]) for v in dash["templating"]["list"]
                                     if v["type"] == "query"]
    assert len(queries) >= 8
    for title, sql in queries:
        tables, idents, _ = referenced(expand(sql))
        unknown_tables = set(tables.values()) - set(SCHEMA)
        assert not unknown_tables, f"{title}: unknown tables {unknown_tables}"
        columns = set().union(*(SCHEMA[t] for t in tables.values()))
        unknown = idents - columns
        assert not unknown, f"{title}: identifiers that are no column of {sorted(set(tables.values()))}: {unknown}"


def test_static_check_catches_a_bad_column() -> None:
    tables, idents, _ = referenced(expand("SELECT spend_usd FROM commands FINAL WHERE $__timeFilter(ts)"))
    assert tables == {"commands": "commands"} and idents - SCHEMA["commands"] == {"spend_usd"}


# ------------------------------------------------------------------------------------ against chDB


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
    assert [r[1:] for r in web["Time and money saved per day"]][-1] == (pytest.approx(28.0, abs=0.01), pytest.approx(0.04))
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
