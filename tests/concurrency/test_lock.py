"""cache.lock on a real redis-server: across backends, processes and a crashed owner."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloudrift.cache import get_cache
from cloudrift.core.exceptions import LockLostError, LockNotAcquiredError
from tests.servers.redis import RedisServer

ROOT = Path(__file__).resolve().parents[2]

_HOLDER = """
import asyncio, sys
from cloudrift.cache import get_cache

async def main() -> None:
    cache = get_cache("redis", "from_url", url=sys.argv[1])
    await cache.lock("crash", ttl=float(sys.argv[2])).acquire()
    print("held", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_mutual_exclusion_across_two_separately_built_backends(redis: RedisServer) -> None:
    """10 tasks on two cache backends (two connection pools) incrementing a shared counter
    under one lock end exact: the lock, not the client, excludes them."""
    caches = [get_cache("redis", "from_url", url=redis.url) for _ in range(2)]
    await caches[0].set("n", b"0")

    async def work(i: int) -> None:
        cache = caches[i % 2]
        async with cache.lock("shared", ttl=10, wait=10):
            value = int(await cache.get("n") or b"0")
            await asyncio.sleep(0.002)  # a read-modify-write window others would hit
            await cache.set("n", str(value + 1))

    try:
        await asyncio.gather(*(work(i) for i in range(10)))
        assert await caches[1].get("n") == b"10"
    finally:
        for cache in caches:
            await cache.close()


async def test_expiry_frees_the_lock_and_the_late_owner_cannot_delete_the_new_one(
    redis: RedisServer,
) -> None:
    """On Redis the PX expiry frees the lock; the first owner's late release raises
    LockLostError and the second owner's key survives."""
    first_cache = get_cache("redis", "from_url", url=redis.url)
    second_cache = get_cache("redis", "from_url", url=redis.url)
    try:
        first = first_cache.lock("exp", ttl=0.1)
        await first.acquire()
        second = second_cache.lock("exp", ttl=10, wait=5)
        await second.acquire()  # polls until the PX expiry frees it
        with pytest.raises(LockLostError):
            await first.release()
        assert await second_cache.exists("cloudrift:lock:exp")
        await second.release()
        assert not await second_cache.exists("cloudrift:lock:exp")
    finally:
        await first_cache.close()
        await second_cache.close()


def _start_holder(url: str, ttl: float) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, str(ttl)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"
    return child


async def test_a_lock_held_by_a_killed_process_is_free_after_its_ttl(redis: RedisServer) -> None:
    """A process SIGKILLed while holding the lock blocks others only until the ttl."""
    ttl = 1.0
    child = await asyncio.to_thread(_start_holder, redis.url, ttl)
    killed_at = time.monotonic()
    child.send_signal(signal.SIGKILL)
    await asyncio.to_thread(child.wait)
    cache = get_cache("redis", "from_url", url=redis.url)
    try:
        with pytest.raises(LockNotAcquiredError):
            await cache.lock("crash", ttl=10).acquire()
        async with cache.lock("crash", ttl=10, wait=ttl + 10):
            waited = time.monotonic() - killed_at
        assert waited < ttl + 10
    finally:
        await cache.close()
