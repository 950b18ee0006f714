"""``guard watch``: a live, human-readable feed of what the guard finds and does.

It reads the guard's output topics as a plain consumer (no consumer group: it commits nothing and takes
nothing from the worker or the executor) and prints one line per event:

* ``finding``  a diagnosed job: category, confidence, the first evidence line;
* ``command``  what the guard decided for it: action, estimated cost, reason;
* ``alert``    a command that tells people rather than acts on a job: budget alerts (``notify_budget``),
  incidents (``open_incident``), escalations, quarantines;
* ``outcome``  what the executor did with a command (succeeded, failed, refused, dry run...);
* ``dead``     a message the guard could not use, with the reason.

Filters: ``--repo owner/name`` (GitLab: ``group/sub/project``), ``--category``, ``--action`` (each
repeatable). ``--json`` prints ``{"kind", "topic", "record"}`` per line for scripts. Commands on a
signed install are checked with the executor's own gate and a refused one is marked: what is on
``guard.actions`` is not necessarily the guard's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import orjson
import typer

from .schemas import Command, DeadLetter, Finding, Outcome, SchemaError

__all__ = ["ALERT_ACTIONS", "Event", "Filters", "decode", "render", "watch"]

#: commands that tell people instead of acting on the job's pipeline: shown as alerts
ALERT_ACTIONS = frozenset({"notify_budget", "open_incident", "escalate", "quarantine_test", "release_test",
                           "notify_oncall", "notify_recovery"})


@dataclass(frozen=True)
class Event:
    kind: str  # finding, command, alert, outcome, dead
    topic: str
    record: dict[str, Any]
    ts: float
    note: str = ""  # e.g. why the executor's gate would refuse this command

    @property
    def repo(self) -> str:
        r = self.record
        if r.get("owner") and r.get("repo"):
            return f"{r['owner']}/{r['repo']}"
        key = str(r.get("job_key") or "")  # outcomes: provider/owner.../repo/job_id
        parts = key.split("/")
        return "/".join(parts[1:-1]) if len(parts) >= 4 else ""

    @property
    def category(self) -> str:
        return str(self.record.get("category") or "")

    @property
    def action(self) -> str:
        return str(self.record.get("action") or "")


@dataclass(frozen=True)
class Filters:
    repos: frozenset[str] = field(default_factory=frozenset)
    categories: frozenset[str] = field(default_factory=frozenset)
    actions: frozenset[str] = field(default_factory=frozenset)

    def match(self, e: Event) -> bool:
        if self.repos and e.repo not in self.repos:
            return False
        if self.categories and e.category not in self.categories:
            return False
        if self.actions and e.action not in self.actions:
            return False
        return True


def decode(kind_of_topic: Mapping[str, str], topic: str, value: bytes | None,
           check: Callable[[Any], str] | None = None, raw: Any = None) -> Event:
    """The event of one message; a message that does not parse is an event too (``dead`` with the
    reason), never an exception: the feed must not stop on one bad message."""
    kind = kind_of_topic[topic]
    try:
        if kind == "finding":
            rec = Finding.from_json(value or b"").to_dict()
        elif kind == "command":
            cmd = Command.from_json(value or b"")
            rec = cmd.to_dict()
            if cmd.action in ALERT_ACTIONS:
                kind = "alert"
        elif kind == "outcome":
            rec = Outcome.from_json(value or b"").to_dict()
        else:
            rec = DeadLetter.from_json(value or b"").to_dict()
            rec.pop("original_b64", None)  # up to 16 MiB: the feed says its size; guard.deadletter keeps it
    except (SchemaError, ValueError) as exc:
        return Event("dead", topic, {"reason": f"not a readable {kind} on {topic}: {exc}"}, time.time())
    note = check(raw) if (check is not None and kind in ("command", "alert")) else ""
    return Event(kind, topic, rec, float(rec.get("ts") or time.time()), note)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M:%S")


def _short(text: str, n: int) -> str:
    t = " ".join(str(text).split())
    return t if len(t) <= n else t[: n - 1] + "…"


def render(e: Event) -> str:
    """One plain line (no markup)."""
    r = e.record
    head = f"{_clock(e.ts)} {e.kind:<8}"
    if e.kind == "finding":
        first = r.get("evidence") or []
        line = f" | {_short(first[0]['text'], 100)}" if first else ""
        return (f"{head} {r['provider']}/{r['owner']}/{r['repo']}/{r['job_id']} #{r.get('attempt', 1)}  "
                f"{r.get('category')} ({float(r.get('confidence') or 0):.2f}){line}")
    if e.kind in ("command", "alert"):
        cost = float(r.get("estimated_cost_usd") or 0.0)
        price = f" ${cost:.2f}" if cost else ""
        mark = f"  [REFUSED by the executor's gate: {_short(e.note, 120)}]" if e.note else ""
        return (f"{head} {r['provider']}/{r['owner']}/{r['repo']}/{r['job_id']} #{r.get('attempt', 1)}  "
                f"{r.get('action')}{price} ({r.get('category')}, {float(r.get('confidence') or 0):.2f}): "
                f"{_short(r.get('reason', ''), 160)}{mark}")
    if e.kind == "outcome":
        http = f" HTTP {r['http_status']}" if r.get("http_status") else ""
        return (f"{head} {r.get('job_key')}  {r.get('action')} {r.get('status')}{http}: "
                f"{_short(r.get('detail', ''), 160)}")
    where = f" ({r.get('source_topic')})" if r.get("source_topic") else ""
    return f"{head}{where} {_short(r.get('reason', ''), 200)}"


def _as_json(e: Event) -> str:
    body: dict[str, Any] = {"kind": e.kind, "topic": e.topic, "record": e.record}
    if e.note:
        body["refused"] = e.note
    return orjson.dumps(body).decode()


async def watch(settings: Any, *, filters: Filters, as_json: bool, emit: Callable[[str], None],
                from_beginning: bool = False, limit: int | None = None, idle_timeout: float | None = None,
                kinds: Iterable[str] = ("finding", "command", "outcome", "dead")) -> int:
    """Print events until ``limit`` of them (after filtering) or ``idle_timeout`` seconds without a
    message (None: until cancelled). Returns how many were printed."""
    from aiokafka import AIOKafkaConsumer

    from .executor.authn import CommandGate
    from .kafka_auth import client_options
    from .signing import keyring_of

    t = settings.topics
    wanted = set(kinds)
    kind_of_topic = {name: kind for name, kind in ((t.findings, "finding"), (t.actions, "command"),
                                                   (t.outcomes, "outcome"), (t.deadletter, "dead"))
                     if kind in wanted}
    # the executor's own check, without from_settings' log lines, which speak of "this executor"
    gate = CommandGate(keyring_of(settings))

    def check(record: Any) -> str:
        if not gate.keyring:
            return ""
        try:
            gate.command(record)
        except SchemaError as exc:
            return exc.reason
        return ""

    consumer = AIOKafkaConsumer(*kind_of_topic, bootstrap_servers=settings.bootstrap, group_id=None,
                                enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                **client_options(settings))
    await consumer.start()
    shown = 0
    quiet_since = time.monotonic()
    try:
        while limit is None or shown < limit:
            batch = await consumer.getmany(timeout_ms=500, max_records=200)
            if not batch:
                if idle_timeout is not None and time.monotonic() - quiet_since >= idle_timeout:
                    break
                continue
            quiet_since = time.monotonic()
            records = sorted((r for rs in batch.values() for r in rs), key=lambda r: (r.timestamp, r.offset))
            for r in records:
                e = decode(kind_of_topic, r.topic, r.value, check, r)
                if not filters.match(e):
                    continue
                emit(_as_json(e) if as_json else render(e))
                shown += 1
                if limit is not None and shown >= limit:
                    break
    finally:
        await consumer.stop()
    return shown


def run(settings: Any, **kw: Any) -> int:
    try:
        return asyncio.run(watch(settings, **kw))
    except KeyboardInterrupt:
        return 0


def watch_command(
    repo: Optional[list[str]] = typer.Option(None, "--repo", help="only this repository (owner/name); repeatable"),
    category: Optional[list[str]] = typer.Option(None, "--category", help="only this failure category; repeatable"),
    action: Optional[list[str]] = typer.Option(None, "--action", help="only this action (retry_backoff, "
                                               "notify_budget, ...); repeatable"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line: kind, topic, record"),
    from_beginning: bool = typer.Option(False, "--from-beginning",
                                        help="start at the oldest message kept (default: from now on)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="stop after this many events"),
    idle_timeout: Optional[float] = typer.Option(None, "--idle-timeout", min=0.0,
                                                 help="stop after this many seconds without a message"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="healing-config.yml (or GUARD_CONFIG)"),
    broker: Optional[str] = typer.Option(None, "--broker", help="kafka://host:port (GUARD_BROKER_URL)"),
    topic_prefix: Optional[str] = typer.Option(None, "--topic-prefix", help="prefix of every topic name"),
) -> None:
    """Watch findings, commands, alerts, outcomes and dead letters as they happen (Ctrl-C stops)."""
    from rich.console import Console

    from .settings import ConfigError, load_settings

    err = Console(stderr=True, soft_wrap=True)
    try:
        s = load_settings(config, broker_url=broker, topic_prefix=topic_prefix)
    except ConfigError as exc:
        err.print(f"configuration error: {exc}", markup=False)
        raise typer.Exit(2) from None
    if s.broker_url == "embedded":
        err.print("guard watch reads the guard's broker: pass --broker kafka://host:port (guard up prints it)",
                  markup=False)
        raise typer.Exit(2)
    filters = Filters(frozenset(r.strip("/") for r in repo or ()), frozenset(category or ()), frozenset(action or ()))
    if not as_json:
        what = ", ".join(f"{k} {', '.join(sorted(v))}" for k, v in
                         (("repo", filters.repos), ("category", filters.categories), ("action", filters.actions)) if v)
        err.print(f"watching {s.bootstrap} ({'from the oldest message' if from_beginning else 'from now on'}"
                  f"{'; ' + what if what else ''}); Ctrl-C stops", markup=False)
    try:
        n = run(s, filters=filters, as_json=as_json, emit=lambda line: print(line, flush=True),
                from_beginning=from_beginning, limit=limit, idle_timeout=idle_timeout)
    except Exception as exc:  # the broker is not there, or refuses us: say so in one line
        err.print(f"cannot watch {s.bootstrap}: {exc}", markup=False)
        raise typer.Exit(1) from None
    if not as_json:
        err.print(f"{n} event(s)", markup=False)
