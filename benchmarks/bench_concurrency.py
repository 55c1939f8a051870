"""Concurrency tools on a real redis-server: ``cache.lock`` vs redis-py's ``Lock``, and
KV ``set(if_version=)`` vs a plain ``set``.

The lock row times acquire + release round trips, one lock at a time (uncontended), on
cloudrift's ``redis`` cache and on ``redis.asyncio.lock.Lock`` (``SET NX PX`` + a Lua
release) on the same server. The KV row shows what a compare-and-set costs over a plain
write: a ``get_entry`` read plus one Lua script, against one ``SET``.
"""

from __future__ import annotations

from typing import Any

from benchmarks import _servers
from benchmarks._harness import Row, Settings, compare, gather_n, throughput_row

TARGET = 0.95


async def run(settings: Settings) -> list[Row]:
    """Lock round trip vs redis-py Lock; KV conditional vs plain set."""
    import redis.asyncio as aioredis

    from cloudrift.cache import get_cache
    from cloudrift.kv import get_kv

    rows: list[Row] = []
    with _servers.redis_server() as server:
        started = _servers.started_note("redis-server")
        cache = get_cache("redis", "from_url", url=server.url)
        kv = get_kv("cache", cache=cache)
        raw: Any = aioredis.Redis.from_url(server.url)
        try:
            ops = settings.n(1000, minimum=20)

            async def ours_lock(i: int) -> None:
                lock = cache.lock(f"bench:{i % 50}", ttl=10)
                await lock.acquire()
                await lock.release()

            async def raw_lock(i: int) -> None:
                lock = raw.lock(f"rawbench:{i % 50}", timeout=10, blocking=False)
                assert await lock.acquire()
                await lock.release()

            cmp = await compare(
                gather_n(ours_lock, ops, 1),
                gather_n(raw_lock, ops, 1),
                ops=ops,
                settings=settings,
            )
            rows.append(
                throughput_row(
                    "concurrency",
                    "lock acquire + release round trip",
                    cmp,
                    unit="locks/s",
                    target=TARGET,
                    baseline_name="redis.asyncio Lock",
                    note=f"{ops} uncontended locks per round; {started}",
                )
            )

            await kv.set("counter", 0)

            async def conditional(i: int) -> None:
                entry = await kv.get_entry("counter")
                assert entry is not None
                await kv.set("counter", entry.value + 1, if_version=entry.version)

            async def plain(i: int) -> None:
                await kv.set("plain", i)

            cmp = await compare(
                gather_n(conditional, ops, 1),
                gather_n(plain, ops, 1),
                ops=ops,
                settings=settings,
            )
            rows.append(
                throughput_row(
                    "concurrency",
                    "KV get_entry + set(if_version=) vs plain set",
                    cmp,
                    unit="writes/s",
                    baseline_name="kv.set",
                    note="the cost of a read-modify-write with compare-and-set (two round "
                    "trips: read, then one Lua script) over one blind SET",
                )
            )
        finally:
            await cache.close()
            await raw.aclose()
    return rows
