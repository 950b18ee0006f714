"""The ROI definitions on constructed facts with known answers, on the real ClickHouse engine (chDB).

The story of repository acme/web (every number below is worked out by hand in the comments):

* ``test`` (job 100): attempt 1 fails at T (runner lost, $1.00). The guard re-runs it 2 minutes later;
  attempt 2 succeeds at T+15 min ($1.20). Re-run cost $1.20; time saved 30 - 2 = 28 min; an episode of
  15 min that the guard acted on.
* ``lint`` (job 200): fails at T ($0.50, compilation error); the author is told, no re-run. The next
  push (job 201, another commit) is green at T+60 min ($0.30). Cost avoided $0.50; episode of 60 min.
* ``e2e`` (job 300): attempt 1 fails at T ($2.00, test_failure, test t1 failed); no re-run by the guard,
  but a person re-runs it and attempt 2 passes on the same commit at T+40 min ($2.00, t1 passed). A
  re-run did help here, so nothing counts as avoided; episode of 40 min; t1 is flaky.
* ``deploy`` (job 400): fails at T ($0.80, network); the guard schedules a backoff re-run estimated at
  $0.70 that has not run yet: re-run cost $0.70 (estimate), an open episode, undecided.
* ``old`` (job 500): failed 40 days ago ($5.00, unknown), nobody ever re-ran it.
* acme/api (job 900) fails too, and must not leak into acme/web's figures.

So for acme/web over 30 days: 7 completed attempts, 4 failed, CI cost $7.80, 2 re-runs and 2 other
commands, time saved 28 min, re-run cost $1.90, cost avoided $0.50, MTTR 15 min (without the guard, a
person re-running after 30 min: 15 + 28 = 43 min), MTTG (15+60+40)/3 = 38.3333 min, 1 open episode,
recovery rate 1/1, tests seen 3, flaky 1 (t1: failed and passed on one commit; the guard judged none).

tests/integration/warehouse/test_roi_agreement.py adds a second story (re-runs that never ran, a failed
re-run, tests the guard judged flaky) and checks that every surface gives the same figures.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import pytest

from healing_guard.remediate.actions import RERUN_ACTIONS
from healing_guard.schemas import BudgetSnapshot, Command, Evidence, Finding, JobEvent, Outcome, TestResult
from healing_guard.warehouse import FactWriter, command_fact, diagnosis_fact, job_run_fact, outcome_fact, test_result_fact
from healing_guard.warehouse.read import QUERY_DIR, WarehouseReader
from tests.support.paths import ROOT

pytestmark = pytest.mark.integration

T = float(int(time.time()) - 2 * 86400)
MIN = 60.0
MIGRATION = ROOT / "infra" / "clickhouse" / "migrations" / "003_roi.sql"


def run(job_id: str, name: str, conclusion: str, at: float, cost: float, *, attempt: int = 1, sha: str = "s1",
        repo: str = "web") -> Any:
    ev = JobEvent(provider="github", owner="acme", repo=repo, job_id=job_id, job_name=name, status="completed",
                  conclusion=conclusion, attempt=attempt, workflow="ci", branch="main", head_sha=sha,  # type: ignore[arg-type]
                  started_at=at - 5 * MIN, completed_at=at)
    return job_run_fact(ev, cost_usd=cost)


def diag(job_id: str, category: str, at: float, *, attempt: int = 1, repo: str = "web", line: str = "boom 42") -> Any:
    return diagnosis_fact(Finding(provider="github", owner="acme", repo=repo, job_id=job_id, finding_id=f"f-{job_id}-{attempt}",
                                  attempt=attempt, category=category, confidence=0.9, ts=at,
                                  evidence=[Evidence(line=7, text=line, pattern="p")]))


def command(job_id: str, action: str, at: float, cost: float, *, spent: float, repo_spent: float) -> Any:
    return command_fact(Command(provider="github", owner="acme", repo="web", job_id=job_id, command_id=f"c-{job_id}-{action}",
                                attempt=1, action=action, reason="why", category="x", confidence=0.9, estimated_cost_usd=cost,
                                ts=at, budget=BudgetSnapshot(day="2026-11-24", spent_usd=spent, daily_budget_usd=200.0,
                                                             repo_spent_usd=repo_spent, repo_budget_usd=50.0,
                                                             job_retries=0, max_retries_per_job=2)))


def result(job_id: str, test_id: str, outcome: str, at: float, attempt: int = 1) -> Any:
    return test_result_fact(TestResult(provider="github", owner="acme", repo="web", job_id=job_id, test_id=test_id,
                                       outcome=outcome, attempt=attempt, ts=at), p_fail=None)  # type: ignore[arg-type]


FACTS = [
    run("100", "test", "failure", T, 1.00), run("100", "test", "success", T + 15 * MIN, 1.20, attempt=2),
    diag("100", "infra_runner_lost", T + MIN),
    command("100", "retry", T + 2 * MIN, 0.9, spent=1.0, repo_spent=0.9),
    run("200", "lint", "failure", T, 0.50), diag("200", "compilation_error", T + MIN, line="error: E0308 at 12"),
    command("200", "notify_author", T + MIN, 0.0, spent=1.0, repo_spent=0.9),
    run("201", "lint", "success", T + 60 * MIN, 0.30, sha="s2"),
    run("300", "e2e", "failure", T, 2.00), diag("300", "test_failure", T + MIN),
    command("300", "notify_author", T + MIN, 0.0, spent=1.0, repo_spent=0.9),
    run("300", "e2e", "success", T + 40 * MIN, 2.00, attempt=2),
    result("300", "t1", "failed", T), result("300", "t2", "passed", T),
    result("300", "t1", "passed", T + 40 * MIN, attempt=2), result("300", "t2", "passed", T + 40 * MIN, attempt=2),
    result("200", "t3", "failed", T),
    run("400", "deploy", "failure", T, 0.80), diag("400", "network", T + MIN, line="connection reset by peer"),
    command("400", "retry_backoff", T + 2 * MIN, 0.7, spent=1.7, repo_spent=1.6),
    run("500", "old", "failure", T - 40 * 86400, 5.00), diag("500", "unknown", T - 40 * 86400),
    run("900", "test", "failure", T, 9.00, repo="api"), diag("900", "oom", T, repo="api"),
]
OUTCOME = outcome_fact(Outcome(command_id="c-100-retry", job_key="github/acme/web/100", action="retry",
                               status="succeeded", detail="HTTP 201", ts=T + 2.5 * MIN))


@pytest.fixture
def reader(ch_client: Any, migrated: str) -> WarehouseReader:
    w = FactWriter(ch_client, migrated)
    w.write([*FACTS, OUTCOME])
    w.write(FACTS[:6])  # at-least-once delivery: a re-delivered batch must count for nothing
    return WarehouseReader(ch_client, migrated, human_response_minutes=30, daily_budget_usd=200.0,
                           repo_daily_budget_usd=50.0)


def test_report_of_one_repository_matches_the_hand_worked_answers(reader: WarehouseReader) -> None:
    r = reader.report("acme", "web", days=30)
    assert (r["jobs"], r["failed_jobs"]) == (7, 4)
    assert r["ci_cost_usd"] == pytest.approx(7.80)
    assert (r["auto_commands"], r["manual_commands"]) == (2, 2)
    assert (r["reruns_decided"], r["reruns_recovered"]) == (1, 1)
    assert r["time_saved_minutes"] == pytest.approx(28.0)
    assert r["rerun_cost_usd"] == pytest.approx(1.90)
    assert r["cost_avoided_usd"] == pytest.approx(0.50) and r["cost_saved_usd"] == r["cost_avoided_usd"]
    assert r["mttr_minutes"] == pytest.approx(15.0) and r["mttr_episodes"] == 1
    assert r["mttr_without_guard_minutes"] == pytest.approx(15.0 + 28.0)  # a person re-runs it after 30 min, not 2
    assert r["mttg_minutes"] == pytest.approx((15 + 60 + 40) / 3, abs=1e-3) and r["mttg_episodes"] == 3
    assert r["open_failures"] == 1
    assert r["recovery_rate"] == 1.0
    assert r["recovery_by_strategy"] == [
        {"action": "retry", "commands": 1, "recovered": 1, "decided": 1, "rate": 1.0},
        {"action": "retry_backoff", "commands": 1, "recovered": 0, "decided": 0, "rate": None}]
    assert (r["tests_seen"], r["flaky_tests"]) == (3, 1) and r["flaky_test_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert (r["flaky_tests_judged"], r["flaky_tests_observed"]) == (0, 1)
    assert r["flakiest_tests"] == [{"test_id": "t1", "runs": 2, "failures": 1, "flaky_jobs": 1, "guard_reruns": 0,
                                    "quarantined": False}]
    assert r["failures_by_category"] == {"compilation_error": 1, "infra_runner_lost": 1, "network": 1, "test_failure": 1}
    assert {"template": "error: E0308 at <NUM>", "category": "compilation_error", "count": 1} in r["top_templates"]
    # the retry spend (estimated 0.90 + 0.70) against the repository's own budget that day
    assert r["budget"] == [{"day": "2026-11-24", "spent_usd": 1.6, "budget_usd": 50.0, "burn": 0.032}]


def test_all_time_all_repositories_and_the_human_response_time(reader: WarehouseReader, ch_client: Any,
                                                               migrated: str) -> None:
    r = reader.report("acme", "web")  # all time: the 40-day-old failure is in, never re-run, never green
    assert (r["jobs"], r["open_failures"]) == (8, 2)
    assert r["cost_avoided_usd"] == pytest.approx(5.50)
    everyone = reader.report()
    assert everyone["jobs"] == 9 and everyone["failures_by_category"]["oom"] == 1
    assert everyone["budget"] == [{"day": "2026-11-24", "spent_usd": 1.6, "budget_usd": 200.0, "burn": 0.008}]
    assert WarehouseReader(ch_client, migrated).report()["budget"][0]["burn"] is None  # no budget configured
    assert reader.report("acme", "api", days=30)["cost_avoided_usd"] == pytest.approx(9.0)
    quick = WarehouseReader(ch_client, migrated, human_response_minutes=10)
    assert quick.report("acme", "web", days=30)["time_saved_minutes"] == pytest.approx(8.0)
    slow_guard = WarehouseReader(ch_client, migrated, human_response_minutes=1)  # a person faster than the guard
    assert slow_guard.report("acme", "web", days=30)["time_saved_minutes"] == 0.0


def test_daily_series_add_up_to_the_report(reader: WarehouseReader) -> None:
    r = reader.report("acme", "web", days=30)
    days = reader.daily("acme", "web", days=30)
    assert [d["day"] for d in days] == sorted(d["day"] for d in days)
    assert sum(d["jobs"] for d in days) == r["jobs"]
    assert sum(d["time_saved_minutes"] for d in days) == pytest.approx(r["time_saved_minutes"])
    assert sum(d["cost_saved_usd"] for d in days) == pytest.approx(r["cost_saved_usd"])
    assert sum(d["rerun_cost_usd"] for d in days) == pytest.approx(r["rerun_cost_usd"])
    assert any(d["mttg_minutes"] is not None for d in days)


def test_repo_health_and_one_failures_analysis(reader: WarehouseReader) -> None:
    h = reader.repo_health("acme", "web", days=30)
    assert h["repo"] == "acme/web" and h["failure_rate"] == pytest.approx(4 / 7, abs=1e-4)
    assert h["healing_success_rate"] == 1.0 and h["flaky_tests"] == 1 and h["last_failure_at"].endswith("Z")
    assert reader.repos() == ["acme/api", "acme/web"]

    f = reader.failure("acme", "web", "100")
    assert f is not None and f["category"] == "infra_runner_lost" and f["attempt"] == 1
    assert f["evidence"] == [{"line": 7, "text": "boom 42", "pattern": "p"}]
    assert [(c["action"], c["outcome"]["status"]) for c in f["commands"]] == [("retry", "succeeded")]
    assert f["recommendations"][0]["action"] == "retry" and f["recommendations"][0]["automatic"]
    code = reader.failure("acme", "web", "400")
    assert code is not None and code["commands"][0]["outcome"] is None
    nothing_sent = reader.failure("acme", "web", "500")  # no command: the strategy table's answer
    assert nothing_sent is not None and nothing_sent["recommendations"][0]["action"] == "notify_oncall"
    assert reader.failure("acme", "web", "nope") is None
    assert reader.failure("acme", "api", "100") is None  # another repository's job id


def test_the_materialized_daily_roi_agrees_after_a_refresh(reader: WarehouseReader, ch_client: Any, migrated: str) -> None:
    ch_client.command(f"SYSTEM REFRESH VIEW {migrated}.roi_daily_repo")
    ch_client.command(f"SYSTEM WAIT VIEW {migrated}.roi_daily_repo")
    rows = ch_client.query(f"SELECT sum(jobs), sum(reruns), sum(recovered), sum(time_saved_minutes), "
                           f"sum(rerun_cost_usd), sum(cost_avoided_usd) FROM {migrated}.roi_daily_repo "
                           f"WHERE owner = 'acme' AND repo = 'web'").result_rows[0]
    jobs, reruns, recovered, saved, rerun_cost, avoided = rows
    assert (jobs, reruns, recovered) == (8, 2, 1)
    assert saved == pytest.approx(28.0) and rerun_cost == pytest.approx(1.9) and avoided == pytest.approx(5.5)


def test_the_sql_repeats_the_executors_rerun_list() -> None:
    """003_roi.sql, 004 and the queries name the re-run actions in SQL; they must be the executor's."""
    for path in (MIGRATION, MIGRATION.with_name("004_rerun_same_commit.sql"), QUERY_DIR / "roi_actions.sql"):
        lists = re.findall(r"action IN \(([^)]*)\)", path.read_text())
        assert lists, f"no action list in {path.name}"
        for found in lists:
            assert set(re.findall(r"'([a-z_]+)'", found)) == set(RERUN_ACTIONS), path.name
    assert sorted(p.name for p in QUERY_DIR.glob("*.sql")) == [
        "roi_actions.sql", "roi_avoided.sql", "roi_budget.sql", "roi_categories.sql", "roi_commands.sql",
        "roi_episodes.sql", "roi_flaky_judged.sql", "roi_flaky_tests.sql", "roi_jobs.sql"]


