"""In-process KV store (JSON text in a dict), for dev and tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from cloudrift.kv.base import ABSENT, KVStore


class MemoryKV(KVStore):
    """A KV store in this process; ``clock`` (seconds) drives TTL expiry."""

    provider = "memory"
    backend_name = "memory kv store"

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self._clock = clock or time.monotonic
        self._data: dict[str, tuple[str, float | None, str]] = {}

    def _location(self) -> str:
        return "in-process"

    async def _aclose(self) -> None:
        self._data.clear()

    async def _set(self, key: str, text: str, ttl: float | None, version: str) -> None:
        self._data[key] = (text, None if ttl is None else self._clock() + ttl, version)

    async def _set_if(
        self, key: str, text: str | None, ttl: float | None, version: str, expect: str
    ) -> bool:
        # No await: the check and the write are one step for every task.
        found = self._live(key)
        current = ABSENT if found is None else found[1]
        if current != expect:
            return False
        if text is None:
            del self._data[key]
        else:
            self._data[key] = (text, None if ttl is None else self._clock() + ttl, version)
        return True

    def _live(self, key: str) -> tuple[str, str] | None:
        item = self._data.get(key)
        if item is None:
            return None
        text, expires, version = item
        if expires is not None and self._clock() >= expires:
            del self._data[key]
            return None
        return text, version

    async def _get_entry(self, key: str) -> tuple[str, str] | None:
        return self._live(key)

    async def _delete(self, key: str) -> bool:
        return await self._get(key) is not None and self._data.pop(key, None) is not None


__all__ = ["MemoryKV"]
