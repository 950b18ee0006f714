"""The strategy policy: which user-facing strategy owns a failure, whether it may act, and how.

The planner (:func:`.planner.plan`) picks the action a cause calls for and prices it; the policy applies
what a team set for each strategy (``healing-strategies.yml``, ``PipelineGuard.add_strategy``):

1. a disabled strategy's categories go to a person (the author for tests, on-call otherwise);
2. a strategy's ``confidence_threshold`` is the gate of its categories;
3. RACE_CONDITION turns a flaky retry that looks like a race (the race rule, ``strategies.looks_like_race``,
   on the evidence and the log's last lines) into a sequential rerun;
4. DEPENDENCY_HELL (opt-in) reruns dependency failures once with a clean dependency cache;
5. a strategy's configured ``action`` (the product document's ``action: "increase-resources"``,
   ``actions.primary``) replaces the planner's choice for the categories it fits (:func:`chosen_remedy`),
   once the planner wanted an automatic action at all: a code failure still goes to its author;
6. every automatic action then passes the planner's checks (per-job retry limit, budgets, expected
   value) and the strategy's own ``max_retries`` for the job; its ``parameters`` join the command.

The worker's engine and ``PipelineGuard`` both decide through :func:`choose`, so a strategies file means
the same thing to the stream and to the Python API.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..classify import Diagnosis
from ..schemas import Command, JobEvent, TestRisk
from .actions import is_automatic
from .catalogue import CATALOGUE, Strategy
from .gate import DEFAULT_THRESHOLD
from .outcomes import SuccessStats
from .planner import Ledger, PlanConfig, command_id, plan, plan_chosen
from .strategies import (ALTERNATIVES, CLEAN_DEPENDENCIES, FLAKY_RETRY, NOTIFY_AUTHOR, NOTIFY_ONCALL, RACE_RETRY,
                         STRATEGIES, Remedy, looks_like_race, remedies_for, remedy_for)

__all__ = ["Choice", "Policy", "StrategyState", "choose", "chosen_remedy", "p_success", "take_custom"]

TEST_CATEGORIES = ("test_failure", "test_timeout")
#: the owner of each category's automatic action (SKIP_AND_NOTIFY for the rest)
OWNER: Mapping[str, Strategy] = MappingProxyType({
    c: s for s, info in CATALOGUE.items() if s not in (Strategy.RACE_CONDITION, Strategy.SKIP_AND_NOTIFY)
    for c in info.categories
})


@dataclass(frozen=True)
class StrategyState:
    """A built-in strategy's current settings (``None`` threshold: the measured per-category gate)."""

    enabled: bool
    confidence_threshold: float | None = None
    max_retries: int | None = None
    parameters: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: the action the strategy takes instead of the planner's choice, where it fits the cause
    #: (:func:`chosen_remedy`); "notify": a person decides
    action: str | None = None


@dataclass(frozen=True)
class Policy:
    """Every built-in strategy's state; the default is the catalogue's."""

    states: Mapping[Strategy, StrategyState] = field(default_factory=lambda: MappingProxyType({
        s: StrategyState(enabled=info.enabled, max_retries=info.max_retries) for s, info in CATALOGUE.items()}))

    def state(self, s: Strategy) -> StrategyState:
        return self.states[s]

    def updated(self, s: Strategy, *, enabled: bool | None = None, threshold: float | None = None,
                max_retries: int | None = None, parameters: Mapping[str, Any] | None = None,
                action: str | None = None) -> Policy:
        """This policy with one strategy changed (``None``: keep the current value; parameters merge)."""
        old = self.states[s]
        new = StrategyState(
            enabled=old.enabled if enabled is None else enabled,
            confidence_threshold=old.confidence_threshold if threshold is None else threshold,
            max_retries=old.max_retries if max_retries is None else max_retries,
            parameters=old.parameters if parameters is None else MappingProxyType({**old.parameters, **parameters}),
            action=old.action if action is None else action,
        )
        return Policy(MappingProxyType({**self.states, s: new}))

    def plan_config(self, cfg: PlanConfig) -> PlanConfig:
        """``cfg`` with each strategy's ``confidence_threshold`` as the gate of its categories (the test
        and dependency strategies are decided by test history / opt-in, not by a category gate)."""
        gates = dict(cfg.auto_thresholds)
        for strategy, state in self.states.items():
            if state.confidence_threshold is not None and strategy not in (
                    Strategy.FLAKY_TEST_RETRY, Strategy.RACE_CONDITION, Strategy.DEPENDENCY_HELL):
                for cat in CATALOGUE[strategy].categories:
                    if cat in gates:
                        gates[cat] = state.confidence_threshold
        return cfg if gates == cfg.auto_thresholds else dataclasses.replace(cfg, auto_thresholds=gates)

    def parameters(self, owner: str) -> Mapping[str, Any]:
        """What the strategy named ``owner`` adds to its commands (a custom strategy's own action carries
        its parameters: nothing here)."""
        try:
            return self.states[Strategy(owner)].parameters
        except ValueError:
            return {}


