"""The smtp provider on aiosmtpd in all three modes: conformance, reuse, refusals, TLS."""

from __future__ import annotations

import email
import logging
import re
from collections.abc import AsyncIterator
from email.header import decode_header, make_header
from email.utils import getaddresses
from typing import Any

import pytest

from cloudrift.core.exceptions import (
    ConfigurationError,
    EmailAuthenticationError,
    EmailConnectionError,
    EmailDeliveryUnknownError,
    EmailSendError,
    EmailThrottledError,
    RecipientRejectedError,
    SenderUnverifiedError,
)
from cloudrift.core.retry import RetryPolicy
from cloudrift.email import Email, EmailMessage, get_email
from tests.conformance.email import SENDER, BackendFactory, Delivered, EmailConformance
from tests.servers.smtp import PASSWORD, SMTPServer

# aiosmtpd warns that AUTH without STARTTLS is unsafe; the implicit-TLS server is
# encrypted for the whole connection, which aiosmtpd does not know about.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class SMTPMailbox:
    """Reads what the aiosmtpd server received: envelope and DATA bytes."""

    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    def received(self) -> list[Delivered]:
        """Every accepted message, parsed."""
        return [
            Delivered.from_mime(mail.mail_from, mail.rcpt_tos, mail.data)
            for mail in self.server.received
        ]


@pytest.fixture
def mailbox(smtp_server: SMTPServer) -> SMTPMailbox:
    """The mailbox of the SMTP server under test."""
    return SMTPMailbox(smtp_server)


@pytest.fixture
async def make_backend(smtp_server: SMTPServer) -> AsyncIterator[BackendFactory]:
    """Builds smtp backends for the server's mode and closes them after the test."""
    built: list[Email] = []

    async def build(**overrides: Any) -> Email:
        options: dict[str, Any] = {
            "default_from": SENDER,
            "timeout": 10.0,
            **smtp_server.client_options(),
            **overrides,
        }
        backend = get_email("smtp", **options)
        built.append(backend)
        return backend

    yield build
    for backend in built:
        await backend.close()


class TestSMTPConformance(EmailConformance):
    """smtp meets the whole email contract in plaintext, STARTTLS+AUTH and implicit TLS."""


# ----------------------------------------------------------------- connection reuse


async def test_send_batch_reuses_one_connection(
    make_backend: BackendFactory, smtp_server: SMTPServer
) -> None:
    """A batch of 20 messages travels over a single SMTP connection."""
    backend = await make_backend()
    batch = [EmailMessage(to=f"u{i}@example.com", subject=str(i), body_text="x") for i in range(20)]
    ids = await backend.send_batch(batch)
    assert len(ids) == 20
    assert len(smtp_server.received) == 20
    assert smtp_server.connections_used == 1


async def test_consecutive_sends_reuse_the_connection(
    make_backend: BackendFactory, smtp_server: SMTPServer
) -> None:
    """Separate send() calls share the backend's one long-lived connection."""
    backend = await make_backend()
    for i in range(3):
        await backend.send("a@example.com", f"s{i}", body_text="x")
    assert smtp_server.connections_used == 1


async def test_a_dropped_connection_is_reopened_and_nothing_is_lost(
    make_backend: BackendFactory, smtp_server: SMTPServer
) -> None:
    """When the server closes the idle connection, the next send reconnects and delivers."""
    backend = await make_backend()
    await backend.send("a@example.com", "before", body_text="x")
    smtp_server.drop_connections()
    await backend.send("a@example.com", "after", body_text="x")
    ids = await backend.send_batch(
        [EmailMessage(to="a@example.com", subject="batch", body_text="x")]
    )
    assert len(ids) == 1
    assert [m.data.count(b"Subject: ") for m in smtp_server.received] == [1, 1, 1]
    assert smtp_server.connections_used == 2


async def test_health_check_sends_noop_and_survives_a_dropped_connection(
    make_backend: BackendFactory, smtp_server: SMTPServer
) -> None:
    """health_check() is True on a live server, also after the server dropped the connection."""
    backend = await make_backend()
    assert await backend.health_check() is True
    await backend.send("a@example.com", "s", body_text="x")
    smtp_server.drop_connections()
    assert await backend.health_check() is True


@pytest.fixture
def plaintext(smtp_servers: dict[str, SMTPServer]) -> SMTPServer:
    """The plaintext server, reset (for tests whose point does not depend on the mode)."""
    server = smtp_servers["plaintext"]
    server.handler.reset()
    return server


