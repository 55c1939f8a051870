"""Cache: cloudrift's ``redis`` provider vs raw ``redis.asyncio`` on the same redis-server.

Both sides use one client each (cloudrift's resilient defaults: timeouts, retries,
health checks; redis-py's plain defaults on the raw side), 1 KiB values, and the same
number of concurrent tasks. The pipeline row compares 1,000 ``set``s queued in one
``cache.pipeline()`` with 1,000 awaited ``cache.set`` calls, both through cloudrift.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from benchmarks import _servers
from benchmarks._harness import Row, Settings, compare, gather_n, throughput_row

TARGET = 0.95
VALUE = b"v" * 1024


async def run(settings: Settings) -> list[Row]:
    """get/set at 1 and 50 concurrent tasks, and pipeline vs sequential sets."""
    import redis.asyncio as aioredis

    from cloudrift.cache import get_cache

    rows: list[Row] = []
    # Rounds are cheap here: more, shorter interleaved rounds let the median ride out
    # bursts of load from other processes on this shared machine.
    fine = settings if settings.smoke else dataclasses.replace(settings, rounds=settings.rounds * 3)
    with _servers.redis_server() as server:
        started = _servers.started_note("redis-server")
        cache = get_cache("redis", "from_url", url=server.url)
        raw: Any = aioredis.Redis.from_url(server.url)
        try:
            keys = [f"bench:{i}" for i in range(100)]
            for key in keys:
                await raw.set(key, VALUE)
            for concurrency in (1, 50):
                ops = settings.n(2000 if concurrency == 50 else 1000, minimum=20)

                async def ours_set(i: int) -> None:
                    await cache.set(keys[i % 100], VALUE)

                async def raw_set(i: int) -> None:
                    await raw.set(keys[i % 100], VALUE)

                async def ours_get(i: int) -> None:
                    assert await cache.get(keys[i % 100]) == VALUE

                async def raw_get(i: int) -> None:
                    assert await raw.get(keys[i % 100]) == VALUE

                for op, ours_op, raw_op in (("set", ours_set, raw_set), ("get", ours_get, raw_get)):
                    cmp = await compare(
                        gather_n(ours_op, ops, concurrency),
                        gather_n(raw_op, ops, concurrency),
                        ops=ops,
                        settings=fine,
                    )
                    rows.append(
                        throughput_row(
                            "cache",
                            f"redis {op} 1 KiB, {concurrency} concurrent task(s)",
                            cmp,
                            target=TARGET,
                            baseline_name="redis.asyncio",
                            note=f"{ops} ops per round; {started}",
                        )
                    )

            # Where a gap comes from: the same raw client built with the options cloudrift
            # gives redis-py (timeouts, retry with backoff, health checks, keepalive).
            tuned: Any = aioredis.Redis.from_url(
                server.url, **cast(Any, cache)._options.client_kwargs()
            )
            try:
                ops = settings.n(2000, minimum=20)
                for op in ("set", "get"):

                    async def ours_op(i: int, op: str = op) -> None:
                        await getattr(cache, op)(keys[i % 100], *([VALUE] if op == "set" else []))

                    async def tuned_op(i: int, op: str = op) -> None:
                        await getattr(tuned, op)(keys[i % 100], *([VALUE] if op == "set" else []))

                    cmp = await compare(
                        gather_n(ours_op, ops, 50),
                        gather_n(tuned_op, ops, 50),
                        ops=ops,
                        settings=fine,
                    )
                    rows.append(
                        throughput_row(
                            "cache",
                            f"redis {op} 1 KiB, 50 tasks, vs redis.asyncio with cloudrift's "
                            "client options",
                            cmp,
                            baseline_name="redis.asyncio + same options",
                            note="reference row: isolates cloudrift's own layer from the cost of "
                            "its resilient defaults (socket timeouts, retry, health checks)",
                        )
                    )
            finally:
                await tuned.aclose()

            count = settings.n(1000, minimum=10)

            async def pipelined() -> None:
                async with cache.pipeline() as pipe:
                    for i in range(count):
                        pipe.set(f"pipe:{i}", VALUE)
                assert len(pipe.results) == count

            async def sequential() -> None:
                for i in range(count):
                    await cache.set(f"pipe:{i}", VALUE)

            cmp = await compare(pipelined, sequential, ops=count, settings=settings)
            rows.append(
                throughput_row(
                    "cache",
                    f"{count} sets in one pipeline() vs {count} awaited sets",
                    cmp,
                    unit="sets/s",
                    baseline_name="awaited cache.set loop",
                    note="both through cloudrift; the pipeline is one MULTI/EXEC transaction",
                )
            )
        finally:
            await cache.close()
            await raw.aclose()
    return rows
