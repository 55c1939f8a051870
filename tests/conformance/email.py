"""The email contract, checked against every provider on a real stand-in.

A provider's test module subclasses :class:`EmailConformance` and provides:

* ``make_backend`` — an async fixture returning ``build(**overrides) -> Email`` that
  builds the provider against its stand-in (``default_from`` defaults to
  :data:`SENDER`; pass ``default_from=None`` for none) and closes what it built;
* ``mailbox`` — a fixture whose ``received()`` returns what the stand-in got, as
  :class:`Delivered` values, in arrival order.

What "arrived" means is read from the stand-in (the SMTP server's envelope and DATA,
moto's stored message, the ACS server's request, the file on disk, the outbox), never
from the backend's own idea of what it sent.
"""

from __future__ import annotations

import email.policy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage as MIMEMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any, ClassVar, Protocol

import pytest

from cloudrift.core.exceptions import (
    BackendClosedError,
    ConfigurationError,
    EmailValidationError,
)
from cloudrift.email import Attachment, Email, EmailMessage
from tests.conformance import BackendConformance
from tests.telemetry.support import Recorder

SENDER = "sender@example.com"
ALL_BYTES = bytes(range(256)) * 4

BackendFactory = Callable[..., Awaitable[Email]]


@dataclass
class Delivered:
    """One message as the stand-in received it, in a provider-neutral form."""

    envelope_from: str
    recipients: set[str]
    subject: str = ""
    text: str | None = None
    html: str | None = None
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    from_: list[str] = field(default_factory=list)
    to_names: list[str] = field(default_factory=list)
    #: Header name (lower case) → value, as the stand-in received them.
    headers: dict[str, str] = field(default_factory=dict)
    #: Attachment filename → (content type, bytes).
    attachments: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    #: Everything a recipient can see, as text (to prove bcc addresses are not in it).
    visible: str = ""
    #: The parsed MIME message when the stand-in received MIME, else None.
    message: MIMEMessage | None = None

    @property
    def body(self) -> str:
        """The text body, else the HTML body."""
        return self.text if self.text is not None else (self.html or "")

    @classmethod
    def from_mime(cls, envelope_from: str, recipients: list[str], raw: bytes) -> Delivered:
        """Parse raw MIME bytes into a Delivered value."""
        message = BytesParser(policy=email.policy.default).parsebytes(raw)
        assert isinstance(message, MIMEMessage)
        text_part = message.get_body(preferencelist=("plain",))
        html_part = message.get_body(preferencelist=("html",))

        def addresses(name: str) -> list[str]:
            values = message.get_all(name) or []
            return [addr.lower() for _, addr in getaddresses([str(v) for v in values])]

        to_header = message["To"]
        return cls(
            envelope_from=envelope_from,
            recipients={r.lower() for r in recipients},
            subject=str(message["Subject"]),
            text=text_part.get_content() if text_part is not None else None,
            html=html_part.get_content() if html_part is not None else None,
            to=addresses("To"),
            cc=addresses("Cc"),
            reply_to=addresses("Reply-To"),
            from_=addresses("From"),
            to_names=[a.display_name for a in to_header.addresses] if to_header else [],
            headers={k.lower(): str(v) for k, v in message.items()},
            attachments={
                str(part.get_filename()): (
                    part.get_content_type(),
                    bytes(part.get_payload(decode=True)),
                )
                for part in message.iter_attachments()
            },
            visible=raw.decode("utf-8", "replace"),
            message=message,
        )


class Mailbox(Protocol):
    """What a stand-in received."""

    def received(self) -> list[Delivered]:
        """Every message received so far, oldest first."""
        ...


# Custom headers make SES send raw MIME, so every MIME-level check below sees the
# real message on every provider.
RAW = {"X-Conformance": "mime"}


