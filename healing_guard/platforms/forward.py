"""``guard forward``: ship a job's log (files or stdin) to ``ci.logs`` for users without a log forwarder.

The log is read as bytes in blocks (with ``--follow``, as the file grows, until it has been quiet for
``--idle-timeout`` seconds) and cut into ordered chunks of at most ``chunk_lines`` lines or
``chunk_bytes`` bytes (whichever comes first; a longer single line is cut into pieces, never dropped),
numbered from ``seq`` 0, the last one marked ``eof``. With ``--conclusion`` a completed ``ci.jobs``
event follows the log, so a CI step can report a failed job without webhooks. Secrets are not redacted
here: the guard redacts every line before it stores or sends anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from ..schemas import JobEvent, LogChunk

__all__ = ["chunk_lines", "follow_blocks", "log_chunks"]


def chunk_lines(blocks: Iterable[bytes], *, chunk_lines: int = 500, chunk_bytes: int = 1 << 20) -> Iterator[list[str]]:
    """Lists of decoded lines (invalid UTF-8 replaced), each list within the limits."""
    pending = b""
    out: list[str] = []
    size = 0
    piece = max(1, chunk_bytes // 2)
    for block in blocks:
        pending += block
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            for i in range(0, max(len(raw), 1), piece):  # a giant line becomes several lines' worth
                text = raw[i:i + piece].decode("utf-8", "replace")
                if out and (len(out) >= chunk_lines or size + len(text) > chunk_bytes):
                    yield out
                    out, size = [], 0
                out.append(text)
                size += len(text) + 1
        if len(pending) > chunk_bytes:  # no newline for a long time: flush what there is
            text = pending[:piece].decode("utf-8", "replace")
            pending = pending[piece:]
            if out:
                yield out
                out, size = [], 0
            out, size = [text], len(text) + 1
    if pending:
        if out and (len(out) >= chunk_lines or size + len(pending) > chunk_bytes):
            yield out
            out = []
        out.append(pending.decode("utf-8", "replace"))
    if out:
        yield out


def read_blocks(fp: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        b = fp.read(size)
        if not b:
            return
        yield b


def follow_blocks(fp: BinaryIO, *, idle_timeout: float, poll: float = 0.25, size: int = 1 << 20,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> Iterator[bytes]:
    """Blocks of a file that is still being written (``tail -f``): ends once the file has not grown for
    ``idle_timeout`` seconds, or on Ctrl-C, so that the last chunk can be marked ``eof``."""
    last = clock()
    try:
        while True:
            b = fp.read(size)
            if b:
                last = clock()
                yield b
                continue
            if clock() - last >= idle_timeout:
                return
            sleep(poll)
    except KeyboardInterrupt:
        return


def log_chunks(blocks: Iterable[bytes], *, provider: str, owner: str, repo: str, job_id: str, attempt: int = 1,
               chunk_lines_max: int = 500, chunk_bytes: int = 1 << 20) -> Iterator[LogChunk]:
    """The ``ci.logs`` records of one job's log, in order, the last one with ``eof``."""
    first = 1
    seq = 0
    prev: list[str] | None = None
    for lines in chunk_lines(blocks, chunk_lines=chunk_lines_max, chunk_bytes=chunk_bytes):
        if prev is not None:
            yield LogChunk(provider=provider, owner=owner, repo=repo, job_id=job_id, attempt=attempt, seq=seq,
                           lines=prev, first_line=first, eof=False)  # type: ignore[arg-type]
            first += len(prev)
            seq += 1
        prev = lines
    yield LogChunk(provider=provider, owner=owner, repo=repo, job_id=job_id, attempt=attempt, seq=seq,
                   lines=prev or [], first_line=first, eof=True)  # type: ignore[arg-type]


def completion(*, provider: str, owner: str, repo: str, job_id: str, attempt: int, conclusion: str,
               exit_code: int | None, chunks: int, job_name: str, run_id: str | None, now: float,
               healing_strategy: str | None = None, max_retries: int | None = None) -> JobEvent:
    return JobEvent(provider=provider, owner=owner, repo=repo, job_id=job_id, job_name=job_name,  # type: ignore[arg-type]
                    status="completed", conclusion=conclusion, exit_code=exit_code, attempt=attempt,  # type: ignore[arg-type]
                    run_id=run_id, log_chunks=chunks, completed_at=now, healing_strategy=healing_strategy,
                    max_retries=max_retries)
