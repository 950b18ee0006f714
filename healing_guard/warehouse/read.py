"""What the guard did and what it saved, read from the warehouse: the ROI report, daily series, a
repository's health and one failure's analysis.

The definitions live in SQL, in ``infra/clickhouse/queries/*.sql`` (shipped as
``healing_guard/warehouse/queries``), over the views of ``003_roi.sql``: analysts run the same queries
the report runs. Each query returns rows per day (or per test / category); this module only adds them
up, so a total and its daily series can never disagree. Every number is over deduplicated facts (FINAL).

Definitions (docs/roi.md):

* **a re-run's attempt**: the job's next attempt on the same commit (its next attempt when the commit is
  unknown): a push brings other code, so it does not decide a re-run (``004_rerun_same_commit.sql``).
* **time saved**: for each automatic re-run whose re-run attempt succeeded,
  ``max(0, human_response_minutes - reaction_minutes)``. The counterfactual: without the guard a person
  notices the failure and re-runs it after ``human_response_minutes`` on average.
* **cost of reruns**: each re-run attempt's CI cost (the planner's estimate until it has run).
* **cost avoided** (= cost saved): failed attempts the guard diagnosed and did not re-run, whose next
  attempt was not a success on the same commit, at the attempt's own cost: what a blind retry-once
  policy would have spent again for nothing.
* **MTTG**: mean time from a job's first failure to its next success (failure episodes that ended).
* **MTTR**: the same over the episodes the guard re-ran, beside **MTTR without the guard**: the same
  episodes with each recovered re-run's time saved added back (a person re-running after
  ``human_response_minutes``). MTTR and MTTG are over different episodes: not a comparison.
* **success rate**: completed job attempts that succeeded / completed job attempts.
* **reliability change**: MTTR, MTTG and success rate over the last N days (the report's window, 30 for
  all time) against the N days before, and the difference (now minus before).
* **recovery rate** of an action: re-runs whose re-run attempt succeeded / re-runs whose re-run attempt ran.
* **flaky-test rate**: flaky tests / tests seen, a test being flaky when the guard judged it so (its
  flaky-test re-runs selected it, or it quarantined it) or it both failed and passed on one commit; both
  counts are in the report (``flaky_tests_judged``, ``flaky_tests_observed``).
* **budget burn**: the guard's retry spend (its commands' estimated cost, what its budget ledger counts)
  / the configured daily budget (the repository's own with a repository), per budget day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from ..engine.requests import recommendations
from .migrate import check_database_name

QUERY_DIR = Path(__file__).resolve().parent / "queries"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
FAR_FUTURE = dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc)  # the open end of a window (DateTime64 ends in 2299)
RELIABILITY_WINDOW_DAYS = 30  # the all-time report compares the last 30 days with the 30 before
RECENT_ACTIONS = 20  # the dashboard's table of the latest commands


@cache
def query_text(name: str) -> str:
    """The analysts' query ``name`` (``roi_jobs``, ``roi_commands``, ...) as shipped."""
    return (QUERY_DIR / f"{name}.sql").read_text()


