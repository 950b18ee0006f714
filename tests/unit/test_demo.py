"""`guard demo`'s parts that decide its figures: the whole-day shift of the sample's clock and the CI
stand-in that runs the guard's re-runs (healing_guard.samples.rerun_attempts). The whole demo, twice with
one seed: tests/integration/test_demo_seed.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from healing_guard.demo import BASE, DAY, day_shift
from healing_guard.samples import SampleJob, build_repos, generate, rerun_attempts

SEED = 7
SAMPLE = generate(60, SEED)


def _time_of_day(t: float) -> float:
    return t % DAY


@pytest.mark.parametrize("now", [BASE + 40 * DAY + 5.0, BASE + 40 * DAY + 43_210.5, BASE + 41 * DAY - 61.0,
                                 BASE + 400 * DAY + 77_777.0])
def test_the_sample_moves_by_whole_days_to_end_within_the_last_day(now: float) -> None:
    end = max(j.completed.completed_at or 0.0 for j in SAMPLE)
    shift = day_shift(end, now)
    assert shift % DAY == 0 and shift > 0
    assert now - 60.0 - DAY < end + shift <= now - 60.0
    # the times of day stay the seed's: budget days begin at the same point of the traffic on every run
    moved = generate(60, SEED, start=BASE + shift)
    assert [_time_of_day(j.completed.completed_at or 0.0) for j in moved] == pytest.approx(
        [_time_of_day(j.completed.completed_at or 0.0) for j in SAMPLE])


def test_the_day_shift_is_the_same_all_day() -> None:
    end = max(j.completed.completed_at or 0.0 for j in SAMPLE)
    day = dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc).timestamp()
    shifts = {day_shift(end, day + s) for s in range(3600, 86_400, 3600)}  # one run an hour, one UTC day
    assert len(shifts) <= 2  # at most once a day does the traffic move on by a day


def _failed(category: str, flaky: bool | None = None) -> SampleJob:
    return next(j for j in SAMPLE if j.expected_category == category and j.completed.conclusion != "success"
                and (flaky is None or j.flaky == flaky))


def _command(job: SampleJob, action: str, *, cid: str | None = None, category: str | None = None,
             **parameters: Any) -> dict[str, Any]:
    ev = job.completed
    return {"command_id": cid or f"c-{ev.job_id}-{action}", "provider": ev.provider, "owner": ev.owner,
            "repo": ev.repo, "job_id": ev.job_id, "attempt": 1, "action": action,
            "category": category or job.expected_category, "ts": (ev.completed_at or 0.0) + 1.0,
            "parameters": parameters}


def test_the_ci_stand_in_runs_re_runs_by_the_samples_ground_truth() -> None:
    flaky, network, code = _failed("test_failure", flaky=True), _failed("network"), _failed("compilation_error")
    regression = _failed("test_failure", flaky=False)
    oom = _failed("oom")
    commands = [
        _command(flaky, "retry_tests_isolated", tests=flaky.flaky_tests),
        _command(network, "retry_backoff", backoff_seconds=[120, 480]),
        _command(code, "retry"),  # a code failure: a re-run fails again, whatever the guard thought
        _command(regression, "retry_tests_isolated", tests=["x"]),  # not flaky: fails again
        _command(oom, "rerun_larger_runner", runner_size="next"),
        _command(code, "notify_author"),  # not a re-run: nothing runs
        _command(network, "retry_backoff", backoff_seconds=[120, 480]),  # the same command again: runs once
    ]
    runs = {r.command_id: r for r in rerun_attempts(SAMPLE, commands, SEED)}
    assert set(runs) == {c["command_id"] for c in commands if c["action"] != "notify_author"}
    for r in runs.values():
        failed = next(j.completed for j in SAMPLE if j.completed.job_key == r.job.job_key)
        assert (r.job.attempt, r.job.head_sha, r.job.branch, r.job.job_name) == (
            2, failed.head_sha, failed.branch, failed.job_name)  # the same job, the same commit
        assert r.job.status == "completed" and (r.job.started_at or 0) >= (failed.completed_at or 0) + 1.0 + 30.0
    assert runs[f"c-{code.completed.job_id}-retry"].job.conclusion == "failure"
    assert runs[f"c-{regression.completed.job_id}-retry_tests_isolated"].job.conclusion == "failure"
    backoff = runs[f"c-{network.completed.job_id}-retry_backoff"].job
    assert (backoff.started_at or 0) >= (network.completed.completed_at or 0) + 1.0 + 30.0 + 120.0
    tests_only = runs[f"c-{flaky.completed.job_id}-retry_tests_isolated"]
    assert [t.test_id for t in tests_only.tests] == flaky.flaky_tests and tests_only.tests[0].attempt == 2
    assert {t.outcome for t in tests_only.tests} == {"passed" if tests_only.job.conclusion == "success" else "failed"}
    # a tests-only re-run runs a third of the job (the table's rerun_fraction 0.35), a larger runner costs more
    assert tests_only.job.duration_minutes == pytest.approx(max(flaky.completed.duration_minutes * 0.35, 0.5), rel=1e-3)
    sizes = ("small", "medium", "large", "xlarge")
    bigger = runs[f"c-{oom.completed.job_id}-rerun_larger_runner"].job.runner_size
    assert bigger in sizes and oom.completed.runner_size in sizes
    assert sizes.index(bigger) == min(sizes.index(oom.completed.runner_size or "small") + 1, 3)
    # the same seed and commands: the same re-runs, in any order of the commands
    again = rerun_attempts(SAMPLE, list(reversed(commands)), SEED)
    assert [(r.command_id, r.job.conclusion, r.job.completed_at) for r in again] == \
        [(r.command_id, r.job.conclusion, r.job.completed_at) for r in sorted(runs.values(), key=lambda r: r.command_id)]


def test_flaky_re_runs_pass_as_often_as_their_tests_flake() -> None:
    """Over many seeds' worth of commands, a flaky test's isolated re-run passes with 1 - its flake rate."""
    flaky = _failed("test_failure", flaky=True)
    rate = {t.test_id: t.flake_rate for r in build_repos(SEED) for t in r.tests}
    want = 1.0
    for t in flaky.flaky_tests:
        want *= 1 - rate[t]
    commands = [_command(flaky, "retry_tests_isolated", cid=f"c-{i}", tests=flaky.flaky_tests) for i in range(2000)]
    passed = sum(r.job.conclusion == "success" for r in rerun_attempts(SAMPLE, commands, SEED)) / len(commands)
    assert passed == pytest.approx(want, abs=0.04)
