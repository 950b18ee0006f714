"""Seeded sample CI traffic for ``guard demo`` / ``make run``.

A fixed population of repositories on the four platforms, each with its own tests (a few of them flaky
with a fixed failure rate), produces a day or two of jobs: green ones, flaky test failures, genuine
regressions that keep failing for a few consecutive jobs until fixed, and failures of every other
category in :data:`CATEGORY_MIX`. Everything is drawn from one :class:`random.Random`, so a seed always
gives the same traffic, byte for byte.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Iterator, Sequence
from random import Random
from typing import Any, cast

from healing_guard.schemas.records import CATEGORIES, JobEvent, LogChunk, Provider, Status, TestOutcome, TestResult

from . import logs
from .logs import COMPILED, JAVA_SUFFIX, MODULES, OBJECTS, VERBS, Ctx, FastRandom, TestRun, camel, hexs

#: Default share of each expected category (``None`` = green job). Shares are of *planned* jobs: a green
#: or test-failure slot that lands on a repository in the middle of a regression becomes a genuine test
#: failure, and a test-failure slot becomes flaky or the first job of a regression. Every category except
#: ``unknown`` is guaranteed at least once when ``n_jobs >= 17``.
CATEGORY_MIX: dict[str | None, float] = {
    None: 0.40,
    "test_failure": 0.175,  # about two thirds flaky, the rest regressions
    "network": 0.06,
    "compilation_error": 0.04,
    "lint_style": 0.04,
    "oom": 0.035,
    "dependency_missing": 0.03,
    "dependency_resolution": 0.025,
    "infra_runner_lost": 0.025,
    "docker_registry": 0.025,
    "infra_timeout": 0.02,
    "rate_limit": 0.02,
    "cache_corruption": 0.02,
    "disk_full": 0.02,
    "build_config": 0.02,
    "test_timeout": 0.02,
    "crash": 0.015,
    "unknown": 0.01,
}

P_REGRESSION = 0.15  # share of test-failure slots that start a regression instead of a flaky failure
BIG_JOBS_PER_300 = 3  # jobs with ~20k log lines

_WORKFLOW = {"github": "CI", "gitlab": "pipeline", "jenkins": "{repo}/main", "circleci": "build-test"}

TOPIC_LOGS = LogChunk.topic
TOPIC_JOBS = JobEvent.topic
TOPIC_TESTS = TestResult.topic


@dataclasses.dataclass
class SampleJob:
    """One job attempt of the sample traffic, with the answer the guard should find."""

    started: JobEvent  # status in_progress
    chunks: list[LogChunk]
    tests: list[TestResult]
    completed: JobEvent  # status completed
    expected_category: str | None  # None for green jobs
    flaky: bool  # failed only because of flaky tests
    flaky_tests: list[str]  # test ids that failed because of flakiness

    @property
    def key(self) -> str:
        return self.started.job_key

    @property
    def log_lines(self) -> list[str]:
        return [ln for c in self.chunks for ln in c.lines]


# ------------------------------------------------------------------------------------ population


@dataclasses.dataclass
class TestSpec:
    __test__ = False
    test_id: str
    group: str
    name: str
    duration: float
    flake_rate: float = 0.0
    skipped: bool = False


@dataclasses.dataclass
class Repo:
    provider: str
    owner: str
    name: str
    eco: str
    job_names: tuple[str, ...]
    runners: tuple[tuple[tuple[str, ...], str], ...]  # (labels, size)
    image: str
    package: str
    weight: float = 1.0
    stamps: bool = False
    tests: list[TestSpec] = dataclasses.field(default_factory=list)
    build_no: int = 0

    @property
    def flaky(self) -> list[TestSpec]:
        return [t for t in self.tests if t.flake_rate > 0]


_GH = ((("ubuntu-latest",), "small"), (("ubuntu-latest",), "medium"), (("ubuntu-latest-8-cores",), "large"),
       (("self-hosted", "linux", "x64"), "xlarge"))
_GL = ((("docker",), "medium"), (("docker", "linux"), "large"), (("k8s",), "xlarge"), (("docker",), "small"))
_JK = ((("linux", "x64"), "large"), (("linux", "docker"), "xlarge"), (("linux", "x64"), "medium"))
_CC = ((("docker",), "medium"), (("docker",), "large"), (("machine", "linux"), "xlarge"), (("docker",), "small"))

_REPOS = (
    # provider, owner, name, eco, job names, runners, image, package, weight, jenkins timestamps
    ("github", "acme", "payments-api", "python", ("test (3.11)", "test (3.12)", "lint"), _GH, "ubuntu-22.04", "payments_api", 1.4, False),
    ("github", "acme", "storefront", "node", ("test", "build"), _GH, "ubuntu-22.04", "storefront", 1.2, False),
    ("github", "acme", "ledger", "gradle", ("build", "test"), _GH, "ubuntu-22.04", "com.acme.ledger", 0.9, False),
    ("github", "acme", "edge-proxy", "rust", ("cargo test", "clippy"), _GH, "ubuntu-22.04", "edge-proxy", 0.8, False),
    ("gitlab", "platform/infra", "fleet-agent", "go", ("test", "build"), _GL, "golang:1.22-bookworm", "gitlab.example.com/platform/infra/fleet-agent", 1.0, False),
    ("gitlab", "data", "etl-pipelines", "python", ("pytest", "lint"), _GL, "python:3.12-slim", "etl_pipelines", 1.0, False),
    ("gitlab", "platform", "base-images", "docker", ("build:image", "smoke-test"), _GL, "docker:26-dind", "base-images", 0.6, False),
    ("jenkins", "core", "billing-engine", "maven", ("billing-engine/main",), _JK, "agent", "com.acme.billing", 1.1, True),
    ("jenkins", "core", "firmware", "cmake", ("firmware/main", "firmware/release"), _JK, "agent", "firmware", 0.7, False),
    ("jenkins", "core", "search-indexer", "maven", ("search-indexer/main",), _JK, "agent", "com.acme.search", 0.8, True),
    ("circleci", "acme", "web-dashboard", "node", ("test", "build-and-deploy"), _CC, "cimg/node:20.15", "web-dashboard", 1.0, False),
    ("circleci", "acme", "cli", "go", ("test", "release"), _CC, "cimg/go:1.22", "github.com/acme/cli", 0.9, False),
    ("circleci", "acme", "ml-train", "python", ("unit-tests", "integration"), _CC, "cimg/python:3.12", "ml_train", 0.8, False),
)


def _test_parts(rng: Random, eco: str, package: str) -> tuple[str, str, str]:
    """(test_id, group, name) for a new test of an ecosystem, in the form its tool prints."""
    mod = rng.choice(MODULES)
    words = [rng.choice(VERBS)] + rng.choice(OBJECTS).split()
    snake = "_".join(words)
    if eco == "python":
        group = f"tests/{rng.choice(('', '', 'unit/', 'integration/'))}test_{mod}.py"
        return f"{group}::test_{snake}", group, f"test_{snake}"
    if eco == "docker":
        group = f"tests/smoke/test_{mod}.py"
        return f"{group}::test_{snake}", group, f"test_{snake}"
    if eco == "node":
        group = mod.capitalize()
        name = " ".join(words)
        return f"{group} › {name}", group, name
    if eco in ("maven", "gradle"):
        group = f"{package}.{mod}.{mod.capitalize()}{rng.choice(JAVA_SUFFIX)}Test"
        name = camel(words)
        return f"{group}.{name}", group, name
    if eco == "go":
        name = "Test" + camel([mod] + words, True)
        return name, f"internal/{mod}", name
    if eco == "rust":
        return f"{mod}::tests::{snake}", mod, snake
    tid = f"{mod}_{snake}"
    return tid, mod, tid


def build_repos(seed: int) -> list[Repo]:
    """The fixed repository population; test ids are unique across all repositories."""
    rng = Random(f"healing-guard-samples-repos-{seed}")
    seen: set[str] = set()
    repos: list[Repo] = []
    for provider, owner, name, eco, jobs, runners, image, package, weight, stamps in _REPOS:
        repo = Repo(provider, owner, name, eco, jobs, runners, image, package, weight, stamps)
        n = rng.randint(40, 120)
        while len(repo.tests) < n:
            tid, group, tname = _test_parts(rng, eco, package)
            if tid in seen:
                continue
            seen.add(tid)
            repo.tests.append(TestSpec(tid, group, tname, round(math.exp(rng.gauss(-3.0, 1.2)), 3)))
        for t in rng.sample(repo.tests, k=rng.randint(2, 4)):
            t.flake_rate = round(rng.uniform(0.05, 0.4), 2)
        for t in rng.sample([t for t in repo.tests if not t.flake_rate], k=rng.randint(0, 2)):
            t.skipped = True
        repo.build_no = rng.randint(200, 4000)
        repos.append(repo)
    return repos


# --------------------------------------------------------------------------------------- planning


def _plan_categories(rng: Random, n: int) -> list[str | None]:
    """Exactly ``round(share * n)`` slots per category (largest remainder), every failure category at least once."""
    cats = list(CATEGORY_MIX)
    raw = {c: CATEGORY_MIX[c] * n for c in cats}
    counts = {c: int(v) for c, v in raw.items()}
    for c in sorted(cats, key=lambda c: raw[c] - counts[c], reverse=True)[: n - sum(counts.values())]:
        counts[c] += 1
    must = [c for c in CATEGORIES if c != "unknown"]
    if n >= len(must) + 1:
        for c in must:
            while counts[c] < 1:
                donor = max(cats, key=lambda d: counts[d])
                counts[donor] -= 1
                counts[c] += 1
    plan: list[str | None] = [c for c in cats for _ in range(counts[c])]
    rng.shuffle(plan)
    return plan


_DURATION_MIN = {  # (low, high) minutes of a job that ends this way
    None: (4, 30), "test_failure": (5, 30), "test_timeout": (8, 35), "network": (2, 8), "rate_limit": (2, 10),
    "docker_registry": (3, 15), "cache_corruption": (2, 8), "oom": (6, 30), "disk_full": (5, 25), "crash": (5, 25),
    "compilation_error": (3, 14), "lint_style": (2, 6), "build_config": (2, 4), "dependency_resolution": (2, 6),
    "dependency_missing": (2, 10), "infra_runner_lost": (6, 35), "unknown": (5, 25),
}


def _duration_s(rng: Random, category: str | None, provider: str) -> tuple[float, int]:
    """(duration in seconds, timeout minutes for infra_timeout)."""
    if category == "infra_timeout":
        if provider == "circleci":
            return (rng.uniform(4, 25) + 10) * 60, 10
        minutes = rng.choice((20, 30, 40))
        return minutes * 60 + rng.uniform(1, 20), minutes
    lo, hi = _DURATION_MIN.get(category, (4, 30))
    return rng.uniform(lo, hi) * 60, 30


def _job_ids(rng: Random, repo: Repo, counters: dict[str, int]) -> tuple[str, str, str]:
    """(job_id, run_id, url) in the form each platform uses."""
    repo.build_no += 1
    p = repo.provider
    if p == "github":
        counters["gh_job"] += rng.randint(3, 400)
        counters["gh_run"] += rng.randint(1, 90)
        jid, rid = str(counters["gh_job"]), str(counters["gh_run"])
        return jid, rid, f"https://github.com/{repo.owner}/{repo.name}/actions/runs/{rid}/job/{jid}"
    if p == "gitlab":
        counters["gl_job"] += rng.randint(3, 500)
        counters["gl_pipe"] += rng.randint(1, 60)
        jid, rid = str(counters["gl_job"]), str(counters["gl_pipe"])
        return jid, rid, f"https://gitlab.example.com/{repo.owner}/{repo.name}/-/jobs/{jid}"
    if p == "jenkins":
        rid = str(repo.build_no)
        return f"main-{rid}", rid, f"https://jenkins.example.com/job/{repo.name}/job/main/{rid}/"
    counters["cc_job"] += rng.randint(1, 40)
    wf = f"{hexs(rng, 8)}-{hexs(rng, 4)}-{hexs(rng, 4)}-{hexs(rng, 4)}-{hexs(rng, 12)}"
    jid = str(counters["cc_job"])
    return jid, wf, f"https://app.circleci.com/pipelines/github/{repo.owner}/{repo.name}/{repo.build_no}/workflows/{wf}/jobs/{jid}"


def _runner_name(rng: Random, provider: str, labels: tuple[str, ...]) -> str:
    if provider == "github":
        return f"gh-runner-{rng.randint(1, 24):02d}" if "self-hosted" in labels else f"GitHub Actions {rng.randint(1, 400)}"
    if provider == "gitlab":
        return f"runner-{hexs(rng, 8)}-project-{rng.randint(1000, 9999)}-concurrent-0" if "k8s" in labels else f"gitlab-runner-docker-{rng.randint(1, 9)}"
    if provider == "jenkins":
        return f"agent-linux-{rng.randint(1, 30):02d}"
    return f"ip-10-0-{rng.randint(0, 255)}-{rng.randint(1, 254)}"


def _workdir(repo: Repo) -> str:
    return {"github": f"/home/runner/work/{repo.name}/{repo.name}", "gitlab": f"/builds/{repo.owner}/{repo.name}",
            "jenkins": f"/var/lib/jenkins/workspace/{repo.name}_main", "circleci": "/home/circleci/project"}[repo.provider]


def _target_lines(rng: Random, big: bool) -> int:
    if big:
        return rng.randint(18_000, 22_000)
    return int(math.exp(rng.uniform(math.log(50), math.log(5000))))


# ------------------------------------------------------------------------------------- generation


def generate(n_jobs: int = 300, seed: int = 7, *, start: float = 1_767_225_600.0, chunk_lines: int = 500) -> list[SampleJob]:
    """``n_jobs`` sample jobs in time order (by ``started_at``), deterministic for ``seed``."""
    if chunk_lines < 1:
        raise ValueError("chunk_lines must be >= 1")
    rng = FastRandom(seed)
    repos = build_repos(seed)
    plan = _plan_categories(rng, n_jobs)
    n_big = max(0, round(n_jobs * BIG_JOBS_PER_300 / 300)) if n_jobs >= 50 else 0
    big_slots = set(rng.sample([i for i, c in enumerate(plan) if c in (None, "test_failure")], k=min(n_big, plan.count(None))))
    span = max(86_400.0, min(2 * 86_400.0, n_jobs * 432.0))
    mean_gap = span / max(1, n_jobs)
    counters = {"gh_job": 27_400_000_000 + rng.randint(0, 10**8), "gh_run": 11_800_000_000 + rng.randint(0, 10**7),
                "gl_job": 8_100_000_000 + rng.randint(0, 10**7), "gl_pipe": 1_420_000_000 + rng.randint(0, 10**6),
                "cc_job": 90_000 + rng.randint(0, 9_000)}
    regression: dict[str, tuple[str, int]] = {}  # repo name -> (test id, jobs left failing)
    jobs: list[SampleJob] = []
    t = start
    weights = [r.weight for r in repos]
    compiled = [r for r in repos if r.eco in COMPILED]
    for i, category in enumerate(plan):
        t += rng.expovariate(1.0 / mean_gap)
        if category == "compilation_error":
            repo = rng.choices(compiled, weights=[r.weight for r in compiled])[0]
        else:
            repo = rng.choices(repos, weights=weights)[0]
        # tests: always the flaky ones and the regressed one, plus a sample of the rest
        flaky_failed: list[str] = []
        outcomes: dict[str, str] = {}
        reg = regression.get(repo.name)
        flaky_only = False
        if category in (None, "test_failure") and reg is not None:
            category = "test_failure"
            tid, left = reg
            outcomes[tid] = "failed"
            regression[repo.name] = (tid, left - 1)
            if left - 1 <= 0:
                del regression[repo.name]
        elif category == "test_failure":
            if rng.random() < P_REGRESSION:
                victim = rng.choice([x for x in repo.tests if not x.flake_rate and not x.skipped])
                outcomes[victim.test_id] = "failed"
                regression[repo.name] = (victim.test_id, rng.randint(1, 2))
            else:
                flaky_only = True
        if category == "test_failure":
            for ft in repo.flaky:
                if rng.random() < ft.flake_rate:
                    outcomes[ft.test_id] = "failed"
                    flaky_failed.append(ft.test_id)
            if flaky_only and not flaky_failed:
                ft = rng.choices(repo.flaky, weights=[x.flake_rate for x in repo.flaky])[0]
                outcomes[ft.test_id] = "failed"
                flaky_failed.append(ft.test_id)
        k = min(len(repo.tests), rng.randint(20, 60))
        chosen = {x.test_id for x in rng.sample(repo.tests, k)} | {x.test_id for x in repo.flaky} | set(outcomes)
        if category == "test_timeout":
            victim = rng.choice([x for x in repo.tests if x.test_id in chosen and not x.flake_rate and not x.skipped])
            outcomes[victim.test_id] = "error"
        runs = []
        for spec in repo.tests:
            if spec.test_id not in chosen:
                continue
            outcome = outcomes.get(spec.test_id, "skipped" if spec.skipped else "passed")
            dur = round(spec.duration * math.exp(rng.gauss(0, 0.3)), 3)
            if outcome == "error" and category == "test_timeout":
                dur = rng.choice((60.0, 120.0, 300.0, 600.0))
            runs.append(TestRun(spec.test_id, spec.group, spec.name, outcome, dur, flaky=spec.test_id in flaky_failed))

        labels, size = rng.choice(repo.runners)
        if category == "oom" and rng.random() < 0.7:
            size = rng.choice(("small", "medium"))
        runner_name = _runner_name(rng, repo.provider, labels)
        duration, timeout_min = _duration_s(rng, category, repo.provider)
        queued = t
        started = queued + (rng.uniform(2, 90) if rng.random() < 0.9 else rng.uniform(90, 600))
        completed = started + duration
        job_id, run_id, url = _job_ids(rng, repo, counters)
        branch = "main" if rng.random() < 0.6 else rng.choice(("feat/", "fix/", "chore/", "renovate/")) + "-".join(rng.sample(MODULES, 2))
        sha = hexs(rng, 40)
        image = repo.image if repo.provider != "github" else ("self-hosted" if "self-hosted" in labels else repo.image)
        ctx = Ctx(rng, repo.provider, repo.owner, repo.name, repo.eco, rng.choice(repo.job_names), branch, sha,
                  _workdir(repo), runner_name, image, secrets=rng.random() < 0.15, package=repo.package)
        target = _target_lines(rng, i in big_slots)
        rendered = logs.render_job(ctx, category, runs, target, started, completed, timeout_minutes=timeout_min, stamps=repo.stamps)

        prov = cast(Provider, repo.provider)
        chunks: list[LogChunk] = []
        lines = rendered.lines
        n_chunks = max(1, math.ceil(len(lines) / chunk_lines))
        for seq in range(n_chunks):
            ts = started + (completed - started) * (seq + 1) / n_chunks
            chunks.append(LogChunk(provider=prov, owner=repo.owner, repo=repo.name, job_id=job_id, seq=seq,
                                   lines=lines[seq * chunk_lines:(seq + 1) * chunk_lines], attempt=1,
                                   first_line=seq * chunk_lines + 1, ts=round(min(ts, completed - 0.5), 3),
                                   eof=seq == n_chunks - 1))
        results: list[TestResult] = []
        if rendered.tests_ran:
            tt = started + (completed - started) * 0.55
            for r in runs:
                tt += r.duration
                bad = r.outcome in ("failed", "error")
                results.append(TestResult(provider=prov, owner=repo.owner, repo=repo.name, job_id=job_id,
                                          test_id=r.test_id, outcome=cast(TestOutcome, r.outcome), attempt=1,
                                          duration_s=r.duration, ts=round(min(tt, completed - 1.0), 3),
                                          message=((r.message or "").split("\n")[0] or None) if bad else None))
        else:
            flaky_failed = []

        def event(status: Status, **extra: Any) -> JobEvent:
            return JobEvent(provider=prov, owner=repo.owner, repo=repo.name, job_id=job_id, job_name=ctx.job_name,
                            status=status, attempt=1, run_id=run_id, workflow=_WORKFLOW[repo.provider].format(repo=repo.name),
                            runner_labels=list(labels), runner_size=size, branch=branch, head_sha=sha,
                            queued_at=queued, started_at=started, url=url, **extra)

        started_ev = event("in_progress")
        completed_ev = event("completed", conclusion=rendered.conclusion, exit_code=rendered.exit_code,
                             completed_at=completed, log_chunks=len(chunks))
        is_flaky = category == "test_failure" and bool(flaky_failed) and all(
            r.flaky for r in runs if r.outcome in ("failed", "error"))
        jobs.append(SampleJob(started_ev, chunks, results, completed_ev, rendered.label or category, is_flaky,
                              flaky_failed))
    jobs.sort(key=lambda j: (j.started.started_at or 0.0, j.key))
    return jobs


# ---------------------------------------------------------------------------------------- replay


def _events(job: SampleJob) -> list[tuple[float, int, str, bytes, bytes]]:
    key = job.key.encode()
    t0 = job.started.started_at or 0.0
    t1 = job.completed.completed_at or t0
    out = [(t0, 0, TOPIC_JOBS, key, job.started.to_json())]
    n = len(job.chunks)
    for c in job.chunks:
        out.append((min(c.ts if c.ts is not None else t0, t1 - 2.0) if t1 - 2.0 > t0 else t0, 1 + c.seq, TOPIC_LOGS, key, c.to_json()))
    # results are uploaded from the JUnit report when the job ends, before the completion webhook
    for i, r in enumerate(job.tests):
        out.append((max(t0, t1 - 1.0), 1 + n + i, TOPIC_TESTS, r.test_id.encode(), r.to_json()))
    out.append((t1, 2 + n + len(job.tests), TOPIC_JOBS, key, job.completed.to_json()))
    # keep the job's own order even if clock values tie or run backwards
    last = out[0][0]
    fixed = []
    for ev in out:
        last = max(last, ev[0])
        fixed.append((last,) + ev[1:])
    return fixed


def messages(jobs: Sequence[SampleJob]) -> Iterator[tuple[str, bytes, bytes]]:
    """``(topic, key, value)`` for every record of ``jobs``, interleaved by event time as a real stream would.

    Per job: started event on ``ci.jobs``, log chunks on ``ci.logs`` in ``seq`` order, test results on
    ``ci.tests`` (key = test id), completed event on ``ci.jobs``. Concurrent jobs interleave.
    """
    streams = [_events(j) for j in jobs]
    for idx_ev in heapq.merge(*[[(ev[0], j, ev[1], ev[2], ev[3], ev[4]) for ev in s] for j, s in enumerate(streams)],
                              key=lambda e: (e[0], e[1], e[2])):
        yield idx_ev[3], idx_ev[4], idx_ev[5]


# ------------------------------------------------------------------------- the CI's answer to re-runs

#: seconds from the guard's command to its re-run's start: the executor's call and the runner queue
#: (plus the command's own backoff, when it asks for one)
RERUN_START_S = (30.0, 180.0)
_SIZES = ("small", "medium", "large", "xlarge")


@dataclasses.dataclass
class Rerun:
    """One re-run the guard asked for, as the sample's CI stand-in ran it: attempt ``n + 1`` of the job on
    the same commit, and the results of the tests it re-ran (a tests-only re-run reports only those)."""

    command_id: str
    action: str
    job: JobEvent  # completed
    tests: list[TestResult]


def rerun_attempts(jobs: Sequence[SampleJob], commands: Sequence[dict[str, Any]], seed: int) -> list[Rerun]:
    """Run the guard's re-run ``commands`` (dicts as on guard.actions) on the sample's CI stand-in.

    The sample traffic holds first attempts only: nothing in it re-runs a job, so without this the
    guard's re-runs would never run, and every failure would wait for the next push of its job.
    Outcomes come from the sample's ground truth, deterministic for ``seed`` and the command:

    - a tests-only re-run (retry_tests_isolated, rerun_sequential) passes when every failed test passes
      again: a flaky test passes with 1 - its flake rate; a regression fails again;
    - any other re-run passes with the strategy table's prior for the action (``remediate.strategies``)
      when the failure's true cause is one a re-run can fix (the table answers it automatically), and
      fails again when it is a code failure;
    - it starts ``RERUN_START_S`` (plus the command's first backoff) after the command, takes the failed
      attempt's minutes times the action's ``rerun_fraction``, on the next larger runner when it asks
      for one.
    """
    from healing_guard.remediate.actions import RERUN_ACTIONS
    from healing_guard.remediate.strategies import FLAKY_RETRY, RACE_RETRY, STRATEGIES, remedy_for

    by_key = {j.completed.job_key: j for j in jobs}
    flake_rate = {t.test_id: t.flake_rate for r in build_repos(seed) for t in r.tests}
    tests_only = {FLAKY_RETRY.action, RACE_RETRY.action}
    out: list[Rerun] = []
    seen: set[str] = set()
    for c in sorted(commands, key=lambda c: (str(c.get("command_id")), str(c.get("action")))):
        action, cid = str(c.get("action")), str(c.get("command_id"))
        key = f"{c.get('provider')}/{c.get('owner')}/{c.get('repo')}/{c.get('job_id')}"
        job = by_key.get(key)
        if action not in RERUN_ACTIONS or cid in seen or job is None or int(c.get("attempt") or 1) != 1:
            continue
        seen.add(cid)
        rng = Random(f"healing-guard-samples-rerun-{seed}-{cid}")
        failed = job.completed
        remedy = remedy_for(str(c.get("category") or ""), action)
        truth = STRATEGIES.get(job.expected_category or "unknown", STRATEGIES["unknown"])
        params = c.get("parameters") or {}
        if action in tests_only:
            rerun = [str(t) for t in params.get("tests") or []]
            ok = job.flaky and all(rng.random() >= flake_rate.get(t, 1.0) for t in rerun)
        else:
            rerun = []
            ok = truth.automatic and rng.random() < (remedy.p_success if remedy is not None else truth.p_success)
        backoff = params.get("backoff_seconds") or [0]
        start = float(c.get("ts") or failed.completed_at or 0.0) + rng.uniform(*RERUN_START_S) + float(backoff[0])
        minutes = failed.duration_minutes * (remedy.rerun_fraction if remedy is not None else 1.0)
        size = failed.runner_size
        if action == "rerun_larger_runner" and size in _SIZES:
            size = _SIZES[min(_SIZES.index(size) + 1, len(_SIZES) - 1)]
        done = start + max(minutes, 0.5) * 60.0
        event = dataclasses.replace(
            failed, attempt=2, conclusion="success" if ok else "failure", exit_code=0 if ok else failed.exit_code,
            runner_size=size, queued_at=start, started_at=start, completed_at=round(done, 3), log_chunks=None)
        results = [TestResult(provider=failed.provider, owner=failed.owner, repo=failed.repo, job_id=failed.job_id,
                              test_id=t, outcome="passed" if ok else "failed", attempt=2, head_sha=failed.head_sha,
                              ts=round(done - 1.0, 3)) for t in rerun]
        out.append(Rerun(cid, action, event, results))
    return out
