"""``guard action``: the guard inside a CI pipeline with only the platform's token (no guard service).

* ``guard action github``: the GitHub Action's step (action.yml, mode ``report`` without ``guard-broker``).
  It runs inside the workflow run, usually inside the failing job itself (``if: failure()``). It lists
  this run attempt's failed jobs, reads each log it can, diagnoses it in-process, decides per job within
  ``max-retries`` (attempt N of a run is its (N-1)th re-run), asks GitHub to re-run the failed jobs when
  every one of them is a re-run, notifies, writes the job summary and a decision record (uploaded as an
  artifact by the Action).
  Two platform facts shape what it can do there: GitHub serves a job's log only once the job has
  finished (the job the step runs in is still running, so its own log cannot be read yet), and GitHub
  re-runs jobs of a workflow run only once the run has completed (``rerun-failed-jobs`` answers
  ``403 This workflow is already running`` while it is in progress). The step says so, and what to add:
* ``guard action github-rerun``: the same Action in ``mode: rerun``, in a companion workflow on
  ``workflow_run: completed``. The run has completed: every log can be read and GitHub accepts the
  re-run. It carries out the recorded decisions (diagnosing the jobs the in-job step could not read yet)
  under the pipeline's recorded strategy and retry limit.
* ``guard action gitlab``: the GitLab template's ``.post`` job (ci/healing-guard.gitlab-ci.yml). GitLab
  retries a failed job while the pipeline runs, so one job does it all, given a token that may (see
  :mod:`healing_guard.ci_action.gitlab` for what ``CI_JOB_TOKEN`` may and may not call).

Every input comes from the environment the Action / template sets (read once, here, at the entry point).
A notification that is not configured or fails, and an API that refuses, are reported and end the command
with status 0 (the pipeline's job is not failed by the guard's trouble); an input the guard cannot
understand ends it with status 2 and says what it accepts.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import typer

from .ci_action.decide import (FailedJob, JobDecision, Pipeline, Record, diagnose, parse_pipeline, pending,
                               plan_run, read_record, record, report, slack_text)
from .ci_action.notify import PAGERDUTY_URL, NotifyConfig

action_app = typer.Typer(no_args_is_help=True, help="The guard inside a CI pipeline with only the platform's token: "
                                                    "diagnose the failed jobs, re-run within max-retries, notify, "
                                                    "report (the GitHub Action and the GitLab template call these).")

Sleep = Callable[[float], None]
DEFAULT_MAX_WAIT_SECONDS = 300.0


class InputError(ValueError):
    """An input the command cannot use; the message says which and what it accepts."""


# --- inputs ----------------------------------------------------------------------------------------

def _get(env: Mapping[str, str], name: str, default: str = "") -> str:
    return (env.get(name) or default).strip()


def _pipeline(env: Mapping[str, str]) -> Pipeline:
    try:
        return parse_pipeline(_get(env, "HEALING_STRATEGY", "auto"), _get(env, "HEALING_MAX_RETRIES", "2"))
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _max_wait(env: Mapping[str, str]) -> float:
    text = _get(env, "HEALING_MAX_WAIT_SECONDS", str(int(DEFAULT_MAX_WAIT_SECONDS)))
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"max-wait-seconds: expected a number of seconds >= 0, got {text!r}") from None
    if not value >= 0:
        raise InputError(f"max-wait-seconds: expected a number of seconds >= 0, got {text!r}")
    return value


def _notify(env: Mapping[str, str]) -> NotifyConfig:
    return NotifyConfig(slack_webhook=_get(env, "HEALING_SLACK_WEBHOOK"), jira_url=_get(env, "HEALING_JIRA_URL"),
                        jira_user=_get(env, "HEALING_JIRA_USER"), jira_token=_get(env, "HEALING_JIRA_TOKEN"),
                        jira_project=_get(env, "HEALING_JIRA_PROJECT"),
                        pagerduty_key=_get(env, "HEALING_PAGERDUTY_TOKEN"),
                        pagerduty_url=_get(env, "GUARD_PAGERDUTY_URL", PAGERDUTY_URL))


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = _get(env, name)
    return Path(value) if value else None


@dataclass(frozen=True)
class GitHubStep:
    """A GitHub Actions step's environment: GitHub's variables and the Action's inputs."""

    api_url: str
    token: str
    repo: str
    run_id: str
    attempt: int
    runner_name: str
    workflow: str
    ref_name: str
    server_url: str
    summary: Path | None
    output: Path | None
    temp: Path
    event_path: Path | None
    pipeline: Pipeline
    max_wait_seconds: float
    notify: NotifyConfig
    uses: str  # how a workflow names this Action (owner/repo@ref), for the companion workflow's snippet
    #: the guard service's broker (the guard-broker input): it receives the jobs and acts; this step reports
    service: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, need_run: bool = True) -> GitHubStep:
        token = _get(env, "GH_TOKEN") or _get(env, "GITHUB_TOKEN")
        missing = [n for n in ("GITHUB_REPOSITORY", *(("GITHUB_RUN_ID",) if need_run else ())) if not _get(env, n)]
        if not token:
            missing.insert(0, "GH_TOKEN (the github-token input)")
        if missing:
            raise InputError(f"not set: {', '.join(missing)} (this command runs as a GitHub Actions step)")
        attempt_text = _get(env, "GITHUB_RUN_ATTEMPT", "1")
        if not attempt_text.isdigit() or int(attempt_text) < 1:
            raise InputError(f"GITHUB_RUN_ATTEMPT: expected a whole number >= 1, got {attempt_text!r}")
        return cls(api_url=_get(env, "GITHUB_API_URL", "https://api.github.com"), token=token,
                   repo=_get(env, "GITHUB_REPOSITORY"), run_id=_get(env, "GITHUB_RUN_ID"), attempt=int(attempt_text),
                   runner_name=_get(env, "RUNNER_NAME"), workflow=_get(env, "GITHUB_WORKFLOW"),
                   ref_name=_get(env, "GITHUB_REF_NAME"), server_url=_get(env, "GITHUB_SERVER_URL", "https://github.com"),
                   summary=_path(env, "GITHUB_STEP_SUMMARY"), output=_path(env, "GITHUB_OUTPUT"),
                   temp=Path(_get(env, "RUNNER_TEMP") or tempfile.gettempdir()),
                   event_path=_path(env, "GITHUB_EVENT_PATH"), pipeline=_pipeline(env),
                   max_wait_seconds=_max_wait(env), notify=_notify(env), uses=_uses(_get(env, "GITHUB_ACTION_PATH")),
                   service=_get(env, "HEALING_GUARD_BROKER"))

    @property
    def owner_name(self) -> tuple[str, str]:
        owner, _, name = self.repo.partition("/")
        return owner, name

    def run_url(self, run_id: str) -> str:
        return f"{self.server_url.rstrip('/')}/{self.repo}/actions/runs/{run_id}"


