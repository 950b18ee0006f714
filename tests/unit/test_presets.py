"""The strategy presets: each one's overrides against the defaults (values), that its ``changes`` say so,
that the planner under a preset does what its ``changes`` promise, and the names it accepts."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest

from healing_guard.classify import Diagnosis, EvidenceLine
from healing_guard.engine.core import plan_config
from healing_guard.presets import PRESET_NAMES, PRESETS, Preset, is_preset, normalize_preset, preset_settings
from healing_guard.remediate import Ledger
from healing_guard.remediate.gate import AUTOMATIC_CATEGORIES, packaged_thresholds
from healing_guard.remediate.policy import choose
from healing_guard.remediate.strategies import STRATEGIES
from healing_guard.schemas import JobEvent, TestRisk
from healing_guard.settings import Settings, load_settings

DEFAULTS = Settings()
GATES = packaged_thresholds()
NOW = 1_764_000_000.0
CODE = ("compilation_error", "lint_style", "build_config", "dependency_resolution", "dependency_missing",
        "test_failure", "test_timeout")


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def decide(name: str, category: str, confidence: float, *, attempt: int = 1,
           risks: tuple[TestRisk, ...] = (), base: Settings = DEFAULTS) -> str:
    """The action the worker's policy takes for one failed job under preset ``name``."""
    cfg = plan_config(preset_settings(base, name), partitions=1)
    job = JobEvent(provider="github", owner="acme", repo="web", job_id="7", job_name="test", status="completed",
                   conclusion="failure", attempt=attempt, started_at=NOW - 600, completed_at=NOW)
    d = Diagnosis(category, confidence, (EvidenceLine(3, "x", "p", category, confidence),))
    return choose(job, d, risks, Ledger(), cfg, 0.016, NOW).command.action


def flaky(p_retry_pass: float, runs: int, recoveries: int = 3) -> TestRisk:
    return TestRisk(test_id="t1", p_fail=0.3, p_retry_pass=p_retry_pass, runs=runs, recoveries=recoveries)


# --- the table ------------------------------------------------------------------------------------

def test_the_four_presets_of_the_product_document() -> None:
    assert PRESET_NAMES == ("auto-detect", "progressive", "aggressive", "conservative")
    fields = {f.name for f in dataclasses.fields(Settings)}
    for name, p in PRESETS.items():
        assert isinstance(p, Preset) and p.name == name and p.description
        assert set(p.overrides) <= fields, name
        # one sentence per override, naming the field, in the same order
        assert len(p.changes) == len(p.overrides), name
        for field, line in zip(p.overrides, p.changes):
            assert line.startswith(f"{field}: "), (name, line)


def test_changes_state_the_default_and_the_new_value() -> None:
    for p in PRESETS.values():
        for (field, value), line in zip(p.overrides.items(), p.changes):
            if field == "auto_thresholds":
                for cat, gate in value.items():
                    assert cat in line and f"{cat} {_fmt(GATES[cat])}" in line and _fmt(gate) in line, line
            else:
                assert f"{field}: {_fmt(getattr(DEFAULTS, field))} -> {_fmt(value)}:" in line, line
                assert value != getattr(DEFAULTS, field), (p.name, field)


def test_auto_detect_is_the_guards_defaults() -> None:
    p = PRESETS["auto-detect"]
    assert dict(p.overrides) == {} and p.changes == ()
    assert preset_settings(DEFAULTS, "auto-detect") == DEFAULTS
    mine = dataclasses.replace(DEFAULTS, confidence_threshold=0.7, auto_thresholds={"network": 0.6})
    assert preset_settings(mine, "auto-detect") == mine  # the configured settings stay


def test_progressive_values() -> None:
    s = preset_settings(DEFAULTS, "progressive")
    assert s.max_retries_per_job == 3 and DEFAULTS.max_retries_per_job == 2
    assert dict(s.auto_thresholds) == {"oom": 0.9, "disk_full": 0.9, "cache_corruption": 0.9, "docker_registry": 0.9}
    gates = plan_config(s, partitions=1).auto_thresholds
    for cat in ("oom", "disk_full", "cache_corruption", "docker_registry"):
        assert gates[cat] == 0.9 > GATES[cat]
    for cat in ("infra_runner_lost", "infra_timeout", "network", "rate_limit"):  # plain reruns: measured gates
        assert gates[cat] == GATES[cat]
    same = ("confidence_threshold", "flaky_retry_threshold", "flaky_min_runs", "daily_budget_usd",
            "repo_daily_budget_usd", "quarantine_threshold")
    assert all(getattr(s, f) == getattr(DEFAULTS, f) for f in same)
    assert "cannot order fixes by attempt" in PRESETS["progressive"].changes[0]  # said, not pretended


