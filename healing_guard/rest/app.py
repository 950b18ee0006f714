"""The REST API: repository health, failure analyses, ROI data and heal requests, behind API keys.

Everything is read from the warehouse through a ``WarehouseReader`` (``warehouse/read.py``); heal
requests become :class:`~healing_guard.schemas.Command` records on ``guard.actions`` through a
:class:`CommandSink`, so the executor that carries out the worker's commands carries these out too,
with the same allow-list, dry run and idempotency. The API itself holds no state but the keys file.

Reader calls run in a worker thread, one at a time: the warehouse client (chDB in-process, or one
clickhouse-connect HTTP client) is not meant to be shared by concurrent queries, and the API's load is
a few dashboards and scripts. A reader that raises answers 503 with the reason, so a stopped
ClickHouse reads as "unavailable", not as a bug.
"""

# no `from __future__ import annotations`: FastAPI resolves the route signatures (local Key alias) at runtime

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

from fastapi import Depends, FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..patterns.tokenize import redact
from ..schemas import Command
from ..engine.requests import plan_heal
from ..settings import Settings
from .keys import ApiKey, ApiKeys
from .models import (DirectiveAnswer, Error, FailureAnalysis, HealAccepted, HealRequest, Health, RepoHealth, Roi,
                     RoiAll)

__all__ = ["ApiError", "CommandSink", "KafkaCommandSink", "Reader", "create_app", "DASHBOARD"]

log = logging.getLogger("healing_guard.rest")

#: the dashboard page (written by the dashboard's owner; served as is)
DASHBOARD = Path(__file__).with_name("static") / "dashboard.html"
_REALM = 'Bearer realm="healing-guard"'
T = TypeVar("T")


class Reader(Protocol):
    """The part of ``warehouse.read.WarehouseReader`` the API uses (see the issue-6 contract)."""

    def report(self, owner: str | None = None, repo: str | None = None, days: int | None = None, *,
               provider: str | None = None, repos: Sequence[str] | None = None) -> dict[str, Any]: ...
    def daily(self, owner: str | None, repo: str | None, days: int = 30, *,
              provider: str | None = None, repos: Sequence[str] | None = None) -> list[dict[str, Any]]: ...
    def recent_actions(self, owner: str | None = None, repo: str | None = None, days: int | None = 30, *,
                       provider: str | None = None, repos: Sequence[str] | None = None) -> list[dict[str, Any]]: ...
    def repo_keys(self) -> list[tuple[str, str, str]]: ...
    def repo_health(self, owner: str, repo: str, days: int = 30, *, provider: str | None = None) -> dict[str, Any]: ...
    def failure(self, owner: str, repo: str, job_id: str, *, provider: str | None = None) -> dict[str, Any] | None: ...
    def repos(self) -> list[str]: ...
    def directive_command(self, owner: str, repo: str, *, provider: str, job_name: str | None = None,
                          run_id: str | None = None, commit: str | None = None,
                          attempt: int | None = None) -> dict[str, Any] | None: ...


class CommandSink(Protocol):
    """Where heal commands go (``guard.actions`` in production; a list in tests)."""

    async def send(self, cmd: Command) -> None: ...


#: longest a heal request waits for the broker to take its command (then 503; the client may retry,
#: the command id is deterministic)
SEND_TIMEOUT_SECONDS = 8.0
#: longest /health waits for the broker (producer start plus a metadata request), and how long its
#: answer is reused, so that frequent health checks cost at most one broker round trip per interval
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_CACHE_SECONDS = 5.0


