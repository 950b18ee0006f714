"""The Python API: diagnose a failed CI job from its log and choose (or carry out) its remediation.

    from healing_guard import PipelineGuard, Strategy

    guard = PipelineGuard(ci_provider="github", repo="acme/web")
    failure = guard.analyze_failure(job_id="123", logs=log_text, exit_code=1)
    result = guard.heal(failure)

``PipelineGuard`` is the worker's engine without the streams: the same log reading and diagnosis
(``engine.Engine.read_log`` / ``diagnose``) and the same strategy policy over the cost-aware planner
(``remediate.policy.choose``), with the day's budget ledger, the per-test flakiness models and the retry
counts held in the instance.
Nothing is executed unless an ``executor`` is given: by default ``heal`` says what it would do.

Decision order in :meth:`PipelineGuard.heal` (see ``docs/python-api.md``):

1. custom strategies (``register_strategy``): the one whose ``detect`` scores highest, at or above its
   threshold, proposes the action;
2. otherwise the strategy policy (``remediate/policy.py``, the same the worker applies): the planner's
   choice for the category (strategy table + per-category gate + flaky-test rule), adjusted by the
   strategies' settings: a disabled strategy notifies instead, a strategy's ``confidence_threshold`` is
   the gate of its categories, RACE_CONDITION turns a flaky retry that looks like a race into a
   sequential rerun, DEPENDENCY_HELL (when enabled) reruns dependency failures with a clean dependency
   cache;
3. every automatic action then passes the same checks: the planner's per-job retry limit, the daily and
   per-repository budgets, the expected-value test (it must be worth its cost), and the strategy's own
   ``max_retries`` for the job.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, Literal

from . import monorepo
from .engine.core import plan_config
from .log_files import Analyzer, FileResult
from .classify import Diagnosis
from .flaky import TestModel
from .patterns.library import STEP_MARKERS, load_library
from .patterns.matcher import Matcher
from .patterns.tokenize import clean, redact, redact_job, redact_lines, strip_ansi
from .remediate import strategies as table
from .remediate.actions import EXECUTOR_ACTIONS, is_automatic
from .remediate.policy import Choice, Policy, StrategyState, choose, take_custom
from .remediate.outcomes import SuccessStats
from .remediate.planner import Ledger, PlanConfig, budget_alerts
from .schemas import PROVIDERS, Command, Evidence, JobEvent, SchemaError, TestRisk
from .settings import ConfigError, Settings, load_settings
from .strategies_config import (
    apply_to_settings,
    Strategy,
    StrategiesConfig,
    check_parameters,
    load_strategies,
    load_strategy_sources,
    parse_strategy_name,
    policy_of,
)

__all__ = [
    "CustomStrategy",
    "Failure",
    "HealResult",
    "PipelineGuard",
    "RemediationAction",
    "Strategy",
    "StrategyState",
]

Status = Literal["planned", "dry_run", "notified", "skipped", "succeeded", "failed"]
Logs = str | bytes | bytearray | memoryview | os.PathLike[str] | BinaryIO | io.TextIOBase | Iterable[str]

_MEMORY = 10_000  # job keys / command ids remembered for retry limits and idempotency
#: the log lines a Failure keeps for custom strategies (the last ones: a long log's failures are summed
#: up at its end); a longer line is cut, its start (where paths are) kept
LOG_LINES = 20_000
_LINE_MAX = 4096


# --- public records ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    """A diagnosed failed job: what ``analyze_failure`` returns and ``heal`` takes."""

    job: JobEvent
    category: str
    confidence: float
    evidence: tuple[Evidence, ...]  # the lines that decided the category, strongest first
    remediation: str  # what to do, in words (the matching pattern's advice, or the strategy's)
    diagnosis: Diagnosis
    failed_tests: tuple[str, ...] = ()
    signature: str | None = None  # templated line that stands for the failure (clusters unknowns)
    tail: tuple[str, ...] = ()  # the log's last lines, cleaned and redacted (for custom strategies)
    log_lines: int = 0
    #: the log's lines, cleaned and redacted (its last LOG_LINES), for custom strategies
    logs: tuple[str, ...] = field(default=(), repr=False)
    #: the change the job ran for, as ``git diff`` takes it (``analyze_failure(commit_range=...)``, else the
    #: CI environment's, else the last commit)
    commit_range: str = monorepo.DEFAULT_COMMIT_RANGE

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def job_key(self) -> str:
        return self.job.job_key

    @property
    def repo(self) -> str:
        return self.job.repo_full

    @property
    def provider(self) -> str:
        return self.job.provider

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def exit_code(self) -> int | None:
        return self.job.exit_code


@dataclass(frozen=True, init=False)
class RemediationAction:
    """What a custom strategy proposes. ``cost_usd=None``: a full rerun of the job at its runner's price.

    ``type`` and ``params`` are the product document's names of ``action`` and ``parameters``
    (``RemediationAction(type="selective-rebuild", params={...})``); give one name of each, not both.
    """

    action: str
    parameters: Mapping[str, Any]
    reason: str
    p_success: float
    cost_usd: float | None

    def __init__(self, action: str | None = None, parameters: Mapping[str, Any] | None = None, reason: str = "",
                 p_success: float = 0.5, cost_usd: float | None = None, *,
                 type: str | None = None, params: Mapping[str, Any] | None = None) -> None:  # noqa: A002
        for name, alias, a, b in (("action", "type", action, type), ("parameters", "params", parameters, params)):
            if a is not None and b is not None:
                raise TypeError(f"{alias}: {alias}= is another name of {name}=; give one of them, not both")
        object.__setattr__(self, "action", action if action is not None else type)
        object.__setattr__(self, "parameters", parameters if parameters is not None else params)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "p_success", p_success)
        object.__setattr__(self, "cost_usd", cost_usd)
        self._check()

    def _check(self) -> None:
        if self.action is None:
            raise TypeError("action: required, the action's name (or type=, e.g. type=\"selective-rebuild\")")
        if not isinstance(self.action, str) or not self.action.strip():
            raise ValueError(f"action: expected a non-empty action name, got {self.action!r}")
        try:
            params = check_parameters(self.parameters)
        except ValueError as exc:
            raise ValueError(f"parameters: {exc}") from None
        object.__setattr__(self, "parameters", MappingProxyType(params))
        if not isinstance(self.reason, str):
            raise TypeError(f"reason: expected a string, got {type(self.reason).__name__}")
        object.__setattr__(self, "p_success", _probability(self.p_success, "p_success"))
        if self.cost_usd is not None:
            c = _number(self.cost_usd, "cost_usd")
            if c < 0:
                raise ValueError(f"cost_usd: must be >= 0, got {self.cost_usd!r}")
            object.__setattr__(self, "cost_usd", c)

    @property
    def type(self) -> str:
        """``action`` under the product document's name."""
        return self.action

    @property
    def params(self) -> Mapping[str, Any]:
        """``parameters`` under the product document's name."""
        return self.parameters

    @property
    def automatic(self) -> bool:
        return is_automatic(self.action)


