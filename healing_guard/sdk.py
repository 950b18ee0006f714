"""A client for the guard's REST API, standard library only (``urllib``).

    from healing_guard import GuardClient

    client = GuardClient(api_key="hg_...")  # base URL: GUARD_API_URL, else http://127.0.0.1:8000
    health = client.get_repo_health("acme/web")
    print(f"{health.flaky_rate}% flaky, {health.healing_success_rate}% healed")
    analysis = client.analyze_failure(repo="acme/web", job_id="123")
    print(analysis.category, analysis.confidence, analysis.recommendations[0].action)
    client.heal(repo="acme/web", job_id="123", strategy="network_backoff", notify=["slack"])

Rates and confidences are in percent (0-100) under the product document's names (``flaky_rate``,
``healing_success_rate``, ``confidence``), as people read them; the REST API's fractions (0-1) stay
available as ``failure_rate``, ``flaky_test_rate``, ``healing_success_fraction`` and
``confidence_fraction``.

No third-party HTTP library: the SDK runs in CI steps and scripts where installing ``requests`` is one
more thing to break. Every non-2xx answer raises :class:`GuardAPIError` with the status and the
server's message (which says what to do: create a key, scope it, start the broker, ...).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_BASE_URL", "Evidence", "FailureAnalysis", "GuardAPIError", "GuardClient", "HealReceipt",
    "Recommendation", "RepoHealth",
]

#: where ``guard api`` listens by default (api.host, api.port)
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
_KEY_PREFIX = "hg_"  # every key `guard api-keys create` prints starts so (healing_guard/rest/keys.py)


class GuardAPIError(Exception):
    """The API refused or failed a request. ``status`` is the HTTP status (None: no answer at all)."""

    def __init__(self, status: int | None, message: str, *, field: str | None = None, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
        self.field = field  # the request field at fault (422), when the server names one
        self.body = body  # the decoded answer, when it was JSON


def _percent(fraction: Any) -> float | None:
    """A fraction 0..1 as a percentage with two decimals (the API's four-digit fractions, nothing
    invented); None stays None (unknown: no jobs, no tests, no decided re-run)."""
    if fraction is None or isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        return None
    return round(float(fraction) * 100.0, 2)


@dataclass(frozen=True)
class RepoHealth:
    """A repository's CI health over ``days`` days (``GET .../healing/status``).

    Percent (0-100, None when unknown): ``flaky_rate`` (flaky tests among the tests seen) and
    ``healing_success_rate`` (the guard's re-runs whose next attempt passed, among those decided).
    Fractions (0-1), as the REST API sends them: ``failure_rate``, ``flaky_test_rate``,
    ``healing_success_fraction``.
    """

    repo: str
    days: int
    jobs: int
    failed_jobs: int
    flaky_rate: float | None
    healing_success_rate: float | None
    failure_rate: float | None
    flaky_test_rate: float | None
    healing_success_fraction: float | None
    flaky_tests: int
    auto_commands: int
    time_saved_minutes: float
    cost_saved_usd: float
    last_failure_at: str | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RepoHealth:
        d = _pick(cls, data)
        healed = data.get("healing_success_rate")  # the API's fraction; the SDK's name means percent
        d.update(flaky_rate=_percent(data.get("flaky_test_rate")), healing_success_rate=_percent(healed),
                 healing_success_fraction=healed)
        return cls(**d)


@dataclass(frozen=True)
class Evidence:
    line: int
    text: str
    pattern: str


@dataclass(frozen=True)
class Recommendation:
    """An action for the failure; ``confidence`` in percent (the diagnosis's, 0-100)."""

    action: str
    confidence: float
    reason: str
    automatic: bool = False
    confidence_fraction: float = 0.0  # the same, 0-1, as the API sends it

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Recommendation:
        return cls(**_with_percent_confidence(_pick(cls, data)))


def _with_percent_confidence(d: dict[str, Any]) -> dict[str, Any]:
    """``confidence`` (the API's fraction) as percent, the fraction kept as ``confidence_fraction``."""
    fraction = d.get("confidence")
    if isinstance(fraction, (int, float)) and not isinstance(fraction, bool):
        d["confidence_fraction"] = float(fraction)
        d["confidence"] = _percent(fraction)
    return d


@dataclass(frozen=True)
class FailureAnalysis:
    """Why a job failed and what to do (``GET .../failures/{job_id}/analysis``).

    ``confidence`` (the category's) is in percent like the recommendations' (``confidence_fraction``:
    0-1). ``commands`` stays as the API's dicts (id, action, reason, cost, outcome, confidence as a
    fraction): it is a log to show, not something to compute with.
    """

    job_key: str
    provider: str
    owner: str
    repo: str
    job_id: str
    attempt: int
    category: str
    confidence: float
    evidence: list[Evidence]
    recommendations: list[Recommendation]
    run_id: str | None = None
    template: str | None = None
    exit_code: int | None = None
    failed_tests: list[str] = field(default_factory=list)
    log_lines: int = 0
    log_complete: bool = True
    diagnosed_at: str = ""
    commands: list[dict[str, Any]] = field(default_factory=list)
    confidence_fraction: float = 0.0


@dataclass(frozen=True)
class HealReceipt:
    """A queued heal request (``POST .../heal``): the same request always gives the same command id."""

    command_id: str
    action: str
    status: str
    strategy: str
    job_key: str
    notify_command_id: str | None = None


def _pick(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields ``cls`` knows: a newer server may send more, and an old SDK must not break."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: v for k, v in data.items() if k in names}


def _split(repo: str) -> tuple[str, str]:
    owner, sep, name = repo.strip().strip("/").rpartition("/")
    if not sep or not owner or not name:
        raise ValueError(f"repo: expected 'owner/repo', got {repo!r}")
    return owner, name


class GuardClient:
    """The guard's REST API for one API key.

    ``base_url``: default ``GUARD_API_URL``, else http://127.0.0.1:8000 (where ``guard api`` listens).
    ``api_key``: default ``GUARD_API_KEY``. A key that cannot be a guard key (every key
    ``guard api-keys create`` prints starts with ``hg_``; the product document's ``"your-key"`` does
    not) is replaced by ``GUARD_API_KEY`` when that is set, so the documented examples run in a CI job
    that holds the real key in its secrets; the API would refuse it anyway. ``env``: instead of the
    process environment.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, timeout: float = 10, *,
                 provider: str = "github", env: Mapping[str, str] | None = None) -> None:
        environ = os.environ if env is None else env
        from_env = environ.get("GUARD_API_KEY") or None
        if not api_key or (from_env and not api_key.startswith(_KEY_PREFIX)):
            api_key = from_env
        if not api_key:
            raise ValueError("api_key: required, or GUARD_API_KEY (create one with "
                             "`guard api-keys create --repo owner/repo`)")
        self.api_key = api_key
        #: the CI platform of the repositories this client names (a name is only unique on its platform)
        self.provider = provider
        base = base_url or environ.get("GUARD_API_URL") or DEFAULT_BASE_URL
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"base_url: expected an http(s) URL such as {DEFAULT_BASE_URL}, got {base!r}")
        self.base_url = base.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:  # never the key
        return f"GuardClient(base_url={self.base_url!r})"

    # --- the API -----------------------------------------------------------------------------------
    def get_repo_health(self, repo: str, days: int = 30) -> RepoHealth:
        """Failure rate, healing success rate, flaky-test rate and savings of ``owner/repo``."""
        data = self._request("GET", f"{self._repo_path(repo)}/healing/status", query={"days": days})
        return RepoHealth.from_api(data)

    def analyze_failure(self, *, repo: str, job_id: str | int) -> FailureAnalysis:
        """The guard's diagnosis of a failed job (404 -> GuardAPIError when it has not seen it fail)."""
        data = self._request("GET", f"{self._job_path(repo, job_id)}/analysis")
        d = _with_percent_confidence(_pick(FailureAnalysis, data))
        d["evidence"] = [Evidence(**_pick(Evidence, e)) for e in data.get("evidence") or []]
        d["recommendations"] = [Recommendation.from_api(r) for r in data.get("recommendations") or []]
        return FailureAnalysis(**d)

    def heal(self, *, repo: str, job_id: str | int, strategy: str = "auto",
             notify: bool | Sequence[str] = False) -> HealReceipt:
        """Queue a remediation: ``strategy`` is ``auto`` or a remediation-table name (e.g.
        ``network_backoff``); ``notify`` is True (Slack), False or channels (slack, jira, pagerduty)."""
        body = {"strategy": str(strategy), "notify": notify if isinstance(notify, bool) else list(notify)}
        data = self._request("POST", f"{self._job_path(repo, job_id)}/heal", body=body)
        return HealReceipt(**_pick(HealReceipt, data))

    def get_roi(self, repo: str, days: int = 30) -> dict[str, Any]:
        """The ROI report and its daily series: ``{"report": {...}, "daily": [...]}``."""
        data = self._request("GET", f"{self._repo_path(repo)}/roi", query={"days": days})
        return dict(data)

    def health(self) -> dict[str, Any]:
        """``GET /health`` (no key needed): whether the API and its warehouse answer.

        A degraded API answers 503 with the same body; that body is returned, not raised.
        """
        try:
            return dict(self._request("GET", "/health", auth=False))
        except GuardAPIError as exc:
            if exc.status == 503 and isinstance(exc.body, dict):
                return dict(exc.body)
            raise

    # --- plumbing ----------------------------------------------------------------------------------
    @staticmethod
    def _repo_path(repo: str) -> str:
        owner, name = _split(repo)
        # GitLab subgroups keep their '/': the server matches owner as a path
        return f"/api/v1/repos/{urllib.parse.quote(owner, safe='/')}/{urllib.parse.quote(name, safe='')}"

    def _job_path(self, repo: str, job_id: str | int) -> str:
        jid = str(job_id)
        if not jid:
            raise ValueError("job_id: required")
        return f"{self._repo_path(repo)}/failures/{urllib.parse.quote(jid, safe='')}"

    def _request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                 body: Any = None, auth: bool = True) -> Any:
        url = self.base_url + path
        if path.startswith("/api/v1/repos/"):
            query = {**(query or {}), "provider": self.provider}
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json", "User-Agent": "healing-guard-sdk"}
        if auth:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - http(s) base URL
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GuardAPIError(None, f"cannot reach the guard API at {self.base_url}: {reason}; is `guard api` "
                                      "running there?") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise GuardAPIError(None, f"the API at {self.base_url} answered {path} with something that is not "
                                      "JSON; is base_url the guard API?") from None


def _api_error(exc: urllib.error.HTTPError) -> GuardAPIError:
    raw = exc.read() or b""
    message, fld, body = f"{exc.code} {exc.reason}", None, None
    try:
        body = json.loads(raw)
    except ValueError:
        if raw:
            message = raw.decode("utf-8", "replace")[:500]
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            message = body["detail"]
        elif body.get("detail") is not None:
            message = json.dumps(body["detail"])[:500]
        fld = body.get("field") if isinstance(body.get("field"), str) else None
    return GuardAPIError(exc.code, message, field=fld, body=body)
