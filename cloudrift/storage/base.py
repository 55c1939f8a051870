"""The storage contract: one ABC, the ``ObjectInfo`` value type, and the shared work.

Every sentence in a public method's docstring is checked by
``tests/conformance/storage.py`` against every provider.

Ranges. ``download(key, start=, end=)`` and ``download_stream(..., start=, end=)`` take a
half-open byte range ``[start, end)``, exactly like a Python slice ``data[start:end]``
with non-negative bounds: ``start`` is the first byte returned (default 0), ``end`` is
one past the last byte returned (default: the end of the object). An ``end`` past the
object's size is clamped to it. ``start == size`` (or ``start == end``) gives ``b""``;
``start > size``, a negative bound, or ``end < start`` raises
:class:`~cloudrift.core.exceptions.InvalidRangeError`.

Keys. One rule everywhere (see :func:`validate_key`): a non-empty string of at most
1024 UTF-8 bytes, without NUL or other control characters, not starting or ending with
``/``, and without empty, ``.`` or ``..`` segments. Invalid keys raise
:class:`~cloudrift.core.exceptions.InvalidKeyError` before any network call.

Metadata. User metadata names are lowercase ASCII identifiers (``[a-z][a-z0-9_]*``,
the intersection of what S3, Azure and GCS accept) and values are printable ASCII
without leading or trailing spaces (S3 and Azure carry metadata in HTTP headers, whose
parsers strip that whitespace, so such a value would come back changed); anything else
raises :class:`~cloudrift.core.exceptions.InvalidMetadataError`.

Listing order. ``list()`` and ``iter()`` return keys in Unicode code point order, which
is the order of their UTF-8 bytes (Python's ``sorted()`` of the key strings), on every
provider. Azure lists in UTF-16 order (a key with an emoji, outside the Basic
Multilingual Plane, before one with the fullwidth ``U+FF01``); its provider re-sorts on the fly
with :func:`in_code_point_order`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import io
import mimetypes
import re
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from cloudrift.core.exceptions import (
    FeatureNotSupportedError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidMetadataError,
    InvalidRangeError,
    ObjectNotFoundError,
    PreconditionFailedError,
)
from cloudrift.core.lifecycle import AsyncBackend
from cloudrift.core.operation import operation
from cloudrift.core.validation import check_int, is_int

#: Keys may not be longer than this many UTF-8 bytes (S3's and GCS's limit).
MAX_KEY_BYTES = 1024
#: Smallest part of a streamed upload except the last (S3's multipart minimum).
MIN_PART_SIZE = 5 * 1024 * 1024
#: Default part size of ``upload_stream``.
DEFAULT_PART_SIZE = 8 * 1024 * 1024
#: Default chunk size of ``download_stream``.
DEFAULT_CHUNK_SIZE = 1024 * 1024
#: Default content type when none is given and the key's extension says nothing.
DEFAULT_CONTENT_TYPE = "application/octet-stream"

PresignMethod = Literal["GET", "PUT"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_META_NAME = re.compile(r"[a-z][a-z0-9_]{0,127}")
_META_VALUE = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True)
class ObjectInfo:
    """What a backend knows about one stored object."""

    key: str
    size: int
    etag: str | None = None
    content_type: str | None = None
    last_modified: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class _SyncReader(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


#: What ``upload_stream`` accepts: an async iterable of bytes, or a binary file object
#: whose ``read(n)`` is sync or async.
StreamSource = AsyncIterable[bytes] | _SyncReader | Any


def validate_key(key: object) -> str:
    """Return ``key`` if every backend can store it; raise InvalidKeyError otherwise."""
    if not isinstance(key, str):
        raise InvalidKeyError(repr(key), f"a key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError(key, "a key must not be empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKeyError(
            key[:40] + "...", f"a key must be at most {MAX_KEY_BYTES} UTF-8 bytes; shorten it"
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyError(
            key, "a key must be valid Unicode text (no lone surrogates)"
        ) from None
    if _CONTROL.search(key):
        raise InvalidKeyError(key, "a key must not contain NUL or other control characters")
    if key.startswith("/"):
        raise InvalidKeyError(key, "a key must not start with '/'; drop the leading slash")
    if key.endswith("/"):
        raise InvalidKeyError(key, "a key must not end with '/' (that names a folder)")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError(
                key, "a key must not contain empty, '.' or '..' path segments ('//', '/./', '/../')"
            )
    return key


def validate_prefix(prefix: object) -> str:
    """Return a listing prefix: any str without control characters (may be empty)."""
    if not isinstance(prefix, str):
        raise InvalidKeyError(repr(prefix), "a prefix must be a str")
    if _CONTROL.search(prefix):
        raise InvalidKeyError(prefix, "a prefix must not contain control characters")
    if prefix.startswith("/"):
        raise InvalidKeyError(prefix, "a prefix must not start with '/'")
    return prefix


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """A copy of ``metadata`` if every backend can store it; InvalidMetadataError otherwise."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadataError("metadata must be a mapping of str to str")
    out: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not _META_NAME.fullmatch(name):
            raise InvalidMetadataError(
                f"metadata name {name!r} is not portable: use lowercase letters, digits and "
                "'_', starting with a letter (at most 128 characters)"
            )
        if not isinstance(value, str) or not _META_VALUE.fullmatch(value):
            raise InvalidMetadataError(
                f"metadata value for {name!r} must be printable ASCII text; "
                "encode other data (e.g. URL- or base64-encode it)"
            )
        if value != value.strip(" "):
            raise InvalidMetadataError(
                f"metadata value for {name!r} must not start or end with a space: S3 and "
                "Azure send metadata as HTTP headers, which drop that whitespace, so it "
                f"would come back changed; strip it or encode it, got {value!r}"
            )
        out[name] = value
    return out


