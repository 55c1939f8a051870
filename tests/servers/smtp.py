"""aiosmtpd SMTP servers: plaintext, STARTTLS with AUTH, and implicit TLS with AUTH.

Each server records every message it accepts (envelope sender, envelope recipients,
the DATA bytes and the client connection it came on) and can be told to refuse:
``refuse_recipients`` answers 550 to those RCPT TO addresses, ``mail_reply`` answers
MAIL FROM with a chosen reply (``451 4.7.1 ...`` throttling, ``550 5.7.1 ...``
unverified sender, ``421 ...`` closing), ``drop_after_data`` records the next N messages
and then closes the connection without answering (a crash or network cut after the final
``.``), and ``drop_connections()`` closes every open client connection, like a server
reaping idle clients.

Authentication failures return ``AuthResult(success=False, handled=False)``: anything
else makes aiosmtpd send no reply and the client waits until its timeout.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers._process import LOOPBACK, free_port
from tests.servers.tls import TLSFiles

USERNAME = "mailer"
PASSWORD = "s3cret-smtp-password"


@dataclass(frozen=True)
class ReceivedMail:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any


class RecordingHandler:
    """aiosmtpd handler that records messages and refuses on command."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[ReceivedMail] = []
        self.refuse_recipients: set[str] = set()
        self.mail_reply: str | None = None
        #: When set, mail_reply is answered only this many more times, then MAIL succeeds.
        self.mail_reply_times: int | None = None
        self.sessions: list[Any] = []  # aiosmtpd SMTP protocol objects (one per connection)
        self.auth_attempts = 0
        #: Accept this many more messages and then cut the connection instead of replying.
        self.drop_after_data = 0

    def reset(self) -> None:
        """Forget messages and refusal settings."""
        with self.lock:
            self.received.clear()
            self.refuse_recipients.clear()
            self.mail_reply = None
            self.mail_reply_times = None
            self.sessions.clear()
            self.auth_attempts = 0
            self.drop_after_data = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        with self.lock:
            if server not in self.sessions:
                self.sessions.append(server)
            reply = self.mail_reply
            if reply is not None and self.mail_reply_times is not None:
                if self.mail_reply_times <= 0:
                    reply = None
                self.mail_reply_times -= 1
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.refuse_recipients:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        with self.lock:
            self.received.append(
                ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), bytes(data), session.peer)
            )
            drop = self.drop_after_data > 0
            self.drop_after_data -= drop
        if drop:
            # The message is kept (as a real server may have queued it) but the client
            # never sees the 250: its outcome is unknown to the client.
            server.transport.close()
        return "250 2.0.0 Ok: queued"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """Accept only USERNAME/PASSWORD; a failure must be handled=False or the client hangs."""
        with self.lock:
            self.auth_attempts += 1
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USERNAME.encode()
            and auth_data.password == PASSWORD.encode()
        ):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@dataclass
class SMTPServer:
    """A running aiosmtpd server and what a client needs to reach it."""

    mode: str
    port: int
    controller: Controller
    handler: RecordingHandler
    started_in: float
    ca_file: str | None = None
    host: str = LOOPBACK
    username: str | None = None
    password: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def received(self) -> list[ReceivedMail]:
        """Messages accepted so far."""
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def connections_used(self) -> int:
        """How many distinct client connections have sent MAIL FROM."""
        with self.handler.lock:
            return len(self.handler.sessions)

    def drop_connections(self) -> None:
        """Close every client connection from the server side (as an idle reaper would)."""
        loop = self.controller.loop
        with self.handler.lock:
            sessions = list(self.handler.sessions)
        done = threading.Event()

        def close_all() -> None:
            for session in sessions:
                transport = getattr(session, "transport", None)
                if transport is not None:
                    transport.close()
            done.set()

        loop.call_soon_threadsafe(close_all)
        assert done.wait(5), "the SMTP server loop did not close its connections"

    def client_options(self) -> dict[str, Any]:
        """Keyword options for get_email('smtp', ...) to reach this server."""
        options: dict[str, Any] = {"host": self.host, "port": self.port, "mode": self.mode}
        if self.username is not None:
            options.update(username=self.username, password=self.password)
        if self.ca_file is not None:
            options["ca_file"] = self.ca_file
        return options


def _server_context(tls: TLSFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
    return context


def start_smtp(mode: str, tls: TLSFiles | None) -> SMTPServer:
    """Start an aiosmtpd server in ``mode`` (plaintext, starttls or tls) on a free port."""
    handler = RecordingHandler()
    port = free_port()
    kwargs: dict[str, Any] = {}
    if mode == "starttls":
        assert tls is not None
        kwargs = {
            "tls_context": _server_context(tls),
            "require_starttls": True,
            "auth_required": True,
            "authenticator": handler.authenticate,
        }
    elif mode == "tls":
        assert tls is not None
        kwargs = {
            "ssl_context": _server_context(tls),
            "auth_required": True,
            # The whole connection is TLS; aiosmtpd only knows about STARTTLS.
            "auth_require_tls": False,
            "authenticator": handler.authenticate,
        }
    began = time.monotonic()
    controller = Controller(handler, hostname=LOOPBACK, port=port, **kwargs)
    try:
        controller.start()
    except Exception as exc:
        pytest.fail(f"aiosmtpd ({mode}) could not start on port {port}: {exc!r}", pytrace=False)
    started_in = time.monotonic() - began
    secured = mode != "plaintext"
    return SMTPServer(
        mode=mode,
        port=port,
        controller=controller,
        handler=handler,
        started_in=started_in,
        ca_file=str(tls.ca_cert) if secured and tls else None,
        username=USERNAME if secured else None,
        password=PASSWORD if secured else None,
    )


@pytest.fixture(scope="session")
def smtp_servers(tls_files: TLSFiles) -> Iterator[dict[str, SMTPServer]]:
    """One aiosmtpd server per mode (plaintext, starttls, tls) for the whole session."""
    servers: dict[str, SMTPServer] = {}
    try:
        for mode in ("plaintext", "starttls", "tls"):
            servers[mode] = start_smtp(mode, tls_files)
        yield servers
    finally:
        for server in servers.values():
            server.controller.stop()


@pytest.fixture(params=["plaintext", "starttls", "tls"])
def smtp_server(request: pytest.FixtureRequest, smtp_servers: dict[str, SMTPServer]) -> SMTPServer:
    """Each SMTP mode in turn, with its records and refusals reset for this test."""
    server = smtp_servers[request.param]
    server.handler.reset()
    return server
