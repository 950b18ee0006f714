"""``guard``: the command line. Builds the one Settings object and hands it to the parts it runs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Optional

import orjson
import typer
from rich.console import Console

from .settings import ConfigError, Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Self-healing pipeline guard: diagnoses failed CI jobs and sends cost-aware fixes.")
schemas_app = typer.Typer(no_args_is_help=True, help="Record schemas of the guard's topics.")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the guard.")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")
console = Console()
err = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="healing-config.yml (or GUARD_CONFIG)")
BrokerOpt = typer.Option(None, "--broker", help="kafka://host:port, or 'embedded' (GUARD_BROKER_URL)")
DsnOpt = typer.Option(None, "--clickhouse-dsn", help="chdb://PATH or http(s)://host:port (GUARD_CLICKHOUSE_DSN)")
PrefixOpt = typer.Option(None, "--topic-prefix", help="prefix of every topic name (GUARD_TOPIC_PREFIX)")


def _settings(config: Optional[Path], **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def worker(
    config: Optional[Path] = ConfigOpt,
    broker: Optional[str] = BrokerOpt,
    clickhouse_dsn: Optional[str] = DsnOpt,
    topic_prefix: Optional[str] = PrefixOpt,
    app_id: Optional[str] = typer.Option(None, "--app-id", help="consumer group / app id (GUARD_APP_ID)"),
    partitions: Optional[int] = typer.Option(None, "--partitions", help="partitions of every topic"),
    no_facts: bool = typer.Option(False, "--no-facts", help="do not write facts to ClickHouse from this worker"),
    create_topics: bool = typer.Option(True, "--create-topics/--no-create-topics",
                                       help="create missing topics before starting"),
    log_level: Optional[str] = typer.Option(None, "--log-level", help="debug, info, warning or error"),
) -> None:
    """Run a stream worker: diagnoses jobs, learns test flakiness, emits commands and facts."""
    from .brokers import TansuBroker
    from .streams.guard import build_guard
    from .streams.topics import ensure_topics

    s = _settings(config, broker_url=broker, clickhouse_dsn=clickhouse_dsn, topic_prefix=topic_prefix,
                  app_id=app_id, partitions=partitions, log_level=log_level,
                  facts_enabled=False if no_facts else None)
    tansu = None
    if s.broker_url == "embedded":
        tansu = TansuBroker()
        s = _replace(s, broker_url="kafka://" + tansu.start())
        err.print(f"embedded broker (Tansu, memory only) on {s.bootstrap}")
    try:
        if create_topics:
            asyncio.run(ensure_topics(s))
        _run_worker(build_guard(s).app, s)
    finally:
        if tansu is not None:
            tansu.stop()


def _replace(s: Settings, **kw: Any) -> Settings:
    import dataclasses

    return dataclasses.replace(s, **kw)


def _run_worker(faust_app: Any, s: Settings) -> None:
    from faust import Worker

    faust_app.conf.worker_redirect_stdouts = False
    w = Worker(faust_app, loglevel=s.log_level.upper(), quiet=True, redirect_stdouts=False)
    try:
        w.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


@app.command()
def demo(
    jobs: int = typer.Option(300, "--jobs", help="sample jobs to replay"),
    seed: int = typer.Option(7, "--seed", help="seed of the sample traffic"),
    data_dir: Path = typer.Option(Path(".guard"), "--data-dir", help="where the chDB data directory lives"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the summary"),
    timeout: float = typer.Option(300.0, "--timeout", help="give up after this many seconds"),
) -> None:
    """Start the embedded broker and database, replay sample CI traffic, print findings and ROI."""
    from .demo import run_demo

    s = _settings(None, clickhouse_dsn=f"chdb://{data_dir.resolve() / 'chdb'}")
    code = run_demo(s, jobs=jobs, seed=seed, quiet=quiet, timeout=timeout, console=console)
    raise typer.Exit(code)


@schemas_app.command("export")
def schemas_export(directory: Path = typer.Argument(..., help="directory to write <topic>.schema.json into")) -> None:
    """Write a JSON Schema file per topic, for forwarder and executor teams in other languages."""
    from .schemas import TOPIC_RECORDS

    directory.mkdir(parents=True, exist_ok=True)
    for topic, rec in TOPIC_RECORDS.items():
        path = directory / f"{topic}.schema.json"
        path.write_bytes(orjson.dumps(rec.json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        console.print(f"wrote {path}")


@topics_app.command("create")
def topics_create(config: Optional[Path] = ConfigOpt, broker: Optional[str] = BrokerOpt,
                  topic_prefix: Optional[str] = PrefixOpt,
                  partitions: Optional[int] = typer.Option(None, "--partitions")) -> None:
    """Create the guard's topics (and table changelogs) with their partitions and configs."""
    from .streams.topics import ensure_topics, topic_specs

    s = _settings(config, broker_url=broker, topic_prefix=topic_prefix, partitions=partitions)
    if s.broker_url == "embedded":
        err.print("[red]topics create needs a real broker URL (--broker kafka://host:port)[/red]")
        raise typer.Exit(2)
    asyncio.run(ensure_topics(s))
    for name, (parts, _) in topic_specs(s).items():
        console.print(f"{name}  partitions={parts}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
