"""The records on every topic of the guard (see DESIGN.md, "Data flow").

Times are Unix seconds (float). Every record that belongs to a job carries the job key fields
(``provider``, ``owner``, ``repo``, ``job_id``); the Kafka message key is :func:`job_key`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from ..topics import DEFAULT_TOPICS as _TOPICS
from .base import Record, SchemaError, field

PROVIDERS = ("github", "gitlab", "jenkins", "circleci")
Provider = Literal["github", "gitlab", "jenkins", "circleci"]
Status = Literal["queued", "in_progress", "completed"]
Conclusion = Literal["success", "failure", "cancelled", "skipped", "timed_out"]
TestOutcome = Literal["passed", "failed", "skipped", "error"]

CATEGORIES = (
    "test_failure",
    "test_timeout",
    "compilation_error",
    "lint_style",
    "build_config",
    "dependency_resolution",
    "dependency_missing",
    "network",
    "rate_limit",
    "docker_registry",
    "cache_corruption",
    "oom",
    "disk_full",
    "infra_runner_lost",
    "infra_timeout",
    "crash",
    "unknown",
)


def job_key(provider: str, owner: str, repo: str, job_id: str) -> str:
    """The Kafka key of everything about one job: ``provider/owner/repo/job_id``."""
    return f"{provider}/{owner}/{repo}/{job_id}"


def _check_ident(obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if not v:
            raise SchemaError("must not be empty", n)
        if "/" in v and n != "owner":
            raise SchemaError("must not contain '/'", n)


@dataclasses.dataclass
class JobRef(Record):
    provider: Provider = field("CI platform")
    owner: str = field("organisation, group or user; GitLab subgroups keep their '/'")
    repo: str = field("repository or project name")
    job_id: str = field("the platform's job id, kept as the platform writes it")

    @property
    def job_key(self) -> str:
        return job_key(self.provider, self.owner, self.repo, self.job_id)

    @property
    def repo_full(self) -> str:
        return f"{self.owner}/{self.repo}"

    def validate(self) -> None:
        _check_ident(self, "owner", "repo", "job_id")


@dataclasses.dataclass
class LogChunk(JobRef):
    """An ordered chunk of one job's log, as a forwarder ships it."""

    topic: ClassVar[str] = _TOPICS.logs
    description: ClassVar[str] = "Key: job key. Chunks of one job are numbered from seq 0 without gaps."
    max_bytes: ClassVar[int] = 4 << 20

    seq: int = field("0-based chunk number within the job attempt")
    lines: list[str] = field("log lines, without trailing newlines")
    attempt: int = field("run attempt, 1-based", default=1)
    first_line: int | None = field("1-based number of the chunk's first line in the whole log", default=None)
    ts: float | None = field("when the chunk was shipped", default=None)
    eof: bool = field("true on the last chunk of the log", default=False)

    def validate(self) -> None:
        super().validate()
        if self.seq < 0:
            raise SchemaError("must be >= 0", "seq")
        if self.attempt < 1:
            raise SchemaError("must be >= 1", "attempt")


