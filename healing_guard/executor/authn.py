"""The executor's check of a command's signature, before the command is parsed or acted on.

:meth:`CommandGate.command` returns the command of a ``guard.actions`` record, or raises
:class:`~healing_guard.schemas.SchemaError` -- which the consumer loop already turns into a dead letter
(reason, ``field_name`` = the header at fault) and a committed offset -- when the record is not signed by
a key of the executor's keyring (``healing_guard/signing.py``). Nothing of a refused command is carried
out: the check comes before the JSON is even read.

With no key configured the gate lets every command through and says so once, at start: the default of an
install that has not set ``GUARD_COMMAND_KEY`` / ``GUARD_COMMAND_KEY_FILE`` (docs/reliability.md).
"""

from __future__ import annotations

import logging
from typing import Any

from ..schemas import Command, SchemaError
from ..settings import Settings
from ..signing import SIGNATURE_HEADER, Keyring, keyring_of

log = logging.getLogger("healing_guard.executor")

__all__ = ["CommandGate"]


class CommandGate:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.refused = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> CommandGate:
        keyring = keyring_of(settings)
        if keyring:
            log.info("commands must be signed: key ids %s accepted (%s)", ", ".join(sorted(keyring.keys)),
                     keyring.source)
        else:
            log.warning("no command key configured (GUARD_COMMAND_KEY / GUARD_COMMAND_KEY_FILE): commands are "
                        "NOT authenticated, anyone who can write %s can make this executor act",
                        settings.topics.actions)
        return cls(keyring)

    def command(self, record: Any) -> Command:
        """The command of an aiokafka ``ConsumerRecord`` (``value``, ``headers``), once its signature is
        checked. Raises :class:`SchemaError` for a refused or malformed command."""
        if self.keyring:
            reason = self.keyring.verify(record.value, record.headers)
            if reason is not None:
                self.refused += 1
                log.warning("refused the command at %s[%s]@%s: %s", getattr(record, "topic", "?"),
                            getattr(record, "partition", "?"), getattr(record, "offset", "?"), reason)
                raise SchemaError(f"refused: {reason}", field=f"headers.{SIGNATURE_HEADER}")
        return Command.from_json(record.value or b"")
