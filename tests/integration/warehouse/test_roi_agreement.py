"""One data set, every surface: ``guard report`` (the reader), the REST API's ROI routes (the dashboard's
data), the Grafana panels' SQL and the API's Prometheus ``/metrics`` give the same recovery rate, time
saved, costs, MTTR (and its counterfactual), MTTG and flaky-test rate.

The facts: test_roi.py's acme/web story, plus acme/shop (T = two days ago; every number worked by hand):

* ``deploy`` (job 400): fails at T ($0.80, network, commit d1). The guard sends retry_backoff at T+2
  (estimated $0.70), which never runs (the executor refused it). The next push (job 401, commit d2) is
  green at T+90 ($0.60). The push does not decide the re-run (another commit): not decided, no time
  saved, re-run cost = the estimate $0.70. An episode of 90 min that the guard acted on, not healed.
* ``unit`` (job 600): fails at T ($0.40, test_failure: u1 failed, u2 and u3 passed, commit u). The guard
  re-runs u1 in isolation at T+1 (retry_tests_isolated, tests ["u1"]); attempt 2 on commit u is green at
  T+11 ($0.14, u1 passed). Recovered, reaction 1 min: 30 - 1 = 29 min saved; episode 11 min, healed.
  The guard also quarantines u3 at T+5 (quarantine_test). u1: judged flaky and failed+passed on one
  commit; u3: judged flaky only.
* ``build`` (job 700): fails at T ($0.30, oom, commit b1); rerun_more_memory at T+3 (est. $0.60);
  attempt 2 on b1 fails at T+20 ($0.60), diagnosed oom again, notify_oncall (retry limit). A push (701,
  commit b2) is green at T+100 ($0.30). The re-run is decided, not recovered; attempt 2 was not re-run
  and no later attempt on b1 was green: cost avoided $0.60. Episode 100 min, acted on, not healed.
* ``lint`` (job 800): fails at T ($0.10, lint_style, commit l1), notify_author; a push (801, commit l2)
  is green at T+30 ($0.10). Cost avoided $0.10; episode 30 min, not acted on.

acme/shop, all time: 9 attempts, 5 failed, CI cost $3.34; 3 re-runs (2 decided, 1 recovered: recovery
0.5), 3 other commands; time saved 29 min; re-run cost 0.70 + 0.14 + 0.60 = $1.44; cost avoided $0.70;
MTTR (90 + 11 + 100) / 3 = 67 min, without the guard (201 + 29) / 3 = 76.667 min; MTTG (201 + 30) / 4
= 57.75 min: the guard's episodes are the long ones (build failed twice), which is why MTTR > MTTG
here, and why the two are not compared; flaky tests {u1, u3} of {u1, u2, u3}: 2/3 (judged 2, observed 1).
Under 003's rule (the next attempt, whatever the commit) the push 401 would have "recovered" deploy's
re-run: recovery 2/3 and 57 min saved.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.python.asgi import get_client

from healing_guard.rest import ApiKeys, create_app
from healing_guard.schemas import Command, Evidence, Finding, JobEvent, Outcome, TestResult
from healing_guard.warehouse import FactWriter, command_fact, diagnosis_fact, job_run_fact, outcome_fact, test_result_fact
from healing_guard.warehouse.read import WarehouseReader
from tests.integration.warehouse.test_roi import FACTS, MIN, OUTCOME, T
from tests.unit.deploy.test_grafana import SCHEMA, expand, load_dashboard, panel_queries

pytestmark = pytest.mark.integration


def run(job_id: str, name: str, conclusion: str, at: float, cost: float, sha: str, attempt: int = 1) -> Any:
    ev = JobEvent(provider="github", owner="acme", repo="shop", job_id=job_id, job_name=name, status="completed",
                  conclusion=conclusion, attempt=attempt, workflow="ci", branch="main", head_sha=sha,  # type: ignore[arg-type]
                  started_at=at - 5 * MIN, completed_at=at)
    return job_run_fact(ev, cost_usd=cost)


def diag(job_id: str, category: str, at: float, attempt: int = 1) -> Any:
    return diagnosis_fact(Finding(provider="github", owner="acme", repo="shop", job_id=job_id,
                                  finding_id=f"f-shop-{job_id}-{attempt}", attempt=attempt, category=category,
                                  confidence=0.9, ts=at, evidence=[Evidence(line=1, text=f"{category} 7", pattern="p")]))


def cmd(job_id: str, action: str, at: float, cost: float, attempt: int = 1, **parameters: Any) -> Any:
    return command_fact(Command(provider="github", owner="acme", repo="shop", job_id=job_id,
                                command_id=f"c-shop-{job_id}-{attempt}-{action}", attempt=attempt, action=action,
                                reason="why", category="x", confidence=0.9, estimated_cost_usd=cost, ts=at,
                                parameters=parameters))


def result(job_id: str, test_id: str, outcome: str, at: float, attempt: int = 1) -> Any:
    return test_result_fact(TestResult(provider="github", owner="acme", repo="shop", job_id=job_id, test_id=test_id,
                                       outcome=outcome, attempt=attempt, ts=at), p_fail=None)  # type: ignore[arg-type]


SHOP = [
    run("400", "deploy", "failure", T, 0.80, "d1"), diag("400", "network", T + MIN),
    cmd("400", "retry_backoff", T + 2 * MIN, 0.70), run("401", "deploy", "success", T + 90 * MIN, 0.60, "d2"),
    run("600", "unit", "failure", T, 0.40, "u"), diag("600", "test_failure", T + MIN),
    cmd("600", "retry_tests_isolated", T + MIN, 0.15, tests=["u1"], failed_tests=["u1"]),
    cmd("600", "quarantine_test", T + 5 * MIN, 0.0, test_id="u3"),
    run("600", "unit", "success", T + 11 * MIN, 0.14, "u", attempt=2),
    result("600", "u1", "failed", T), result("600", "u2", "passed", T), result("600", "u3", "passed", T),
    result("600", "u1", "passed", T + 11 * MIN, attempt=2),
    run("700", "build", "failure", T, 0.30, "b1"), diag("700", "oom", T + MIN),
    cmd("700", "rerun_more_memory", T + 3 * MIN, 0.60),
    run("700", "build", "failure", T + 20 * MIN, 0.60, "b1", attempt=2), diag("700", "oom", T + 21 * MIN, attempt=2),
    cmd("700", "notify_oncall", T + 21 * MIN, 0.0, attempt=2), run("701", "build", "success", T + 100 * MIN, 0.30, "b2"),
    run("800", "lint", "failure", T, 0.10, "l1"), diag("800", "lint_style", T + MIN),
    cmd("800", "notify_author", T + MIN, 0.0), run("801", "lint", "success", T + 30 * MIN, 0.10, "l2"),
    outcome_fact(Outcome(command_id="c-shop-400-1-retry_backoff", job_key="github/acme/shop/400", action="retry_backoff",
                         status="refused", detail="not on the allow-list", ts=T + 2.1 * MIN)),
]

#: acme/shop's figures, worked out by hand above
SHOP_FIGURES = {"recovery_rate": 0.5, "time_saved_minutes": 29.0, "rerun_cost_usd": 1.44, "cost_saved_usd": 0.70,
                "mttr_minutes": 67.0, "mttr_without_guard_minutes": 230 / 3, "mttg_minutes": 57.75,
                "flaky_test_rate": 2 / 3}
COMPARED = tuple(SHOP_FIGURES)
ALL_TIME = 3660  # the API's longest window: every fact here is younger


@pytest.fixture
def surfaces(ch_client: Any, migrated: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    FactWriter(ch_client, migrated).write([*FACTS, OUTCOME, *SHOP])
    reader = WarehouseReader(ch_client, migrated, human_response_minutes=30)  # Grafana's $human_minutes
    keys = ApiKeys(tmp_path / "api-keys.json")
    _, every = keys.create(["*"])
    _, shop = keys.create(["acme/shop"])
    _, nothing = keys.create(["gitlab:acme/*"])
    app: Any = create_app(lambda: reader, keys=keys)
    with get_client(app) as client:
        yield {"reader": reader, "client": client, "db": migrated, "ch": ch_client,
               "keys": {"every": every, "shop": shop, "nothing": nothing}}


def api(s: dict[str, Any], path: str, key: str) -> dict[str, Any]:
    r = s["client"].get(path, headers={"Authorization": f"Bearer {s['keys'][key]}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def grafana(s: dict[str, Any], repo: str) -> dict[str, float | None]:
    """The Grafana panels' SQL as Grafana sends it (all time, one repository or __all), in the test database."""
    queries = dict(panel_queries(load_dashboard()))

    def rows(title: str) -> list[tuple[Any, ...]]:
        sql = re.sub(r"\b(FROM|JOIN)\s+(" + "|".join(SCHEMA) + r")\b", rf"\1 {s['db']}.\2",
                     expand(queries[title], repo=repo))
        return list(s["ch"].query(sql).result_rows)

    ((recovery,),) = rows("Recovery rate")
    ((saved,),) = rows("Time saved")
    ((rerun_cost,),) = rows("Rerun cost")
    ((avoided,),) = rows("Cost saved (useless retries avoided)")
    ((mttg,),) = rows("Mean time to green")
    ((mttr, without),) = rows("MTTR and MTTR without the guard")
    ((flaky_rate, _judged, _observed, _seen),) = rows("Flaky-test rate")
    return {"recovery_rate": recovery, "time_saved_minutes": saved, "rerun_cost_usd": rerun_cost,
            "cost_saved_usd": avoided, "mttr_minutes": mttr, "mttr_without_guard_minutes": without,
            "mttg_minutes": mttg, "flaky_test_rate": flaky_rate}


