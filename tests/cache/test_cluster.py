"""The cache on a real Redis Cluster (3 primaries + 3 replicas): the whole cache contract,
multi-key operations across slots, pipelines refused clearly when they span slots, and
the KV contract over a cluster cache."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection

from cloudrift.cache import Cache, get_cache
from cloudrift.cache._redis import translate_errors
from cloudrift.cache.azure_redis import AzureRedisCache
from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import (
    CacheArgumentError,
    CacheConnectionError,
    CacheError,
    CacheResponseError,
    ConfigurationError,
)
from cloudrift.core.redis import hash_tag, key_slot
from cloudrift.kv import KVStore, get_kv
from tests.clock import FakeClock
from tests.conformance.cache import CacheConformance
from tests.conformance.kv import KVConformance
from tests.servers.redis import RedisServer
from tests.servers.redis_cluster import (
    RedisClusterServer,
    finish_migration,
    kill_node,
    migrate_keys,
    migrate_slots,
    restart_node,
    slot_owner,
    start_migration,
)
from tests.servers.tls import TLSFiles

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


async def test_tls_cluster_reaches_every_primary_over_tls(
    redis_cluster_tls: RedisClusterServer, tls_files: TLSFiles
) -> None:
    """A rediss:// URL with cluster=True discovers every primary and talks TLS to each."""
    cache = get_cache(
        "redis",
        url=redis_cluster_tls.url.replace("redis://", "rediss://"),
        cluster=True,
        ssl_ca_certs=str(tls_files.ca_cert),
    )
    try:
        await cache.mset({k: k for k in SPREAD})
        assert await cache.mget(SPREAD) == [k.encode() for k in SPREAD]
        native = await cache.native()
        used = [c for n in native.get_primaries() for c in n._connections]
        assert len({c.port for c in used}) == 3
        assert all(isinstance(c, SSLConnection) for c in used)
    finally:
        await cache.close()


async def test_tls_cluster_with_an_untrusted_certificate_raises_cache_connection_error(
    redis_cluster_tls: RedisClusterServer,
) -> None:
    """Without the CA that signed the nodes' certificates, cluster=True over TLS fails
    with CacheConnectionError (verification is on by default)."""
    cache = get_cache(
        "redis",
        host=redis_cluster_tls.host,
        port=redis_cluster_tls.port,
        cluster=True,
        ssl=True,
        max_attempts=1,
    )
    try:
        with pytest.raises(CacheConnectionError, match=r"(?i)certificate"):
            await cache.get("k")
    finally:
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
    with pytest.raises(CacheArgumentError, match=r"hash tag.*\{user:1\}.*transaction=False"):
        async with cache.pipeline() as pipe:
            pipe.set("a", b"1").set("b", b"2")
    assert await cache.mget(["a", "b"]) == [None, None]  # nothing was sent


async def test_non_transactional_pipeline_spans_every_primary(cache: Cache) -> None:
    """pipeline(transaction=False) on a cluster takes keys of every primary, results in
    the order queued."""
    async with cache.pipeline(transaction=False) as pipe:
        for k in SPREAD:
            pipe.set(k, k).incr(f"{k}:n")
    assert pipe.results == [True, 1] * len(SPREAD)
    assert await cache.mget(SPREAD) == [k.encode() for k in SPREAD]


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


# ------------------------------------------------------------------ failover


