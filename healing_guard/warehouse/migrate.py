"""Schema migrations: apply ``NNN_name.sql`` files in order, once each, on chDB or a ClickHouse server.

Why our own small runner: the same DDL must run in-process on chDB (tests, first run) and on a
server (production), through the one clickhouse-connect client the guard already has; neither a
ClickHouse-side tool nor an external migration service is available on both.

Rules:
- Files are ``NNN_name.sql`` (NNN = version, at least three digits), applied in version order.
- ``{db}`` in a file is replaced by the (validated) database name. A file may hold several statements;
  they are split on ``;`` outside quotes and comments, and sent one by one (both chDB and the HTTP
  interface take one statement per request).
- Applied versions are recorded in ``{db}.schema_migrations`` with a SHA-256 of the file (line endings
  normalised). Editing an applied file is refused: add a new file instead. The statements should be
  idempotent (``IF NOT EXISTS``) so that a file that failed half way can simply be re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DDL_DIR = Path(__file__).resolve().parent / "ddl"
_FILE_RE = re.compile(r"^(?P<version>\d{3,})_(?P<name>[A-Za-z0-9_\-]+)\.sql$")
_DB_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MigrationError(RuntimeError):
    """The schema cannot be brought up to date; the message says which file and what to do."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    checksum: str
    sql: str

    def statements(self, database: str) -> list[str]:
        return split_statements(self.sql.replace("{db}", database))


def check_database_name(database: str) -> str:
    """Only plain identifiers: the name is pasted into DDL, so anything else is refused, not quoted."""
    if not _DB_RE.match(database):
        raise MigrationError(f"database name {database!r} must match {_DB_RE.pattern}")
    return database


def split_statements(sql: str) -> list[str]:
    """Split SQL text on ``;`` outside quotes and comments; drop empty and comment-only pieces.

    Handles '...', "...", `...` (with backslash escapes and doubled quotes), ``-- ...`` and
    ``/* ... */`` so a semicolon inside a COMMENT string or a comment never cuts a statement.
    """
    out: list[str] = []
    buf: list[str] = []
    has_code = False
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            buf.append(sql[i : j + 1])
            has_code = True
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            buf.append(sql[i:j])
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            buf.append(sql[i:j])
            i = j
        elif ch == ";":
            if has_code:
                out.append("".join(buf).strip())
            buf, has_code = [], False
            i += 1
        else:
            if not ch.isspace():
                has_code = True
            buf.append(ch)
            i += 1
    if has_code:
        out.append("".join(buf).strip())
    return out


def load_migrations(ddl_dir: Path) -> list[Migration]:
    """Read and order the migration files; refuse misnamed ``.sql`` files and duplicate versions."""
    if not ddl_dir.is_dir():
        raise MigrationError(
            f"migration directory {ddl_dir} does not exist; reinstall the package "
            "(it ships infra/clickhouse/migrations as healing_guard/warehouse/ddl) or pass ddl_dir"
        )
    found: dict[str, Migration] = {}
    for path in sorted(ddl_dir.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise MigrationError(f"{path}: migration files must be named NNN_name.sql (e.g. 003_more_views.sql)")
        raw = path.read_bytes().replace(b"\r\n", b"\n")
        version = m["version"]
        if version in found:
            raise MigrationError(f"{path}: version {version} is also used by {found[version].path.name}")
        found[version] = Migration(
            version=version,
            name=m["name"],
            path=path,
            checksum=hashlib.sha256(raw).hexdigest(),
            sql=raw.decode("utf-8"),
        )
    return [found[v] for v in sorted(found, key=int)]


def _applied(client: Any, database: str) -> dict[str, str]:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations ("
        " version String, name String, checksum String,"
        " applied_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC'))"
        " ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
    )
    rows = client.query(f"SELECT version, checksum FROM {database}.schema_migrations FINAL").result_rows
    return {str(v): str(c) for v, c in rows}


def migrate(client: Any, database: str, ddl_dir: Path | None = None) -> list[str]:
    """Create ``database`` if needed and apply the pending migrations; return the versions applied now.

    Refuses (MigrationError) before applying anything when an already applied file was edited, since
    the database would silently differ from what the files describe.
    """
    check_database_name(database)
    migrations = load_migrations(ddl_dir or DEFAULT_DDL_DIR)
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    applied = _applied(client, database)
    for mig in migrations:
        recorded = applied.get(mig.version)
        if recorded is not None and recorded != mig.checksum:
            raise MigrationError(
                f"{mig.path.name} was applied to database {database} with checksum {recorded[:12]}… but the "
                f"file now has {mig.checksum[:12]}…; restore the file and put the change in a new NNN_*.sql"
            )
    done: list[str] = []
    for mig in migrations:
        if mig.version in applied:
            continue
        for i, stmt in enumerate(mig.statements(database), 1):
            try:
                client.command(stmt)
            except Exception as exc:
                raise MigrationError(
                    f"{mig.path.name}, statement {i}, failed on database {database}: {exc}"
                ) from exc
        client.insert(
            "schema_migrations",
            [[mig.version, mig.name, mig.checksum]],
            column_names=["version", "name", "checksum"],
            database=database,
        )
        done.append(mig.version)
    return done
