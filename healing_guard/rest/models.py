"""Pydantic models of the REST API: the contract's shapes, so ``/openapi.json`` documents every field.

Field types follow the warehouse read layer's contract (``WarehouseReader``); a reader answer that
does not fit is a server bug and fails loudly (500) instead of reaching clients half-formed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..engine.requests import CHANNELS, HEAL_STRATEGY_NAMES, normalize_heal_strategy

__all__ = [
    "Daily", "Error", "Evidence", "FailureAnalysis", "FailureCommand", "HealAccepted", "HealRequest", "Health",
    "RecentAction", "Recommendation", "Report", "RepoHealth", "Roi", "RoiAll",
]


class Error(BaseModel):
    """Every error the API answers: what went wrong in words, and the request field at fault."""

    detail: str = Field(description="what went wrong and what to do next")
    field: str | None = Field(None, description="the request field at fault (e.g. 'strategy', 'days'), if any")


class Health(BaseModel):
    """Liveness plus whether the warehouse answers (the API reads everything from it) and whether heal
    requests can reach the broker."""

    status: Literal["ok", "degraded"] = Field(
        description="'degraded' when the warehouse does not answer or heal commands cannot reach the broker")
    warehouse: bool = Field(description="whether a warehouse query just succeeded")
    detail: str | None = Field(None, description="why the warehouse did not answer, or why commands cannot reach "
                                                 "the broker")
    actions: bool = Field(description="whether heal requests can be queued now: a command sink is configured and "
                                      "its broker answered (checked at most every few seconds)")
    version: str


class RepoHealth(BaseModel):
    """A repository's CI health over the last ``days`` days."""

    repo: str = Field(description="owner/repo")
    days: int
    jobs: int = Field(description="job attempts seen")
    failed_jobs: int
    failure_rate: float | None = Field(description="failed_jobs / jobs; null without jobs")
    healing_success_rate: float | None = Field(
        description="automatic commands whose next attempt succeeded / decided ones; null before any")
    flaky_test_rate: float | None = Field(description="flaky tests / tests seen; null without test results")
    flaky_tests: int
    auto_commands: int = Field(description="automatic remediation commands the guard issued")
    time_saved_minutes: float = Field(description="vs a person noticing and re-running")
    cost_saved_usd: float = Field(description="useless retries not made")
    last_failure_at: str | None = Field(description="ISO-8601 UTC")


class Evidence(BaseModel):
    line: int = Field(description="1-based line in the job log")
    text: str = Field(description="the line, tokenized and redacted")
    pattern: str = Field(description="id of the pattern that matched")


class CommandOutcome(BaseModel):
    status: str = Field(description="succeeded, failed, skipped, dry_run, refused (failed a check of the executor; nothing was called) or unknown (sent, no answer, not repeated)")
    detail: str
    ts: str | None


class FailureCommand(BaseModel):
    """A command the guard (or a person, through this API) issued for the job."""

    command_id: str
    action: str
    confidence: float
    reason: str
    estimated_cost_usd: float
    ts: str | None
    outcome: CommandOutcome | None = Field(description="what the executor achieved; null until it reports")


class Recommendation(BaseModel):
    action: str = Field(description="what to do (see the remediation table)")
    confidence: float = Field(description="0..1")
    reason: str
    automatic: bool = Field(description="whether the guard may do it without a person")


class DirectiveAnswer(BaseModel):
    """What a job's next attempt changes (healing_guard/directives.py), for its first step to apply."""

    command_id: str = Field(description="the re-run command the directive comes from")
    action: str
    applies_to_attempt: int = Field(description="the attempt that applies it (the command's attempt + 1)")
    changes: list[str] = Field(description="what the directive changes, in words")
    directive: dict[str, Any] = Field(description="the directive's fields; `guard directive apply` reads them")


