"""The timer that shows progress: a log line every 10 s and, when configured, a status file that health
checks read (``settings.status_file``)."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .context import AgentContext, bind

log = logging.getLogger("healing_guard.worker")


async def report_status(ctx: AgentContext, ticks: Iterator[int]) -> None:
    drop_finished_spinner()
    st = ctx.stats
    if ctx.settings.status_file:
        path = Path(ctx.settings.status_file)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({k: v for k, v in vars(st).items() if k != "deadlines"} |
                                     {"open_deadlines": len(st.deadlines), "ts": time.time()}))
        os.replace(tmp, path)
    if next(ticks) % 10:
        return
    counters = (st.chunks, st.lines, st.jobs_closed, st.findings, st.commands, st.tests, st.dead_letters,
                st.facts_written, st.fact_errors, len(st.deadlines))
    if _last_shown.get(id(ctx)) == counters:
        return  # an idle worker does not repeat the same line every 10 s
    _last_shown[id(ctx)] = counters
    log.info("chunks=%d lines=%d closed=%d findings=%d commands=%d tests=%d dead_letters=%d facts_written=%d "
             "fact_errors=%d open_deadlines=%d", *counters)


#: the counters each worker context last logged
_last_shown: dict[int, tuple[int, ...]] = {}


def drop_finished_spinner() -> None:
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


def register(ctx: AgentContext) -> Any:
    return ctx.app.timer(interval=1.0, name="guard.stats")(bind(report_status, ctx, itertools.count(1)))
