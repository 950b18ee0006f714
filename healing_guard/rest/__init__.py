"""The REST API (FastAPI, served by uvicorn with ``guard api``) and its API keys.

``create_app`` builds the app from a warehouse reader factory, the keys and an optional command sink;
``cli`` holds the ``guard api`` and ``guard api-keys`` commands. Importing this package imports FastAPI
but neither Kafka nor ClickHouse.
"""

from .app import ApiError, CommandSink, KafkaCommandSink, Reader, create_app
from .keys import ApiKey, ApiKeys, KeyFileError

__all__ = ["ApiError", "ApiKey", "ApiKeys", "CommandSink", "KafkaCommandSink", "KeyFileError", "Reader",
           "create_app"]
