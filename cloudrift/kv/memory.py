"""In-process KV store (JSON text in a dict), for dev and tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from cloudrift.kv.base import KVStore


class MemoryKV(KVStore):
    """A KV store in this process; ``clock`` (seconds) drives TTL expiry."""

    provider = "memory"
    backend_name = "memory kv store"

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self._clock = clock or time.monotonic
        self._data: dict[str, tuple[str, float | None]] = {}

    def _location(self) -> str:
        return "in-process"

    async def _aclose(self) -> None:
        self._data.clear()

    async def _set(self, key: str, text: str, ttl: float | None) -> None:
        self._data[key] = (text, None if ttl is None else self._clock() + ttl)

    async def _get(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        text, expires = item
        if expires is not None and self._clock() >= expires:
            del self._data[key]
            return None
        return text

    async def _delete(self, key: str) -> bool:
        return await self._get(key) is not None and self._data.pop(key, None) is not None


__all__ = ["MemoryKV"]
