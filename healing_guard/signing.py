"""Signed commands: an HMAC-SHA256 over a command's exact bytes, carried in two Kafka record headers.

The worker and the REST API sign every message they put on ``guard.actions``; the executor verifies it
before acting (``executor/authn.py``) and dead-letters what does not verify. Headers:

* ``guard-key-id``: the id of the key that signed (ASCII), so keys can be rotated: an executor accepts
  every key of its keyring, a signer signs with one;
* ``guard-signature``: ``hex(HMAC-SHA256(key, "healing-guard command v1" NUL key_id NUL value))``.

The MAC covers the record value byte for byte (the JSON as produced; nothing is re-serialised), and the
key id, so a signature cannot be moved to another key. It does not cover the record key, the topic or the
time: a signed command copied back onto ``guard.actions`` verifies again, and is then answered from the
executor's done store (``command_id``). Who may write the topic at all is the broker's ACLs' job
(docs/reliability.md, "Signed commands and broker ACLs").

Where the keys come from (:func:`keyring_of`), from the settings: ``signing.key`` / ``GUARD_COMMAND_KEY``
(with ``signing.key_id`` / ``GUARD_COMMAND_KEY_ID``, default ``k1``) and ``signing.key_file`` /
``GUARD_COMMAND_KEY_FILE``, a keyring file of ``KEY_ID SECRET`` lines. The signing key is
``GUARD_COMMAND_KEY`` when set, else the file's first line; every key of both is accepted. With no key
configured nothing is signed, and ``guard executor --live`` refuses to start unless ``--allow-unsigned``
(a dry-run executor accepts unsigned commands and says so at start).

``python -m healing_guard.signing new-key FILE [--key-id ID]`` writes a new random key (mode 0600),
placed first in FILE when FILE exists (the old keys stay, accepted, until removed).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import ConfigError

__all__ = [
    "KEY_ID_HEADER", "SIGNATURE_HEADER", "Keyring", "keyring_of", "new_secret", "parse_keyring", "read_keyring",
    "sign_headers", "signature", "write_key",
]

SIGNATURE_HEADER = "guard-signature"
KEY_ID_HEADER = "guard-key-id"
#: domain separation: a MAC made here means "a guard command", nothing else signed with the same key
_DOMAIN = b"healing-guard command v1\x00"
MIN_SECRET_CHARS = 16
KEY_ID_RE = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_HEX64 = re.compile(rb"[0-9a-f]{64}")


def signature(secret: bytes, key_id: str, value: bytes) -> str:
    """The hex MAC of ``value`` under ``secret`` / ``key_id``."""
    return hmac.new(secret, _DOMAIN + key_id.encode("ascii") + b"\x00" + value, hashlib.sha256).hexdigest()


def check_key_id(key_id: str) -> str:
    if not KEY_ID_RE.fullmatch(key_id):
        raise ValueError(f"a key id is 1-64 letters, digits, '.', '_' or '-', got {key_id!r}")
    return key_id


def check_secret(secret: str) -> str:
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(f"a command key must have at least {MIN_SECRET_CHARS} characters "
                         f"(got {len(secret)}); make one with `python -m healing_guard.signing new-key FILE`")
    if any(c.isspace() for c in secret):
        raise ValueError("a command key must not contain whitespace")
    return secret


@dataclass(frozen=True)
class Keyring:
    """The keys one process holds: ``signing_id`` signs (``None``: this process signs nothing), every one of
    ``keys`` is accepted when verifying. An empty keyring verifies nothing (see ``executor/authn.py``)."""

    keys: Mapping[str, bytes]
    signing_id: str | None = None
    source: str = ""

    def __bool__(self) -> bool:
        return bool(self.keys)

    def headers(self, value: bytes) -> list[tuple[str, bytes]] | None:
        """The two headers that sign ``value``, or ``None`` when this keyring has no signing key."""
        if self.signing_id is None:
            return None
        mac = signature(self.keys[self.signing_id], self.signing_id, value)
        return [(KEY_ID_HEADER, self.signing_id.encode("ascii")), (SIGNATURE_HEADER, mac.encode("ascii"))]

    def verify(self, value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
        """``None`` when ``value`` carries a valid signature of one of the keys, else why not (in words)."""
        found: dict[str, list[bytes]] = {}
        for name, raw in headers or ():
            if name in (SIGNATURE_HEADER, KEY_ID_HEADER):
                found.setdefault(name, []).append(raw or b"")
        sigs, ids = found.get(SIGNATURE_HEADER, []), found.get(KEY_ID_HEADER, [])
        if not sigs:
            return (f"unsigned command: no {SIGNATURE_HEADER} header, and this executor carries out signed "
                    "commands only")
        if len(sigs) > 1 or len(ids) > 1:
            return f"more than one {SIGNATURE_HEADER} or {KEY_ID_HEADER} header"
        if not ids:
            return f"signed command without a {KEY_ID_HEADER} header"
        try:
            key_id = ids[0].decode("ascii")
        except UnicodeDecodeError:
            return f"{KEY_ID_HEADER} is not ASCII"
        secret = self.keys.get(key_id)
        if secret is None:
            shown = key_id if KEY_ID_RE.fullmatch(key_id) else repr(key_id[:64])
            return (f"signed with key id {shown}, which this executor does not hold "
                    f"(it accepts: {', '.join(sorted(self.keys))})")
        if not _HEX64.fullmatch(sigs[0]):
            return f"{SIGNATURE_HEADER} is not 64 lowercase hex digits"
        if not hmac.compare_digest(sigs[0], signature(secret, key_id, value or b"").encode("ascii")):
            return (f"bad signature for key id {key_id}: the command was altered after it was signed, or signed "
                    "with another key of that id")
        return None


def parse_keyring(text: str, source: str) -> list[tuple[str, str]]:
    """``KEY_ID SECRET`` per line (``#`` comments and blank lines skipped), in file order."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ConfigError(source, "signing.key_file", "each line is KEY_ID SECRET (two words)", n)
        key_id, secret = parts
        try:
            check_key_id(key_id)
            check_secret(secret)
        except ValueError as exc:
            raise ConfigError(source, "signing.key_file", str(exc), n) from None
        if key_id in seen:
            raise ConfigError(source, "signing.key_file", f"key id {key_id} appears twice", n)
        seen.add(key_id)
        out.append((key_id, secret))
    return out


def read_keyring(path: str | Path) -> list[tuple[str, str]]:
    src = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(src, "signing.key_file", "file not found (make one with `python -m healing_guard.signing "
                                                   "new-key FILE`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(src, "signing.key_file", f"cannot read: {exc}") from None
    keys = parse_keyring(text, src)
    if not keys:
        raise ConfigError(src, "signing.key_file", "no key in the file")
    return keys


@functools.lru_cache(maxsize=16)
def _keyring(key: str, key_id: str, key_file: str) -> Keyring:
    keys: dict[str, bytes] = {}
    signing_id: str | None = None
    sources = []
    if key:
        keys[key_id] = key.encode("utf-8")
        signing_id = key_id
        sources.append("GUARD_COMMAND_KEY")
    if key_file:
        for kid, secret in read_keyring(key_file):
            if kid in keys and keys[kid] != secret.encode("utf-8"):
                raise ConfigError(key_file, "signing.key_file",
                                  f"key id {kid} is also the id of GUARD_COMMAND_KEY, with another secret")
            keys[kid] = secret.encode("utf-8")
            signing_id = signing_id or kid
        sources.append(key_file)
    return Keyring(keys=keys, signing_id=signing_id, source=" + ".join(sources))


def keyring_of(settings: Any) -> Keyring:
    """The keyring the settings configure (read once per process and configuration; restart to rotate).
    Raises :class:`~healing_guard.settings.ConfigError` for an unreadable or malformed key file."""
    return _keyring(settings.command_key, settings.command_key_id, settings.command_key_file)


def sign_headers(settings: Any, value: bytes) -> list[tuple[str, bytes]] | None:
    """The signature headers of a command's bytes, or ``None`` when no command key is configured."""
    return keyring_of(settings).headers(value)


# --- making keys ---------------------------------------------------------------------------------------

def new_secret() -> str:
    """256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def write_key(path: str | Path, key_id: str, secret: str | None = None) -> str:
    """Put a key first in the keyring file ``path`` (created with mode 0600; the keys already there stay,
    accepted but no longer signing). Written to a temporary file and renamed: readers see the old file or
    the new one. Returns the secret."""
    check_key_id(key_id)
    secret = check_secret(secret if secret is not None else new_secret())
    p = Path(path)
    old: Sequence[tuple[str, str]] = read_keyring(p) if p.exists() else ()
    if any(kid == key_id for kid, _ in old):
        raise ConfigError(str(p), "signing.key_file", f"key id {key_id} is already in the file: choose another")
    lines = ["# healing-guard command keys: KEY_ID SECRET; the first line signs, every line is accepted",
             f"{key_id} {secret}", *(f"{kid} {s}" for kid, s in old)]
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".command-keys.", dir=p.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return secret


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 4) or args[0] != "new-key" or (len(args) == 4 and args[2] != "--key-id"):
        print("usage: python -m healing_guard.signing new-key FILE [--key-id ID]", file=sys.stderr)
        return 2
    path = Path(args[1])
    key_id = args[3] if len(args) == 4 else None
    try:
        if key_id is None:  # k1, or one past the highest kN already in the file
            old = read_keyring(path) if path.exists() else []
            nums = [int(k[1:]) for k, _ in old if re.fullmatch(r"k\d{1,9}", k)]
            key_id = f"k{max(nums, default=0) + 1}"
        write_key(path, key_id)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote key {key_id} first in {path} (set GUARD_COMMAND_KEY_FILE={path} on the worker, the API and the "
          "executor)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
