"""Pure composition of the guard's steps, shared by the Faust agents, the CLI and the tests.

``Engine`` holds the compiled pattern matcher and the settings-derived limits; its methods are the
``step(state, event) -> (state, outputs)`` functions the agents call. Nothing here touches Kafka.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ..classify import Diagnosis, EvidenceLine, classify
from ..classify.locate import LOCATED_CONTEXT, LOCATED_DETAIL
from ..classify.log_stream import BLOCK_BYTES, Analysis, LogAnalyzer
from ..classify.text_model import RULE_TRUST, TextModel, chunk_text, combine, features, packaged_model
from ..classify.unknowns import signature_line
from ..flaky import TestModel
from ..flaky.context import RetryContext, context_features, message_hash
from ..flaky.model import _LOGZ_START, _U_START, FlakePrior, count_passes
from ..flaky.quarantine import QuarantinePolicy, QuarantineState
from ..flaky.quarantine import step as quarantine_step
from ..ids import stable_id
from ..patterns.library import load_library
from ..patterns.named import pattern_remedies
from ..patterns.matcher import Matcher
from ..remediate.gate import packaged_thresholds
from ..remediate import Ledger, PlanConfig
from ..remediate.policy import Policy, choose
from ..remediate.incidents import IncidentPolicy, IncidentState
from ..remediate.incidents import observe as observe_incident
from ..remediate.outcomes import SuccessStats
from ..presets import is_preset, normalize_preset, preset_settings
from ..remediate.planner import budget_alerts, command_id
from ..remediate.actions import NOTIFY_ACTIONS, is_automatic
from ..schemas import Command, DeadLetter, Evidence, Finding, JobEvent, Outcome, SchemaError, TestResult, TestRisk, job_key
from ..settings import ConfigError, Settings
from ..patterns.tokenize import redact, redact_bytes
from ..patterns.tokenize import template as fact_template
from ..warehouse.facts import Fact, command_fact, diagnosis_fact, job_run_fact, test_result_fact
from .test_columns import Passes
from .window import Closed, JobWindow, Limits, Output, Ready, on_chunk, on_job_event, on_risk, on_tick

if TYPE_CHECKING:
    from ..classify.learner import LabelLearner


@dataclass
class Decision:
    """Everything a diagnosed job produces."""

    finding: Finding
    command: Command
    facts: list[Fact] = field(default_factory=list)
    alerts: list[Command] = field(default_factory=list)  # budget alerts this decision crossed


#: the most original bytes a dead letter carries: base64 of it plus the record stays under the 16 MiB
#: that guard.deadletter and the guard's producers accept (DeadLetter.max_bytes)
DEAD_LETTER_ORIGINAL_MAX = 8 << 20


def dead_letter(source_topic: str, raw: bytes | None, reason: str, *, field_name: str | None = None,
                key: bytes | None = None, partition: int | None = None, offset: int | None = None,
                max_original: int = DEAD_LETTER_ORIGINAL_MAX) -> DeadLetter:
    """The dead letter of a message the guard cannot use. Secrets in its bytes, key and reason are
    redacted (the rest of the bytes is kept exactly): guard.deadletter is read more widely than ci.logs.
    An original over ``max_original`` bytes keeps its first ``max_original`` (``original_truncated``), its
    size and its SHA-256, so a dead letter always fits on its topic: nothing is dropped without a trace."""
    raw = raw or b""
    digest = hashlib.sha256(raw).hexdigest()
    truncated = len(raw) > max_original
    if truncated:
        reason = f"{reason} (the original is {len(raw)} bytes: its first {max_original} are kept)"
    kept, redacted = redact_bytes(raw[:max_original] if truncated else raw)
    reason = reason[:2000]
    skey = key.decode("utf-8", "replace")[:1000] if key is not None else None
    clean_reason, clean_key = redact(reason), None if skey is None else redact(skey)
    redacted = redacted or clean_reason != reason or clean_key != skey
    reason, skey = clean_reason, clean_key
    return DeadLetter(
        source_topic=source_topic, reason=reason, original_b64=base64.b64encode(kept).decode("ascii"),
        original_size=len(raw), field_name=field_name, partition=partition, offset=offset,
        key=skey, ts=time.time(), redacted=redacted, original_truncated=truncated, original_sha256=digest,
    )


def schema_dead_letter(source_topic: str, raw: bytes | None, exc: SchemaError, **kw: Any) -> DeadLetter:
    return dead_letter(source_topic, raw, exc.reason, field_name=exc.field, **kw)


class Engine:
    """The guard's pure logic with its compiled pattern database."""

    def __init__(self, settings: Settings, matcher: Matcher | None = None, *, event_time: bool = False,
                 policy: Policy | None = None) -> None:
        self.settings = settings
        #: what each remediation strategy may do (healing-strategies.yml): the Python API applies the same
        self.policy = policy if policy is not None else policy_of_settings(settings)
        #: decide at the job's completion time instead of the wall clock: a replay of history (the demo, a
        #: backtest) then dates its findings and commands, and charges its budget days, as if it were live
        self.event_time = event_time
        self.matcher = matcher or Matcher(load_library(settings.pattern_files), markers=True)
        self.limits = Limits(
            max_pending_chunks=settings.max_pending_chunks, tail_lines=settings.tail_lines,
            max_evidence=settings.max_evidence, chunk_grace_seconds=settings.chunk_grace_seconds,
            test_grace_seconds=settings.test_grace_seconds, window_ttl_seconds=settings.window_ttl_seconds,
        )
        self.plan_config = plan_config(settings, partitions=settings.partitions)
        self._preset_configs: dict[tuple[str, int | None], PlanConfig] = {}
        self.text_model = _text_model(settings)
        self.learner: LabelLearner | None = None
        if settings.label_model:  # River (and SciPy) are imported only when a label model is used
            from ..classify.learner import LabelLearner as _Learner

            self.learner = _Learner.load(settings.label_model)
        #: flakiness prior learned across the tests this worker sees (in memory: after a restart it is
        #: relearned while the per-test models come back from their changelog)
        self.flake_prior = FlakePrior()
        #: P(retry passes | failure context), learned from what each failed test did next (in memory too)
        self._retry_context: RetryContext | None = None  # built on first use: see retry_context
        self.incident_policy = IncidentPolicy(
            window_seconds=settings.incident_window_seconds, min_jobs=settings.incident_min_jobs,
            min_repos=settings.incident_min_repos, enabled=settings.incidents_enabled)
        self.quarantine_policy = QuarantinePolicy(
            threshold=settings.quarantine_threshold, release_runs=settings.quarantine_release_runs,
            enabled=settings.quarantine_enabled)

    @property
    def retry_context(self) -> RetryContext:
        """P(retry passes | failure context), built when the first test result arrives: its River model
        imports SciPy (most of a second), which a process that never learns a test should not pay for."""
        if self._retry_context is None:
            self._retry_context = RetryContext(kind=self.settings.context_model,
                                               features=self.settings.context_features)
        return self._retry_context

    # --- per-job window steps ------------------------------------------------------------------
    def chunk(self, w: JobWindow, chunk: Any, now: float | None = None) -> tuple[JobWindow, list[Output]]:
        return on_chunk(w, chunk, self.matcher, self.limits, time.time() if now is None else now)

    def job_event(self, w: JobWindow, ev: JobEvent, now: float | None = None) -> tuple[JobWindow, list[Output]]:
        return on_job_event(w, ev, self.limits, time.time() if now is None else now)

    def risk(self, w: JobWindow, risk: TestRisk, attempt: int, now: float | None = None) -> tuple[JobWindow, list[Output]]:
        return on_risk(w, risk, attempt, self.limits, time.time() if now is None else now)

    def tick(self, w: JobWindow, now: float | None = None) -> tuple[JobWindow, list[Output]]:
        return on_tick(w, self.limits, time.time() if now is None else now)

    # --- a whole log at once (guard analyze, PipelineGuard, the accuracy benchmark) -------------
    def read_log(self, source: BinaryIO | Iterable[bytes], job: JobEvent, *,
                 risks: tuple[TestRisk, ...] = ()) -> tuple[Ready, Analysis]:
        """A whole log, streamed in blocks in bounded memory, as the worker's window would hold it:
        the same evidence limit and tail (``Limits``), so :meth:`diagnose` and :meth:`decide` judge it as
        they judge the same log arriving in chunks. The ``Analysis`` says what was read (line counts,
        over-long lines cut) and carries the diagnosis."""
        reader = LogAnalyzer(self.matcher, max_evidence=self.limits.max_evidence, tail_lines=self.limits.tail_lines)
        if hasattr(source, "read"):
            while True:
                data = source.read(BLOCK_BYTES)
                if not data:
                    break
                reader.feed(data)
        else:
            for data in source:
                reader.feed(data)
        log = reader.collect()
        ready = Ready(job=job, evidence=log.evidence, total_lines=log.total_lines, log_complete=True, risks=risks,
                      tail=log.tail, step_start=log.step_start, located=log.located, command=log.command)
        d = self.diagnose(ready)
        analysis = Analysis(diagnosis=d, total_lines=log.total_lines, truncated_lines=log.truncated_lines,
                            bytes_read=log.bytes_read, signature=self.signature(d, ready), tail=log.tail)
        return ready, analysis

    # --- decisions -----------------------------------------------------------------------------
    def diagnose(self, ready: Ready) -> Diagnosis:
        d = classify(ready.evidence, total_lines=ready.total_lines, exit_code=ready.job.exit_code,
                     conclusion=ready.job.conclusion, threshold=self.settings.confidence_threshold,
                     step=ready.step_start)
        if self.learner is not None:
            d = self.learner.predict(d, ready.job.exit_code, signature_line(d.evidence, ready.tail))
        if self.text_model is not None and (d.category == "unknown" or d.confidence < RULE_TRUST):
            # what no pattern names (classify/text_model.py); a sure rule diagnosis stands, so the model
            # (a fraction of a millisecond a job) is only asked when its answer can count
            d = combine(d, self.text_model.predict_proba(text_features(ready, d.evidence)))
        return with_last_lines(with_located(d, ready.located), ready.tail, ready.total_lines)

    @staticmethod
    def signature(d: Diagnosis, ready: Ready) -> str | None:
        """The templated line that best describes the failure (clusters what no pattern explains)."""
        return signature_line(d.evidence, ready.tail)

    def decide(self, ready: Ready, ledger: Ledger, now: float | None = None, *,
               success: SuccessStats | None = None, partition: int = 0,
               diagnosis: Diagnosis | None = None) -> tuple[Ledger, Decision]:
        """The finding and the command for a diagnosed job attempt, and the ledger after it.
        ``diagnosis``: the one :meth:`diagnose` already gave for ``ready`` (not computed twice)."""
        job = ready.job
        if now is None:
            now = job.completed_at if self.event_time and job.completed_at else time.time()
        d = diagnosis or self.diagnose(ready)
        finding = Finding(
            provider=job.provider, owner=job.owner, repo=job.repo, job_id=job.job_id,
            finding_id=finding_id(job.job_key, job.attempt), attempt=job.attempt, category=d.category,
            confidence=round(d.confidence, 4),
            evidence=[Evidence(line=e.line, text=e.text, pattern=e.pattern) for e in d.evidence],
            exit_code=job.exit_code, failed_tests=list(ready.risks), log_lines=ready.total_lines,
            log_complete=ready.log_complete, ts=now,
            signature=self.signature(d, ready) if d.category == "unknown" else None,
        )
        cfg = self.plan_config
        if job.healing_strategy and is_preset(job.healing_strategy):  # the pipeline's preset (Action, GitLab)
            cfg = self._preset_config(job.healing_strategy, job.max_retries)
        choice = choose(job, d, ready.risks, ledger, cfg, self.settings.price(self.size_of(job)), now,
                        policy=self.policy, success=success, tail=ready.tail,
                        retries=lambda _owner: job.attempt - 1)  # the attempts before this one were retries
        ledger, cmd = choice.ledger, choice.command
        params = self.policy.parameters(choice.owner) if is_automatic(cmd.action) else {}
        if params:  # what the team set for this strategy (healing-strategies.yml actions.<name>.parameters)
            cmd = dataclasses.replace(cmd, parameters={**cmd.parameters, **params})
        if cmd.action in ("notify_author", "notify_oncall") and not self.settings.notify_on_failure:
            # notifications.on_failure: false: no Slack message about a failure (tickets and pages stay)
            cmd = dataclasses.replace(cmd, parameters={**cmd.parameters, "slack": False})
        if cmd.action == "escalate":  # healing.escalation: whether a ticket is opened, and for whom
            esc: dict[str, Any] = {"ticket": self.settings.escalation_ticket}
            if self.settings.escalation_assignee:
                esc["assign_to"] = self.settings.escalation_assignee
            cmd = dataclasses.replace(cmd, parameters={**cmd.parameters, **esc})
        ledger, alerts = budget_alerts(ledger, job, self.plan_config, slice_id=str(partition), now=now)
        facts = [job_run_fact(job, cost_usd=self.job_cost(job)), diagnosis_fact(finding), command_fact(cmd)]
        facts += [command_fact(a) for a in alerts]
        return ledger, Decision(finding=finding, command=cmd, facts=facts, alerts=alerts)

    def learn_outcome(self, success: SuccessStats, outcome: Outcome) -> bool:
        """Teach the planner from an executor outcome: an automatic action the platform refused
        (``failed``) did not fix the job. ``succeeded`` only means the platform accepted the call; whether
        the job went green is learned from the next attempt (:meth:`learn_retry`)."""
        if not outcome.category or outcome.status != "failed" or outcome.action in NOTIFY_ACTIONS:
            return False
        parts = outcome.job_key.split("/")
        repo = "/".join(parts[1:3]) if len(parts) >= 4 else "*"
        success.learn(outcome.category, repo, outcome.action, False)
        return True

    def _preset_config(self, name: str, max_retries: int | None) -> PlanConfig:
        """The planner's config under a pipeline's preset (one per preset and retry limit, kept)."""
        key = (normalize_preset(name), max_retries)
        cfg = self._preset_configs.get(key)
        if cfg is None:
            cfg = plan_config(preset_settings(self.settings, key[0], max_retries=max_retries),
                              partitions=self.settings.partitions)
            self._preset_configs[key] = cfg
        return cfg

    def recovery_command(self, out: Ready | Closed, now: float) -> Command | None:
        """``notify_recovery`` when the attempt after an automatic action succeeded and the team asked to
        hear about recoveries (``notifications.on_recovery``); its id is the job attempt's, so a replayed
        completion sends the same command (the executor drops the repeat)."""
        if not self.settings.notify_on_recovery or out.retried is None or out.job.conclusion != "success":
            return None
        action, category = out.retried
        job = out.job
        return Command(provider=job.provider, owner=job.owner, repo=job.repo, job_id=job.job_id,
                       command_id=command_id(job.job_key, job.attempt, "notify_recovery"), attempt=job.attempt,
                       action="notify_recovery", category=category, confidence=1.0, run_id=job.run_id, ts=now,
                       reason=f"{job.job_key} is green again on attempt {job.attempt}, after {action} ({category})",
                       parameters={"slack": True, "healed_by": action})

    def learn_retry(self, success: SuccessStats, out: Ready | Closed) -> bool:
        """The attempt after an automatic action has finished: the action worked iff it succeeded."""
        if out.retried is None or out.job.conclusion in (None, "cancelled", "skipped"):
            return False
        action, category = out.retried
        success.learn(category, f"{out.job.owner}/{out.job.repo}", action, out.job.conclusion == "success")
        return True

    def closed_facts(self, out: Closed) -> list[Fact]:
        return [job_run_fact(out.job, cost_usd=self.job_cost(out.job))]

    def job_cost(self, job: JobEvent) -> float:
        return round(job.duration_minutes * self.settings.price(self.size_of(job)), 4)

    def size_of(self, job: JobEvent) -> str | None:
        """The job's runner size class: its own, else the priced size its runner labels name (a webhook's
        ``labels`` / ``tag_list``: ``saas-linux-large-amd64`` -> large), else None (the default size)."""
        if job.runner_size:
            return job.runner_size
        from ..platforms.forward import runner_size

        return runner_size(job.runner_labels, None, self.settings.price_per_minute_usd)

    # --- incidents -----------------------------------------------------------------------------
    def incident_sighting(self, f: Finding) -> dict[str, Any] | None:
        """What the incidents agent needs of a finding (None when it has no line to group by)."""
        template = f.signature or (fact_template(f.evidence[0].text) if f.evidence else None)
        if not template:
            return None
        return {"template": template, "provider": f.provider, "owner": f.owner, "repo": f.repo,
                "job_id": f.job_id, "attempt": f.attempt, "category": f.category, "ts": f.ts}

    def incident(self, state: IncidentState, sighting: dict[str, Any]) -> tuple[Command | None, Fact | None]:
        """Count one sighting; the one ``open_incident`` command of a burst, and its fact."""
        repo = f"{sighting['owner']}/{sighting['repo']}"
        jk = job_key(sighting["provider"], sighting["owner"], sighting["repo"], sighting["job_id"])
        opened = observe_incident(state, template=sighting["template"], repo=repo, job_key=jk,
                                  ts=float(sighting["ts"]), policy=self.incident_policy)
        if opened is None:
            return None, None
        cmd = Command(provider=sighting["provider"], owner=sighting["owner"], repo=sighting["repo"],
                      job_id=sighting["job_id"], command_id=opened.incident_id, attempt=int(sighting["attempt"]),
                      action="open_incident", reason=opened.reason, category=sighting["category"], confidence=1.0,
                      parameters={"incident_id": opened.incident_id, "jobs": opened.jobs,
                                  "repositories": list(opened.repos), "template": sighting["template"],
                                  "page": True, "ticket": True, "slack": True},
                      ts=float(sighting["ts"]))
        return cmd, command_fact(cmd)

    # --- tests ---------------------------------------------------------------------------------
    def quarantine(self, state: QuarantineState, model: TestModel, result: TestResult,
                   now: float | None = None) -> tuple[Command | None, Fact | None]:
        """The quarantine or release command one test result causes (and its fact), if any."""
        if result.outcome == "skipped":
            return None, None
        now = time.time() if now is None else now
        tr = quarantine_step(state, result.test_id, failed=result.outcome in ("failed", "error"),
                             p_fail=model.p_fail, runs=model.runs,  # P(fail) only when a transition needs it
                             recoveries=model.recoveries,
                             policy=self.quarantine_policy, now=now)
        if tr is None:
            return None, None
        cmd = Command(provider=result.provider, owner=result.owner, repo=result.repo, job_id=result.job_id,
                      command_id=tr.command_id, attempt=result.attempt, action=tr.action, reason=tr.reason,
                      category="test_failure", confidence=round(model.p_fail(), 4),
                      parameters={"test_id": result.test_id, "episode": state.episode,
                                  # one ticket per flaky test and quarantine episode, closed on release
                                  "ticket": True}, ts=now)
        return cmd, command_fact(cmd)

    def learn_test(self, model: TestModel | None, result: TestResult) -> tuple[TestModel, Fact, TestRisk | None]:
        """One result through its test's model: the model, the result's fact, its risk when it failed."""
        (learned,), (p_before,), (risk,) = self.learn_tests([model], [result])
        assert learned is not None  # without passes in columns, every model is returned
        return learned, test_result_fact(result, p_fail=p_before), risk

    def learn_tests(self, models: list[TestModel | None], results: list[TestResult], *, passes: Passes | None = None,
                    passes_at: list[int] | None = None,
                    ) -> tuple[list[TestModel | None], list[float | None], list[TestRisk | None]]:
        """Results of distinct tests (a batch of one report, or one result) through their models at once
        (``FlakePrior.learn_arrays``): each test's model (a new one for None), the P(fail) it predicted before
        its result (None: skipped, not learned) and, for a failure, the risk the planner weighs.

        ``passes``: passes learned as columns (engine/test_columns.py), at positions ``passes_at`` of
        ``results``, in order; their ``models`` entries are returned as they were, and their arrays and counters are
        updated in ``passes``. All results are learned in one sequence, in order, whichever path they take."""
        at = passes_at if passes is not None and passes_at else []
        skip = set(at)
        objs = {i: m or TestModel() for i, m in enumerate(models) if i not in skip}
        p_before: list[float | None] = [None] * len(results)
        risks: list[TestRisk | None] = [None] * len(results)
        out = [objs.get(i, m) for i, m in enumerate(models)]
        idx = [i for i, r in enumerate(results) if r.outcome != "skipped"]
        if not idx:
            return out, p_before, risks
        prior = self.flake_prior
        failed = [results[i].outcome in ("failed", "error") for i in idx]
        rich = [(j, i, f) for j, (i, f) in enumerate(zip(idx, failed)) if i not in skip]
        contexts: dict[int, dict[str, float]] = {}
        for _j, i, f in rich:
            r, model = results[i], objs[i]
            if model.pending_context is not None:  # the run after a failure: how that failure turned out
                self.retry_context.learn(model.pending_context, retry_passed=not f)
                model.pending_context = None
            if f:  # the failure's context, judged against the history before this run
                contexts[i] = context_features(model, r, model.p_retry_pass(prior.view(r.test_id)))
        u = np.empty((len(idx), *_U_START.shape))
        logz = np.empty((len(idx), *_LOGZ_START.shape))
        if rich:
            rj = [j for j, _, _ in rich]
            u[rj] = [objs[i].model.u for _, i, _ in rich]
            logz[rj] = [objs[i].model.logz for _, i, _ in rich]
        pj: list[int] = []
        if passes is not None and at:
            where = {i: j for j, i in enumerate(idx)}
            pj = [where[i] for i in at]
            u[pj], logz[pj] = passes.u, passes.logz
        # a test beyond MAX_PRIOR_TESTS uses the prior without adding to it (memory stays bounded)
        u, logz, ps = prior.learn_arrays([results[i].test_id for i in idx], u, logz, np.asarray(failed, bool),
                                         max_tests=MAX_PRIOR_TESTS)
        for j, i, f in rich:
            m, r = objs[i], results[i]
            m.model.u, m.model.logz = u[j], logz[j]
            m.count(f, r.duration_s, r.head_sha)
        if passes is not None and pj:
            passes.u, passes.logz = u[pj], logz[pj]
            durations = [results[i].duration_s for i in at]
            count_passes(passes.rec, np.array([np.nan if d is None else d for d in durations], float))
        for i, p in zip(idx, ps.tolist()):
            p_before[i] = round(p, 4)
        for i, x in contexts.items():
            r, model = results[i], objs[i]
            view = prior.view(r.test_id)
            p_retry = self.retry_context.p_retry_pass(x, model.p_retry_pass(view))
            model.pending_context = x
            model.last_template = message_hash(r.message) or model.last_template
            risks[i] = TestRisk(test_id=r.test_id, p_fail=round(model.p_fail(view), 4),
                                p_retry_pass=round(p_retry, 4), runs=model.runs, recoveries=model.recoveries)
        return out, p_before, risks

    def replay_test(self, model: TestModel, result: TestResult) -> tuple[Fact, TestRisk | None]:
        """The fact and risk of a result ``model`` has already learned (a message read again after a
        crash, whose state change reached the changelog before the crash): sent again, learned once."""
        view = self.flake_prior.view(result.test_id)
        failed = result.outcome in ("failed", "error")
        fact = test_result_fact(result, p_fail=None if result.outcome == "skipped" else round(model.p_fail(view), 4))
        risk = None
        if failed:
            risk = TestRisk(test_id=result.test_id, p_fail=round(model.p_fail(view), 4),
                            p_retry_pass=round(model.p_retry_pass(view), 4), runs=model.runs,
                            recoveries=model.recoveries)
        return fact, risk


