"""The memory cache passes the whole cache contract, with a fake clock for TTLs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cloudrift.cache import Cache, get_cache
from cloudrift.cache.memory import MemoryCache
from cloudrift.core.exceptions import ConfigurationError
from tests.clock import FakeClock
from tests.conformance.cache import Advance, CacheConformance


class TestMemoryCache(CacheConformance):
    """Conformance of get_cache("memory")."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        """The fake clock driving this backend's TTLs."""
        return FakeClock()

    @pytest.fixture
    def advance(self, clock: FakeClock) -> Advance:
        """Time passes by moving the fake clock, not by sleeping."""
        return clock.advance

    @pytest.fixture
    async def backend(self, clock: FakeClock) -> AsyncIterator[Cache]:
        """A fresh memory cache on the fake clock."""
        cache = MemoryCache(clock=clock)
        yield cache
        await cache.close()


async def test_get_cache_memory_needs_no_options() -> None:
    """get_cache("memory") builds a working cache with no auth method or options."""
    async with get_cache("memory") as cache:
        await cache.set("k", "v")
        assert await cache.get("k") == b"v"
        assert repr(cache) == "<MemoryCache provider='memory' location='in-process'>"


async def test_memory_instances_do_not_share_data() -> None:
    """Two memory caches are independent."""
    a, b = get_cache("memory"), get_cache("memory")
    await a.set("k", b"v")
    assert await b.get("k") is None


def test_unknown_provider_lists_the_valid_ones_and_suggests() -> None:
    """A misspelled provider raises ConfigurationError naming every provider and the closest."""
    names = "azure_redis, elasticache, memory, memorystore, redis"
    with pytest.raises(ConfigurationError, match=names) as info:
        get_cache("redsi")
    assert "Did you mean 'redis'?" in str(info.value)


def test_memory_refuses_an_auth_method() -> None:
    """get_cache("memory", "from_url") is a mistake and says so."""
    with pytest.raises(ConfigurationError, match="takes no auth_method"):
        get_cache("memory", "from_url")
