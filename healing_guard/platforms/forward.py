"""``guard forward``: ship a job's log (files or stdin) to ``ci.logs`` for users without a log forwarder.

The log is read as bytes in blocks (with ``--follow``, as the file grows, until it has been quiet for
``--idle-timeout`` seconds) and cut into ordered chunks of at most ``chunk_lines`` lines or
``chunk_bytes`` bytes (whichever comes first; a longer single line is cut into pieces, never dropped),
numbered from ``seq`` 0, the last one marked ``eof``. With ``--conclusion`` a completed ``ci.jobs``
event follows the log, so a CI step can report a failed job without webhooks. Log lines are not redacted
here (ci.logs is the one topic that holds raw text; the guard redacts every line before it stores or sends
anything), but the values the platform would mask are (``--mask-env``, on by default: credentials in the
environment and ``::add-mask::`` values, see patterns/masks.py); the completion event on ci.jobs is
redacted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, cast

import orjson

from ..patterns.masks import Mask, apply, learn
from ..patterns.tokenize import redact_job
from ..schemas import PROVIDERS, JobEvent, LogChunk
from ..schemas.records import Provider

__all__ = ["chunk_lines", "follow_blocks", "log_chunks"]


def _json_len(text: str) -> int:
    """Bytes the line takes in the chunk's JSON: control characters and NUL become ``\\u0000`` (6 bytes for
    1) and every invalid byte a 3-byte U+FFFD, so the byte length of the raw line is not a bound."""
    return len(orjson.dumps(text)) + 1  # with its comma


def _boundary(raw: bytes, start: int, stop: int) -> int:
    """``stop`` moved back to the start of a UTF-8 character (at most 3 bytes), so a cut does not turn
    one character into two replacement characters."""
    if stop >= len(raw):
        return len(raw)
    j = stop
    while j > start and stop - j < 3 and raw[j] & 0xC0 == 0x80:
        j -= 1
    return j if j > start else stop


def _pieces(raw: bytes, piece: int, limit: int) -> Iterator[str]:
    """One line's text, cut into pieces of at most ``piece`` bytes whose JSON form fits ``limit``."""
    i, n = 0, len(raw)
    if n == 0:
        yield ""
        return
    while i < n:
        step = piece
        while True:
            j = _boundary(raw, i, min(n, i + step))
            text = raw[i:j].decode("utf-8", "replace")
            if step <= 8 or _json_len(text) <= limit:
                break
            step //= 2
        yield text
        i = j


def chunk_lines(blocks: Iterable[bytes], *, chunk_lines: int = 500, chunk_bytes: int = 1 << 20) -> Iterator[list[str]]:
    """Lists of decoded lines (invalid UTF-8 replaced), each list within the limits: at most
    ``chunk_lines`` lines and ``chunk_bytes`` bytes of JSON-encoded text, however long a line and
    whatever bytes it holds (a line without a newline is cut as it arrives, so memory stays bounded)."""
    pending = b""
    out: list[str] = []
    size = 0
    piece = max(1, chunk_bytes // 2)

    def add(text: str) -> Iterator[list[str]]:
        nonlocal out, size
        n = _json_len(text)
        if out and (len(out) >= chunk_lines or size + n > chunk_bytes):
            yield out
            out, size = [], 0
        out.append(text)
        size += n

    for block in blocks:
        pending += block
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            for text in _pieces(raw, piece, chunk_bytes):  # a giant line becomes several lines' worth
                yield from add(text)
        while len(pending) > chunk_bytes:  # no newline for a long time: ship what there is
            j = _boundary(pending, 0, piece)
            head, pending = pending[:j], pending[j:]
            for text in _pieces(head, piece, chunk_bytes):
                yield from add(text)
    if pending:
        for text in _pieces(pending, piece, chunk_bytes):
            yield from add(text)
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
               chunk_lines_max: int = 500, chunk_bytes: int = 1 << 20,
               masks: list[Mask] | None = None) -> Iterator[LogChunk]:
    """The ``ci.logs`` records of one job's log, in order, the last one with ``eof``.

    ``masks`` (patterns/masks.py): values to mask as the platform would, e.g. ``from_environ(os.environ)``;
    then the values of the log's ``::add-mask::`` lines are masked too, from that line on (the line
    included). ``None``: the lines are sent as read."""
    platform = _provider(provider)
    first = 1
    seq = 0
    prev: list[str] | None = None
    for lines in chunk_lines(blocks, chunk_lines=chunk_lines_max, chunk_bytes=chunk_bytes):
        if masks is not None:
            learn(lines, masks)
            lines = apply(lines, masks)
        if prev is not None:
            yield LogChunk(provider=platform, owner=owner, repo=repo, job_id=job_id, attempt=attempt, seq=seq,
                           lines=prev, first_line=first, eof=False)
            first += len(prev)
            seq += 1
        prev = lines
    yield LogChunk(provider=platform, owner=owner, repo=repo, job_id=job_id, attempt=attempt, seq=seq,
                   lines=prev or [], first_line=first, eof=True)


def _provider(name: str) -> Provider:
    """``name`` as a record's provider; the CLI has checked it against ``PROVIDERS`` already."""
    if name not in PROVIDERS:
        raise ValueError(f"unknown CI provider {name!r}: one of {', '.join(PROVIDERS)}")
    return cast(Provider, name)


def completion(*, provider: str, owner: str, repo: str, job_id: str, attempt: int, conclusion: str,
               exit_code: int | None, chunks: int, job_name: str, run_id: str | None, now: float,
               healing_strategy: str | None = None, max_retries: int | None = None) -> JobEvent:
    """The completion event that follows the log. Its free text goes through the redactor: unlike the log
    lines it travels on ci.jobs, and only ci.logs may carry raw text."""
    ev = JobEvent(provider=provider, owner=owner, repo=repo, job_id=job_id, job_name=job_name,  # type: ignore[arg-type]
                  status="completed", conclusion=conclusion, exit_code=exit_code, attempt=attempt,  # type: ignore[arg-type]
                  run_id=run_id, log_chunks=chunks, completed_at=now, healing_strategy=healing_strategy,
                  max_retries=max_retries)
    return redact_job(ev)