def test_aggressive_values() -> None:
    s = preset_settings(DEFAULTS, "aggressive")
    assert (s.confidence_threshold, DEFAULTS.confidence_threshold) == (0.4, 0.5)
    assert dict(s.auto_thresholds) == {c: 0.6 for c in AUTOMATIC_CATEGORIES}
    assert all(0.6 < GATES[c] for c in AUTOMATIC_CATEGORIES)
    assert (s.max_retries_per_job, s.flaky_retry_threshold, s.flaky_min_runs) == (3, 0.4, 3)
    assert s.flaky_min_recoveries == DEFAULTS.flaky_min_recoveries == 1  # a test must have recovered before
    assert (DEFAULTS.flaky_retry_threshold, DEFAULTS.flaky_min_runs) == (0.6, 5)
    assert (s.daily_budget_usd, s.repo_daily_budget_usd) == (DEFAULTS.daily_budget_usd, DEFAULTS.repo_daily_budget_usd)


def test_conservative_values() -> None:
    s = preset_settings(DEFAULTS, "conservative")
    assert s.confidence_threshold == 0.9 and dict(s.auto_thresholds) == {c: 0.9 for c in AUTOMATIC_CATEGORIES}
    assert (s.max_retries_per_job, s.flaky_retry_threshold, s.flaky_min_runs) == (1, 0.9, 20)
    assert (s.flaky_min_recoveries, DEFAULTS.flaky_min_recoveries) == (3, 1)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_overrides_pass_the_settings_checks(name: str) -> None:
    """What a config file with the same values would give: every value passes the settings' converters."""
    assert load_settings(None, env={}, **PRESETS[name].overrides) == preset_settings(Settings(), name)


def test_presets_are_frozen_and_their_settings_pickle() -> None:
    p = PRESETS["aggressive"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "reckless"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.overrides["max_retries_per_job"] = 99  # type: ignore[index]
    with pytest.raises(TypeError):
        p.overrides["auto_thresholds"]["network"] = 0.1
    s = preset_settings(DEFAULTS, "aggressive")
    assert pickle.loads(pickle.dumps(s)) == s


def test_auto_thresholds_merge_over_the_configured_gates() -> None:
    mine = dataclasses.replace(DEFAULTS, auto_thresholds={"network": 0.6, "oom": 0.8})
    s = preset_settings(mine, "progressive")
    assert s.auto_thresholds == {"network": 0.6, "oom": 0.9, "disk_full": 0.9, "cache_corruption": 0.9,
                                 "docker_registry": 0.9}
    assert preset_settings(mine, "conservative").auto_thresholds["network"] == 0.9


def test_max_retries_sets_the_per_job_limit_over_the_preset() -> None:
    assert preset_settings(DEFAULTS, "progressive", max_retries=5).max_retries_per_job == 5
    assert preset_settings(DEFAULTS, "conservative", max_retries=3).max_retries_per_job == 3
    assert preset_settings(DEFAULTS, "auto-detect", max_retries=4).max_retries_per_job == 4
    assert preset_settings(DEFAULTS, "aggressive", max_retries=0).max_retries_per_job == 0
    for bad in (-1, True, "3", 2.5):
        with pytest.raises(ValueError, match="max_retries"):
            preset_settings(DEFAULTS, "aggressive", max_retries=bad)  # type: ignore[arg-type]


# --- the planner under each preset does what its changes say ------------------------------------

@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("category", CODE)
def test_no_preset_retries_a_code_failure(name: str, category: str) -> None:
    assert decide(name, category, 1.0) == "notify_author"


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_no_preset_retries_a_test_that_never_recovered(name: str) -> None:
    """A first failure after a green history is a regression, however good the history looks."""
    assert decide(name, "test_failure", 0.99, risks=(flaky(0.99, 500, recoveries=0),)) == "notify_author"


def test_gates_by_preset() -> None:
    # network at 0.7: under the measured gate (0.75); aggressive acts, the others tell on-call
    assert {n: decide(n, "network", 0.7) for n in PRESET_NAMES} == {
        "auto-detect": "notify_oncall", "progressive": "notify_oncall", "aggressive": "retry_backoff",
        "conservative": "notify_oncall"}
    # network at 0.8: conservative still waits for 0.9
    assert decide("auto-detect", "network", 0.8) == decide("progressive", "network", 0.8) == "retry_backoff"
    assert decide("conservative", "network", 0.8) == "notify_oncall"
    assert decide("conservative", "network", 0.95) == "retry_backoff"
    # a fix that changes the job: progressive waits for 0.9, a plain rerun it takes at the measured gate
    assert decide("auto-detect", "cache_corruption", 0.8) == "clear_cache_retry"
    assert decide("progressive", "cache_corruption", 0.8) == "notify_oncall"
    assert decide("progressive", "cache_corruption", 0.9) == "clear_cache_retry"
    assert decide("progressive", "infra_runner_lost", 0.8) == "retry"
    # conservative: anything under 0.9 goes to on-call, a code failure too
    assert decide("conservative", "compilation_error", 0.8) == "notify_oncall"
    assert decide("aggressive", "compilation_error", 0.45) == "notify_author"
    assert decide("auto-detect", "compilation_error", 0.45) == "notify_oncall"


def test_retry_limits_by_preset() -> None:
    """attempt n failed: n - 1 reruns were made; past the limit the job escalates (one ticket)."""
    def reruns(name: str) -> int:
        return next(a for a in range(1, 10) if decide(name, "infra_runner_lost", 0.95, attempt=a) == "escalate") - 1
    assert {n: reruns(n) for n in PRESET_NAMES} == {"auto-detect": 2, "progressive": 3, "aggressive": 3,
                                                     "conservative": 1}


def test_flaky_thresholds_by_preset() -> None:
    known = flaky(0.5, 4)  # passes a rerun half the time, 4 runs of history, recovered before
    assert decide("auto-detect", "test_failure", 0.9, risks=(known,)) == "notify_author"
    assert decide("aggressive", "test_failure", 0.9, risks=(known,)) == "retry_tests_isolated"
    well_known = flaky(0.85, 50)
    assert decide("auto-detect", "test_failure", 0.9, risks=(well_known,)) == "retry_tests_isolated"
    assert decide("conservative", "test_failure", 0.95, risks=(well_known,)) == "notify_author"  # 0.85 < 0.9
    assert decide("conservative", "test_failure", 0.95, risks=(flaky(0.95, 50),)) == "retry_tests_isolated"
    assert decide("conservative", "test_failure", 0.95, risks=(flaky(0.95, 10),)) == "notify_author"  # < 20 runs
    assert decide("conservative", "test_failure", 0.95, risks=(flaky(0.95, 50, recoveries=2),)) == "notify_author"
    assert decide("aggressive", "test_failure", 0.95, risks=(flaky(0.95, 50, recoveries=1),)) == "retry_tests_isolated"
    assert decide("conservative", "test_failure", 0.85, risks=(flaky(0.95, 50),)) == "notify_oncall"  # < 0.9


def test_the_automatic_categories_are_the_tables() -> None:
    """The presets' gates cover every category with an automatic action, and nothing else."""
    assert set(AUTOMATIC_CATEGORIES) == {c for c, st in STRATEGIES.items() if st.automatic}
    assert not set(CODE) & set(AUTOMATIC_CATEGORIES)


# --- names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "name"), [
    ("auto-detect", "auto-detect"), ("Auto_Detect", "auto-detect"), ("AUTO_DETECT", "auto-detect"),
    (" progressive ", "progressive"), ("Aggressive", "aggressive"), ("conservative", "conservative")])
