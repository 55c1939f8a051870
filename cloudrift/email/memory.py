"""The ``memory`` email provider: records every message in ``.outbox`` for tests."""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from email.message import EmailMessage as MIMEMessage
from email.parser import BytesParser

from cloudrift.email.base import Email, PreparedEmail


@dataclass(frozen=True)
class SentEmail:
    """A message the memory backend accepted: the envelope plus the MIME bytes."""

    message_id: str
    envelope_from: str
    envelope_to: tuple[str, ...]
    prepared: PreparedEmail
    raw: bytes

    @property
    def subject(self) -> str:
        """The subject as given to send()."""
        return self.prepared.subject

    @property
    def to(self) -> list[str]:
        """Bare addresses of the To recipients."""
        return [a.addr for a in self.prepared.to]

    @property
    def cc(self) -> list[str]:
        """Bare addresses of the Cc recipients."""
        return [a.addr for a in self.prepared.cc]

    @property
    def bcc(self) -> list[str]:
        """Bare addresses of the Bcc recipients (envelope only, never in the headers)."""
        return [a.addr for a in self.prepared.bcc]

    @property
    def body_text(self) -> str | None:
        """The plain-text body as given."""
        return self.prepared.body_text

    @property
    def body_html(self) -> str | None:
        """The HTML body as given."""
        return self.prepared.body_html

    def message(self) -> MIMEMessage:
        """The message parsed back from its MIME bytes, as a recipient would see it."""
        parsed = BytesParser(policy=email.policy.default).parsebytes(self.raw)
        assert isinstance(parsed, MIMEMessage)
        return parsed


class MemoryEmail(Email):
    """Keeps every sent message in memory (``outbox``); needs no options."""

    provider = "memory"
    backend_name = "memory email"

    def __init__(
        self,
        *,
        default_from: str | None = None,
        max_message_bytes: int | None = None,
        max_concurrency: int = 10,
    ) -> None:
        super().__init__(
            default_from=default_from,
            max_message_bytes=max_message_bytes,
            max_concurrency=max_concurrency,
        )
        self.outbox: list[SentEmail] = []

    async def _deliver(self, prepared: PreparedEmail) -> str:
        self.outbox.append(
            SentEmail(
                message_id=prepared.message_id,
                envelope_from=prepared.sender.addr,
                envelope_to=tuple(prepared.envelope_recipients),
                prepared=prepared,
                raw=prepared.mime,
            )
        )
        return prepared.message_id

    async def _health(self) -> bool:
        return True

    def clear(self) -> None:
        """Forget every recorded message."""
        self.outbox.clear()


__all__ = ["MemoryEmail", "SentEmail"]