async def test_killed_primary_fails_over_and_traffic_resumes(
    redis_cluster: RedisClusterServer,
) -> None:
    """20 tasks doing set/get while a primary is SIGKILLed: only cloudrift cache errors,
    traffic resumes once the replica is promoted, and no acknowledged write is undone."""
    victim = redis_cluster.primaries()[0]
    cache = get_cache("redis", url=redis_cluster.url, cluster=True, socket_timeout=1.0)
    loop = asyncio.get_running_loop()
    failures: list[tuple[float, BaseException]] = []
    acked: dict[str, int] = {}  # key -> last value whose set() returned
    tried: dict[str, int] = {}  # key -> last value sent
    killed_at = 0.0
    last_failure = 0.0
    stop = asyncio.Event()

    async def worker(n: int) -> int:
        done, i = 0, 0
        while not stop.is_set():
            key = f"w{n}:{i % 10}"
            i += 1
            tried[key] = i
            try:
                await cache.set(key, str(i))
                acked[key] = i
                got = await cache.get(key)
                assert got is not None and int(got) >= i
                done += 1
            except CacheError as exc:
                failures.append((loop.time(), exc))
        return done

    try:
        await cache.ping()
        tasks = [asyncio.create_task(worker(n)) for n in range(20)]
        await asyncio.sleep(0.5)
        killed_at = loop.time()
        kill_node(victim)
        deadline = killed_at + 20
        # Recovered: a full second without any failure after the kill.
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
            last_failure = max((t for t, _ in failures), default=killed_at)
            if loop.time() - max(last_failure, killed_at) > 1.0 and failures:
                break
        stop.set()
        done = sum(await asyncio.gather(*tasks))
        kinds = sorted({type(e).__name__ for _, e in failures})
        recovery = last_failure - killed_at
        print(
            f"\nfailover: {done} ops ok, {len(failures)} failed ({', '.join(kinds)}), "
            f"recovered {recovery:.2f}s after the kill"
        )
        assert failures, "the kill was not noticed: the test did not exercise a failover"
        assert all(isinstance(e, CacheConnectionError | CacheResponseError) for _, e in failures)
        assert recovery < 10, f"operations failed for {recovery:.1f}s after the kill"
        # Nothing acknowledged was undone: each key holds its last acked value or a later one.
        values = await cache.mget(list(acked))
        regressed = [
            k for k, v in zip(acked, values, strict=True) if v is None or int(v) < acked[k]
        ]
        assert not regressed, f"acknowledged writes lost: {regressed[:5]}"
    finally:
        stop.set()
        await cache.close()
        restart_node(redis_cluster, victim)


# ------------------------------------------------------------ resharding


def _tag_in_slot(slot: int) -> str:
    """A hash tag whose keys land in ``slot``."""
    return next(t for i in range(10**6) if key_slot(t := f"{{r{i}}}") == slot)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_ask_redirect_sends_asking_on_the_connection_of_the_command(
    tls: bool, request: pytest.FixtureRequest
) -> None:
    """A key already MIGRATEd out of a migrating slot is read and written through ASK
    while the importing node has several idle connections (redis-py alone sends ASKING on
    one and the command on another: the node answers MOVED, ending in TTL exhausted)."""
    if tls:
        cluster: RedisClusterServer = request.getfixturevalue("redis_cluster_tls")
        ca = str(request.getfixturevalue("tls_files").ca_cert)
        cache = get_cache(
            "redis", host=cluster.host, port=cluster.port, cluster=True, ssl=True, ssl_ca_certs=ca
        )
    else:
        cluster = request.getfixturevalue("redis_cluster")
        cache = get_cache("redis", url=cluster.url, cluster=True)
    slot = 3000
    tag = _tag_in_slot(slot)
    try:
        await cache.set(f"{tag}:moved", b"v1")
        owner = slot_owner(cluster, slot)
        dest = next(n for n in cluster.primaries() if n is not owner)
        src = start_migration(cluster, slot, dest)
        migrate_keys(src, dest, [f"{tag}:moved".encode()])
        # Idle connections on the importing node: several commands to it at once.
        on_dest = next(s for s in (0, 8000, 16383) if slot_owner(cluster, s) is dest)
        other = _tag_in_slot(on_dest)
        await asyncio.gather(*(cache.get(f"{other}:{i}") for i in range(4)))
        for _ in range(3):
            assert await cache.get(f"{tag}:moved") == b"v1"
        assert await cache.set(f"{tag}:moved", b"v2") is True
        assert await cache.get(f"{tag}:moved") == b"v2"
        finish_migration(cluster, slot, src, dest, 0)
        assert await cache.get(f"{tag}:moved") == b"v2"
    finally:
        await cache.close()


