"""A KV store over any cache backend (Redis in production, memory in tests)."""

from __future__ import annotations

from typing import Any

from cloudrift.cache.base import Cache
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.operation import BackendDescription
from cloudrift.kv.base import KVStore


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

    async def _set(self, key: str, text: str, ttl: float | None) -> None:
        await self.cache.set(self.prefix + key, text, ttl=ttl)

    async def _get(self, key: str) -> str | None:
        raw = await self.cache.get(self.prefix + key)
        return None if raw is None else raw.decode("utf-8")

    async def _delete(self, key: str) -> bool:
        return await self.cache.delete(self.prefix + key)

    async def _health(self) -> bool:
        return await self.cache.health_check()


__all__ = ["CacheKV"]
