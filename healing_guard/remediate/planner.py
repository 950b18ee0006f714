"""Chooses the remediation for a diagnosed job: by cause, and only when it is worth its cost.

Pure: ``plan(...)`` takes the diagnosis, the failed tests' risks and the budget ledger, and returns the
command (or the notification) plus the new ledger.

A user's named pattern (patterns/named.py) may say what to do about the failures it finds. When its line
is the one that decided the diagnosis, the command carries that remediation instead of the table's
answer, through the same gates, budgets and retry limits (:func:`pattern_remedy`, :func:`honour`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from datetime import datetime, timezone

from ..classify import Diagnosis
from ..ids import stable_id
from ..patterns.named import Remediation
from ..schemas import BudgetSnapshot, Command, Evidence, JobEvent, TestRisk
from .gate import packaged_thresholds
from .outcomes import SuccessStats
from .catalogue import CATALOGUE, Strategy
from .strategies import (ALTERNATIVES, ESCALATE, FLAKY_RETRY, NOTIFY_AUTHOR, RACE_RETRY, STRATEGIES, Remedy,
                         looks_like_race, remedy_for)


@dataclass(frozen=True)
class PlanConfig:
    daily_budget_usd: float = 200.0
    repo_daily_budget_usd: float = 50.0
    max_retries_per_job: int = 2
    human_response_minutes: float = 30.0
    flaky_retry_threshold: float = 0.6
    flaky_min_runs: int = 5
    #: a test is "known flaky" only if it has failed before and passed on the next run (of the same commit,
    #: when the results name it) this many times:
    #: the first failure after a green history is a regression until shown otherwise
    flaky_min_recoveries: int = 1
    confidence_threshold: float = 0.5
    partitions: int = 1  # the daily budget is split into per-partition slices, see Ledger
    #: per-category confidence an automatic action needs (the auto-remediation gate, see gate.py)
    auto_thresholds: dict[str, float] = field(default_factory=lambda: dict(packaged_thresholds()))
    #: pattern id -> the remediation its named pattern asks for (``patterns.named.pattern_remedies`` of the
    #: loaded library): honoured when that pattern's line decides a diagnosis
    pattern_remedies: Mapping[str, Remediation] = field(default_factory=dict)
    #: shares of a budget at which owners are warned (cost_tracking.alert_levels; the document's
    #: cost_control.alerts.threshold_percentages)
    alert_levels: tuple[float, ...] = (0.5, 0.8, 0.95)
    #: warn once a day when the guard's retry spend passes this many dollars (cost_tracking.alert_usd; the
    #: document's healing.cost_tracking.alert_threshold); 0: off
    cost_alert_usd: float = 0.0
    #: from this many failed attempts of a job on, no fix on a larger (dearer) runner class: the same fix on
    #: the job's own runner (cost_control.optimization.downgrade_after_failures); 0: off
    downgrade_after_failures: int = 0


@dataclass(frozen=True)
class Ledger:
    """Today's spend seen by one partition. Budgets are sliced per partition so that each slice is
    owned by exactly one worker at a time and survives a crash in that partition's changelog."""

    day: str = ""
    spent_usd: float = 0.0
    repo_spent: tuple[tuple[str, float], ...] = ()
    alerted: tuple[str, ...] = ()  # budget alerts already sent today ("daily:80", "repo:o/r:50")

    def repo(self, repo: str) -> float:
        return dict(self.repo_spent).get(repo, 0.0)

    def add(self, day: str, repo: str, usd: float) -> Ledger:
        led = self if self.day == day else Ledger(day=day)
        spent = dict(led.repo_spent)
        spent[repo] = spent.get(repo, 0.0) + usd
        return Ledger(day=day, spent_usd=led.spent_usd + usd, repo_spent=tuple(sorted(spent.items())),
                      alerted=led.alerted)

    def to_dict(self) -> dict[str, object]:
        return {"day": self.day, "spent_usd": self.spent_usd, "repo_spent": [list(x) for x in self.repo_spent],
                "alerted": list(self.alerted)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Ledger:
        if not d:
            return cls()
        return cls(day=str(d.get("day", "")), spent_usd=float(d.get("spent_usd", 0.0)),
                   repo_spent=tuple((str(r), float(v)) for r, v in d.get("repo_spent", ())),
                   alerted=tuple(str(a) for a in d.get("alerted", ())))


#: Shares of a budget at which a notify command warns the owners, once per day each (the default of
#: PlanConfig.alert_levels).
ALERT_LEVELS = (0.5, 0.8, 0.95)


def budget_alerts(ledger: Ledger, job: JobEvent, cfg: PlanConfig, *, slice_id: str = "0",
                  now: float | None = None) -> tuple[Ledger, list[Command]]:
    """``notify_budget`` commands for the budget levels (``cfg.alert_levels``, 50/80/95 % by default) the
    ledger has newly crossed, and for the day's retry spend passing ``cfg.cost_alert_usd`` dollars.

    Once per level, scope (the daily budget, or one repository's) and day: the ledger remembers what it
    announced, and the command id is a hash of day, slice and level, so a replay sends nothing new. Like
    the budgets, the dollar threshold is sliced per partition (each worker sees its partitions' spend).
    """
    now = time.time() if now is None else now
    repo = f"{job.owner}/{job.repo}"
    daily_slice = cfg.daily_budget_usd / max(cfg.partitions, 1)
    repo_slice = cfg.repo_daily_budget_usd / max(cfg.partitions, 1)
    alerted = list(ledger.alerted)
    out: list[Command] = []
    snapshot = BudgetSnapshot(day=ledger.day, spent_usd=round(ledger.spent_usd, 4), daily_budget_usd=daily_slice,
                              repo_spent_usd=round(ledger.repo(repo), 4), repo_budget_usd=repo_slice,
                              job_retries=job.attempt - 1, max_retries_per_job=cfg.max_retries_per_job)

    def alert(tag: str, level: float, spent: float, budget: float, reason: str) -> None:
        alerted.append(tag)
        out.append(Command(
            provider=job.provider, owner=job.owner, repo=job.repo, job_id=job.job_id,
            command_id=stable_id(ledger.day, slice_id, tag),
            attempt=job.attempt, action="notify_budget", category="budget", reason=reason,
            confidence=1.0, parameters={"scope": tag.rsplit(":", 1)[0], "level": level, "spent_usd": round(spent, 4),
                                        "budget_usd": round(budget, 4)},
            budget=snapshot, estimated_cost_usd=0.0, run_id=job.run_id, ts=now,
        ))

    for scope, spent, budget, what in (("daily", ledger.spent_usd, daily_slice, "daily retry budget"),
                                       (f"repo:{repo}", ledger.repo(repo), repo_slice, f"{repo} retry budget")):
        if budget <= 0 or math.isinf(budget):
            continue
        for level in cfg.alert_levels or ALERT_LEVELS:
            tag = f"{scope}:{int(round(level * 100))}"
            if spent < level * budget or tag in alerted:
                continue
            alert(tag, level, spent, budget,
                  f"{int(round(level * 100))} % of the {what} is spent ({spent:.2f} of {budget:.2f} USD, "
                  f"slice {slice_id}); automatic actions stop at 100 %")
    usd_slice = cfg.cost_alert_usd / max(cfg.partitions, 1)
    if usd_slice > 0 and ledger.spent_usd > usd_slice and "cost:usd" not in alerted:
        alert("cost:usd", 1.0, ledger.spent_usd, usd_slice,
              f"the guard's retry spend today passed the alert threshold: {ledger.spent_usd:.2f} USD > "
              f"{usd_slice:.2f} USD (cost_tracking.alert_usd {cfg.cost_alert_usd:g}, slice {slice_id})")
    if not out:
        return ledger, []
    return replace(ledger, alerted=tuple(alerted)), out


def command_id(job_key: str, attempt: int, action: str) -> str:
    """Deterministic: a replayed stream or a restarted worker produces the same id."""
    return stable_id(job_key, attempt, action)


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def _choose(d: Diagnosis, risks: tuple[TestRisk, ...], cfg: PlanConfig) -> tuple[Remedy, str]:
    if d.category == "unknown":
        return STRATEGIES["unknown"], "no failure pattern decided the cause: a human looks at it"
    if d.confidence < cfg.confidence_threshold:
        return STRATEGIES["unknown"], (
            f"{d.category} at confidence {d.confidence:.2f} is below the {cfg.confidence_threshold:.2f} threshold")
    if d.category in ("test_failure", "test_timeout"):
        if not risks:
            return NOTIFY_AUTHOR, "tests failed and no test history is known: treated as a real failure"
        weak = [r for r in risks if r.runs < cfg.flaky_min_runs or r.p_retry_pass < cfg.flaky_retry_threshold
                or (r.recoveries is not None and r.recoveries < cfg.flaky_min_recoveries)]
        if weak:
            names = ", ".join(r.test_id for r in weak[:3])
            return NOTIFY_AUTHOR, f"failed tests not known to be flaky ({names}): a retry would hide a regression"
        worst = min(r.p_retry_pass for r in risks)
        ids = [r.test_id for r in risks]  # the failed tests received: the executor checks "tests" against them
        st = replace(FLAKY_RETRY, p_success=worst,
                     parameters={**FLAKY_RETRY.parameters, "tests": ids, "failed_tests": ids})
        return st, f"all {len(risks)} failed tests are flaky (P(retry passes) >= {worst:.2f})"
    st = STRATEGIES.get(d.category, STRATEGIES["unknown"])
    if d.learned and st.automatic:
        return STRATEGIES["unknown"], (
            f"{d.category} was named by the text model, not by a pattern ({d.confidence:.2f}): a person decides "
            "(the guard acts by itself only on unambiguous evidence)")
    gate = cfg.auto_thresholds.get(d.category)
    if st.automatic and gate is not None and d.confidence < gate:
        return STRATEGIES["unknown"], (
            f"{d.category} at confidence {d.confidence:.2f} is below the {gate:.2f} needed to {st.action} "
            "automatically (measured precision gate): notifying instead")
    return st, st.why


def pattern_remedy(d: Diagnosis, cfg: PlanConfig) -> Remediation | None:
    """The remediation of the user pattern that decided ``d``, if one did.

    The deciding line is the strongest evidence line of the diagnosis's own category (the first such in
    ``d.evidence``; located lines, ``_locate.*``, never decide). A category the text model named, or one
    below the confidence threshold, was not decided by a pattern."""
    if not cfg.pattern_remedies or d.category == "unknown" or d.learned or d.confidence < cfg.confidence_threshold:
        return None
    top = next((e for e in d.evidence if e.category == d.category and not e.pattern.startswith("_")), None)
    return None if top is None else cfg.pattern_remedies.get(top.pattern)


def honour(d: Diagnosis, st: Remedy, reason: str, r: Remediation) -> tuple[Remedy, str]:
    """``st`` (the table's choice after every gate) as the pattern's remediation ``r`` asks.

    - advice only: the author is told, with the advice (a code change; no retry, whatever the table says);
    - when the table's choice is automatic (every gate passed), the pattern's action replaces it, with the
      table's prior and cost shape for that action, and its parameters join (``timeout_factor`` joins the
      table's own rerun, the failed tests' selection included); the advice rides in the reason;
    - otherwise nothing runs: the reason says what the pattern asked and that it was not done.
    ``plan_chosen`` then applies the retry limit, the budgets and the expected value to the result."""
    said = f"pattern {r.pattern}: {r.describe()}"
    if r.advice_only:
        instead = f" (a code change: the guard does not {st.action})" if st.automatic else ""
        return replace(NOTIFY_AUTHOR, why=said), said + instead
    if not st.automatic:
        return st, f"{reason} ({said}: not done)"
    base = st
    if r.action is not None and r.action != st.action:
        table = remedy_for(d.category, r.action)
        base = table if table is not None else replace(st, action=r.action, parameters={})
    chosen = replace(base, parameters={**base.parameters, **r.params()}, why=said)
    return chosen, said


def _candidates(d: Diagnosis, st: Remedy) -> list[Remedy]:
    """The automatic actions that could answer this diagnosis (the table's choice first)."""
    out = [st]
    if st.action == FLAKY_RETRY.action and looks_like_race(e.text for e in d.evidence):
        # a race reruns into the same race when the tests run in parallel again: an isolated rerun
        # recovers about half as often (DeFlaker: same-process reruns recover ~1/4 of flaky failures);
        # run one at a time, the flaky test passes as its history says
        out = [replace(st, p_success=st.p_success * 0.5),
               replace(RACE_RETRY, p_success=st.p_success,
                       parameters={**RACE_RETRY.parameters, "tests": st.parameters.get("tests", []),
                                   "failed_tests": st.parameters.get("failed_tests", [])})]
    out.extend(ALTERNATIVES.get(d.category, ()))
    return out


def pipeline_refuses(job: JobEvent, category: str) -> str | None:
    """Why the pipeline's own ``healing_strategy`` forbids an automatic action here (None: allowed).

    ``auto`` (or nothing) and the presets (``auto-detect``, ``progressive``, ... : they change the
    settings the job is decided under, see ``presets.py``) allow every strategy, ``off`` none, otherwise
    only the named healing-strategies.yml strategies, by the categories they answer.
    """
    from ..presets import is_preset  # here: presets imports the remediate package

    want = (job.healing_strategy or "auto").strip().lower()
    if want in ("", "auto") or is_preset(want):
        return None
    if want == "off":
        return "the pipeline turned automatic healing off (strategy: off): notifying instead"
    names = [n.strip() for n in want.split(",") if n.strip()]
    allowed: set[str] = set()
    for n in names:
        try:
            allowed.update(CATALOGUE[Strategy(n)].categories)
        except ValueError:
            return f"the pipeline asked for an unknown strategy {n!r}: notifying instead"
    if category not in allowed:
        return (f"the pipeline allows only {', '.join(names)}, which does not answer {category}: "
                "notifying instead")
    return None


def expected_value(st: Remedy, p_success: float, minutes: float, human_minutes: float,
                   price_per_minute: float) -> tuple[float, float]:
    """(expected value, cost) of an automatic action, in USD.

    EV = P(success) x (human response minutes + the job's minutes) x price per minute - cost, where
    cost = the job's minutes x the share rerun x price x the runner size factor: a fix that works saves
    a person's reaction time and the rerun they would have started; it always costs its rerun.
    """
    cost = round(minutes * st.rerun_fraction * price_per_minute * st.size_factor, 4)
    return p_success * (human_minutes + minutes) * price_per_minute - cost, cost


def plan(job: JobEvent, d: Diagnosis, risks: tuple[TestRisk, ...], ledger: Ledger, cfg: PlanConfig,
         price_per_minute: float, now: float | None = None,
         success: SuccessStats | None = None) -> tuple[Ledger, Command]:
    """The command for one diagnosed job attempt, and the ledger after it.

    Among the automatic actions that fit the cause, the one with the highest expected value wins, with
    P(success) learned from executor outcomes per category, repository and action when ``success`` is
    given (the strategy table's prior otherwise); then :func:`plan_chosen` applies the checks.
    """
    now = time.time() if now is None else now
    st, reason = _choose(d, risks, cfg)
    refusal = pipeline_refuses(job, d.category) if st.automatic else None
    if refusal is not None:
        st, reason = STRATEGIES["unknown"], refusal
    if st.automatic:
        minutes = max(job.duration_minutes, 1.0)
        repo = f"{job.owner}/{job.repo}"
        scored = []
        cands = _candidates(d, st)
        if cfg.downgrade_after_failures and job.attempt >= cfg.downgrade_after_failures:
            cands = [c for c in cands if c.size_factor <= 1] or cands  # plan_chosen downgrades what is left
        for c in cands:
            p = success.p_success(d.category, repo, c.action, c.p_success) if success is not None else c.p_success
            ev, c_cost = expected_value(c, p, minutes, cfg.human_response_minutes, price_per_minute)
            scored.append((ev, -c_cost, c.action, c))
        scored.sort(key=lambda t: (t[0], t[1], t[2]), reverse=True)
        ev, _, _, best = scored[0]
        if best is not st:
            reason = f"{best.why} (expected value {ev:.2f} USD beats {st.action})"
        st = best
    wanted = pattern_remedy(d, cfg)
    if wanted is not None:
        st, reason = honour(d, st, reason, wanted)
    ledger, cmd, _, _ = plan_chosen(job, d, st, reason, ledger, cfg, price_per_minute, now, success=success)
    return ledger, cmd


def on_own_runner(st: Remedy) -> Remedy:
    """The same fix without a larger runner: more memory for a rerun on a larger runner (the table's OOM
    fix), otherwise the remedy at the job's own runner price and without a runner size."""
    if st.action == "rerun_larger_runner":
        return STRATEGIES["oom"]
    return replace(st, size_factor=1.0, parameters={k: v for k, v in st.parameters.items() if k != "runner_size"})


def plan_chosen(job: JobEvent, d: Diagnosis, st: Remedy, reason: str, ledger: Ledger, cfg: PlanConfig,
                price_per_minute: float, now: float, *, cost: float | None = None,
                success: SuccessStats | None = None) -> tuple[Ledger, Command, float, bool]:
    """The command for an already chosen strategy, after the checks every automatic action passes: the
    per-job retry limit, the daily and repository budget slices, and expected value > 0.

    ``plan`` calls it with the table's best candidate; the Python API with custom strategies. Returns
    the ledger, the command, the P(success) used and whether a check refused the action. ``cost``: a
    fixed cost instead of the job's minutes at the runner's price.
    """
    day = utc_day(now)
    if ledger.day != day:
        ledger = Ledger(day=day)
    minutes = max(job.duration_minutes, 1.0)
    repo = f"{job.owner}/{job.repo}"
    daily_slice = cfg.daily_budget_usd / max(cfg.partitions, 1)
    repo_slice = cfg.repo_daily_budget_usd / max(cfg.partitions, 1)
    refused = False
    p = 0.0
    spend = 0.0
    n = cfg.downgrade_after_failures
    if st.automatic and st.size_factor > 1 and n and job.attempt >= n:
        st, reason = on_own_runner(st), (
            f"{reason}; downgraded: the job has failed {job.attempt} times "
            f"(downgrade_after_failures {n}), so the fix runs on its own runner class, not a larger one")
    if st.automatic:
        p = success.p_success(d.category, repo, st.action, st.p_success) if success is not None else st.p_success
        ev, spend = expected_value(st, p, minutes, cfg.human_response_minutes, price_per_minute)
        if cost is not None:
            ev, spend = ev + spend - cost, round(cost, 4)
        action = st.action
        limit = cfg.max_retries_per_job if job.max_retries is None else min(cfg.max_retries_per_job, job.max_retries)
        if job.attempt > limit:
            st, reason = ESCALATE, (
                f"attempt {job.attempt} is over the retry limit of {limit}: escalating "
                f"(one ticket for this job, however often it fails again)")
        elif ledger.spent_usd + spend > daily_slice:
            st, reason = STRATEGIES["unknown"], f"daily retry budget exhausted ({ledger.spent_usd:.2f} USD spent)"
        elif ledger.repo(repo) + spend > repo_slice:
            st, reason = STRATEGIES["unknown"], f"{repo} retry budget exhausted ({ledger.repo(repo):.2f} USD spent)"
        elif ev <= 0:
            st, reason = STRATEGIES["unknown"], (
                f"{action} is not worth it: expected saving {ev + spend:.2f} USD "
                f"(P(success) {p:.2f}) <= cost {spend:.2f} USD")
        refused = not st.automatic
    if not st.automatic:
        spend, p = 0.0, 0.0
    snapshot = BudgetSnapshot(day=day, spent_usd=round(ledger.spent_usd, 4), daily_budget_usd=daily_slice,
                              repo_spent_usd=round(ledger.repo(repo), 4), repo_budget_usd=repo_slice,
                              job_retries=job.attempt - 1, max_retries_per_job=cfg.max_retries_per_job)
    if spend > 0:
        ledger = ledger.add(day, repo, spend)
    # an escalation is about the job, not the attempt: every later attempt maps to the same id, so the
    # executor opens one ticket per failing job
    cid = command_id(job.job_key, 0 if st.action == ESCALATE.action else job.attempt, st.action)
    parameters = dict(st.parameters)
    if parameters.get("clear_cache") and job.branch:
        parameters["ref"] = job.branch  # whose caches the executor deletes where the platform can
    cmd = Command(
        provider=job.provider, owner=job.owner, repo=job.repo, job_id=job.job_id,
        command_id=cid, attempt=job.attempt, action=st.action,
        reason=reason, category=d.category, confidence=round(d.confidence, 4), parameters=parameters,
        evidence=[Evidence(line=e.line, text=e.text, pattern=e.pattern) for e in d.evidence[:5]],
        budget=snapshot, estimated_cost_usd=spend, run_id=job.run_id, ts=now,
    )
    return ledger, cmd, p, refused