def _uses(action_path: str) -> str:
    """``owner/repo@ref`` from the Action's checkout (``.../_actions/OWNER/REPO/REF``), else the placeholder."""
    parts = Path(action_path).parts if action_path else ()
    if "_actions" in parts:
        rest = parts[parts.index("_actions") + 1:]
        if len(rest) >= 3:
            return f"{rest[0]}/{rest[1]}@{rest[2]}"
    return "your-org/self-healing-pipeline-guard@v1"


@dataclass(frozen=True)
class GitLabJob:
    """A GitLab CI job's environment: GitLab's predefined variables and the template's variables."""

    api_v4: str
    server_url: str
    project_id: str
    project_path: str
    pipeline_id: str
    job_id: str
    ref_name: str
    pipeline_url: str
    project_token: str
    project_token_name: str
    job_token: str
    pipeline: Pipeline
    max_wait_seconds: float
    notify: NotifyConfig
    report_path: Path
    record_path: Path
    service: str = ""  # HEALING_GUARD_BROKER: the guard service receives the jobs and acts; this job reports

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GitLabJob:
        missing = [n for n in ("CI_API_V4_URL", "CI_PROJECT_ID", "CI_PROJECT_PATH", "CI_PIPELINE_ID") if not _get(env, n)]
        if missing:
            raise InputError(f"not set: {', '.join(missing)} (this command runs as a GitLab CI job)")
        api = _get(env, "CI_API_V4_URL").rstrip("/")
        server = _get(env, "CI_SERVER_URL") or (api[: -len("/api/v4")] if api.endswith("/api/v4") else api)
        token_name = next((n for n in ("HEALING_GUARD_TOKEN", "HEALING_GITLAB_TOKEN") if _get(env, n)), "")
        out = Path(_get(env, "CI_PROJECT_DIR") or ".")
        return cls(api_v4=api, server_url=server, project_id=_get(env, "CI_PROJECT_ID"),
                   project_path=_get(env, "CI_PROJECT_PATH"), pipeline_id=_get(env, "CI_PIPELINE_ID"),
                   job_id=_get(env, "CI_JOB_ID"), ref_name=_get(env, "CI_COMMIT_REF_NAME"),
                   pipeline_url=_get(env, "CI_PIPELINE_URL"),
                   project_token=_get(env, token_name) if token_name else "", project_token_name=token_name,
                   job_token=_get(env, "CI_JOB_TOKEN"), pipeline=_pipeline(env), max_wait_seconds=_max_wait(env),
                   notify=_notify(env), report_path=out / "healing-guard-report.md",
                   record_path=out / "healing-guard-decision.json", service=_get(env, "HEALING_GUARD_BROKER"))