@dataclass(frozen=True)
class HealResult:
    """What ``heal`` decided (and, with an executor, achieved).

    ``status``: ``planned`` (an automatic action was chosen; nothing executes it here), ``dry_run`` (the
    same in dry-run mode), ``succeeded`` / ``failed`` (the executor carried it out), ``notified`` (the
    failure goes to a person: the author or on-call, ``command`` says which), ``skipped`` (an automatic
    action was wanted but a budget, a retry limit or its expected value refused it; a person is told).
    A custom strategy's own action (one the guard's executor does not know) with no ``executor`` on the
    guard stays ``planned`` / ``dry_run``, saves nothing (``time_saved_minutes`` 0) and its ``reason``
    says that only ``PipelineGuard(executor=...)`` carries it out.
    """

    status: Status
    action: str
    reason: str
    strategy: str  # the Strategy value, or a custom strategy's name
    time_saved_minutes: float
    cost_usd: float
    command: Command
    p_success: float = 0.0  # P(the action fixes the job) used for the decision (0 for notifications)
    alerts: tuple[Command, ...] = ()  # budget alerts (50/80/95 % spent) this action crossed

    @property
    def automatic(self) -> bool:
        return is_automatic(self.action)


class CustomStrategy:
    """Base class of user strategies, asked before the built-in table.

    Subclasses define ``detect(failure) -> bool | float`` (how sure it is that it applies, 0..1) and
    ``remediate(failure) -> RemediationAction``; optionally ``name`` (default: the class name),
    ``confidence_threshold`` (the score ``detect`` must reach, default 0.5) and ``max_retries`` (per job).

    Monorepo helpers (``healing_guard/monorepo.py``) read the git checkout at ``workdir`` (default: the
    current directory), where the job's paths mean something.
    """

    name: str = ""
    confidence_threshold: float = 0.5
    max_retries: int | None = None
    workdir: str | os.PathLike[str] | None = None

    def detect(self, failure: Failure) -> bool | float:
        raise NotImplementedError

    def remediate(self, failure: Failure) -> RemediationAction:
        raise NotImplementedError

    # --- monorepo helpers ----------------------------------------------------------------------------
    def get_changed_packages(self, commit_range: str) -> set[str]:
        """The packages ``git diff --name-only <commit_range>`` touches; an empty set (and a
        ``MonorepoWarning``) when git or the range is not available."""
        return monorepo.changed_packages(commit_range, self.workdir)

    def extract_failed_packages(self, logs: str | Iterable[str]) -> set[str]:
        """The packages the failing lines of a log name (``failure.logs``, or the log text)."""
        return monorepo.failed_packages(logs, self.workdir)

    def get_affected_packages(self, failure: Failure) -> list[str]:
        """The failed packages the change touched, else every failed package; sorted."""
        return monorepo.affected_packages(self.extract_failed_packages(failure.logs),
                                          self.get_changed_packages(failure.commit_range))


