"""The cache on a real Redis Cluster (3 primaries + 3 replicas): the whole cache contract,
multi-key operations across slots, pipelines refused clearly when they span slots, and
the KV contract over a cluster cache."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from cloudrift.cache import Cache, get_cache
from cloudrift.core.exceptions import CacheArgumentError, ConfigurationError
from cloudrift.core.redis import hash_tag, key_slot
from cloudrift.kv import KVStore, get_kv
from tests.conformance.cache import CacheConformance
from tests.conformance.kv import KVConformance
from tests.servers.redis_cluster import RedisClusterServer

#: Keys spread over every primary of the cluster (checked by the test that uses them).
SPREAD = [f"k{i}" for i in range(40)]


class TestRedisCluster(CacheConformance):
    """Conformance of get_cache("redis", url=..., cluster=True) on a 6-node cluster."""

    PIPELINE_TAG = "{p}:"  # a cluster pipeline is one transaction: one slot

    @pytest.fixture
    async def backend(self, redis_cluster: RedisClusterServer) -> AsyncIterator[Cache]:
        """A cluster cache started from one node's URL."""
        cache = get_cache("redis", url=redis_cluster.url, cluster=True)
        yield cache
        await cache.close()


class TestRedisClusterFromHost(CacheConformance):
    """Conformance of get_cache("redis", host=, port=, cluster=True) on the same cluster."""

    PIPELINE_TAG = "{p}:"

    @pytest.fixture
    async def backend(self, redis_cluster: RedisClusterServer) -> AsyncIterator[Cache]:
        """A cluster cache started from one node's host and port."""
        cache = get_cache("redis", host=redis_cluster.host, port=redis_cluster.port, cluster=True)
        yield cache
        await cache.close()


@pytest.fixture
async def cache(redis_cluster: RedisClusterServer) -> AsyncIterator[Cache]:
    """A cluster cache for the tests below."""
    c = get_cache("redis", url=redis_cluster.url, cluster=True)
    yield c
    await c.close()


async def test_native_client_is_a_redis_cluster(cache: Cache) -> None:
    """cluster=True builds redis.asyncio.cluster.RedisCluster, not a single-node client."""
    assert isinstance(await cache.native(), RedisCluster)


async def test_mget_and_mset_across_slots_keep_input_order(cache: Cache) -> None:
    """mset/mget over keys on every primary work, answers in the caller's order."""
    assert len({key_slot(k) * 3 // 16384 for k in SPREAD}) == 3  # all three primaries
    await cache.mset({k: k.encode() for k in SPREAD})
    wanted = [*reversed(SPREAD), "missing", SPREAD[0]]
    assert await cache.mget(wanted) == [*(k.encode() for k in reversed(SPREAD)), None, b"k0"]


async def test_mset_with_ttl_across_slots_sets_every_key_with_its_ttl(cache: Cache) -> None:
    """mset(ttl=) across slots stores every key with the TTL."""
    await cache.mset({k: b"v" for k in SPREAD}, ttl=60)
    assert await cache.mget(SPREAD) == [b"v"] * len(SPREAD)
    ttls = [await cache.ttl(k) for k in SPREAD]
    assert all(t is not None and 59 <= t <= 60 for t in ttls)


async def test_pipeline_across_slots_is_refused_naming_hash_tags(cache: Cache) -> None:
    """A pipeline whose keys are in several slots raises CacheArgumentError naming hash tags."""
    assert key_slot("a") != key_slot("b")
    with pytest.raises(CacheArgumentError, match=r"hash tag.*\{user:1\}"):
        async with cache.pipeline() as pipe:
            pipe.set("a", b"1").set("b", b"2")
    assert await cache.mget(["a", "b"]) == [None, None]  # nothing was sent


async def test_pipeline_within_one_hash_tag_is_a_transaction(cache: Cache) -> None:
    """Keys sharing a hash tag run as one transaction on their node."""
    tag = hash_tag("user:1")
    async with cache.pipeline() as pipe:
        pipe.set(f"{tag}:name", b"ada").incr(f"{tag}:visits").rpush(f"{tag}:log", b"x")
    assert pipe.results == [True, 1, 1]
    assert await cache.get(f"{tag}:name") == b"ada"


def test_hash_tag_refuses_braces() -> None:
    """hash_tag refuses a name with a brace (Redis would hash only part of it)."""
    with pytest.raises(ConfigurationError, match="brace"):
        hash_tag("a}b")


def test_cluster_with_a_database_other_than_0_is_refused() -> None:
    """cluster=True with db=3 raises ConfigurationError before any connection."""
    with pytest.raises(ConfigurationError, match="only database 0"):
        get_cache("redis", host="localhost", db=3, cluster=True)
    with pytest.raises(ConfigurationError, match="database 0"):
        get_cache("redis", url="redis://localhost:6379/3", cluster=True)
    with pytest.raises(ConfigurationError, match="unix socket"):
        get_cache("redis", url="unix:///tmp/redis.sock", cluster=True)


class TestCacheKVOnRedisCluster(KVConformance):
    """Conformance of get_kv("cache") over a cluster cache (single-key commands only)."""

    @pytest.fixture
    async def backend(self, redis_cluster: RedisClusterServer) -> AsyncIterator[KVStore]:
        """A KV store over a cluster cache it owns."""
        cache = get_cache("redis", url=redis_cluster.url, cluster=True)
        store = get_kv("cache", cache=cache, close_cache=True)
        yield store
        await store.close()