async def test_resharding_under_traffic_fails_no_operation(
    redis_cluster: RedisClusterServer,
) -> None:
    """Three slots moved to another primary while 10 tasks set, get and incr their keys
    (ASK redirects while keys move, then MOVED): no operation fails, nothing is lost."""
    slots = [9000, 9001, 9002]
    tags = [_tag_in_slot(s) for s in slots]
    keys = [f"{tag}:{i}" for tag in tags for i in range(20)]
    source = slot_owner(redis_cluster, slots[0])
    assert all(slot_owner(redis_cluster, s) is source for s in slots[1:])
    dest = next(n for n in redis_cluster.primaries() if n is not source)
    cache = get_cache("redis", url=redis_cluster.url, cluster=True)
    stop = asyncio.Event()
    ops = incrs = 0

    async def worker(n: int) -> None:
        nonlocal ops, incrs
        i = 0
        while not stop.is_set():
            key = keys[(n * 7 + i) % len(keys)]
            i += 1
            await cache.set(key, key)
            assert await cache.get(key) == key.encode()
            await cache.incr(f"{tags[n % 3]}:count")
            ops, incrs = ops + 2, incrs + 1

    try:
        await cache.mset({k: k for k in keys})
        tasks = [asyncio.create_task(worker(n)) for n in range(10)]
        await asyncio.to_thread(migrate_slots, redis_cluster, slots, dest, 0.02)
        await asyncio.sleep(0.2)  # keep going after the final MOVED
        stop.set()
        await asyncio.gather(*tasks)  # any failed operation raises here
        assert all(slot_owner(redis_cluster, s) is dest for s in slots)
        assert await cache.mget(keys) == [k.encode() for k in keys]
        counts = await cache.mget([f"{tag}:count" for tag in tags])
        assert sum(int(c or 0) for c in counts) == incrs
        print(f"\nresharding: {ops + incrs} operations, none failed")
    finally:
        stop.set()
        await cache.close()


# ------------------------------------------------------------ managed flavours


