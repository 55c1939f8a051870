"""The storage contract, checked against every provider.

A provider's test module subclasses :class:`StorageConformance` and provides:

* a ``backend`` fixture (function scope, async) that yields an open, empty backend
  against a real local stand-in and closes it afterwards;
* ``unsupported``: capabilities from :data:`CAPABILITIES` it lacks;
* ``list_page_size``: the page size the harness configured (so the paging test
  creates more keys than one page holds);
* ``secrets_in_use``: credential strings that must never appear in repr or errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from cloudrift.core.exceptions import (
    BackendClosedError,
    FeatureNotSupportedError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidMetadataError,
    InvalidRangeError,
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
)
from cloudrift.storage import ObjectInfo, Storage
from cloudrift.storage.base import MIN_PART_SIZE
from tests.conformance import BackendConformance

MiB = 1024 * 1024
ALL_BYTES = bytes(range(256)) * 4

WEIRD_KEYS = [
    "with space/and more spaces.txt",
    "ünïcødé/文件/данные.bin",
    "plus+sign+key.txt",
    "percent%20not%2Fdecoded%.txt",
    "deep/a/b/c/d/e/f/g/h/i/j/leaf.dat",
    "emoji-😀-key",
    "punct !$&'()*,;=@[]~.txt",
    "question?hash#mark.txt",
]

INVALID_KEYS = [
    "",
    "/leading-slash",
    "trailing-slash/",
    "a/../escape",
    "../escape",
    "a/./b",
    "double//slash",
    "nul\x00byte",
    "newline\nkey",
    "x" * 1025,
    "é" * 513,
]

SIZE = len(ALL_BYTES)
RANGES: list[tuple[int | None, int | None, bytes]] = [
    (None, None, ALL_BYTES),
    (0, 1, ALL_BYTES[:1]),
    (None, 3, ALL_BYTES[:3]),
    (5, None, ALL_BYTES[5:]),
    (10, 20, ALL_BYTES[10:20]),
    (SIZE - 1, None, ALL_BYTES[-1:]),
    (SIZE - 1, SIZE, ALL_BYTES[-1:]),
    (0, SIZE + 100, ALL_BYTES),
    (7, 7, b""),
    (SIZE, None, b""),
    (SIZE, SIZE + 5, b""),
]


async def increment_counter(backend: Storage, key: str) -> int:
    """Add one to the JSON counter object ``{"n": ...}`` under ``key`` with a
    read-modify-write that retries on PreconditionFailedError; the new value.

    ``head`` comes before ``download``, and the download is of that ETag's version only
    (``if_match``): the count read is the one the conditional write replaces.
    """
    while True:
        etag = (await backend.head(key)).etag
        assert etag is not None
        try:
            count = int(json.loads(await backend.download(key, if_match=etag))["n"]) + 1
            await backend.upload(key, json.dumps({"n": count}).encode(), if_match=etag)
        except PreconditionFailedError:
            # A short random backoff spreads the retries out (fewer wasted round trips).
            await asyncio.sleep(random.uniform(0, 0.005))
            continue
        return count


async def collect(stream: AsyncIterator[bytes], into: list[bytes] | None = None) -> bytes:
    """Everything ``stream`` yields, joined (each chunk also appended to ``into``)."""
    chunks = [] if into is None else into
    async for chunk in stream:
        chunks.append(chunk)
    return b"".join(chunks)


async def agen(*parts: bytes) -> AsyncIterator[bytes]:
    """An async generator yielding ``parts``."""
    for part in parts:
        await asyncio.sleep(0)
        yield part


class AsyncReader:
    """A binary file object whose ``read`` is a coroutine (like aiofiles)."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    async def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes, in short reads to exercise re-buffering."""
        return self._buf.read(min(n, 3 * MiB) if n > 0 else n)