# --- shared parts ----------------------------------------------------------------------------------

def _guard(pipeline: Pipeline, provider: str, repo: str) -> Any:
    """A PipelineGuard under the pipeline's preset and retry limit, over the settings in force (environment,
    ``.github/healing-config.yml`` and ``.github/healing-strategies.yml`` of a checkout, when present)."""
    from .pipeline_guard import PipelineGuard
    from .settings import load_settings

    base = load_settings()
    return PipelineGuard(strategies=base.strategies_file or None, settings=pipeline.settings(base), ci_provider=provider,
                         repo=repo)


def service_note(service: str) -> str:
    """What a step that reports for a guard service says it leaves to the service."""
    return (f"A guard service receives these jobs ({service}; the next step sends their logs and completions): "
            "its executor re-runs and notifies with its own credentials, and its models and ROI learn from them, so "
            "this step diagnoses and reports only.")


def _settings_files(guard: Any) -> list[str]:
    files = [f for f in (guard.settings.config_file, guard.settings.strategies_file) if f]
    return [f"Settings read from {' and '.join(map(str, files))}."] if files else []


def _transport(secrets: Sequence[str], sleep: Sleep) -> Any:
    from .executor.clients import RetryPolicy, Transport

    t = Transport(RetryPolicy(max_attempts=3, max_wait_seconds=60.0, timeout_seconds=30.0), sleep=sleep)
    t.add_secret(*secrets)
    return t


def _decide_all(guard: Any, pipeline: Pipeline, failed: Sequence[FailedJob],
                fetch: Callable[[FailedJob, Path], str | None], workdir: Path, *, run_id: str, branch: str | None,
                known: Mapping[str, JobDecision] | None = None) -> list[JobDecision]:
    """One decision per failed job: a recorded one when ``known`` has it, else a diagnosis of its log
    (``fetch`` downloads it and answers None, or why it could not)."""
    out: list[JobDecision] = []
    for job in failed:
        if known and job.job_id in known:
            out.append(known[job.job_id])
            continue
        log = workdir / f"job-{job.job_id}.log"
        why = fetch(job, log)
        out.append(pending(job, why) if why else diagnose(guard, pipeline, job, log, run_id=run_id, branch=branch))
    return out


def _write(path: Path | None, text: str) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as f:
            f.write(text)


def _outputs(path: Path | None, values: Mapping[str, str]) -> None:
    _write(path, "".join(f"{k}={v}\n" for k, v in values.items()))


def _nothing_done(step: GitHubStep, title: str, context: Sequence[str], *, warning: str = "") -> int:
    """A GitHub step that found nothing to act on, or could not: the summary says why, no job, no decision."""
    if warning:
        print(f"::warning::{warning}")
    _write(step.summary, report(title, [], None, context=[*context, *([warning] if warning else [])]))
    _outputs(step.output, {"failed-jobs": "0", "decision": "none"})
    return 0


