"""Resilience on a real redis-server: dropped connections, failover READONLY, outages."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudrift.cache import get_cache
from cloudrift.core.exceptions import CacheConnectionError, CacheResponseError
from tests.servers._process import LOOPBACK
from tests.servers.cache_faults import FailoverProxy
from tests.servers.redis import RedisServer


def start_replica(
    factory: Callable[..., RedisServer], primary: RedisServer, workdir: Path
) -> RedisServer:
    """A read-only replica of ``primary``; its synced RDB file goes to ``workdir``, not the cwd."""
    return factory(extra_args=["--replicaof", LOOPBACK, str(primary.port), "--dir", str(workdir)])


async def test_connections_killed_by_the_server_are_replaced(redis: RedisServer) -> None:
    """After CLIENT KILL drops every idle pooled connection, the next command still succeeds."""
    async with get_cache("redis", "from_url", url=redis.url) as cache:
        await cache.set("k", b"v")
        with redis.client() as admin:
            killed = admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert int(killed) >= 1
        assert await cache.get("k") == b"v"


async def test_readonly_reply_after_failover_is_retried_on_the_new_primary(
    redis_server_factory: Callable[..., RedisServer],
    failover_proxy: type[FailoverProxy],
    tmp_path: Path,
) -> None:
    """A write answered with READONLY (demoted primary) is retried on a new connection and lands."""
    primary = redis_server_factory()
    replica = start_replica(redis_server_factory, primary, tmp_path)
    proxy = await failover_proxy([replica.port, primary.port]).start()
    async with get_cache("redis", "from_credentials", host=LOOPBACK, port=proxy.port) as cache:
        assert await cache.set("after-failover", b"landed") is True
    assert proxy.connections == 2  # the first (to the replica) was dropped and replaced
    with primary.client() as admin:
        assert admin.get("after-failover") == b"landed"


async def test_readonly_is_not_retried_when_retries_are_off(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    """With max_attempts=1 the READONLY reply surfaces as CacheResponseError naming it."""
    primary = redis_server_factory()
    replica = start_replica(redis_server_factory, primary, tmp_path)
    async with get_cache(
        "redis", "from_credentials", host=LOOPBACK, port=replica.port, max_attempts=1
    ) as cache:
        with pytest.raises(CacheResponseError, match="READONLY"):
            await cache.set("k", b"v")


async def test_stopped_server_raises_cache_connection_error(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """Once the server is down, commands raise CacheConnectionError and health_check is False."""
    server = redis_server_factory()
    async with get_cache("redis", "from_url", url=server.url) as cache:
        await cache.set("k", b"v")
        server.stop()
        with pytest.raises(CacheConnectionError, match="unreachable"):
            await cache.get("k")
        assert await cache.health_check() is False
        with pytest.raises(CacheConnectionError):
            await cache.ping()


async def test_cache_recovers_when_the_server_comes_back(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """After an outage the same cache object works again without being rebuilt."""
    server = redis_server_factory()
    async with get_cache("redis", "from_url", url=server.url) as cache:
        await cache.set("k", b"v")
        server.stop()
        assert await cache.health_check() is False
        server.start()
        assert await cache.health_check() is True
        await cache.set("k2", b"v2")
        assert await cache.get("k2") == b"v2"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections but never answers (a hung server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


async def test_server_that_never_answers_raises_instead_of_hanging(silent_port: int) -> None:
    """A server that accepts but never replies gives CacheConnectionError after the timeout."""
    options: dict[str, Any] = {"socket_timeout": 0.2, "socket_connect_timeout": 0.2}
    async with get_cache(
        "redis", "from_credentials", host=LOOPBACK, port=silent_port, max_attempts=2, **options
    ) as cache:
        with pytest.raises(CacheConnectionError):
            await cache.get("k")
        assert await cache.health_check() is False


async def test_pipeline_answered_with_readonly_is_retried_on_the_new_primary(
    redis_server_factory: Callable[..., RedisServer],
    failover_proxy: type[FailoverProxy],
    tmp_path: Path,
) -> None:
    """A MULTI/EXEC refused by a demoted primary is retried whole on the new primary."""
    primary = redis_server_factory()
    replica = start_replica(redis_server_factory, primary, tmp_path)
    proxy = await failover_proxy([replica.port, primary.port]).start()
    async with get_cache("redis", "from_credentials", host=LOOPBACK, port=proxy.port) as cache:
        async with cache.pipeline() as pipe:
            pipe.set("a", b"1").incr("n")
        assert pipe.results == [True, 1]
    assert proxy.connections == 2  # the replica refused it; the retry reached the primary
    with primary.client() as admin:
        assert admin.get("a") == b"1" and admin.get("n") == b"1"


async def test_health_check_is_false_when_the_server_refuses_ping(redis: RedisServer) -> None:
    """A user whose ACL forbids PING gets False from health_check, not an exception."""
    with redis.client() as admin:
        admin.execute_command("ACL", "SETUSER", "noping", "on", ">pw", "~*", "+@all", "-ping")
    try:
        async with get_cache(
            "redis", "from_url", url=redis.url, username="noping", password="pw"
        ) as cache:
            with pytest.raises(CacheResponseError, match=r"(?i)permission"):
                await cache.ping()
            assert await cache.health_check() is False
    finally:
        with redis.client() as admin:
            admin.execute_command("ACL", "DELUSER", "noping")