#: a diagnosis shows at least this many lines when the log has them: pattern evidence first, then the
#: lines the locator found where the job stopped (so a failed job's evidence is never empty)
MIN_EVIDENCE = 3


def plan_config(settings: Settings, *, partitions: int) -> PlanConfig:
    """The planner's config from the settings (before a strategy policy's gates, which ``choose`` adds);
    ``partitions``: how many slices the daily budget is cut into (one per partition; 1 in one process)."""
    on = settings.budgets_enabled  # cost_control.enabled: false: no budget stops an automatic action
    return PlanConfig(
        daily_budget_usd=settings.daily_budget_usd if on else math.inf,
        repo_daily_budget_usd=settings.repo_daily_budget_usd if on else math.inf,
        max_retries_per_job=settings.max_retries_per_job, human_response_minutes=settings.human_response_minutes,
        flaky_retry_threshold=settings.flaky_retry_threshold, flaky_min_runs=settings.flaky_min_runs,
        flaky_min_recoveries=settings.flaky_min_recoveries,
        confidence_threshold=settings.confidence_threshold, partitions=partitions,
        auto_thresholds={**packaged_thresholds(), **settings.auto_thresholds},
        # the remediation of the team's named patterns (patterns/named.py), which the planner honours
        pattern_remedies=pattern_remedies(load_library(settings.pattern_files, include_builtin=False)),
        alert_levels=settings.budget_alert_levels, cost_alert_usd=settings.cost_alert_usd if on else 0.0,
        downgrade_after_failures=settings.downgrade_after_failures,
    )


