"""Reads from the platforms' APIs: JSON pages and downloads that answer with a redirect.

GitHub answers a job's log and an artifact's archive with ``302 Found`` and a short-lived, pre-signed
download URL on another host. The token is sent to the API only: the redirect is followed without it
(``urllib`` would copy the ``Authorization`` header to the other host). Downloads stream to a file, so a
large log is never held in memory.

Writes (re-runs, retries, notifications) go through the executor's clients
(:mod:`healing_guard.executor.clients`), which own the retry rules; this module only reads, and retries a
read once after a network error or a 5xx.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

USER_AGENT = "healing-guard-action/0.1"
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Reply:
    """One read: its status (None: no HTTP answer), body (empty for a download to a file) and headers."""

    status: int | None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str = ""  # why it failed, in words, secrets masked

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def describe(self) -> str:
        """``HTTP 404: Not Found`` or the network error."""
        if self.status is None:
            return self.error or "no answer"
        return f"HTTP {self.status}" + (f": {self.error}" if self.error else "")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx comes back as an HTTPError: the caller decides where the token goes


class Http:
    """GET with ``headers`` (the token) on the API; redirects followed without them."""

    def __init__(self, headers: Mapping[str, str], *, timeout: float = 30.0, secrets: Iterable[str] = (),
                 sleep: Any = time.sleep) -> None:
        self._headers = {"User-Agent": USER_AGENT, **headers}
        self._timeout = timeout
        self._secrets = [s for s in secrets if s]
        self._sleep = sleep
        self._api = urllib.request.build_opener(_NoRedirect)
        self._plain = urllib.request.build_opener(_NoRedirect)

    def mask(self, text: str) -> str:
        for s in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(s, "***")
        return text

    def get(self, url: str) -> Reply:
        """A JSON page (or any small body) from the API; a redirect is not followed."""
        return self._retrying(lambda: self._once(self._api, url, self._headers, None))

    def download(self, url: str, dest: Path) -> Reply:
        """Stream ``url`` (or where it redirects, fetched without the token) into ``dest``."""
        def attempt() -> Reply:
            with dest.open("wb") as out:
                first = self._once(self._api, url, self._headers, out)
                if first.status in _REDIRECTS:
                    where = first.headers.get("location", "")
                    if not where:
                        return Reply(first.status, error="a redirect without a Location header")
                    out.seek(0)
                    out.truncate()
                    return self._once(self._plain, urllib.parse.urljoin(url, where), {"User-Agent": USER_AGENT},
                                      out)
                return first
        return self._retrying(attempt)

    def _retrying(self, call: Any) -> Reply:
        r: Reply = call()
        if r.status is None or (r.status >= 500):
            self._sleep(1.0)
            r = call()
        return r

    def _once(self, opener: urllib.request.OpenerDirector, url: str, headers: Mapping[str, str],
              out: BinaryIO | None) -> Reply:
        req = urllib.request.Request(url, headers=dict(headers), method="GET")
        try:
            resp = opener.open(req, timeout=self._timeout)
        except urllib.error.HTTPError as exc:
            hdrs = {k.lower(): v for k, v in (exc.headers.items() if exc.headers else [])}
            try:
                body = exc.read() or b""
            except OSError:
                body = b""
            return Reply(exc.code, b"" if exc.code in _REDIRECTS else body, hdrs,
                         "" if exc.code in _REDIRECTS else self.mask(_message(body, exc.reason)))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return Reply(None, error=self.mask(f"network error: {reason}")[:300])
        with resp:
            hdrs = {k.lower(): v for k, v in resp.headers.items()}
            try:
                if out is None:
                    return Reply(resp.status, resp.read(), hdrs)
                shutil.copyfileobj(resp, out, 1 << 20)
                return Reply(resp.status, b"", hdrs)
            except OSError as exc:
                return Reply(None, error=self.mask(f"the answer was cut off: {exc}")[:300])


def _message(body: bytes, fallback: Any) -> str:
    """The message of an error body: JSON ``message``/``error``, an XML ``<Code>``, else the text, short."""
    text = body.decode("utf-8", "replace").strip()
    try:
        d = json.loads(text) if text.startswith("{") else None
    except ValueError:
        d = None
    msg: Any = None
    if isinstance(d, dict):
        msg = d.get("message") or d.get("error")
    if not msg and "<Code>" in text:  # a storage service's XML error (GitHub's log blobs)
        msg = text.split("<Code>", 1)[1].split("</Code>", 1)[0]
    msg = " ".join(str(msg or text or fallback or "").split())
    return msg[:300]


def quote_segment(v: object) -> str:
    """One URL path segment, every reserved character encoded (``..`` and ``/`` cannot change the path)."""
    return urllib.parse.quote(str(v), safe="")


def parse_time(v: Any) -> float | None:
    """An ISO-8601 time of the platform's API (``Z`` or an offset) as epoch seconds; None when absent or unreadable."""
    if not isinstance(v, str) or not v:
        return None
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
