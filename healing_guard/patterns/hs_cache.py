"""Compiled Hyperscan databases, kept on disk by what they were compiled from.

Compiling the pattern library takes seconds; loading its serialised database takes milliseconds. A
person running ``guard analyze`` on one small log should not wait for the compiler each time, so each
database is stored under a key made of everything that determines it (the Hyperscan version, the mode,
every expression, id and flag). A changed pattern, flag or Hyperscan version is another key, so a stale
database is never loaded; a corrupt or unreadable file is recompiled and replaced. Writes go through a
temporary file and a rename, so two processes compiling at once each leave a whole file.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path

import hyperscan

__all__ = ["DEFAULT_CACHE_DIR", "compile_database"]

#: where databases are kept unless a caller says otherwise (``None``: no cache)
DEFAULT_CACHE_DIR: Path | None = Path(os.path.expanduser("~")) / ".cache" / "healing-guard" / "hyperscan"


def _key(expressions: Sequence[bytes], ids: Sequence[int], flags: Sequence[int], mode: int) -> str:
    h = hashlib.sha256()
    h.update(str(getattr(hyperscan, "__version__", "")).encode())  # the package pins its Hyperscan
    h.update(platform.machine().encode())  # a database is compiled for one CPU family
    h.update(f"|{mode}|{len(expressions)}|".encode())
    for e, i, f in zip(expressions, ids, flags):
        h.update(len(e).to_bytes(8, "little"))
        h.update(e)
        h.update(f"|{i}|{f}|".encode())
    return h.hexdigest()[:40]


def compile_database(expressions: Sequence[bytes], ids: Sequence[int], flags: Sequence[int], *,
                     mode: int = hyperscan.HS_MODE_BLOCK, cache_dir: Path | None = DEFAULT_CACHE_DIR
                     ) -> hyperscan.Database:
    """A Hyperscan database of ``expressions``, from the cache when it holds one for exactly these."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{_key(expressions, ids, flags, mode)}.hsdb"
        try:
            return hyperscan.loadb(path.read_bytes(), mode)
        except (OSError, hyperscan.error, TypeError, ValueError):
            pass  # not cached yet, or unreadable: compile it (and replace the file)
    db = hyperscan.Database(mode=mode)
    db.compile(expressions=list(expressions), ids=list(ids), elements=len(expressions), flags=list(flags))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hsdb-")
            with os.fdopen(fd, "wb") as f:
                f.write(hyperscan.dumpb(db))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home: the database works, it is just compiled again next time
    return db
