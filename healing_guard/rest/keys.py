"""API keys of the REST API: scoped per platform and repository, stored hashed, shown once.

A key is ``hg_<id>_<secret>`` with 256 random bits in the secret. Only its SHA-256 is stored: the
secret is already high-entropy, so a slow password hash would buy nothing, and a stolen keys file
gives no usable key. The id inside the token lets a check find its record without comparing against
every key; the hash comparison is constant-time (``hmac.compare_digest``).

The file is JSON, written atomically (temporary file + ``os.replace``) with mode 0600 under an
exclusive ``flock`` so two ``guard api-keys create`` runs cannot lose each other's key. The API
process re-reads it when its modification time changes, so a revocation takes effect on the next
request without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ..schemas import PROVIDERS

__all__ = ["ApiKey", "ApiKeys", "DEFAULT_PROVIDER", "KeyFileError", "PREFIX", "parse_scope"]

PREFIX = "hg_"
#: the platform of a scope (or an API request) that names none: the product's examples are GitHub's
DEFAULT_PROVIDER = "github"
_TOKEN = re.compile(r"^hg_([0-9a-f]{12})_([A-Za-z0-9_-]{20,200})$")
_SCOPE = re.compile(r"^[^\s/*][^\s*]*/(\*|[^\s/*]+)$")


class KeyFileError(RuntimeError):
    """The keys file is unreadable or malformed; the message names the file and what to do."""


def parse_scope(value: str, provider: str = DEFAULT_PROVIDER) -> str:
    """``provider:owner/repo``, ``provider:owner/*``, ``provider:*`` or ``*`` (every repository on every
    platform). ``owner/repo`` without a provider takes ``provider`` (GitHub by default): a repository's
    name is only unique on its platform, so ``acme/web`` on GitHub is not GitLab's ``acme/web``. GitLab
    subgroups keep their ``/`` (``gitlab:group/sub/repo``).

    Raises ValueError naming the bad value: a typo here would silently give a key no access (or, worse,
    a broader one than meant).
    """
    v = value.strip()
    if v == "*":
        return v
    prov, sep, rest = v.partition(":")
    if not sep:
        prov, rest = provider, v
    if prov not in PROVIDERS:
        raise ValueError(f"repository scope {value!r}: unknown provider {prov!r} (one of {', '.join(PROVIDERS)})")
    if rest == "*" or _SCOPE.match(rest):
        return f"{prov}:{rest}"
    raise ValueError(f"repository scope {value!r}: expected provider:owner/repo, provider:owner/*, "
                     "provider:* or *")


def _text_ok(s: str) -> bool:
    """False for a string JSON can hold but UTF-8 cannot (a lone surrogate from a ``\\ud800`` escape)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ApiKey:
    """One key's record (never its plaintext)."""

    id: str
    scopes: tuple[str, ...]
    created: str
    revoked: str | None = None
    hash: str = ""

    @property
    def active(self) -> bool:
        return self.revoked is None

    def allows(self, provider: str, owner: str, repo: str) -> bool:
        """Whether this key may read and act on ``owner/repo`` of ``provider``. A scope written before
        scopes named their provider (``owner/repo``) reads as GitHub's."""
        full = f"{owner}/{repo}"
        for s in self.scopes:
            if s == "*":
                return True
            prov, sep, rest = s.partition(":")
            if not sep:
                prov, rest = DEFAULT_PROVIDER, s
            if prov != provider:
                continue
            if rest == "*" or rest == full or (rest.endswith("/*") and rest[:-2] == owner):
                return True
        return False

    def allows_everything(self) -> bool:
        """A ``*`` key: every repository on every platform (what ``/metrics`` lists)."""
        return "*" in self.scopes

    def public(self) -> dict[str, Any]:
        """What ``guard api-keys list`` shows: everything but the hash."""
        return {"id": self.id, "scopes": list(self.scopes), "created": self.created, "revoked": self.revoked}


class ApiKeys:
    """The keys file at ``path`` (created on the first ``create``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int] | None, dict[str, ApiKey]] = (None, {})

    # --- reading ---------------------------------------------------------------------------------
    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _load(self) -> dict[str, ApiKey]:
        """The keys, re-read only when the file changed (a check per request must stay cheap)."""
        with self._lock:
            stamp = self._stamp()
            if stamp == self._cache[0] and (stamp is not None or not self._cache[1]):
                return self._cache[1]
            keys = self._read() if stamp is not None else {}
            self._cache = (stamp, keys)
            return keys

    def _read(self) -> dict[str, ApiKey]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
            raise KeyFileError(f"{self.path}: cannot read the API keys file ({type(exc).__name__}: "
                               f"{str(exc)[:200]}); fix or remove it and create keys again with "
                               "`guard api-keys create`") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise KeyFileError(f"{self.path}: not an API keys file (expected {{\"keys\": [...]}})")
        out: dict[str, ApiKey] = {}
        for i, raw in enumerate(data["keys"]):
            if not isinstance(raw, dict):
                raise KeyFileError(f"{self.path}: keys[{i}]: expected an object, got {type(raw).__name__}")
            for name in ("id", "scopes", "created", "hash"):
                if name not in raw:
                    raise KeyFileError(f"{self.path}: keys[{i}].{name}: missing field")
            for name in ("id", "created", "hash", "revoked"):
                v = raw.get(name)
                if name == "revoked" and v is None:
                    continue
                if not isinstance(v, str) or not _text_ok(v):
                    raise KeyFileError(f"{self.path}: keys[{i}].{name}: expected a string (valid Unicode), "
                                       f"got {type(v).__name__}")
            scopes = raw["scopes"]
            if not isinstance(scopes, list) or not all(isinstance(s, str) and _text_ok(s) for s in scopes):
                raise KeyFileError(f"{self.path}: keys[{i}].scopes: expected a list of strings")
            k = ApiKey(id=raw["id"], scopes=tuple(scopes), created=raw["created"], revoked=raw.get("revoked"),
                       hash=raw["hash"])
            out[k.id] = k
        return out

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included (oldest first), without plaintexts."""
        return sorted(self._load().values(), key=lambda k: (k.created, k.id))

    def __len__(self) -> int:
        return sum(1 for k in self._load().values() if k.active)

    # --- checking --------------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> ApiKey | None:
        """The active key behind ``token``, or None (unknown, malformed or revoked)."""
        if not token:
            return None
        m = _TOKEN.match(token.strip())
        if m is None:
            return None
        key = self._load().get(m.group(1))
        if key is None or not key.active:
            return None
        if not hmac.compare_digest(_hash(token.strip()).encode(), key.hash.encode()):
            return None
        return key

    def check(self, token: str | None, provider: str, owner: str, repo: str) -> Literal[True] | str:
        """True when ``token`` may use ``owner/repo`` of ``provider``; otherwise the reason, in words."""
        key = self.authenticate(token)
        if key is None:
            return "missing, unknown or revoked API key"
        if not key.allows(provider, owner, repo):
            return f"API key {key.id} is not scoped to {provider}:{owner}/{repo}"
        return True

    # --- writing ---------------------------------------------------------------------------------
    def create(self, repos: Iterable[str], provider: str = DEFAULT_PROVIDER) -> tuple[str, str]:
        """A new key for ``repos`` (``owner/repo``, ``owner/*`` or ``*``): ``(key_id, plaintext)``.

        The plaintext is returned once and never stored.
        """
        scopes = tuple(dict.fromkeys(parse_scope(r, provider) for r in repos))
        if not scopes:
            raise ValueError("a key needs at least one repository (owner/repo) or * for all")
        key_id = secrets.token_hex(6)
        token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        with self._locked() as keys:
            while key_id in keys:  # 48 random bits: practically never, but never overwrite a key
                key_id = secrets.token_hex(6)
                token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            keys[key_id] = ApiKey(id=key_id, scopes=scopes, created=_now(), hash=_hash(token))
        return key_id, token

    def revoke(self, key_id: str) -> bool:
        """Revoke a key (kept in the file, marked revoked, for the record); False when unknown."""
        with self._locked() as keys:
            k = keys.get(key_id)
            if k is None:
                return False
            if k.active:
                keys[key_id] = ApiKey(id=k.id, scopes=k.scopes, created=k.created, revoked=_now(), hash=k.hash)
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, ApiKey]]:
        """Read-modify-write under an exclusive lock, then an atomic 0600 replace."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            keys = self._read()
            yield keys
            self._write(keys)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        with self._lock:
            self._cache = (None, {})

    def _write(self, keys: dict[str, ApiKey]) -> None:
        body = {"version": 1, "keys": [
            {"id": k.id, "hash": k.hash, "scopes": list(k.scopes), "created": k.created, "revoked": k.revoked}
            for k in sorted(keys.values(), key=lambda k: (k.created, k.id))]}
        fd, tmp = tempfile.mkstemp(prefix=".api-keys.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fp:
                json.dump(body, fp, indent=2)
                fp.write("\n")
                fp.flush()
                os.fsync(fp.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
