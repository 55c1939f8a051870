"""In-memory storage: a real backend (it passes the whole conformance suite) for dev and tests.

Objects live in a dict owned by the backend instance and vanish with it. Presigned URLs
are not available (there is no server to fetch them from).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from cloudrift.core.exceptions import (
    InvalidRangeError,
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
)
from cloudrift.storage.base import ObjectInfo, PresignMethod, Storage


@dataclass(frozen=True)
class _Stored:
    data: bytes
    info: ObjectInfo


class MemoryStorage(Storage):
    """Objects in a dict; nothing persists, nothing to configure."""

    provider = "memory"
    backend_name = "memory storage"

    def __init__(self) -> None:
        super().__init__()
        self._objects: dict[str, _Stored] = {}

    def _location(self) -> str:
        return f"objects={len(self._objects)}"

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
        # No await in here: the check and the write are one step for every task.
        if if_not_exists and key in self._objects:
            raise ObjectExistsError(key)
        if if_match is not None:
            self._check_match(key, if_match)
        blob = bytes(data)
        info = ObjectInfo(
            key=key,
            size=len(blob),
            etag=hashlib.md5(blob, usedforsecurity=False).hexdigest(),
            content_type=content_type,
            last_modified=datetime.now(UTC),
            metadata=dict(metadata),
        )
        self._objects[key] = _Stored(blob, info)

    def _stored(self, key: str) -> _Stored:
        try:
            return self._objects[key]
        except KeyError:
            raise ObjectNotFoundError(key) from None

    async def _get(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> bytes:
        stored = self._stored(key)
        if if_match is not None and stored.info.etag != if_match:
            raise PreconditionFailedError(key)
        data = stored.data
        if start >= len(data) and (start > 0 or not data):
            raise InvalidRangeError(f"range start {start} is past the end of {key!r}")
        return data[start:end]

    async def _get_stream(
        self, key: str, start: int, end: int | None, chunk_size: int, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        data = await self._get(key, start, end, if_match=if_match)
        for i in range(0, len(data), chunk_size):
            yield data[i : i + chunk_size]

    async def _head(self, key: str) -> ObjectInfo:
        return self._stored(key).info

    async def _exists(self, key: str) -> bool:
        return key in self._objects

    async def _delete(self, key: str) -> None:
        self._objects.pop(key, None)

    def _check_match(self, key: str, etag: str) -> None:
        stored = self._objects.get(key)
        if stored is None:
            raise PreconditionFailedError(
                key, f"no object {key!r} to match (if_match needs an existing object)"
            )
        if stored.info.etag != etag:
            raise PreconditionFailedError(key)

    async def _delete_if_match(self, key: str, etag: str) -> None:
        self._check_match(key, etag)
        del self._objects[key]

    async def _iter(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        keys = sorted((k for k in self._objects if k.startswith(prefix)), key=str.encode)
        for key in keys:
            stored = self._objects.get(key)
            if stored is not None:
                yield stored.info

    async def _copy(self, src: str, dst: str) -> None:
        stored = self._stored(src)
        info = ObjectInfo(
            key=dst,
            size=stored.info.size,
            etag=stored.info.etag,
            content_type=stored.info.content_type,
            last_modified=datetime.now(UTC),
            metadata=dict(stored.info.metadata),
        )
        self._objects[dst] = _Stored(stored.data, info)

    async def _presign(
        self, key: str, expires_in: int, method: PresignMethod, content_type: str | None
    ) -> str:
        from cloudrift.core.exceptions import FeatureNotSupportedError

        raise FeatureNotSupportedError(
            "the 'memory' storage provider cannot issue presigned URLs (nothing serves them); "
            "use the 'local' provider with base_url for signed URLs in development"
        )

    async def _aclose(self) -> None:
        self._objects.clear()


__all__ = ["MemoryStorage"]
