"""Starting the guard's own Kafka producers (``guard forward``, the webhook receiver, the API's command sink).

They ask for an idempotent producer (``acks=all``, ``enable_idempotence``): a retried send is not written
twice. The embedded broker (Tansu) answers Kafka's ``InitProducerId`` with an unknown error, so against it
the producer is started again without idempotence, and the log says so once: a retried send may then
repeat a message, which the guard's consumers already drop by id (job keys and chunk numbers, command ids,
fact ids, delivery digests).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

log = logging.getLogger("healing_guard.producers")


async def start_producer(settings: Any, **options: Any) -> Any:
    """A started ``AIOKafkaProducer`` on ``settings``' broker (its SASL options included), idempotent
    where the broker allows it. ``options``: further producer arguments (``max_request_size``, ...)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import UnknownError

    from .kafka_auth import client_options

    def make(idempotent: bool) -> Any:
        return AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=idempotent,
                                **client_options(settings), **options)

    p = make(True)
    try:
        await p.start()
        return p
    except UnknownError as exc:  # the broker does not answer InitProducerId (Tansu)
        with contextlib.suppress(Exception):
            await p.stop()
        log.warning("the broker at %s refused an idempotent producer (%s): sending without idempotence (a "
                    "retried send may repeat a message; the guard's consumers drop repeats by id)",
                    settings.bootstrap, exc)
    except BaseException:
        with contextlib.suppress(Exception):
            await p.stop()
        raise
    p = make(False)
    try:
        await p.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await p.stop()
        raise
    return p