def companion_snippet(workflow: str, uses: str) -> list[str]:
    name = json.dumps(workflow or "CI")
    return [
        "**Re-running needs the run to have completed.** Add this workflow (for example "
        "`.github/workflows/healing-guard.yml`, on the default branch): it runs when the run above completes, "
        "reads this step's decision record and every job's log, and re-runs within max-retries.",
        "",
        "```yaml",
        "name: Self-healing guard",
        "on:",
        "  workflow_run:",
        f"    workflows: [{name}]",
        "    types: [completed]",
        "permissions:",
        "  actions: write",
        "jobs:",
        "  heal:",
        "    if: github.event.workflow_run.conclusion == 'failure'",
        "    runs-on: ubuntu-latest",
        "    steps:",
        f"      - uses: {uses}",
        "        with:",
        "          mode: rerun",
        "          github-token: ${{ secrets.GITHUB_TOKEN }}",
        "          slack-webhook: ${{ secrets.SLACK_WEBHOOK }}",
        "```",
        "",
    ]


def _github_refusal(message: str, status: int | None, *, in_job: bool) -> tuple[str, str]:
    """(outcome word, sentence) for a refused re-run."""
    if status == 403 and "already running" in message.lower():
        if in_job:
            return "re-run-refused", (
                f"GitHub refused the re-run: HTTP 403 \"{_quote(message)}\". GitHub re-runs jobs of a workflow run "
                "only once the run has completed, and this step runs inside the run, which is still in progress. "
                "Nothing was re-run; the companion workflow below does it when the run has completed.")
        return "re-run-refused", (f"GitHub refused the re-run: HTTP 403 \"{_quote(message)}\": the run is running "
                                  "again already (someone or something re-ran it): nothing to do")
    hint = ""
    if status in (403, 404):
        hint = (" The token needs `actions: write` to re-run jobs: add `permissions: {actions: write}` to the "
                "workflow or job.")
    return "re-run-failed", f"GitHub refused the re-run: {message or status}.{hint}"


def _quote(message: str) -> str:
    text = message.removeprefix("HTTP 403: ").strip()
    return text.replace('"', "'")


# --- GitHub: inside the run ------------------------------------------------------------------------