def metrics(s: dict[str, Any], repo: str | None) -> dict[str, float | None]:
    """The API's /metrics for one repository (``repo`` label) or all (no label)."""
    r = s["client"].get("/metrics")
    assert r.status_code == 200
    labels = {"repo": repo} if repo else {}
    v = {(x.name, frozenset(x.labels.items())): x.value for f in text_string_to_metric_families(r.text)
         for x in f.samples}

    def get(name: str) -> float | None:
        return v.get((name, frozenset(labels.items())))

    return {"recovery_rate": get("healing_guard_recovery_rate"),
            "time_saved_minutes": get("healing_guard_time_saved_minutes_total"),
            "rerun_cost_usd": get("healing_guard_rerun_cost_usd_total"),
            "cost_saved_usd": get("healing_guard_cost_saved_usd_total"),
            "flaky_test_rate": get("healing_guard_flaky_test_rate")}


def same(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-3)


def assert_agree(name: str, ref: dict[str, Any], other: dict[str, Any]) -> None:
    diff = {k: (ref[k], other[k]) for k in other if not same(ref[k], other[k])}
    assert not diff, f"{name} disagrees with the report: {diff}"


def test_one_repository_reads_the_same_everywhere(surfaces: dict[str, Any]) -> None:
    report = surfaces["reader"].report("acme", "shop")
    # the hand-worked answers first: agreeing on a wrong number would not do
    assert {k: report[k] for k in COMPARED} == {k: pytest.approx(v, abs=1e-3) for k, v in SHOP_FIGURES.items()}
    assert (report["jobs"], report["failed_jobs"], report["ci_cost_usd"]) == (9, 5, pytest.approx(3.34))
    assert (report["auto_commands"], report["reruns_decided"], report["reruns_recovered"]) == (3, 2, 1)
    assert (report["mttr_episodes"], report["mttg_episodes"], report["open_failures"]) == (3, 4, 0)
    assert (report["tests_seen"], report["flaky_tests_judged"], report["flaky_tests_observed"]) == (3, 2, 1)
    assert [(t["test_id"], t["flaky_jobs"], t["guard_reruns"], t["quarantined"]) for t in report["flakiest_tests"]] \
        == [("u1", 1, 1, False), ("u3", 0, 0, True)]
    assert report["reliability"]["current"]["healed_share"] == 0.25  # unit's episode, of 4
    # the API's longest window holds every fact: the same figures as all time (/metrics, Grafana's "all")
    window = surfaces["reader"].report("acme", "shop", ALL_TIME)
    assert_agree("the reader over 3660 days", report, {k: window[k] for k in COMPARED})

    roi = api(surfaces, f"/api/v1/repos/acme/shop/roi?days={ALL_TIME}", "shop")
    assert_agree("the API (dashboard data)", report, {k: roi["report"][k] for k in COMPARED})
    assert roi["report"] == window
    assert_agree("Grafana", report, grafana(surfaces, "acme/shop"))
    assert_agree("/metrics", report, metrics(surfaces, "acme/shop"))
    # the dashboard's table of recent actions: newest first, with the executor's word and the re-run's result
    acts = [(a["job_id"], a["attempt"], a["action"], a["status"], a["rerun_conclusion"]) for a in roi["actions"]]
    assert acts == [("700", 2, "notify_oncall", None, None), ("600", 1, "quarantine_test", None, None),
                    ("700", 1, "rerun_more_memory", None, "failure"), ("400", 1, "retry_backoff", "refused", None),
                    ("600", 1, "retry_tests_isolated", None, "success"), ("800", 1, "notify_author", None, None)]