class FailureAnalysis(BaseModel):
    """The guard's diagnosis of one failed job, its commands and its recommendations."""

    job_key: str = Field(description="provider/owner/repo/job_id")
    provider: str
    owner: str
    repo: str
    job_id: str
    attempt: int
    run_id: str | None
    category: str = Field(description="one taxonomy category, e.g. network, oom, test_failure")
    confidence: float = Field(description="0..1")
    evidence: list[Evidence]
    template: str | None = Field(description="the templated line that stands for the failure")
    exit_code: int | None
    failed_tests: list[str]
    log_lines: int
    log_complete: bool = Field(description="false when chunks were missing at diagnosis time")
    diagnosed_at: str | None = Field(description="ISO-8601 UTC")
    commands: list[FailureCommand]
    recommendations: list[Recommendation]


class StrategyRecovery(BaseModel):
    action: str
    commands: int
    recovered: int = Field(description="re-runs whose re-run attempt succeeded")
    decided: int = Field(0, description="re-runs whose re-run attempt (the job's next attempt on the same commit) "
                                        "has completed: the rate's denominator")
    rate: float | None


class FlakyTest(BaseModel):
    test_id: str
    runs: int = Field(description="results of the test in the window")
    failures: int
    flaky_jobs: int = Field(description="commits (or jobs, without a commit) on which it both failed and passed")
    guard_reruns: int = Field(0, description="times the guard re-ran it as a flaky test (retry_tests_isolated, "
                                             "rerun_sequential)")
    quarantined: bool = Field(False, description="whether the guard quarantined it")


class Template(BaseModel):
    template: str
    category: str
    count: int


class BudgetDay(BaseModel):
    day: str = Field(description="YYYY-MM-DD")
    spent_usd: float
    budget_usd: float | None
    burn: float | None = Field(description="spent / budget")


class RecentAction(BaseModel):
    """One of the guard's latest commands and what came of it."""

    ts: str | None = Field(description="when the guard decided it, ISO-8601 UTC")
    repo: str = Field(description="owner/repo")
    provider: str
    job_id: str
    attempt: int = Field(description="the attempt it answered")
    job_name: str | None
    action: str
    category: str
    reason: str
    status: str | None = Field(description="the executor's outcome (succeeded, failed, skipped, dry_run, refused, "
                                           "unknown); null until it reports")
    detail: str | None = Field(description="the executor's words on the outcome")
    rerun_conclusion: str | None = Field(description="a re-run's re-run attempt: success, failure or timed_out; null "
                                                     "until it has run, and for other actions")


class ReliabilityWindow(BaseModel):
    since: str = Field(description="YYYY-MM-DD, the window's first day")
    until: str | None = Field(description="YYYY-MM-DD, the day after the window (null: up to now)")
    jobs: int
    failed_jobs: int
    success_rate: float | None = Field(description="completed job attempts that succeeded / completed attempts")
    failure_episodes: int
    healed_share: float | None = Field(description="failure episodes a re-run of the guard turned green / episodes")
    mttr_minutes: float | None
    mttg_minutes: float | None


class ReliabilityChange(BaseModel):
    success_rate_points: float | None = Field(description="percentage points, now minus before (up is better)")
    mttr_minutes: float | None = Field(description="now minus before (down is better)")
    mttg_minutes: float | None = Field(description="now minus before (down is better)")


class Reliability(BaseModel):
    """MTTR and success rate over the last window_days against the window_days before them."""

    window_days: int
    current: ReliabilityWindow
    previous: ReliabilityWindow
    change: ReliabilityChange