def github_report(step: GitHubStep, *, sleep: Sleep = time.sleep) -> int:
    """The in-job step (see the module docstring)."""
    from .ci_action.github import ApiError, GitHubApi, artifact_prefix, failed_jobs, headers
    from .ci_action.http import Http
    from .ci_action.notify import Notifier
    from .executor.clients import GitHubClient

    secrets = [step.token, *step.notify.secrets()]
    http = Http(headers(step.token), secrets=secrets, sleep=sleep)
    api = GitHubApi(http, step.api_url, step.repo)
    title = f"Self-healing pipeline guard: run {step.run_id}, attempt {step.attempt}"
    context = [f"Workflow {step.workflow or '?'} of {step.repo}; {step.pipeline.describe()}."]
    try:
        jobs = api.attempt_jobs(step.run_id, step.attempt)
    except ApiError as exc:
        why = f"Could not list this run's jobs: {exc.reply.describe()}."
        if exc.reply.status in (401, 403, 404):
            why += " The token needs `actions: read` (and `actions: write` to re-run): add `permissions: {actions: write}`."
        return _nothing_done(step, title, context, warning=why)
    failed = failed_jobs(jobs, step.attempt, runner_name=step.runner_name)
    guard = _guard(step.pipeline, "github", step.repo)
    context += _settings_files(guard)

    def fetch(job: FailedJob, dest: Path) -> str | None:
        r = api.download_log(job.job_id, dest)
        if r.ok:
            return None
        if job.running:
            return (f"GitHub serves a job's log only once the job has finished, and this job is still running "
                    f"(the log download answered {r.describe()}); it is diagnosed once the run has completed")
        return f"its log could not be downloaded ({r.describe()})"

    with tempfile.TemporaryDirectory(dir=step.temp) as tmp:
        decisions = _decide_all(guard, step.pipeline, failed, fetch, Path(tmp), run_id=step.run_id,
                                branch=step.ref_name or None)
    plan = plan_run(decisions, max_wait_seconds=step.max_wait_seconds)
    if step.service:
        context.append(service_note(step.service))
        _write(step.summary, report(title, decisions, plan if decisions else None, context=context))
        _outputs(step.output, {"failed-jobs": str(len(decisions)), "decision": "sent-to-service" if decisions else "none"})
        print(f"{len(decisions)} failed job(s); the guard service decides and acts")
        return 0
    transport = _transport(secrets, sleep)
    done: list[str] = []
    word = "none" if not decisions else "pending" if any(not d.diagnosed for d in decisions) else "no-re-run"
    attempted = ok = False
    said = ""
    if plan.rerun:
        owner, name = step.owner_name
        r = GitHubClient(step.token, step.api_url, transport=transport).rerun_failed_jobs(owner, name, step.run_id)
        attempted, ok = True, r.ok
        if r.ok:
            word, said = "re-ran", f"re-run of the failed jobs of run {step.run_id} requested (HTTP {r.status})"
            if plan.asked_wait_seconds:
                said += f"; the {plan.asked_wait_seconds:g} s backoff was not waited (this step runs inside the run)"
        else:
            word, said = _github_refusal(r.message, r.status, in_job=True)
        done.append(said)
    notifier = Notifier(step.notify, transport)
    outcome = said or plan.why
    done += notifier.send(step.repo, decisions, slack_text(f"{step.repo} run {step.run_id} attempt {step.attempt}",
                                                           decisions, outcome, step.run_url(step.run_id)),
                          post=bool(decisions))
    # what this step told people about is not told again by the companion workflow
    decisions = [replace(d, notified=notifier.any_configured and d.diagnosed) for d in decisions]
    extra = companion_snippet(step.workflow, step.uses) if word in ("pending", "re-run-refused") else []
    if not decisions:
        context.append("No failed job was found in this run attempt: a job shows as failed once its failed step "
                       "has completed.")
    _write(step.summary, report(title, decisions, plan if decisions else None, context=context, done=done,
                                notes=notifier.configuration_notes(), extra=extra))
    name = f"{artifact_prefix(step.run_id, step.attempt)}{uuid.uuid4().hex[:8]}"
    folder = step.temp / "healing-guard"
    folder.mkdir(parents=True, exist_ok=True)
    decision_file = folder / f"{name}.json"
    decision_file.write_text(record(Record(
        provider="github", repo=step.repo, run_id=step.run_id, attempt=step.attempt, strategy=step.pipeline.strategy,
        max_retries=step.pipeline.max_retries, jobs=tuple(decisions), rerun_attempted=attempted, rerun_ok=ok,
        rerun_message=said)), encoding="utf-8")
    _outputs(step.output, {"failed-jobs": str(len(decisions)), "decision": word, "artifact-name": name,
                           "decision-file": str(decision_file)})
    print(f"{len(decisions)} failed job(s); {outcome}")
    return 0


# --- GitHub: the companion workflow, once the run has completed -------------------------------------

def _load_records(api: Any, run_id: str, attempt: int, workdir: Path) -> tuple[list[Record], list[str]]:
    from .ci_action.github import ApiError, artifact_prefix

    notes: list[str] = []
    try:
        artifacts = api.run_artifacts(run_id)
    except ApiError as exc:
        return [], [f"the decision records could not be listed ({exc.reply.describe()}): the jobs are diagnosed here"]
    prefix = artifact_prefix(run_id, attempt)
    records: list[Record] = []
    for a in artifacts:
        if not str(a.get("name", "")).startswith(prefix) or a.get("expired"):
            continue
        archive = workdir / f"artifact-{a.get('id')}.zip"
        r = api.download_artifact(str(a.get("id")), archive)
        if not r.ok:
            notes.append(f"decision record {a.get('name')}: could not be downloaded ({r.describe()})")
            continue
        try:
            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():
                    if member.endswith(".json"):
                        records.append(read_record(z.read(member)))
        except (zipfile.BadZipFile, ValueError, KeyError) as exc:
            notes.append(f"decision record {a.get('name')}: not readable ({exc})")
    return records, notes


