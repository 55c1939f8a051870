"""The ``file`` email provider: writes each message as an ``.eml`` file (the dev default).

Each send writes ``<folder>/<UTC time>-<id>.eml`` (the message exactly as a recipient
would receive it, so no Bcc header) and, beside it, ``<same name>.envelope.json`` with
the envelope sender and every recipient including Bcc. Files are written under a
temporary name and renamed, so a reader never sees half a message.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

from cloudrift.core.exceptions import ConfigurationError, EmailSendError
from cloudrift.email.base import Email, PreparedEmail


class FileEmail(Email):
    """Writes messages as ``.eml`` files into ``directory`` (created if missing)."""

    provider = "file"
    backend_name = "file email"

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str] = "./outbox",
        default_from: str | None = None,
        max_message_bytes: int | None = None,
        max_concurrency: int = 10,
    ) -> None:
        super().__init__(
            default_from=default_from,
            max_message_bytes=max_message_bytes,
            max_concurrency=max_concurrency,
        )
        if not str(directory):
            raise ConfigurationError("file email: directory must not be empty")
        self.directory = Path(directory)

    def _location(self) -> str:
        return f"directory={str(self.directory)!r}"

    def _write(self, prepared: PreparedEmail) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        base = f"{stamp}-{uuid.uuid4().hex[:12]}"
        envelope = {
            "message_id": prepared.message_id,
            "from": prepared.sender.addr,
            "to": prepared.envelope_recipients,
        }
        for suffix, data in (
            (".envelope.json", json.dumps(envelope, indent=2).encode()),
            (".eml", prepared.mime),
        ):
            final = self.directory / f"{base}{suffix}"
            partial = self.directory / f".{base}{suffix}.part"
            partial.write_bytes(data)
            partial.replace(final)

    async def _deliver(self, prepared: PreparedEmail) -> str:
        try:
            await asyncio.to_thread(self._write, prepared)
        except OSError as exc:
            raise EmailSendError(
                f"could not write the message into {str(self.directory)!r}: {exc.strerror or exc}"
            ) from exc
        return prepared.message_id

    async def _health(self) -> bool:
        def writable() -> bool:
            self.directory.mkdir(parents=True, exist_ok=True)
            return os.access(self.directory, os.W_OK)

        try:
            return await asyncio.to_thread(writable)
        except OSError:
            return False


__all__ = ["FileEmail"]