class StorageConformance(BackendConformance):
    """Every storage provider behaves like this."""

    failing_operation = ("download", ("telemetry/no-such-key",), "ObjectNotFoundError")

    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"presigned_url"})
    list_page_size: ClassVar[int] = 5
    secrets_in_use: ClassVar[tuple[str, ...]] = ()

    async def http(
        self,
        method: str,
        url: str,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Fetch ``url`` over real HTTP (harnesses may add transport details)."""
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.request(method, url, content=content, headers=headers)

    # ------------------------------------------------------------ round trips

    async def test_binary_round_trip_keeps_every_byte(self, backend: Storage) -> None:
        """upload then download returns the same bytes, all 256 byte values included."""
        await backend.upload("bin/all-bytes", ALL_BYTES)
        assert await backend.download("bin/all-bytes") == ALL_BYTES

    async def test_empty_object_round_trip(self, backend: Storage) -> None:
        """An empty object is stored, listed, and downloads as b'' with size 0."""
        await backend.upload("empty", b"")
        assert await backend.download("empty") == b""
        assert (await backend.head("empty")).size == 0
        assert await backend.list() == ["empty"]
        assert [c async for c in backend.download_stream("empty")] == []

    async def test_20_mib_object_round_trip(self, backend: Storage) -> None:
        """A 20 MiB object survives upload and download unchanged."""
        data = os.urandom(20 * MiB)
        await backend.upload("big/blob", data)
        got = await backend.download("big/blob")
        assert (
            len(got) == len(data) and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        )

    async def test_upload_accepts_bytearray_and_memoryview(self, backend: Storage) -> None:
        """bytes-like data other than bytes is stored as its bytes."""
        await backend.upload("ba", bytearray(b"abc"))
        await backend.upload("mv", memoryview(b"xyz"))
        assert (await backend.download("ba"), await backend.download("mv")) == (b"abc", b"xyz")

    async def test_upload_of_text_is_a_type_error(self, backend: Storage) -> None:
        """Passing str instead of bytes fails with advice to encode."""
        with pytest.raises(TypeError, match="encode"):
            await backend.upload("t", "text")  # type: ignore[arg-type]

    async def test_upload_replaces_existing_object(self, backend: Storage) -> None:
        """A second upload to a key replaces the first."""
        await backend.upload("k", b"one")
        await backend.upload("k", b"two-two")
        assert await backend.download("k") == b"two-two"
        assert (await backend.head("k")).size == 7

    @pytest.mark.parametrize("key", WEIRD_KEYS)
    async def test_weird_keys_round_trip_and_list_exactly(self, backend: Storage, key: str) -> None:
        """Keys with spaces, unicode, '+', '%' and deep prefixes are stored and listed verbatim."""
        await backend.upload(key, key.encode())
        assert await backend.download(key) == key.encode()
        assert await backend.list() == [key]
        assert (await backend.head(key)).key == key
        assert await backend.exists(key)
        await backend.delete(key)
        assert not await backend.exists(key)

    # ------------------------------------------------------- head / metadata

    async def test_head_reports_size_type_etag_time_and_metadata(self, backend: Storage) -> None:
        """head returns an ObjectInfo with the uploaded size, content type and metadata."""
        await backend.upload(
            "docs/a.json", b'{"a": 1}', content_type="application/json", metadata={"owner": "ann_1"}
        )
        info = await backend.head("docs/a.json")
        assert isinstance(info, ObjectInfo)
        assert (info.key, info.size, info.content_type) == ("docs/a.json", 8, "application/json")
        assert dict(info.metadata) == {"owner": "ann_1"}
        assert info.etag and not info.etag.startswith('"')
        assert info.last_modified is not None and info.last_modified.tzinfo is not None

    async def test_content_type_is_guessed_from_the_extension(self, backend: Storage) -> None:
        """Without content_type, '.txt' is text/plain and an unknown extension is octet-stream."""
        await backend.upload("notes.txt", b"hi")
        await backend.upload("blob.unknownext", b"hi")
        assert (await backend.head("notes.txt")).content_type == "text/plain"
        assert (await backend.head("blob.unknownext")).content_type == "application/octet-stream"

    async def test_etag_changes_when_content_changes(self, backend: Storage) -> None:
        """A new upload with other content gets another etag."""
        await backend.upload("e", b"first")
        first = (await backend.head("e")).etag
        await backend.upload("e", b"second, longer")
        assert (await backend.head("e")).etag != first

    @pytest.mark.parametrize(
        "metadata",
        [
            {"Upper": "x"},
            {"has-dash": "x"},
            {"ok": "naïve"},
            {"ok": "line\nbreak"},
            {"": "x"},
            {"ok": " leading space"},
            {"ok": "trailing space "},
        ],
    )
    async def test_unportable_metadata_is_rejected(
        self, backend: Storage, metadata: dict[str, str]
    ) -> None:
        """Metadata some backend could not store raises InvalidMetadataError and stores nothing."""
        with pytest.raises(InvalidMetadataError):
            await backend.upload("m", b"x", metadata=metadata)
        assert not await backend.exists("m")

    async def test_head_of_missing_key_raises_not_found(self, backend: Storage) -> None:
        """head of a missing key raises ObjectNotFoundError naming it."""
        with pytest.raises(ObjectNotFoundError, match="nope/missing") as info:
            await backend.head("nope/missing")
        assert info.value.key == "nope/missing"

    # ------------------------------------------------- download / exists / delete

    async def test_download_of_missing_key_raises_not_found(self, backend: Storage) -> None:
        """download of a missing key raises ObjectNotFoundError naming the key."""
        with pytest.raises(ObjectNotFoundError, match=r"missing\.txt") as info:
            await backend.download("missing.txt")
        assert info.value.key == "missing.txt"
        assert isinstance(info.value, KeyError)

    async def test_exists_reports_presence(self, backend: Storage) -> None:
        """exists is False before upload, True after, False after delete."""
        assert not await backend.exists("x/y")
        await backend.upload("x/y", b"1")
        assert await backend.exists("x/y")
        assert not await backend.exists("x")
        await backend.delete("x/y")
        assert not await backend.exists("x/y")

    async def test_delete_missing_key_is_a_no_op(self, backend: Storage) -> None:
        """Deleting a key that does not exist returns quietly."""
        await backend.delete("never/was/here")
        await backend.upload("kept", b"k")
        await backend.delete("kept")
        await backend.delete("kept")
        assert await backend.list() == []

    @pytest.mark.parametrize("key", INVALID_KEYS, ids=range(len(INVALID_KEYS)))
    async def test_invalid_keys_are_rejected_before_any_call(
        self, backend: Storage, key: str
    ) -> None:
        """Every operation refuses an invalid key with InvalidKeyError (a ValueError)."""
        with pytest.raises(InvalidKeyError):
            await backend.upload(key, b"x")
        with pytest.raises(InvalidKeyError):
            await backend.download(key)
        with pytest.raises(InvalidKeyError):
            await backend.delete(key)
        with pytest.raises(ValueError, match="invalid object key"):
            await backend.exists(key)
        assert await backend.list() == []

    async def test_non_string_key_is_rejected(self, backend: Storage) -> None:
        """A key that is not a str raises InvalidKeyError."""
        with pytest.raises(InvalidKeyError, match="must be a str"):
            await backend.upload(b"bytes-key", b"x")  # type: ignore[arg-type]

    # ---------------------------------------------------------------- listing

    async def test_list_filters_by_prefix_and_sorts(self, backend: Storage) -> None:
        """list(prefix) returns exactly the keys starting with prefix, sorted."""
        for key in ["a/2", "a/1", "ab", "b/1", "a/sub/3"]:
            await backend.upload(key, b"x")
        assert await backend.list() == ["a/1", "a/2", "a/sub/3", "ab", "b/1"]
        assert await backend.list(prefix="a/") == ["a/1", "a/2", "a/sub/3"]
        assert await backend.list(prefix="a") == ["a/1", "a/2", "a/sub/3", "ab"]
        assert await backend.list(prefix="a/s") == ["a/sub/3"]
        assert await backend.list(prefix="zzz") == []

    async def test_list_and_iter_sort_keys_by_code_point(self, backend: Storage) -> None:
        """list and iter return keys in code point (UTF-8 byte) order, also across pages:
        an emoji (beyond U+FFFF) after fullwidth and other late-BMP characters."""
        keys = ["\U0001f600", "\uff01", "z", "\u65e5", "\uffef", "k/\U0001f600", "k/\uff01", "k/a"]
        for key in keys:
            await backend.upload(key, b"x")
        assert await backend.list() == sorted(keys)
        assert [info.key async for info in backend.iter()] == sorted(keys)
        assert await backend.list(prefix="k/") == ["k/a", "k/\uff01", "k/\U0001f600"]

    async def test_listing_spans_more_than_one_page(self, backend: Storage) -> None:
        """iter and list return every key when there are more than a page of them."""
        count = self.list_page_size * 2 + 3
        keys = [f"paged/{i:04d}" for i in range(count)]
        await asyncio.gather(*(backend.upload(k, b"p") for k in keys))
        await backend.upload("other/x", b"o")
        assert await backend.list(prefix="paged/") == keys
        infos = [info async for info in backend.iter("paged/")]
        assert [i.key for i in infos] == keys and all(i.size == 1 for i in infos)

    async def test_iter_yields_object_info(self, backend: Storage) -> None:
        """iter yields ObjectInfo values with the key and size of each object."""
        await backend.upload("i/one", b"1")
        await backend.upload("i/three", b"333")
        got = {(i.key, i.size) async for i in backend.iter("i/")}
        assert got == {("i/one", 1), ("i/three", 3)}

    # ---------------------------------------------------------------- ranges

    @pytest.mark.parametrize(("start", "end", "expected"), RANGES)
    async def test_ranged_download_is_a_half_open_slice(
        self, backend: Storage, start: int | None, end: int | None, expected: bytes
    ) -> None:
        """download(start, end) returns data[start:end], clamped at the object's end."""
        await backend.upload("r", ALL_BYTES)
        assert await backend.download("r", start=start, end=end) == expected
        streamed = b"".join([c async for c in backend.download_stream("r", start=start, end=end)])
        assert streamed == expected

    @pytest.mark.parametrize(
        ("start", "end"), [(SIZE + 1, None), (SIZE + 1, SIZE + 9), (-1, None), (5, 4)]
    )
    async def test_range_outside_the_object_raises(
        self, backend: Storage, start: int, end: int | None
    ) -> None:
        """A start past the end, a negative bound or end < start raises InvalidRangeError."""
        await backend.upload("r", ALL_BYTES)
        with pytest.raises(InvalidRangeError):
            await backend.download("r", start=start, end=end)
        with pytest.raises(InvalidRangeError):
            _ = [c async for c in backend.download_stream("r", start=start, end=end)]

    async def test_length_is_another_way_to_give_the_end(self, backend: Storage) -> None:
        """length=n reads n bytes from start (clamped); giving end and length is an error."""
        await backend.upload("r", ALL_BYTES)
        assert await backend.download("r", start=10, length=5) == ALL_BYTES[10:15]
        assert await backend.download("r", length=3) == ALL_BYTES[:3]
        assert await backend.download("r", start=SIZE - 2, length=10) == ALL_BYTES[-2:]
        chunks = [c async for c in backend.download_stream("r", start=1, length=4)]
        assert b"".join(chunks) == ALL_BYTES[1:5]
        with pytest.raises(InvalidRangeError, match="not both"):
            await backend.download("r", start=1, end=3, length=2)
        with pytest.raises(InvalidRangeError):
            await backend.download("r", length=-1)

    async def test_range_on_empty_object(self, backend: Storage) -> None:
        """On an empty object, start=0 gives b'' and start=1 raises InvalidRangeError."""
        await backend.upload("e0", b"")
        assert await backend.download("e0", start=0) == b""
        assert await backend.download("e0", start=0, end=10) == b""
        with pytest.raises(InvalidRangeError):
            await backend.download("e0", start=1)

    async def test_ranged_download_of_missing_key_raises_not_found(self, backend: Storage) -> None:
        """A ranged read of a missing key raises ObjectNotFoundError, not a range error."""
        with pytest.raises(ObjectNotFoundError):
            await backend.download("gone", start=3, end=3)
        with pytest.raises(ObjectNotFoundError):
            await backend.download("gone", start=3, end=9)

    # ------------------------------------------------------------- streaming

    async def test_download_stream_yields_bounded_chunks(self, backend: Storage) -> None:
        """download_stream yields non-empty chunks of at most chunk_size that join to the object."""
        data = os.urandom(300_000)
        await backend.upload("s", data)
        chunks = [c async for c in backend.download_stream("s", chunk_size=64 * 1024)]
        assert b"".join(chunks) == data
        assert all(0 < len(c) <= 64 * 1024 for c in chunks) and len(chunks) >= 5

    async def test_download_stream_of_missing_key_raises_not_found(self, backend: Storage) -> None:
        """Iterating download_stream of a missing key raises ObjectNotFoundError."""
        with pytest.raises(ObjectNotFoundError):
            _ = [c async for c in backend.download_stream("nothing")]

    async def test_upload_stream_from_async_generator(self, backend: Storage) -> None:
        """upload_stream stores what an async generator yields, in order."""
        await backend.upload_stream(
            "st/gen", agen(b"ab", b"", b"cd", b"e" * 1000), metadata={"k": "v"}
        )
        assert await backend.download("st/gen") == b"abcd" + b"e" * 1000
        assert dict((await backend.head("st/gen")).metadata) == {"k": "v"}

    async def test_upload_stream_of_empty_source_stores_empty_object(
        self, backend: Storage
    ) -> None:
        """An empty source creates an empty object."""
        await backend.upload_stream("st/empty", agen())
        assert await backend.download("st/empty") == b""

    async def test_upload_stream_multipart_from_async_generator(self, backend: Storage) -> None:
        """A source larger than a part is sent in parts and reassembled exactly."""
        data = os.urandom(2 * MIN_PART_SIZE + 12345)
        pieces = [data[i : i + 1_000_000] for i in range(0, len(data), 1_000_000)]
        await backend.upload_stream("st/multi", agen(*pieces), part_size=MIN_PART_SIZE)
        got = b"".join([c async for c in backend.download_stream("st/multi")])
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()

    async def test_upload_stream_from_sync_and_async_files(
        self, backend: Storage, tmp_path: Path
    ) -> None:
        """A real file, a BytesIO and an object with async read() are all accepted."""
        data = os.urandom(MIN_PART_SIZE + 777)
        path = tmp_path / "src.bin"
        path.write_bytes(data)
        with path.open("rb") as fh:
            await backend.upload_stream("f/real", fh, part_size=MIN_PART_SIZE)
        await backend.upload_stream("f/bytesio", io.BytesIO(b"small"))
        await backend.upload_stream("f/async", AsyncReader(data), part_size=MIN_PART_SIZE)
        assert await backend.download("f/real") == data
        assert await backend.download("f/bytesio") == b"small"
        assert await backend.download("f/async") == data

    async def test_failed_upload_stream_leaves_no_object(self, backend: Storage) -> None:
        """When the source raises mid-way, its error propagates and no object is created."""

        async def broken() -> AsyncIterator[bytes]:
            yield os.urandom(MIN_PART_SIZE + 10)
            raise RuntimeError("source broke")

        with pytest.raises(RuntimeError, match="source broke"):
            await backend.upload_stream("st/broken", broken(), part_size=MIN_PART_SIZE)
        assert not await backend.exists("st/broken")
        assert await backend.list() == []

    async def test_failed_upload_stream_keeps_the_previous_object(self, backend: Storage) -> None:
        """An aborted streamed upload leaves an existing object under the key untouched."""
        await backend.upload("st/keep", b"old")

        async def broken() -> AsyncIterator[bytes]:
            yield b"new"
            raise RuntimeError("source broke")

        with pytest.raises(RuntimeError):
            await backend.upload_stream("st/keep", broken())
        assert await backend.download("st/keep") == b"old"

    async def test_small_part_size_is_rejected(self, backend: Storage) -> None:
        """part_size below 5 MiB raises InvalidArgumentError naming the minimum."""
        with pytest.raises(InvalidArgumentError, match="5 MiB"):
            await backend.upload_stream("p", agen(b"x"), part_size=1024)

    @pytest.mark.parametrize("chunk_size", [0, -1, True, 1.5])
    async def test_bad_chunk_size_is_an_argument_error(
        self, backend: Storage, chunk_size: object
    ) -> None:
        """chunk_size that is not a positive int raises InvalidArgumentError (not a range error)."""
        with pytest.raises(InvalidArgumentError, match="chunk_size") as info:
            await anext(backend.download_stream("k", chunk_size=chunk_size))  # type: ignore[arg-type]
        assert not isinstance(info.value, InvalidRangeError)

    async def test_upload_stream_rejects_non_bytes_source(self, backend: Storage) -> None:
        """A source that is neither bytes chunks nor a file raises TypeError."""
        with pytest.raises(TypeError, match="async iterable of bytes"):
            await backend.upload_stream("p", 42)

    # ------------------------------------------------------------ copy / move

    async def test_copy_keeps_content_type_and_metadata(self, backend: Storage) -> None:
        """copy creates dst with src's bytes, content type and metadata; src stays."""
        await backend.upload("c/src", b"data", content_type="text/csv", metadata={"tag": "t1"})
        await backend.upload("c/dst", b"old")
        await backend.copy("c/src", "c/dst")
        assert await backend.download("c/dst") == b"data"
        info = await backend.head("c/dst")
        assert (info.content_type, dict(info.metadata)) == ("text/csv", {"tag": "t1"})
        assert await backend.download("c/src") == b"data"

    async def test_copy_of_missing_source_raises_not_found(self, backend: Storage) -> None:
        """copy from a missing key raises ObjectNotFoundError naming the source."""
        with pytest.raises(ObjectNotFoundError) as info:
            await backend.copy("c/none", "c/dst")
        assert info.value.key == "c/none"
        assert not await backend.exists("c/dst")

    async def test_move_removes_source_after_copy(self, backend: Storage) -> None:
        """move leaves only dst, holding src's bytes."""
        await backend.upload("m/src", b"moving")
        await backend.move("m/src", "m/dst")
        assert await backend.list(prefix="m/") == ["m/dst"]
        assert await backend.download("m/dst") == b"moving"

    async def test_move_of_missing_source_raises_not_found(self, backend: Storage) -> None:
        """move from a missing key raises ObjectNotFoundError and creates nothing."""
        with pytest.raises(ObjectNotFoundError):
            await backend.move("m/none", "m/dst")
        assert await backend.list() == []

    async def test_copy_and_move_onto_itself_keep_the_object(self, backend: Storage) -> None:
        """copy or move of a key onto itself leaves the object in place."""
        await backend.upload("same", b"s")
        await backend.copy("same", "same")
        await backend.move("same", "same")
        assert await backend.download("same") == b"s"

    # ------------------------------------------------------ conditional create

    async def test_if_not_exists_creates_once(self, backend: Storage) -> None:
        """upload(if_not_exists=True) creates a missing key and refuses an existing one."""
        await backend.upload("once", b"first", if_not_exists=True)
        with pytest.raises(ObjectExistsError) as info:
            await backend.upload("once", b"second", if_not_exists=True)
        assert info.value.key == "once"
        assert await backend.download("once") == b"first"

    async def test_concurrent_conditional_creates_have_one_winner(self, backend: Storage) -> None:
        """Of 10 concurrent conditional creates of one key, exactly one succeeds."""
        results = await asyncio.gather(
            *(backend.upload("race", str(i).encode(), if_not_exists=True) for i in range(10)),
            return_exceptions=True,
        )
        winners = [r for r in results if r is None]
        assert len(winners) == 1
        assert all(isinstance(r, ObjectExistsError) for r in results if r is not None)

    # ----------------------------------------------------- conditional replace

    async def test_if_match_with_the_current_etag_replaces(self, backend: Storage) -> None:
        """upload(if_match=head().etag) replaces the object and gives it a new ETag."""
        await backend.upload("cas", b"one")
        etag = (await backend.head("cas")).etag
        assert etag
        await backend.upload("cas", b"two", if_match=etag)
        assert await backend.download("cas") == b"two"
        assert (await backend.head("cas")).etag != etag

    async def test_if_match_with_a_stale_etag_fails_and_leaves_the_object(
        self, backend: Storage
    ) -> None:
        """A stale ETag raises PreconditionFailedError naming the key; nothing changes."""
        await backend.upload("cas", b"one", metadata={"v": "1"})
        stale = (await backend.head("cas")).etag
        assert stale
        await backend.upload("cas", b"two", metadata={"v": "2"})
        current = await backend.head("cas")
        with pytest.raises(PreconditionFailedError) as info:
            await backend.upload("cas", b"three", metadata={"v": "3"}, if_match=stale)
        assert info.value.key == "cas"
        assert await backend.download("cas") == b"two"
        assert (await backend.head("cas")).etag == current.etag
        assert dict((await backend.head("cas")).metadata) == {"v": "2"}

    async def test_if_match_on_a_missing_key_fails_clearly(self, backend: Storage) -> None:
        """if_match on a key with no object raises PreconditionFailedError (saying so) and
        creates nothing."""
        await backend.upload("other", b"x")
        etag = (await backend.head("other")).etag
        assert etag
        with pytest.raises(PreconditionFailedError, match="no object") as info:
            await backend.upload("ghost", b"x", if_match=etag)
        assert info.value.key == "ghost"
        assert not await backend.exists("ghost")

    async def test_upload_stream_if_match_checks_the_etag(self, backend: Storage) -> None:
        """upload_stream(if_match=) replaces with the current ETag and refuses a stale one."""
        await backend.upload("s-cas", b"one")
        etag = (await backend.head("s-cas")).etag
        assert etag
        await backend.upload_stream("s-cas", agen(b"tw", b"o"), if_match=etag)
        with pytest.raises(PreconditionFailedError):
            await backend.upload_stream("s-cas", agen(b"three"), if_match=etag)
        assert await backend.download("s-cas") == b"two"

    async def test_delete_if_match_deletes_only_that_version(self, backend: Storage) -> None:
        """delete(if_match=) refuses a stale ETag (object kept) and deletes with the
        current one; on a missing key it raises PreconditionFailedError."""
        await backend.upload("d-cas", b"one")
        stale = (await backend.head("d-cas")).etag
        assert stale
        await backend.upload("d-cas", b"two")
        with pytest.raises(PreconditionFailedError):
            await backend.delete("d-cas", if_match=stale)
        assert await backend.download("d-cas") == b"two"
        current = (await backend.head("d-cas")).etag
        assert current
        await backend.delete("d-cas", if_match=current)
        assert not await backend.exists("d-cas")
        with pytest.raises(PreconditionFailedError):
            await backend.delete("d-cas", if_match=current)

    async def test_if_match_argument_is_checked(self, backend: Storage) -> None:
        """An empty ETag, '*', or if_match with if_not_exists is refused before any call."""
        for bad in ("", '""', "*"):
            with pytest.raises(InvalidArgumentError):
                await backend.upload("k", b"x", if_match=bad)
        with pytest.raises(InvalidArgumentError, match="not both"):
            await backend.upload("k", b"x", if_match="e", if_not_exists=True)
        assert not await backend.exists("k")

    async def test_download_if_match_with_the_current_etag_reads_that_version(
        self, backend: Storage
    ) -> None:
        """download and download_stream with if_match=head().etag return the object, whole,
        ranged and empty-ranged."""
        await backend.upload("r-cas", ALL_BYTES)
        etag = (await backend.head("r-cas")).etag
        assert etag
        assert await backend.download("r-cas", if_match=etag) == ALL_BYTES
        assert await backend.download("r-cas", start=10, end=20, if_match=etag) == ALL_BYTES[10:20]
        assert await backend.download("r-cas", start=SIZE, if_match=etag) == b""
        assert await backend.download("r-cas", start=7, end=7, if_match=etag) == b""
        chunks = [c async for c in backend.download_stream("r-cas", chunk_size=100, if_match=etag)]
        assert b"".join(chunks) == ALL_BYTES
        ranged = backend.download_stream("r-cas", start=5, length=50, if_match=etag)
        assert b"".join([c async for c in ranged]) == ALL_BYTES[5:55]

    async def test_download_if_match_with_a_stale_etag_fails(self, backend: Storage) -> None:
        """download and download_stream (whole, ranged, empty-ranged) with a stale ETag raise
        PreconditionFailedError naming the key, returning no bytes."""
        await backend.upload("r-cas", b"one")
        stale = (await backend.head("r-cas")).etag
        assert stale
        await backend.upload("r-cas", b"two!")
        reads: list[dict[str, Any]] = [{}, {"start": 1, "end": 3}, {"start": 2, "end": 2}]
        for rng in reads:
            with pytest.raises(PreconditionFailedError) as info:
                await backend.download("r-cas", if_match=stale, **rng)
            assert info.value.key == "r-cas"
            received: list[bytes] = []
            with pytest.raises(PreconditionFailedError):
                await collect(backend.download_stream("r-cas", if_match=stale, **rng), received)
            assert received == []
        assert await backend.download("r-cas") == b"two!"

    async def test_download_if_match_on_a_missing_key_fails_clearly(self, backend: Storage) -> None:
        """download/download_stream with if_match on a key with no object raise
        PreconditionFailedError saying there is no object to match."""
        await backend.upload("other", b"x")
        etag = (await backend.head("other")).etag
        assert etag
        with pytest.raises(PreconditionFailedError, match="no object") as info:
            await backend.download("ghost", if_match=etag)
        assert info.value.key == "ghost"
        with pytest.raises(PreconditionFailedError, match="no object"):
            await backend.download("ghost", start=1, end=1, if_match=etag)
        with pytest.raises(PreconditionFailedError, match="no object"):
            await collect(backend.download_stream("ghost", if_match=etag))

    async def test_download_if_match_argument_is_checked(self, backend: Storage) -> None:
        """An empty or '*' if_match on a read is refused before any call."""
        for bad in ("", '""', "*"):
            with pytest.raises(InvalidArgumentError):
                await backend.download("k", if_match=bad)
            with pytest.raises(InvalidArgumentError):
                await collect(backend.download_stream("k", if_match=bad))

    async def test_concurrent_read_modify_write_with_if_match_loses_no_update(
        self, backend: Storage
    ) -> None:
        """20 concurrent increments of a JSON counter, retrying on PreconditionFailedError,
        end at exactly 20."""
        await backend.upload("counter.json", b'{"n": 0}')
        results = await asyncio.gather(
            *(increment_counter(backend, "counter.json") for _ in range(20))
        )
        assert sorted(results) == list(range(1, 21))
        assert json.loads(await backend.download("counter.json")) == {"n": 20}

    # ---------------------------------------------------------- presigned URLs

    async def test_presigned_get_url_downloads_the_object(self, backend: Storage) -> None:
        """A presigned GET URL fetched with plain HTTP returns the object."""
        if self.lacks("presigned_url"):
            with pytest.raises(FeatureNotSupportedError):
                await backend.presigned_url("p.txt")
            return
        key = "pre signed/ünï+%.txt"
        await backend.upload(key, b"signed content")
        url = await backend.presigned_url(key, expires_in=300)
        resp = await self.http("GET", url)
        assert resp.status_code == 200, resp.text
        assert resp.content == b"signed content"

    async def test_presigned_put_url_uploads_the_object(self, backend: Storage) -> None:
        """A presigned PUT URL lets a plain HTTP client upload the object."""
        if self.lacks("presigned_url"):
            with pytest.raises(FeatureNotSupportedError):
                await backend.presigned_url("p.txt", method="PUT")
            return
        url = await backend.presigned_url(
            "up/load.bin", expires_in=300, method="PUT", content_type="application/x-test"
        )
        headers = {"Content-Type": "application/x-test", "x-ms-blob-type": "BlockBlob"}
        resp = await self.http("PUT", url, content=b"uploaded!", headers=headers)
        assert resp.status_code in (200, 201), resp.text
        assert await backend.download("up/load.bin") == b"uploaded!"

    @pytest.mark.parametrize("expires_in", [0, -5, 7 * 24 * 3600 + 1])
    async def test_presigned_url_rejects_bad_expiry(
        self, backend: Storage, expires_in: int
    ) -> None:
        """expires_in must be between 1 second and 7 days (InvalidArgumentError)."""
        with pytest.raises(InvalidArgumentError, match="expires_in"):
            await backend.presigned_url("k", expires_in=expires_in)

    async def test_presigned_url_rejects_unknown_method(self, backend: Storage) -> None:
        """Only GET and PUT can be presigned."""
        with pytest.raises(FeatureNotSupportedError, match="'GET' or 'PUT'"):
            await backend.presigned_url("k", method="DELETE")  # type: ignore[arg-type]

    # -------------------------------------------------------------- lifecycle

    async def test_closed_backend_refuses_every_operation(self, backend: Storage) -> None:
        """After close(), every operation raises BackendClosedError; close() again is harmless."""
        await backend.upload("k", b"v")
        await backend.close()
        await backend.close()
        calls: list[Any] = [
            backend.upload("k", b"v"),
            backend.download("k"),
            backend.head("k"),
            backend.exists("k"),
            backend.delete("k"),
            backend.list(),
            backend.copy("k", "k2"),
            backend.move("k", "k2"),
            backend.presigned_url("k"),
            backend.health_check(),
            backend.upload_stream("k", agen(b"x")),
        ]
        for call in calls:
            with pytest.raises(BackendClosedError, match="closed"):
                await call
        with pytest.raises(BackendClosedError):
            _ = [c async for c in backend.download_stream("k")]
        with pytest.raises(BackendClosedError):
            _ = [i async for i in backend.iter()]

    async def test_async_with_closes_the_backend(self, backend: Storage) -> None:
        """Leaving ``async with`` closes the backend."""
        async with backend as entered:
            assert entered is backend
            await backend.upload("k", b"v")
        assert backend.closed
        with pytest.raises(BackendClosedError):
            await backend.download("k")

    async def test_health_check_is_true_when_reachable(self, backend: Storage) -> None:
        """health_check returns True against a working service."""
        assert await backend.health_check() is True

    async def test_fifty_concurrent_uploads_of_different_keys(self, backend: Storage) -> None:
        """50 tasks uploading different keys at once all land intact."""
        payloads = {f"conc/{i:02d}": os.urandom(1000 + i) for i in range(50)}
        await asyncio.gather(*(backend.upload(k, v) for k, v in payloads.items()))
        assert await backend.list(prefix="conc/") == sorted(payloads)
        got = await asyncio.gather(*(backend.download(k) for k in payloads))
        assert got == list(payloads.values())

    async def test_repr_shows_provider_and_no_secret(self, backend: Storage) -> None:
        """repr names the provider and never contains a credential."""
        text = repr(backend)
        assert backend.provider in text
        for value in self.secrets_in_use:
            assert value not in text

    async def test_errors_do_not_leak_secrets(self, backend: Storage) -> None:
        """A not-found error message holds no credential."""
        with pytest.raises(ObjectNotFoundError) as info:
            await backend.download("no-such-key")
        assert "no-such-key" in str(info.value)
        for value in self.secrets_in_use:
            assert value not in str(info.value) and value not in repr(info.value)
