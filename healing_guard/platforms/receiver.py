"""The webhook receiver: platform deliveries in over HTTP, ``ci.jobs`` records out on Kafka.

``POST /webhooks/{github,gitlab,jenkins,circleci}``: the body is read up to ``max_body_bytes``, the
signature checked against that platform's secret (no secret configured: every delivery is refused, so a
forgotten secret cannot open the door), a replayed delivery (the same signed body, whatever its
delivery-id header says; remembered across restarts in ``<data_dir>/webhook-deliveries.log``) is
acknowledged and dropped, and each
normalized job event goes to ``ci.jobs`` keyed by its job key, secrets redacted from its free-text fields
(job name, workflow, branch, URL, labels). A delivery the guard cannot read is not lost: it goes to
``guard.deadletter`` with the reason and the field (secrets redacted; a body over 8 MiB keeps its first
8 MiB, its size and SHA-256, so the dead letter fits its topic), and the platform gets 400 (so its
delivery log shows the problem); when even the dead letter cannot be published it gets 503 and
redelivers. ``GET /healthz`` answers 200.

| outcome | HTTP |
|---|---|
| accepted (n records, maybe 0 for an event type the guard does not use) | 202 |
| replayed delivery (same signed body) | 200 |
| bad or missing signature, or no secret configured | 401 |
| unreadable payload (dead-lettered) | 400 |
| unreadable payload whose dead letter the broker refused | 503 |
| unknown provider | 404 |
| body over the limit | 413 |
| Kafka unavailable (the delivery id is forgotten, so the platform's retry gets through) | 503 |
"""

from __future__ import annotations

import logging
from pathlib import Path
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ..patterns.tokenize import redact, redact_job
from ..engine.core import dead_letter, schema_dead_letter
from ..schemas import PROVIDERS, DeadLetter
from .webhooks import DeliveryDeduper, SignatureError, WebhookError, normalize, verify

__all__ = ["SECRET_ENV", "Send", "make_app"]

log = logging.getLogger(__name__)

#: environment variables holding each platform's webhook secret
SECRET_ENV = {p: f"GUARD_WEBHOOK_SECRET_{p.upper()}" for p in PROVIDERS}

Send = Callable[[str, bytes, bytes], Awaitable[None]]  # (topic, key, value)
STATS: web.AppKey[dict[str, int]] = web.AppKey("stats", dict)


def _retry_later() -> web.Response:
    return web.json_response({"error": "could not keep the delivery, retry later"}, status=503)


#: what the receiver's producer may send in one request: a dead letter of the largest body it accepts
PRODUCER_MAX_REQUEST = DeadLetter.max_bytes


def make_app(send: Send, *, jobs_topic: str, deadletter_topic: str, secrets: Mapping[str, str],
             deduper: DeliveryDeduper | None = None, max_body_bytes: int = 25 << 20) -> web.Application:
    dedupe = deduper if deduper is not None else DeliveryDeduper()  # (an empty one is falsy)
    stats = {"accepted": 0, "records": 0, "duplicates": 0, "unauthorized": 0, "dead_letters": 0}

    async def receive(request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        if provider not in PROVIDERS:
            return web.json_response({"error": f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}"},
                                     status=404)
        if request.content_length is not None and request.content_length > max_body_bytes:
            return web.json_response({"error": f"body over {max_body_bytes} bytes"}, status=413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": f"body over {max_body_bytes} bytes"}, status=413)
        headers = dict(request.headers)
        secret = secrets.get(provider, "")
        try:
            if not secret:
                raise SignatureError(f"no webhook secret configured for {provider} (set {SECRET_ENV[provider]})")
            verify(provider, headers, body, secret)
        except SignatureError as exc:
            stats["unauthorized"] += 1
            log.warning("refused a %s delivery: %s", provider, exc)
            return web.json_response({"error": "signature check failed"}, status=401)
        try:
            events = normalize(provider, headers, body)
        except WebhookError as exc:
            dl = schema_dead_letter(f"webhook:{provider}", body, exc)
            if not await keep(provider, dl):
                return _retry_later()
            return web.json_response({"error": redact(exc.reason), "field": exc.field}, status=400)
        except Exception as exc:  # a bug must not lose the delivery
            dl = dead_letter(f"webhook:{provider}", body, f"internal error: {exc!r}")
            if not await keep(provider, dl):
                return _retry_later()
            return web.json_response({"error": "internal error"}, status=400)
        # only after the payload proved readable: a delivery that failed must be able to come again
        if dedupe.seen(provider, headers, body):
            stats["duplicates"] += 1
            return web.json_response({"duplicate": True}, status=200)
        try:
            for ev in events:
                # job names, workflows, branches and URLs are free text: no secrets onto ci.jobs
                await send(jobs_topic, ev.job_key.encode(), redact_job(ev).to_json())
        except Exception:
            dedupe.forget(provider, headers, body)  # not published: the platform's redelivery must get through
            log.exception("could not publish a %s delivery; answering 503 so the platform retries", provider)
            return web.json_response({"error": "could not publish, retry later"}, status=503)
        stats["accepted"] += 1
        stats["records"] += len(events)
        return web.json_response({"accepted": len(events)}, status=202)

    async def keep(provider: str, dl: Any) -> bool:
        """The dead letter on its topic (True), or False when the broker would not take it: the platform
        is then answered 503 and redelivers, rather than a 500 with nothing kept."""
        try:
            await send(deadletter_topic, provider.encode(), dl.to_json())
        except Exception:
            log.exception("could not publish the dead letter of a delivery (%d bytes); answering 503",
                          dl.original_size)
            return False
        stats["dead_letters"] += 1
        return True

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, **stats})

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_post("/webhooks/{provider}", receive)
    app.router.add_get("/healthz", healthz)
    app[STATS] = stats
    return app


async def serve(settings: Any, *, host: str, port: int, secrets: Mapping[str, str]) -> None:
    """Run the receiver until cancelled, producing with aiokafka to the settings' broker."""
    import asyncio

    from ..producers import start_producer

    producer = await start_producer(settings, max_request_size=PRODUCER_MAX_REQUEST)
    try:
        async def send(topic: str, key: bytes, value: bytes) -> None:
            await producer.send_and_wait(topic, key=key, value=value)

        t = settings.topics
        # deliveries seen, by signed body, kept across restarts (a replay after a restart is dropped too)
        deduper = DeliveryDeduper(path=Path(settings.data_dir) / "webhook-deliveries.log")
        app = make_app(send, jobs_topic=t.jobs, deadletter_topic=t.deadletter, secrets=secrets, deduper=deduper)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.warning("webhook receiver on http://%s:%s/webhooks/{%s}", host, port, ",".join(PROVIDERS))
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
    finally:
        await producer.stop()