def text_features(ready: Ready, evidence: tuple[EvidenceLine, ...]) -> dict[str, float]:
    """What the text model reads of a job: the rules' evidence (not the located lines, which come next),
    the located lines, the failing command and the exit code (classify/text_model.py). ``guard learn``
    teaches the model from the same features it predicts from."""
    own = tuple(e for e in evidence if not e.pattern.startswith("_locate"))
    return features(chunk_text(own, ready.located, ready.command), ready.job.exit_code, ready.command)


def with_located(d: Diagnosis, located: tuple[EvidenceLine, ...]) -> Diagnosis:
    """``d`` with where the failure is: the strongest line of its own evidence first, then the lines
    where the failing step's details start (:data:`~healing_guard.classify.locate.LOCATED_DETAIL`: a
    pattern line on the same line moves up instead), then the rest of its evidence, then other located
    lines up to :data:`MIN_EVIDENCE` lines. The category and confidence are the diagnosis's own."""
    if not located:
        return d
    own = list(d.evidence)
    head, rest = own[:1], own[1:]
    for det in (e for e in located if e.pattern == LOCATED_DETAIL):
        if any(e.line == det.line for e in head):
            continue
        same = next((e for e in rest if e.line == det.line), None)
        if same is not None:
            rest.remove(same)
        head.append(same or det)
    out = head + rest
    have = {e.line for e in out}
    if len(out) < MIN_EVIDENCE:
        out += [e for e in located if e.pattern != LOCATED_DETAIL and e.line not in have][: MIN_EVIDENCE - len(out)]
    return dataclasses.replace(d, evidence=tuple(out)) if out != own else d


