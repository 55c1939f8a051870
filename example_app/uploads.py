"""Stream one file out of a ``multipart/form-data`` request body, chunk by chunk.

Starlette's ``request.form()`` parses the whole body (spooling it to disk) before the
route runs, so a size limit could only be checked afterwards. Here the body is pulled
from ``request.stream()`` only as fast as storage accepts it: at most one request chunk
plus the parser's output is held in memory, and the size limit stops the upload the
moment it is crossed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

#: Name of the form field that carries the document.
FILE_FIELD = "file"
#: The name kept when the client sends none we can use (missing, empty, ``..``, only
#: separators or control characters).
DEFAULT_FILENAME = "upload"
#: Longest filename kept, in characters (longer names keep their start and extension).
MAX_FILENAME = 255
#: Longest header line a multipart part may carry; the parser refuses a longer one
#: without buffering it. Room for a MAX_FILENAME name of 4-byte characters sent both as
#: ``filename`` and percent-encoded as ``filename*`` (~4 KiB).
MAX_PART_HEADER_BYTES = 8 * 1024
# Invisible characters that reorder how a name is displayed ("invoice\u202etxt.exe"
# shows as "invoiceexe.txt"): the Unicode Bidi_Control set.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_BROWSER_ESCAPES = re.compile("%(22|0[aAdD])")
# Extended-value charsets of RFC 8187 (filename*=charset'lang'%XX...).
_EXT_CHARSETS = {"utf-8": "utf-8", "iso-8859-1": "latin-1", "us-ascii": "ascii"}


class UploadError(Exception):
    """The upload cannot be accepted; ``status`` is the HTTP answer."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotMultipartError(UploadError):
    """The body is not multipart/form-data."""

    status = 415


class MalformedUploadError(UploadError):
    """The multipart body is broken or truncated."""

    status = 400


class MissingFileError(UploadError):
    """No ``file`` field in the form."""

    status = 422


class ExtraFileError(UploadError):
    """More than one ``file`` field in the form."""

    status = 422


class EmptyFileError(UploadError):
    """The ``file`` field holds zero bytes."""

    status = 422


class FileTooLargeError(UploadError):
    """The file is over the configured limit."""

    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the file is larger than the limit of {limit} bytes; upload a smaller file "
            "or ask the operator to raise INTAKE_MAX_UPLOAD_BYTES"
        )
        self.limit = limit


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a Content-Type header; NotMultipartError otherwise."""
    value, params = parse_options_header(content_type or "")
    if value != b"multipart/form-data":
        raise NotMultipartError(
            "send the document as multipart/form-data with the file in a field named "
            f"{FILE_FIELD!r} (e.g. curl -F {FILE_FIELD}=@report.txt ...)"
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise MalformedUploadError("the multipart/form-data Content-Type has no boundary")
    return boundary


def _unsafe(char: str) -> bool:
    # Cc: C0 controls (NUL, CR, LF, ...), DEL and C1 controls; Zl/Zp: line and
    # paragraph separators, which break log lines and email subjects like CR/LF do.
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS


def clean_filename(raw: str) -> str:
    """The client's filename exactly, minus any directories and control characters.

    Anything else (spaces, accents, CJK, emoji, quotes, a leading dot) is kept as sent.
    A name with nothing left, or ``.``/``..``, becomes :data:`DEFAULT_FILENAME`; a name
    over :data:`MAX_FILENAME` characters keeps its start and its extension.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if not _unsafe(char))
    if name.strip() in ("", ".", ".."):
        return DEFAULT_FILENAME
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and len(ext) <= 16:
            name = stem[: MAX_FILENAME - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME]
    return name


