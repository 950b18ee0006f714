"""Write batches of facts to ClickHouse: one column-oriented insert per table per batch.

One insert per table per flush matters on a server (each insert makes a part; thousands of tiny
parts per second overwhelm merges) and is what makes chDB fast (about 110k of the guard's wide fact
rows/s, ~500x row-at-a-time inserts: `make bench`). Duplicates are not filtered here: the tables
are ReplacingMergeTree and every reader uses FINAL, so a batch written twice (sink restarted before
committing its offsets) counts once.
"""

from __future__ import annotations

import time
from operator import itemgetter
from collections.abc import Sequence
from typing import Any

from .facts import TABLE_COLUMNS, Column, Fact
from .migrate import check_database_name

_DEFAULTS: dict[str, Any] = {"str": "", "int": 0, "float": 0.0, "bool": False, "strs": []}


def _transpose(rows: list[dict[str, Any]], names: list[str]) -> list[tuple[Any, ...]]:
    """Rows to columns. The fact builders fill every column, so the fast path (itemgetter + zip,
    both in C) almost always applies; rows with missing keys take the slow path with None."""
    getter = itemgetter(*names)
    try:
        tuples = [getter(r) for r in rows]
    except KeyError:
        tuples = [tuple(r.get(n) for n in names) for r in rows]
    return list(zip(*tuples))


class FactWriter:
    """Batching sink for :class:`Fact` rows (see quix-streams' sink: one ``write(batch)``)."""

    def __init__(self, client: Any, database: str) -> None:
        self._client = client
        self._database = check_database_name(database)
        # Column types are read once per table: passing them to insert() spares a DESCRIBE per flush.
        self._types: dict[str, list[str]] = {}

    def write(self, batch: Sequence[Fact]) -> int:
        """Insert ``batch``; return the number of rows written.

        Unknown tables raise ValueError before anything is written, so a bad batch is not half
        applied. Missing optional columns become NULL (or a neutral default for non-nullable ones;
        a missing ``ts`` becomes now); keys that are not columns are ignored, so producers may add a
        column before the migration that stores it lands.
        """
        by_table: dict[str, list[dict[str, Any]]] = {}
        for fact in batch:
            if fact.table not in TABLE_COLUMNS:
                raise ValueError(f"unknown fact table {fact.table!r}; known tables: {', '.join(TABLE_COLUMNS)}")
            by_table.setdefault(fact.table, []).append(fact.row)
        written = 0
        for table, rows in by_table.items():
            columns = TABLE_COLUMNS[table]
            names = [c.name for c in columns]
            data = [self._column(table, col, values) for col, values in zip(columns, _transpose(rows, names))]
            self._client.insert(
                table,
                data,
                column_names=names,
                database=self._database,
                column_oriented=True,
                column_type_names=self._column_types(table, columns),
            )
            written += len(rows)
        return written

    def _column(self, table: str, col: Column, values: Sequence[Any]) -> Sequence[Any]:
        if col.kind == "time":
            # Integer milliseconds are DateTime64(3) ticks: exact, timezone-free and cheaper than
            # building datetime objects (clickhouse-connect writes int values as raw ticks).
            if col.nullable:
                return [None if v is None else round(v * 1000.0) for v in values]
            now = round(time.time() * 1000.0)
            return [now if v is None else round(v * 1000.0) for v in values]
        if col.nullable or None not in values:
            if col.name == "id" and "" in values:
                raise ValueError(f"a fact for table {table!r} has an empty id")
            return values
        if col.name == "id":
            raise ValueError(f"a fact for table {table!r} has no id")
        default = _DEFAULTS[col.kind]
        return [default if v is None else v for v in values]

    def _column_types(self, table: str, columns: Sequence[Column]) -> list[str]:
        types = self._types.get(table)
        if types is None:
            rows = self._client.query(
                "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
                parameters={"db": self._database, "t": table},
            ).result_rows
            found = {str(n): str(t) for n, t in rows}
            missing = [c.name for c in columns if c.name not in found]
            if missing:
                raise ValueError(
                    f"table {self._database}.{table} lacks columns {', '.join(missing)}; run the migrations "
                    "(healing_guard.warehouse.migrate.migrate)"
                )
            types = self._types[table] = [found[c.name] for c in columns]
        return types
