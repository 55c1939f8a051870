"""The email contract: :class:`Email`, the message value types, and the shared work.

Every provider receives a :class:`PreparedEmail`: the message already validated
(address syntax, no CR/LF header injection, at least one body, sanitised attachment
names, size within the provider's limit) and already built as RFC 5322 MIME bytes
with ``Date`` and ``Message-ID`` headers. Bcc recipients appear only in the envelope
(``PreparedEmail.envelope_recipients``), never in the headers. Providers implement
two small hooks: ``_deliver(prepared) -> id`` and ``_health() -> bool``; SMTP also
overrides ``_deliver_many`` to reuse one connection for a batch.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import mimetypes
import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email import quoprimime
from email.header import Header
from email.headerregistry import Address
from email.utils import formataddr, formatdate, make_msgid
from typing import ClassVar
from urllib.parse import quote

from cloudrift.core.exceptions import (
    ConfigurationError,
    EmailError,
    EmailSendError,
    EmailThrottledError,
    EmailValidationError,
)
from cloudrift.core.lifecycle import AsyncBackend
from cloudrift.core.operation import operation
from cloudrift.core.retry import RetryPolicy, retry_async

#: Headers cloudrift writes itself; set them through send()'s parameters instead.
RESERVED_HEADERS: frozenset[str] = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "sender",
        "return-path",
    }
)

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})*$")
_NAME_ADDR = re.compile(r"^\s*(?P<name>[^<>]*?)\s*<(?P<addr>[^<>]*)>\s*$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ':' (RFC 5322 ftext)
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")
_LINE_BREAKS = ("\r", "\n", "\x00", "\u2028", "\u2029", "\x85")


@dataclass(frozen=True)
class Attachment:
    """A file attached to a message.

    ``content_type`` defaults to a guess from the filename (else
    ``application/octet-stream``). The filename is sanitised when the message is sent:
    directory parts and control characters are removed.
    """

    filename: str
    content: bytes
    content_type: str | None = None


@dataclass
class EmailMessage:
    """One message for :meth:`Email.send_batch`; the fields mirror :meth:`Email.send`."""

    to: str | Sequence[str]
    subject: str
    body_text: str | None = None
    body_html: str | None = None
    from_: str | None = None
    cc: str | Sequence[str] | None = None
    bcc: str | Sequence[str] | None = None
    reply_to: str | Sequence[str] | None = None
    attachments: Sequence[Attachment] = field(default_factory=tuple)
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class EmailAddress:
    """A validated address: the bare ``addr`` plus an optional display name."""

    addr: str
    name: str = ""

    def __str__(self) -> str:
        return str(Address(display_name=self.name, addr_spec=self.addr))


@dataclass(frozen=True)
class PreparedEmail:
    """A validated message and its MIME form, handed to a provider's hooks."""

    sender: EmailAddress
    to: tuple[EmailAddress, ...]
    cc: tuple[EmailAddress, ...]
    bcc: tuple[EmailAddress, ...]
    reply_to: tuple[EmailAddress, ...]
    subject: str
    body_text: str | None
    body_html: str | None
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]
    message_id: str
    mime: bytes

    @property
    def envelope_recipients(self) -> list[str]:
        """Every recipient's bare address (to, cc and bcc), without duplicates."""
        seen: dict[str, None] = {}
        for item in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(item.addr, None)
        return list(seen)


# ------------------------------------------------------------------------ validation


def _no_line_breaks(what: str, value: str) -> None:
    if any(ch in value for ch in _LINE_BREAKS):
        raise EmailValidationError(
            f"{what} contains a line break (CR/LF); that would inject headers. "
            "Remove line breaks from it"
        )


