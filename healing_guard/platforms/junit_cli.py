"""``guard ingest junit``: JUnit XML reports to the ``ci.tests`` topic (or to stdout as JSON lines).

Every file is parsed first; a bad file is reported on stderr and the command exits 1 at the end, while
the records of the good files are still sent. The results are sent in batches (schemas/test_batch.py):
grouped by the partition of ``ci.tests`` their test ids hash to, as few messages as fit
:data:`~healing_guard.schemas.test_batch.BATCH_TARGET_BYTES` each, every message sent to its partition
explicitly and keyed by its first test id. :func:`send_results` does it for every producer of test
results (this command, the pytest plugin, ``guard forward --junit``). ``--dry-run`` prints one
``TestResult`` per line instead (what the batches hold, readable; their layout needs the topic's
partition count, which only the broker knows).
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from ..patterns.tokenize import redact_test_result
from ..schemas import PROVIDERS, TestResult
from ..schemas.test_batch import encode_batches
from ..settings import ConfigError, load_settings
from .junit import JUnitError, one_run, parse_junit

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


def plural(n: int, word: str) -> str:
    """``1 message``, ``1,234 messages``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


@dataclass(frozen=True)
class Sent:
    """What :func:`send_results` sent: how many test results, in how many messages."""

    results: int
    messages: int

    def __str__(self) -> str:
        return f"{plural(self.results, 'test result')} in {plural(self.messages, 'message')}"


class TopicUnavailable(RuntimeError):
    """The broker knows no partitions of the test results' topic (it does not exist, or it is not
    readable by this client): there is no partition to group the results by."""


def describe_error(exc: BaseException) -> str:
    """A send failure for a user: the reason alone where the guard wrote it, else the error's type too."""
    return str(exc) if isinstance(exc, TopicUnavailable) else f"{type(exc).__name__}: {exc}"


async def topic_partitions(producer: Any, topic: str) -> int:
    """How many partitions ``topic`` has, from the started ``producer``'s metadata."""
    from aiokafka.errors import UnknownTopicOrPartitionError

    try:
        parts = await producer.partitions_for(topic)
    except UnknownTopicOrPartitionError:
        parts = None
    if not parts:
        raise TopicUnavailable(f"topic {topic} does not exist on the broker or has no partitions (create the "
                               "guard's topics with `guard topics create`, or check the topic prefix)")
    return len(parts)


async def send_batches(producer: Any, results: list[TestResult], topic: str) -> Sent:
    """Send ``results`` (secrets redacted first) on ``topic`` with a started ``producer``: in batches
    grouped by the partition their test ids hash to, each to that partition, keyed by its first test id
    (:func:`~healing_guard.schemas.test_batch.encode_batches`); returns once the broker acknowledged
    every message."""
    results = redacted(results)
    if not results:
        return Sent(0, 0)
    messages = encode_batches(results, await topic_partitions(producer, topic))
    futures = [await producer.send(topic, key=key, value=value, partition=partition)
               for partition, key, value in messages]
    for f in futures:
        await f
    return Sent(len(results), len(messages))


async def send_results(results: list[TestResult], bootstrap: str, topic: str, *,
                       request_timeout_ms: int = 30000, client_options: dict[str, Any] | None = None) -> Sent:
    """Send ``results`` (secrets redacted) on ``topic`` in batches (:func:`send_batches`) with a producer
    of its own; returns how many results, in how many messages, the broker acknowledged."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                                request_timeout_ms=request_timeout_ms, **(client_options or {}))
    try:
        await producer.start()
        return await send_batches(producer, results, topic)
    finally:
        await producer.stop()


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
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the test results as JSON lines, one TestResult "
                                                          "per line; send nothing."),
    as_json: bool = typer.Option(False, "--json", help="Same as --dry-run: one JSON TestResult per line."),
) -> None:
    """Parse JUnit XML reports and send their test results to <prefix>ci.tests, in as few messages as fit
    (batches grouped by the partition each test id hashes to)."""
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
    one_run(results)  # one job's reports: failed_in_run counts them all (and they share one batch per partition)
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
            typer.echo(f"error: could not send to {settings.broker_url} ({topic}): {describe_error(exc)}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"sent {sent} from {len(files) - bad} file(s) to {topic}")
    else:
        typer.echo(f"no test results to send from {len(files) - bad} file(s)")
    if bad:
        typer.echo(f"{bad} of {len(files)} file(s) could not be read", err=True)
        raise typer.Exit(1)
