"""``guard up``: the whole guard on this machine, in one command.

It starts a broker (unless ``--broker`` names one), then four processes of this same ``guard``: the
worker, the executor (dry run unless ``--live``), the webhook receiver and the REST API with the
dashboard. They share one warehouse: with an embedded one (chDB allows one process per data directory)
the API process owns it and writes ``guard.facts`` (``guard api --write-facts``) while the worker runs
with ``--no-facts``; with a ClickHouse server (``--clickhouse-dsn http://...``) the worker writes its facts
itself. It prints every address, a ready API key and the webhook secrets, shows each process's lines
prefixed with its name, and on Ctrl-C stops everything in reverse order.

What it learns -- per-test models, budgets, success rates, open job windows -- lives in the worker's
tables, whose changelogs are Kafka topics. So the broker decides what survives a restart:

* ``--broker kafka://...``: a broker you run; everything survives that it keeps.
* the default where Java is present (and this is a checkout with ``infra/kafka/kafka.sh``): the single-node
  Apache Kafka the project fetches with Maven, its data in ``<data-dir>/kafka``: a restart keeps it all.
* otherwise the embedded Tansu broker, in memory: ``guard up`` says that a restart forgets what the
  worker learned (the warehouse keeps its facts and the ROI figures).

Keys and secrets are made once and kept in the data directory (mode 0600): the command key that signs
the worker's and the API's commands, one API key for every repository, one webhook secret per platform.
"""

from __future__ import annotations

import faulthandler
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

__all__ = ["Child", "choose_broker", "up_command"]

#: loopback needs no proxy, whatever the environment says
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PROVIDERS = ("github", "gitlab", "jenkins", "circleci")


