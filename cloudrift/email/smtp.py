"""The ``smtp`` email provider (aiosmtplib): STARTTLS, implicit TLS or plaintext.

One long-lived connection is opened on first use and reused by every ``send`` and by
``send_batch`` (a connection per message costs 1.7-2.6x, see STANDINS.md); a lock keeps
one SMTP transaction on it at a time. When the server has dropped the connection (idle
reaping, restart) before DATA, it is reopened once and the message sent again; a message
the server already answered is never resent. A connection lost during DATA (the message
may already have reached the server) is never resent either: that message fails with
EmailDeliveryUnknownError, since the server may have delivered it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Sequence
from typing import Any, NoReturn

import aiosmtplib

from cloudrift.core.auth import auth_method, select_auth
from cloudrift.core.exceptions import (
    ConfigurationError,
    EmailAuthenticationError,
    EmailConnectionError,
    EmailDeliveryUnknownError,
    EmailError,
    EmailSendError,
    EmailThrottledError,
    EmailValidationError,
    RecipientRejectedError,
    SenderUnverifiedError,
)
from cloudrift.core.operation import BackendDescription
from cloudrift.core.retry import RetryPolicy
from cloudrift.core.secrets import Secret, redact, secret
from cloudrift.email.base import Email, PreparedEmail, closed_mid_batch

log = logging.getLogger("cloudrift.email.smtp")

MODES = {"starttls": 587, "tls": 465, "plaintext": 25}
_AUTH_METHODS = [auth_method("anonymous"), auth_method("login", ("username", "password"))]


class SMTPEmail(Email):
    """Sends through an SMTP server over one reused connection."""

    provider = "smtp"
    backend_name = "smtp email"

    def __init__(
        self,
        *,
        host: str,
        port: int | None = None,
        mode: str = "starttls",
        username: str | None = None,
        password: str | Secret | None = None,
        ca_file: str | None = None,
        verify_tls: bool = True,
        timeout: float = 30.0,
        local_hostname: str | None = None,
        default_from: str | None = None,
        max_message_bytes: int | None = None,
        max_concurrency: int = 10,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(
            default_from=default_from,
            max_message_bytes=max_message_bytes,
            max_concurrency=max_concurrency,
            retry=retry,
        )
        if not isinstance(host, str) or not host:
            raise ConfigurationError("smtp email: host is required, e.g. host='smtp.example.com'")
        if mode not in MODES:
            raise ConfigurationError(
                f"smtp email: unknown mode {mode!r}; use one of {', '.join(MODES)}"
            )
        if timeout <= 0:
            raise ConfigurationError("smtp email: timeout must be a positive number of seconds")
        self._password = secret(password)
        self._auth = select_auth(
            "smtp email", {"username": username, "password": password}, _AUTH_METHODS
        )
        if verify_tls is not True and verify_tls is not False:
            raise ConfigurationError("smtp email: verify_tls must be True or False")
        self.host = host
        self.port = port if port is not None else MODES[mode]
        self.mode = mode
        self.username = username
        self._ca_file = ca_file
        self._verify_tls = verify_tls
        self._timeout = timeout
        self._local_hostname = local_hostname
        self._client: Any = None
        self._lock: asyncio.Lock | None = None

    def _location(self) -> str:
        return f"host={self.host!r} port={self.port} mode={self.mode!r}"

    def _describe(self) -> BackendDescription:
        return BackendDescription("smtp", None, self.host, self.port)

    # --------------------------------------------------------------- connection

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.mode == "plaintext":
            return None
        context = ssl.create_default_context(cafile=self._ca_file)
        if not self._verify_tls:
            # Only ever off when the caller said verify_tls=False explicitly.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _connect(self) -> Any:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.mode == "tls",
            start_tls=self.mode == "starttls",
            tls_context=self._tls_context(),
            timeout=self._timeout,
            local_hostname=self._local_hostname,
            username=self.username,
            password=self._password.reveal() if self._password else None,
        )
        try:
            await client.connect()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                client.close()
            if isinstance(exc, Exception):
                self._raise(exc)
            raise
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def _connection(self) -> tuple[Any, bool]:
        """The open connection and whether it was reused (True) or just opened (False)."""
        self._ensure_open()
        if self._client is not None and self._client.is_connected:
            return self._client, True
        self._drop()
        self._client = await self._connect()
        return self._client, False

    def _gate(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    # -------------------------------------------------------------------- hooks

    async def _deliver(self, prepared: PreparedEmail) -> str:
        async with self._gate():
            return await self._send_locked(prepared)

    async def _deliver_many(self, prepared: Sequence[PreparedEmail]) -> list[str | EmailError]:
        """Send the whole batch over the one connection, in order."""
        results: list[str | EmailError] = []
        async with self._gate():
            for item in prepared:
                if self.closed:
                    results.append(closed_mid_batch())
                    continue
                try:
                    results.append(await self._retrying(functools.partial(self._send_locked, item)))
                except EmailError as exc:
                    results.append(exc)
        return results

    async def _send_locked(self, prepared: PreparedEmail) -> str:
        while True:
            client, reused = await self._connection()
            self._check_server_size(client, prepared)
            try:
                refused = await self._envelope(client, prepared)
            except aiosmtplib.SMTPServerDisconnected as exc:
                self._drop()
                if reused:
                    # The server closed the reused connection before DATA: it cannot
                    # have accepted the message, so one reconnect-and-resend is safe.
                    log.debug("smtp connection was closed by the server; reconnecting")
                    continue
                self._raise(exc)
            except aiosmtplib.SMTPTimeoutError as exc:
                # Mid-transaction timeout: the session state is unknown, never reuse it.
                self._drop()
                self._raise(exc, prepared)
            except aiosmtplib.SMTPException as exc:
                await self._reset_after_failure()
                self._raise(exc, prepared)
            except (OSError, TimeoutError) as exc:
                self._drop()
                self._raise(exc)
            await self._data(client, prepared)
            if refused:
                # Some recipients were refused but the message went to the others;
                # raising would invite a resend (duplicates), so log who was refused.
                log.warning(
                    "smtp server refused some recipients of %s: %s",
                    prepared.message_id,
                    ", ".join(f"{r} ({e.code})" for r, e in refused.items()),
                )
            return prepared.message_id

    async def _envelope(
        self, client: Any, prepared: PreparedEmail
    ) -> dict[str, aiosmtplib.SMTPRecipientRefused]:
        """MAIL FROM and RCPT TO; the recipients refused while others were accepted.

        Sent one step at a time (not with ``sendmail``) so a failure here is known to
        have come before DATA, when resending cannot make a duplicate.
        """
        options = []
        if client.supports_extension("size"):
            options.append(f"SIZE={len(prepared.mime)}")
        await client.mail(prepared.sender.addr, options=options)
        recipients = prepared.envelope_recipients
        refused: dict[str, aiosmtplib.SMTPRecipientRefused] = {}
        for recipient in recipients:
            try:
                await client.rcpt(recipient)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused[recipient] = exc
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(list(refused.values()))
        return refused

    async def _data(self, client: Any, prepared: PreparedEmail) -> None:
        """DATA; a lost connection or timeout here means the outcome is unknown.

        Once the message's final ``.`` may have reached the server, it may have been
        accepted although no reply arrived; resending would then deliver it twice, so
        the message is reported as EmailDeliveryUnknownError and never resent.
        """
        try:
            await client.data(prepared.mime)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
            self._drop()
            self._delivery_unknown(exc, prepared)
        except aiosmtplib.SMTPException as exc:
            # The server answered DATA or the final "." with a refusal: not accepted.
            await self._reset_after_failure()
            self._raise(exc, prepared)
        except (OSError, TimeoutError) as exc:
            self._drop()
            self._delivery_unknown(exc, prepared)

    def _delivery_unknown(self, exc: Exception, prepared: PreparedEmail) -> NoReturn:
        what = "timed out" if isinstance(exc, TimeoutError) else "lost the connection"
        raise EmailDeliveryUnknownError(
            f"SMTP server {self.host}:{self.port} {what} while message "
            f"{prepared.message_id} was being transferred (DATA), before confirming it: it "
            "may or may not have been delivered. It was not resent, to avoid a duplicate; "
            "check the server's log or the recipient's mailbox before sending it again",
            message_id=prepared.message_id,
        ) from exc

    async def _reset_after_failure(self) -> None:
        client = self._client
        if client is None:
            return
        try:
            await client.rset()
        except Exception:
            self._drop()

    def _check_server_size(self, client: Any, prepared: PreparedEmail) -> None:
        advertised = str(client.esmtp_extensions.get("size", "") or "").strip()
        if advertised.isdigit() and int(advertised) and len(prepared.mime) > int(advertised):
            raise EmailValidationError(
                f"message is {len(prepared.mime)} bytes, over the {advertised} bytes the "
                f"SMTP server {self.host} accepts; send large files as links"
            )

    async def _health(self) -> bool:
        async with self._gate():
            for _ in range(2):
                client, reused = await self._connection()
                try:
                    await client.noop()
                except aiosmtplib.SMTPServerDisconnected:
                    self._drop()
                    if reused:
                        continue
                    return False
                return True
        return False

    async def _aclose(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.is_connected:
                await asyncio.wait_for(client.quit(), timeout=min(self._timeout, 5.0))
        except Exception:
            log.debug("smtp QUIT failed; closing the socket", exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                client.close()

    # ----------------------------------------------------------------- errors

    def _raise(self, exc: Exception, prepared: PreparedEmail | None = None) -> NoReturn:
        """Translate an aiosmtplib / socket error into cloudrift's email errors."""
        raw = exc.message if isinstance(exc, aiosmtplib.SMTPResponseException) else str(exc)
        text = redact(raw, [self._password])
        where = f"SMTP server {self.host}:{self.port}"
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            refused = [r.recipient for r in exc.recipients]
            codes = {r.code for r in exc.recipients}
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if all(400 <= c < 500 for c in codes):
                raise EmailThrottledError(
                    f"{where} temporarily refused the recipients ({detail}); retry later"
                ) from exc
            raise RecipientRejectedError(
                f"{where} refused every recipient ({redact(detail)})", recipients=refused
            ) from exc
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            raise EmailAuthenticationError(
                f"{where} refused the username/password ({exc.code} {text}); check the credentials"
            ) from exc
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            code = exc.code
            if 400 <= code < 500:
                # 4xx is transient (rate limit, greylisting, "451 4.7.1"): never a
                # verdict on the sender or recipients.
                raise EmailThrottledError(f"{where} asked to retry later ({code} {text})") from exc
            if code in (530, 535, 538):
                raise EmailAuthenticationError(
                    f"{where} requires authentication ({code} {text}); pass username and password"
                ) from exc
            if isinstance(exc, aiosmtplib.SMTPSenderRefused):
                raise SenderUnverifiedError(
                    f"{where} refused the sender {exc.sender} ({code} {text}); use an address "
                    "the server lets you send from",
                    sender=exc.sender,
                ) from exc
            if code == 552:
                raise EmailValidationError(
                    f"{where} refused the message as too large ({code} {text})"
                ) from exc
            raise EmailSendError(f"{where} refused the message ({code} {text})") from exc
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            raise EmailConnectionError(
                f"{where} does not support what mode={self.mode!r} needs ({text}); check mode "
                "and port"
            ) from exc
        if isinstance(exc, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text:
            raise EmailConnectionError(
                f"TLS with {where} failed ({text}); pass ca_file=... for a private CA"
            ) from exc
        if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError):
            raise EmailConnectionError(
                f"could not talk to {where}: {text or type(exc).__name__}"
            ) from exc
        raise EmailSendError(f"{where}: unexpected error {type(exc).__name__}: {text}") from exc


__all__ = ["SMTPEmail"]