def parse_address(value: object, what: str) -> EmailAddress:
    """Validate one address (``a@b.c`` or ``Name <a@b.c>``); raise EmailValidationError."""
    if not isinstance(value, str):
        raise EmailValidationError(f"{what} must be a string address, not {type(value).__name__}")
    _no_line_breaks(f"{what} {value!r}", value)
    name, addr = "", value.strip()
    match = _NAME_ADDR.match(value)
    if match:
        name = match.group("name").strip().strip('"').strip()
        addr = match.group("addr").strip()
    if not _ADDR_SPEC.match(addr) or len(addr) > 254:
        raise EmailValidationError(
            f"{what} {value!r} is not a valid email address; use 'user@example.com' or "
            "'Name <user@example.com>'"
        )
    return EmailAddress(addr=addr, name=name)


def parse_addresses(value: str | Sequence[str] | None, what: str) -> tuple[EmailAddress, ...]:
    """Validate a string or list of addresses (None → empty)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(parse_address(item, what) for item in items)


def sanitize_filename(filename: object) -> str:
    """A safe attachment name: no directories, control characters or quotes; never empty."""
    if not isinstance(filename, str):
        raise EmailValidationError(
            f"attachment filename must be a string, not {type(filename).__name__}"
        )
    name = re.split(r"[\\/]", filename)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C" and ch not in '"<>|*?:')
    name = name.strip().lstrip(".").strip()
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 200 - len(ext) - 1] + dot + ext) if dot and len(ext) < 20 else name[:200]
    return name or "attachment"


def _check_attachment(item: object, index: int) -> Attachment:
    if not isinstance(item, Attachment):
        raise EmailValidationError(
            f"attachments[{index}] must be a cloudrift.email.Attachment, not {type(item).__name__}"
        )
    content: object = item.content
    if isinstance(content, bytearray | memoryview):
        content = bytes(content)
    if not isinstance(content, bytes):
        raise EmailValidationError(
            f"attachment {item.filename!r}: content must be bytes, not {type(content).__name__}; "
            "encode text first (e.g. text.encode())"
        )
    filename = sanitize_filename(item.filename)
    content_type = item.content_type or mimetypes.guess_type(filename)[0]
    content_type = content_type or "application/octet-stream"
    # RFC 6838 4.2: type and subtype names are at most 127 characters each.
    if not _CONTENT_TYPE.match(content_type) or any(
        len(part) > 127 for part in content_type.split("/")
    ):
        raise EmailValidationError(
            f"attachment {filename!r}: content_type {content_type!r} is not a MIME type "
            "like 'application/pdf'"
        )
    return Attachment(filename=filename, content=content, content_type=content_type)


def _check_headers(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    if not isinstance(headers, Mapping):
        raise EmailValidationError("headers must be a mapping of header name to value")
    checked = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise EmailValidationError(
                f"header name {name!r} is invalid; use printable ASCII without ':' or spaces"
            )
        if len(name) > _FOLD_AT - 2:
            # A name cannot be folded; past 76 characters its line cannot stay within 78.
            raise EmailValidationError(
                f"header name {name[:40]!r}... is {len(name)} characters; use at most "
                f"{_FOLD_AT - 2}"
            )
        if name.lower() in RESERVED_HEADERS:
            raise EmailValidationError(
                f"header {name!r} is set by cloudrift; pass it through send()'s parameters "
                "(to, cc, bcc, reply_to, from_, subject) instead"
            )
        if not isinstance(value, str):
            raise EmailValidationError(f"header {name!r} value must be a string")
        _no_line_breaks(f"header {name!r} value", value)
        checked.append((name, value))
    return tuple(checked)


_CRLF = "\r\n"
_QP_SAFE_LINE = 998
_LINE_SPLIT = re.compile(r"\r\n|\r|\n")
#: RFC 5322 2.1.1: a header line SHOULD be at most 78 characters and MUST be at most 998;
#: strict SMTP servers refuse a longer line ("500 Line too long").
_FOLD_AT = 78
_LINE_MAX = 998
#: An address up to this long is written on one line (even past _FOLD_AT).
_PLAIN_ADDRESS_MAX = 900
_WORDS = re.compile(r"[ \t]*[^ \t]+|[ \t]+$")


def _encoded_words(value: str, header_name: str) -> str:
    """RFC 2047 encoded words, folded so no line passes _FOLD_AT (the header name counted)."""
    return Header(value, "utf-8", maxlinelen=_FOLD_AT, header_name=header_name).encode(
        linesep=_CRLF
    )


def _unstructured_header(name: str, value: str) -> str:
    """``name: value`` folded at whitespace; RFC 2047 words if non-ASCII or a word is too long.

    Folding inserts CRLF before existing whitespace, so unfolding restores the value
    exactly.
    """
    if value.isascii():
        prefix = f"{name}: "
        lines: list[str] = []
        line = prefix
        for word in _WORDS.findall(value):
            # Fold only before whitespace that is followed by text: a continuation line
            # of nothing but whitespace is obsolete syntax.
            folds = word[:1] in (" ", "\t") and bool(word.strip())
            if folds and line != prefix and len(line) + len(word) > _FOLD_AT:
                lines.append(line)
                line = ""
            line += word
        lines.append(line)
        if all(len(item) <= _LINE_MAX for item in lines):
            return _CRLF.join(lines)
    return f"{name}: {_encoded_words(value, name)}"


def _format_address(address: EmailAddress) -> str:
    """One address; a non-ASCII display name RFC 2047-encoded.

    The name stays one encoded word while the address fits comfortably on a line:
    Python's own address parser puts a space between adjacent encoded words of a
    display name, so splitting it would change the name that reaches Python readers.
    Only a name too long for one line is split into folded words.
    """
    if not address.name:
        return address.addr
    single = formataddr((address.name, address.addr), charset="utf-8")
    if len(single) <= _PLAIN_ADDRESS_MAX:
        return single
    return f"{_encoded_words(address.name, '')} <{address.addr}>"


def _address_header(name: str, addresses: Sequence[EmailAddress]) -> str:
    """``name: a, b, ...`` folded between addresses so no line passes _FOLD_AT when avoidable.

    Without folding 51 recipients already make a line over 998 bytes.
    """
    lines: list[str] = []
    line = f"{name}:"
    last = len(addresses) - 1
    for index, address in enumerate(addresses):
        first, *rest = (_format_address(address) + ("," if index < last else "")).split(_CRLF)
        if len(line) + 1 + len(first) > _FOLD_AT and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + first
        for continuation in rest:  # encoded words already folded by _encoded_words
            lines.append(line)
            line = continuation
    lines.append(line)
    return _CRLF.join(lines)


def _text_part(body: str, subtype: str) -> str:
    """A text/* part (headers + body) in 7bit when possible, else quoted-printable UTF-8."""
    lines = _LINE_SPLIT.split(body)
    if body.isascii() and all(len(line) < _QP_SAFE_LINE for line in lines):
        encoding, payload = "7bit", _CRLF.join(lines)
    else:
        raw = _CRLF.join(lines).encode("utf-8").decode("latin-1")
        encoding, payload = "quoted-printable", quoprimime.body_encode(raw, eol=_CRLF)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"{_CRLF}'
        f"Content-Transfer-Encoding: {encoding}{_CRLF}{_CRLF}{payload}{_CRLF}"
    )


def _rfc2231_filename(name: str) -> str:
    """A non-ASCII filename as RFC 2231 continuations, one folded line each.

    A 200-character name percent-encodes to up to 2,400 characters: on one line that
    is over the 998 a header line may have.
    """
    encoded = quote(name, safe="")
    chunks: list[str] = []
    while encoded:
        cut = min(len(encoded), 60)
        # Never split a %XX escape between two continuations.
        percent = encoded.rfind("%", max(cut - 2, 0), cut)
        if percent != -1 and cut < len(encoded):
            cut = percent
        chunks.append(encoded[:cut])
        encoded = encoded[cut:]
    first = f"{_CRLF} filename*0*=utf-8''{chunks[0]}"
    rest = "".join(f";{_CRLF} filename*{i}*={chunk}" for i, chunk in enumerate(chunks[1:], 1))
    return first + rest


def _attachment_part(item: Attachment) -> str:
    name = item.filename
    if name.isascii():
        disposition = f'attachment;{_CRLF} filename="{name}"'
    else:
        disposition = "attachment;" + _rfc2231_filename(name)
    encoded = base64.encodebytes(item.content).decode("ascii").replace("\n", _CRLF)
    return (
        f"Content-Type: {item.content_type}{_CRLF}"
        f"Content-Transfer-Encoding: base64{_CRLF}"
        f"Content-Disposition: {disposition}{_CRLF}{_CRLF}{encoded}"
    )


def _multipart(subtype: str, parts: Sequence[str]) -> str:
    boundary = f"=_cloudrift_{uuid.uuid4().hex}"
    body = "".join(f"--{boundary}{_CRLF}{part}{_CRLF}" for part in parts)
    return (
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"{_CRLF}{_CRLF}'
        f"{body}--{boundary}--{_CRLF}"
    )


def build_mime(
    *,
    sender: EmailAddress,
    to: Sequence[EmailAddress],
    cc: Sequence[EmailAddress],
    reply_to: Sequence[EmailAddress],
    subject: str,
    body_text: str | None,
    body_html: str | None,
    attachments: Sequence[Attachment],
    headers: Sequence[tuple[str, str]],
    message_id: str,
) -> bytes:
    """RFC 5322 bytes (CRLF line ends, 7-bit clean) with Date and Message-ID; never Bcc.

    Written directly rather than through ``email.message.EmailMessage``, whose header
    parsing made building a message ~20x slower than sending it over a reused SMTP
    connection.
    """
    lines = [_address_header("From", [sender])]
    if to:
        lines.append(_address_header("To", to))
    if cc:
        lines.append(_address_header("Cc", cc))
    if reply_to:
        lines.append(_address_header("Reply-To", reply_to))
    lines.append(_unstructured_header("Subject", subject))
    lines.append(f"Date: {formatdate(usegmt=True)}")
    lines.append(f"Message-ID: {message_id}")
    lines.extend(_unstructured_header(name, value) for name, value in headers)
    lines.append("MIME-Version: 1.0")
    if body_text is not None and body_html is not None:
        content = _multipart(
            "alternative", [_text_part(body_text, "plain"), _text_part(body_html, "html")]
        )
    elif body_html is not None:
        content = _text_part(body_html, "html")
    else:
        content = _text_part(body_text or "", "plain")
    if attachments:
        content = _multipart("mixed", [content, *(_attachment_part(a) for a in attachments)])
    return (_CRLF.join(lines) + _CRLF + content).encode("ascii")


def closed_mid_batch() -> EmailSendError:
    """The failure recorded for batch messages not sent because close() came first."""
    return EmailSendError("not sent: the backend was closed while the batch was running")


# -------------------------------------------------------------------------- contract


class Email(AsyncBackend, abc.ABC):
    """Send email through one provider.

    Every method raises BackendClosedError after ``close()``. A message is validated
    before any network call; an invalid one raises EmailValidationError saying what to
    fix and nothing is sent.
    """

    backend_name = "email backend"
    category = "email"
    #: Provider name shown in repr and messages.
    provider: ClassVar[str] = "email"
    #: Largest MIME message (bytes) the provider accepts by default.
    default_max_message_bytes: ClassVar[int] = 25 * 1024 * 1024
    #: Most recipients (to + cc + bcc) one message may have, or None for no limit.
    max_recipients: ClassVar[int | None] = None

    def __init__(
        self,
        *,
        default_from: str | None = None,
        max_message_bytes: int | None = None,
        max_concurrency: int = 10,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self.default_from = default_from
        try:
            self._default_sender = (
                parse_address(default_from, "default_from") if default_from is not None else None
            )
        except EmailValidationError as exc:
            raise ConfigurationError(exc.message) from exc
        if max_message_bytes is not None and max_message_bytes <= 0:
            raise ConfigurationError("max_message_bytes must be a positive number of bytes")
        self.max_message_bytes = max_message_bytes or self.default_max_message_bytes
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be an integer of at least 1")
        self.max_concurrency = max_concurrency
        self._retry = retry

    # ---------------------------------------------------------------- public API

    @operation
    async def send(
        self,
        to: str | Sequence[str],
        subject: str,
        *,
        body_text: str | None = None,
        body_html: str | None = None,
        from_: str | None = None,
        cc: str | Sequence[str] | None = None,
        bcc: str | Sequence[str] | None = None,
        reply_to: str | Sequence[str] | None = None,
        attachments: Sequence[Attachment] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Send one message and return its id.

        Raises EmailValidationError (nothing sent) for an invalid address, CR/LF in the
        subject, an address or a header value, no body, or a message over the size
        limit; ConfigurationError when there is no ``from_`` and no ``default_from``.
        """
        message = EmailMessage(
            to=to,
            subject=subject,
            body_text=body_text,
            body_html=body_html,
            from_=from_,
            cc=cc,
            bcc=bcc,
            reply_to=reply_to,
            attachments=attachments if attachments is not None else (),
            headers=headers,
        )
        prepared = self.prepare(message)
        return await self._deliver_with_retry(prepared)

    @operation
    async def send_batch(self, messages: Sequence[EmailMessage]) -> list[str]:
        """Send many messages; return their ids in input order.

        Every message is validated first: one invalid message raises
        EmailValidationError naming its index and nothing is sent. If some sends fail,
        raises EmailSendError whose ``succeeded`` (index → id) and ``failed``
        (index → reason) together cover every input.
        """
        if isinstance(messages, EmailMessage) or not isinstance(messages, Sequence):
            raise EmailValidationError("send_batch() takes a list of EmailMessage objects")
        prepared: list[PreparedEmail] = []
        for index, message in enumerate(messages):
            if not isinstance(message, EmailMessage):
                raise EmailValidationError(
                    f"send_batch() item {index} must be a cloudrift.email.EmailMessage, "
                    f"not {type(message).__name__}"
                )
            try:
                prepared.append(self.prepare(message))
            except (EmailValidationError, ConfigurationError) as exc:
                raise type(exc)(f"message {index}: {exc.message}; nothing was sent") from exc
        if not prepared:
            return []
        results = await self._deliver_many(prepared)
        succeeded = {i: r for i, r in enumerate(results) if isinstance(r, str)}
        failed = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
        if not failed:
            return [succeeded[i] for i in range(len(prepared))]
        reasons = {i: f"{type(e).__name__}: {e}" for i, e in failed.items()}
        summary = "; ".join(f"#{i}: {r}" for i, r in list(reasons.items())[:5])
        error = EmailSendError(
            f"{len(failed)} of {len(prepared)} messages were not sent ({summary}); "
            f"see .failed for every reason and .succeeded for the ids of those sent",
            succeeded=succeeded,
            failed=reasons,
        )
        raise error from next(iter(failed.values()))

    @operation
    async def health_check(self) -> bool:
        """True when the service answers; False (never an exception) when it cannot be reached."""
        try:
            return await self._health()
        except asyncio.CancelledError:
            raise
        except Exception:
            return False

    def prepare(self, message: EmailMessage) -> PreparedEmail:
        """Validate ``message`` and build its MIME form (no network call)."""
        if not isinstance(message.subject, str):
            raise EmailValidationError("subject must be a string")
        _no_line_breaks("subject", message.subject)
        if message.from_ is not None:
            sender = parse_address(message.from_, "from_")
        elif self._default_sender is not None:
            sender = self._default_sender
        else:
            raise ConfigurationError(
                f"no sender: pass from_=... to send() or default_from=... to "
                f"get_email({self.provider!r}, ...)"
            )
        to = parse_addresses(message.to, "to")
        cc = parse_addresses(message.cc, "cc")
        bcc = parse_addresses(message.bcc, "bcc")
        reply_to = parse_addresses(message.reply_to, "reply_to")
        if not to:
            raise EmailValidationError("a message needs at least one 'to' recipient")
        count = len({a.addr for a in (*to, *cc, *bcc)})
        if self.max_recipients is not None and count > self.max_recipients:
            raise EmailValidationError(
                f"{count} recipients is over the {self.provider} limit of "
                f"{self.max_recipients} per message; split the recipients over several messages"
            )
        for what, body in (("body_text", message.body_text), ("body_html", message.body_html)):
            if body is not None and not isinstance(body, str):
                raise EmailValidationError(f"{what} must be a string")
        if not message.body_text and not message.body_html:
            raise EmailValidationError("a message needs a body: pass body_text or body_html")
        if isinstance(message.attachments, Attachment | str | bytes):
            raise EmailValidationError(
                "attachments must be a list of Attachment objects: attachments=[Attachment(...)]"
            )
        attachments = tuple(
            _check_attachment(item, i) for i, item in enumerate(message.attachments or ())
        )
        headers = _check_headers(message.headers)
        message_id = make_msgid(domain=sender.addr.rpartition("@")[2])
        mime = build_mime(
            sender=sender,
            to=to,
            cc=cc,
            reply_to=reply_to,
            subject=message.subject,
            body_text=message.body_text,
            body_html=message.body_html,
            attachments=attachments,
            headers=headers,
            message_id=message_id,
        )
        if len(mime) > self.max_message_bytes:
            raise EmailValidationError(
                f"message is {len(mime)} bytes encoded, over the {self.provider} limit of "
                f"{self.max_message_bytes} bytes; send large files as links instead of "
                "attachments"
            )
        return PreparedEmail(
            sender=sender,
            to=to,
            cc=cc,
            bcc=bcc,
            reply_to=reply_to,
            subject=message.subject,
            body_text=message.body_text,
            body_html=message.body_html,
            attachments=attachments,
            headers=headers,
            message_id=message_id,
            mime=mime,
        )

    # -------------------------------------------------------------------- hooks

    @abc.abstractmethod
    async def _deliver(self, prepared: PreparedEmail) -> str:
        """Hand one prepared message to the provider; return its id or raise EmailError."""

    @abc.abstractmethod
    async def _health(self) -> bool:
        """Contact the service; True when it answers and accepts our credentials."""

    async def _deliver_with_retry(self, prepared: PreparedEmail) -> str:
        return await self._retrying(lambda: self._deliver(prepared))

    async def _retrying(self, operation: Callable[[], Awaitable[str]]) -> str:
        """Run ``operation``, retrying EmailThrottledError when a retry policy was given."""
        if self._retry is None:
            return await operation()
        return await retry_async(
            operation,
            policy=self._retry,
            retry_on=lambda exc: isinstance(exc, EmailThrottledError),
        )

    async def _deliver_many(self, prepared: Sequence[PreparedEmail]) -> list[str | EmailError]:
        """Send each message, at most ``max_concurrency`` at once; results in input order."""
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(item: PreparedEmail) -> str | EmailError:
            async with gate:
                if self.closed:
                    return closed_mid_batch()
                try:
                    return await self._deliver_with_retry(item)
                except EmailError as exc:
                    return exc

        return list(await asyncio.gather(*(one(item) for item in prepared)))

    def _location(self) -> str:
        return ""

    def __repr__(self) -> str:
        location = self._location()
        where = f" {location}" if location else ""
        state = " closed" if self.closed else ""
        return f"<{type(self).__name__} provider={self.provider!r}{where}{state}>"


__all__ = [
    "RESERVED_HEADERS",
    "Attachment",
    "Email",
    "EmailAddress",
    "EmailMessage",
    "PreparedEmail",
    "build_mime",
    "closed_mid_batch",
    "parse_address",
    "parse_addresses",
    "sanitize_filename",
]