async def test_ten_thousand_recipients_arrive_with_every_line_within_998_bytes(
    plaintext: SMTPServer,
) -> None:
    """To/Cc/Reply-To of 10,000 addresses are folded: the server accepts it, all recipients."""
    to = [f"Recipient Number {i} <user{i}@example.com>" for i in range(5_000)]
    cc = [f"cc{i}@example.com" for i in range(5_000)]
    async with get_email(
        "smtp", default_from=SENDER, timeout=30.0, **plaintext.client_options()
    ) as backend:
        await backend.send(
            to,
            "Grüße an alle " * 40,
            cc=cc,
            reply_to=to[:300],
            body_text="x",
            headers={"X-Campaign": "spring sale " * 200, "X-Token": "t" * 1500},
        )
    (mail,) = plaintext.received
    assert len(mail.rcpt_tos) == 10_000
    assert max(len(line) for line in mail.data.split(b"\r\n")) <= 998
    # compat32 parsing: the default policy's address parser takes ~10 s for 10,000.
    parsed = email.message_from_bytes(mail.data)
    assert getaddresses(parsed.get_all("To")) == [
        (f"Recipient Number {i}", f"user{i}@example.com") for i in range(5_000)
    ]
    assert [addr for _, addr in getaddresses(parsed.get_all("Cc"))] == cc
    assert len(getaddresses(parsed.get_all("Reply-To"))) == 300

    def header(name: str) -> str:
        unfolded = re.sub(r"\r?\n(?=[ \t])", "", parsed[name])
        return str(make_header(decode_header(unfolded)))

    assert header("Subject") == "Grüße an alle " * 40
    assert header("X-Campaign") == "spring sale " * 200
    assert header("X-Token") == "t" * 1500


# ------------------------------------------------------------ delivery unknown


async def test_a_drop_after_the_data_is_delivery_unknown_and_never_resent(
    plaintext: SMTPServer,
) -> None:
    """The connection cut after the final '.' but before 250: one delivery, a specific error."""
    async with get_email(
        "smtp", default_from=SENDER, timeout=10.0, **plaintext.client_options()
    ) as backend:
        await backend.send("a@example.com", "first", body_text="x")  # the connection is reused
        plaintext.handler.drop_after_data = 1
        with pytest.raises(EmailDeliveryUnknownError) as caught:
            await backend.send("a@example.com", "second", body_text="x")
        assert not isinstance(caught.value, EmailConnectionError)
        assert caught.value.message_id and caught.value.message_id in str(caught.value)
        assert "not resent" in str(caught.value)
        subjects = [m.data.split(b"Subject: ")[1].split(b"\r\n")[0] for m in plaintext.received]
        assert subjects == [b"first", b"second"]
        # The backend reconnects for the next message.
        await backend.send("a@example.com", "third", body_text="x")
    assert len(plaintext.received) == 3


async def test_a_drop_after_the_data_in_a_batch_is_listed_in_failed(
    plaintext: SMTPServer,
) -> None:
    """In a batch, the message whose reply was lost is in .failed; the others are sent once."""
    async with get_email(
        "smtp",
        default_from=SENDER,
        timeout=10.0,
        retry=RetryPolicy(attempts=3, base_delay=0.01),
        **plaintext.client_options(),
    ) as backend:
        await backend.send("a@example.com", "warm-up", body_text="x")
        plaintext.handler.reset()
        plaintext.handler.drop_after_data = 1
        batch = [EmailMessage(to="a@example.com", subject=str(i), body_text="x") for i in range(3)]
        with pytest.raises(EmailSendError) as caught:
            await backend.send_batch(batch)
    assert set(caught.value.succeeded) == {1, 2}
    assert set(caught.value.failed) == {0}
    assert "EmailDeliveryUnknownError" in caught.value.failed[0]
    assert len(plaintext.received) == 3  # each message exactly once


async def test_a_drop_before_the_data_is_resent_once(plaintext: SMTPServer) -> None:
    """A reused connection closed before MAIL FROM: nothing was accepted, so it is resent."""
    async with get_email(
        "smtp", default_from=SENDER, timeout=10.0, **plaintext.client_options()
    ) as backend:
        await backend.send("a@example.com", "first", body_text="x")
        plaintext.drop_connections()
        await backend.send("a@example.com", "second", body_text="x")
    assert len(plaintext.received) == 2


# ------------------------------------------------------------------------ refusals


