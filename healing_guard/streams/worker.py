"""Builds the whole worker: app, topics, tables and agents, from one Settings object."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import faust
import orjson

from ..agents import facts as facts_agent
from ..agents import incidents as incidents_agent
from ..agents import ingest as ingest_agent
from ..agents import test_results as tests_agent
from ..agents.context import AgentContext, Stats
from ..engine.core import Engine
from ..settings import Settings
from .app import create_app
from .tables import declare_tables
from .topics import declare_topics

log = logging.getLogger("healing_guard.worker")


@dataclass
class Guard:
    app: faust.App
    ctx: AgentContext
    agents: dict[str, Any]
    sink: facts_agent.FactSink | None

    @property
    def stats(self) -> Stats:
        return self.ctx.stats


def _writer_factory(settings: Settings) -> Any:
    def make() -> Any:
        from ..warehouse.client import connect
        from ..warehouse.migrate import migrate
        from ..warehouse.writer import FactWriter

        client = connect(settings.clickhouse_dsn)
        migrate(client, settings.clickhouse_database)
        return FactWriter(client, settings.clickhouse_database)

    return make


def build_guard(settings: Settings, *, engine: Engine | None = None, writer_factory: Any = None,
                store: str = "memory://") -> Guard:
    app = create_app(settings, store=store)
    ctx = AgentContext(app=app, settings=settings, topics=declare_topics(app, settings),
                       tables=declare_tables(app, settings), engine=engine or Engine(settings))
    agents = {"ingest": ingest_agent.register(ctx), "tests": tests_agent.register(ctx),
              "incidents": incidents_agent.register(ctx)}
    sink = None
    if settings.facts_enabled:
        sink = facts_agent.FactSink(ctx, writer_factory or _writer_factory(settings))
        agents["facts"] = facts_agent.register(ctx, sink)
    if settings.metrics_port:
        _serve_metrics(app, settings)
    ticks = {"n": 0}

    @app.timer(interval=1.0, name="guard.stats")
    async def log_stats() -> None:
        """Progress: a log line every 10 s and, when configured, a status file health checks can read."""
        _drop_finished_spinner()
        st = ctx.stats
        if settings.status_file:
            path = Path(settings.status_file)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps({k: v for k, v in vars(st).items() if k != "deadlines"} |
                                         {"open_deadlines": len(st.deadlines), "ts": time.time()}))
            os.replace(tmp, path)
        ticks["n"] += 1
        if ticks["n"] % 10:
            return
        log.info("chunks=%d lines=%d closed=%d findings=%d commands=%d tests=%d dead_letters=%d facts_written=%d "
                 "fact_errors=%d open_deadlines=%d", st.chunks, st.lines, st.jobs_closed, st.findings, st.commands,
                 st.tests, st.dead_letters, st.facts_written, st.fact_errors, len(st.deadlines))

    return Guard(app=app, ctx=ctx, agents=agents, sink=sink)


def _drop_finished_spinner() -> None:
    """Undo what Faust's startup spinner did to logging, once the spinner has finished.

    At a log level of WARNING or above, ``faust.Worker`` sets the root logger to DEBUG and adds a handler
    that turns its terminal spinner on every record. After startup the spinner is stopped and that handler
    prints nothing, but the root level stays DEBUG: every ``log.debug`` of aiokafka and Faust (one per
    message sent) then builds a record that no handler prints, about 8 % of a busy worker's time. Once
    the spinner is stopped, its handler goes and the root logger returns to the level of its first handler
    (the level the worker was started with), as when the spinner is disabled.
    """
    from faust.utils.terminal.spinners import SpinnerHandler

    root = logging.getLogger()
    spinners = [h for h in root.handlers if isinstance(h, SpinnerHandler)]
    if not spinners or not all(h.spinner is None or h.spinner.stopped for h in spinners):
        return
    for h in spinners:
        root.removeHandler(h)
    if root.handlers and root.handlers[0].level > root.level:
        root.setLevel(root.handlers[0].level)


def _serve_metrics(app: faust.App, settings: Settings) -> None:
    """Prometheus ``/metrics`` of this worker, started with the worker (not when the guard is only built)."""

    @app.task
    async def serve_metrics() -> None:
        from ..metrics import start_metrics_server

        try:
            start_metrics_server(settings.metrics_host, settings.metrics_port)
        except OSError as exc:  # the worker's job is the stream: a taken port must not stop it
            log.error("metrics: cannot serve on %s:%d (%s); running without /metrics",
                      settings.metrics_host, settings.metrics_port, exc)
            return
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
