"""``guard ingest junit``: JUnit XML reports to the ``ci.tests`` topic (or to stdout as JSON lines).

Every file is parsed first; a bad file is reported on stderr and the command exits 1 at the end, while
the records of the good files are still sent. Message key: the test id; value: ``TestResult.to_json()``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..patterns.tokenize import redact_test_result
from ..schemas import PROVIDERS, TestResult
from ..settings import ConfigError, load_settings
from .junit import JUnitError, parse_junit

ingest_app = typer.Typer(no_args_is_help=True, help="Ingest test results from CI into the guard's topics.")


@ingest_app.callback()
def _ingest() -> None:
    """Ingest test results from CI into the guard's topics."""


def ci_commit() -> str | None:
    """The commit under test, from the CI platform's environment (GitHub, GitLab, Jenkins git plugin,
    CircleCI)."""
    for var in ("GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT", "CIRCLE_SHA1"):
        if os.environ.get(var):
            return os.environ[var].strip()
    return None


def split_repo(full: str) -> tuple[str, str]:
    """``owner/repo`` (GitLab subgroups keep their '/' in the owner) -> ``(owner, repo)``."""
    owner, sep, repo = full.strip().strip("/").rpartition("/")
    if not sep or not owner or not repo:
        raise ValueError(f"expected owner/repo, got {full!r}")
    return owner, repo


def redacted(results: list[TestResult]) -> list[TestResult]:
    """``results`` with secrets removed from test ids and failure messages: ci.tests is read by more
    people than the CI log ."""
    return [redact_test_result(r) for r in results]


async def send_results(results: list[TestResult], bootstrap: str, topic: str, *,
                       request_timeout_ms: int = 30000, client_options: dict[str, Any] | None = None) -> int:
    """Send ``results`` (secrets redacted) on ``topic`` keyed by test id; returns how many were
    acknowledged."""
    from aiokafka import AIOKafkaProducer

    results = redacted(results)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                                request_timeout_ms=request_timeout_ms, **(client_options or {}))
    try:
        await producer.start()
        futures = [await producer.send(topic, key=r.test_id.encode(), value=r.to_json()) for r in results]
        for f in futures:
            await f
    finally:
        await producer.stop()
    return len(results)


@ingest_app.command("junit")
def junit(
    files: list[Path] = typer.Argument(..., help="JUnit XML reports (pytest, Surefire, Gradle, jest-junit)."),
    provider: str = typer.Option(..., "--provider", help=f"CI platform: {', '.join(PROVIDERS)}."),
    repo: str = typer.Option(..., "--repo", help="owner/repo (GitLab subgroups: group/sub/project)."),
    job_id: str = typer.Option(..., "--job-id", help="The platform's job id."),
    attempt: int = typer.Option(1, "--attempt", min=1, help="Run attempt, 1-based."),
    head_sha: Optional[str] = typer.Option(None, "--head-sha",
                                           help="Commit under test (default: GITHUB_SHA, CI_COMMIT_SHA, GIT_COMMIT "
                                                "or CIRCLE_SHA1): a pass after a failure is flaky evidence only "
                                                "on the same commit."),
    broker: Optional[str] = typer.Option(None, "--broker", help="kafka://host:port (default: settings)."),
    topic_prefix: Optional[str] = typer.Option(None, "--topic-prefix", help="Prefix of the topic names."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the records as JSON lines; send nothing."),
    as_json: bool = typer.Option(False, "--json", help="Same as --dry-run: one JSON record per line."),
) -> None:
    """Parse JUnit XML reports and send one TestResult per test case to <prefix>ci.tests."""
    if provider not in PROVIDERS:
        raise typer.BadParameter(f"expected one of {', '.join(PROVIDERS)}, got {provider!r}",
                                 param_hint="--provider")
    try:
        owner, name = split_repo(repo)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--repo") from None
    results: list[TestResult] = []
    bad = 0
    for f in files:
        try:
            results.extend(parse_junit(f, provider=provider, owner=owner, repo=name, job_id=job_id,
                                       attempt=attempt, head_sha=head_sha or ci_commit()))
        except JUnitError as exc:
            bad += 1
            typer.echo(f"error: {exc}", err=True)
        except ValueError as exc:  # invalid job fields: the same for every file
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    if dry_run or as_json:
        out = sys.stdout.buffer
        for r in redacted(results):
            out.write(r.to_json() + b"\n")
        out.flush()
    elif results:
        try:
            settings = load_settings(None, broker_url=broker, topic_prefix=topic_prefix)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        topic = settings.topics.tests
        try:
            from ..kafka_auth import client_options

            sent = asyncio.run(send_results(results, settings.bootstrap, topic, client_options=client_options(settings)))
        except Exception as exc:  # noqa: BLE001 - any broker failure is reported, not a traceback
            typer.echo(f"error: could not send to {settings.broker_url} ({topic}): "
                       f"{type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"sent {sent} test results from {len(files) - bad} file(s) to {topic}")
    else:
        typer.echo(f"no test results to send from {len(files) - bad} file(s)")
    if bad:
        typer.echo(f"{bad} of {len(files)} file(s) could not be read", err=True)
        raise typer.Exit(1)
