"""The Grafana provisioning in infra/grafana and its service in docker-compose.yml.

Static checks: the data source, the dashboard provider and the compose service agree with each other;
every panel's SQL reads only tables / views and columns that the migrations create (parsed from the
CREATE statements). tests/integration/deploy/test_grafana.py runs every panel query against chDB.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from healing_guard.warehouse.migrate import DEFAULT_DDL_DIR
from tests.support.paths import ROOT

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
        # CREATE OR REPLACE VIEW (004) redefines a view of an earlier file: the later file's columns win
        for m in re.finditer(r"CREATE (?:OR REPLACE )?VIEW (?:IF NOT EXISTS )?\{db\}\.(\w+) AS\s*SELECT(.*?)\bFROM\b",
                             sql, re.S):
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
    # 004 redefines job_attempts (CREATE OR REPLACE VIEW): its columns are the ones panels may read
    assert {"retry_conclusion", "retry_done_at", "retry_cost_usd", "greens_before"} <= SCHEMA["job_attempts"]


def test_the_figures_other_surfaces_show_have_their_panels() -> None:
    """The report, the API and /metrics show MTTR beside its counterfactual and the flaky-test rate of both
    kinds; Grafana has them too (tests/integration/warehouse/test_roi_agreement.py runs them)."""
    queries = dict(panel_queries(load_dashboard()))
    mttr = queries["MTTR and MTTR without the guard"]
    assert "AS mttr," in mttr and "AS mttr_without_guard" in mttr and "$human_minutes" in mttr
    flaky = queries["Flaky-test rate"]
    for word in ("retry_tests_isolated", "rerun_sequential", "quarantine_test", "n_fails > 0 AND n_passes > 0"):
        assert word in flaky, word
    assert "quarantine_test" in queries["Flakiest tests"]


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