def test_all_repositories_read_the_same_everywhere(surfaces: dict[str, Any]) -> None:
    report = surfaces["reader"].report()
    web, shop = surfaces["reader"].report("acme", "web"), surfaces["reader"].report("acme", "shop")
    assert report["time_saved_minutes"] == pytest.approx(web["time_saved_minutes"] + shop["time_saved_minutes"])
    assert report["recovery_rate"] == pytest.approx(2 / 3, abs=1e-4)  # web 1/1, shop 1/2: of all re-runs, not a mean
    everything = api(surfaces, f"/api/v1/roi?days={ALL_TIME}", "every")
    assert everything["repositories"] == ["github:acme/api", "github:acme/shop", "github:acme/web"]
    assert everything["report"] == surfaces["reader"].report(days=ALL_TIME)
    assert_agree("the API (dashboard data)", report, {k: everything["report"][k] for k in COMPARED})
    assert_agree("Grafana", report, grafana(surfaces, "__all"))
    assert_agree("/metrics", report, metrics(surfaces, None))


def test_the_all_repositories_view_shows_only_what_the_key_may_read(surfaces: dict[str, Any]) -> None:
    shop = api(surfaces, f"/api/v1/roi?days={ALL_TIME}", "shop")
    assert shop["repositories"] == ["github:acme/shop"]
    assert shop["report"] == {**surfaces["reader"].report("acme", "shop", ALL_TIME), "repo": None}
    assert {a["repo"] for a in shop["actions"]} == {"acme/shop"}
    nothing = api(surfaces, f"/api/v1/roi?days={ALL_TIME}", "nothing")  # a key of GitLab's acme: nothing here
    assert nothing["repositories"] == [] and nothing["report"]["jobs"] == 0 and nothing["actions"] == []
    assert nothing["daily"] == [] and nothing["report"]["failures_by_category"] == {}
    r = surfaces["client"].get("/api/v1/roi")
    assert r.status_code == 401