def test_normalize(given: str, name: str) -> None:
    assert normalize_preset(given) == name and is_preset(given)


@pytest.mark.parametrize("bad", ["auto", "autodetect", "flaky_test_retry", "", "reckless", None, 3, ["aggressive"]])
def test_unknown_names_are_refused_with_the_four(bad: object) -> None:
    assert not is_preset(bad)
    with pytest.raises(ValueError) as e:
        normalize_preset(bad)
    for name in PRESET_NAMES:
        assert name in str(e.value)
    with pytest.raises(ValueError):
        preset_settings(DEFAULTS, bad)  # type: ignore[arg-type]


def test_docs_carry_every_change_word_for_word() -> None:
    from tests.support.paths import ROOT

    text = (ROOT / "docs" / "presets.md").read_text(encoding="utf-8")
    for p in PRESETS.values():
        assert f"\n### {p.name}\n" in text, p.name
        for line in p.changes:
            assert f"\n- {line}\n" in text, line


def test_a_pipelines_preset_decides_its_jobs_in_the_worker_engine() -> None:
    """The Action's `strategy: auto-detect` and GitLab's HEALING_STRATEGY reach the worker as the job's
    healing_strategy: a preset is no unknown strategy, and its settings decide that job only."""
    import dataclasses
    import io

    from healing_guard.engine import Engine, offline_job
    from healing_guard.remediate import Ledger

    engine = Engine(Settings())
    log = ("npm ERR! code ECONNRESET\n"
           "npm ERR! network request to https://registry.npmjs.org/x failed, reason: read ECONNRESET\n")

    def action(strategy: str | None, attempt: int = 1, max_retries: int | None = None) -> tuple[str, str]:
        job = dataclasses.replace(offline_job("1", exit_code=1, duration_minutes=10.0, attempt=attempt),
                                  healing_strategy=strategy, max_retries=max_retries)
        ready, analysis = engine.read_log(io.BytesIO(log.encode()), job)
        _, decision = engine.decide(ready, Ledger(), diagnosis=analysis.diagnosis)
        return decision.command.action, decision.command.reason

    auto = action(None)
    assert auto[0] == "retry_backoff"
    for name in ("auto-detect", "Auto_Detect", "progressive", "aggressive"):
        assert action(name)[0] == "retry_backoff", name
    conservative = action("conservative")
    assert conservative[0] != "retry_backoff" and "unknown strategy" not in conservative[1], conservative
    # the pipeline's max-retries: conservative allows one rerun, so the second failure escalates
    assert action("aggressive", attempt=2)[0] == "retry_backoff"
    assert action("conservative", attempt=2)[0] != "retry_backoff"
    assert action("aggressive", attempt=2, max_retries=1)[0] == "escalate"
