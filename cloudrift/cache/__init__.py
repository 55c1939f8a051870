"""Cache: Redis (self-hosted, ElastiCache, Azure Cache for Redis, Memorystore) and in-memory.

``get_cache(provider, auth_method, **options)`` builds a backend; every provider has
the same operations (:class:`Cache`). No SDK is imported until a provider is chosen.
"""

from __future__ import annotations

from typing import Any

from cloudrift.cache.base import Cache, CacheValue, Lock, Pipeline
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.factory import ProviderSpec, build_provider

PROVIDERS: dict[str, ProviderSpec] = {
    "memory": ProviderSpec("cloudrift.cache.memory", "MemoryCache"),
    "redis": ProviderSpec("cloudrift.cache.redis", "RedisCache", "cache", ("redis",)),
    "elasticache": ProviderSpec(
        "cloudrift.cache.elasticache", "ElastiCache", "aws", ("redis", "botocore")
    ),
    "azure_redis": ProviderSpec(
        "cloudrift.cache.azure_redis", "AzureRedisCache", "azure", ("redis", "azure.identity")
    ),
    "memorystore": ProviderSpec(
        "cloudrift.cache.memorystore", "MemorystoreCache", "gcp", ("redis", "gcloud.aio.auth")
    ),
}


def get_cache(provider: str, auth_method: str | None = None, **options: Any) -> Cache:
    """Build the cache backend ``provider`` authenticated with ``auth_method``.

    ``get_cache("memory")`` needs nothing. Redis flavours take the auth method the
    seed names (``"from_url"``, ``"from_credentials"``, ``"from_auth_token"``,
    ``"from_iam_auth"``, ``"from_access_key"``, ``"from_managed_identity"``...);
    unknown providers, methods or options raise ConfigurationError.
    """
    if auth_method is not None:
        if provider == "memory":
            raise ConfigurationError(
                f"the 'memory' cache provider takes no auth_method (got {auth_method!r}); "
                'use get_cache("memory")'
            )
        options = {"auth_method": auth_method, **options}
    backend: Cache = build_provider("cache", provider, PROVIDERS, options)
    return backend


__all__ = ["PROVIDERS", "Cache", "CacheValue", "Lock", "Pipeline", "get_cache"]
