"""The memory provider passes the whole storage conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cloudrift.storage import Storage, get_storage
from cloudrift.storage.memory import MemoryStorage
from tests.conformance.storage import StorageConformance


class TestMemoryStorage(StorageConformance):
    """Conformance harness: memory needs no stand-in and cannot presign."""

    unsupported = frozenset({"presigned_url"})

    @pytest.fixture
    async def backend(self) -> AsyncIterator[Storage]:
        """A fresh memory backend, closed afterwards."""
        storage = get_storage("memory")
        try:
            yield storage
        finally:
            await storage.close()


def test_memory_needs_no_options() -> None:
    """get_storage('memory') builds a MemoryStorage with zero configuration."""
    assert isinstance(get_storage("memory"), MemoryStorage)


def test_two_memory_backends_do_not_share_objects() -> None:
    """Each memory backend holds its own objects."""
    a, b = MemoryStorage(), MemoryStorage()
    assert a._objects is not b._objects


async def test_download_stream_hands_on_provider_chunks_without_copying() -> None:
    """A provider chunk that already fits chunk_size reaches the caller as the same object."""
    storage = MemoryStorage()
    await storage.upload("k", b"x" * 1000)
    stored = storage._objects["k"].data
    chunks = [chunk async for chunk in storage.download_stream("k", chunk_size=1000)]
    assert len(chunks) == 1 and chunks[0] is stored
    await storage.close()
