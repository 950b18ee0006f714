"""Serve an ASGI app with uvicorn and say where it listens once the socket is bound (``guard api`` and
``guard up``): with ``--port 0`` the port is the one the system picked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def bound_address(server: Any) -> tuple[str, int] | None:
    """The (host, port) a started uvicorn server listens on (the first socket's), or None."""
    for srv in getattr(server, "servers", None) or ():
        for sock in getattr(srv, "sockets", None) or ():
            name = sock.getsockname()
            return str(name[0]), int(name[1])
    return None


def make_server(app: Any, *, host: str, port: int, log_level: str,
                on_ready: Callable[[str, int], None] | None = None) -> Any:
    """A uvicorn ``Server`` that calls ``on_ready(host, port)`` once it is listening."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False))
    startup = server.startup

    async def announced(sockets: Any = None) -> None:
        await startup(sockets=sockets)
        address = bound_address(server)
        if server.started and address is not None and on_ready is not None:
            on_ready(*address)

    server.startup = announced  # type: ignore[method-assign]
    return server


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