def with_last_lines(d: Diagnosis, tail: tuple[str, ...], total_lines: int) -> Diagnosis:
    """``d``, or when it has no evidence at all (a log that just stops: the runner went away mid-step,
    no tool said anything), the log's last lines, most recent first: where it stopped is the evidence."""
    if d.evidence or not tail:
        return d
    out: list[EvidenceLine] = []
    for i, text in enumerate(reversed(tail)):
        if len(out) >= MIN_EVIDENCE:
            break
        if text.strip():
            out.append(EvidenceLine(line=total_lines - i, text=text, pattern=LOCATED_CONTEXT, category="unknown",
                                    weight=0.0))
    return dataclasses.replace(d, evidence=tuple(out)) if out else d


def _text_model(settings: Settings) -> TextModel | None:
    """``settings.text_model``: "" or "off" none (the default, see the setting), "packaged" the model that
    ships with the guard, else a path."""
    if settings.text_model in ("", "off"):
        return None
    if settings.text_model == "packaged":
        return packaged_model()
    try:
        return TextModel.load(settings.text_model)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("settings", "pipeline.text_model",
                          f"cannot load {settings.text_model}: {exc} (use \"packaged\" for the packaged model, "
                          "\"off\" for none, or train one with benchmarks/train_text_model.py)") from None