class EmailConformance(BackendConformance):
    """Every email provider passes these."""

    failing_operation = ("send", ("not-an-address", "s"), "EmailValidationError")

    CAPABILITIES = frozenset()
    #: True when the provider sends fields (JSON) and the service builds the MIME
    #: itself (ACS): MIME-structure checks then look at the fields instead.
    SERVICE_BUILDS_MIME: ClassVar[bool] = False

    @pytest.fixture
    async def backend(self, make_backend: BackendFactory) -> Email:
        """The provider under test with ``default_from`` set to SENDER."""
        return await make_backend()

    # ------------------------------------------------------------------ sending

    async def test_send_returns_an_id_and_the_message_arrives(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """send() returns a non-empty id and exactly one message reaches the service."""
        msg_id = await backend.send("alice@example.com", "Welcome", body_text="Hello Alice")
        assert isinstance(msg_id, str) and msg_id
        (got,) = mailbox.received()
        assert got.recipients == {"alice@example.com"}
        assert got.subject == "Welcome"
        assert got.body.strip() == "Hello Alice"
        assert got.envelope_from == SENDER

    async def test_to_accepts_a_list_and_display_names(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """`to` may be a list, and 'Name <addr>' forms deliver to the bare address."""
        await backend.send(
            ["Alice <alice@example.com>", "bob@example.com"], "Hi", body_text="hi", headers=RAW
        )
        (got,) = mailbox.received()
        assert got.recipients == {"alice@example.com", "bob@example.com"}
        assert got.to == ["alice@example.com", "bob@example.com"]
        assert got.to_names[0] == "Alice"

    async def test_cc_and_bcc_are_in_the_envelope_but_bcc_not_in_headers(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """cc and bcc recipients receive the message; only cc shows in the headers."""
        await backend.send(
            "alice@example.com",
            "Copies",
            body_text="x",
            cc=["carol@example.com"],
            bcc=["audit@example.com", "boss@example.com"],
            headers=RAW,
        )
        (got,) = mailbox.received()
        assert got.recipients == {
            "alice@example.com",
            "carol@example.com",
            "audit@example.com",
            "boss@example.com",
        }
        assert got.cc == ["carol@example.com"]
        assert "bcc" not in got.headers
        assert "carol@example.com" in got.visible
        assert "audit@example.com" not in got.visible and "boss@example.com" not in got.visible

    async def test_text_and_html_make_a_multipart_alternative(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """Both bodies arrive; as MIME they form multipart/alternative, text first."""
        await backend.send(
            "alice@example.com", "Both", body_text="plain", body_html="<p>rich</p>", headers=RAW
        )
        got = mailbox.received()[0]
        assert (got.text or "").strip() == "plain"
        assert (got.html or "").strip() == "<p>rich</p>"
        if self.SERVICE_BUILDS_MIME:
            return
        msg = got.message
        assert msg is not None
        assert msg.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in msg.iter_parts()] == [
            "text/plain",
            "text/html",
        ]

    async def test_html_only_message_has_no_text_part(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """A message with only body_html carries just the HTML (a single text/html part)."""
        await backend.send("alice@example.com", "Html", body_html="<b>hi</b>", headers=RAW)
        got = mailbox.received()[0]
        assert got.text is None
        assert (got.html or "").strip() == "<b>hi</b>"
        if not self.SERVICE_BUILDS_MIME:
            assert got.message is not None and got.message.get_content_type() == "text/html"

    async def test_reply_to_and_custom_headers_arrive(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """reply_to becomes Reply-To and custom headers arrive unchanged."""
        await backend.send(
            "alice@example.com",
            "Headers",
            body_text="x",
            reply_to=["support@example.com"],
            headers={"X-Campaign": "welcome-v2", "X-Trace": "abc 123"},
        )
        got = mailbox.received()[0]
        assert got.reply_to == ["support@example.com"]
        assert got.headers["x-campaign"] == "welcome-v2"
        assert got.headers["x-trace"] == "abc 123"

    async def test_every_message_has_date_and_message_id_headers(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """Date and Message-ID are always set (or left to a service that writes them)."""
        await backend.send("alice@example.com", "Dated", body_text="x", headers=RAW)
        got = mailbox.received()[0]
        if self.SERVICE_BUILDS_MIME:
            # The service writes Date and Message-ID itself; we must not send our own.
            assert "date" not in got.headers and "message-id" not in got.headers
            return
        assert parsedate_to_datetime(got.headers["date"]).tzinfo is not None
        message_id = got.headers["message-id"]
        assert message_id.startswith("<") and message_id.endswith("@example.com>")

    async def test_attachments_arrive_byte_identical_with_safe_names(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """Attachments keep every byte and content type; path parts are stripped from names."""
        await backend.send(
            "alice@example.com",
            "Files",
            body_text="see attached",
            attachments=[
                Attachment("report.pdf", b"%PDF-1.7 fake", "application/pdf"),
                Attachment("../../etc/passwd\r\n.bin", ALL_BYTES, "application/octet-stream"),
            ],
        )
        assert mailbox.received()[0].attachments == {
            "report.pdf": ("application/pdf", b"%PDF-1.7 fake"),
            "passwd.bin": ("application/octet-stream", ALL_BYTES),
        }

    async def test_non_ascii_subject_body_and_names_round_trip(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """Non-ASCII subject, body and display names arrive intact."""
        await backend.send(
            "Zoë Ünicode <zoe@example.com>",
            "Grüße — 你好",
            body_text="Ça marche ✓",
            headers=RAW,
        )
        got = mailbox.received()[0]
        assert got.subject == "Grüße — 你好"
        assert got.body.strip() == "Ça marche ✓"
        assert got.to_names == ["Zoë Ünicode"]

    async def test_explicit_from_overrides_default_from(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """from_ wins over default_from, in the envelope and in the From header."""
        await backend.send(
            "alice@example.com", "From", body_text="x", from_="other@example.com", headers=RAW
        )
        got = mailbox.received()[0]
        assert got.envelope_from == "other@example.com"
        assert got.from_ == ["other@example.com"]

    async def test_no_sender_at_all_raises_configuration_error(
        self, make_backend: BackendFactory, mailbox: Mailbox
    ) -> None:
        """Without from_ and without default_from, send() raises ConfigurationError."""
        backend = await make_backend(default_from=None)
        with pytest.raises(ConfigurationError, match="default_from"):
            await backend.send("alice@example.com", "x", body_text="x")
        assert mailbox.received() == []

    # --------------------------------------------------------------- validation

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"to": "not-an-address"}, "not a valid email address"),
            ({"to": "a@b.com\r\nBcc: victim@example.com"}, "line break"),
            ({"subject": "Hi\r\nBcc: victim@example.com"}, "line break"),
            ({"subject": "Hi\nX-Evil: 1"}, "line break"),
            ({"cc": ["ok@example.com", "bad@@example.com"]}, "not a valid email address"),
            ({"reply_to": "x@example.com\n"}, "line break"),
            ({"from_": "Evil\r\n <e@example.com>"}, "line break"),
            ({"headers": {"X-A": "v\r\nBcc: victim@example.com"}}, "line break"),
            ({"headers": {"Bcc": "victim@example.com"}}, "set by cloudrift"),
            ({"headers": {"Bad Name": "v"}}, "header name"),
            ({"body_text": None}, "needs a body"),
            ({"body_text": ""}, "needs a body"),
            ({"to": []}, "at least one"),
            ({"attachments": [Attachment("a.txt", "text", "text/plain")]}, "must be bytes"),
            ({"attachments": [Attachment("a.txt", b"x", "not a type")]}, "MIME type"),
        ],
    )
    async def test_invalid_messages_are_rejected_before_sending(
        self, backend: Email, mailbox: Mailbox, kwargs: dict[str, Any], match: str
    ) -> None:
        """Bad addresses, CR/LF injection, reserved headers, no body: EmailValidationError."""
        args: dict[str, Any] = {"to": "alice@example.com", "subject": "s", "body_text": "b"}
        args.update(kwargs)
        to, subject = args.pop("to"), args.pop("subject")
        with pytest.raises(EmailValidationError, match=match):
            await backend.send(to, subject, **args)
        assert mailbox.received() == []

    async def test_message_over_the_size_limit_is_rejected(
        self, make_backend: BackendFactory, mailbox: Mailbox
    ) -> None:
        """A message larger than max_message_bytes raises EmailValidationError naming the limit."""
        backend = await make_backend(max_message_bytes=5000)
        with pytest.raises(EmailValidationError, match="limit of 5000 bytes"):
            await backend.send(
                "alice@example.com",
                "big",
                body_text="x",
                attachments=[Attachment("big.bin", b"\0" * 6000)],
            )
        assert mailbox.received() == []

    # -------------------------------------------------------------------- batch

    async def test_send_batch_returns_ids_in_input_order(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """send_batch delivers every message and returns one distinct id per input, in order."""
        ids = await backend.send_batch(
            [
                EmailMessage(to=[f"user{i}@example.com"], subject=f"n{i}", body_text=f"b{i}")
                for i in range(5)
            ]
        )
        assert len(ids) == 5 and len(set(ids)) == 5 and all(ids)
        got = mailbox.received()
        assert sorted(d.subject for d in got) == [f"n{i}" for i in range(5)]
        by_subject = {d.subject: d.recipients for d in got}
        assert by_subject == {f"n{i}": {f"user{i}@example.com"} for i in range(5)}

    async def test_send_batch_of_nothing_returns_an_empty_list(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """An empty batch sends nothing and returns []."""
        assert await backend.send_batch([]) == []
        assert mailbox.received() == []

    async def test_send_batch_with_an_invalid_message_sends_nothing(
        self, backend: Email, mailbox: Mailbox
    ) -> None:
        """One invalid message fails the batch before any network call, naming its index."""
        with pytest.raises(EmailValidationError, match="message 1"):
            await backend.send_batch(
                [
                    EmailMessage(to="a@example.com", subject="ok", body_text="x"),
                    EmailMessage(to="a@example.com", subject="bad\r\nX: y", body_text="x"),
                ]
            )
        assert mailbox.received() == []

    # ---------------------------------------------------------------- lifecycle

    async def test_health_check_is_true_when_the_service_answers(self, backend: Email) -> None:
        """health_check() really contacts the service and returns True."""
        assert await backend.health_check() is True

    async def test_every_operation_is_one_span(self, backend: Email, recorder: Recorder) -> None:
        """send, send_batch and health_check are each exactly one CLIENT span named after
        the operation; a refused address sets error.type."""
        one = EmailMessage(to="a@example.com", subject="s", body_text="b")
        await self.check_one_span_per_operation(
            backend,
            recorder,
            [
                ("send", lambda: backend.send("a@example.com", "s", body_text="b")),
                ("send_batch", lambda: backend.send_batch([one, one])),
                ("health_check", backend.health_check),
                ("send", lambda: backend.send("not-an-address", "s")),  # EmailValidationError
            ],
        )

    async def test_closed_backend_refuses_every_operation(self, backend: Email) -> None:
        """After close(), send, send_batch and health_check raise BackendClosedError."""
        await backend.close()
        await backend.close()  # idempotent
        with pytest.raises(BackendClosedError):
            await backend.send("a@example.com", "s", body_text="b")
        with pytest.raises(BackendClosedError):
            await backend.send_batch([EmailMessage(to="a@example.com", subject="s", body_text="b")])
        with pytest.raises(BackendClosedError):
            await backend.health_check()

    async def test_async_with_closes_the_backend(self, make_backend: BackendFactory) -> None:
        """Leaving `async with` closes the backend."""
        backend = await make_backend()
        async with backend as same:
            assert same is backend
        assert backend.closed

    async def test_repr_names_the_provider(self, backend: Email) -> None:
        """repr() shows the provider name."""
        assert f"provider={backend.provider!r}" in repr(backend)
