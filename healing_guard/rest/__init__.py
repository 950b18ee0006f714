"""The REST API (FastAPI, served by uvicorn with ``guard api``) and its API keys.

``create_app`` builds the app from a warehouse reader factory, the keys and an optional command sink;
``cli`` holds the ``guard api`` and ``guard api-keys`` commands. Names are imported on first use, so the
CLI registers ``guard api`` without importing FastAPI (every other command starts faster); importing
them imports FastAPI but neither Kafka nor ClickHouse.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from .app import ApiError, CommandSink, KafkaCommandSink, Reader, create_app
    from .keys import ApiKey, ApiKeys, KeyFileError

__all__ = ["ApiError", "ApiKey", "ApiKeys", "CommandSink", "KafkaCommandSink", "KeyFileError", "Reader",
           "create_app"]
_FROM_APP = ("ApiError", "CommandSink", "KafkaCommandSink", "Reader", "create_app")


def __getattr__(name: str) -> _Any:
    if name in _FROM_APP:
        from . import app

        return getattr(app, name)
    if name in ("ApiKey", "ApiKeys", "KeyFileError"):
        from . import keys

        return getattr(keys, name)
    raise AttributeError(f"module 'healing_guard.rest' has no attribute {name!r}")