def policy_of_settings(settings: Settings) -> Policy:
    """The strategy policy of the settings' strategies (``healing.strategies`` of the config file and the
    strategies file; the catalogue's defaults without either)."""
    if not settings.strategies_file and not settings.config_file:
        return Policy()
    from ..strategies_config import load_strategy_sources, policy_of

    return policy_of(load_strategy_sources(settings))


def offline_job(job_id: str, *, exit_code: int | None = None, conclusion: str | None = None,
                provider: str = "github", owner: str = "local", repo: str = "local", attempt: int = 1,
                duration_minutes: float | None = None, runner_size: str | None = None, job_name: str = "",
                run_id: str | None = None, now: float | None = None) -> JobEvent:
    """The completed job event of a log analysed outside the stream (a file, the Python API): what the
    worker would have had from the platform, so the engine can judge the log the same way."""
    now = time.time() if now is None else now
    started = None if duration_minutes is None else now - duration_minutes * 60.0
    return JobEvent.from_dict({
        "provider": provider, "owner": owner, "repo": repo, "job_id": job_id, "job_name": job_name or job_id,
        "status": "completed", "attempt": attempt, "run_id": run_id, "conclusion": conclusion or "failure",
        "exit_code": exit_code, "runner_size": runner_size, "started_at": started,
        "completed_at": None if duration_minutes is None else now})


#: tests whose history feeds the shared prior (about 0.5 KB each); later tests read it without adding
MAX_PRIOR_TESTS = 50_000


def finding_id(job_key: str, attempt: int) -> str:
    return stable_id(job_key, attempt, "finding")