def test_guard_report_prints_the_same_figures(reader: WarehouseReader, migrated: str,
                                              tmp_path_factory: pytest.TempPathFactory,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import orjson
    from typer.testing import CliRunner

    from healing_guard.cli import app

    # the CLI opens the warehouse by DSN: the same chDB directory as the session's engine
    monkeypatch.setenv("GUARD_CLICKHOUSE_DSN", "chdb://" + str(tmp_path_factory.getbasetemp() / "chdb"))
    runner = CliRunner()
    res = runner.invoke(app, ["report", "--repo", "acme/web", "--json", "--daily", "--database", migrated])
    assert res.exit_code == 0, res.output
    got = orjson.loads(res.stdout)
    assert got["time_saved_minutes"] == pytest.approx(28.0) and got["cost_avoided_usd"] == pytest.approx(0.5)
    assert sum(d["jobs"] for d in got["daily"]) == 7
    res = runner.invoke(app, ["report", "--repo", "acme/web", "--database", migrated])
    text = " ".join(res.stdout.split())  # the terminal wraps long lines
    assert res.exit_code == 0 and "28.0 min" in text and "retry 1/1 of 1" in text
    res = runner.invoke(app, ["report", "--repo", "nobody", "--database", migrated])
    assert res.exit_code == 2 and "owner/repo" in res.output


def test_the_costs_ledger_holds_every_priced_fact_once(reader: WarehouseReader, ch_client: Any, migrated: str) -> None:
    rows = dict(ch_client.query(f"SELECT kind, round(sum(usd), 4) FROM {migrated}.costs "
                                f"WHERE owner = 'acme' AND repo = 'web' GROUP BY kind").result_rows)
    assert rows == {"ci_run": pytest.approx(12.8), "rerun": pytest.approx(1.9), "avoided": pytest.approx(5.5)}


def test_a_repository_is_one_platforms(reader: WarehouseReader) -> None:
    """``acme/web`` here is GitHub's: asked for GitLab's ``acme/web``, every figure is empty."""
    github = reader.report("acme", "web", days=30, provider="github")
    assert github == reader.report("acme", "web", days=30) and github["jobs"] > 0
    gitlab = reader.report("acme", "web", days=30, provider="gitlab")
    assert gitlab["jobs"] == 0 and gitlab["failed_jobs"] == 0 and gitlab["auto_commands"] == 0
    assert reader.daily("acme", "web", 30, provider="gitlab") == []
    assert reader.repo_health("acme", "web", 30, provider="gitlab")["jobs"] == 0
    assert reader.failure("acme", "web", "100", provider="github") is not None
    assert reader.failure("acme", "web", "100", provider="gitlab") is None


def test_reliability_compares_mttr_and_success_rate_with_the_window_before(reader: WarehouseReader, ch_client: Any,
                                                                          migrated: str) -> None:
    """acme/web over 30 days: 7 attempts, 4 failed (success 3/7); 4 episodes began, 1 re-run to green by the
    guard (healed 1/4); MTTR 15 min, MTTG 38.3 min. The 30 days before: only ``old``, failed 40 days ago
    (success 0/1, an episode that never ended: no MTTR, no MTTG)."""
    rel = reader.report("acme", "web", days=30)["reliability"]
    assert rel["window_days"] == 30
    cur, prev = rel["current"], rel["previous"]
    assert (cur["jobs"], cur["failed_jobs"], cur["failure_episodes"]) == (7, 4, 4)
    assert cur["success_rate"] == pytest.approx(3 / 7, abs=1e-4) and cur["healed_share"] == 0.25
    assert cur["mttr_minutes"] == pytest.approx(15.0) and cur["mttg_minutes"] == pytest.approx(115 / 3, abs=1e-3)
    assert (prev["jobs"], prev["failed_jobs"], prev["success_rate"], prev["healed_share"]) == (1, 1, 0.0, 0.0)
    assert prev["mttr_minutes"] is None and prev["mttg_minutes"] is None and cur["until"] is None
    assert rel["change"] == {"success_rate_points": pytest.approx(100 * 3 / 7, abs=0.01), "mttr_minutes": None,
                             "mttg_minutes": None}
    assert reader.report("acme", "web", days=30)["success_rate"] == cur["success_rate"]
    # three days after the story, with 2-day windows: it is all in the window before, nothing is in the last
    later = WarehouseReader(ch_client, migrated, clock=lambda: dt.datetime.fromtimestamp(T + 3 * 86400, dt.timezone.utc))
    rel = later.reliability("acme", "web", 2)
    assert rel["current"]["jobs"] == 0 and rel["current"]["success_rate"] is None
    assert rel["previous"]["jobs"] == 7 and rel["previous"]["mttr_minutes"] == pytest.approx(15.0)
    assert rel["previous"]["until"] == dt.datetime.fromtimestamp(T + 86400, dt.timezone.utc).date().isoformat()
    assert rel["change"]["mttr_minutes"] is None


def test_daily_success_rate_and_mttr(reader: WarehouseReader) -> None:
    days = reader.daily("acme", "web", days=30)
    for d in days:
        assert d["success_rate"] == (round((d["jobs"] - d["failed_jobs"]) / d["jobs"], 4) if d["jobs"] else None)
    assert [d["mttr_minutes"] for d in days if d["mttr_minutes"] is not None] == [pytest.approx(15.0)]


def test_recent_actions_with_their_outcomes(reader: WarehouseReader) -> None:
    """The dashboard's table: newest first, the executor's outcome and, for a re-run, how its re-run ended."""
    acts = reader.recent_actions("acme", "web", 30)
    assert [(a["job_id"], a["action"]) for a in acts[:2]] == [("100", "retry"), ("400", "retry_backoff")]
    assert {a["job_id"] for a in acts} == {"100", "200", "300", "400"}  # job 500 had no command; api's is not here
    first = acts[0]
    assert (first["status"], first["detail"], first["rerun_conclusion"], first["job_name"]) == (
        "succeeded", "HTTP 201", "success", "test")
    assert first["ts"].endswith("Z") and first["repo"] == "acme/web"
    deploy = acts[1]
    assert deploy["status"] is None and deploy["rerun_conclusion"] is None  # no outcome yet, not re-run yet
    lint = next(a for a in acts if a["job_id"] == "200")
    assert lint["action"] == "notify_author" and lint["rerun_conclusion"] is None  # not a re-run
    assert len(reader.recent_actions("acme", "web", 30, limit=2)) == 2