@dataclass(frozen=True)
class Choice:
    """What the policy decided for one failed job attempt."""

    owner: str  # Strategy value, or a custom strategy's name
    ledger: Ledger  # the budget ledger once this command is taken
    command: Command
    p_success: float  # P(the action turns the job green) the planner used; 0 for a notification
    refused: bool  # an automatic action was wanted but a check refused it
    repeat: bool = False  # this automatic command was already taken for this attempt (``done``)


#: how often a strategy already acted on this job (the policy's ``max_retries`` check)
Retries = Callable[[str], int]
#: whether a command id was already carried out (a repeated request returns the earlier result)
Done = Callable[[str], bool]


def _never(_: str) -> bool:
    return False


def _none(_: str) -> int:
    return 0


def disabled_reason(owner: Strategy, category: str) -> str:
    return (f"{owner.value} is disabled: {category} goes to a person "
            f"(enable it in healing-strategies.yml or with add_strategy(Strategy.{owner.name}))")


def _unlimited(cfg: PlanConfig) -> PlanConfig:
    """The same choice rules with budgets and retry limits out of the way (and any saving worth it)."""
    return dataclasses.replace(cfg, daily_budget_usd=math.inf, repo_daily_budget_usd=math.inf,
                               max_retries_per_job=2**62, human_response_minutes=1e12)


def p_success(category: str, repo: str, action: str, risks: tuple[TestRisk, ...],
              success: SuccessStats | None) -> float:
    """P(success) the planner uses for ``action``: the table's prior, as learned from outcomes."""
    if action in (FLAKY_RETRY.action, RACE_RETRY.action) and risks:
        prior = min(r.p_retry_pass for r in risks)
    else:
        candidates = (STRATEGIES.get(category), *ALTERNATIVES.get(category, ()))
        prior = next((c.p_success for c in candidates if c is not None and c.action == action), 0.0)
    return success.p_success(category, repo, action, prior) if success is not None else prior


@dataclass(frozen=True)
class _Job:
    job: JobEvent
    d: Diagnosis
    risks: tuple[TestRisk, ...]
    cfg: PlanConfig
    price: float
    now: float
    success: SuccessStats | None
    retries: Retries
    done: Done


