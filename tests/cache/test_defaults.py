"""Resilient defaults are really applied, and the category imports without any SDK."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
from redis import exceptions as rex

from cloudrift.cache import get_cache
from cloudrift.cache.redis import RedisCache
from cloudrift.core.exceptions import CacheConnectionError
from tests.servers._process import LOOPBACK, free_port


async def test_redis_client_is_built_with_timeouts_keepalive_health_checks_and_retries() -> None:
    """The pooled client has connect/read timeouts, keepalive, health checks and READONLY retry."""
    cache = get_cache("redis", "from_credentials", host="cache.internal")
    assert isinstance(cache, RedisCache)
    client = await cache.native()
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 5.0
    assert kwargs["socket_connect_timeout"] == 5.0
    assert kwargs["socket_keepalive"] is True
    assert kwargs["health_check_interval"] == 30
    retry = kwargs["retry"]
    assert retry.get_retries() == 2  # three attempts in all
    assert {rex.ConnectionError, rex.TimeoutError, rex.ReadOnlyError} <= set(
        retry._supported_errors
    )
    await cache.close()


async def test_overrides_reach_the_client() -> None:
    """Every resilience option can be overridden."""
    cache = get_cache(
        "redis",
        "from_url",
        url="redis://cache.internal:6379/0",
        socket_timeout=1.5,
        health_check_interval=5,
        max_attempts=1,
        max_connections=7,
    )
    kwargs = (await cache.native()).connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert kwargs["socket_timeout"] == 1.5 and kwargs["health_check_interval"] == 5
    assert kwargs["retry"].get_retries() == 0
    assert (await cache.native()).connection_pool.max_connections == 7  # type: ignore[attr-defined]
    await cache.close()


async def test_connection_failures_log_and_raise_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused connection's error and any log lines never contain the password."""
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens here
    async with get_cache(
        "redis", "from_url", url=f"redis://user:pw-SECRET-9@{LOOPBACK}:{port}/0"
    ) as cache:
        with pytest.raises(CacheConnectionError) as info:
            await cache.get("k")
    assert "SECRET" not in str(info.value)
    assert "SECRET" not in repr(info.value.__cause__) or info.value.__cause__ is None
    assert "SECRET" not in caplog.text


def test_cache_and_kv_import_and_work_without_redis_installed() -> None:
    """With redis-py unimportable, memory works and get_cache("redis") names the extra."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["redis"] = None
        import cloudrift.cache, cloudrift.kv
        from cloudrift.core.exceptions import ConfigurationError

        async def main():
            async with cloudrift.cache.get_cache("memory") as c:
                await c.set("k", "v")
                assert await c.get("k") == b"v"
            async with cloudrift.kv.get_kv("memory") as kv:
                await kv.set("k", {"a": 1})
        asyncio.run(main())
        try:
            cloudrift.cache.get_cache("redis", "from_url", url="redis://h")
        except ConfigurationError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert 'pip install "cloudrift[cache]"' in out.stdout