def github_rerun(step: GitHubStep, *, sleep: Sleep = time.sleep) -> int:
    """The companion workflow's step (see the module docstring)."""
    from .ci_action.github import FAILED, ApiError, GitHubApi, failed_jobs, headers
    from .ci_action.http import Http
    from .ci_action.notify import Notifier
    from .executor.clients import GitHubClient

    if step.event_path is None or not step.event_path.is_file():
        raise InputError("mode rerun: GITHUB_EVENT_PATH is not set; this mode runs in a workflow triggered by "
                         "`on: workflow_run: types: [completed]`")
    event = json.loads(step.event_path.read_text(encoding="utf-8"))
    wr = event.get("workflow_run") if isinstance(event, dict) else None
    if not isinstance(wr, dict) or not wr.get("id"):
        raise InputError("mode rerun: the event has no workflow_run; trigger this workflow with "
                         "`on: workflow_run: workflows: [...], types: [completed]`")
    run_id, attempt = str(wr["id"]), int(wr.get("run_attempt") or 1)
    conclusion, branch, workflow = str(wr.get("conclusion") or ""), wr.get("head_branch"), str(wr.get("name") or "")
    secrets = [step.token, *step.notify.secrets()]
    http = Http(headers(step.token), secrets=secrets, sleep=sleep)
    api = GitHubApi(http, step.api_url, step.repo)
    title = f"Self-healing pipeline guard: {workflow + ' ' if workflow else ''}run {run_id}, attempt {attempt}"
    context = [f"Run {step.run_url(run_id)} ({step.repo}) completed: {conclusion or 'unknown'}."]
    if conclusion not in FAILED:
        print(f"run {run_id} attempt {attempt} concluded {conclusion or 'unknown'}: nothing to do")
        return _nothing_done(step, title, [*context, "Nothing to do."])
    head = (wr.get("head_repository") or {}).get("full_name") if isinstance(wr.get("head_repository"), dict) else None
    fork = bool(head) and head != step.repo
    with tempfile.TemporaryDirectory(dir=step.temp) as tmp:
        records, notes = ([], []) if fork else _load_records(api, run_id, attempt, Path(tmp))
        pipeline = step.pipeline
        if fork:
            context.append(f"The run came from the fork {head}: its decision record (written by code from the fork) "
                           f"is not read; {pipeline.describe()} from this step's inputs, every log diagnosed here.")
        elif records:
            try:
                pipeline = parse_pipeline(records[0].strategy, records[0].max_retries)
                context.append(f"Decision record of the run's guard step: {pipeline.describe()}.")
            except ValueError as exc:
                notes.append(f"the decision record's strategy was not understood ({exc}); using this step's inputs")
        else:
            context.append(f"No decision record of this attempt (no guard step in the run, or its artifact is gone): "
                           f"{pipeline.describe()} from this step's inputs.")
        done_before = next((r for r in records if r.rerun_ok), None)
        if done_before is not None:
            context.append(f"The run's guard step already had the failed jobs re-run ({done_before.rerun_message}): "
                           "nothing to do.")
            return _nothing_done(step, title, context)
        try:
            jobs = api.attempt_jobs(run_id, attempt)
        except ApiError as exc:
            why = f"Could not list the run's jobs: {exc.reply.describe()}."
            if exc.reply.status in (401, 403, 404):
                why += " This workflow needs `permissions: {actions: write}`."
            return _nothing_done(step, title, context, warning=why)
        failed = failed_jobs(jobs, attempt)
        known = {d.job_id: d for r in records for d in r.jobs if d.diagnosed}
        guard = _guard(pipeline, "github", step.repo)
        context += _settings_files(guard)

        def fetch(job: FailedJob, dest: Path) -> str | None:
            r = api.download_log(job.job_id, dest)
            return None if r.ok else f"its log could not be downloaded ({r.describe()})"

        decisions = _decide_all(guard, pipeline, failed, fetch, Path(tmp), run_id=run_id, branch=branch, known=known)
    plan = plan_run(decisions, max_wait_seconds=step.max_wait_seconds)
    transport = _transport(secrets, sleep)
    client = GitHubClient(step.token, step.api_url, transport=transport)
    owner, name = step.owner_name
    done: list[str] = []
    word = "none" if not decisions else "no-re-run"
    said = ""
    if plan.rerun:
        if plan.wait_seconds:
            sleep(plan.wait_seconds)
            done.append(f"waited {plan.wait_seconds:g} s (backoff) before the re-run")
        if plan.clear_cache and branch:
            c = client.delete_caches(owner, name, str(branch))
            done.append(f"Actions caches of {branch}: " + (c.message if c.ok else f"FAILED ({c.message})"))
        r = client.rerun_failed_jobs(owner, name, run_id)
        if r.ok:
            word, said = "re-ran", f"re-run of the failed jobs of run {run_id} requested (HTTP {r.status}): attempt {attempt + 1}"
        else:
            word, said = _github_refusal(r.message, r.status, in_job=False)
        done.append(said)
    fresh = [d for d in decisions if not (d.job_id in known and known[d.job_id].notified)]
    notifier = Notifier(step.notify, transport)
    outcome = said or plan.why
    done += notifier.send(step.repo, fresh,
                          slack_text(f"{step.repo} {workflow + ' ' if workflow else ''}run {run_id} attempt {attempt}",
                                     decisions, outcome, step.run_url(run_id)),
                          post=bool(fresh) or plan.rerun)
    _write(step.summary, report(title, decisions, plan, context=context, done=done,
                                notes=[*notes, *notifier.configuration_notes()]))
    _outputs(step.output, {"failed-jobs": str(len(decisions)), "decision": word})
    print(f"{len(decisions)} failed job(s); {outcome}")
    return 0


