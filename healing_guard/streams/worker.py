"""Builds the whole worker: app, topics, tables and agents, from one Settings object."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import faust

from ..agents import deadline_scan, deadlines, facts, incidents, ingest, status, test_results
from ..agents.context import AgentContext, Stats
from ..agents.status import drop_finished_spinner as _drop_finished_spinner  # noqa: F401  (its old home)
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
    #: writes guard.facts into ClickHouse (None with facts off)
    facts: facts.FactsTask | None

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
    agents = {"ingest": ingest.register(ctx)}
    deadlines.register(ctx)
    deadline_scan.register(ctx)
    agents["tests"] = test_results.register(ctx)
    agents["incidents"] = incidents.register(ctx)
    fact_task = None
    if settings.facts_enabled:
        fact_task = facts.register(ctx, writer_factory or _writer_factory(settings))
    if settings.metrics_port:
        _serve_metrics(app, settings)
    status.register(ctx)
    return Guard(app=app, ctx=ctx, agents=agents, facts=fact_task)


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