async def test_refused_recipient_raises_recipient_rejected(
    make_backend: BackendFactory, smtp_server: SMTPServer
) -> None:
    """A 550 to every RCPT TO raises RecipientRejectedError naming the recipients."""
    smtp_server.handler.refuse_recipients = {"ghost@example.com"}
    backend = await make_backend()
    with pytest.raises(RecipientRejectedError) as caught:
        await backend.send("ghost@example.com", "s", body_text="x")
    assert caught.value.recipients == ["ghost@example.com"]
    assert smtp_server.received == []
    # The connection stays usable after a refusal.
    await backend.send("ok@example.com", "s", body_text="x")
    assert len(smtp_server.received) == 1


async def test_partly_refused_recipients_still_deliver_to_the_rest(
    make_backend: BackendFactory, smtp_server: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Only some recipients refused: the others get the message and a warning is logged."""
    smtp_server.handler.refuse_recipients = {"ghost@example.com"}
    backend = await make_backend()
    with caplog.at_level(logging.WARNING, logger="cloudrift.email.smtp"):
        await backend.send(["ok@example.com", "ghost@example.com"], "s", body_text="x")
    assert smtp_server.received[0].rcpt_tos == ["ok@example.com"]
    assert "ghost@example.com" in caplog.text


async def test_451_4_7_1_is_throttling_not_an_unverified_sender(
    make_backend: BackendFactory, smtp_server: SMTPServer
) -> None:
    """A transient '451 4.7.1' reply to MAIL FROM raises EmailThrottledError."""
    smtp_server.handler.mail_reply = "451 4.7.1 Rate limit exceeded, try again later"
    backend = await make_backend()
    with pytest.raises(EmailThrottledError) as caught:
        await backend.send("a@example.com", "s", body_text="x")
    assert not isinstance(caught.value, SenderUnverifiedError)


async def test_421_is_throttling(make_backend: BackendFactory, smtp_server: SMTPServer) -> None:
    """A '421' service-busy reply raises EmailThrottledError."""
    smtp_server.handler.mail_reply = "421 4.3.2 Too busy, try later"
    backend = await make_backend()
    with pytest.raises(EmailThrottledError):
        await backend.send("a@example.com", "s", body_text="x")


async def test_permanent_sender_refusal_is_sender_unverified(
    make_backend: BackendFactory, smtp_server: SMTPServer
) -> None:
    """A 550 to MAIL FROM raises SenderUnverifiedError naming the sender."""
    smtp_server.handler.mail_reply = "550 5.7.1 Sender address not allowed"
    backend = await make_backend()
    with pytest.raises(SenderUnverifiedError) as caught:
        await backend.send("a@example.com", "s", body_text="x")
    assert caught.value.sender == SENDER


async def test_throttling_is_retried_with_a_retry_policy(
    make_backend: BackendFactory, smtp_server: SMTPServer
) -> None:
    """With retry=RetryPolicy(...), a send throttled with 451 is retried and then delivered."""
    smtp_server.handler.mail_reply = "451 4.7.1 slow down"
    smtp_server.handler.mail_reply_times = 2
    backend = await make_backend(retry=RetryPolicy(attempts=3, base_delay=0.01))
    await backend.send("a@example.com", "s", body_text="x")
    assert len(smtp_server.received) == 1


async def test_partial_batch_failure_reports_every_message(
    make_backend: BackendFactory, smtp_server: SMTPServer
) -> None:
    """A batch with one refused message raises EmailSendError listing sent ids and the failure."""
    smtp_server.handler.refuse_recipients = {"ghost@example.com"}
    backend = await make_backend()
    batch = [
        EmailMessage(to="a@example.com", subject="0", body_text="x"),
        EmailMessage(to="ghost@example.com", subject="1", body_text="x"),
        EmailMessage(to="b@example.com", subject="2", body_text="x"),
    ]
    with pytest.raises(EmailSendError) as caught:
        await backend.send_batch(batch)
    assert set(caught.value.succeeded) == {0, 2}
    assert set(caught.value.failed) == {1}
    assert "RecipientRejectedError" in caught.value.failed[1]
    assert len(smtp_server.received) == 2
    assert smtp_server.connections_used == 1


# ---------------------------------------------------------------- auth and TLS


@pytest.fixture
def secured(smtp_servers: dict[str, SMTPServer], request: pytest.FixtureRequest) -> SMTPServer:
    """The STARTTLS or implicit-TLS server (both require AUTH)."""
    server = smtp_servers[request.param]
    server.handler.reset()
    return server


@pytest.mark.parametrize("secured", ["starttls", "tls"], indirect=True)
async def test_wrong_password_raises_authentication_error_without_leaking(
    secured: SMTPServer,
) -> None:
    """A wrong password raises EmailAuthenticationError quickly; the password never shows."""
    wrong = "wrong-password-XYZ"
    options = {**secured.client_options(), "password": wrong, "timeout": 5.0}
    async with get_email("smtp", default_from=SENDER, **options) as backend:
        assert wrong not in repr(backend) and PASSWORD not in repr(backend)
        with pytest.raises(EmailAuthenticationError) as caught:
            await backend.send("a@example.com", "s", body_text="x")
        assert wrong not in str(caught.value)
        assert await backend.health_check() is False
    assert secured.handler.auth_attempts >= 1


@pytest.mark.parametrize("secured", ["starttls", "tls"], indirect=True)
async def test_untrusted_certificate_is_refused_by_default(secured: SMTPServer) -> None:
    """Without the test CA the server certificate is not trusted: EmailConnectionError."""
    options = {**secured.client_options(), "timeout": 5.0}
    del options["ca_file"]
    async with get_email("smtp", default_from=SENDER, **options) as backend:
        with pytest.raises(EmailConnectionError, match="ca_file"):
            await backend.send("a@example.com", "s", body_text="x")
    assert secured.received == []


@pytest.mark.parametrize("secured", ["starttls"], indirect=True)
async def test_missing_credentials_on_an_auth_server_is_an_auth_error(
    secured: SMTPServer,
) -> None:
    """Sending without credentials where AUTH is required raises EmailAuthenticationError."""
    options = {**secured.client_options(), "timeout": 5.0}
    del options["username"], options["password"]
    async with get_email("smtp", default_from=SENDER, **options) as backend:
        with pytest.raises(EmailAuthenticationError):
            await backend.send("a@example.com", "s", body_text="x")


async def test_unreachable_server_raises_connection_error_and_health_is_false() -> None:
    """Nothing listening: send raises EmailConnectionError, health_check returns False."""
    from tests.servers._process import free_port

    port = free_port()
    async with get_email(
        "smtp", host="127.0.0.1", port=port, mode="plaintext", default_from=SENDER, timeout=5
    ) as backend:
        with pytest.raises(EmailConnectionError, match=str(port)):
            await backend.send("a@example.com", "s", body_text="x")
        assert await backend.health_check() is False


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mode": "ssl"}, "unknown mode"),
        ({"username": "u"}, "missing password"),
        ({"username": "", "password": "p"}, "empty string"),
        ({"host": ""}, "host is required"),
        ({"pasword": "x"}, "did you mean 'password'"),
    ],
)
def test_bad_smtp_configuration_is_rejected(options: dict[str, Any], match: str) -> None:
    """Unknown modes, half credentials, empty values and typos raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match=match):
        get_email("smtp", **{"host": "smtp.example.com", **options})