class Report(BaseModel):
    """The ROI report: what the guard did and what it saved."""

    repo: str | None
    days: int | None
    jobs: int
    failed_jobs: int
    ci_minutes: float
    ci_cost_usd: float
    auto_commands: int
    manual_commands: int
    reruns_decided: int = Field(0, description="automatic re-runs whose re-run attempt (the job's next attempt on the "
                                               "same commit) has completed")
    reruns_recovered: int = Field(0, description="automatic re-runs whose re-run attempt succeeded")
    time_saved_minutes: float = Field(description="vs a person noticing and re-running")
    rerun_cost_usd: float = Field(description="what the guard's automatic reruns cost")
    cost_avoided_usd: float = Field(description="useless retries not made (a blind retry-once policy would have paid)")
    cost_saved_usd: float
    mttr_minutes: float | None = Field(description="failure -> green, over the failure episodes the guard re-ran")
    mttr_without_guard_minutes: float | None = Field(
        None, description="the same episodes had a person re-run each failure the guard's re-run recovered, "
                          "human_response_minutes after it failed (the counterfactual of time saved)")
    mttr_episodes: int = Field(0, description="failure episodes the guard re-ran that ended green (MTTR's count)")
    mttg_minutes: float | None = Field(description="failure -> next green of the same job, all episodes (other "
                                                   "episodes than MTTR's: not comparable with it)")
    mttg_episodes: int = Field(0, description="failure episodes that ended green (MTTG's count)")
    open_failures: int
    success_rate: float | None = Field(description="completed job attempts that succeeded / completed attempts")
    reliability: Reliability
    recovery_rate: float | None
    recovery_by_strategy: list[StrategyRecovery]
    tests_seen: int
    flaky_tests: int = Field(description="tests judged flaky by the guard or seen failing and passing on one commit")
    flaky_test_rate: float | None = Field(description="flaky_tests / tests_seen")
    flaky_tests_judged: int = Field(0, description="tests the guard judged flaky: re-ran as flaky or quarantined")
    flaky_tests_observed: int = Field(0, description="tests that both failed and passed on one commit")
    flakiest_tests: list[FlakyTest]
    failures_by_category: dict[str, int]
    top_templates: list[Template]
    budget: list[BudgetDay]


class Daily(BaseModel):
    day: str = Field(description="YYYY-MM-DD")
    jobs: int
    failed_jobs: int
    time_saved_minutes: float
    cost_saved_usd: float
    rerun_cost_usd: float
    success_rate: float | None
    mttr_minutes: float | None
    mttg_minutes: float | None


class Roi(BaseModel):
    """The dashboard's data: the report, its days (oldest first) and the guard's latest commands."""

    report: Report
    daily: list[Daily]
    actions: list[RecentAction] = Field(default_factory=list, description="the latest commands, newest first")


class RoiAll(Roi):
    """The dashboard's data over every repository the API key may read."""

    repositories: list[str] = Field(description="the repositories added up (provider:owner/repo)")


StrategyName = Literal[HEAL_STRATEGY_NAMES]  # type: ignore[valid-type]
Channel = Literal[CHANNELS]  # type: ignore[valid-type]


class HealRequest(BaseModel):
    """What to do about a failed job."""

    # strict: JSON 0 is not false, "1" is not a list; a typo must be refused, not guessed
    model_config = ConfigDict(extra="forbid", strict=True)

    strategy: Annotated[StrategyName, BeforeValidator(normalize_heal_strategy)] = Field(
        "auto", description="a preset ('auto-detect', 'progressive', 'aggressive', 'conservative': the guard "
                            "decides again under the preset's settings), 'auto' (the guard's own recommendation) "
                            "or a row of the remediation table; 'flaky-test-retry', 'FLAKY_TEST_RETRY' and "
                            "'Auto_Detect' are accepted too")
    notify: bool | list[Channel] = Field(
        False, description="true (Slack), false, or channels among slack, jira, pagerduty")


class HealAccepted(BaseModel):
    """The command was queued for the executor (which acts once per command id)."""

    command_id: str = Field(description="deterministic: the same request gives the same id")
    action: str
    status: Literal["queued"]
    strategy: str = Field(description="the preset or strategy, normalized (the command's parameters.strategy)")
    job_key: str
    notify_command_id: str | None = Field(
        None, description="the notification about a rerun, when notify asked for one")
