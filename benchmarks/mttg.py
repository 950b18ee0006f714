"""Fleet simulation: mean time to green, wasted retry minutes, dollars and hidden regressions.

    python benchmarks/mttg.py [--json]
    #   --seeds K            independent fleets (seeds seed..seed+K-1), medians reported (default 3)
    #   --repos R --days D --commits-per-day C   the fleet (defaults 12, 5, 16)
    #   --mix flaky=0.60,regression=0.11,code=0.21,infra=0.08   shares of first failures by cause
    #   --mix-file F.json    the same as a JSON object, plus any other option below by its long name
    #   --human-delay M      minutes until a person looks at a red job (default 30)
    #   --fix-delay M        median minutes from "a person knows it is real" to the fix's push (default 60)
    #   --retries N          blind retry policy: retry every failure N times (default 2, GitLab `retry: 2`)
    #   --plots DIR          PNG output (default benchmarks/results)

One seeded discrete-event simulation of a CI fleet, in pure Python; three policies replay the SAME
stream: the same commits, the same causes, and for attempt k of job j on commit c the same random
draws (every draw comes from ``Random("seed|repo|commit|job|attempt")``), so attempt k has the same
outcome under every policy whenever it runs under the same conditions.

**The fleet.** ``--repos`` repositories, each with ``--tests-per-job`` tests and two jobs per commit:
``build`` (compile + lint, 6 min) and ``test`` (14 min). Commits (PR pushes) arrive as a Poisson process,
``--commits-per-day`` per repository, over ``--days`` days. A commit's jobs are independent of other
commits (each push is its own change); a regression lives in its commit until a fix push replaces it.

**Causes and their defaults, with sources.**

- *Flaky tests*: 16 % of tests are flaky and 1.5 % of all test runs are flaky failures (Google: "almost
  16 % of our tests have some level of flakiness", "about 1.5 % of all test runs reporting a flaky
  result", J. Micco, Google Testing Blog, 2016). A flaky test's rate is drawn from Beta(0.6, a) with
  ``a`` set so the mean over all tests is 1.5 %; other tests never flake. 20 % of flaky tests fail by a
  race (concurrency is 20 % of the flaky tests studied by Luo et al., FSE 2014); their failure
  message says "deadlock", and run one at a time (``rerun_sequential``) they fail a quarter as often
  (an assumption).
- *Shares of failures by cause* (``--mix``): Slack's mobile CI (Slack Engineering, "Handling Flaky Tests
  at Scale", 2022) found, of its builds, 57 % failing on test jobs ("flaky and failing automated
  tests"), 13 % on "developer errors, CI issues, or test infra issues", 10 % on merge conflicts, i.e. of
  failing builds 71 % tests, 16 % developer/infra, 12.5 % merge conflicts. Google reports that 84 % of
  pass-to-fail transitions involve a flaky test (Micco, "The State of Continuous Integration Testing
  @Google", 2017). Defaults: flaky 0.60 (0.84 x 0.71), regression 0.11 (the rest of the test share),
  infra 0.08 (half of the 16 %), code 0.21 (the other half plus merge conflicts: compile and lint
  errors). The flaky share is what the flake rates produce; the simulator sets the per-commit rates of
  the other causes so that their shares of first failures match the mix.
- *Regressions*: a commit breaks one test of its ``test`` job until its fix push. 25 % of them are
  *intermittent* (``--intermittent``): the broken test fails with probability q ~ U(0.3, 0.8) per run
  instead of always (an order-dependent or timing bug a real change introduced). A deterministic
  regression can never be retried green; an intermittent one can.
- *Code failures* (compile, lint): the ``build`` job fails on every attempt until the fix push.
- *Infrastructure* (per job run): runner lost 40 %, network 35 %, OOM 15 %, disk full 10 %. A network
  failure starts an outage of Exp(mean 3 min) for that job: an attempt that starts inside it fails the
  same way. Half of the OOMs come from the commit (its job needs more memory: every attempt with the
  normal limit fails; ``rerun_more_memory`` / ``rerun_larger_runner`` pass); the others are transient.
- *Corrupt caches*: a green job run saves a corrupt dependency cache with probability ``--cache-share``
  (0.1) x the per-run infrastructure failure rate (its own draw: the other draws do not change). From then
  on every run of that repository's job fails restoring it (npm ``EINTEGRITY``), whatever the commit,
  until the cache is cleared: by a person's fix (the fix push), or by the guard's ``clear_cache_retry``
  (the executor clears the platform's cache before the rerun; a plain re-run restores the same cache).
- *Durations and price*: build 6 min, test 14 min, x LogNormal(0, 0.2) per attempt; failing attempts
  stop early (code failures at half, infra at a uniform share). Price ``--price`` USD per runner minute
  (default 0.016, the guard's ``medium`` runner, twice GitHub's 2-core Linux rate of 0.008); a larger
  runner costs twice that.
- *People* (assumptions, not published figures): a person looks at a red job ``--human-delay`` minutes
  after it is red (30, the guard's ``human_response_minutes`` default) and a fix is pushed
  LogNormal(ln ``--fix-delay``, 0.5) minutes after the person knows the failure is real (drawn per
  failure, the same under every policy).

**Policies.**

- *none*: no automatic retry. After ``--human-delay`` the person reads the log: infrastructure and test
  failures (they cannot tell flaky from broken) are rerun once; if that rerun fails, or for a code
  failure, the fix is pushed after the fix delay.
- *retry-N*: every failure is retried at once (``--retry-reaction``, 0.2 min), up to N times, whatever the
  cause (GitLab ``retry: 2``, Buildkite automatic retries). Still red: the person, then the fix.
- *guard*: the real guard's pure logic, one ``healing_guard.engine.core.Engine``: each failed attempt's log
  (a few realistic lines per cause) goes through the real matcher, job window and classifier; every test
  result teaches its River ``TestModel`` (``Engine.learn_test``, with the flakiness prior and the
  failure-context regression), quarantine decisions come from ``Engine.quarantine``; ``Engine.decide``
  runs the real planner with its budget ledger and the success rates it learns from what each action
  achieved (``SuccessStats``). The simulation carries out the command ``--reaction`` minutes later (0.5):
  reruns (with ``backoff_seconds[attempt-1]`` for ``retry_backoff``), isolated or sequential reruns of the
  failed tests (35 % / 50 % of the job's minutes), more memory or a larger runner; ``notify_author``
  means the author knows at once and the fix follows after the fix delay; ``notify_oncall`` and
  ``escalate`` mean a person looks after the human delay (as in *none*; after an escalation they push a
  fix). A quarantined test's failures no longer fail the build (what ``quarantine_test`` asks of the CI).

**Metrics** (per policy; the first ``--warmup-days`` are simulated, so the guard's models learn, but not
counted):

- *time to green*: from a job's first failed attempt on a commit to its first green attempt on that
  commit or on its fix push; MTTG is the mean over those episodes (an episode still red at the end is
  counted as open, not in the mean).
- *wasted retry minutes*: minutes of reruns on the same commit (automatic or by a person) that ended red.
- *dollars*: every CI minute of the simulation (first attempts, reruns, fix pushes) x price x runner factor.
- *hidden regressions* (the issue's definition: real failures retried to green): jobs on a commit where
  a regression made an attempt fail (a real failure was observed) and a later attempt on that same
  commit went green, by a retry (automatic or a person's). Only intermittent regressions can be hidden.
  Reported next to them, not inside: *masked by quarantine*, a regression's failure that never turned
  the job red because the test it broke was quarantined (the guard's quarantine, not a retry).

Prints a rich table and writes PNG plots; with ``--json`` the last stdout line is
``{"mttg_reduction_vs_none": r, "wasted_minutes_ratio_vs_retry_all": w, "hidden_regressions": h}``
(medians over seeds; h is the guard's total over all seeds).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from random import Random
from typing import Any

from rich.console import Console
from rich.table import Table

from healing_guard.engine.core import Engine
from healing_guard.flaky.quarantine import QuarantineState
from healing_guard.patterns.library import load_library
from healing_guard.patterns.matcher import Matcher
from healing_guard.remediate import Ledger
from healing_guard.remediate.outcomes import SuccessStats
from healing_guard.schemas import JobEvent, LogChunk, TestResult
from healing_guard.settings import Settings
from healing_guard.engine.window import JobWindow, Ready

GOAL_MTTG_REDUCTION = 0.65
GOAL_WASTED_RATIO = 0.5
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC: the simulation's clock starts here (budget days)
POLICIES = ("none", "retry", "guard")
INFRA_TYPES = (("runner_lost", 0.40), ("network", 0.35), ("oom", 0.15), ("disk_full", 0.10))


@dataclass(frozen=True)
class Config:
    seed: int = 0
    seeds: int = 3
    repos: int = 12
    days: float = 5.0
    warmup_days: float = 1.0
    commits_per_day: float = 16.0
    tests_per_job: int = 10
    flaky_tests: float = 0.16  # Google 2016
    flaky_run_rate: float = 0.015  # Google 2016
    race_share: float = 0.20  # Luo et al. 2014
    mix: tuple[tuple[str, float], ...] = (("flaky", 0.60), ("regression", 0.11), ("code", 0.21), ("infra", 0.08))
    intermittent: float = 0.25
    outage_minutes: float = 3.0
    oom_persistent: float = 0.5
    cache_share: float = 0.1  # corrupt-cache saves per green run, as a share of the infra failure rate
    build_minutes: float = 6.0
    test_minutes: float = 14.0
    price: float = 0.016
    human_delay: float = 30.0
    fix_delay: float = 60.0
    retries: int = 2
    retry_reaction: float = 0.2
    reaction: float = 0.5
    max_fix_pushes: int = 6

    def share(self, cause: str) -> float:
        return dict(self.mix)[cause]


# --- the stream ------------------------------------------------------------------------------------


@dataclass
class Repo:
    name: str
    tests: list[str]
    rates: list[float]
    race: list[bool]


@dataclass
class Commit:
    repo: int
    key: str
    at: float  # minutes since T0
    code_break: str | None  # "compile" | "lint"
    regression: tuple[int, float] | None  # (test index, P(fails per run))
    mem_heavy: dict[str, bool]
    changed: list[str]  # files the commit changes (a regression's include its test's module)
    fix_delays: list[float]  # minutes, per fix needed, the same under every policy


@dataclass
class Stream:
    cfg: Config
    seed: int
    repos: list[Repo]
    commits: list[Commit]
    p_infra: float
    flaky_job_rate: float

    @property
    def p_cache(self) -> float:
        """P(a green job run saves a corrupt cache)."""
        return self.p_infra * self.cfg.cache_share


def _beta_b(mean: float, a: float = 0.6) -> float:
    return a * (1.0 - mean) / mean


def build_stream(cfg: Config, seed: int) -> Stream:
    rng = Random(f"{seed}|fleet")
    repos: list[Repo] = []
    mean_flaky = min(cfg.flaky_run_rate / max(cfg.flaky_tests, 1e-9), 0.9)
    for r in range(cfg.repos):
        tests, rates, race = [], [], []
        for t in range(cfg.tests_per_job):
            tests.append(f"repo{r:02d}/tests/test_mod{t // 2}.py::test_case{t}")
            flaky = rng.random() < cfg.flaky_tests
            rates.append(min(rng.betavariate(0.6, _beta_b(mean_flaky)), 0.95) if flaky else 0.0)
            race.append(flaky and rng.random() < cfg.race_share)
        repos.append(Repo(f"repo{r:02d}", tests, rates, race))
    # the flaky share of first failures is what the rates produce; the other causes are set around it
    f = statistics.fmean(1.0 - math.prod(1.0 - x for x in rp.rates) for rp in repos)
    total = f / max(cfg.share("flaky"), 1e-9)  # first failures per commit, all causes
    p_reg = min(total * cfg.share("regression"), 0.9)
    p_code = min(total * cfg.share("code"), 0.9)
    p_infra = min(total * cfg.share("infra") / 2.0, 0.9)  # per job run, two jobs per commit
    p_oom = p_infra * dict(INFRA_TYPES)["oom"]
    commits: list[Commit] = []
    horizon = cfg.days * 1440.0
    for r in range(cfg.repos):
        t, i = 0.0, 0
        while True:
            t += rng.expovariate(cfg.commits_per_day / 1440.0)
            if t >= horizon:
                break
            c = Random(f"{seed}|{r}|c{i}|props")
            code = ("compile" if c.random() < 0.6 else "lint") if c.random() < p_code else None
            reg = None
            if c.random() < p_reg:
                ti = c.randrange(cfg.tests_per_job)
                reg = (ti, c.uniform(0.3, 0.8) if c.random() < cfg.intermittent else 1.0)
            # half of the OOMs come from the commit itself (the job needs more memory on every attempt)
            mem = {j: c.random() < p_oom * cfg.oom_persistent for j in ("build", "test")}
            fixes = [c.lognormvariate(math.log(cfg.fix_delay), 0.5) for _ in range(cfg.max_fix_pushes)]
            modules = (cfg.tests_per_job + 1) // 2
            changed = sorted({f"src/mod{c.randrange(modules)}.py" for _ in range(c.randint(1, 2))}
                             | ({f"src/mod{reg[0] // 2}.py"} if reg else set()))
            commits.append(Commit(r, f"c{i}", t, code, reg, mem, changed, fixes))
            i += 1
    commits.sort(key=lambda c: (c.at, c.repo))
    return Stream(cfg, seed, repos, commits, p_infra, f)


# --- one attempt -----------------------------------------------------------------------------------


@dataclass
class Mode:
    tests: tuple[int, ...] | None = None  # rerun only these tests (isolated / sequential)
    sequential: bool = False
    more_memory: bool = False
    size_factor: float = 1.0
    time_fraction: float = 1.0


@dataclass
class Attempt:
    failed: bool
    cause: str | None  # flaky | regression | code | runner_lost | network | oom | disk_full | cache | None
    minutes: float
    failed_tests: tuple[int, ...] = ()
    regression_failed: bool = False  # the commit's regression made this attempt fail
    tests_ran: tuple[int, ...] = ()
    outage: float = 0.0


def saves_corrupt_cache(st: Stream, commit: Commit, chain: int, job: str, attempt: int) -> bool:
    """Whether this attempt, if green, saves a corrupt cache (its own RNG: the attempt's draws stay)."""
    return Random(f"{st.seed}|{commit.repo}|{commit.key}~{chain}|{job}|{attempt}|cache").random() < st.p_cache


def run_attempt(st: Stream, commit: Commit, chain: int, job: str, attempt: int, mode: Mode, start: float,
                outage_until: float, quarantined: set[int] | None = None, cache_corrupt: bool = False) -> Attempt:
    """What attempt ``attempt`` of ``job`` on ``commit`` (fix push number ``chain``, 0: the commit
    itself) does. Every draw comes from its own seeded RNG, in a fixed order, whatever the policy.
    ``cache_corrupt``: the job's cache is corrupt (it fails restoring it)."""
    cfg = st.cfg
    repo = st.repos[commit.repo]
    rng = Random(f"{st.seed}|{commit.repo}|{commit.key}~{chain}|{job}|{attempt}")
    u_infra, u_type, outage, frac = rng.random(), rng.random(), rng.expovariate(1 / cfg.outage_minutes), rng.uniform(0.15, 1.0)
    u_tests = [rng.random() for _ in repo.tests]
    jitter = rng.lognormvariate(0.0, 0.2)
    base = (cfg.build_minutes if job == "build" else cfg.test_minutes) * jitter * mode.time_fraction
    broken = chain == 0  # a fix push removes the commit's code failure, regression and memory need
    if start < outage_until:
        return Attempt(True, "network", base * 0.3)
    if cache_corrupt:
        return Attempt(True, "cache", base * 0.1)
    if broken and commit.mem_heavy[job] and not mode.more_memory:
        return Attempt(True, "oom", base * frac)
    if u_infra < st.p_infra:
        acc = 0.0
        kind = INFRA_TYPES[-1][0]
        for k, w in INFRA_TYPES:
            acc += w
            if u_type < acc:
                kind = k
                break
        if not (kind == "oom" and mode.more_memory):
            return Attempt(True, kind, base * (0.3 if kind == "network" else frac), outage=outage if kind == "network" else 0.0)
    if job == "build":
        if broken and commit.code_break:
            return Attempt(True, "code", base * 0.5)
        return Attempt(False, None, base)
    ran = mode.tests if mode.tests is not None else tuple(range(len(repo.tests)))
    failed, reg_failed = [], False
    for i in ran:
        r = repo.rates[i]
        if repo.race[i] and mode.sequential:
            r *= 0.25
        p = r
        if broken and commit.regression and commit.regression[0] == i:
            p = 1.0 - (1.0 - r) * (1.0 - commit.regression[1])
        if u_tests[i] < p:
            failed.append(i)
            if broken and commit.regression and commit.regression[0] == i and u_tests[i] >= r:
                reg_failed = True
    counted = [i for i in failed if not (quarantined and i in quarantined)]
    cause = None
    if counted:
        cause = "regression" if reg_failed and any(
            commit.regression and i == commit.regression[0] for i in counted) else "flaky"
    return Attempt(bool(counted), cause, base, tuple(failed), reg_failed, tuple(ran))


# --- log lines per cause (what the guard's classifier reads) ----------------------------------------


def failure_message(repo: Repo, commit: Commit, a: Attempt, i: int) -> str:
    if commit.regression and commit.regression[0] == i and a.regression_failed:
        return "AssertionError: assert 'v2' == 'v1'"
    if repo.race[i]:
        return "RuntimeError: deadlock detected while waiting for lock"
    return "TimeoutError: service did not answer within 5s"


def log_lines(st: Stream, commit: Commit, job: str, a: Attempt) -> tuple[list[str], int]:
    repo = st.repos[commit.repo]
    head = [f"Run {job} for {repo.name}@{commit.key}", "Setting up runner", "Checking out the repository"]
    if a.cause == "code":
        if commit.code_break == "compile":
            body = ["Building app", "src/app/main.c:12:5: error: 'foo' undeclared (first use in this function)",
                    "make: *** [Makefile:12: main.o] Error 1"]
        else:
            body = ["Running ruff", "src/app/util.py:3:8: F401 [*] `os` imported but unused", "Found 1 error."]
        return head + body, 1
    if a.cause == "runner_lost":
        return head + ["Running tests", "##[error]The runner has received a shutdown signal. This can happen when "
                       "the runner service is stopped, or a manually started runner is canceled."], 1
    if a.cause == "network":
        return head + ["npm install", "npm ERR! code ETIMEDOUT",
                       "npm ERR! network request to https://registry.npmjs.org/react failed, reason: connect "
                       "ETIMEDOUT 104.16.1.35:443"], 1
    if a.cause == "oom":
        return head + ["Running tests", "java.lang.OutOfMemoryError: Java heap space",
                       "Error: Process completed with exit code 137."], 137
    if a.cause == "cache":
        return head + ["Restoring cache", "npm ci", "npm ERR! code EINTEGRITY",
                       "npm ERR! sha512-Kq5sNDHbBdx2bvmOg4TCfeDuu7c08a2t8mfYQbW8jJ0r7UEAbN4XtP+N1q4ZO7l0LtA== "
                       "integrity checksum failed when using sha512: wanted sha512-Kq5sNDHbBdx2 but got "
                       "sha512-3fNVp9R2 (48213 bytes)"], 1
    if a.cause == "disk_full":
        return head + ["Writing build cache", "OSError: [Errno 28] No space left on device: '/home/runner/.cache/pip'",
                       "Error: Process completed with exit code 1."], 1
    body = [f"collected {len(a.tests_ran)} items"]
    for i in a.failed_tests:
        body.append(f"FAILED {repo.tests[i]} - {failure_message(repo, commit, a, i)}")
    n = len(a.failed_tests)
    body.append(f"=========== {n} failed, {len(a.tests_ran) - n} passed in 42.00s ===========")
    return head + body, 1


# --- policies --------------------------------------------------------------------------------------


@dataclass
class Episode:
    repo: int
    commit: str
    job: str
    first_fail: float
    green: float | None = None
    cause: str | None = None
    hidden: bool = False
    real_seen: bool = False  # a regression made an attempt fail


@dataclass
class Result:
    policy: str
    episodes: list[Episode] = field(default_factory=list)
    first_failures: int = 0
    minutes: float = 0.0
    usd: float = 0.0
    retry_minutes: float = 0.0
    wasted_minutes: float = 0.0
    auto_retries: int = 0
    human_reruns: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    causes: dict[str, int] = field(default_factory=dict)
    warm_from: float = 0.0
    masked: int = 0  # regression failures a quarantine turned green at once (hidden, never red)
    #: guard: per automatic action, [next attempts green, next attempts]
    next_green: dict[str, list[int]] = field(default_factory=dict)

    def counted(self) -> list[Episode]:
        return [e for e in self.episodes if e.first_fail >= self.warm_from]

    @property
    def closed(self) -> list[Episode]:
        return [e for e in self.counted() if e.green is not None]

    @property
    def mttg(self) -> float:
        c = self.closed
        return statistics.fmean(e.green - e.first_fail for e in c) if c else 0.0  # type: ignore[operator]

    @property
    def hidden(self) -> int:
        """Regressions retried to green (the issue's definition)."""
        return sum(e.hidden for e in self.counted())


@dataclass
class _Chain:
    """One job on one commit and its fix pushes: the policy's state for it."""

    commit: Commit
    job: str
    chain: int = 0
    attempt: int = 0
    outage_until: float = -1.0
    mode: Mode = field(default_factory=Mode)
    episode: Episode | None = None
    human_reran: bool = False
    fixing: bool = False
    done: bool = False
    last: Attempt | None = None
    acted: tuple[str, str] | None = None  # guard: the automatic (action, category) behind this attempt


class Sim:
    """One policy over one stream."""

    def __init__(self, st: Stream, policy: str, matcher: Matcher | None = None, *, plain_reruns: bool = False) -> None:
        self.st, self.cfg, self.policy = st, st.cfg, policy
        #: the guard without directives: a fix is carried out as the platform's plain re-run (what GitHub,
        #: GitLab and CircleCI did before docs/directives.md), so the next attempt changes nothing
        self.plain_reruns = plain_reruns
        self.res = Result(policy, warm_from=st.cfg.warmup_days * 1440.0)
        self.q: list[tuple[float, int, str, _Chain]] = []
        self.n = 0
        #: (repository, job) whose cache is corrupt now
        self.corrupt: set[tuple[int, str]] = set()
        if policy == "guard":
            settings = Settings(test_grace_seconds=0.0, chunk_grace_seconds=0.0, partitions=1,
                                human_response_minutes=self.cfg.human_delay,
                                price_per_minute_usd={"medium": self.cfg.price, "large": 2 * self.cfg.price,
                                                      "small": self.cfg.price / 2, "xlarge": 4 * self.cfg.price})
            self.engine = Engine(settings, matcher, event_time=True)
            self.models: dict[str, Any] = {}
            self.qstate: dict[str, QuarantineState] = {}
            self.quarantined: dict[int, set[int]] = {}
            self.ledger = Ledger()
            self.success = SuccessStats()

    def push(self, at: float, kind: str, ch: _Chain) -> None:
        self.n += 1
        heapq.heappush(self.q, (at, self.n, kind, ch))

    def run(self) -> Result:
        for c in self.st.commits:
            for job in ("build", "test"):
                self.push(c.at, "start", _Chain(c, job))
        while self.q:
            at, _, kind, ch = heapq.heappop(self.q)
            if kind == "start":
                self.start(at, ch)
            elif kind == "human":
                self.human(at, ch)
            elif kind == "fix":
                self.corrupt.discard((ch.commit.repo, ch.job))  # the person cleared the cache too
                ch.chain += 1
                ch.attempt, ch.human_reran, ch.fixing, ch.mode = 0, False, False, Mode()
                ch.outage_until, ch.acted = -1.0, None
                self.start(at, ch)
        return self.res

    # one attempt starts and, since nothing else can change it, finishes at once (its end is dated)
    def start(self, at: float, ch: _Chain) -> None:
        ch.attempt += 1
        q = self.quarantined.get(ch.commit.repo) if self.policy == "guard" else None
        cache = (ch.commit.repo, ch.job)
        a = run_attempt(self.st, ch.commit, ch.chain, ch.job, ch.attempt, ch.mode, at, ch.outage_until, q,
                        cache_corrupt=cache in self.corrupt)
        if not a.failed and saves_corrupt_cache(self.st, ch.commit, ch.chain, ch.job, ch.attempt):
            self.corrupt.add(cache)
        end = at + a.minutes
        if a.outage:
            ch.outage_until = end + a.outage
        rerun = ch.attempt > 1
        self.res.minutes += a.minutes
        self.res.usd += a.minutes * self.cfg.price * ch.mode.size_factor
        if ch.chain == 0 and ch.attempt == 1 and (a.failed or a.failed_tests) and end >= self.res.warm_from:
            # the stream's first failures, before any quarantine: the same under every policy
            self.res.first_failures += 1
        if rerun:
            self.res.retry_minutes += a.minutes
            if a.failed:
                self.res.wasted_minutes += a.minutes
        if a.regression_failed and ch.episode is not None:
            ch.episode.real_seen = True
        if self.policy == "guard":
            self.learn(end, ch, a)
        ch.last = a
        if not a.failed:
            ep = ch.episode
            if ep is None and a.regression_failed and ch.chain == 0:
                # a regression's failure masked by quarantine at once: never red, so no time to green,
                # but a hidden regression
                if end >= self.res.warm_from:
                    self.res.masked += 1
                ch.done = True
                return
            if ep is not None and ep.green is None:
                ep.green = end
                if ep.real_seen and ch.chain == 0:
                    ep.hidden = True
            ch.done = True
            return
        if ch.episode is None:
            ch.episode = Episode(ch.commit.repo, ch.commit.key, ch.job, end, cause=a.cause,
                                 real_seen=a.regression_failed)
            self.res.episodes.append(ch.episode)
            if ch.chain == 0 and ch.attempt == 1:
                self.res.causes[a.cause or "?"] = self.res.causes.get(a.cause or "?", 0) + 1
        self.on_failure(end, ch, a)

    def rerun(self, at: float, ch: _Chain, mode: Mode | None = None) -> None:
        ch.mode = mode or Mode()
        self.push(at, "start", ch)

    def fix(self, at: float, ch: _Chain) -> None:
        """A person knows the failure is real: the fix push follows after this failure's fix delay."""
        if ch.fixing:
            return
        if ch.chain + 1 >= self.cfg.max_fix_pushes:
            return  # gives up: the episode stays open
        ch.fixing = True
        self.push(at + ch.commit.fix_delays[ch.chain], "fix", ch)

    def on_failure(self, end: float, ch: _Chain, a: Attempt) -> None:
        if self.policy == "none":
            self.push(end + self.cfg.human_delay, "human", ch)
        elif self.policy == "retry":
            if ch.attempt <= self.cfg.retries:
                self.res.auto_retries += 1
                self.rerun(end + self.cfg.retry_reaction, ch)
            else:
                ch.human_reran = True  # already retried: the person goes for the fix
                self.push(end + self.cfg.human_delay, "human", ch)
        else:
            self.guard(end, ch, a)

    def human(self, at: float, ch: _Chain) -> None:
        a = ch.last
        assert a is not None
        if a.cause != "code" and not ch.human_reran:
            ch.human_reran = True
            self.res.human_reruns += 1
            self.rerun(at, ch)
        else:
            self.fix(at, ch)

    # --- the guard ------------------------------------------------------------------------------
    def _job(self, ch: _Chain, end: float, a: Attempt, conclusion: str, exit_code: int | None) -> JobEvent:
        repo = self.st.repos[ch.commit.repo]
        return JobEvent(provider="github", owner="fleet", repo=repo.name, job_id=f"{ch.commit.key}~{ch.chain}-{ch.job}",
                        job_name=ch.job, status="completed", conclusion=conclusion, attempt=ch.attempt,
                        exit_code=exit_code, runner_size="large" if ch.mode.size_factor > 1 else "medium",
                        started_at=T0 + (end - a.minutes) * 60, completed_at=T0 + end * 60, log_chunks=1,
                        head_sha=ch.commit.key)

    def learn(self, end: float, ch: _Chain, a: Attempt) -> None:
        """Test results feed the per-test models and quarantine; the action behind this attempt learns
        whether it worked."""
        self._risks: list[Any] = []
        if ch.acted is not None:
            action, category = ch.acted
            self.success.learn(category, f"fleet/{self.st.repos[ch.commit.repo].name}", action, not a.failed)
            green = self.res.next_green.setdefault(action, [0, 0])
            green[0] += int(not a.failed)
            green[1] += 1
            ch.acted = None
        if ch.job != "test" or not a.tests_ran or a.cause in ("runner_lost", "network", "oom", "disk_full", "cache"):
            return
        repo = self.st.repos[ch.commit.repo]
        n_failed = len(a.failed_tests)
        for i in a.tests_ran:
            tid = repo.tests[i]
            failed = i in a.failed_tests
            res = TestResult(provider="github", owner="fleet", repo=repo.name,
                             job_id=f"{ch.commit.key}~{ch.chain}-{ch.job}", test_id=tid,
                             outcome="failed" if failed else "passed", attempt=ch.attempt, duration_s=1.0,
                             ts=T0 + end * 60, message=failure_message(repo, ch.commit, a, i) if failed else None,
                             failed_in_run=n_failed, changed_files=ch.commit.changed if ch.chain == 0 else [],
                             head_sha=f"{ch.commit.key}~{ch.chain}")  # a fix push is other code
            model, _, risk = self.engine.learn_test(self.models.get(tid), res)
            self.models[tid] = model
            qs = self.qstate.setdefault(tid, QuarantineState())
            cmd, _ = self.engine.quarantine(qs, model, res, now=T0 + end * 60)
            if cmd is not None:
                self.res.actions[cmd.action] = self.res.actions.get(cmd.action, 0) + 1
                qset = self.quarantined.setdefault(ch.commit.repo, set())
                (qset.add if cmd.action == "quarantine_test" else qset.discard)(i)
            if risk is not None:
                self._risks.append(risk)

    def guard(self, end: float, ch: _Chain, a: Attempt) -> None:
        lines, exit_code = log_lines(self.st, ch.commit, ch.job, a)
        job = self._job(ch, end, a, "failure", exit_code)
        now = T0 + end * 60
        w = JobWindow(job_key=job.job_key, attempt=ch.attempt)
        w, _ = self.engine.chunk(w, LogChunk(provider="github", owner="fleet", repo=job.repo, job_id=job.job_id,
                                             seq=0, lines=lines, attempt=ch.attempt, eof=True), now)
        risks = self._risks if (ch.job == "test" and a.failed_tests and a.cause in ("flaky", "regression")) else []
        for r in risks:
            w, _ = self.engine.risk(w, r, ch.attempt, now)
        w, out = self.engine.job_event(w, job, now)
        if not out:
            w, out = self.engine.tick(w, now + 1.0)
        ready = out[0]
        assert isinstance(ready, Ready)
        self.ledger, dec = self.engine.decide(ready, self.ledger, now, success=self.success)
        cmd = dec.command
        self.res.actions[cmd.action] = self.res.actions.get(cmd.action, 0) + 1
        t = end + self.cfg.reaction
        act = cmd.action
        if act in ("notify_author",):
            self.fix(t, ch)
            return
        if act == "escalate":
            ch.human_reran = True
            self.push(end + self.cfg.human_delay, "human", ch)
            return
        if act in ("notify_oncall",) or act.startswith("notify") or act == "open_incident":
            self.push(end + self.cfg.human_delay, "human", ch)
            return
        mode = Mode()
        if act == "retry_backoff":
            seq = cmd.parameters.get("backoff_seconds") or [0]
            t += float(seq[min(max(ch.attempt, 1), len(seq)) - 1]) / 60.0
        elif act in ("rerun_more_memory",):
            mode = Mode(more_memory=True)
        elif act == "rerun_larger_runner":
            mode = Mode(more_memory=True, size_factor=2.0)
        elif act in ("retry_tests_isolated", "rerun_sequential"):
            repo = self.st.repos[ch.commit.repo]
            ids = set(cmd.parameters.get("tests") or [])
            tests = tuple(i for i, tid in enumerate(repo.tests) if tid in ids) or a.failed_tests
            seq_ = act == "rerun_sequential"
            mode = Mode(tests=tests, sequential=seq_, time_fraction=0.5 if seq_ else 0.35)
        elif act == "clear_cache_retry" and not self.plain_reruns:
            # the executor clears the platform's cache first (GitHub caches API, GitLab runnerCacheClear,
            # CircleCI's GUARD_CACHE_EPOCH): the rerun restores nothing and saves a fresh cache
            self.corrupt.discard((ch.commit.repo, ch.job))
        if self.plain_reruns:
            mode = Mode()  # the whole job again, as it was
        self.res.auto_retries += 1
        ch.acted = (act, cmd.category)
        self.rerun(t, ch, mode)


# --- running and reporting -------------------------------------------------------------------------


def simulate(cfg: Config, seed: int, matcher: Matcher | None = None) -> dict[str, Result]:
    st = build_stream(cfg, seed)
    return {p: Sim(st, p, matcher).run() for p in POLICIES}


def simulate_plain(cfg: Config, seed: int, matcher: Matcher | None = None) -> Result:
    """The guard on the same stream with every fix carried out as a plain re-run (no directives)."""
    return Sim(build_stream(cfg, seed), "guard", matcher, plain_reruns=True).run()


#: the automatic actions whose next attempt a directive changes
FIX_ACTIONS = ("rerun_more_memory", "rerun_larger_runner", "retry_tests_isolated", "rerun_sequential",
               "clear_cache_retry")


def summary(results: dict[str, Result]) -> dict[str, dict[str, float]]:
    out = {}
    for p, r in results.items():
        out[p] = {"mttg_min": r.mttg, "episodes": len(r.counted()), "open": len(r.counted()) - len(r.closed),
                  "first_failures": r.first_failures, "wasted_min": r.wasted_minutes, "retry_min": r.retry_minutes,
                  "usd": r.usd, "ci_min": r.minutes, "hidden": r.hidden, "masked": r.masked, "auto_retries": r.auto_retries,
                  "human_reruns": r.human_reruns}
    return out


def headline(s: dict[str, dict[str, float]]) -> dict[str, float]:
    none, retry, guard = s["none"], s["retry"], s["guard"]
    r = 1.0 - guard["mttg_min"] / none["mttg_min"] if none["mttg_min"] else 0.0
    w = guard["wasted_min"] / retry["wasted_min"] if retry["wasted_min"] else 0.0
    return {"mttg_reduction_vs_none": round(r, 4), "wasted_minutes_ratio_vs_retry_all": round(w, 4),
            "hidden_regressions": int(guard["hidden"])}


def plot(runs: list[dict[str, Result]], meds: dict[str, dict[str, float]], outdir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    names = {"none": "no healing", "retry": "blind retry-N", "guard": "guard"}
    colors = {"none": "#9e9e9e", "retry": "#e08a3c", "guard": "#2e7d32"}
    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), dpi=90)
    for ax, key, title in zip(axes, ("mttg_min", "wasted_min", "usd"),
                              ("mean time to green (min)", "wasted retry minutes", "CI cost (USD)")):
        vals = [meds[p][key] for p in POLICIES]
        ax.bar([names[p] for p in POLICIES], vals, color=[colors[p] for p in POLICIES])
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"fleet simulation, medians of {len(runs)} seeds", fontsize=10)
    fig.tight_layout()
    p = outdir / "mttg_bars.png"
    fig.savefig(p)
    plt.close(fig)
    paths.append(p)
    fig, ax = plt.subplots(figsize=(6.5, 3.4), dpi=90)
    for pol in POLICIES:
        ttg = sorted(e.green - e.first_fail for run in runs for e in run[pol].closed)  # type: ignore[operator]
        if ttg:
            ax.step(ttg, [(i + 1) / len(ttg) for i in range(len(ttg))], where="post", label=names[pol],
                    color=colors[pol])
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("time to green (minutes, symlog)")
    ax.set_ylabel("share of failure episodes")
    ax.set_title("time to green, all seeds", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    p = outdir / "mttg_ttg_cdf.png"
    fig.savefig(p)
    plt.close(fig)
    paths.append(p)
    return paths


def _parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    d = dict(Config.mix)
    for part in text.split(","):
        if part.strip():
            k, _, v = part.partition("=")
            k = k.strip()
            if k not in d:
                raise SystemExit(f"--mix: unknown cause {k!r}; known: {', '.join(d)}")
            d[k] = float(v)
    total = sum(d.values())
    if total <= 0 or d["flaky"] <= 0:
        raise SystemExit("--mix: the shares must be positive and flaky > 0")
    return tuple((k, v / total) for k, v in d.items())


def config_from_args(argv: list[str] | None = None) -> tuple[Config, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="last stdout line: the headline numbers as JSON")
    ap.add_argument("--plots", default=str(Path(__file__).parent / "results"), help="PNG directory ('' for none)")
    ap.add_argument("--mix", default=None, help="shares of first failures: flaky=..,regression=..,code=..,infra=..")
    ap.add_argument("--mix-file", default=None, help="JSON object: 'mix' and any option by its long name")
    for f in fields(Config):
        if f.name == "mix":
            continue
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None)
    ns = ap.parse_args(argv)
    cfg = Config()
    if ns.mix_file:
        data = json.loads(Path(ns.mix_file).read_text())
        known = {f.name for f in fields(Config)}
        bad = set(data) - known
        if bad:
            raise SystemExit(f"{ns.mix_file}: unknown keys {sorted(bad)}; known: {sorted(known)}")
        if "mix" in data:
            data["mix"] = _parse_mix(",".join(f"{k}={v}" for k, v in data["mix"].items()))
        cfg = replace(cfg, **data)
    if ns.mix:
        cfg = replace(cfg, mix=_parse_mix(ns.mix))
    over = {f.name: getattr(ns, f.name) for f in fields(Config) if f.name != "mix" and getattr(ns, f.name) is not None}
    return replace(cfg, **over), ns