def test_repr_shows_host_and_mode_but_never_the_password() -> None:
    """repr() names host, port and mode; the password appears nowhere."""
    backend = get_email("smtp", host="smtp.example.com", username="u", password="hunter2-pw")
    assert (
        repr(backend)
        == "<SMTPEmail provider='smtp' host='smtp.example.com' port=587 mode='starttls'>"
    )
    assert "hunter2-pw" not in repr(vars(backend))


@pytest.mark.parametrize("secured", ["starttls", "tls"], indirect=True)
async def test_password_never_appears_in_debug_logs(
    secured: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With every logger at DEBUG, an authenticated send and a failed one log no password."""
    import base64

    wrong = "wrong-password-in-logs"
    with caplog.at_level(logging.DEBUG):
        async with get_email("smtp", default_from=SENDER, **secured.client_options()) as good:
            await good.send("a@example.com", "s", body_text="x")
        options = {**secured.client_options(), "password": wrong}
        async with get_email("smtp", default_from=SENDER, **options) as bad:
            with pytest.raises(EmailAuthenticationError):
                await bad.send("a@example.com", "s", body_text="x")
    assert len(secured.received) == 1
    for secret_value in (PASSWORD, wrong):
        assert secret_value not in caplog.text
        assert base64.b64encode(secret_value.encode()).decode() not in caplog.text


@pytest.mark.parametrize("secured", ["starttls", "tls"], indirect=True)
async def test_verification_is_off_only_when_asked_explicitly(secured: SMTPServer) -> None:
    """verify_tls=False (and only that) accepts the untrusted test certificate."""
    options = {**secured.client_options(), "verify_tls": False}
    del options["ca_file"]
    async with get_email("smtp", default_from=SENDER, **options) as backend:
        await backend.send("a@example.com", "s", body_text="x")
    assert len(secured.received) == 1
    with pytest.raises(ConfigurationError, match="verify_tls"):
        get_email("smtp", host="h", verify_tls=None)