def choose(job: JobEvent, d: Diagnosis, risks: tuple[TestRisk, ...], ledger: Ledger, cfg: PlanConfig,
           price_per_minute: float, now: float, *, policy: Policy | None = None,
           success: SuccessStats | None = None, tail: Iterable[str] = (), retries: Retries = _none,
           done: Done = _never) -> Choice:
    """The command for one diagnosed job attempt under ``policy``, and the ledger after it.

    ``cfg`` is the planner's config before the policy's gates (they are applied here); ``tail``: the
    log's last lines (the race rule reads them besides the evidence); ``retries(owner)``: how often that
    strategy already acted on this job; ``done(command_id)``: whether that command was already taken.
    """
    policy = policy or Policy()
    cfg = policy.plan_config(cfg)
    ctx = _Job(job, d, risks, cfg, price_per_minute, now, success, retries, done)
    # the planner with budgets and retry limits out of the way: was an automatic action wanted?
    _, probe = plan(job, d, risks, Ledger(), _unlimited(cfg), price_per_minute, now, success=success)
    if not is_automatic(probe.action):
        dep = policy.state(Strategy.DEPENDENCY_HELL)
        if (d.category in CATALOGUE[Strategy.DEPENDENCY_HELL].categories and dep.enabled
                and d.confidence >= cfg.confidence_threshold):
            thr = DEFAULT_THRESHOLD if dep.confidence_threshold is None else dep.confidence_threshold
            if d.confidence >= thr:
                mine = chosen_remedy(Strategy.DEPENDENCY_HELL, dep, d.category)
                if mine is not None and mine.action != CLEAN_DEPENDENCIES.action:
                    return _configured(ctx, ledger, Strategy.DEPENDENCY_HELL, dep, mine)
                return take(ctx, ledger, Strategy.DEPENDENCY_HELL.value, dep.max_retries, CLEAN_DEPENDENCIES,
                            CLEAN_DEPENDENCIES.why)
            return take(ctx, ledger, Strategy.DEPENDENCY_HELL.value, None, NOTIFY_AUTHOR,
                        f"{d.category} at confidence {d.confidence:.2f} is below the {thr:.2f} "
                        "dependency_hell needs: the author decides")
        ledger, cmd = plan(job, d, risks, ledger, cfg, price_per_minute, now, success=success)
        return Choice(Strategy.SKIP_AND_NOTIFY.value, ledger, cmd, 0.0, refused=False)

    if d.category not in TEST_CATEGORIES:
        owner = OWNER.get(d.category, Strategy.SKIP_AND_NOTIFY)
        state = policy.state(owner)
        if not state.enabled:
            return take(ctx, ledger, owner.value, None, NOTIFY_ONCALL, disabled_reason(owner, d.category))
        mine = chosen_remedy(owner, state, d.category)
        if mine is not None and mine.action != probe.action:
            return _configured(ctx, ledger, owner, state, mine)
        return _planned(ctx, ledger, owner, state.max_retries)

    # a test failure the planner would retry: every failed test is known to be flaky
    race = policy.state(Strategy.RACE_CONDITION)
    racy = probe.action == RACE_RETRY.action or looks_like_race(e.text for e in d.evidence) or looks_like_race(tail)
    owner = Strategy.RACE_CONDITION if racy and race.enabled else Strategy.FLAKY_TEST_RETRY
    state = policy.state(owner)
    if not state.enabled:
        return take(ctx, ledger, owner.value, None, NOTIFY_AUTHOR, disabled_reason(owner, d.category))
    gate = state.confidence_threshold
    if gate is not None and d.confidence < gate:
        return take(ctx, ledger, owner.value, None, NOTIFY_AUTHOR,
                    f"{d.category} at confidence {d.confidence:.2f} is below the {gate:.2f} "
                    f"{owner.value} needs: the author decides")
    want = RACE_RETRY if owner is Strategy.RACE_CONDITION else FLAKY_RETRY
    mine = chosen_remedy(owner, state, d.category)
    if mine is not None and mine.action != want.action:
        return _configured(ctx, ledger, owner, state, mine)
    if probe.action == want.action:
        return _planned(ctx, ledger, owner, state.max_retries)
    worst = min(r.p_retry_pass for r in risks)
    st = dataclasses.replace(want, p_success=worst, parameters={
        **want.parameters, **{k: v for k, v in probe.parameters.items() if k == "timeout_factor"},
        "tests": list(probe.parameters.get("tests", [r.test_id for r in risks])),
        "failed_tests": [r.test_id for r in risks]})
    return take(ctx, ledger, owner.value, state.max_retries, st, st.why)


def chosen_remedy(owner: Strategy, state: StrategyState, category: str) -> Remedy | None:
    """The remedy a strategy's configured ``action`` means for a failure of ``category``, or None when it
    has none or the action does not fit this category: an action that some category of the strategy
    answers by itself (oom_recovery's ``rerun_more_memory``) applies to that category only, so a full
    disk keeps its cleanup; any other applies to all of them (flaky tests rerun with a backoff)."""
    if not state.action:
        return None
    if state.action == "notify":
        return NOTIFY_AUTHOR if category in TEST_CATEGORIES else NOTIFY_ONCALL
    native = {c for c in CATALOGUE[owner].categories if any(r.action == state.action for r in remedies_for(c))}
    if native and category not in native:
        return None
    return remedy_for(category, state.action)


