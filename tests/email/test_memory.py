"""The memory provider passes the email conformance suite; its outbox is inspectable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cloudrift.email import Email, get_email
from cloudrift.email.memory import MemoryEmail
from tests.conformance.email import SENDER, BackendFactory, Delivered, EmailConformance


class OutboxMailbox:
    """Reads what every memory backend built by the test recorded."""

    def __init__(self) -> None:
        self.backends: list[MemoryEmail] = []

    def received(self) -> list[Delivered]:
        """Every recorded message, parsed from its MIME bytes."""
        return [
            Delivered.from_mime(sent.envelope_from, list(sent.envelope_to), sent.raw)
            for backend in self.backends
            for sent in backend.outbox
        ]


@pytest.fixture
def mailbox() -> OutboxMailbox:
    """A view over the outboxes of the backends this test builds."""
    return OutboxMailbox()


@pytest.fixture
async def make_backend(mailbox: OutboxMailbox) -> AsyncIterator[BackendFactory]:
    """Builds memory backends and closes them after the test."""
    built: list[Email] = []

    async def build(**overrides: Any) -> Email:
        options: dict[str, Any] = {"default_from": SENDER, **overrides}
        backend = get_email("memory", **options)
        assert isinstance(backend, MemoryEmail)
        mailbox.backends.append(backend)
        built.append(backend)
        return backend

    yield build
    for backend in built:
        await backend.close()


class TestMemoryConformance(EmailConformance):
    """The memory provider meets the whole email contract."""


async def test_memory_needs_no_options_and_records_the_outbox() -> None:
    """get_email('memory') works bare; .outbox keeps subject, recipients and bodies."""
    async with get_email("memory") as email:
        assert isinstance(email, MemoryEmail)
        msg_id = await email.send(
            "a@example.com",
            "Hi",
            body_text="t",
            body_html="<i>h</i>",
            from_="me@example.com",
            bcc="hidden@example.com",
        )
        (sent,) = email.outbox
        assert sent.message_id == msg_id
        assert (sent.subject, sent.to, sent.bcc) == (
            "Hi",
            ["a@example.com"],
            ["hidden@example.com"],
        )
        assert (sent.body_text, sent.body_html) == ("t", "<i>h</i>")
        assert sent.message()["Bcc"] is None
        email.clear()
        assert email.outbox == []