def _iso(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return v.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return str(v)


def _ratio(n: float, d: float) -> float | None:
    return None if not d else n / d


class WarehouseReader:
    """Reads the ROI facts through one clickhouse-connect client (chDB or a server)."""

    def __init__(self, client: Any, database: str, *, human_response_minutes: float = 30.0,
                 daily_budget_usd: float | None = None, repo_daily_budget_usd: float | None = None,
                 clock: Any = None) -> None:
        self.client = client
        self.db = check_database_name(database)
        self.human_response_minutes = float(human_response_minutes)
        self.daily_budget_usd = daily_budget_usd
        self.repo_daily_budget_usd = repo_daily_budget_usd
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))

    @classmethod
    def from_settings(cls, client: Any, settings: Any, database: str | None = None) -> WarehouseReader:
        """The reader the CLI, the API and the demo use: the settings' database, human response time and
        budgets."""
        return cls(client, database or settings.clickhouse_database,
                   human_response_minutes=settings.human_response_minutes,
                   daily_budget_usd=settings.daily_budget_usd, repo_daily_budget_usd=settings.repo_daily_budget_usd)

    # --- plumbing ------------------------------------------------------------------------------
    def _params(self, owner: str | None, repo: str | None, days: int | None,
                provider: str | None = None, repos: Sequence[str] | None = None) -> dict[str, Any]:
        """The queries' parameters. ``repos`` (``provider:owner/repo`` names, see :meth:`repo_keys`)
        narrows the figures to those repositories (an empty list: to none); None leaves them all in."""
        since = EPOCH if days is None else self._clock() - dt.timedelta(days=int(days))
        return {"provider": provider or "", "owner": owner or "", "repo": repo or "",
                "scoped": 0 if repos is None else 1, "repos": sorted(repos or []),
                "since": _sql_time(since), "until": _sql_time(FAR_FUTURE),
                "human_response_minutes": self.human_response_minutes,
                "daily_budget_usd": float(self.daily_budget_usd or 0.0),
                "repo_budget_usd": float(self.repo_daily_budget_usd or 0.0)}

    def _rows(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        sql = query_text(name).replace("{db}", self.db)
        res = self.client.query(sql, parameters=params)
        return [dict(zip(res.column_names, row)) for row in res.result_rows]

    # --- the ROI report ------------------------------------------------------------------------
    def report(self, owner: str | None = None, repo: str | None = None, days: int | None = None, *,
               provider: str | None = None, repos: Sequence[str] | None = None) -> dict[str, Any]:
        """Every ROI figure over ``days`` (all time when None), for one repository (of ``provider``, when
        given: ``acme/web`` on GitHub is not GitLab's), the repositories named in ``repos``
        (``provider:owner/repo``) or all."""
        return self._report(owner, repo, days, provider, repos)[0]

    def _report(self, owner: str | None, repo: str | None, days: int | None,
                provider: str | None = None,
                repos: Sequence[str] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The report, and the per-day job rows it was added up from (``repo_health`` reads their last
        failure time, so the query runs once)."""
        p = self._params(owner, repo, days, provider, repos)
        jobs = self._rows("roi_jobs", p)
        eps = self._rows("roi_episodes", p)
        cmds = self._rows("roi_commands", p)
        avoided = self._rows("roi_avoided", p)
        tests = self._rows("roi_flaky_tests", p)
        judged = {str(r["test_id"]): r for r in self._rows("roi_flaky_judged", p)}
        cats = self._rows("roi_categories", p)
        budget = self._rows("roi_budget", p)

        by_action: dict[str, dict[str, Any]] = {}
        for r in cmds:
            a = by_action.setdefault(r["action"], {"action": r["action"], "rerun": bool(r["rerun"]),
                                                   "commands": 0, "decided": 0, "recovered": 0})
            for k in ("commands", "decided", "recovered"):
                a[k] += int(r[k])
        reruns = [a for a in by_action.values() if a["rerun"]]
        decided = sum(a["decided"] for a in reruns)
        recovered = sum(a["recovered"] for a in reruns)
        window = _window_figures(jobs, eps)
        greens = sum(int(r["greens"]) for r in eps)
        acted_greens = sum(int(r["acted_greens"]) for r in eps)
        rerun_cost = sum(float(r["rerun_cost_usd"]) for r in cmds)
        cost_avoided = sum(float(r["cost_avoided_usd"]) for r in avoided)
        acted_ttg = sum(float(r["acted_ttg_minutes"]) for r in eps)
        acted_saved = sum(float(r["acted_saved_minutes"]) for r in eps)
        # flaky: judged so by the guard (re-run as flaky, quarantined) or seen failing and passing on one commit
        seen = {str(t["test_id"]): t for t in tests}
        for tid in judged.keys() - seen.keys():  # judged on results outside the window: seen through the command
            seen[tid] = {"test_id": tid, "runs": 0, "failures": 0, "flaky_jobs": 0}
        observed = {tid for tid, t in seen.items() if int(t["flaky_jobs"]) > 0}
        flaky = sorted((seen[tid] for tid in observed | judged.keys()),
                       key=lambda t: (-int(t["flaky_jobs"]), -int(t["failures"]), str(t["test_id"])))
        by_cat: dict[str, int] = {}
        templates: dict[tuple[str, str], int] = {}
        for r in cats:
            by_cat[r["category"]] = by_cat.get(r["category"], 0) + int(r["n"])
            if r["template"]:
                templates[(r["template"], r["category"])] = int(r["n"])
        top = sorted(templates.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        return {
            "repo": f"{owner}/{repo}" if owner and repo else None,
            "days": days,
            "jobs": window["jobs"],
            "failed_jobs": window["failed_jobs"],
            "ci_minutes": round(sum(float(r["ci_minutes"]) for r in jobs), 4),
            "ci_cost_usd": round(sum(float(r["ci_cost_usd"]) for r in jobs), 4),
            "auto_commands": sum(a["commands"] for a in reruns),
            "manual_commands": sum(a["commands"] for a in by_action.values() if not a["rerun"]),
            "reruns_decided": decided,
            "reruns_recovered": recovered,
            "time_saved_minutes": round(sum(float(r["time_saved_minutes"]) for r in cmds), 4),
            "rerun_cost_usd": round(rerun_cost, 4),
            "cost_avoided_usd": round(cost_avoided, 4),
            "cost_saved_usd": round(cost_avoided, 4),
            "mttr_minutes": window["mttr_minutes"],
            "mttr_without_guard_minutes": _round(_ratio(acted_ttg + acted_saved, acted_greens)),
            "mttr_episodes": acted_greens,
            "mttg_minutes": window["mttg_minutes"],
            "mttg_episodes": greens,
            "open_failures": sum(int(r["open_episodes"]) for r in eps),
            "success_rate": window["success_rate"],
            # with --days N the reliability view's current window is the report's own: its rows are not read again
            "reliability": self.reliability(owner, repo, days or RELIABILITY_WINDOW_DAYS, provider=provider,
                                            repos=repos, current=window if days else None),
            "recovery_rate": _round(_ratio(recovered, decided)),
            "recovery_by_strategy": [
                {"action": a["action"], "commands": a["commands"], "recovered": a["recovered"],
                 "decided": a["decided"], "rate": _round(_ratio(a["recovered"], a["decided"]))}
                for a in sorted(reruns, key=lambda a: (-a["commands"], a["action"]))],
            "tests_seen": len(seen),
            "flaky_tests": len(flaky),
            "flaky_test_rate": _round(_ratio(len(flaky), len(seen))),
            "flaky_tests_judged": len(judged),
            "flaky_tests_observed": len(observed),
            "flakiest_tests": [{"test_id": t["test_id"], "runs": int(t["runs"]), "failures": int(t["failures"]),
                                "flaky_jobs": int(t["flaky_jobs"]),
                                "guard_reruns": int(judged[t["test_id"]]["guard_reruns"]) if t["test_id"] in judged else 0,
                                "quarantined": bool(judged[t["test_id"]]["quarantined"]) if t["test_id"] in judged
                                else False}
                               for t in flaky[:10]],
            "failures_by_category": dict(sorted(by_cat.items(), key=lambda kv: (-kv[1], kv[0]))),
            "top_templates": [{"template": t, "category": c, "count": n} for (t, c), n in top],
            "budget": [{"day": str(b["day"]), "spent_usd": round(float(b["spent_usd"]), 4),
                        "budget_usd": float(b["budget_usd"]) or None,
                        "burn": _round(_ratio(float(b["spent_usd"]), float(b["budget_usd"])))}
                       for b in budget],
        }, jobs

    def reliability(self, owner: str | None, repo: str | None, window_days: int, *,
                    provider: str | None = None, repos: Sequence[str] | None = None,
                    current: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """MTTR and success rate over the last ``window_days`` against the ``window_days`` before them, and
        the change (now minus before: a negative MTTR change and a positive success-rate change are better).

        * success rate: completed job attempts that succeeded / completed job attempts in the window;
        * healed share: failure episodes a re-run of the guard turned green / failure episodes that began;
        * MTTR, MTTG: as in the report, over the episodes that began in the window."""
        now = self._clock()
        n = max(1, int(window_days))
        bounds = {"current": (now - dt.timedelta(days=n), FAR_FUTURE),
                  "previous": (now - dt.timedelta(days=2 * n), now - dt.timedelta(days=n))}
        out: dict[str, Any] = {"window_days": n}
        for name, (lo, hi) in bounds.items():
            if name == "current" and current is not None:
                figures = dict(current)  # the caller's figures of this very window
            else:
                p = {**self._params(owner, repo, None, provider, repos), "since": _sql_time(lo),
                     "until": _sql_time(hi)}
                figures = _window_figures(self._rows("roi_jobs", p), self._rows("roi_episodes", p))
            out[name] = {"since": lo.date().isoformat(),
                         "until": None if hi is FAR_FUTURE else hi.date().isoformat(), **figures}
        cur, prev = out["current"], out["previous"]
        out["change"] = {
            "success_rate_points": None if cur["success_rate"] is None or prev["success_rate"] is None
            else round(100 * (cur["success_rate"] - prev["success_rate"]), 2),
            "mttr_minutes": _change(cur["mttr_minutes"], prev["mttr_minutes"]),
            "mttg_minutes": _change(cur["mttg_minutes"], prev["mttg_minutes"]),
        }
        return out

    def daily(self, owner: str | None, repo: str | None, days: int = 30, *,
              provider: str | None = None, repos: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One row per day with activity, oldest first (the dashboard's time series)."""
        p = self._params(owner, repo, days, provider, repos)
        out: dict[str, dict[str, Any]] = {}

        def day(d: Any) -> dict[str, Any]:
            k = str(d)
            return out.setdefault(k, {"day": k, "jobs": 0, "failed_jobs": 0, "time_saved_minutes": 0.0,
                                      "cost_saved_usd": 0.0, "rerun_cost_usd": 0.0, "success_rate": None,
                                      "mttr_minutes": None, "mttg_minutes": None,
                                      "_ttg": 0.0, "_greens": 0, "_attg": 0.0, "_agreens": 0})

        for r in self._rows("roi_jobs", p):
            d = day(r["day"])
            d["jobs"] += int(r["jobs"])
            d["failed_jobs"] += int(r["failed_jobs"])
        for r in self._rows("roi_commands", p):
            d = day(r["day"])
            d["time_saved_minutes"] += float(r["time_saved_minutes"])
            d["rerun_cost_usd"] += float(r["rerun_cost_usd"])
        for r in self._rows("roi_avoided", p):
            day(r["day"])["cost_saved_usd"] += float(r["cost_avoided_usd"])
        for r in self._rows("roi_episodes", p):
            d = day(r["day"])
            d["_ttg"] += float(r["ttg_minutes"])
            d["_greens"] += int(r["greens"])
            d["_attg"] += float(r["acted_ttg_minutes"])
            d["_agreens"] += int(r["acted_greens"])
        rows = []
        for k in sorted(out):
            d = out[k]
            d["mttg_minutes"] = _round(_ratio(d.pop("_ttg"), d.pop("_greens")))
            d["mttr_minutes"] = _round(_ratio(d.pop("_attg"), d.pop("_agreens")))
            d["success_rate"] = _round(_ratio(d["jobs"] - d["failed_jobs"], d["jobs"]))
            for f in ("time_saved_minutes", "cost_saved_usd", "rerun_cost_usd"):
                d[f] = round(d[f], 4)
            rows.append(d)
        return rows

    def repo_health(self, owner: str, repo: str, days: int = 30, *, provider: str | None = None) -> dict[str, Any]:
        """The status route's answer: how often the repository fails and how well healing works."""
        r, jobs = self._report(owner, repo, days, provider)
        last_failure = max((x["last_failure_at"] for x in jobs if x["last_failure_at"] is not None), default=None)
        return {
            "repo": f"{owner}/{repo}", "days": days, "jobs": r["jobs"], "failed_jobs": r["failed_jobs"],
            "failure_rate": _round(_ratio(r["failed_jobs"], r["jobs"])),
            "healing_success_rate": r["recovery_rate"], "flaky_test_rate": r["flaky_test_rate"],
            "flaky_tests": r["flaky_tests"], "auto_commands": r["auto_commands"],
            "time_saved_minutes": r["time_saved_minutes"], "cost_saved_usd": r["cost_saved_usd"],
            "last_failure_at": _iso(last_failure),
        }

    def repos(self) -> list[str]:
        """Every ``owner/repo`` with a job run or a diagnosis."""
        res = self.client.query(
            f"SELECT DISTINCT concat(owner, '/', repo) AS r FROM "
            f"(SELECT owner, repo FROM {self.db}.job_runs UNION ALL SELECT owner, repo FROM {self.db}.diagnoses) "
            f"ORDER BY r")
        return [row[0] for row in res.result_rows]

    def repo_keys(self) -> list[tuple[str, str, str]]:
        """Every (provider, owner, repo) with a job run, a diagnosis or a command: what an API key's scopes
        are checked against; ``f"{provider}:{owner}/{repo}"`` is the name :meth:`report`'s ``repos`` takes."""
        res = self.client.query(
            f"SELECT DISTINCT provider, owner, repo FROM "
            f"(SELECT provider, owner, repo FROM {self.db}.job_runs UNION ALL "
            f"SELECT provider, owner, repo FROM {self.db}.diagnoses UNION ALL "
            f"SELECT provider, owner, repo FROM {self.db}.commands) ORDER BY provider, owner, repo")
        return [(str(p), str(o), str(r)) for p, o, r in res.result_rows]

    def recent_actions(self, owner: str | None = None, repo: str | None = None, days: int | None = 30, *,
                       provider: str | None = None, repos: Sequence[str] | None = None,
                       limit: int = RECENT_ACTIONS) -> list[dict[str, Any]]:
        """The latest ``limit`` commands (newest first) with the executor's outcome and, for a re-run, how
        its re-run attempt ended: the dashboard's table of recent actions."""
        p = {**self._params(owner, repo, days, provider, repos), "limit": max(0, int(limit))}
        return [{"ts": _iso(r["ts"]), "repo": f"{r['owner']}/{r['repo']}", "provider": r["provider"],
                 "job_id": r["job_id"], "attempt": int(r["attempt"]), "job_name": r["job_name"],
                 "action": r["action"], "category": r["category"], "reason": r["reason"],
                 "status": r["status"], "detail": r["detail"], "rerun_conclusion": r["rerun_conclusion"]}
                for r in self._rows("roi_actions", p)]

    # --- one failure ---------------------------------------------------------------------------
    def failure(self, owner: str, repo: str, job_id: str, *, provider: str | None = None) -> dict[str, Any] | None:
        """The latest diagnosis of ``job_id`` in the repository (of ``provider``, when given), its commands
        and their outcomes."""
        p = {"owner": owner, "repo": repo, "job_id": job_id, "provider": provider or ""}
        res = self.client.query(
            f"""SELECT d.job_key, d.provider, d.attempt, d.category, d.confidence, d.evidence, d.top_template,
                       d.exit_code, d.failed_tests, d.log_lines, d.log_complete, d.ts, j.run_id
                FROM {self.db}.diagnoses AS d FINAL
                LEFT JOIN (SELECT job_key, attempt, run_id FROM {self.db}.job_runs FINAL
                           WHERE owner = {{owner:String}} AND repo = {{repo:String}} AND job_id = {{job_id:String}}
                             AND ({{provider:String}} = '' OR provider = {{provider:String}})) AS j
                    ON j.job_key = d.job_key AND j.attempt = d.attempt
                WHERE d.owner = {{owner:String}} AND d.repo = {{repo:String}} AND d.job_id = {{job_id:String}}
                  AND ({{provider:String}} = '' OR d.provider = {{provider:String}})
                ORDER BY d.attempt DESC, d.ts DESC
                LIMIT 1
                SETTINGS join_use_nulls = 1""", parameters=p)
        if not res.result_rows:
            return None
        (key, provider, attempt, category, confidence, evidence, template, exit_code, failed_tests, log_lines,
         log_complete, ts, run_id) = res.result_rows[0]
        cres = self.client.query(
            f"""SELECT c.id, c.action, c.confidence, c.reason, c.estimated_cost_usd, c.ts, o.status, o.detail, o.ts
                FROM {self.db}.commands AS c FINAL
                LEFT JOIN (SELECT id, status, detail, ts FROM {self.db}.outcomes FINAL
                           WHERE job_key = {{key:String}}) AS o ON o.id = c.id
                WHERE c.job_key = {{key:String}} AND c.attempt = {{attempt:UInt32}}
                ORDER BY c.ts, c.id
                SETTINGS join_use_nulls = 1""", parameters={"key": key, "attempt": int(attempt)})
        commands = [{"command_id": cid, "action": action, "confidence": float(conf), "reason": reason,
                     "estimated_cost_usd": float(cost), "ts": _iso(cts),
                     "outcome": None if ostatus is None else {"status": ostatus, "detail": odetail, "ts": _iso(ots)}}
                    for cid, action, conf, reason, cost, cts, ostatus, odetail, ots in cres.result_rows]
        return {
            "job_key": key, "provider": provider, "owner": owner, "repo": repo, "job_id": job_id,
            "attempt": int(attempt), "run_id": run_id, "category": category, "confidence": float(confidence),
            "evidence": _evidence(evidence), "template": template, "exit_code": exit_code,
            "failed_tests": list(failed_tests), "log_lines": int(log_lines), "log_complete": bool(log_complete),
            "diagnosed_at": _iso(ts), "commands": commands,
            "recommendations": recommendations(category, float(confidence), commands),
        }


    # --- a directive for a job's next attempt ---------------------------------------------------
    def directive_command(self, owner: str, repo: str, *, provider: str, job_name: str | None = None,
                          run_id: str | None = None, commit: str | None = None, attempt: int | None = None,
                          max_age_hours: float = 24.0) -> dict[str, Any] | None:
        """The latest re-run command (as a dict :func:`healing_guard.directives.from_command` takes) for the
        job named ``job_name`` (or, for a matrix job, ``job_name (...)``) of run ``run_id`` or commit
        ``commit``, decided in the last ``max_age_hours``; with ``attempt``, the one that reacted to
        ``attempt - 1``. ``None`` when there is none."""
        from ..remediate.actions import RERUN_ACTIONS

        if not run_id and not commit:
            raise ValueError("run_id or commit is needed to find a job's directive")
        p = {"owner": owner, "repo": repo, "provider": provider, "name": job_name or "", "run": run_id or "",
             "commit": commit or "", "attempt": int(attempt or 0), "actions": sorted(RERUN_ACTIONS),
             "hours": float(max_age_hours)}
        res = self.client.query(
            f"""SELECT c.id, c.action, c.provider, c.owner, c.repo, c.job_id, c.attempt, c.run_id, c.parameters
                FROM {self.db}.commands AS c FINAL
                INNER JOIN (SELECT job_key, attempt, job_name, run_id, head_sha FROM {self.db}.job_runs FINAL
                            WHERE owner = {{owner:String}} AND repo = {{repo:String}}
                              AND provider = {{provider:String}}) AS j
                    ON j.job_key = c.job_key AND j.attempt = c.attempt
                WHERE c.owner = {{owner:String}} AND c.repo = {{repo:String}} AND c.provider = {{provider:String}}
                  AND c.action IN {{actions:Array(String)}}
                  AND c.ts >= now64(3) - toIntervalSecond(toInt64({{hours:Float64}} * 3600))
                  AND ({{run:String}} = '' OR ifNull(c.run_id, ifNull(j.run_id, '')) = {{run:String}})
                  AND ({{commit:String}} = '' OR ifNull(j.head_sha, '') = {{commit:String}})
                  AND ({{name:String}} = '' OR j.job_name = {{name:String}}
                       OR startsWith(j.job_name, concat({{name:String}}, ' (')))
                  AND ({{attempt:UInt32}} = 0 OR c.attempt + 1 = {{attempt:UInt32}})
                ORDER BY c.ts DESC, c.id
                LIMIT 1""", parameters=p)
        if not res.result_rows:
            return None
        cid, action, prov, own, rep, job_id, att, run, params = res.result_rows[0]
        try:
            parameters = orjson.loads(params or "{}")
        except orjson.JSONDecodeError:
            parameters = {}
        return {"command_id": cid, "action": action, "provider": prov, "owner": own, "repo": rep, "job_id": job_id,
                "attempt": int(att), "run_id": run, "parameters": parameters}


def _evidence(text: str) -> list[dict[str, Any]]:
    try:
        items = orjson.loads(text or "[]")
    except orjson.JSONDecodeError:
        return []
    return [{"line": int(e.get("line", 0)), "text": str(e.get("text", "")), "pattern": str(e.get("pattern", ""))}
            for e in items if isinstance(e, dict)]


def _window_figures(jobs: Sequence[Mapping[str, Any]], eps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Attempts, success rate, episodes, healed share, MTTR and MTTG of one window's ``roi_jobs`` and
    ``roi_episodes`` rows (the report's figures and each window of the reliability view)."""
    attempts = sum(int(r["jobs"]) for r in jobs)
    failed = sum(int(r["failed_jobs"]) for r in jobs)
    episodes = sum(int(r["episodes"]) for r in eps)
    acted = sum(int(r["acted_greens"]) for r in eps)
    return {
        "jobs": attempts, "failed_jobs": failed, "success_rate": _round(_ratio(attempts - failed, attempts)),
        "failure_episodes": episodes,
        "healed_share": _round(_ratio(sum(int(r["healed_episodes"]) for r in eps), episodes)),
        "mttr_minutes": _round(_ratio(sum(float(r["acted_ttg_minutes"]) for r in eps), acted)),
        "mttg_minutes": _round(_ratio(sum(float(r["ttg_minutes"]) for r in eps), sum(int(r["greens"]) for r in eps))),
    }


def _sql_time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _change(now: float | None, before: float | None) -> float | None:
    return None if now is None or before is None else round(now - before, 4)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)