@dataclasses.dataclass
class JobEvent(JobRef):
    """A job's lifecycle event (normalized from GitHub, GitLab, Jenkins or CircleCI)."""

    topic: ClassVar[str] = _TOPICS.jobs
    description: ClassVar[str] = "Key: job key."

    job_name: str = field("job name as shown by the platform")
    status: Status = field("queued, in_progress or completed")
    attempt: int = field("run attempt, 1-based", default=1)
    run_id: str | None = field("workflow run / pipeline / build id", default=None)
    workflow: str | None = field("workflow or pipeline name", default=None)
    conclusion: Conclusion | None = field("set when status is completed", default=None)
    exit_code: int | None = field("exit code of the failing step, when known", default=None)
    runner_labels: list[str] = field("runner labels / tags", default_factory=list)
    runner_size: str | None = field("runner size class, priced by the cost table", default=None)
    branch: str | None = field("branch or ref", default=None)
    head_sha: str | None = field("commit under test", default=None)
    queued_at: float | None = field("Unix seconds", default=None)
    started_at: float | None = field("Unix seconds", default=None)
    completed_at: float | None = field("Unix seconds", default=None)
    log_chunks: int | None = field(
        "how many ci.logs chunks the forwarder shipped for this attempt, when known", default=None
    )
    url: str | None = field("link to the job", default=None)
    healing_strategy: str | None = field(
        "what the pipeline lets the guard do: 'auto' (default), 'off', or healing-strategies.yml names, "
        "comma-separated (e.g. 'network_backoff,flaky_test_retry')", default=None)
    max_retries: int | None = field("the pipeline's own retry limit for this job (the lower limit wins)",
                                    default=None)

    def validate(self) -> None:
        super().validate()
        if self.attempt < 1:
            raise SchemaError("must be >= 1", "attempt")
        if self.status == "completed" and self.conclusion is None:
            raise SchemaError("required when status is completed", "conclusion")
        if self.status != "completed" and self.conclusion is not None:
            raise SchemaError("must be null until status is completed", "conclusion")

    @property
    def duration_minutes(self) -> float:
        if self.started_at is None or self.completed_at is None:
            return 0.0
        return max(0.0, (self.completed_at - self.started_at) / 60.0)


@dataclasses.dataclass
class TestResult(JobRef):
    """One test's result in one job attempt."""

    __test__ = False  # not a pytest class
    topic: ClassVar[str] = _TOPICS.tests
    description: ClassVar[str] = "Key: test_id."

    test_id: str = field("stable test identifier, e.g. 'tests/test_x.py::test_y' or 'com.acme.FooTest#bar'")
    outcome: TestOutcome = field("passed, failed, skipped or error")
    attempt: int = field("run attempt, 1-based", default=1)
    duration_s: float | None = field("test duration in seconds", default=None)
    ts: float | None = field("when the test finished", default=None)
    message: str | None = field("failure message (redacted before storage)", default=None)
    head_sha: str | None = field("commit under test: a pass after a failure is flaky evidence only on the same "
                                 "commit (on another commit it is a fix)", default=None)
    changed_files: list[str] = field("files changed by the commit under test (a failure right after a change "
                                     "that touches the test is more likely a regression)", default_factory=list)
    failed_in_run: int | None = field("how many tests failed in the same run (many: the environment, not "
                                      "this test)", default=None)

    def validate(self) -> None:
        super().validate()
        if not self.test_id:
            raise SchemaError("must not be empty", "test_id")


@dataclasses.dataclass
class Evidence(Record):
    """A log line that supports a diagnosis."""

    line: int = field("1-based line number in the job log")
    text: str = field("the line, tokenized and redacted")
    pattern: str = field("id of the pattern that matched")


@dataclasses.dataclass
class TestRisk(Record):
    """What the per-test model says about a test that failed in this job."""

    __test__ = False
    test_id: str = field("test id")
    p_fail: float = field("P(the next run of this test fails)")
    p_retry_pass: float = field("P(a retry passes, given it just failed)")
    runs: int = field("runs the model has learned from")
    recoveries: int | None = field("past failures that passed on the next run: the evidence that a retry "
                                   "can work (None: not known)", default=None)


@dataclasses.dataclass
class Finding(JobRef):
    """The guard's diagnosis of one failed job attempt."""

    topic: ClassVar[str] = _TOPICS.findings
    description: ClassVar[str] = "Key: job key."

    finding_id: str = field("deterministic: job key + attempt")
    attempt: int = field("run attempt")
    category: str = field("one taxonomy category", default="unknown")
    confidence: float = field("0..1", default=0.0)
    evidence: list[Evidence] = field("lines that decided the category", default_factory=list)
    exit_code: int | None = field("exit code, when known", default=None)
    failed_tests: list[TestRisk] = field("failed tests with their flakiness", default_factory=list)
    log_lines: int = field("lines seen in the log", default=0)
    log_complete: bool = field("false when chunks were missing at diagnosis time", default=True)
    ts: float = field("when diagnosed", default=0.0)
    signature: str | None = field("unknown failures: the templated line that stands for the failure, "
                                  "so recurring unknowns cluster", default=None)


