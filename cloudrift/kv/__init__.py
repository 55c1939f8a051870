"""KV: small JSON records with optional TTL, on memory, a local file, or any cache.

``get_kv("memory")``, ``get_kv("file", path="data/kv.json")``,
``get_kv("cache", cache=get_cache("redis", "from_url", url=...))``.
"""

from __future__ import annotations

from typing import Any

from cloudrift.core.factory import ProviderSpec, build_provider
from cloudrift.kv.base import KVEntry, KVStore
from cloudrift.kv.cache import CacheKV
from cloudrift.kv.file import FileKV
from cloudrift.kv.memory import MemoryKV

PROVIDERS: dict[str, ProviderSpec] = {
    "memory": ProviderSpec("cloudrift.kv.memory", "MemoryKV"),
    "file": ProviderSpec("cloudrift.kv.file", "FileKV"),
    "cache": ProviderSpec("cloudrift.kv.cache", "CacheKV"),
}


def get_kv(provider: str, **options: Any) -> KVStore:
    """Build the KV store ``provider``; unknown providers or options raise ConfigurationError."""
    store: KVStore = build_provider("kv", provider, PROVIDERS, options)
    return store


__all__ = ["PROVIDERS", "CacheKV", "FileKV", "KVEntry", "KVStore", "MemoryKV", "get_kv"]