class _FakeEntraCredential:
    """Test double of an async azure-identity credential: the real AccessToken type,
    ``token-1``, ``token-2``... each valid an hour from the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.calls = clock, 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(f"token-{self.calls}", int(self.clock() + 3600))


def _set_password_on_every_node(cluster: RedisClusterServer, user: str, password: str) -> None:
    # ACL users are per node (not replicated in a cluster): set it on each.
    for node in cluster.running():
        with node.client() as c:
            c.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", "~*", "+@all")


async def test_azure_entra_on_a_cluster_refreshes_every_nodes_connections(
    redis_cluster: RedisClusterServer,
) -> None:
    """azure_redis with cluster=True: every node authenticates with the Entra token, and a
    refreshed token reaches every node (idle connections dropped, reconnects use it)."""
    clock = FakeClock()
    credential = _FakeEntraCredential(clock)
    _set_password_on_every_node(redis_cluster, "app", "token-1")
    cache = get_cache(
        "azure_redis",
        "from_credential",
        host=redis_cluster.host,
        port=redis_cluster.port,
        username="app",
        credential=credential,
        clock=clock,
        ssl=False,
        cluster=True,
    )
    assert isinstance(cache, AzureRedisCache)
    waits: list[float] = []
    gate: asyncio.Queue[None] = asyncio.Queue()

    async def controlled_sleep(seconds: float) -> None:
        waits.append(seconds)
        await gate.get()
        clock.now += seconds

    cache._sleep = controlled_sleep  # type: ignore[method-assign]
    try:
        async with cache:
            await cache.mset({k: b"v" for k in SPREAD})  # every primary, with token-1
            for _ in range(400):
                if waits:
                    break
                await asyncio.sleep(0.005)
            _set_password_on_every_node(redis_cluster, "app", "token-2")  # token-1 refused
            gate.put_nowait(None)
            for _ in range(400):
                if len(waits) == 2:
                    break
                await asyncio.sleep(0.005)
            assert cache.token_provider is not None and cache.token_provider.mint_count == 2
            native = await cache.native()
            idle = [c for n in native.get_nodes() for c in n._free if c.is_connected]
            assert idle == []  # every node's idle connections were dropped
            assert await cache.mget(SPREAD) == [b"v"] * len(SPREAD)  # reconnected: token-2
    finally:
        for node in redis_cluster.running():
            with node.client() as c:
                c.execute_command("ACL", "DELUSER", "app")


def test_elasticache_and_azure_take_the_cluster_option() -> None:
    """cluster=True is accepted by elasticache and azure_redis (and refused with db != 0)."""
    ec = get_cache(
        "elasticache",
        host="clustercfg.app.abc.use1.cache.amazonaws.com",
        auth_token="t",
        cluster=True,
    )
    az = get_cache("azure_redis", host="app.redis.cache.windows.net", access_key="k", cluster=True)
    assert ec._options.cluster and az._options.cluster  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="only database 0"):
        get_cache("elasticache", host="h", auth_token="t", cluster=True, db=1)


async def test_cluster_true_on_a_plain_server_raises_cache_connection_error(
    redis: RedisServer,
) -> None:
    """cluster=True pointed at a non-cluster redis-server fails with CacheConnectionError."""
    cache = get_cache("redis", url=redis.url, cluster=True)
    with pytest.raises(CacheConnectionError, match="cluster"):
        await cache.get("k")
    await cache.close()


async def test_health_check_asks_every_primary(redis_cluster: RedisClusterServer) -> None:
    """ping() reaches every primary: one that does not answer makes health_check() False."""
    cache = get_cache(
        "redis", url=redis_cluster.url, cluster=True, socket_timeout=0.2, max_attempts=1
    )
    try:
        assert await cache.health_check() is True
        stuck = redis_cluster.primaries()[-1]  # not the node the client starts from
        # Shorter than the node timeout, so the cluster does not fail it over.
        sleeper = asyncio.create_task(
            asyncio.to_thread(_debug_sleep, stuck, redis_cluster.host, 0.6)
        )
        await asyncio.sleep(0.1)
        assert await cache.health_check() is False
        await sleeper
        assert await cache.health_check() is True  # answering again
    finally:
        await cache.close()


def _debug_sleep(node: Any, host: str, seconds: float) -> None:
    with node.client() as c:
        c.execute_command("DEBUG", "SLEEP", seconds)


def test_settings_env_and_yaml_accept_cluster(tmp_path: Path) -> None:
    """``CLOUDRIFT_CACHE__CLUSTER=true`` (env) and ``cluster: true`` (YAML) become cluster=True."""
    env = tmp_path / ".env"
    env.write_text(
        "CLOUDRIFT_CACHE__PROVIDER=redis\nCLOUDRIFT_CACHE__URL=redis://h:7000\n"
        "CLOUDRIFT_CACHE__CLUSTER=true\n"
    )
    assert CloudriftSettings(_env_file=env).backend("cache").factory_options() == {
        "url": "redis://h:7000",
        "cluster": True,
    }
    yaml_file = tmp_path / "cloudrift.yaml"
    yaml_file.write_text("cache:\n  provider: redis\n  url: redis://h:7000\n  cluster: true\n")
    settings = CloudriftSettings.from_yaml(yaml_file)
    assert settings.backend("cache").factory_options()["cluster"] is True


def test_redis_py_connection_race_becomes_cache_connection_error() -> None:
    """An AttributeError raised inside redis-py (a connection closed under a command by a
    slot-map refresh) becomes CacheConnectionError; one from elsewhere is not hidden."""
    inside_redis = os.path.join(os.sep, "site-packages", "redis", "connection.py")
    namespace: dict[str, Any] = {}
    exec(compile("def send(writer):\n    writer.writelines([])\n", inside_redis, "exec"), namespace)
    with pytest.raises(CacheConnectionError, match="slot map"), translate_errors([]):
        namespace["send"](None)
    with pytest.raises(AttributeError), translate_errors([]):
        namespace["send"].__code__.no_such_attribute  # noqa: B018 - our own bug stays visible
