"""Unknown failures grouped by signature, from the deduplicated diagnoses (the ROI report is in read.py)."""

from __future__ import annotations

from typing import Any

from .migrate import check_database_name


def unknown_clusters(client: Any, database: str, *, top: int = 20, examples: int = 3) -> list[dict[str, Any]]:
    """The largest groups of ``unknown`` diagnoses by signature (``top_template``), with example jobs.

    Each group is a failure the pattern library cannot explain yet, seen ``count`` times: the ones at
    the top are the patterns worth writing next.
    """
    db = check_database_name(database)
    top = max(1, int(top))
    examples = max(1, int(examples))
    sql = f"""
        SELECT ifNull(top_template, '<no signature>') AS signature, toUInt64(count()) AS n,
               groupArray({examples})(job_key) AS jobs, max(ts) AS last_seen
        FROM {db}.diagnoses FINAL
        WHERE category = 'unknown'
        GROUP BY signature
        ORDER BY n DESC, signature
        LIMIT {top}
    """
    rows = client.query(sql).result_rows
    return [{"signature": s, "count": int(n), "examples": list(jobs), "last_seen": str(last)}
            for s, n, jobs, last in rows]
