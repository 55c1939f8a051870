"""Stream one file out of a ``multipart/form-data`` request body, chunk by chunk.

Starlette's ``request.form()`` parses the whole body (spooling it to disk) before the
route runs, so a size limit could only be checked afterwards. Here the body is pulled
from ``request.stream()`` only as fast as storage accepts it: at most one request chunk
plus the parser's output is held in memory, and the size limit stops the upload the
moment it is crossed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

#: Name of the form field that carries the document.
FILE_FIELD = "file"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_FILENAME = 255


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


def clean_filename(raw: str) -> str:
    """The client's filename without directories or control characters (never empty)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL.sub("", name).strip()
    if name in ("", ".", ".."):
        name = "upload"
    return name[:_MAX_FILENAME]


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    field_name: str = ""
    buf: bytearray = field(default_factory=bytearray)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)


class MultipartFile:
    """The ``file`` field of a multipart body, read lazily from ``stream``.

    ``await open()`` reads until the field's headers (filename, content type) are known;
    ``chunks()`` then yields the file's bytes as the body arrives, raising
    :class:`FileTooLargeError` past ``limit``, :class:`EmptyFileError` for zero bytes and
    :class:`MalformedUploadError` for a body that ends before the file does.
    """

    def __init__(self, stream: AsyncIterator[bytes], boundary: bytes, *, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._part: _Part | None = None
        self._in_file = False  # inside the file part's data
        self._file_done = False
        self._found = False
        self._pending = bytearray()  # file bytes parsed but not yet handed out
        self._ended = False
        self.size = 0
        self.filename = "upload"
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
        part.headers[name] = part.header_value.decode("utf-8", "replace").strip()
        part.header_field.clear()
        part.header_value.clear()

    def _on_headers_finished(self) -> None:
        part = self._part
        assert part is not None
        _, params = parse_options_header(part.headers.get("content-disposition", ""))
        part.field_name = params.get(b"name", b"").decode("utf-8", "replace")
        if part.field_name == FILE_FIELD and not self._found:
            self._found = True
            self._in_file = True
            raw_name = params.get(b"filename", b"upload").decode("utf-8", "replace")
            self.filename = clean_filename(raw_name)
            self.content_type = part.headers.get("content-type") or None

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.size += end - start
            if self.size > self._limit:
                raise FileTooLargeError(self._limit)
            self._pending += data[start:end]

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._file_done = True

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
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                raise MalformedUploadError(f"the multipart body is malformed: {exc}") from None
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
        """Yield the file's bytes as they arrive (call ``open()`` first)."""
        while True:
            if self._pending:
                data = bytes(self._pending)
                self._pending.clear()
                yield data
            if self._file_done:
                break
            if not await self._feed_next():
                raise MalformedUploadError(
                    "the upload ended before the file did (truncated body); send it again"
                )
        if self.size == 0:
            raise EmptyFileError("the uploaded file is empty; send a file with some content")


__all__ = [
    "FILE_FIELD",
    "EmptyFileError",
    "FileTooLargeError",
    "MalformedUploadError",
    "MissingFileError",
    "MultipartFile",
    "NotMultipartError",
    "UploadError",
    "boundary_of",
    "clean_filename",
]
