"""Opt-in pytest plugin: report every test's result to the guard (``ci.tests``) at the end of the run.

On Kafka the results travel in batches (:func:`healing_guard.platforms.junit_cli.send_results`: as few
messages as fit, grouped by the partition each test id hashes to); the ``--guard-output`` file holds one
JSON ``TestResult`` per line.

Enable it explicitly (no entry point is registered)::

    pytest -p healing_guard.pytest_plugin --guard-broker kafka://kafka:9092 --guard-repo acme/app \\
        --guard-job-id "$JOB_ID"
    pytest -p healing_guard.pytest_plugin --guard-output results.jsonl ...   # JSON lines, no Kafka

It reports only when ``--guard-broker`` or ``--guard-output`` is given (so ``-p`` in ``addopts`` is
harmless on a laptop). ``--guard-provider`` defaults from the environment (``GITHUB_ACTIONS`` ->
github, ``GITLAB_CI`` -> gitlab, ``JENKINS_URL`` -> jenkins, ``CIRCLECI`` -> circleci); ``--guard-repo``
from ``GITHUB_REPOSITORY`` / ``CI_PROJECT_PATH``; ``--guard-job-id`` from ``CI_JOB_ID`` (GitLab; GitHub
does not expose its job id to the job); ``--guard-attempt`` from ``GITHUB_RUN_ATTEMPT``.

Outcome per test (one record per node id): a failed or skipped setup is ``error`` / ``skipped``; the
call phase decides otherwise (``xfail`` is ``skipped``, ``xpass`` is ``passed``, as in pytest's JUnit
XML); a failing teardown turns a passed test into ``error``. ``duration_s`` is setup + call + teardown
(pytest's JUnit default). Test ids: :func:`healing_guard.platforms.junit.pytest_id_from_nodeid`, the same
rule as the JUnit parser, so a run reported by this plugin and its ``--junitxml`` file give the same keys.

The guard never fails the test run: an unreachable broker or an unwritable file is a warning on the
terminal, and the exit status is pytest's own. Under pytest-xdist only the controller reports.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .platforms import junit as _junit  # not `from ... import pytest_*`: pytest would take it for a hook
from .patterns.tokenize import redact_test_result
from .schemas import PROVIDERS, TestResult

_ENV_PROVIDERS = (("GITHUB_ACTIONS", "github"), ("GITLAB_CI", "gitlab"), ("JENKINS_URL", "jenkins"),
                  ("CIRCLECI", "circleci"))
SEND_TIMEOUT_S = 30.0


def _default_provider() -> str | None:
    for var, provider in _ENV_PROVIDERS:
        if os.environ.get(var):
            return provider
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("healing-guard", "report test results to the self-healing pipeline guard")
    g.addoption("--guard-broker", default=None, metavar="URL",
                help="kafka://host:port: send the results to <prefix>ci.tests at the end of the run.")
    g.addoption("--guard-output", default=None, metavar="FILE",
                help="write the results to FILE instead of Kafka, one JSON TestResult per line.")
    g.addoption("--guard-repo", default=None, metavar="OWNER/REPO",
                help="repository (default: GITHUB_REPOSITORY or CI_PROJECT_PATH).")
    g.addoption("--guard-job-id", default=None, metavar="ID", help="the CI job id (default: CI_JOB_ID).")
    g.addoption("--guard-provider", default=None, choices=PROVIDERS,
                help="CI platform (default: from GITHUB_ACTIONS, GITLAB_CI, JENKINS_URL, CIRCLECI).")
    g.addoption("--guard-attempt", default=None, type=int, metavar="N",
                help="run attempt, 1-based (default: GITHUB_RUN_ATTEMPT or 1).")
    g.addoption("--guard-head-sha", default=None, metavar="SHA",
                help="commit under test (default: GITHUB_SHA, CI_COMMIT_SHA, GIT_COMMIT or CIRCLE_SHA1).")
    g.addoption("--guard-topic-prefix", default=None, metavar="PREFIX", help="prefix of the topic names.")


def pytest_configure(config: pytest.Config) -> None:
    opt = config.option
    if not (opt.guard_broker or opt.guard_output):
        return
    if hasattr(config, "workerinput"):  # pytest-xdist worker: the controller reports
        return
    repo = opt.guard_repo or os.environ.get("GITHUB_REPOSITORY") or os.environ.get("CI_PROJECT_PATH")
    job_id = opt.guard_job_id or os.environ.get("CI_JOB_ID")
    provider = opt.guard_provider or _default_provider()
    missing = [f for f, v in (("--guard-repo", repo), ("--guard-job-id", job_id),
                              ("--guard-provider", provider)) if not v]
    if missing:
        raise pytest.UsageError(f"healing-guard: {', '.join(missing)} required (not found in the environment)")
    owner, _, name = str(repo).strip("/").rpartition("/")
    if not owner or not name:
        raise pytest.UsageError(f"healing-guard: --guard-repo expects owner/repo, got {repo!r}")
    attempt = opt.guard_attempt or int(os.environ.get("GITHUB_RUN_ATTEMPT", "1") or 1)
    from .platforms.junit_cli import ci_commit

    config.pluginmanager.register(
        GuardReporter(config, provider=str(provider), owner=owner, repo=name, job_id=str(job_id),
                      attempt=max(1, attempt), head_sha=opt.guard_head_sha or ci_commit()), "healing-guard-reporter")


def _message(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    longrepr = report.longrepr
    msg = None
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        msg = crash.message
    elif isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        msg = str(longrepr[2])
    elif longrepr:
        msg = next((ln.strip() for ln in str(longrepr).splitlines() if ln.strip()), None)
    if msg and report.when != "call" and report.failed:
        msg = f"failed on {report.when} with {msg!r}"
    return msg[:_junit.MAX_MESSAGE] if msg else None


class GuardReporter:
    """Collects one outcome per node id and reports them at the end of the session."""

    def __init__(self, config: pytest.Config, *, provider: str, owner: str, repo: str, job_id: str,
                 attempt: int, head_sha: str | None = None) -> None:
        self.config = config
        self.job = dict(provider=provider, owner=owner, repo=repo, job_id=job_id, attempt=attempt, head_sha=head_sha)
        self.tests: dict[str, dict[str, Any]] = {}
        self.status: str | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        try:
            self._record(report)
        except Exception as exc:  # noqa: BLE001 - never break the user's run
            self.status = f"healing-guard: could not record {report.nodeid}: {exc}"

    def _record(self, report: pytest.TestReport) -> None:
        if report.outcome not in ("passed", "failed", "skipped"):  # e.g. pytest-rerunfailures' "rerun"
            return
        t = self.tests.setdefault(report.nodeid, {"outcome": None, "message": None, "duration": 0.0})
        t["duration"] += float(getattr(report, "duration", 0.0) or 0.0)
        xfail = hasattr(report, "wasxfail")
        if report.when == "setup":
            if report.failed:
                t["outcome"], t["message"] = "error", _message(report)
            elif report.skipped:
                t["outcome"] = "skipped"
        elif report.when == "call":
            if report.failed:
                t["outcome"], t["message"] = "failed", _message(report)
            elif report.skipped:
                t["outcome"] = "skipped"
            else:
                t["outcome"] = "passed"
            if xfail and report.skipped:
                t["outcome"] = "skipped"
        elif report.when == "teardown" and report.failed and t["outcome"] in (None, "passed"):
            t["outcome"], t["message"] = "error", _message(report)
        t["ts"] = time.time()

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # a module that fails to import is an error of the module (as in pytest's JUnit XML)
        if report.failed and report.nodeid:
            try:
                self.tests[report.nodeid] = {"outcome": "error", "message": _message(report) or "collection failure",
                                             "duration": 0.0, "ts": time.time()}
            except Exception:  # noqa: BLE001
                pass

    def results(self) -> list[TestResult]:
        failed = sum(1 for t in self.tests.values() if t["outcome"] in ("failed", "error"))
        out = []
        for nodeid, t in self.tests.items():
            if t["outcome"] is None:
                continue
            out.append(TestResult(test_id=_junit.pytest_id_from_nodeid(nodeid), outcome=t["outcome"],
                                  duration_s=round(t["duration"], 6), ts=t.get("ts"), message=t["message"],
                                  failed_in_run=failed, **self.job))  # type: ignore[arg-type]
        # assertion messages and parametrized ids may quote tokens: neither ci.tests nor the file gets them
        return [redact_test_result(r) for r in out]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        opt = self.config.option
        try:
            results = self.results()
            if opt.guard_output:
                path = Path(opt.guard_output)
                with path.open("wb") as fh:
                    for r in results:
                        fh.write(r.to_json() + b"\n")
                self.status = f"healing-guard: wrote {len(results)} test results to {path}"
            else:
                self.status = self._send(results)
        except Exception as exc:  # noqa: BLE001 - the guard never fails the test run
            self.status = f"healing-guard: WARNING: results not reported ({type(exc).__name__}: {exc}); " \
                          "the test run is not affected"

    def _send(self, results: list[TestResult]) -> str:
        from .platforms.junit_cli import describe_error, send_results
        from .settings import load_settings

        opt = self.config.option
        settings = load_settings(None, broker_url=opt.guard_broker, topic_prefix=opt.guard_topic_prefix)
        topic = settings.topics.tests
        box: dict[str, Any] = {}

        def run() -> None:  # own thread and loop: a running loop (pytest-asyncio) cannot interfere
            try:
                from .kafka_auth import client_options

                box["sent"] = asyncio.run(send_results(results, settings.bootstrap, topic,
                                                       request_timeout_ms=int(SEND_TIMEOUT_S * 1000 / 3),
                                                       client_options=client_options(settings)))
            except BaseException as exc:  # noqa: BLE001
                box["error"] = exc

        th = threading.Thread(target=run, name="healing-guard-send", daemon=True)
        th.start()
        th.join(SEND_TIMEOUT_S)
        if th.is_alive():
            raise TimeoutError(f"{settings.broker_url} did not answer in {SEND_TIMEOUT_S:.0f} s")
        if "error" in box:
            exc = box["error"]
            raise RuntimeError(f"cannot send to {settings.broker_url}: {describe_error(exc)}")
        return f"healing-guard: sent {box['sent']} to {topic}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.status:
            terminalreporter.write_line(self.status)
