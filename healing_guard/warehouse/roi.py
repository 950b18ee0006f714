"""What the guard did and what it saved, from the deduplicated fact tables (one query)."""

from __future__ import annotations

from typing import Any

from .migrate import check_database_name

# Actions that only tell a person: they cost no CI and save no waiting. Every other action is
# carried out by the executor without a human ("automatic"). The roi_daily view (002_roi_daily.sql)
# repeats this list.
MANUAL_ACTIONS: tuple[str, ...] = ("notify_author", "notify_oncall", "notify", "escalate")
FAILED_CONCLUSIONS: tuple[str, ...] = ("failure", "timed_out")


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)


def roi_summary(client: Any, database: str, *, human_response_minutes: float = 30.0) -> dict[str, Any]:
    """Totals over all time, each fact counted once (FINAL), in one round trip.

    Keys:
    - ``jobs``, ``failed_jobs`` (conclusion failure or timed_out), ``ci_minutes``, ``ci_cost_usd``;
      ``failed_ci_minutes``, ``failed_ci_cost_usd``: the part of them spent on failed attempts.
    - ``failures_by_category``: diagnoses per category; ``commands_by_action``: commands per action.
    - ``auto_commands``: commands whose action is not one of :data:`MANUAL_ACTIONS`, i.e. the
      executor acted without waiting for a person; ``retry_cost_usd``: their estimated CI cost.
    - ``minutes_saved_estimate`` = ``auto_commands * human_response_minutes``. The counterfactual: without
      the guard, a person would have noticed the failure and re-run (or fixed the cache, bumped the
      runner…) after ``human_response_minutes`` on average; the guard acts at once, so each automatic
      command saves that delay. It is an estimate of waiting time saved, not of CI minutes (the retry
      costs CI time either way: that cost is ``retry_cost_usd``).
    - ``outcomes_by_status``: executor outcomes per status; ``auto_commands_succeeded``: outcomes with
      status ``succeeded`` for automatic actions.
    """
    db = check_database_name(database)
    manual = _sql_list(MANUAL_ACTIONS)
    failed = _sql_list(FAILED_CONCLUSIONS)
    sql = f"""
        SELECT 'jobs' AS kind, '' AS key, toUInt64(count()) AS n,
               toUInt64(countIf(conclusion IN ({failed}))) AS m,
               toFloat64(sum(duration_minutes)) AS a, toFloat64(sum(cost_usd)) AS b,
               toFloat64(sumIf(duration_minutes, conclusion IN ({failed}))) AS c,
               toFloat64(sumIf(cost_usd, conclusion IN ({failed}))) AS d
        FROM {db}.job_runs FINAL
        UNION ALL
        SELECT 'category', category, toUInt64(count()), toUInt64(0), toFloat64(0), toFloat64(0),
               toFloat64(0), toFloat64(0)
        FROM {db}.diagnoses FINAL GROUP BY category
        UNION ALL
        SELECT 'action', action, toUInt64(count()), toUInt64(0), toFloat64(sum(estimated_cost_usd)),
               toFloat64(0), toFloat64(0), toFloat64(0)
        FROM {db}.commands FINAL GROUP BY action
        UNION ALL
        SELECT 'outcome', status, toUInt64(count()), toUInt64(countIf(action NOT IN ({manual}))),
               toFloat64(0), toFloat64(0), toFloat64(0), toFloat64(0)
        FROM {db}.outcomes FINAL GROUP BY status
    """
    out: dict[str, Any] = {
        "jobs": 0,
        "failed_jobs": 0,
        "ci_minutes": 0.0,
        "ci_cost_usd": 0.0,
        "failed_ci_minutes": 0.0,
        "failed_ci_cost_usd": 0.0,
        "failures_by_category": {},
        "commands_by_action": {},
        "auto_commands": 0,
        "retry_cost_usd": 0.0,
        "minutes_saved_estimate": 0.0,
        "outcomes_by_status": {},
        "auto_commands_succeeded": 0,
    }
    for kind, key, n, m, a, b, c, d in client.query(sql).result_rows:
        if kind == "jobs":
            out.update(jobs=int(n), failed_jobs=int(m), ci_minutes=float(a), ci_cost_usd=float(b),
                       failed_ci_minutes=float(c), failed_ci_cost_usd=float(d))
        elif kind == "category":
            out["failures_by_category"][key] = int(n)
        elif kind == "action":
            out["commands_by_action"][key] = int(n)
            if key not in MANUAL_ACTIONS:
                out["auto_commands"] += int(n)
                out["retry_cost_usd"] += float(a)
        elif kind == "outcome":
            out["outcomes_by_status"][key] = int(n)
            if key == "succeeded":
                out["auto_commands_succeeded"] = int(m)
    out["minutes_saved_estimate"] = out["auto_commands"] * float(human_response_minutes)
    return out


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
