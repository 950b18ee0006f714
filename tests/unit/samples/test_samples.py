"""The bundled sample traffic: deterministic, complete, well-formed, and fast enough for ``guard demo``."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest

from healing_guard.samples import CATEGORY_MIX, SampleJob, generate, messages
from healing_guard.schemas import CATEGORIES, JobEvent, LogChunk, TestResult


@pytest.fixture(scope="module")
def jobs() -> list[SampleJob]:
    return generate()


def test_same_seed_same_traffic(jobs: list[SampleJob]) -> None:
    again = generate()
    assert [list(m) for m in messages(jobs)] == [list(m) for m in messages(again)]


def test_other_seed_other_traffic() -> None:
    a, b = generate(40, seed=1), generate(40, seed=2)
    assert [j.log_lines for j in a] != [j.log_lines for j in b]


def test_default_run_has_every_category(jobs: list[SampleJob]) -> None:
    assert len(jobs) == 300
    seen = Counter(j.expected_category for j in jobs)
    assert {c for c in CATEGORIES if c != "unknown"} <= set(seen)
    assert 0.25 <= seen[None] / len(jobs) <= 0.5
    biggest_failure = max((c for c in seen if c is not None), key=lambda c: seen[c])
    assert biggest_failure == "test_failure"
    assert set(CATEGORY_MIX) - {None} <= set(CATEGORIES)
    assert abs(sum(CATEGORY_MIX.values()) - 1.0) < 1e-9


def test_small_runs_still_cover_the_taxonomy() -> None:
    """Every category is asked for even in a small run; a job's label is the taxonomy's name for how its
    log ends (a registry without the package, asked for as a missing dependency, is dependency_resolution)."""
    from healing_guard.samples.generator import FastRandom, _plan_categories

    plan = set(_plan_categories(FastRandom(3), 20))
    assert {c for c in CATEGORIES if c != "unknown"} <= plan
    labels = {j.expected_category for j in generate(20, seed=3)}
    assert labels - {None} <= set(CATEGORIES)
    assert len(labels - {None}) >= len(CATEGORIES) - 3


def test_a_registry_without_the_package_is_labelled_dependency_resolution() -> None:
    missing = [j for j in generate() if j.expected_category in ("dependency_missing", "dependency_resolution")]
    checked = 0
    for j in missing:
        text = "\n".join(line for c in j.chunks for line in c.lines)
        if "No matching distribution found" in text or "is not in this registry" in text:
            assert j.expected_category == "dependency_resolution", j.key
            checked += 1
        if "ModuleNotFoundError" in text:
            assert j.expected_category == "dependency_missing", j.key
            checked += 1
    assert checked >= 2


def test_flaky_and_genuine_test_failures(jobs: list[SampleJob]) -> None:
    tf = [j for j in jobs if j.expected_category == "test_failure"]
    flaky = [j for j in tf if j.flaky]
    genuine = [j for j in tf if not j.flaky]
    assert flaky and genuine
    for j in flaky:
        failed = {t.test_id for t in j.tests if t.outcome in ("failed", "error")}
        assert failed and failed == set(j.flaky_tests)
    for j in genuine:
        failed = {t.test_id for t in j.tests if t.outcome in ("failed", "error")}
        assert failed - set(j.flaky_tests), "a genuine failure has a non-flaky failing test"
    # a regression keeps failing the same test in consecutive jobs of its repository
    by_test = Counter(t.test_id for j in genuine for t in j.tests
                      if t.outcome == "failed" and t.test_id not in j.flaky_tests)
    assert max(by_test.values()) >= 2


def test_failing_test_ids_are_in_the_log(jobs: list[SampleJob]) -> None:
    for j in jobs:
        if j.expected_category != "test_failure":
            continue
        text = "\n".join(j.log_lines)
        for t in j.tests:
            if t.outcome in ("failed", "error"):
                assert t.test_id in text, (j.key, t.test_id)


def test_green_jobs_pass_every_test(jobs: list[SampleJob]) -> None:
    for j in jobs:
        if j.expected_category is None:
            assert j.completed.conclusion == "success"
            assert j.completed.exit_code is None
            assert j.tests and all(t.outcome in ("passed", "skipped") for t in j.tests)
        else:
            assert j.completed.conclusion in ("failure", "timed_out")


def test_flaky_tests_fail_at_their_own_rate(jobs: list[SampleJob]) -> None:
    runs: dict[str, int] = Counter()
    fails: dict[str, int] = Counter()
    for j in jobs:
        for t in j.tests:
            runs[t.test_id] += 1
            fails[t.test_id] += t.outcome == "failed"
    flaky_ids = {tid for j in jobs for tid in j.flaky_tests}
    assert 10 <= len(flaky_ids) <= 60
    assert all(runs[t] >= 3 for t in flaky_ids)


def test_job_events(jobs: list[SampleJob]) -> None:
    starts = [j.started.started_at for j in jobs]
    assert starts == sorted(starts)
    span_h = (jobs[-1].started.started_at - jobs[0].started.started_at) / 3600  # type: ignore[operator]
    assert 20 <= span_h <= 50
    keys = [j.key for j in jobs]
    assert len(set(keys)) == len(keys)
    providers = Counter(j.started.provider for j in jobs)
    assert set(providers) == {"github", "gitlab", "jenkins", "circleci"}
    for j in jobs:
        s, c = j.started, j.completed
        assert s.status == "in_progress" and s.conclusion is None
        assert c.status == "completed" and c.log_chunks == len(j.chunks)
        assert s.job_key == c.job_key
        assert s.queued_at <= s.started_at < c.completed_at  # type: ignore[operator]
        assert 1.5 <= c.duration_minutes <= 45
        assert c.runner_size in ("small", "medium", "large", "xlarge") and c.runner_labels
    codes = Counter(j.completed.exit_code for j in jobs if j.expected_category)
    assert codes[1] > codes[137] > 0 and codes[None] > 0


def test_chunks_are_contiguous_and_numbered(jobs: list[SampleJob]) -> None:
    sizes = []
    for j in jobs:
        line = 1
        for i, c in enumerate(j.chunks):
            assert c.seq == i and c.job_key == j.key
            assert c.first_line == line
            assert c.eof == (i == len(j.chunks) - 1)
            assert all("\n" not in ln for ln in c.lines)
            assert j.started.started_at <= c.ts <= j.completed.completed_at  # type: ignore[operator]
            line += len(c.lines)
        sizes.append(line - 1)
    assert min(sizes) <= 60 and max(sizes) >= 15_000
    assert 150_000 <= sum(sizes) <= 600_000


def test_chunk_size_is_honoured() -> None:
    for j in generate(30, seed=5, chunk_lines=100):
        assert all(len(c.lines) <= 100 for c in j.chunks)
        assert all(len(c.lines) == 100 for c in j.chunks[:-1])


def test_messages_order_and_decoding(jobs: list[SampleJob]) -> None:
    per_job: dict[str, list[str]] = defaultdict(list)
    by_key = {j.key: j for j in jobs}
    n = 0
    for topic, key, value in messages(jobs):
        n += 1
        if topic == "ci.jobs":
            ev = JobEvent.from_json(value)
            assert key.decode() == ev.job_key
            per_job[ev.job_key].append(ev.status)
        elif topic == "ci.logs":
            ch = LogChunk.from_json(value)
            assert key.decode() == ch.job_key
            per_job[ch.job_key].append(f"chunk{ch.seq}")
        else:
            assert topic == "ci.tests"
            tr = TestResult.from_json(value)
            assert key.decode() == tr.test_id
            per_job[tr.job_key].append("test")
    assert n == sum(2 + len(j.chunks) + len(j.tests) for j in jobs)
    for k, seq in per_job.items():
        j = by_key[k]
        assert seq == ["in_progress"] + [f"chunk{i}" for i in range(len(j.chunks))] + ["test"] * len(j.tests) + ["completed"]


def test_messages_interleave_concurrent_jobs(jobs: list[SampleJob]) -> None:
    first_keys = [k for t, k, _ in messages(jobs[:20]) if t == "ci.jobs"]
    # some job starts before the previous one completes
    assert first_keys != [k for k in first_keys[::2] for _ in (0, 1)]


def test_providers_look_like_themselves(jobs: list[SampleJob]) -> None:
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z ")
    for j in jobs:
        lines = j.log_lines
        p = j.started.provider
        if p == "github":
            assert all(stamp.match(ln) for ln in lines)
        elif p == "gitlab":
            assert lines[0].lstrip("\x1b[0K").startswith("Running with gitlab-runner")
        elif p == "jenkins":
            assert lines[-1].endswith(("Finished: SUCCESS", "Finished: FAILURE"))
    text = {p: "\n".join(ln for j in jobs if j.started.provider == p for ln in j.log_lines)
            for p in ("github", "gitlab", "jenkins", "circleci")}
    assert "##[error]Process completed with exit code 1." in text["github"]
    assert "section_start:" in text["gitlab"] and "ERROR: Job failed: exit code 1" in text["gitlab"]
    assert "[Pipeline] sh" in text["jenkins"]
    assert "#!/bin/bash -eo pipefail" in text["circleci"] and "Exited with code exit status 1" in text["circleci"]


def test_causes_vary_between_jobs(jobs: list[SampleJob]) -> None:
    noise = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z |^\[[\d\-T:.]+Z\] |\x1b\[[0-9;]*[mK]|\d+")
    by_cat: dict[str, set[str]] = defaultdict(set)
    count: Counter[str] = Counter()
    for j in jobs:
        if j.expected_category:
            count[j.expected_category] += 1
            by_cat[j.expected_category].add("\n".join(noise.sub("", ln) for ln in j.log_lines[-30:]))
    for cat, tails in by_cat.items():
        assert len(tails) >= min(count[cat], 3) or len(tails) >= 0.6 * count[cat], cat


def test_fake_secrets_present(jobs: list[SampleJob]) -> None:
    text = "\n".join(ln for j in jobs for ln in j.log_lines)
    assert re.search(r"ghp_[A-Za-z0-9]{36}", text)
    assert re.search(r"AKIA[A-Z0-9]{16}", text)
    with_secret = sum(1 for j in jobs if re.search(r"ghp_|AKIA|glpat-|hunter2|npm_[A-Za-z0-9]{36}|hooks\.slack", "\n".join(j.log_lines)))
    assert 10 <= with_secret <= 100


def test_generation_of_300_jobs_gives_300_in_time_order() -> None:
    """(How fast: benchmarks/goals.py, goal under 2 s.)"""
    jobs = generate(300, seed=11)
    assert len(jobs) == 300
    assert [j.started.started_at for j in jobs] == sorted(j.started.started_at for j in jobs)
