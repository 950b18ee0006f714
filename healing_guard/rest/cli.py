"""``guard api`` (serve the REST API) and ``guard api-keys`` (create, list, revoke keys).

The lead registers these on the main ``guard`` app::

    app.command("api", help=...)(api_command)
    app.add_typer(keys_app, name="api-keys")
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Optional

import typer

__all__ = ["api_command", "keys_app", "keys_path"]

keys_app = typer.Typer(no_args_is_help=True, help="REST API keys: create (shown once), list, revoke.")


def _fail(message: str, code: int = 2) -> typer.Exit:
    sys.stderr.write(f"error: {message}\n")
    return typer.Exit(code)


def _load(config: Optional[Path], **overrides: Any) -> Any:
    from ..settings import ConfigError, load_settings

    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        raise _fail(f"configuration error: {exc}") from None


def keys_path(settings: Any) -> Path:
    """``api.keys_file``, or ``<data_dir>/api-keys.json`` when it is empty."""
    return Path(settings.api_keys_file) if settings.api_keys_file else Path(settings.data_dir) / "api-keys.json"


ConfigOpt = typer.Option(None, "--config", "-c", help="healing-config.yml (or GUARD_CONFIG)")
KeysFileOpt = typer.Option(None, "--keys-file", help="API keys file (api.keys_file; default <data_dir>/api-keys.json)")


def api_command(
    host: Optional[str] = typer.Option(None, "--host", help="address to listen on (api.host; 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, "--port", help="port to listen on (api.port; 8000)"),
    config: Optional[Path] = ConfigOpt,
    broker: Optional[str] = typer.Option(
        None, "--broker", help="kafka://host:port for heal requests (GUARD_BROKER_URL); 'embedded': read-only API"),
    clickhouse_dsn: Optional[str] = typer.Option(
        None, "--clickhouse-dsn", help="warehouse DSN: chdb:///dir or http://user:pass@host:8123"),
    topic_prefix: Optional[str] = typer.Option(None, "--topic-prefix", help="prefix of every topic name"),
    database: Optional[str] = typer.Option(None, "--database",
                                           help="ClickHouse database (clickhouse.database; `guard demo` writes guard_demo)"),
    keys_file: Optional[Path] = KeysFileOpt,
    metrics_auth: Optional[bool] = typer.Option(
        None, "--metrics-auth/--no-metrics-auth",
        help="/metrics needs an API key for every repository (api.metrics_auth; off: open, scrape it privately)"),
    write_facts: bool = typer.Option(
        False, "--write-facts",
        help="also write guard.facts into the warehouse (the worker then runs with --no-facts): chDB allows one "
             "process per data directory, so with an embedded warehouse the API process owns it (guard up)"),
) -> None:
    """Serve the REST API (health, failure analyses, ROI, heal requests, /metrics, /dashboard)."""
    s = _load(config, api_host=host, api_port=port, broker_url=broker, clickhouse_dsn=clickhouse_dsn,
              topic_prefix=topic_prefix, api_keys_file=str(keys_file) if keys_file else None,
              clickhouse_database=database, api_metrics_auth=metrics_auth)
    from ..warehouse import MigrationError, WarehouseConnectionError, connect, migrate, mask_dsn
    from .app import KafkaCommandSink, create_app
    from .keys import ApiKeys, KeyFileError

    keys = ApiKeys(keys_path(s))
    try:
        n = len(keys)
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    if n == 0:
        sys.stderr.write(f"warning: no API keys in {keys.path}: every /api/v1 request will get 401; create one "
                         "with `guard api-keys create --repo owner/repo`\n")
    try:
        client = connect(s.clickhouse_dsn)
        migrate(client, s.clickhouse_database)
    except WarehouseConnectionError as exc:
        hint = ""
        if s.clickhouse_dsn.startswith("chdb:") and "in use by another process" in str(exc):
            hint = ("; when that is `guard worker`: stop the worker, or run both against a ClickHouse server "
                    "(--clickhouse-dsn http://user:pass@host:8123)")
        raise _fail(f"{exc}{hint}") from None
    except MigrationError as exc:
        raise _fail(f"cannot migrate the warehouse at {mask_dsn(s.clickhouse_dsn)}: {exc}") from None
    from ..warehouse.read import WarehouseReader  # the read layer; imported late like the warehouse client

    reader = WarehouseReader.from_settings(client, s)
    sink = None if s.broker_url == "embedded" else KafkaCommandSink(s)
    if sink is None:
        sys.stderr.write("note: broker 'embedded': heal requests will answer 503 (no command sink); give "
                         "--broker kafka://host:port to queue them\n")
    if s.api_host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(f"note: listening on {s.api_host}: API keys travel in clear text over plain HTTP; put "
                         "a TLS proxy in front\n")
    app = create_app(lambda: reader, keys=keys, actions=sink, settings=s, metrics_auth=s.api_metrics_auth)

    from .serve import make_server, url_of

    def ready(host: str, port: int) -> None:
        url = url_of(host, port)
        sys.stderr.write(f"REST API on {url}  (dashboard {url}/dashboard, OpenAPI {url}/docs, metrics {url}/metrics; "
                         f"{n} API key(s) in {keys.path}; warehouse {mask_dsn(s.clickhouse_dsn)} database "
                         f"{s.clickhouse_database}; heal requests "
                         f"{'to ' + s.bootstrap if sink is not None else 'refused (no broker)'}); Ctrl-C stops\n")
        sys.stderr.flush()

    server = make_server(app, host=s.api_host, port=s.api_port, log_level=s.log_level, on_ready=ready)
    if write_facts and s.broker_url == "embedded":
        raise _fail("--write-facts reads guard.facts: give --broker kafka://host:port")
    try:
        if write_facts:
            asyncio.run(_serve_and_write_facts(server, s))
        else:
            server.run()
    except OSError as exc:  # port in use, address not available
        raise _fail(f"cannot listen on {s.api_host}:{s.api_port}: {exc}; pick another --port") from None


async def _serve_and_write_facts(server: Any, s: Any) -> None:
    """The API and the fact writer in one process (one owner of an embedded warehouse)."""
    from ..warehouse import FactWriter, connect
    from ..warehouse.fact_consumer import write_facts

    stop = asyncio.Event()
    task = asyncio.create_task(write_facts(s, lambda: FactWriter(connect(s.clickhouse_dsn), s.clickhouse_database),
                                           stop))
    try:
        await server.serve()
    finally:
        stop.set()
        try:
            rows = await asyncio.wait_for(task, timeout=30)
            sys.stderr.write(f"wrote {rows} fact row(s) from guard.facts\n")
        except Exception as exc:  # stopped anyway: what was not committed is read again next time
            sys.stderr.write(f"the fact writer stopped: {exc}\n")


@keys_app.callback()
def _keys_main() -> None:
    """REST API keys: create (shown once), list, revoke."""


@keys_app.command("create")
def create_key(
    repo: Optional[list[str]] = typer.Option(
        None, "--repo", "-r", help="owner/repo (or owner/*) the key may use, on --provider; or provider:owner/repo; "
                                   "repeatable"),
    provider: str = typer.Option("github", "--provider", "-p",
                                 help="the platform of --repo values that name none: github, gitlab, jenkins, circleci"),
    all_repos: bool = typer.Option(False, "--all", help="every repository on every platform (scope *)"),
    config: Optional[Path] = ConfigOpt,
    keys_file: Optional[Path] = KeysFileOpt,
) -> None:
    """Create a key; the key itself is printed once and only its hash is stored."""
    from .keys import ApiKeys, KeyFileError

    if not repo and not all_repos:
        raise _fail("give --repo owner/repo (repeatable) or --all")
    if repo and all_repos:
        raise _fail("--all already covers every repository; drop --repo or --all")
    s = _load(config, api_keys_file=str(keys_file) if keys_file else None)
    keys = ApiKeys(keys_path(s))
    try:
        key_id, token = keys.create(["*"] if all_repos else list(repo or []), provider)
    except ValueError as exc:
        raise _fail(f"--repo: {exc}") from None
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    scopes = next((k.scopes for k in keys.list() if k.id == key_id), ())
    sys.stderr.write(f"key {key_id} for {'every repository' if all_repos else ', '.join(scopes)} in "
                     f"{keys.path}; it is shown once, store it now:\n")
    sys.stdout.write(token + "\n")


@keys_app.command("list")
def list_keys(config: Optional[Path] = ConfigOpt, keys_file: Optional[Path] = KeysFileOpt,
              json_out: bool = typer.Option(False, "--json", help="JSON lines instead of a table")) -> None:
    """List keys (ids, repositories, created, revoked); never the keys themselves."""
    import json

    from .keys import ApiKeys, KeyFileError

    s = _load(config, api_keys_file=str(keys_file) if keys_file else None)
    try:
        rows = ApiKeys(keys_path(s)).list()
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    if json_out:
        for k in rows:
            sys.stdout.write(json.dumps(k.public()) + "\n")
        return
    if not rows:
        sys.stderr.write("no API keys yet: `guard api-keys create --repo owner/repo`\n")
        return
    sys.stdout.write(f"{'id':<14}{'created':<22}{'revoked':<22}repositories\n")
    for k in rows:
        sys.stdout.write(f"{k.id:<14}{k.created:<22}{k.revoked or '-':<22}{', '.join(k.scopes)}\n")


@keys_app.command("revoke")
def revoke_key(key_id: str = typer.Argument(..., help="the key id shown by create / list"),
               config: Optional[Path] = ConfigOpt, keys_file: Optional[Path] = KeysFileOpt) -> None:
    """Revoke a key; a running API refuses it from its next request on."""
    from .keys import ApiKeys, KeyFileError

    s = _load(config, api_keys_file=str(keys_file) if keys_file else None)
    try:
        ok = ApiKeys(keys_path(s)).revoke(key_id)
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    if not ok:
        raise _fail(f"no key {key_id!r} (see `guard api-keys list`)", 1)
    sys.stderr.write(f"key {key_id} revoked\n")