class KafkaCommandSink:
    """Produces commands to ``settings.topics.actions`` keyed by job key, like the worker does.

    The producer starts on the first heal request (or ``/health``), not at API start: the read routes
    must keep working while the broker is down, and a failed start is retried by the next request.
    """

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.topic: str = settings.topics.actions
        self._producer: Any = None
        self._lock: Any = None
        self._probe_lock: Any = None
        #: (when, why not) of the last broker check; why is None when commands could reach the broker
        self._probe: tuple[float, str | None] | None = None
        self._clock: Callable[[], float] = time.monotonic

    async def _started(self) -> Any:
        import asyncio

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._producer is None:
                from ..producers import start_producer

                self._producer = await start_producer(self.settings, request_timeout_ms=10_000)
        return self._producer

    async def send(self, cmd: Command) -> None:
        import asyncio

        from ..signing import sign_headers

        producer = await self._started()
        value = cmd.to_json()
        # signed like the worker's commands (healing_guard/signing.py), when a command key is configured
        headers = sign_headers(self.settings, value)
        signed = {"headers": headers} if headers else {}
        # bounded: a missing topic or a broker that stopped answering must not hold the HTTP request
        await asyncio.wait_for(producer.send_and_wait(self.topic, key=cmd.job_key.encode("utf-8"),
                                                      value=value, **signed), timeout=SEND_TIMEOUT_SECONDS)

    async def unavailable(self) -> str | None:
        """Why a command cannot reach the broker now, or None when it can: the producer is (or gets)
        started and the broker answers a metadata request that lists the actions topic, within
        ``PROBE_TIMEOUT_SECONDS``. The answer is reused for ``PROBE_CACHE_SECONDS``; concurrent callers
        share one check."""
        import asyncio

        if self._probe_lock is None:
            self._probe_lock = asyncio.Lock()
        async with self._probe_lock:
            if self._probe is not None and self._clock() - self._probe[0] < PROBE_CACHE_SECONDS:
                return self._probe[1]
            why = await self._check_broker()
            self._probe = (self._clock(), why)
            return why

    async def _check_broker(self) -> str | None:
        import asyncio

        where = f"the broker at {self.settings.bootstrap}"
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                producer = await self._started()
                metadata = await producer.client.fetch_all_metadata()
        except TimeoutError:
            return f"{where} did not answer within {PROBE_TIMEOUT_SECONDS:g} s"
        except Exception as exc:
            name, msg = type(exc).__name__, str(exc)
            return f"{where} cannot be reached ({msg if msg.startswith(name) else f'{name}: {msg}'})"
        if self.topic not in metadata.topics():
            return f"{where} has no topic {self.topic} (create the guard's topics: `guard topics create`)"
        return None

    async def close(self) -> None:
        if self._producer is not None:
            p, self._producer = self._producer, None
            await p.stop()


class ApiError(StarletteHTTPException):
    """An error answer with the request field at fault (rendered as :class:`~.models.Error`)."""

    def __init__(self, status_code: int, detail: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code, detail, headers)
        self.field = field


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {
        400: "the body cannot be parsed (not UTF-8 JSON)",
        401: "no valid API key (send `Authorization: Bearer <key>` or `X-API-Key: <key>`)",
        403: "the API key is not scoped to this repository",
        404: "no such route (a malformed owner, repo or job id), or no diagnosis of that job",
        422: "a request field is invalid; `field` names it",
        503: "the warehouse or the broker does not answer",
    }
    return {c: {"model": Error, "description": words[c]} for c in codes}


_bearer = HTTPBearer(auto_error=False, description="an API key from `guard api-keys create`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same API key, as a header")

#: one path segment: no '/', no space or control character, not '.' or '..' (clients collapse those);
#: '.github' is fine. Explicit ranges, not \s: Python's and ECMA's \s differ (U+0085), and clients
#: generating from the OpenAPI pattern must agree with the server.
_SEGMENT = r"\.?[^/.\u0000-\u0020\u007f][^/\u0000-\u0020\u007f]*"
Owner = Annotated[str, PathParam(min_length=1, max_length=255, pattern=rf"^{_SEGMENT}(/{_SEGMENT})*$",
                                 description="organisation, group or user (GitLab subgroups: group/sub)")]
Repo = Annotated[str, PathParam(min_length=1, max_length=255, pattern=rf"^{_SEGMENT}$",
                                description="repository or project name")]
JobId = Annotated[str, PathParam(min_length=1, max_length=255, pattern=rf"^{_SEGMENT}$",
                                 description="the platform's job id")]
Days = Annotated[int, Query(ge=1, le=3660, description="the window, in days back from now")]
ProviderQ = Annotated[Literal["github", "gitlab", "jenkins", "circleci"],
                      Query(description="the CI platform of the repository (a name is only unique on its "
                                        "platform); github when not given")]


