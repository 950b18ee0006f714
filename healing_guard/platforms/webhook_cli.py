"""``guard webhook``: try the webhook normalizer on a saved payload, without a receiver."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import orjson
import typer

from .webhooks import WebhookError, parse

webhook_app = typer.Typer(no_args_is_help=True, help="CI webhooks: receive them (serve) or parse saved payloads into job records (parse).")

PROVIDER_CHOICES = ("github", "gitlab", "jenkins", "circleci")
# the keys printed first, in this order; the rest of JobEvent follows
FIRST_KEYS = ("provider", "repo", "run_id", "job_id", "job_name", "attempt", "status", "conclusion",
              "started_at", "completed_at", "runner_labels", "url")


@webhook_app.callback()
def _main() -> None:
    """CI webhooks: receive them (serve) or parse saved payloads into job records (parse)."""


def record_line(ev: Any) -> bytes:
    """One JSON line for a JobEvent: ``repo`` is ``owner/repo``; ``owner`` and ``job_key`` follow."""
    d = ev.to_dict()
    out: dict[str, Any] = {k: d[k] for k in FIRST_KEYS if k in d}
    out["repo"] = ev.repo_full
    for k, v in d.items():
        if k not in out and k != "repo":
            out[k] = v
    out["job_key"] = ev.job_key
    return orjson.dumps(out)


def _parse_headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition(":")
        if not sep or not name.strip():
            typer.echo(f"error: --header: expected 'Name: value', got {raw!r}", err=True)
            raise typer.Exit(2)
        headers[name.strip()] = value.strip()
    return headers


@webhook_app.command("parse")
def parse_cmd(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="the raw webhook body (JSON)"),
    provider: str = typer.Option(..., "--provider", "-p", help="github, gitlab, jenkins or circleci"),
    header: Optional[list[str]] = typer.Option(
        None, "--header", "-H",
        help="a request header 'Name: value' (repeatable), e.g. 'X-GitHub-Event: workflow_job'; "
             "without X-GitHub-Event / X-Gitlab-Event the event type is inferred from the payload"),
    pipeline_builds: bool = typer.Option(False, "--pipeline-builds",
                                         help="GitLab: one record per job of a Pipeline Hook"),
) -> None:
    """Print each job record of one webhook delivery as a JSON line."""
    p = provider.strip().lower()
    if p not in PROVIDER_CHOICES:
        typer.echo(f"error: provider: unknown provider {provider!r}; expected one of "
                   f"{', '.join(PROVIDER_CHOICES)}", err=True)
        raise typer.Exit(2)
    headers = _parse_headers(header or [])
    body = file.read_bytes()
    try:
        result = parse(p, headers, body, pipeline_builds=pipeline_builds)
    except WebhookError as exc:
        typer.echo(f"error: {exc.field or 'body'}: {exc.reason}", err=True)
        raise typer.Exit(2) from None
    for ev in result.events:
        sys.stdout.write(record_line(ev).decode() + "\n")
    sys.stdout.flush()
    if result.skipped:
        typer.echo(f"skipped ({result.event or 'unknown event'}): {result.skipped}", err=True)


@webhook_app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8080, "--port", help="port to listen on"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="healing-config.yml (or GUARD_CONFIG)"),
    broker: Optional[str] = typer.Option(None, "--broker", help="kafka://host:port (GUARD_BROKER_URL)"),
    topic_prefix: Optional[str] = typer.Option(None, "--topic-prefix", help="prefix of every topic name"),
) -> None:
    """Receive platform webhooks on POST /webhooks/{github,gitlab,jenkins,circleci} and publish ci.jobs.

    Secrets come from GUARD_WEBHOOK_SECRET_GITHUB, _GITLAB, _JENKINS and _CIRCLECI; a platform without
    a secret has every delivery refused (401).
    """
    import asyncio
    import os

    from ..settings import ConfigError, load_settings
    from .receiver import SECRET_ENV, serve

    try:
        s = load_settings(config, broker_url=broker, topic_prefix=topic_prefix)
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        raise typer.Exit(2) from None
    if s.broker_url == "embedded":
        sys.stderr.write("webhook serve needs a broker URL (--broker kafka://host:port)\n")
        raise typer.Exit(2)
    secrets = {p: os.environ.get(var, "") for p, var in SECRET_ENV.items()}
    missing = [var for p, var in SECRET_ENV.items() if not secrets[p]]
    if len(missing) == len(SECRET_ENV):
        sys.stderr.write(f"no webhook secret is set ({', '.join(missing)}): every delivery would be refused\n")
        raise typer.Exit(2)
    try:
        asyncio.run(serve(s, host=host, port=port, secrets=secrets))
    except KeyboardInterrupt:
        pass
