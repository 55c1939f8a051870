"""A KV store over any cache backend (Redis in production, memory in tests).

A record is stored as the string ``"\x01" + version + "\x01" + JSON text`` (JSON text
never starts with ``\x01``; a plain-JSON record written before versions existed still
reads, its version derived from its content). Conditional writes run through the
cache's compare-and-set (one Lua script on Redis, one step in-process on memory).
"""

from __future__ import annotations

import math
from typing import Any

from cloudrift.cache.base import Cache
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.operation import BackendDescription
from cloudrift.kv.base import ABSENT, KVStore, content_version

_MARK = "\x01"


class CacheKV(KVStore):
    """JSON records stored as UTF-8 strings under ``prefix + key`` in ``cache``.

    The cache handed in is left open on close() unless ``close_cache=True``.
    """

    provider = "cache"
    backend_name = "cache kv store"

    def __init__(
        self, *, cache: Cache | None = None, prefix: str = "kv:", close_cache: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(cache, Cache):
            raise ConfigurationError(
                "the 'cache' KV provider needs cache= a cloudrift cache, e.g. "
                'get_cache("redis", "from_url", url=...)'
            )
        if not isinstance(prefix, str):
            raise ConfigurationError("prefix must be a str")
        self.cache = cache
        self.prefix = prefix
        self._close_cache = close_cache

    def _location(self) -> str:
        return f"{self.cache.provider}:{self.cache._location()}/{self.prefix}*"

    async def _native_client(self) -> Any:
        """``await kv.native()``: the cache's native client (FeatureNotSupportedError for
        the memory cache)."""
        return await self.cache.native()

    def _describe(self) -> BackendDescription:
        return self.cache.describe()

    async def _aclose(self) -> None:
        if self._close_cache:
            await self.cache.close()

    async def _set(self, key: str, text: str, ttl: float | None, version: str) -> None:
        await self.cache.set(self.prefix + key, f"{_MARK}{version}{_MARK}{text}", ttl=ttl)

    async def _set_if(
        self, key: str, text: str | None, ttl: float | None, version: str, expect: str
    ) -> bool:
        if expect == ABSENT:
            prefix = None
        elif expect.startswith("legacy-"):  # a record from before versions: its content
            found = await self._get_entry(key)
            if found is None or found[1] != expect:
                return False
            prefix = found[0].encode("utf-8")
        else:
            prefix = f"{_MARK}{expect}{_MARK}".encode()
        value = None if text is None else f"{_MARK}{version}{_MARK}{text}".encode()
        ttl_ms = None if ttl is None or text is None else max(1, math.ceil(ttl * 1000))
        return await self.cache._cas(self.prefix + key, prefix, value, ttl_ms)

    async def _get_entry(self, key: str) -> tuple[str, str] | None:
        raw = await self.cache.get(self.prefix + key)
        if raw is None:
            return None
        stored = raw.decode("utf-8")
        if stored.startswith(_MARK):
            version, _, text = stored[1:].partition(_MARK)
            return text, version
        return stored, content_version(stored)

    async def _delete(self, key: str) -> bool:
        return await self.cache.delete(self.prefix + key)

    async def _health(self) -> bool:
        return await self.cache.health_check()


__all__ = ["CacheKV"]