def create_app(reader_factory: Callable[[], Reader], *, keys: ApiKeys, actions: CommandSink | None = None,
               settings: Any = None, metrics_auth: bool = False) -> FastAPI:
    """The ASGI app. ``reader_factory`` is called per request, so the app can start before the
    warehouse answers (``/health`` then says so) and a reconnecting factory can heal itself."""
    lock = threading.Lock()

    def _call(fn: Callable[[Reader], T]) -> T:
        with lock:
            # the warehouse holds redacted text; this also covers rows written before a redaction rule
            return redact_tree(fn(reader_factory()))

    async def read(fn: Callable[[Reader], T]) -> T:
        try:
            return await run_in_threadpool(_call, fn)
        except Exception as exc:
            log.exception("warehouse query failed")
            raise ApiError(503, f"the warehouse did not answer ({type(exc).__name__}: {exc}); check that "
                                "ClickHouse is up, or that no other process holds the chDB directory") from exc

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        close = getattr(actions, "close", None)
        if close is not None:
            await close()

    app = FastAPI(
        title="Self-healing pipeline guard API",
        version=__version__,
        description="Repository CI health, failure diagnoses, ROI figures and heal requests. Every "
                    "`/api/v1` route needs an API key (`guard api-keys create --repo owner/repo`) sent as "
                    "`Authorization: Bearer <key>` or `X-API-Key: <key>`; a key only opens the repositories "
                    "it was created for.",
        lifespan=lifespan,
    )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        body = Error(detail=redact(str(exc.detail)), field=getattr(exc, "field", None))
        return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        fields: list[str] = []
        parts: list[str] = []
        for e in exc.errors():
            loc = [str(x) for x in e.get("loc", ()) if not isinstance(x, int)]
            name = loc[1] if len(loc) > 1 else (loc[0] if loc else "request")
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            if e.get("type") == "json_invalid":
                name = "body"
            fields.append(name)
            parts.append(f"{name}: {msg}")
        body = Error(detail=redact("; ".join(dict.fromkeys(parts))) or "invalid request",
                     field=fields[0] if fields else None)
        return JSONResponse(body.model_dump(), status_code=422)

    def authenticate(bearer: HTTPAuthorizationCredentials | None, header: str | None) -> ApiKey:
        token = bearer.credentials if bearer is not None else header
        key = keys.authenticate(token)
        if key is None:
            what = "no API key" if not token else "unknown or revoked API key"
            raise ApiError(401, f"{what}: send `Authorization: Bearer <key>` or `X-API-Key: <key>` "
                                "(create one with `guard api-keys create --repo owner/repo`)",
                           headers={"WWW-Authenticate": _REALM})
        return key

    def authorize(request: Request, owner: Owner, repo: Repo,
                  bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                  header: Annotated[str | None, Depends(_header)], provider: ProviderQ = "github") -> ApiKey:
        key = authenticate(bearer, header)
        if not key.allows(provider, owner, repo):
            raise ApiError(403, f"API key {key.id} is not scoped to {provider}:{owner}/{repo} (its scopes: "
                                f"{', '.join(key.scopes)}; another platform's repository: ?provider=...)")
        return key

    def metrics_key(bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                    header: Annotated[str | None, Depends(_header)]) -> None:
        """With ``api.metrics_auth``: /metrics lists every repository, so it needs a ``*`` key."""
        key = authenticate(bearer, header)
        if not key.allows_everything():
            raise ApiError(403, f"API key {key.id} may not read /metrics: it lists every repository, so it needs "
                                "a key for all of them (`guard api-keys create --all`)")

    Key = Annotated[ApiKey, Depends(authorize)]

    @app.get("/health", response_model=Health, tags=["service"],
             summary="Liveness, warehouse and broker status",
             responses={503: {"model": Health, "description": "the warehouse does not answer"}})
    async def health() -> Response:
        """200 when the warehouse answers a query, 503 (same body) when it does not: a load balancer
        should not send dashboards to an API that can only fail. ``actions`` says whether a heal request
        could queue its command now (the broker answers, checked at most every few seconds); when it
        cannot, the status is "degraded" and ``detail`` says why, but the answer stays 200: every read
        route still works."""
        ok, reasons = True, []
        try:
            await run_in_threadpool(_call, lambda r: r.repos())
        except Exception as exc:
            ok = False
            reasons.append(f"{type(exc).__name__}: {exc}")
        can_act = actions is not None
        check = getattr(actions, "unavailable", None)
        if check is not None:
            why = await check()
            if why is not None:
                can_act = False
                reasons.append(f"heal requests cannot queue commands: {why}")
        degraded = not ok or (actions is not None and not can_act)
        body = Health(status="degraded" if degraded else "ok", warehouse=ok, detail="; ".join(reasons) or None,
                      actions=can_act, version=__version__)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    async def _metrics_body() -> Response:
        try:
            from healing_guard.metrics import render_api_metrics
        except ImportError as exc:
            raise ApiError(503, f"metrics are not available in this installation ({exc})") from exc
        body, content_type = await read(render_api_metrics)
        return Response(body, media_type=content_type)

    _metrics_doc = dict(tags=["service"], summary="Prometheus metrics from the warehouse",
                        response_class=PlainTextResponse,
                        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                         "description": "Prometheus text exposition format"},
                                   **_responses(*((401, 403, 503) if metrics_auth else (503,)))})
    if metrics_auth:
        @app.get("/metrics", **_metrics_doc)  # type: ignore[arg-type]
        async def metrics_with_key(_auth: Annotated[None, Depends(metrics_key)]) -> Response:
            """The ROI figures as Prometheus gauges, for an API key of every repository (``api.metrics_auth``:
            it lists them all; ``guard api-keys create --all``)."""
            return await _metrics_body()
    else:
        @app.get("/metrics", **_metrics_doc)  # type: ignore[arg-type]
        async def metrics() -> Response:
            """The ROI figures as Prometheus gauges. Open, like most /metrics: scrape it privately, or set
            ``api.metrics_auth: true`` (``guard api --metrics-auth``) to require an API key of every
            repository, since it lists them all."""
            return await _metrics_body()

    @app.get("/api/v1/repos/{owner:path}/{repo}/healing/status", response_model=RepoHealth, tags=["repositories"],
             summary="A repository's CI health", responses=_responses(401, 403, 404, 422, 503))
    async def healing_status(owner: Owner, repo: Repo, _key: Key, days: Days = 30,
                             provider: ProviderQ = "github") -> Any:
        """Failure rate, healing success rate, flaky-test rate and what the guard saved, over ``days``."""
        return await read(lambda r: r.repo_health(owner, repo, days, provider=provider))

    @app.get("/api/v1/repos/{owner:path}/{repo}/failures/{job_id}/analysis", response_model=FailureAnalysis,
             tags=["failures"], summary="Why a job failed and what to do",
             responses=_responses(401, 403, 404, 422, 503))
    async def failure_analysis(owner: Owner, repo: Repo, job_id: JobId, _key: Key,
                               provider: ProviderQ = "github") -> Any:
        """The latest diagnosis of the job: category, confidence, evidence lines, the commands issued
        and the recommendations."""
        found = await read(lambda r: r.failure(owner, repo, job_id, provider=provider))
        if found is None:
            raise _no_failure(owner, repo, job_id)
        return found

    @app.post("/api/v1/repos/{owner:path}/{repo}/failures/{job_id}/heal", response_model=HealAccepted,
              status_code=202, tags=["failures"], summary="Queue a remediation for a failed job",
              responses=_responses(400, 401, 403, 404, 422, 503))
    async def heal(owner: Owner, repo: Repo, job_id: JobId, key: Key,
                   request: HealRequest | None = None, provider: ProviderQ = "github") -> Any:
        """Queue the strategy's action for the executor; a preset lets the guard decide again under the
        preset's settings. The command id is derived from job, attempt and action, so repeating the request
        (or asking for what the guard already did) acts once."""
        req = request or HealRequest(strategy="auto", notify=False)
        if actions is None:
            raise ApiError(503, "heal requests need a broker: this API has no command sink (started with the "
                                "embedded broker?); start `guard api --broker kafka://host:port`")
        found = await read(lambda r: r.failure(owner, repo, job_id, provider=provider))
        if found is None:
            raise _no_failure(owner, repo, job_id)
        plan = plan_heal(found, req.strategy, req.notify, requested_by=f"api-key:{key.id}",
                         settings=settings if isinstance(settings, Settings) else None)
        try:
            await actions.send(plan.command)
            if plan.notify_command is not None:
                await actions.send(plan.notify_command)
        except Exception as exc:
            log.exception("could not queue command %s", plan.command.command_id)
            raise ApiError(503, f"could not queue the command ({type(exc).__name__}: {exc}); the broker may be "
                                "down: try again (the same request gives the same command id)") from exc
        return HealAccepted(command_id=plan.command.command_id, action=plan.command.action, status="queued",
                            strategy=plan.strategy, job_key=plan.command.job_key,
                            notify_command_id=plan.notify_command.command_id if plan.notify_command else None)

    @app.get("/api/v1/repos/{owner:path}/{repo}/directive", response_model=DirectiveAnswer, tags=["failures"],
             summary="What a job's next attempt changes", responses=_responses(401, 403, 404, 422, 503))
    async def directive(owner: Owner, repo: Repo, _key: Key, provider: ProviderQ = "github",
                        job_name: Annotated[str | None, Query(max_length=255, description="the job's name")] = None,
                        run_id: Annotated[str | None, Query(max_length=255, pattern=r"^[\w.-]+$",
                                                            description="run / pipeline id")] = None,
                        commit: Annotated[str | None, Query(pattern=r"^[0-9a-fA-F]{7,64}$",
                                                            description="commit SHA (CircleCI)")] = None,
                        attempt: Annotated[int | None, Query(ge=2, le=1000,
                                                             description="the attempt asking")] = None) -> Any:
        """The fix the guard chose when it re-ran this job (only the failed tests, one at a time, more
        memory, a fresh cache, ...), for the re-run's first step to apply: `guard directive apply`, the
        Action's `prepare` mode and the CI templates call this. 404 when the attempt is a plain one."""
        from ..directives import from_command

        if not run_id and not commit:  # 404, not 400: the query is valid, it only names no attempt
            raise ApiError(404, "no directive without an attempt to look for: give run_id (the run / pipeline "
                                "id) or commit (the commit SHA) of the job", field="run_id")
        found = await read(lambda r: r.directive_command(owner, repo, provider=provider, job_name=job_name,
                                                         run_id=run_id, commit=commit, attempt=attempt))
        d = from_command(found) if found is not None else None
        if d is None:
            raise ApiError(404, f"no directive for {job_name or 'this job'} in {owner}/{repo} "
                                f"({'run ' + run_id if run_id else 'commit ' + str(commit)}): the guard did not re-run "
                                "it with a fix in the last 24 hours, so this attempt runs as it is", field="job_name")
        return DirectiveAnswer(command_id=d.command_id, action=d.action, applies_to_attempt=d.attempt + 1,
                               changes=d.changes, directive=d.to_dict())

    @app.get("/api/v1/repos/{owner:path}/{repo}/roi", response_model=Roi, tags=["repositories"],
             summary="ROI report, daily series and recent actions (the dashboard's data)",
             responses=_responses(401, 403, 404, 422, 503))
    async def roi(owner: Owner, repo: Repo, _key: Key, days: Days = 30, provider: ProviderQ = "github") -> Any:
        """Time and money saved, recovery rates, flaky tests, top failure templates, budget burn and the
        guard's latest commands with their outcomes."""
        return await read(lambda r: {"report": r.report(owner, repo, days, provider=provider),
                                     "daily": r.daily(owner, repo, days, provider=provider),
                                     "actions": r.recent_actions(owner, repo, days, provider=provider)})

    def any_key(bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                header: Annotated[str | None, Depends(_header)]) -> ApiKey:
        return authenticate(bearer, header)

    @app.get("/api/v1/roi", response_model=RoiAll, tags=["repositories"],
             summary="ROI over every repository the key may read (the dashboard's all-repositories view)",
             responses=_responses(401, 422, 503))
    async def roi_all(key: Annotated[ApiKey, Depends(any_key)], days: Days = 30) -> Any:
        """The ROI route's answer added up over every repository (on every platform) this API key may
        read: all of them for a ``*`` key, only its own for a key scoped to some. The figures are the
        repository ROI's definitions over the union of those repositories' facts (not an average of
        repository figures)."""
        def answer(r: Reader) -> dict[str, Any]:
            found = [f"{p}:{o}/{n}" for p, o, n in r.repo_keys() if key.allows(p, o, n)]
            repos = None if key.allows_everything() else found
            return {"repositories": found, "report": r.report(None, None, days, repos=repos),
                    "daily": r.daily(None, None, days, repos=repos),
                    "actions": r.recent_actions(None, None, days, repos=repos)}

        return await read(answer)

    @app.get("/dashboard", response_class=HTMLResponse, tags=["service"], summary="The ROI dashboard page",
             responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}, **_responses(404)})
    async def dashboard() -> Response:
        """A static page; it reads the key from the URL fragment (``#key=...&repo=owner/repo``), which
        browsers never send to servers, and calls the ROI route with it."""
        if not DASHBOARD.is_file():
            raise ApiError(404, f"the dashboard page is not installed ({DASHBOARD} is missing)")
        return FileResponse(DASHBOARD, media_type="text/html")

    return app


def redact_tree(value: T) -> T:
    """``value`` (JSON-like: dicts, lists, strings, numbers) with every string redacted; containers are
    rebuilt only when something inside changed."""
    if isinstance(value, str):
        return redact(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        items = {k: redact_tree(v) for k, v in value.items()}
        return value if all(items[k] is value[k] for k in value) else items  # type: ignore[return-value]
    if isinstance(value, (list, tuple)):
        seq = [redact_tree(v) for v in value]
        if all(a is b for a, b in zip(seq, value)):
            return value
        return type(value)(seq) if isinstance(value, list) else tuple(seq)  # type: ignore[return-value]
    return value


def _no_failure(owner: str, repo: str, job_id: str) -> ApiError:
    return ApiError(404, f"no diagnosis of job {job_id} in {owner}/{repo}: the guard has not seen that job fail "
                         "(check the job id; a failed job appears once the worker has diagnosed its log)",
                    field="job_id")