def guess_content_type(key: str, content_type: str | None) -> str:
    """The given content type, else one guessed from the key's extension, else octet-stream."""
    if content_type is not None:
        if not isinstance(content_type, str) or not content_type or _CONTROL.search(content_type):
            raise InvalidMetadataError(
                f"content_type {content_type!r} must be a non-empty MIME type string"
            )
        return content_type
    guessed, _ = mimetypes.guess_type(key, strict=False)
    return guessed or DEFAULT_CONTENT_TYPE


def check_range(
    start: int | None, end: int | None, length: int | None = None
) -> tuple[int, int | None]:
    """Normalise ``[start, end)`` (or ``start`` + ``length``); InvalidRangeError for negative
    or reversed bounds, or for both ``end`` and ``length``."""
    begin = 0 if start is None else start
    if not is_int(begin) or begin < 0:
        raise InvalidRangeError(f"range start must be a non-negative int, got {start!r}")
    if length is not None:
        if end is not None:
            raise InvalidRangeError("give either end or length, not both")
        if not is_int(length) or length < 0:
            raise InvalidRangeError(f"range length must be a non-negative int, got {length!r}")
        end = begin + length
    if end is not None:
        if not is_int(end) or end < 0:
            raise InvalidRangeError(f"range end must be a non-negative int or None, got {end!r}")
        if end < begin:
            raise InvalidRangeError(f"range end ({end}) is before its start ({begin})")
    return begin, end


def range_header(start: int, end: int | None) -> dict[str, str]:
    """The HTTP ``Range`` header that asks for bytes ``[start, end)`` of an object (as
    :func:`check_range` returns them); none for the whole object."""
    if start == 0 and end is None:
        return {}
    return {"Range": f"bytes={start}-{'' if end is None else end - 1}"}


def check_if_match(if_match: object, if_not_exists: bool) -> str | None:
    """The ETag to match (surrounding quotes dropped, as ``head()`` returns it), or None;
    InvalidArgumentError for an empty or non-str ETag, or one combined with
    ``if_not_exists``."""
    if if_match is None:
        return None
    if not isinstance(if_match, str) or not if_match.strip('"'):
        raise InvalidArgumentError(
            f"if_match must be a non-empty ETag string (ObjectInfo.etag), got {if_match!r}"
        )
    if if_not_exists:
        raise InvalidArgumentError(
            "give either if_match (replace that version) or if_not_exists (create only), not both"
        )
    if if_match == "*":
        raise InvalidArgumentError("if_match='*' is not portable; pass the object's ETag")
    return if_match.strip('"')


@contextlib.contextmanager
def _no_object_to_match(key: str, if_match: str | None) -> Iterator[None]:
    """Under ``if_match``, a missing object is a failed precondition (as for a
    conditional write), worded so: there is no version to match."""
    try:
        yield
    except ObjectNotFoundError as exc:
        if if_match is None or exc.key != key:
            raise
        raise PreconditionFailedError(
            key, f"no object {key!r} to match (if_match needs an existing object)"
        ) from exc