# --- GitLab: the template's .post job ---------------------------------------------------------------

JOB_TOKEN_LIMIT = ("GitLab lets CI_JOB_TOKEN call only `GET /job` of the Jobs API: it cannot list a pipeline's jobs "
                   "(unless the project grants job tokens the beta fine-grained permission \"Jobs: Read\"), read a "
                   "job's log or retry a job.")
SET_TOKEN = ("Set HEALING_GUARD_TOKEN, a project access token (role Developer; scope `read_api` to diagnose, `api` to "
             "also retry), as a masked CI/CD variable.")


def gitlab_job(job: GitLabJob, *, sleep: Sleep = time.sleep) -> int:
    """The template's job (see the module docstring)."""
    from .ci_action.gitlab import ApiError, Credential, GitLabApi, failed_jobs
    from .ci_action.http import Http
    from .ci_action.notify import Notifier
    from .executor.clients import GitLabClient

    secrets = [s for s in (job.project_token, job.job_token, *job.notify.secrets()) if s]
    creds: list[Credential] = []
    if job.project_token:
        creds.append(Credential(job.project_token_name, Http({"PRIVATE-TOKEN": job.project_token}, secrets=secrets,
                                                              sleep=sleep), True))
    else:
        if job.job_token:
            creds.append(Credential("CI_JOB_TOKEN", Http({"JOB-TOKEN": job.job_token}, secrets=secrets, sleep=sleep),
                                    False))
        creds.append(Credential("no token (a public project's public pipelines)", Http({}, secrets=secrets,
                                                                                     sleep=sleep), False))
    api = GitLabApi(job.api_v4, job.project_id, creds)
    title = f"Self-healing pipeline guard: pipeline {job.pipeline_id}"
    context = [f"Project {job.project_path}; {job.pipeline.describe()}."]

    def finish(text: str, decisions: Sequence[JobDecision], *, attempted: bool = False, said: str = "") -> int:
        print(text)
        job.report_path.write_text(text, encoding="utf-8")
        job.record_path.write_text(record(Record(
            provider="gitlab", repo=job.project_path, run_id=job.pipeline_id, attempt=1,
            strategy=job.pipeline.strategy, max_retries=job.pipeline.max_retries, jobs=tuple(decisions),
            rerun_attempted=attempted, rerun_message=said)), encoding="utf-8")
        return 0

    try:
        jobs, reader = api.pipeline_jobs(job.pipeline_id)
    except ApiError as exc:
        why = [f"Could not list this pipeline's jobs: {exc}."]
        if not job.project_token:
            why += [JOB_TOKEN_LIMIT, SET_TOKEN]
        return finish(report(title, [], None, context=[*context, *why]), [])
    failed = failed_jobs(jobs, own_job_id=job.job_id or None)
    guard = _guard(job.pipeline, "gitlab", job.project_path)
    context += _settings_files(guard)

    def fetch(f: FailedJob, dest: Path) -> str | None:
        r, label = api.download_trace(f.job_id, dest)
        if r.ok:
            return None
        why = f"its log could not be read (with {label}: {r.describe()})"
        return why + ("; " + JOB_TOKEN_LIMIT + " " + SET_TOKEN if not job.project_token else "")

    with tempfile.TemporaryDirectory() as tmp:
        decisions = _decide_all(guard, job.pipeline, failed, fetch, Path(tmp), run_id=job.pipeline_id,
                                branch=job.ref_name or None)
    plan = plan_run(decisions, max_wait_seconds=job.max_wait_seconds)
    if job.service:
        return finish(report(title, decisions, plan if decisions else None,
                             context=[*context, service_note(job.service)]), decisions)
    transport = _transport(secrets, sleep)
    done: list[str] = []
    notes: list[str] = []
    outcome = plan.why
    retrier = next((c for c in creds if c.can_retry), None)
    if plan.rerun and retrier is None:
        outcome = ("not retried: no token that may retry jobs (CI_JOB_TOKEN may not). Set HEALING_GUARD_TOKEN, a "
                   "project access token with the `api` scope (role Developer), as a masked CI/CD variable.")
        done.append(outcome)
    elif plan.rerun:
        client = GitLabClient(job.project_token, job.server_url, transport=transport)
        owner, _, name = job.project_path.rpartition("/")
        if plan.wait_seconds:
            sleep(plan.wait_seconds)
            done.append(f"waited {plan.wait_seconds:g} s (backoff) before the retry")
        if plan.clear_cache:
            c = client.clear_runner_caches(owner, name)
            done.append("runner caches: " + ("cleared" if c.ok else f"FAILED ({c.message})"))
        answers = []
        for d in decisions:
            r = client.retry_job(owner, name, d.job_id)
            answers.append(r.ok)
            if r.ok:
                new_id = (r.json() or {}).get("id")
                done.append(f"retried job {d.name} ({d.job_id}): HTTP {r.status}" + (f", new job {new_id}" if new_id else ""))
            else:
                hint = (" (the token needs the api scope and the Developer role to retry)"
                        if r.status in (401, 403) and "not retryable" not in r.message.lower() else "")
                done.append(f"retry of job {d.name} ({d.job_id}) refused: {r.message}{hint}")
        outcome = ("retried " + ", ".join(d.name for d, a in zip(decisions, answers) if a)) if any(answers) else (
            "the retries were refused")
    if not reader.can_retry:
        notes.append(f"the pipeline's jobs were listed with {reader.label}")
    notifier = Notifier(job.notify, transport, names={"jira_url": "HEALING_JIRA_URL", "jira_user": "HEALING_JIRA_USER",
                                                       "jira_token": "HEALING_JIRA_TOKEN",
                                                       "jira_project": "HEALING_JIRA_PROJECT"})
    done += notifier.send(job.project_path, decisions,
                          slack_text(f"{job.project_path} pipeline {job.pipeline_id}", decisions, outcome,
                                     job.pipeline_url or None), post=bool(decisions))
    text = report(title, decisions, plan if decisions else None, context=context, done=done,
                  notes=[*notes, *notifier.configuration_notes()])
    return finish(text, decisions, attempted=plan.rerun and retrier is not None, said=outcome)


# --- the commands ------------------------------------------------------------------------------------

def _run(call: Callable[[], int]) -> None:
    from .settings import ConfigError

    try:
        code = call()
    except InputError as exc:
        print(f"::error::{exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        print(f"::error::configuration: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@action_app.command("github")
def github_command() -> None:
    """The GitHub Action's step inside the run (GITHUB_* variables, the Action's inputs as HEALING_*)."""
    _run(lambda: github_report(GitHubStep.from_env(os.environ)))


@action_app.command("github-rerun")
def github_rerun_command() -> None:
    """The Action in `mode: rerun`, in a workflow on `workflow_run: completed`: carry out the decision."""
    _run(lambda: github_rerun(GitHubStep.from_env(os.environ, need_run=False)))


@action_app.command("gitlab")
def gitlab_command() -> None:
    """The GitLab template's `.post` job (CI_* variables, HEALING_* variables)."""
    _run(lambda: gitlab_job(GitLabJob.from_env(os.environ)))
