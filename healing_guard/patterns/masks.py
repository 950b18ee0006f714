"""Values the CI platform masks, masked by the guard too, wherever they appear later in the same log.

A secret has no shape the redactor could know (``hunter2-but-longer``), but the platform often knows it is
one: a GitHub step registers it with ``::add-mask::VALUE``, and CI variables holding credentials are in the
job's environment. The platform then prints ``***`` for it in the log it serves; a log read any other way
(``cmd | guard forward``, a log forwarder on the runner) still holds it.

- :func:`learn` finds ``::add-mask::VALUE`` in lines; the guard's window keeps what it learned for the rest
  of the job's log (the add-mask line itself is redacted by the ordinary rules);
- :func:`from_environ` takes the values of variables whose names say they are credentials (``guard
  forward`` masks them before anything leaves the runner);
- :func:`apply` replaces every occurrence of a learned value with ``[REDACTED]``.

A mask is kept as its length and a SHA-256 digest, never as the value: windows are stored in a changelog
topic, and the whole point is that the value is stored nowhere. ``apply`` therefore checks the substrings
of each mask's length that start and end at a token boundary (whitespace, quotes, ``= : , ; & | @ /``
brackets), which is where a value printed in a log sits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

from .tokenize import REDACTED

__all__ = ["MAX_MASKS", "Mask", "apply", "from_environ", "learn", "mask_of"]

#: a log that registers more masks than this keeps the first ones (each costs a pass over later lines)
MAX_MASKS = 64
#: shorter values are not masked: a 3-character "secret" would redact every log's ordinary words (GitHub
#: itself does not mask values of one or two characters)
MIN_LEN = 4
#: a credential taken from the environment by its variable's name is masked only from this length: a
#: placeholder like NPM_TOKEN=test would otherwise blank out every "test" in the log (and its diagnosis)
MIN_ENV_LEN = 8

Mask = tuple[int, str]  # (the value's length, the first 32 hex digits of its SHA-256)

_ADD_MASK = re.compile(r"::add-mask::(.*)$")
_BOUNDARY = frozenset(" \t\r\n'\"=:,;&|@/()[]{}<>`")
#: environment variable names that hold credentials (GITHUB_TOKEN, CI_JOB_TOKEN, DB_PASSWORD, AWS_SECRET_ACCESS_KEY,
#: NPM_AUTH_TOKEN, SLACK_WEBHOOK_URL is not one: a URL is not masked by its name)
_SECRET_NAME = re.compile(r"(?:TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?"
                          r"|AUTH)(?:_|$)", re.I)
#: values of such variables that are plainly not secrets
_NOT_SECRET = re.compile(r"(?:true|false|yes|no|none|null|\d{1,6}|/[\w./-]*|\*+|\[MASKED\])", re.I)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def mask_of(value: str) -> Mask:
    return len(value), _digest(value)


def learn(lines: Iterable[str], masks: list[Mask]) -> bool:
    """Add the values of ``::add-mask::`` lines to ``masks``; whether any was added."""
    added = False
    known = {(int(n), d) for n, d in masks}  # a stored window's masks come back from JSON as lists
    for line in lines:
        if "::add-mask::" not in line:
            continue
        m = _ADD_MASK.search(line)
        value = m.group(1).strip() if m else ""
        if len(value) < MIN_LEN or value.startswith(("$", "***")) or len(masks) >= MAX_MASKS:
            continue
        mask = mask_of(value)
        if mask not in known:
            known.add(mask)
            masks.append(mask)
            added = True
    return added


def from_environ(environ: Mapping[str, str]) -> list[Mask]:
    """Masks for the values of the variables whose names say they hold credentials."""
    out: list[Mask] = []
    for name, value in environ.items():
        value = value.strip()
        if (_SECRET_NAME.search(name) and len(value) >= MIN_ENV_LEN and "\n" not in value
                and not _NOT_SECRET.fullmatch(value)):
            mask = mask_of(value)
            if mask not in out and len(out) < MAX_MASKS:
                out.append(mask)
    return out


def apply(lines: list[str], masks: Iterable[Mask]) -> list[str]:
    """``lines`` with every masked value replaced by ``[REDACTED]`` (the same list when none occurs)."""
    by_len: dict[int, set[str]] = {}
    for n, digest in masks:
        by_len.setdefault(int(n), set()).add(digest)
    if not by_len:
        return lines
    shortest = min(by_len)
    out = lines
    for i, line in enumerate(lines):
        if len(line) < shortest:
            continue
        masked = _apply_line(line, by_len)
        if masked is not line:
            if out is lines:
                out = list(lines)
            out[i] = masked
    return out


def _apply_line(line: str, by_len: dict[int, set[str]]) -> str:
    n = len(line)
    starts = [0] + [i + 1 for i, c in enumerate(line) if c in _BOUNDARY]
    found: list[tuple[int, int]] = []
    for s in starts:
        if s >= n or (found and s < found[-1][1]):
            continue
        for length, digests in by_len.items():
            e = s + length
            if e > n or (e < n and line[e] not in _BOUNDARY):
                continue
            if _digest(line[s:e]) in digests:
                found.append((s, e))
                break
    if not found:
        return line
    parts: list[str] = []
    at = 0
    for s, e in found:
        parts.append(line[at:s])
        parts.append(REDACTED)
        at = e
    parts.append(line[at:])
    return "".join(parts)
