"""Chooses the remediation for a diagnosed job: by cause, and only when it is worth its cost.

Pure: ``plan(...)`` takes the diagnosis, the failed tests' risks and the budget ledger, and returns the
command (or the notification) plus the new ledger.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from ..classify import Diagnosis
from ..schemas import BudgetSnapshot, Command, Evidence, JobEvent, TestRisk
from .gate import packaged_thresholds
from .strategies import FLAKY_RETRY, NOTIFY_AUTHOR, STRATEGIES, Strategy


@dataclass(frozen=True)
class PlanConfig:
    daily_budget_usd: float = 200.0
    repo_daily_budget_usd: float = 50.0
    max_retries_per_job: int = 2
    human_response_minutes: float = 30.0
    flaky_retry_threshold: float = 0.6
    flaky_min_runs: int = 5
    confidence_threshold: float = 0.5
    partitions: int = 1  # the daily budget is split into per-partition slices, see Ledger
    #: per-category confidence an automatic action needs (the auto-remediation gate, see gate.py)
    auto_thresholds: dict[str, float] = field(default_factory=lambda: dict(packaged_thresholds()))


@dataclass(frozen=True)
class Ledger:
    """Today's spend seen by one partition. Budgets are sliced per partition so that each slice is
    owned by exactly one worker at a time and survives a crash in that partition's changelog."""

    day: str = ""
    spent_usd: float = 0.0
    repo_spent: tuple[tuple[str, float], ...] = ()

    def repo(self, repo: str) -> float:
        return dict(self.repo_spent).get(repo, 0.0)

    def add(self, day: str, repo: str, usd: float) -> Ledger:
        led = self if self.day == day else Ledger(day=day)
        spent = dict(led.repo_spent)
        spent[repo] = spent.get(repo, 0.0) + usd
        return Ledger(day=day, spent_usd=led.spent_usd + usd, repo_spent=tuple(sorted(spent.items())))


def command_id(job_key: str, attempt: int, action: str) -> str:
    """Deterministic: a replayed stream or a restarted worker produces the same id."""
    return hashlib.sha256(f"{job_key}|{attempt}|{action}".encode()).hexdigest()[:32]


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def _choose(d: Diagnosis, risks: tuple[TestRisk, ...], cfg: PlanConfig) -> tuple[Strategy, str]:
    if d.category == "unknown":
        return STRATEGIES["unknown"], "no failure pattern decided the cause: a human looks at it"
    if d.confidence < cfg.confidence_threshold:
        return STRATEGIES["unknown"], (
            f"{d.category} at confidence {d.confidence:.2f} is below the {cfg.confidence_threshold:.2f} threshold")
    if d.category in ("test_failure", "test_timeout"):
        if not risks:
            return NOTIFY_AUTHOR, "tests failed and no test history is known: treated as a real failure"
        weak = [r for r in risks if r.runs < cfg.flaky_min_runs or r.p_retry_pass < cfg.flaky_retry_threshold]
        if weak:
            names = ", ".join(r.test_id for r in weak[:3])
            return NOTIFY_AUTHOR, f"failed tests not known to be flaky ({names}): a retry would hide a regression"
        worst = min(r.p_retry_pass for r in risks)
        st = replace(FLAKY_RETRY, p_success=worst,
                     parameters={**FLAKY_RETRY.parameters, "tests": [r.test_id for r in risks]})
        return st, f"all {len(risks)} failed tests are flaky (P(retry passes) >= {worst:.2f})"
    st = STRATEGIES.get(d.category, STRATEGIES["unknown"])
    gate = cfg.auto_thresholds.get(d.category)
    if st.automatic and gate is not None and d.confidence < gate:
        return STRATEGIES["unknown"], (
            f"{d.category} at confidence {d.confidence:.2f} is below the {gate:.2f} needed to {st.action} "
            "automatically (measured precision gate): notifying instead")
    return st, st.why


def plan(job: JobEvent, d: Diagnosis, risks: tuple[TestRisk, ...], ledger: Ledger, cfg: PlanConfig,
         price_per_minute: float, now: float | None = None) -> tuple[Ledger, Command]:
    now = time.time() if now is None else now
    day = utc_day(now)
    if ledger.day != day:
        ledger = Ledger(day=day)
    st, reason = _choose(d, risks, cfg)
    minutes = max(job.duration_minutes, 1.0)
    cost = round(minutes * st.rerun_fraction * price_per_minute * st.size_factor, 4)
    repo = f"{job.owner}/{job.repo}"
    daily_slice = cfg.daily_budget_usd / max(cfg.partitions, 1)
    repo_slice = cfg.repo_daily_budget_usd / max(cfg.partitions, 1)
    if st.automatic:
        # expected value: P(success) x (human delay + rerun time saved, priced) - action cost
        saved_usd = st.p_success * (cfg.human_response_minutes + minutes) * price_per_minute
        if job.attempt > cfg.max_retries_per_job:
            st, reason = STRATEGIES["unknown"], (
                f"attempt {job.attempt} is over the retry limit of {cfg.max_retries_per_job}: escalating")
        elif ledger.spent_usd + cost > daily_slice:
            st, reason = STRATEGIES["unknown"], f"daily retry budget exhausted ({ledger.spent_usd:.2f} USD spent)"
        elif ledger.repo(repo) + cost > repo_slice:
            st, reason = STRATEGIES["unknown"], f"{repo} retry budget exhausted ({ledger.repo(repo):.2f} USD spent)"
        elif saved_usd <= cost:
            st, reason = STRATEGIES["unknown"], (
                f"{st.action} is not worth it: expected saving {saved_usd:.2f} USD <= cost {cost:.2f} USD")
    if not st.automatic:
        cost = 0.0
    snapshot = BudgetSnapshot(day=day, spent_usd=round(ledger.spent_usd, 4), daily_budget_usd=daily_slice,
                              repo_spent_usd=round(ledger.repo(repo), 4), repo_budget_usd=repo_slice,
                              job_retries=job.attempt - 1, max_retries_per_job=cfg.max_retries_per_job)
    if cost > 0:
        ledger = ledger.add(day, repo, cost)
    cmd = Command(
        provider=job.provider, owner=job.owner, repo=job.repo, job_id=job.job_id,
        command_id=command_id(job.job_key, job.attempt, st.action), attempt=job.attempt, action=st.action,
        reason=reason, category=d.category, confidence=round(d.confidence, 4), parameters=dict(st.parameters),
        evidence=[Evidence(line=e.line, text=e.text, pattern=e.pattern) for e in d.evidence[:5]],
        budget=snapshot, estimated_cost_usd=cost, run_id=job.run_id, ts=now,
    )
    return ledger, cmd
