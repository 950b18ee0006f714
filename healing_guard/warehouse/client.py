"""Open a clickhouse-connect client from one DSN: in-process chDB or a ClickHouse server.

DSNs:
- ``chdb:///abs/dir`` or ``chdb://relative/dir`` (resolved against the working directory; created if
  missing): chDB, the ClickHouse engine in this process. Needs the ``[embedded]`` extra.
- ``chdb://`` or ``chdb://memory``: chDB in memory (lost at exit; handy for one-off checks).
- ``http://user:pass@host:8123[/database]`` or ``https://…``: a ClickHouse server.

chDB allows ONE data directory per process and one process per data directory (it locks
``<dir>/status``). Both conflicts are reported here in words instead of chDB's
"Error initializing EmbeddedServer".
"""

from __future__ import annotations

import errno
import fcntl
import importlib.util
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class WarehouseConnectionError(RuntimeError):
    """The warehouse cannot be reached or opened; the message names the DSN (password masked)."""


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***``, safe for logs and error messages."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable DSN>"
    if parts.password is None:
        return dsn
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def chdb_path(dsn: str) -> str | None:
    """The absolute data directory of a ``chdb://`` DSN, or None for an in-memory engine.

    Parsed by hand because ``urlparse`` reads ``chdb://data/ch`` as host ``data``.
    """
    rest = dsn[len("chdb://") :].split("?", 1)[0]
    if rest in ("", "memory", ":memory:", "/:memory:"):
        return None
    return str(Path(rest).expanduser().resolve())


def connect(dsn: str) -> Any:
    """A clickhouse-connect client for ``dsn``; WarehouseConnectionError with what to do when it fails."""
    if dsn.startswith("chdb:"):
        return _connect_chdb(dsn)
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
    if scheme not in ("http", "https"):
        raise WarehouseConnectionError(
            f"warehouse DSN {mask_dsn(dsn)!r} is not chdb:///dir, http://user:pass@host:8123 or https://…"
        )
    import clickhouse_connect

    try:
        return clickhouse_connect.get_client(dsn=dsn)
    except Exception as exc:
        raise WarehouseConnectionError(
            f"cannot connect to ClickHouse at {mask_dsn(dsn)}: {exc}; check that the server is up, "
            "the port is its HTTP port (8123, 8443 for https) and the user and password are right"
        ) from exc


def _connect_chdb(dsn: str) -> Any:
    if dsn.startswith("chdb:") and not dsn.startswith("chdb://"):
        raise WarehouseConnectionError(f"chDB DSN {dsn!r} must start with chdb:// (e.g. chdb:///var/lib/guard/ch)")
    if importlib.util.find_spec("chdb") is None:
        raise WarehouseConnectionError(
            f"the DSN {dsn!r} needs chDB, which is not installed: install the [embedded] extra "
            "(pip install 'self-healing-pipeline-guard[embedded]') or point the DSN at a ClickHouse "
            "server (http://user:pass@host:8123)"
        )
    import clickhouse_connect

    path = chdb_path(dsn)
    query = dsn.split("?", 1)[1] if "?" in dsn else ""
    if path is None:
        target = "chdb://memory"
    else:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise WarehouseConnectionError(f"cannot create the chDB data directory {path}: {exc}") from exc
        target = "chdb://" + path  # path is absolute, so this is chdb:///abs/dir
    if query:
        target += "?" + query
    try:
        return clickhouse_connect.get_client(dsn=target)
    except Exception as exc:
        raise WarehouseConnectionError(_explain_chdb_failure(dsn, path, exc)) from exc


def _explain_chdb_failure(dsn: str, path: str | None, exc: Exception) -> str:
    text = str(exc)
    if "already initialized with path" in text:
        return (
            f"cannot open chDB at {path or 'memory'}: this process already has chDB open on another "
            f"directory ({text.split('already initialized with path', 1)[1].split(',')[0].strip()}); chDB "
            "allows one data directory per process, so reuse that client or close it first"
        )
    if path is not None:
        holder = _lock_holder(path)
        if holder is not None:
            return (
                f"chDB data directory {path} is in use by another process{holder}; chDB allows one "
                "process per data directory: stop that process, or give this one another directory, "
                "or use a ClickHouse server (http://…) when several processes must share the data"
            )
    return f"cannot open chDB for {dsn!r}: {text}"


def _lock_holder(path: str) -> str | None:
    """When ``<path>/status`` is flock-ed (by ClickHouse's StatusFile), describe the holder.

    Returns None when nobody holds the lock (the failure had another cause).
    """
    status = os.path.join(path, "status")
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            content = os.read(fd, 4096).decode("utf-8", "replace")
            pid = next((ln.split(":", 1)[1].strip() for ln in content.splitlines() if ln.startswith("PID:")), "")
            return f" (PID {pid})" if pid else ""
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