@dataclass(frozen=True)
class _Custom:
    strategy: Any
    name: str
    threshold: float
    max_retries: int | None


# --- argument checks -----------------------------------------------------------------------------

def _number(v: Any, arg: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{arg}: expected a number, got {type(v).__name__}")
    f = float(v)
    if math.isnan(f):
        raise ValueError(f"{arg}: must be a number, got nan")
    return f


def _probability(v: Any, arg: str) -> float:
    f = _number(v, arg)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"{arg}: must be between 0 and 1, got {v!r}")
    return f


def _retries(v: Any, arg: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{arg}: expected a whole number, got {type(v).__name__}")
    if v < 0:
        raise ValueError(f"{arg}: must be >= 0, got {v}")
    return v


def _log_source(logs: Any, read_bytes: int = 1 << 20) -> Iterable[bytes]:
    """The log as byte chunks, read lazily so a large file is never held whole in memory.

    The type is checked here, before anything is read, so a wrong argument fails at once.
    """
    if isinstance(logs, str):
        return (logs.encode("utf-8", "surrogateescape"),)
    if isinstance(logs, (bytes, bytearray, memoryview)):
        return (bytes(logs),)
    if isinstance(logs, os.PathLike):
        return _read_path(logs, read_bytes)
    if callable(getattr(logs, "read", None)):
        return _read_file(logs, read_bytes)
    if isinstance(logs, (list, tuple)) and all(isinstance(x, (str, bytes)) for x in logs):
        return ((x.encode("utf-8", "surrogateescape") if isinstance(x, str) else bytes(x)) + b"\n" for x in logs)
    raise TypeError(
        "logs: expected the log text (str), bytes, a pathlib.Path to a log file, an open file, or a "
        f"list of lines; got {type(logs).__name__}")


def _read_path(path: os.PathLike[str], read_bytes: int) -> Iterator[bytes]:
    with open(path, "rb") as fp:
        while block := fp.read(read_bytes):
            yield block


def _read_file(fp: Any, read_bytes: int) -> Iterator[bytes]:
    while block := fp.read(read_bytes):
        if isinstance(block, str):
            yield block.encode("utf-8", "surrogateescape")
        elif isinstance(block, (bytes, bytearray, memoryview)):
            yield bytes(block)
        else:
            raise TypeError(f"logs: the file's read() returned {type(block).__name__}, not bytes or str")


# --- the guard -----------------------------------------------------------------------------------

class PipelineGuard:
    """Diagnoses failed CI jobs and chooses their remediation within budgets. Thread-safe.

    ``ci_provider`` (github, gitlab, jenkins, circleci; default github) and ``repo`` (``owner/name``; GitLab
    groups and Jenkins folders may nest: ``group/sub/name``) are what ``analyze_failure`` assumes when it
    is not told;
    ``config``: a ``healing-config.yml`` (budgets, prices, thresholds; default: ``GUARD_CONFIG`` or none);
    ``strategies``: a ``healing-strategies.yml``; ``executor(command) -> bool`` carries out automatic
    actions (when given, ``dry_run`` defaults to False); ``settings``: a ready ``Settings`` instead of
    ``config``/``env``; ``matcher``: another guard's compiled pattern matcher, to skip compiling the
    library again (it must come from the same pattern files); ``**overrides``: any ``Settings`` field,
    e.g. ``daily_budget_usd=20, dry_run=False``. ``env`` (default: the process environment) also gives
    the CI job's commit range (see ``analyze_failure``).
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | None = None,
        strategies: str | os.PathLike[str] | StrategiesConfig | None = None,
        *,
        ci_provider: str = "github",
        repo: str | None = None,
        executor: Callable[[Command], bool] | None = None,
        settings: Settings | None = None,
        env: Mapping[str, str] | None = None,
        matcher: Matcher | None = None,
        **overrides: Any,
    ) -> None:
        if ci_provider not in PROVIDERS:
            raise ValueError(f"ci_provider: unknown CI provider {ci_provider!r}; one of: {', '.join(PROVIDERS)}")
        if repo is not None:
            _split_repo(repo, ci_provider, "repo")
        if executor is not None and not callable(executor):
            raise TypeError(f"executor: expected a callable(command) -> bool, got {type(executor).__name__}")
        if settings is not None and (config is not None or overrides):
            raise TypeError("settings: pass either settings=Settings(...) or config=/keyword settings, not both")
        if executor is not None:
            overrides.setdefault("dry_run", False)
        if settings is None:
            settings = _load_settings(config, env, overrides)
        elif not isinstance(settings, Settings):
            raise TypeError(f"settings: expected a healing_guard.settings.Settings, got {type(settings).__name__}")
        if isinstance(strategies, StrategiesConfig):
            scfg = strategies
        elif strategies is not None:
            if not isinstance(strategies, (str, os.PathLike)):
                raise TypeError("strategies: expected a path to healing-strategies.yml, "
                                f"got {type(strategies).__name__}")
            scfg = load_strategies(Path(strategies))
        else:
            # what the settings name, as the worker reads them: healing.strategies of the healing-config.yml
            # and the strategies file (pipeline.strategies_file, GUARD_STRATEGIES, .github/healing-strategies.yml)
            scfg = load_strategy_sources(settings)
        settings = apply_to_settings(settings, scfg, gates=False)
        if matcher is not None:
            if not isinstance(matcher, Matcher):
                raise TypeError("matcher: expected a healing_guard.patterns.matcher.Matcher, "
                                f"got {type(matcher).__name__}")
            if tuple(matcher.patterns) != (*load_library(settings.pattern_files), *STEP_MARKERS):
                raise ValueError("matcher: it was compiled from other pattern files than this guard's "
                                 "(pipeline.pattern_files + the strategies file's patterns), or without "
                                 "step markers; pass another guard's .matcher")
        self.settings: Settings = settings
        self.strategies_config: StrategiesConfig = scfg
        #: what analyze_failure assumes when it is not told
        self.ci_provider: str = ci_provider
        self.repo: str = repo.strip().strip("/") if repo is not None else "local/local"
        self.commit_range: str = (monorepo.ci_commit_range(os.environ if env is None else env)
                                  or monorepo.DEFAULT_COMMIT_RANGE)
        self._analyzer = Analyzer(settings, matcher=matcher)
        self._executor = executor
        # the strategies file's policy, which add_strategy() changes from here on (the engine reads the same)
        self._states: dict[Strategy, StrategyState] = dict(policy_of(scfg).states)
        self._custom: list[_Custom] = []
        self._tests: dict[str, TestModel] = {}
        self._ledger = Ledger()
        self._success = SuccessStats()  # P(success) per cause and action, learned from the executor's results
        self._retries: OrderedDict[tuple[str, str], set[str]] = OrderedDict()
        self._done: OrderedDict[str, HealResult] = OrderedDict()
        self._lock = threading.RLock()
        self._analyze_lock = threading.Lock()  # the matcher's scratch space is not thread-safe

    # --- read-only views -----------------------------------------------------------------------
    @property
    def matcher(self) -> Matcher:
        """The compiled pattern matcher, to share with another guard (``PipelineGuard(matcher=...)``)."""
        return self._analyzer.matcher

    @property
    def dry_run(self) -> bool:
        return self.settings.dry_run

    @property
    def ledger(self) -> Ledger:
        """Today's spend on automatic actions (the day's budgets are checked against it)."""
        return self._ledger

    @property
    def strategies(self) -> Mapping[Strategy, StrategyState]:
        return MappingProxyType(dict(self._states))

    @property
    def custom_strategies(self) -> tuple[str, ...]:
        return tuple(c.name for c in self._custom)

    # --- configuration ---------------------------------------------------------------------------
    def add_strategy(
        self,
        strategy: Strategy | str,
        *,
        confidence_threshold: float | None = None,
        max_retries: int | None = None,
        enabled: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> StrategyState:
        """Enable (or, with ``enabled=False``, disable) a built-in strategy and tune it.

        ``confidence_threshold`` becomes the confidence a diagnosis of its categories needs before the
        action runs by itself (below it, a person is told); ``max_retries`` limits how often this strategy
        acts on one job, on top of the per-job retry limit; ``parameters`` are merged into its commands.
        Arguments left out keep their current value.
        """
        if isinstance(strategy, CustomStrategy) or (
                isinstance(strategy, type) and issubclass(strategy, CustomStrategy)):
            raise TypeError("strategy: custom strategies are added with register_strategy(MyStrategy())")
        s = parse_strategy_name(strategy)
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled: expected True or False, got {type(enabled).__name__}")
        if s is Strategy.SKIP_AND_NOTIFY:
            if not enabled:
                raise ValueError("enabled: SKIP_AND_NOTIFY is the fallback and cannot be disabled")
            for arg, v in (("confidence_threshold", confidence_threshold), ("max_retries", max_retries)):
                if v is not None:
                    raise ValueError(f"{arg}: SKIP_AND_NOTIFY takes no automatic action; only parameters apply")
        thr = None if confidence_threshold is None else _probability(confidence_threshold, "confidence_threshold")
        mr = None if max_retries is None else _retries(max_retries, "max_retries")
        params = None
        if parameters is not None:
            try:
                params = check_parameters(parameters)
            except ValueError as exc:
                raise ValueError(f"parameters: {exc}") from None
        with self._lock:
            return self._update(s, enabled, thr, mr, params)

    def _update(self, s: Strategy, enabled: bool | None, threshold: float | None, max_retries: int | None,
                parameters: Mapping[str, Any] | None) -> StrategyState:
        old = self._states[s]
        new = StrategyState(
            enabled=old.enabled if enabled is None else enabled,
            confidence_threshold=old.confidence_threshold if threshold is None else threshold,
            max_retries=old.max_retries if max_retries is None else max_retries,
            parameters=old.parameters if parameters is None else MappingProxyType({**old.parameters, **parameters}),
        )
        self._states[s] = new
        return new

    def register_strategy(self, strategy: CustomStrategy) -> None:
        """Add a custom strategy. Custom strategies are asked before the built-in table: the highest
        ``detect`` score at or above its strategy's threshold wins (the first registered on a tie)."""
        if isinstance(strategy, type):
            raise TypeError(f"strategy: pass an instance, e.g. register_strategy({strategy.__name__}()), not the class")
        if isinstance(strategy, (Strategy, str)):
            raise TypeError("strategy: built-in strategies are enabled with add_strategy(Strategy.X, ...)")
        cls = type(strategy).__name__
        for meth, sig in (("detect", "detect(failure) -> bool | float"),
                          ("remediate", "remediate(failure) -> RemediationAction")):
            fn = getattr(strategy, meth, None)
            inherited = (isinstance(strategy, CustomStrategy)
                         and getattr(type(strategy), meth) is getattr(CustomStrategy, meth))
            if not callable(fn) or inherited:
                raise TypeError(f"strategy: {cls} must define {sig}")
        name = getattr(strategy, "name", "") or cls
        if not isinstance(name, str):
            raise TypeError(f"strategy.name: expected a string, got {type(name).__name__}")
        if name in {s.value for s in Strategy}:
            raise ValueError(f"strategy.name: {name!r} is a built-in strategy's name; choose another")
        threshold = _probability(getattr(strategy, "confidence_threshold", 0.5), "strategy.confidence_threshold")
        mr = getattr(strategy, "max_retries", None)
        mr = None if mr is None else _retries(mr, "strategy.max_retries")
        with self._lock:
            if any(c.name == name for c in self._custom):
                raise ValueError(f"strategy.name: a custom strategy named {name!r} is already registered")
            self._custom.append(_Custom(strategy, name, threshold, mr))

    # --- per-test history ------------------------------------------------------------------------
    def record_test(self, test_id: str, passed: bool) -> TestRisk:
        """Learn one result of a test; returns what its model now says (see ``test_risk``)."""
        if not isinstance(test_id, str) or not test_id:
            raise ValueError(f"test_id: expected a non-empty test id, got {test_id!r}")
        if not isinstance(passed, bool):
            raise TypeError(f"passed: expected True or False, got {type(passed).__name__}")
        with self._lock:
            m = self._tests.get(test_id)
            if m is None:
                m = self._tests[test_id] = TestModel()
            m.learn(not passed)
            return self._risk(test_id)

    def test_risk(self, test_id: str) -> TestRisk:
        """P(the next run fails), P(a retry passes after a failure), the runs seen and the recoveries
        (failures followed by a pass: the evidence that a retry can work) of one test."""
        with self._lock:
            return self._risk(test_id)

    def _risk(self, test_id: str) -> TestRisk:
        m = self._tests.get(test_id)
        if m is None:
            return TestRisk(test_id=test_id, p_fail=0.5, p_retry_pass=0.0, runs=0, recoveries=0)
        return TestRisk(test_id=test_id, p_fail=round(m.p_fail(), 4), p_retry_pass=round(m.p_retry_pass(), 4),
                        runs=m.runs, recoveries=m.recoveries)

    # --- analysis --------------------------------------------------------------------------------
    def analyze_failure(
        self,
        job_id: str | int,
        logs: Logs,
        *,
        provider: str | None = None,
        repo: str | None = None,
        commit_range: str | None = None,
        exit_code: int | None = None,
        attempt: int = 1,
        duration_minutes: float | None = None,
        runner_size: str | None = None,
        failed_tests: Sequence[str] | None = None,
        job_name: str = "",
        run_id: str | None = None,
        conclusion: str = "failure",
    ) -> Failure:
        """Diagnose one failed job from its log.

        ``logs``: the log text (``str``), ``bytes``, a ``pathlib.Path`` (a plain ``str`` is always log
        text, never a path), an open file (binary or text) or a list of lines. The log is read in blocks,
        so its size does not matter. ``duration_minutes`` (how long the job ran) prices retries and the
        time a fix saves; ``failed_tests`` are the ids of the tests that failed (for the flaky-test rule).
        ``provider`` and ``repo`` default to the guard's ``ci_provider`` and ``repo``. ``commit_range``
        (what ``git diff`` takes, e.g. ``"abc123..def456"``) is the change the job ran for, handed to
        custom strategies as ``failure.commit_range``; default: the CI job's own (GitHub's push or pull
        request event, GitLab's ``CI_COMMIT_BEFORE_SHA..CI_COMMIT_SHA``), else ``HEAD~1..HEAD``.
        """
        if commit_range is None:
            commit_range = self.commit_range
        elif not monorepo.is_commit_range(commit_range):
            raise ValueError("commit_range: expected a git revision range such as 'HEAD~1..HEAD' or "
                             f"'abc123...def456', got {commit_range!r}")
        # the failure is handed to custom strategies, notifiers and logs: no secrets in it (the log's
        # evidence and tail are redacted by the analyzer, the job's free text and test ids here)
        job = redact_job(self._job(job_id, self.ci_provider if provider is None else provider,
                                   self.repo if repo is None else repo, exit_code, attempt, duration_minutes,
                                   runner_size, job_name, run_id, conclusion))
        tests = tuple(redact(t) for t in _test_ids(failed_tests))
        kept = _KeptLines(_log_source(logs), LOG_LINES)
        with self._analyze_lock:  # the engine reads the log as the worker's window holds it
            ready, a = self._analyzer.read(_Reader(kept), job)  # type: ignore[arg-type]  # reads blocks
        d = a.diagnosis
        report = self._analyzer.report(FileResult(job.job_key, a, ready=ready))
        return Failure(
            job=job, category=d.category, confidence=round(d.confidence, 4),
            evidence=tuple(Evidence(line=e.line, text=e.text, pattern=e.pattern) for e in d.evidence),
            remediation=str(report["remediation"]), diagnosis=d, failed_tests=tests, signature=a.signature,
            tail=a.tail, log_lines=a.total_lines, logs=kept.lines(), commit_range=commit_range,
        )

    def _job(self, job_id: Any, provider: str, repo: str, exit_code: Any, attempt: Any, duration: Any,
             runner_size: Any, job_name: str, run_id: Any, conclusion: str) -> JobEvent:
        if isinstance(job_id, bool) or not isinstance(job_id, (str, int)) or str(job_id) == "":
            raise ValueError(f"job_id: expected the platform's job id (a non-empty string), got {job_id!r}")
        if provider not in PROVIDERS:
            raise ValueError(f"provider: unknown provider {provider!r}; one of: {', '.join(PROVIDERS)}")
        owner, name = _split_repo(repo, provider, "repo")
        if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)):
            raise TypeError(f"exit_code: expected an int or None, got {type(exit_code).__name__}")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"attempt: expected a whole number >= 1, got {attempt!r}")
        if runner_size is not None and runner_size not in self.settings.price_per_minute_usd:
            raise ValueError(f"runner_size: no price for {runner_size!r}; priced sizes: "
                             f"{', '.join(self.settings.price_per_minute_usd)}")
        now = time.time()
        started = completed = None
        if duration is not None:
            minutes = _number(duration, "duration_minutes")
            if minutes < 0 or math.isinf(minutes):
                raise ValueError(f"duration_minutes: must be a number >= 0, got {duration!r}")
            started, completed = now - minutes * 60.0, now
        try:
            return JobEvent.from_dict({
                "provider": provider, "owner": owner, "repo": name, "job_id": str(job_id),
                "job_name": job_name or str(job_id), "status": "completed", "attempt": attempt, "run_id": run_id,
                "conclusion": conclusion, "exit_code": exit_code, "runner_size": runner_size,
                "started_at": started, "completed_at": completed})
        except SchemaError as exc:
            raise ValueError(f"{exc.field or 'job'}: {exc.reason}") from None

    # --- remediation -----------------------------------------------------------------------------
    def heal(self, failure: Failure, *, failed_tests: Sequence[str] | None = None) -> HealResult:
        """Choose the remediation for a diagnosed failure (and carry it out when an executor is set).

        Calling it again for the same job attempt returns the earlier result of an automatic action
        without charging the budget again (command ids are deterministic). ``failed_tests`` replaces
        the failure's own list. Calls are serialised (the budget ledger is shared).
        """
        if not isinstance(failure, Failure):
            raise TypeError("failure: expected the Failure returned by analyze_failure(), "
                            f"got {type(failure).__name__}")
        if failed_tests is not None:
            failure = dataclasses.replace(failure, failed_tests=_test_ids(failed_tests))
        with self._lock:
            decision = self._decide(failure)
            if isinstance(decision, HealResult):  # an earlier result for the same command
                return decision
            result = self._commit(failure, decision)
            if result.automatic and result.status != "skipped":
                result = self._execute(failure, result)
                self._remember(failure, result)
            return result

    def _decide(self, f: Failure) -> Choice | HealResult:
        """The engine's strategy policy (``remediate/policy.py``) with this guard's strategies, budget
        ledger and retry counts; a registered custom strategy is asked first."""
        job, d, now = f.job, f.diagnosis, time.time()
        cfg = self._base_plan_config()
        price = self.settings.price(job.runner_size)
        risks = tuple(self._risk(t) for t in f.failed_tests)
        common: dict[str, Any] = dict(policy=self._policy(), success=self._success,
                                      retries=lambda owner: len(self._retries.get((f.job_key, owner), ())),
                                      done=self._done.__contains__)
        custom = self._custom_choice(f)
        if custom is not None:
            c, act = custom
            st = table.Remedy(act.action, act.p_success, parameters=dict(act.parameters),
                              why=act.reason or f"custom strategy {c.name}")
            choice = take_custom(job, d, risks, self._ledger, cfg, price, now, owner=c.name,
                                 max_retries=c.max_retries, remedy=st, reason=st.why, cost=act.cost_usd, **common)
        else:
            choice = choose(job, d, risks, self._ledger, cfg, price, now, tail=f.tail, **common)
        if choice.repeat:  # an earlier result for the same command
            return self._done[choice.command.command_id]
        return choice

    def _commit(self, f: Failure, dec: Choice) -> HealResult:
        """Turn a decision into the result: take its ledger, merge the strategy's parameters, alerts."""
        cmd = dec.command
        automatic = is_automatic(cmd.action)
        params = self._policy().parameters(dec.owner if automatic else Strategy.SKIP_AND_NOTIFY.value)
        if params:
            cmd = dataclasses.replace(cmd, parameters={**cmd.parameters, **params})
        alerts: list[Command] = []
        if automatic:
            self._ledger, alerts = budget_alerts(dec.ledger, f.job, self._plan_config(), slice_id="api",
                                                 now=cmd.ts)
            status: Status = "dry_run" if self.settings.dry_run else "planned"
        else:
            status = "skipped" if dec.refused else "notified"
        minutes = max(f.job.duration_minutes, 1.0)
        saved = round(dec.p_success * (self.settings.human_response_minutes + minutes), 2) if automatic else 0.0
        reason = cmd.reason
        if automatic and cmd.action not in EXECUTOR_ACTIONS and self._executor is None:
            # a custom strategy's own action: `guard executor` refuses what it does not know, so without an
            # executor here nothing will carry it out, and nothing is saved
            saved = 0.0
            reason = (f"{reason}; not carried out: the guard's executor does not carry out the custom action "
                      f"{cmd.action!r} - pass PipelineGuard(executor=...) a function that does, or run "
                      "result.command yourself")
        return HealResult(status=status, action=cmd.action, reason=reason, strategy=dec.owner,
                          time_saved_minutes=saved, cost_usd=cmd.estimated_cost_usd, command=cmd,
                          p_success=round(dec.p_success, 4) if automatic else 0.0, alerts=tuple(alerts))

    def _execute(self, f: Failure, r: HealResult) -> HealResult:
        if self._executor is None or self.settings.dry_run:
            return r
        try:
            ok = bool(self._executor(r.command))
            reason = r.reason
        except Exception as exc:  # a failing executor must not take the guard down; the result says why
            ok, reason = False, f"{r.reason}; the executor raised {type(exc).__name__}: {exc}"
        # what the action achieved teaches the planner's P(success) for this cause, repository and action
        self._success.learn(f.category, f.repo, r.action, ok)
        minutes = max(f.job.duration_minutes, 1.0)
        saved = round(self.settings.human_response_minutes + minutes, 2) if ok else 0.0
        return dataclasses.replace(r, status="succeeded" if ok else "failed", reason=reason,
                                   time_saved_minutes=saved)

    def _remember(self, f: Failure, r: HealResult) -> None:
        cid = r.command.command_id
        self._done[cid] = r
        key = (f.job_key, r.strategy)
        self._retries.setdefault(key, set()).add(cid)
        self._retries.move_to_end(key)
        while len(self._done) > _MEMORY:
            self._done.popitem(last=False)
        while len(self._retries) > _MEMORY:
            self._retries.popitem(last=False)

    def _custom_choice(self, f: Failure) -> tuple[_Custom, RemediationAction] | None:
        best: tuple[float, _Custom] | None = None
        for c in self._custom:
            raw = c.strategy.detect(f)
            if isinstance(raw, bool):
                score = 1.0 if raw else 0.0
            elif isinstance(raw, (int, float)) and 0.0 <= float(raw) <= 1.0:
                score = float(raw)
            else:
                raise TypeError(f"{c.name}.detect() must return a bool or a number between 0 and 1, got {raw!r}")
            if score > 0 and score >= c.threshold and (best is None or score > best[0]):
                best = (score, c)
        if best is None:
            return None
        c = best[1]
        act = c.strategy.remediate(f)
        if not isinstance(act, RemediationAction):
            raise TypeError(f"{c.name}.remediate() must return a RemediationAction, got {type(act).__name__}")
        return c, act

    def _policy(self) -> Policy:
        return Policy(MappingProxyType(dict(self._states)))

    def _base_plan_config(self) -> PlanConfig:
        """The planner's config from the settings, before the strategies' gates (the policy adds them)."""
        return plan_config(self.settings, partitions=1)

    def _plan_config(self) -> PlanConfig:
        return self._policy().plan_config(self._base_plan_config())


