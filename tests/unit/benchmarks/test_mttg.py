"""The fleet simulation (benchmarks/mttg.py): one seeded stream, three policies, honest counting."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from healing_guard.patterns.library import load_library
from healing_guard.patterns.matcher import Matcher
from tests.support.paths import ROOT

# one worker runs the whole module under `pytest -n 2 --dist loadgroup` (module-scoped fixture)
pytestmark = pytest.mark.xdist_group("test_mttg")

_PATH = ROOT / "benchmarks" / "mttg.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("bench_mttg", _PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_mttg"] = mod
    spec.loader.exec_module(mod)
    return mod


mttg = _load()
#: a small fleet; many intermittent regressions so that there are some to hide
SMALL = replace(mttg.Config(), repos=4, days=2.0, warmup_days=0.5, seeds=1, seed=3, intermittent=1.0,
                mix=(("flaky", 0.5), ("regression", 0.3), ("code", 0.1), ("infra", 0.1)))


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(load_library(()), markers=True)


@pytest.fixture(scope="module")
def results(matcher: Matcher) -> dict[str, Any]:
    return mttg.simulate(SMALL, SMALL.seed, matcher)


def test_every_policy_sees_the_same_stream(results: dict[str, Any]) -> None:
    firsts = {p: r.first_failures for p, r in results.items()}
    assert firsts["none"] >= 8 and len(set(firsts.values())) == 1, firsts
    # no quarantine outside the guard: the same episodes start for none and retry
    starts = {p: sorted((e.repo, e.commit, e.job) for e in results[p].counted()) for p in ("none", "retry")}
    assert starts["none"] == starts["retry"]


def test_an_attempt_has_one_outcome_whoever_runs_it() -> None:
    st = mttg.build_stream(SMALL, SMALL.seed)
    c = next(c for c in st.commits if c.regression)
    one = mttg.run_attempt(st, c, 0, "test", 2, mttg.Mode(), c.at, -1.0)
    again = mttg.run_attempt(mttg.build_stream(SMALL, SMALL.seed), c, 0, "test", 2, mttg.Mode(), c.at, -1.0)
    assert one == again
    other = mttg.run_attempt(st, c, 0, "test", 3, mttg.Mode(), c.at, -1.0)
    assert (one.failed_tests, one.minutes) != (other.failed_tests, other.minutes)  # attempts differ


def test_no_healing_never_retries_by_itself(results: dict[str, Any]) -> None:
    none = results["none"]
    assert none.auto_retries == 0 and none.human_reruns > 0
    # a person's rerun comes after the human delay: no episode of none turns green sooner
    ttg = [e.green - e.first_fail for e in none.closed]
    assert min(ttg) >= SMALL.human_delay


def test_blind_retry_hides_intermittent_regressions_and_the_guard_none(results: dict[str, Any]) -> None:
    regressions = [e for e in results["retry"].counted() if e.real_seen]
    assert regressions, "the stream should hold regressions"
    assert results["retry"].hidden > 0
    assert results["guard"].hidden == 0
    assert results["retry"].auto_retries > results["guard"].auto_retries


def test_guard_beats_no_healing_and_wastes_less_than_retry(results: dict[str, Any]) -> None:
    h = mttg.headline(mttg.summary(results))
    assert h["mttg_reduction_vs_none"] > 0.3
    assert h["wasted_minutes_ratio_vs_retry_all"] < 0.5


def test_json_last_line_matches_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          results: dict[str, Any]) -> None:
    args = ["--json", "--plots", str(tmp_path), "--repos", "4", "--days", "2", "--warmup-days", "0.5",
            "--seeds", "1", "--seed", "3", "--intermittent", "1.0",
            "--mix", "flaky=0.5,regression=0.3,code=0.1,infra=0.1"]
    assert mttg.main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    last = json.loads(out[-1])
    assert set(last) == {"mttg_reduction_vs_none", "wasted_minutes_ratio_vs_retry_all", "hidden_regressions"}
    assert last == mttg.headline(mttg.summary(results))
    table = "\n".join(out)
    s = mttg.summary(results)
    assert f"{s['guard']['mttg_min']:.1f}" in table and f"{s['none']['mttg_min']:.1f}" in table
    for name in ("mttg_bars.png", "mttg_ttg_cdf.png"):
        p = tmp_path / name
        assert p.exists() and 1000 < p.stat().st_size < 200_000


def test_directives_make_the_attempt_after_a_fix_green_more_often(matcher: Any) -> None:
    """The same guard on the same stream (the benchmark's default fleet, one seed), its fixes carried out as
    plain re-runs (what GitHub, GitLab and CircleCI did before directives): the attempt after a fix turns
    green less often, and time to green is longer."""
    cfg = replace(mttg.Config(), seeds=1, seed=0)
    directed = mttg.Sim(mttg.build_stream(cfg, 0), "guard", matcher).run()
    plain = mttg.simulate_plain(cfg, 0, matcher)

    def rate(r: Any) -> tuple[float, int]:
        ok = sum(r.next_green.get(a, [0, 0])[0] for a in mttg.FIX_ACTIONS)
        n = sum(r.next_green.get(a, [0, 0])[1] for a in mttg.FIX_ACTIONS)
        return ok / n, n

    (with_d, n_d), (without, n_p) = rate(directed), rate(plain)
    assert n_d >= 30 and n_p >= 30
    assert with_d > without + 0.05, (with_d, without)
    assert directed.mttg < plain.mttg


def test_a_corrupt_cache_stays_until_it_is_cleared(matcher: Any) -> None:
    """Every run of a job whose cache is corrupt fails (whatever the commit) until the cache is cleared:
    the guard's clear_cache_retry clears it (the attempt after it is green), a plain re-run does not."""
    cfg = replace(mttg.Config(), seeds=1, seed=0, cache_share=1.0)  # the default fleet, more corrupt caches
    directed = mttg.Sim(mttg.build_stream(cfg, cfg.seed), "guard", matcher).run()
    plain = mttg.simulate_plain(cfg, cfg.seed, matcher)
    ok_d, n_d = directed.next_green.get("clear_cache_retry", [0, 0])
    ok_p, n_p = plain.next_green.get("clear_cache_retry", [0, 0])
    assert n_d >= 10 and n_p >= 10, (n_d, n_p)
    assert ok_d / n_d > 0.8 and ok_p / n_p < 0.3, (ok_d, n_d, ok_p, n_p)
    assert directed.causes.get("cache", 0) >= 3  # first failures of the corrupt cache's own
    none = mttg.Sim(mttg.build_stream(cfg, cfg.seed), "none", matcher).run()
    assert none.causes.get("cache", 0) >= directed.causes.get("cache", 0)  # people clear it later