def _configured(ctx: _Job, ledger: Ledger, owner: Strategy, state: StrategyState, st: Remedy) -> Choice:
    why = f"{owner.value} is configured to {st.action} ({st.why or 'its configured action'})"
    if st.action in (FLAKY_RETRY.action, RACE_RETRY.action):
        ids = [r.test_id for r in ctx.risks]
        st = dataclasses.replace(st, p_success=min((r.p_retry_pass for r in ctx.risks), default=st.p_success),
                                 parameters={**st.parameters, "tests": ids, "failed_tests": ids})
    return take(ctx, ledger, owner.value, state.max_retries if st.automatic else None, st, why)


def _over_limit(ctx: _Job, owner: str, max_retries: int | None) -> str | None:
    if max_retries is None:
        return None
    n = ctx.retries(owner)
    if n >= max_retries:
        return (f"{owner} already acted {n} time(s) on {ctx.job.job_key} (max_retries={max_retries}): "
                "escalating to a person")
    return None


def _planned(ctx: _Job, ledger: Ledger, owner: Strategy, max_retries: int | None) -> Choice:
    """The planner's own choice of an automatic action, then the strategy's per-job limit."""
    new_ledger, cmd = plan(ctx.job, ctx.d, ctx.risks, ledger, ctx.cfg, ctx.price, ctx.now, success=ctx.success)
    if not is_automatic(cmd.action):  # a budget, the retry limit or the expected value refused it
        return Choice(owner.value, new_ledger, cmd, 0.0, refused=True)
    if ctx.done(cmd.command_id):
        return Choice(owner.value, ledger, cmd, 0.0, refused=False, repeat=True)
    refusal = _over_limit(ctx, owner.value, max_retries)
    if refusal:
        return take(ctx, ledger, owner.value, None, NOTIFY_ONCALL, refusal, skipped=True)
    p = p_success(ctx.d.category, f"{ctx.job.owner}/{ctx.job.repo}", cmd.action, ctx.risks, ctx.success)
    return Choice(owner.value, new_ledger, cmd, p, refused=False)


def take(ctx: _Job, ledger: Ledger, owner: str, max_retries: int | None, st: Remedy, reason: str, *,
         cost: float | None = None, skipped: bool = False) -> Choice:
    """A remedy chosen by a strategy (custom, optional, or a notification), through the planner's checks."""
    if st.automatic:
        if ctx.done(command_id(ctx.job.job_key, ctx.job.attempt, st.action)):
            cmd = plan_chosen(ctx.job, ctx.d, st, reason, ledger, ctx.cfg, ctx.price, ctx.now, cost=cost,
                              success=ctx.success)[1]
            return Choice(owner, ledger, cmd, 0.0, refused=False, repeat=True)
        refusal = _over_limit(ctx, owner, max_retries)
        if refusal:
            st, reason, skipped = NOTIFY_ONCALL, refusal, True
    new_ledger, cmd, p, refused = plan_chosen(ctx.job, ctx.d, st, reason, ledger, ctx.cfg, ctx.price, ctx.now,
                                              cost=cost, success=ctx.success)
    return Choice(owner, new_ledger, cmd, p, refused=refused or skipped)


def take_custom(job: JobEvent, d: Diagnosis, risks: tuple[TestRisk, ...], ledger: Ledger, cfg: PlanConfig,
                price_per_minute: float, now: float, *, owner: str, max_retries: int | None, remedy: Remedy,
                reason: str, cost: float | None = None, policy: Policy | None = None,
                success: SuccessStats | None = None, retries: Retries = _none, done: Done = _never) -> Choice:
    """A custom strategy's remedy through the same checks as the built-in ones."""
    policy = policy or Policy()
    ctx = _Job(job, d, risks, policy.plan_config(cfg), price_per_minute, now, success, retries, done)
    return take(ctx, ledger, owner, max_retries, remedy, reason, cost=cost)
