"""Credentials the guard's Kafka clients present, and the ACLs that keep ``guard.actions`` for the worker.

:func:`client_options` turns the settings (``broker.sasl_mechanism``, ``broker.username``,
``broker.password``, ``broker.tls``) into the keyword arguments of aiokafka's producers, consumers and
admin clients; :func:`faust_credentials` into Faust's ``broker_credentials``. With no mechanism and no TLS
both are empty and the clients speak PLAINTEXT, as before.

:func:`guard_acls` is the ACL set of an install: the ``worker`` principal may write ``guard.actions``
(and the API's principal, when it has its own), the ``executor`` principal may only read it, and nobody
else may touch it; :func:`healing_guard.brokers.create_acls` puts such a set on a broker.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .settings import Settings
from .topics import internal_topics

__all__ = ["Acl", "client_options", "faust_credentials", "guard_acls", "sasl_options"]


def sasl_options(username: str, password: str, mechanism: str = "PLAIN", *, tls: bool = False) -> dict[str, Any]:
    """aiokafka keyword arguments of a SASL client."""
    out: dict[str, Any] = {
        "security_protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }
    if tls:
        out["ssl_context"] = ssl.create_default_context()
    return out


def client_options(settings: Settings) -> dict[str, Any]:
    """The security keyword arguments for aiokafka clients (``{}`` on a PLAINTEXT broker)."""
    if settings.broker_sasl_mechanism:
        return sasl_options(settings.broker_username, settings.broker_password, settings.broker_sasl_mechanism,
                            tls=settings.broker_tls)
    if settings.broker_tls:
        return {"security_protocol": "SSL", "ssl_context": ssl.create_default_context()}
    return {}


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the settings, or ``None`` on a PLAINTEXT broker."""
    import faust

    ctx = ssl.create_default_context() if settings.broker_tls else None
    if settings.broker_sasl_mechanism:
        return faust.SASLCredentials(username=settings.broker_username, password=settings.broker_password,
                                     mechanism=settings.broker_sasl_mechanism, ssl_context=ctx)
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


# --- ACLs ------------------------------------------------------------------------------------------------

ResourceType = Literal["topic", "group", "cluster", "transactional_id"]
Operation = Literal["all", "read", "write", "create", "delete", "alter", "describe", "cluster_action",
                    "describe_configs", "alter_configs", "idempotent_write"]


@dataclass(frozen=True)
class Acl:
    """One ACL binding: ``principal`` (``User:worker``) may (``allow``) or may not (``deny``) do
    ``operation`` on the resource ``resource_type``/``name`` (``prefixed``: every name starting so)."""

    principal: str
    resource_type: ResourceType
    name: str
    operation: Operation
    pattern: Literal["literal", "prefixed"] = "literal"
    permission: Literal["allow", "deny"] = "allow"
    host: str = "*"


def _grant(principal: str, resource: ResourceType, names: Iterable[str], ops: Iterable[Operation],
           pattern: Literal["literal", "prefixed"] = "literal") -> list[Acl]:
    return [Acl(principal, resource, n, op, pattern) for n in names for op in ops]


def guard_acls(settings: Settings, *, worker: str = "worker", executor: str = "executor",
               api: str | None = None, forwarders: Iterable[str] = ()) -> list[Acl]:
    """The ACLs of an install whose topics and group ids follow ``settings`` (prefix, app id).

    * ``worker``: reads and writes the guard's topics, but only writes ``guard.actions``; its consumer
      group is the app id, its tables' changelogs and the assignor's topic are ``<app_id>-...``;
    * ``api`` (when the API runs under its own principal): writes ``guard.actions`` only;
    * ``executor``: reads ``guard.actions`` in the group ``<app_id>-executor``, writes ``guard.outcomes``
      and ``guard.deadletter``;
    * ``forwarders``: write the input topics (``ci.jobs``, ``ci.logs``, ``ci.tests``).

    Everyone else, and these principals beyond this, is refused (the broker must run with
    ``allow.everyone.if.no.acl.found=false``, the default of Kafka's ``StandardAuthorizer``)."""
    t = settings.topics
    w, x = f"User:{worker}", f"User:{executor}"
    others = [n for f, n in t.all().items() if f != "actions"]
    acls = _grant(w, "topic", others, ("read", "write", "describe"))
    acls += _grant(w, "topic", [t.actions], ("write", "describe"))
    acls += _grant(w, "topic", [n for n in internal_topics(settings)], ("read", "write", "describe"))
    acls += _grant(w, "group", [settings.app_id], ("read", "describe"))
    if api:
        acls += _grant(f"User:{api}", "topic", [t.actions], ("write", "describe"))
    acls += _grant(x, "topic", [t.actions], ("read", "describe"))
    acls += _grant(x, "topic", [t.outcomes, t.deadletter], ("write", "describe"))
    acls += _grant(x, "group", [f"{settings.app_id}-executor"], ("read", "describe"))
    for f in forwarders:
        acls += _grant(f"User:{f}", "topic", [t.jobs, t.logs, t.tests], ("write", "describe"))
    return acls