# --- helpers -------------------------------------------------------------------------------------

class _Reader:
    """A file-like view of byte chunks (the analyzer reads blocks with ``read``)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)

    def read(self, _n: int = -1) -> bytes:
        for block in self._it:
            if block:
                return block
        return b""


class _KeptLines:
    """The log's blocks passed through unchanged, keeping its last lines for ``Failure.logs``."""

    def __init__(self, chunks: Iterable[bytes], limit: int) -> None:
        self._chunks = chunks
        self._lines: deque[bytes] = deque(maxlen=limit)
        self._rest = b""  # the unfinished last line of the blocks so far (its start, at most _LINE_MAX)

    def __iter__(self) -> Iterator[bytes]:
        for block in self._chunks:
            if block:
                parts = block.split(b"\n")
                if len(parts) == 1:
                    if len(self._rest) < _LINE_MAX:
                        self._rest = (self._rest + block[:_LINE_MAX])[:_LINE_MAX]
                else:
                    self._lines.append((self._rest + parts[0][:_LINE_MAX])[:_LINE_MAX])
                    self._lines.extend(parts[1:-1])
                    self._rest = parts[-1][:_LINE_MAX]
            yield block

    def lines(self) -> tuple[str, ...]:
        """The kept lines as the tail is shown: decorations cleaned off, secrets redacted."""
        if self._rest:
            self._lines.append(self._rest)
            self._rest = b""
        text = (clean(strip_ansi(raw[:_LINE_MAX]).decode("utf-8", "replace")) for raw in self._lines)
        return tuple(redact_lines(text))


