"""The action executor: carries out ``guard.actions`` commands and reports ``guard.outcomes``.

``core`` holds the logic (allow-list, idempotence store, dry run, action -> API mapping), ``clients``
the stdlib HTTP clients, ``cli`` the Kafka loop and the ``guard executor`` command.
"""

from .clients import Clients, RetryPolicy, Transport
from .core import ALLOWED_ACTIONS, DoneStore, Executor

__all__ = ["ALLOWED_ACTIONS", "Clients", "DoneStore", "Executor", "RetryPolicy", "Transport"]