@dataclass
class Child:
    """One process of ``guard up``: its output printed with a name prefix, the last lines kept."""

    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    lines: list[str] = field(default_factory=list)  # every line, for the readiness checks (small: startup)
    _reader: threading.Thread | None = None

    def start(self, echo: Any) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = threading.Thread(target=self._read, args=(echo,), name=f"up-{self.name}", daemon=True)
        self._reader.start()

    def _read(self, echo: Any) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n").replace("\x1b[?25l", "").replace("\x1b[?25h", "")
            if not line.strip():
                continue
            self.tail.append(line)
            if len(self.lines) < 2000:
                self.lines.append(line)
            echo(self.name, line)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode


def choose_broker(given: str | None, data_dir: Path) -> tuple[str, str]:
    """(kind, why): ``external`` (``given``), ``kafka`` (Apache Kafka in ``data_dir``) or ``tansu``."""
    from .brokers import DEFAULT_KAFKA_SCRIPT

    if given and given != "embedded":
        return "external", f"the broker at {given}"
    if given == "embedded":
        return "tansu", "asked for (--broker embedded)"
    missing = [x for x in ("java", "mvn") if shutil.which(x) is None]
    if not DEFAULT_KAFKA_SCRIPT.is_file():
        return "tansu", ("Apache Kafka is started from a checkout of the project (infra/kafka/kafka.sh), and this "
                         "install has none")
    if missing:
        return "tansu", f"Apache Kafka needs Java 17 and Maven, and {' and '.join(missing)} is not on PATH"
    return "kafka", f"Apache Kafka (one node), its data in {data_dir / 'kafka'}"


def _secret_file(path: Path, make: Any) -> str:
    """The value kept in ``path`` (mode 0600), made by ``make()`` the first time."""
    if path.is_file():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    value = str(make())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    return value


def _api_key(data_dir: Path, keys_file: Path) -> str:
    """One key for every repository, made on the first ``guard up`` and shown every time."""
    from .rest.keys import ApiKeys

    keys = ApiKeys(keys_file)
    saved = data_dir / "up-api-key"
    if saved.is_file():
        token = saved.read_text(encoding="utf-8").strip()
        if token and keys.authenticate(token) is not None:
            return token
    _, token = keys.create(["*"])
    saved.unlink(missing_ok=True)
    return _secret_file(saved, lambda: token)


def _wait_http(url: str, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"the {child.name} stopped while starting")
        try:
            with _DIRECT.open(url, timeout=2) as r:
                if r.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the {child.name} did not answer {url} within {timeout:.0f} s")


def _wait_line(child: Child, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(child.lines):
            if prefix in line:
                return line
        if not child.alive():
            raise RuntimeError(f"the {child.name} stopped while starting")
        time.sleep(0.2)
    raise RuntimeError(f"the {child.name} did not start within {timeout:.0f} s")


def _wait_file(path: Path, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file():
            return
        if not child.alive():
            raise RuntimeError(f"the {child.name} stopped while starting")
        time.sleep(0.3)
    raise RuntimeError(f"the {child.name} did not start within {timeout:.0f} s")


def up_command(
    broker: Optional[str] = typer.Option(
        None, "--broker", help="kafka://host:port of your broker; 'embedded': Tansu in memory; default: Apache "
                               "Kafka in the data directory where Java is present, else Tansu"),
    clickhouse_dsn: Optional[str] = typer.Option(
        None, "--clickhouse-dsn", help="warehouse: http(s)://user:pass@host:8123 (a server) or chdb:///dir "
                                       "(default: chDB in the data directory)"),
    data_dir: Path = typer.Option(Path(".guard/up"), "--data-dir", help="where everything guard up keeps lives"),
    host: str = typer.Option("127.0.0.1", "--host", help="address the API and the webhook receiver listen on"),
    api_port: int = typer.Option(8000, "--api-port", min=0, help="REST API and dashboard (0: any free port)"),
    webhook_port: int = typer.Option(8080, "--webhook-port", min=0, help="webhook receiver (0: any free port)"),
    live: bool = typer.Option(False, "--live", help="the executor calls the CI and notification APIs (default: "
                                                    "dry run, it only says what it would do)"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="healing-config.yml (or GUARD_CONFIG)"),
    start_timeout: float = typer.Option(180.0, "--start-timeout", min=1.0,
                                        help="seconds each part may take to start"),
) -> None:
    """Start the whole guard locally: broker, worker, executor, webhook receiver, REST API + dashboard."""
    from rich.console import Console

    from .brokers import BrokerError, KafkaBroker, TansuBroker, free_port
    from .rest.serve import url_of
    from .settings import ConfigError, load_settings
    from .signing import write_key

    out = Console(highlight=False, soft_wrap=True)
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        load_settings(config)  # a bad config file stops here, before anything starts
    except ConfigError as exc:
        out.print(f"configuration error: {exc}", markup=False)
        raise typer.Exit(2) from None
    dsn = clickhouse_dsn or f"chdb://{data_dir / 'warehouse'}"
    embedded_warehouse = dsn.startswith("chdb:")
    if embedded_warehouse:
        import importlib.util

        if importlib.util.find_spec("chdb") is None:
            out.print("the embedded warehouse needs chDB: pip install 'self-healing-pipeline-guard[embedded]', or "
                      "give --clickhouse-dsn http://user:pass@host:8123", markup=False)
            raise typer.Exit(2)

    kind, why = choose_broker(broker, data_dir)
    broker_handle: Any = None
    lock = threading.Lock()

    def echo(name: str, line: str) -> None:
        with lock:
            out.print(f"[dim]{name:>8} |[/dim] ", end="")
            out.print(line, markup=False)

    children: list[Child] = []

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops everything as Ctrl-C does

    signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C stops everything whatever this process inherited: a parent that ignored SIGINT or blocked it
    # (both pass to a child) left it with a guard up that did not stop (seen under the test suite: it slept on)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    # `kill -USR1 <pid>` prints where every thread of this process is (for a guard up that does not stop)
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    def shutdown(code: int) -> None:
        for c in reversed(children):
            if c.alive():
                out.print(f"stopping the {c.name}...", markup=False)
            c.stop()
        if broker_handle is not None:
            out.print("stopping the broker...", markup=False)
            try:
                broker_handle.stop()
            except BrokerError as exc:
                out.print(f"the broker did not stop cleanly: {exc}", markup=False)
        raise typer.Exit(code)

    try:
        if kind == "external":
            assert broker is not None
            url = broker
        elif kind == "kafka":
            port_file = data_dir / "kafka.port"
            port = int(port_file.read_text()) if port_file.is_file() else free_port()
            out.print(f"starting Apache Kafka on 127.0.0.1:{port} (data in {data_dir / 'kafka'}; the first start "
                      "fetches its jars with Maven, a minute or two)...", markup=False)
            broker_handle = KafkaBroker(data_dir / "kafka", port=port, start_timeout=start_timeout)
            url = "kafka://" + broker_handle.start()
            port_file.write_text(str(broker_handle.port))
        else:
            out.print(f"starting the embedded broker (Tansu, in memory): {why}", markup=False)
            broker_handle = TansuBroker(log_file=data_dir / "tansu.log")
            url = "kafka://" + broker_handle.start()
    except BrokerError as exc:
        out.print(f"the broker did not start: {exc}", markup=False)
        shutdown(1)

    settings = load_settings(config, broker_url=url, clickhouse_dsn=dsn)
    from .streams.topics import ensure_topics

    import asyncio

    try:
        asyncio.run(ensure_topics(settings))
    except Exception as exc:
        out.print(f"cannot create the guard's topics on {settings.bootstrap}: {exc}", markup=False)
        shutdown(1)

    keys_file = data_dir / "api-keys.json"
    command_keys = data_dir / "command-keys"
    if not command_keys.is_file():
        write_key(command_keys, "k1")
    api_key = _api_key(data_dir, keys_file)
    hooks = {p: _secret_file(data_dir / "webhook-secrets" / p, lambda: secrets.token_urlsafe(24)) for p in PROVIDERS}

    api_port = api_port or free_port(host)
    webhook_port = webhook_port or free_port(host)
    env = {**os.environ, "GUARD_BROKER_URL": url, "GUARD_CLICKHOUSE_DSN": dsn,
           "GUARD_COMMAND_KEY_FILE": str(command_keys), "GUARD_API_KEYS_FILE": str(keys_file),
           "PYTHONUNBUFFERED": "1"}
    env.pop("GUARD_COMMAND_KEY", None)  # the key file is the one keyring of these processes
    if config is not None:
        env["GUARD_CONFIG"] = str(config)
    guard = [sys.executable, "-m", "healing_guard.cli"]
    status_file = data_dir / "worker" / "status.json"
    status_file.unlink(missing_ok=True)
    worker_args = [*guard, "worker", "--broker", url, "--clickhouse-dsn", dsn, "--no-create-topics"]
    if embedded_warehouse:
        worker_args.append("--no-facts")  # the API process owns chDB and writes guard.facts
    children += [
        Child("worker", worker_args, {**env, "GUARD_DATA_DIR": str(data_dir / "worker"),
                                      "GUARD_STATUS_FILE": str(status_file)}),
        Child("executor", [*guard, "executor", "--broker", url, "--data-dir", str(data_dir / "executor"),
                           *(["--live"] if live else [])], {**env, "GUARD_DATA_DIR": str(data_dir / "executor")}),
        Child("webhooks", [*guard, "webhook", "serve", "--host", host, "--port", str(webhook_port), "--broker", url],
              {**env, "GUARD_DATA_DIR": str(data_dir / "webhooks"),
               **{f"GUARD_WEBHOOK_SECRET_{p.upper()}": v for p, v in hooks.items()}}),
        Child("api", [*guard, "api", "--host", host, "--port", str(api_port), "--broker", url, "--clickhouse-dsn",
                      dsn, "--keys-file", str(keys_file), *(["--write-facts"] if embedded_warehouse else [])],
              {**env, "GUARD_DATA_DIR": str(data_dir)}),
    ]
    try:
        for c in children:
            c.start(echo)
        by = {c.name: c for c in children}
        _wait_file(status_file, by["worker"], start_timeout)
        _wait_line(by["executor"], "executor on ", start_timeout)
        _wait_http(f"{url_of(host, webhook_port)}/healthz", by["webhooks"], start_timeout)
        _wait_http(f"{url_of(host, api_port)}/health", by["api"], start_timeout)
    except RuntimeError as exc:
        out.print(f"guard up could not start: {exc}", markup=False)
        for c in children:
            if not c.alive() and c.tail:
                out.print(f"last lines of the {c.name}:", markup=False)
                for line in c.tail:
                    out.print(f"  {line}", markup=False)
        shutdown(1)
    except KeyboardInterrupt:
        shutdown(130)

    api = url_of(host, api_port)
    hooks_url = url_of(host, webhook_port)
    persistence = {
        "external": f"what the worker learns lives on {url} (its table changelogs) and survives a restart as "
                    "long as that broker keeps it",
        "kafka": f"what the worker learns (per-test models, budgets, success rates, open windows) is kept by "
                 f"Apache Kafka in {data_dir / 'kafka'} and survives a restart",
        "tansu": "the embedded broker keeps everything in memory: a restart forgets what the worker learned "
                 "(per-test models, budgets, success rates, open windows) and any message not yet processed; "
                 "the warehouse keeps its facts and ROI figures. Install Java 17 and Maven (or pass --broker) "
                 "to keep them",
    }[kind]
    summary = [
        "",
        "the guard is up",
        f"  broker      {url}  ({why})",
        f"  warehouse   {dsn if embedded_warehouse else 'ClickHouse server'} "
        f"({'owned by the API process' if embedded_warehouse else 'the worker writes its facts'})",
        f"  REST API    {api}   OpenAPI {api}/docs   metrics {api}/metrics",
        f"  dashboard   {api}/dashboard#key={api_key}",
        f"  API key     {api_key}   (every repository; kept in {data_dir / 'up-api-key'})",
        f"  webhooks    {hooks_url}/webhooks/{{github,gitlab,jenkins,circleci}}; secrets in "
        f"{data_dir / 'webhook-secrets'}/",
        f"  executor    {'LIVE: it calls the platforms' if live else 'dry run: it says what it would do (--live acts)'}",
        f"  keeps       {persistence}",
        "",
        "send it a failed job:",
        f"  guard forward --broker {url} --provider github --repo acme/web --job-id 1 --job-name build "
        "--conclusion failure build.log",
        f"watch what it finds and does:   guard watch --broker {url}",
        f"the ROI report:                 curl -H 'Authorization: Bearer {api_key}' {api}/api/v1/repos/acme/web/roi",
        "Ctrl-C stops everything",
        "",
    ]
    with lock:
        for line in summary:
            out.print(line, markup=False)
    try:
        while True:
            dead = [c for c in children if not c.alive()]
            if dead:
                for c in dead:
                    out.print(f"the {c.name} stopped (exit {c.proc.returncode if c.proc else '?'}); its last lines:",
                              markup=False)
                    for line in c.tail:
                        out.print(f"  {line}", markup=False)
                shutdown(1)
            time.sleep(0.5)
    except KeyboardInterrupt:
        out.print("", markup=False)
        shutdown(0)
