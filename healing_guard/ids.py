"""The one way the guard makes a deterministic id: command, finding, quarantine, incident and template ids.

Ids are persisted (ClickHouse facts, changelogs, the executor's idempotency log) and compared across
versions: a replayed stream or a restarted worker, old or new, must produce the same id for the same
thing. So the recipe below is frozen; ``tests/unit/test_ids.py`` pins ids it produced.

Not for secrets or signatures (API-key hashing, webhook HMACs) nor for file checksums: those have
their own, different recipes on purpose.
"""

from __future__ import annotations

import hashlib

__all__ = ["stable_id"]


def stable_id(*parts: object, length: int = 32) -> str:
    """The first ``length`` hex digits of SHA-256 over ``parts`` formatted as in an f-string and joined by ``|``.

    ``stable_id(job_key, attempt, action)`` equals the hand-written
    ``hashlib.sha256(f"{job_key}|{attempt}|{action}".encode()).hexdigest()[:32]`` it replaced. Text
    that cannot be encoded (a lone surrogate) is hashed with ``?`` in its place instead of raising.
    """
    text = "|".join(format(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:length]