def _text(raw: bytes) -> str:
    """Header bytes as text: UTF-8 (what browsers send), else latin-1 (every byte maps)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _split_params(raw: bytes) -> list[bytes]:
    """``raw`` split at the semicolons outside quoted strings."""
    parts: list[bytes] = []
    current = bytearray()
    quoted = escaped = False
    for byte in raw:
        char = bytes((byte,))
        if escaped:
            escaped = False
        elif quoted and char == b"\\":
            escaped = True
        elif char == b'"':
            quoted = not quoted
        elif char == b";" and not quoted:
            parts.append(bytes(current))
            current.clear()
            continue
        current += char
    parts.append(bytes(current))
    return parts


def _unquote(value: bytes) -> bytes:
    if len(value) >= 2 and value[:1] == value[-1:] == b'"':
        # Only \\ and \" are escapes: an old browser's unescaped C:\dir\name keeps
        # its backslashes (which then count as directory separators).
        out = bytearray()
        body = value[1:-1]
        i = 0
        while i < len(body):
            if body[i : i + 1] == b"\\" and body[i + 1 : i + 2] in (b"\\", b'"'):
                i += 1
            out += body[i : i + 1]
            i += 1
        return bytes(out)
    return value


def _ext_value(value: bytes) -> str | None:
    """An RFC 8187 ``charset'lang'%XX`` value decoded, or None if it is not one."""
    try:
        charset, _lang, encoded = _unquote(value).decode("ascii").split("'", 2)
        codec = _EXT_CHARSETS[charset.strip().lower()]
        return unquote_to_bytes(encoded).decode(codec)
    except (UnicodeDecodeError, ValueError, KeyError):
        return None


def disposition_params(header: bytes) -> dict[str, str]:
    """The parameters of a part's raw ``Content-Disposition`` header, names lowercased.

    Values are decoded as UTF-8 or, failing that, latin-1 (with the HTML form encoding's
    ``%22``, ``%0D``, ``%0A`` undone in ``filename``); an RFC 8187 ``filename*``
    that decodes replaces ``filename`` (RFC 6266 section 4.3), one that does not is
    ignored.
    """
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    for segment in _split_params(header)[1:]:
        key, eq, value = segment.partition(b"=")
        name = key.strip().lower().decode("latin-1")
        if not eq or not name:
            continue
        value = value.strip()
        if name.endswith("*"):
            decoded = _ext_value(value)
            if decoded is not None:
                extended[name[:-1]] = decoded
        else:
            text = _text(_unquote(value))
            if name == "filename":
                # Browsers and curl send '"', CR and LF in a filename as %22, %0D, %0A
                # (the HTML standard's form encoding); other '%' stay as they are.
                text = _BROWSER_ESCAPES.sub(lambda m: chr(int(m.group(1), 16)), text)
            params.setdefault(name, text)
    params.update(extended)
    return params


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    field_name: str = ""
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)


class MultipartFile:
    """The one ``file`` field of a multipart body, read lazily from ``stream``.

    ``await open()`` reads until the field's headers (filename, content type) are known;
    ``chunks()`` then yields the file's bytes as the body arrives and reads the rest of
    the body, raising :class:`FileTooLargeError` past ``limit`` (or a body past ``limit``
    plus ``overhead`` bytes of form framing and other fields), :class:`ExtraFileError`
    for a second ``file`` field, :class:`EmptyFileError` for zero bytes and
    :class:`MalformedUploadError` for a body that ends before its closing boundary.
    Raising from inside ``chunks()`` aborts the storage upload consuming it, so a
    refused body leaves nothing behind.
    """

    def __init__(
        self,
        stream: AsyncIterator[bytes],
        boundary: bytes,
        *,
        limit: int,
        overhead: int = 64 * 1024,
    ) -> None:
        self._stream = stream
        self._limit = limit
        self._body_limit = limit + overhead
        self._received = 0
        self._part: _Part | None = None
        self._in_file = False  # inside the file part's data
        self._found = False
        self._pending = bytearray()  # file bytes parsed but not yet handed out
        self._ended = False
        self.size = 0
        self.filename = DEFAULT_FILENAME
        self.content_type: str | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
            max_header_size=MAX_PART_HEADER_BYTES,
        )

    # -------------------------------------------------------------- parser callbacks

    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        assert self._part is not None
        self._part.header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        assert self._part is not None
        self._part.header_value += data[start:end]

    def _on_header_end(self) -> None:
        part = self._part
        assert part is not None
        name = part.header_field.decode("latin-1").strip().lower()
        # Kept as bytes: browsers send filenames as raw UTF-8, older clients latin-1.
        part.headers[name] = bytes(part.header_value).strip()
        part.header_field.clear()
        part.header_value.clear()

    def _on_headers_finished(self) -> None:
        part = self._part
        assert part is not None
        params = disposition_params(part.headers.get("content-disposition", b""))
        part.field_name = params.get("name", "")
        if part.field_name != FILE_FIELD:
            return
        if self._found:
            raise ExtraFileError(
                f"only one file is accepted per upload, but the form has more than one "
                f"{FILE_FIELD!r} field; send each file in its own request"
            )
        self._found = True
        self._in_file = True
        self.filename = clean_filename(params.get("filename", ""))
        declared = part.headers.get("content-type")
        self.content_type = _text(declared) if declared else None

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.size += end - start
            if self.size > self._limit:
                raise FileTooLargeError(self._limit)
            self._pending += data[start:end]

    def _on_part_end(self) -> None:
        self._in_file = False

    def _on_end(self) -> None:
        self._ended = True

    # -------------------------------------------------------------------- reading

    async def _feed_next(self) -> bool:
        """Feed the next body chunk to the parser; False when the body has ended."""
        try:
            chunk = await anext(self._stream)
        except StopAsyncIteration:
            return False
        if chunk:
            self._received += len(chunk)
            if self._received > self._body_limit:
                raise FileTooLargeError(self._limit)
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                hint = ""
                if "maximum header size" in str(exc).lower():
                    hint = (
                        f" (a part's header lines may be at most {MAX_PART_HEADER_BYTES} "
                        "bytes: is the filename that long?)"
                    )
                raise MalformedUploadError(
                    f"the multipart body is malformed: {exc}{hint}"
                ) from None
        return True

    async def open(self) -> None:
        """Read until the file field starts; MissingFileError if the form has none."""
        while not self._found:
            if self._ended or not await self._feed_next():
                raise MissingFileError(
                    f"no file in the upload: send it as the multipart form field {FILE_FIELD!r} "
                    f"(e.g. curl -F {FILE_FIELD}=@report.txt ...)"
                )

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the file's bytes as they arrive, then read the rest of the body (call
        ``open()`` first); the generator ends only once the whole form was accepted."""
        while True:
            if self._pending:
                data = bytes(self._pending)
                self._pending.clear()
                yield data
            if self._ended:
                break
            if not await self._feed_next():
                raise MalformedUploadError(
                    "the upload body is truncated: it ended before the form's closing boundary; "
                    "send it again"
                )
        if self.size == 0:
            raise EmptyFileError("the uploaded file is empty; send a file with some content")


__all__ = [
    "DEFAULT_FILENAME",
    "FILE_FIELD",
    "MAX_FILENAME",
    "MAX_PART_HEADER_BYTES",
    "EmptyFileError",
    "ExtraFileError",
    "FileTooLargeError",
    "MalformedUploadError",
    "MissingFileError",
    "MultipartFile",
    "NotMultipartError",
    "UploadError",
    "boundary_of",
    "clean_filename",
    "disposition_params",
]