def _coerce_bytes(data: object) -> bytes | bytearray | memoryview:
    if isinstance(data, bytes | bytearray | memoryview):
        return data
    if isinstance(data, str):
        raise TypeError("upload() takes bytes; encode text first, e.g. text.encode('utf-8')")
    raise TypeError(f"upload() takes bytes, not {type(data).__name__}")


async def iter_source(source: StreamSource, part_size: int) -> AsyncIterator[bytes]:
    """Yield ``source`` re-cut into parts of exactly ``part_size`` bytes (the last may be
    shorter, and an empty source yields nothing), holding at most one part in memory."""
    read = getattr(source, "read", None)
    if callable(read):
        # Reading a real file blocks; run those reads in a thread. In-memory buffers
        # are read directly, async files are awaited.
        direct = isinstance(source, io.BytesIO)
        is_async = inspect.iscoroutinefunction(read)

        async def read_some(n: int) -> Any:
            if direct or is_async:
                result = read(n)
            else:
                result = await asyncio.to_thread(read, n)
            return await result if inspect.isawaitable(result) else result

        while True:
            buf = bytearray()
            # A file object may return short reads; fill the part before yielding it.
            while len(buf) < part_size:
                chunk = await read_some(part_size - len(buf))
                if not chunk:
                    break
                if isinstance(chunk, str):
                    raise TypeError("upload_stream() needs a binary file; open it with mode 'rb'")
                buf += chunk
            if buf:
                yield bytes(buf)
            if len(buf) < part_size:
                return
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        for i in range(0, len(view), part_size):
            yield bytes(view[i : i + part_size])
        return
    if not isinstance(source, AsyncIterable):
        raise TypeError(
            "upload_stream() takes an async iterable of bytes or a binary file object, "
            f"not {type(source).__name__}"
        )
    pending = bytearray()
    async for piece in source:
        if not isinstance(piece, bytes | bytearray | memoryview):
            raise TypeError(f"upload_stream() source yielded {type(piece).__name__}, not bytes")
        pending += piece
        while len(pending) >= part_size:
            # Copy the part out once and shrink the buffer before handing it on, so at
            # most one part plus one incoming piece are held here.
            with memoryview(pending) as view:
                part = bytes(view[:part_size])
            del pending[:part_size]
            yield part
    if pending:
        part = bytes(pending)
        pending.clear()
        yield part


_T = TypeVar("_T")


def _outside_bmp(key: str) -> int:
    """Index of the first character of ``key`` beyond U+FFFF (a UTF-16 surrogate pair),
    or -1."""
    for index, char in enumerate(key):
        if ord(char) > 0xFFFF:
            return index
    return -1


async def in_code_point_order(
    items: AsyncIterable[_T], key: Callable[[_T], str]
) -> AsyncIterator[_T]:
    """Re-yield ``items``, which arrive sorted by the UTF-16 code units of ``key(item)``
    (Azure's listing order), sorted by code point instead (every other provider's order).

    The two orders differ only where one key has a character beyond U+FFFF (a surrogate
    pair in UTF-16, sorting before U+E000..U+FFFF) and another a character in
    U+E000..U+FFFF at the same position after a common prefix. So a key is held back
    only while later keys may still share its prefix up to its first such character;
    every other key passes straight through, and memory stays at one page in practice.
    """
    held: list[tuple[str, int, _T]] = []  # a heap by key; the int keeps pushes stable
    count = 0
    async for item in items:
        name = key(item)
        count += 1
        heapq.heappush(held, (name, count, item))
        while held:
            first = held[0][0]
            cut = _outside_bmp(first)
            # ``first`` is safe once no later key can sort before it: it has no
            # character beyond U+FFFF, or the listing has moved past its prefix.
            if cut >= 0 and name.startswith(first[:cut]):
                break
            yield heapq.heappop(held)[2]
    while held:
        yield heapq.heappop(held)[2]


async def send_parts(
    parts: AsyncIterable[_T],
    send: Callable[[int, _T], Coroutine[Any, Any, None]],
    concurrency: int,
) -> int:
    """Await ``send(number, part)`` for each part (numbered from 1) with at most
    ``concurrency`` sends in flight, so at most that many parts (plus the one being read)
    are held in memory. Returns the number of parts. If the source or a send fails, the
    sends still in flight are cancelled and the first error is raised."""
    pending: set[asyncio.Task[None]] = set()

    def raise_first(done: set[asyncio.Task[None]]) -> None:
        # Look at every finished task so no exception goes unretrieved.
        errors = [task.exception() for task in done if not task.cancelled()]
        for error in errors:
            if error is not None:
                raise error

    number = 0
    try:
        async for part in parts:
            while len(pending) >= concurrency:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                raise_first(done)
            number += 1
            pending.add(asyncio.create_task(send(number, part)))
        if pending:
            done, pending = await asyncio.wait(pending)
            raise_first(done)
    except BaseException:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise
    return number