def _split_repo(repo: Any, provider: str, arg: str) -> tuple[str, str]:
    """``owner/name`` -> (owner, name). Only GitLab (subgroups) and Jenkins (folders) nest owners."""
    nests = provider in ("gitlab", "jenkins")
    example = "'acme/web'" + (" or 'group/sub/web'" if nests else "")
    parts = repo.strip().strip("/").split("/") if isinstance(repo, str) else []
    if (len(parts) < 2 or (len(parts) > 2 and not nests)
            or any(not p or any(c.isspace() for c in p) for p in parts)):
        raise ValueError(f"{arg}: expected 'owner/name' (e.g. {example}) on {provider}, got {repo!r}")
    return "/".join(parts[:-1]), parts[-1]


def _test_ids(tests: Any) -> tuple[str, ...]:
    if tests is None:
        return ()
    if isinstance(tests, str) or not isinstance(tests, Iterable):
        raise TypeError(f"failed_tests: expected a list of test ids, got {type(tests).__name__}")
    out = tuple(tests)
    for t in out:
        if not isinstance(t, str) or not t:
            raise ValueError(f"failed_tests: every test id must be a non-empty string, got {t!r}")
    return tuple(dict.fromkeys(out))


def _load_settings(config: Any, env: Mapping[str, str] | None, overrides: dict[str, Any]) -> Settings:
    if config is not None and not isinstance(config, (str, os.PathLike)):
        raise TypeError(f"config: expected a path to healing-config.yml, got {type(config).__name__}")
    fields = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"PipelineGuard(): unknown argument(s) {', '.join(unknown)}; settings fields: "
                        f"{', '.join(sorted(fields))}")
    try:
        return load_settings(Path(config) if config is not None else None, env=env, **overrides)
    except ConfigError as exc:
        if exc.source == "command line":  # a keyword argument here, not a CLI flag
            raise ConfigError("PipelineGuard()", exc.key.lstrip("-").replace("-", "_"), exc.reason) from None
        raise
