"""Runs a built worker app in this process until it stops (SIGTERM, Ctrl-C): ``guard worker``, the demo,
the backtest and the traffic replay all start the worker this way."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust

    from ..settings import Settings


def run_worker(app: faust.App, settings: Settings) -> None:
    from faust import Worker

    app.conf.worker_redirect_stdouts = False
    w = Worker(app, loglevel=settings.log_level.upper(), quiet=True, redirect_stdouts=False)
    try:
        w.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