class Storage(AsyncBackend, ABC):
    """An object store: bytes under string keys, the same behaviour on every provider.

    Providers implement the ``_hooks``; the public methods here validate input and hold
    the semantics shared by all providers, and each runs through
    :func:`~cloudrift.core.operation.operation` (closed check, observation, cancellation).
    """

    backend_name = "storage"
    category = "storage"
    #: Provider name, e.g. ``"s3"``.
    provider: str = "storage"

    #: Capabilities (False unless the provider declares them): ``presigned_url``.
    supports_presigned_url: bool = False

    def _location(self) -> str:
        """Where the data lives (bucket, container, folder) for repr and messages."""
        return ""

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        # Providers with a choice of transport (s3, r2, azure_blob, gcs) say which runs.
        engine = getattr(self, "engine", None)
        how = f" engine={engine!r}" if engine else ""
        return f"<{type(self).__name__} provider={self.provider!r} {self._location()}{how}{state}>"

    # ------------------------------------------------------------------ public API

    @operation
    async def upload(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        content_type: str | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        if_not_exists: bool = False,
        if_match: str | None = None,
    ) -> None:
        """Store ``data`` under ``key``, replacing any object there.

        Without ``content_type`` it is guessed from the key's extension, else
        ``application/octet-stream``. ``metadata`` is returned by ``head``. With
        ``if_not_exists=True`` an existing key raises ObjectExistsError and is left
        unchanged. With ``if_match=etag`` (the ``etag`` of ``head()``) the object is
        replaced only if its ETag is still ``etag``; otherwise, or if there is no object
        under ``key``, PreconditionFailedError is raised and nothing is written.
        """
        validate_key(key)
        payload = _coerce_bytes(data)
        ctype = guess_content_type(key, content_type)
        meta = validate_metadata(metadata)
        etag = check_if_match(if_match, if_not_exists)
        if etag is None:
            await self._put(key, payload, ctype, meta, if_not_exists)
        else:
            await self._put(key, payload, ctype, meta, False, if_match=etag)

    @operation
    async def upload_stream(
        self,
        key: str,
        source: StreamSource,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        if_match: str | None = None,
    ) -> None:
        """Store everything ``source`` yields under ``key`` without holding it all in memory.

        ``source`` is an async iterable of bytes or a binary file object (sync or async
        ``read``). It is sent in parts of ``part_size`` bytes (at least 5 MiB). If the
        source raises, the upload is aborted: no object is created and no parts remain,
        and the source's error propagates. ``if_match`` is checked when the upload
        completes, as for ``upload``.
        """
        validate_key(key)
        etag = check_if_match(if_match, False)
        ctype = guess_content_type(key, content_type)
        meta = validate_metadata(metadata)
        check_int(
            "part_size",
            part_size,
            at_least=MIN_PART_SIZE,
            hint="5 MiB, S3's minimum part",
            error=InvalidArgumentError,
        )
        parts = iter_source(source, part_size)
        if etag is None:
            await self._put_stream(key, parts, ctype, meta, part_size)
        else:
            await self._put_stream(key, parts, ctype, meta, part_size, if_match=etag)

    @operation
    async def download(
        self,
        key: str,
        *,
        start: int | None = None,
        end: int | None = None,
        length: int | None = None,
        if_match: str | None = None,
    ) -> bytes:
        """The object's bytes, or the half-open range ``[start, end)`` of them
        (``length=n`` is the same as ``end=start + n``).

        Raises ObjectNotFoundError naming the key if it does not exist. With
        ``if_match=etag`` (the ``etag`` of ``head()``) the bytes are those of that version
        only: if the object's ETag is no longer ``etag``, or there is no object under
        ``key``, PreconditionFailedError naming the key is raised instead.
        """
        validate_key(key)
        begin, stop = check_range(start, end, length)
        etag = check_if_match(if_match, False)
        with _no_object_to_match(key, etag):
            if stop is not None and stop == begin:
                await self._check_start(key, begin, etag)
                return b""
            try:
                return await self._get(key, begin, stop, if_match=etag)
            except InvalidRangeError:
                await self._check_start(key, begin, etag)
                return b""

    @operation
    async def download_stream(
        self,
        key: str,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        start: int | None = None,
        end: int | None = None,
        length: int | None = None,
        if_match: str | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield the object (or ``[start, end)`` of it, or ``length`` bytes from ``start``)
        as non-empty chunks of at most ``chunk_size`` bytes, without loading the whole object.

        Raises ObjectNotFoundError naming the key if it does not exist (on the first
        iteration step). ``if_match`` is checked as for ``download`` (on the first
        iteration step), and every chunk then comes from that version.
        """
        validate_key(key)
        begin, stop = check_range(start, end, length)
        check_int("chunk_size", chunk_size, at_least=1, error=InvalidArgumentError)
        etag = check_if_match(if_match, False)
        if stop is not None and stop == begin:
            with _no_object_to_match(key, etag):
                await self._check_start(key, begin, etag)
            return
        stream = self._get_stream(key, begin, stop, chunk_size, if_match=etag)
        try:
            with _no_object_to_match(key, etag):
                async for chunk in stream:
                    if type(chunk) is bytes and 0 < len(chunk) <= chunk_size:
                        # Already a chunk: hand it on without another copy.
                        yield chunk
                        continue
                    view = memoryview(chunk)
                    for i in range(0, len(view), chunk_size):
                        piece = view[i : i + chunk_size]
                        if piece:
                            yield bytes(piece)
        except InvalidRangeError:
            with _no_object_to_match(key, etag):
                await self._check_start(key, begin, etag)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    @operation
    async def head(self, key: str) -> ObjectInfo:
        """Size, etag, content type, modification time and metadata of the object.

        Raises ObjectNotFoundError naming the key if it does not exist.
        """
        validate_key(key)
        return await self._head(key)

    @operation
    async def exists(self, key: str) -> bool:
        """True if an object is stored under ``key``."""
        validate_key(key)
        return await self._exists(key)

    @operation
    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove the object. Deleting a key that does not exist is a no-op.

        With ``if_match=etag`` the object is removed only if its ETag is still ``etag``;
        otherwise, or if there is no object, PreconditionFailedError is raised.
        """
        validate_key(key)
        etag = check_if_match(if_match, False)
        if etag is None:
            await self._delete(key)
        else:
            await self._delete_if_match(key, etag)

    @operation
    async def iter(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Yield an ObjectInfo for every key starting with ``prefix``, in lexicographic
        order of the keys' UTF-8 bytes, fetching one page at a time."""
        validate_prefix(prefix)
        async for info in self._iter(prefix):
            yield info

    @operation
    async def list(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix``, sorted (the seed's simple listing)."""
        validate_prefix(prefix)
        return [key async for key in self._iter_keys(prefix)]

    @operation
    async def copy(self, src: str, dst: str) -> None:
        """Copy ``src`` to ``dst`` server-side (content type and metadata included),
        replacing ``dst``; returns once the copy is complete.

        Raises ObjectNotFoundError naming ``src`` if it does not exist.
        """
        validate_key(src)
        validate_key(dst)
        if src == dst:
            await self._head(src)
            return
        await self._copy(src, dst)

    @operation
    async def move(self, src: str, dst: str) -> None:
        """Copy ``src`` to ``dst``, then delete ``src`` (only after the copy completed).

        Raises ObjectNotFoundError naming ``src`` if it does not exist.
        """
        validate_key(src)
        validate_key(dst)
        if src == dst:
            await self._head(src)
            return
        await self._copy(src, dst)
        await self._delete(src)

    @operation
    async def presigned_url(
        self,
        key: str,
        expires_in: int = 3600,
        method: PresignMethod = "GET",
        content_type: str | None = None,
    ) -> str:
        """A URL that lets anyone holding it GET (download) or PUT (upload) the object
        until ``expires_in`` seconds from now, without credentials.

        For PUT with ``content_type`` the upload must send that Content-Type.
        """
        validate_key(key)
        if method not in ("GET", "PUT"):
            raise FeatureNotSupportedError(
                f"presigned_url method must be 'GET' or 'PUT', not {method!r}"
            )
        check_int(
            "expires_in",
            expires_in,
            at_least=1,
            at_most=7 * 24 * 3600,
            unit="seconds; 7 days is S3's limit",
            error=InvalidArgumentError,
        )
        if content_type is not None:
            guess_content_type(key, content_type)
        return await self._presign(key, expires_in, method, content_type)

    @operation
    async def health_check(self) -> bool:
        """True if the service answers with these credentials; False (never an error)
        when it cannot be reached. Raises BackendClosedError if closed."""
        try:
            return await self._health()
        except asyncio.CancelledError:
            raise
        except Exception:
            return False

    # --------------------------------------------------------------- shared helpers

    async def _check_start(self, key: str, start: int, if_match: str | None = None) -> None:
        """Existence, ETag and range check for an empty read at ``start``."""
        info = await self._head(key)
        if if_match is not None and info.etag != if_match:
            raise PreconditionFailedError(key)
        if start > info.size:
            raise InvalidRangeError(
                f"range start {start} is past the end of {key!r} ({info.size} bytes)"
            )

    async def _exists(self, key: str) -> bool:
        try:
            await self._head(key)
        except ObjectNotFoundError:
            return False
        return True

    async def _put_stream(
        self,
        key: str,
        parts: AsyncIterator[bytes],
        content_type: str,
        metadata: dict[str, str],
        part_size: int,
        *,
        if_match: str | None = None,
    ) -> None:
        """Default for backends whose data lives in memory anyway: gather, then put."""
        buf = bytearray()
        async for part in parts:
            buf += part
        if if_match is None:
            await self._put(key, bytes(buf), content_type, metadata, False)
        else:
            await self._put(key, bytes(buf), content_type, metadata, False, if_match=if_match)

    async def _delete_if_match(self, key: str, etag: str) -> None:
        """Hook: delete only if the ETag is ``etag``; PreconditionFailedError otherwise
        (also when missing)."""
        raise FeatureNotSupportedError(
            f"the {self.provider!r} storage provider cannot delete conditionally"
        )

    # ------------------------------------------------------------------ the hooks

    @abstractmethod
    async def _put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        content_type: str,
        metadata: dict[str, str],
        if_not_exists: bool,
        *,
        if_match: str | None = None,
    ) -> None:
        """Store the object; ObjectExistsError when ``if_not_exists`` and it exists;
        PreconditionFailedError naming the key when ``if_match`` is given and the object's
        ETag differs or it is missing."""

    @abstractmethod
    async def _get(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> bytes:
        """Bytes ``[start, end)``; InvalidRangeError when ``start >= size`` (and start > 0
        or the object is empty), ObjectNotFoundError when missing; with ``if_match``,
        PreconditionFailedError naming the key when the object's ETag differs (a missing
        object may raise ObjectNotFoundError: the public method words it)."""

    @abstractmethod
    def _get_stream(
        self, key: str, start: int, end: int | None, chunk_size: int, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        """Async generator of chunks of ``[start, end)``, all of one version of the object;
        errors as ``_get``."""

    @abstractmethod
    async def _head(self, key: str) -> ObjectInfo:
        """ObjectInfo, or ObjectNotFoundError naming the key."""

    @abstractmethod
    async def _delete(self, key: str) -> None:
        """Delete; a missing key is not an error."""

    async def _iter_keys(self, prefix: str) -> AsyncIterator[str]:
        """Hook: the keys under ``prefix`` in ``iter()`` order. Defaults to the keys of
        ``_iter``; a provider overrides it when it can list names more cheaply than full
        ObjectInfo (Azure: ``list_blob_names`` skips parsing every blob's properties)."""
        async for info in self._iter(prefix):
            yield info.key

    @abstractmethod
    def _iter(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Async generator of ObjectInfo for keys under ``prefix``, sorted."""

    @abstractmethod
    async def _copy(self, src: str, dst: str) -> None:
        """Server-side copy, complete on return; ObjectNotFoundError naming ``src``."""

    async def _presign(
        self, key: str, expires_in: int, method: PresignMethod, content_type: str | None
    ) -> str:
        raise FeatureNotSupportedError(
            f"the {self.provider!r} storage provider cannot issue presigned URLs"
        )

    async def _health(self) -> bool:
        return True


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_PART_SIZE",
    "MAX_KEY_BYTES",
    "MIN_PART_SIZE",
    "ObjectInfo",
    "PresignMethod",
    "Storage",
    "StreamSource",
    "check_if_match",
    "check_range",
    "guess_content_type",
    "in_code_point_order",
    "iter_source",
    "range_header",
    "send_parts",
    "validate_key",
    "validate_metadata",
    "validate_prefix",
]
