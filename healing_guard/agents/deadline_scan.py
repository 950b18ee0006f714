"""The timer that rebuilds the in-memory deadline index from the windows table.

After a restart or a rebalance the index lacks the recovered windows; it is rebuilt then, and every
5 minutes as a safety net.
"""

from __future__ import annotations

from typing import Any

from ..engine.state import window_deadline
from .context import AgentContext, bind, now

#: seconds between two scans when no rebalance asked for one
SAFETY_INTERVAL = 300.0


class Rescan:
    def __init__(self) -> None:
        self.needed = True
        self.last = 0.0

    def due(self, at: float) -> bool:
        if not self.needed and at - self.last < SAFETY_INTERVAL:
            return False
        self.needed, self.last = False, at
        return True

    async def on_rebalance(self, sender: Any, **kwargs: Any) -> None:
        self.needed = True


async def rescan_deadlines(ctx: AgentContext, rescan: Rescan) -> None:
    if not rescan.due(now()):
        return
    deadlines = ctx.stats.deadlines
    for key, raw in list(ctx.tables.windows.items()):
        if not raw or key in deadlines:
            continue
        at = window_deadline(raw, ctx.settings.window_ttl_seconds)
        if at is not None:
            deadlines[key] = at


def register(ctx: AgentContext) -> Any:
    rescan = Rescan()
    # mode's Signal accepts coroutines
    ctx.app.on_rebalance_complete.connect(rescan.on_rebalance)  # type: ignore[arg-type]
    return ctx.app.timer(interval=5.0, name="guard.deadline-scan")(bind(rescan_deadlines, ctx, rescan))