@dataclasses.dataclass
class BudgetSnapshot(Record):
    """Spend against budgets at the moment a command was chosen."""

    day: str = field("UTC day, YYYY-MM-DD")
    spent_usd: float = field("spent today across all repositories")
    daily_budget_usd: float = field("daily budget")
    repo_spent_usd: float = field("spent today by this repository")
    repo_budget_usd: float = field("daily budget of this repository")
    job_retries: int = field("retries already commanded for this job")
    max_retries_per_job: int = field("retry limit per job")


@dataclasses.dataclass
class Command(JobRef):
    """A remediation command for the action executor. Idempotent by ``command_id``."""

    topic: ClassVar[str] = _TOPICS.actions
    description: ClassVar[str] = "Key: job key. The executor drops command ids it has already carried out."

    command_id: str = field("deterministic hash of job key + attempt + action")
    attempt: int = field("attempt the command reacts to")
    action: str = field("what to do; see healing_guard.remediate.strategies")
    reason: str = field("why this action, in words")
    category: str = field("diagnosed category")
    confidence: float = field("confidence of the diagnosis")
    parameters: dict[str, Any] = field("action parameters", default_factory=dict)
    evidence: list[Evidence] = field("top evidence lines", default_factory=list)
    budget: BudgetSnapshot | None = field("budget at decision time", default=None)
    estimated_cost_usd: float = field("what the action costs if carried out", default=0.0)
    run_id: str | None = field("run / pipeline / build id to act on", default=None)
    ts: float = field("when decided", default=0.0)


@dataclasses.dataclass
class Outcome(Record):
    """What the executor achieved with a command."""

    topic: ClassVar[str] = _TOPICS.outcomes
    description: ClassVar[str] = "Key: job key."

    command_id: str = field("the command this reports on")
    job_key: str = field("provider/owner/repo/job_id")
    action: str = field("the command's action")
    status: Literal["succeeded", "failed", "skipped", "dry_run", "unknown", "refused"] = field(
        "result of carrying it out; refused: the command failed one of the executor's checks (signature, "
        "repository allow-list, parameter schema; the detail names the field) and nothing was called; unknown: a call was sent and no answer came (a timeout, or the executor "
        "stopped mid-command), so it may have gone through and is not repeated")
    detail: str = field("what happened, in words", default="")
    http_status: int | None = field("HTTP status of the platform call", default=None)
    ts: float = field("when finished", default=0.0)
    category: str | None = field("the command's category (lets the planner learn how often each action "
                                 "fixes each cause); copy it from the command", default=None)


@dataclasses.dataclass
class DeadLetter(Record):
    """A message the guard could not use, with its original bytes (secrets redacted) and the reason."""

    topic: ClassVar[str] = _TOPICS.deadletter
    description: ClassVar[str] = "Key: the original key."
    max_bytes: ClassVar[int] = 16 << 20

    source_topic: str = field("topic the message came from")
    reason: str = field("why it was rejected")
    original_b64: str = field("the original value bytes, base64, with secrets replaced by [REDACTED]")
    original_size: int = field("size of the original value in bytes")
    field_name: str | None = field("field at fault, dotted path", default=None)
    partition: int | None = field("source partition", default=None)
    offset: int | None = field("source offset", default=None)
    key: str | None = field("original key (UTF-8, replacement chars where invalid)", default=None)
    ts: float = field("when rejected", default=0.0)
    redacted: bool = field("true when secrets (tokens, keys, passwords) in original_b64, key or reason were "
                           "replaced by [REDACTED]; every other byte is the original's, and original_size is "
                           "the size before redaction", default=False)
    original_truncated: bool = field("true when the original was too big to carry whole: original_b64 holds its "
                                     "first bytes, original_size and original_sha256 describe all of it",
                                     default=False)
    original_sha256: str | None = field("SHA-256 (hex) of the whole original value, before redaction",
                                        default=None)


#: default topic name (healing_guard.topics) -> the record on it, for the topics that carry a record
TOPIC_RECORDS: dict[str, type[Record]] = {
    r.topic: r for r in (LogChunk, JobEvent, TestResult, Finding, Command, Outcome, DeadLetter)
}