def median_summary(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {p: {k: statistics.median(s[p][k] for s in per_seed) for k in per_seed[0][p]} for p in POLICIES}


def main(argv: list[str] | None = None) -> int:
    cfg, ns = config_from_args(argv)
    console = Console(stderr=False, highlight=False, width=150)
    t0 = time.perf_counter()
    matcher = Matcher(load_library(()), markers=True)
    runs, per_seed, heads, plains = [], [], [], []
    for k in range(cfg.seeds):
        res = simulate(cfg, cfg.seed + k, matcher)
        plains.append(simulate_plain(cfg, cfg.seed + k, matcher))
        runs.append(res)
        s = summary(res)
        per_seed.append(s)
        heads.append(headline(s))
    meds = median_summary(per_seed)
    head = {"mttg_reduction_vs_none": round(statistics.median(h["mttg_reduction_vs_none"] for h in heads), 4),
            "wasted_minutes_ratio_vs_retry_all": round(statistics.median(h["wasted_minutes_ratio_vs_retry_all"] for h in heads), 4),
            "hidden_regressions": int(sum(h["hidden_regressions"] for h in heads))}
    elapsed = time.perf_counter() - t0

    st = build_stream(cfg, cfg.seed)
    causes: dict[str, int] = {}
    for r in runs:
        for c, n in r["none"].causes.items():
            causes[c] = causes.get(c, 0) + n
    tot = sum(causes.values()) or 1
    console.print(f"[bold]Fleet simulation[/bold]: {cfg.repos} repos x {cfg.days:g} days, {cfg.commits_per_day:g} commits/day "
                  f"each, {len(st.commits)} commits (seed {cfg.seed}), {cfg.seeds} seeds, first {cfg.warmup_days:g} day(s) "
                  f"not counted; {elapsed:.1f} s")
    console.print("realized first-failure causes (all seeds): " + ", ".join(
        f"{c} {n / tot:.0%}" for c, n in sorted(causes.items(), key=lambda x: -x[1])))
    tab = Table(title=f"medians over {cfg.seeds} seeds (hidden: total)")
    for col in ("policy", "episodes", "first failures", "MTTG min", "open", "retry min", "wasted retry min", "CI USD",
                "auto reruns", "human reruns", "hidden regressions", "masked by quarantine"):
        tab.add_column(col, justify="right" if col != "policy" else "left")
    label = {"none": "no healing", "retry": f"blind retry-{cfg.retries}", "guard": "guard"}
    for p in POLICIES:
        m = meds[p]
        tab.add_row(label[p], f"{m['episodes']:.0f}", f"{m['first_failures']:.0f}", f"{m['mttg_min']:.1f}",
                    f"{m['open']:.0f}", f"{m['retry_min']:,.0f}", f"{m['wasted_min']:,.0f}", f"{m['usd']:,.2f}",
                    f"{m['auto_retries']:.0f}", f"{m['human_reruns']:.0f}",
                    str(sum(int(s[p]['hidden']) for s in per_seed)), str(sum(int(s[p]['masked']) for s in per_seed)))
    console.print(tab)
    acts: dict[str, int] = {}
    for r in runs:
        for a, n in r["guard"].actions.items():
            acts[a] = acts.get(a, 0) + n
    console.print("guard commands (all seeds): " + ", ".join(f"{a} {n}" for a, n in sorted(acts.items(), key=lambda x: -x[1])))
    # directives: the same guard, the same stream, its fixes carried out as plain re-runs
    fix = Table(title="the attempt after an automatic fix (all seeds): green / attempts")
    for col in ("action", "with directives", "plain re-run", "ratio"):
        fix.add_column(col, justify="right" if col != "action" else "left")
    for act in FIX_ACTIONS:
        w = [sum(r["guard"].next_green.get(act, [0, 0])[i] for r in runs) for i in (0, 1)]
        p = [sum(r.next_green.get(act, [0, 0])[i] for r in plains) for i in (0, 1)]
        if w[1] or p[1]:
            rw, rp = (w[0] / w[1] if w[1] else 0.0), (p[0] / p[1] if p[1] else 0.0)
            fix.add_row(act, f"{w[0]}/{w[1]} = {rw:.0%}", f"{p[0]}/{p[1]} = {rp:.0%}", f"{rw / rp:.2f}" if rp else "-")
    console.print(fix)
    plain_mttg = statistics.median(r.mttg for r in plains)
    console.print(f"MTTG with directives {meds['guard']['mttg_min']:.1f} min, with plain re-runs {plain_mttg:.1f} min "
                  f"(medians over {cfg.seeds} seeds)")
    ok = (head["mttg_reduction_vs_none"] >= GOAL_MTTG_REDUCTION, head["wasted_minutes_ratio_vs_retry_all"] <= GOAL_WASTED_RATIO,
          head["hidden_regressions"] == 0)
    console.print(f"MTTG reduction vs no healing {head['mttg_reduction_vs_none']:.1%} (goal >= {GOAL_MTTG_REDUCTION:.0%}: "
                  f"{'met' if ok[0] else 'MISSED'}); wasted minutes vs retry-{cfg.retries} "
                  f"{head['wasted_minutes_ratio_vs_retry_all']:.2f} (goal <= {GOAL_WASTED_RATIO}: {'met' if ok[1] else 'MISSED'}); "
                  f"hidden regressions {head['hidden_regressions']} (goal 0: {'met' if ok[2] else 'MISSED'})")
    console.print("per seed: " + "; ".join(f"r={h['mttg_reduction_vs_none']:.3f} w={h['wasted_minutes_ratio_vs_retry_all']:.3f} "
                                          f"h={h['hidden_regressions']}" for h in heads))
    if ns.plots:
        for p in plot(runs, meds, Path(ns.plots)):
            console.print(f"wrote {p}")
    if ns.json:
        sys.stdout.flush()
        print(json.dumps(head))
    return 0


if __name__ == "__main__":
    sys.exit(main())
