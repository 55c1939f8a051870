"""Cache on a Redis Cluster: cloudrift's ``redis`` provider with ``cluster=True`` vs raw
``redis.asyncio.cluster.RedisCluster`` built with the same options, on one local cluster.

The raw client gets exactly the keyword arguments cloudrift gives redis-py (timeouts,
retry, health checks, keepalive, ``reinitialize_steps=0``), so a ratio measures
cloudrift's own layer: validation, error translation, observation, and its cluster
connections (which send a redirect's ``ASKING`` with its command). The cluster has 3
primaries and no replicas, formed once for every row.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from benchmarks import _servers
from benchmarks._harness import (
    Row,
    Settings,
    compare,
    cpu_column,
    cpu_tracked,
    gather_n,
    throughput_row,
)

TARGET = 0.95
VALUE = b"v" * 1024
CONCURRENCY = 50


async def run(settings: Settings) -> list[Row]:
    """set/get 1 KiB at 50 concurrent tasks, and mget of 100 keys across slots."""
    from redis.asyncio.cluster import RedisCluster

    from cloudrift.cache import get_cache
    from cloudrift.core.redis import key_slot

    rows: list[Row] = []
    fine = settings if settings.smoke else dataclasses.replace(settings, rounds=settings.rounds * 3)
    with _servers.redis_cluster() as cluster:
        started = _servers.started_note("redis cluster")
        cache = get_cache("redis", host=cluster.host, port=cluster.port, cluster=True)
        options = cast(Any, cache)._options
        raw: Any = RedisCluster(**options.client_kwargs(), reinitialize_steps=0)
        try:
            await cache.ping()  # reads the slot map before the clock starts
            await raw.initialize()
            keys = [f"bench:{i}" for i in range(100)]
            assert len({key_slot(k) * 3 // 16384 for k in keys}) == 3  # every primary
            await cache.mset({k: VALUE for k in keys})
            ops = settings.n(2000, minimum=20)

            async def ours_set(i: int) -> None:
                await cache.set(keys[i % 100], VALUE)

            async def raw_set(i: int) -> None:
                await raw.set(keys[i % 100], VALUE)

            async def ours_get(i: int) -> None:
                assert await cache.get(keys[i % 100]) == VALUE

            async def raw_get(i: int) -> None:
                assert await raw.get(keys[i % 100]) == VALUE

            for op, ours_op, raw_op in (("set", ours_set, raw_set), ("get", ours_get, raw_get)):
                ours_work, ours_cpu = cpu_tracked(gather_n(ours_op, ops, CONCURRENCY))
                raw_work, raw_cpu = cpu_tracked(gather_n(raw_op, ops, CONCURRENCY))
                cmp = await compare(ours_work, raw_work, ops=ops, settings=fine)
                cpu = cpu_column(ours_cpu, raw_cpu, ops, fine.warmup)
                rows.append(
                    throughput_row(
                        "cache cluster",
                        f"cluster {op} 1 KiB, {CONCURRENCY} concurrent tasks",
                        cmp,
                        target=TARGET,
                        baseline_name="RedisCluster, same options",
                        note=f"{ops} ops per round, keys on 3 primaries; {started}",
                        cpu=cpu,
                    )
                )

            calls = settings.n(300, minimum=5)

            async def ours_mget() -> None:
                for _ in range(calls):
                    assert len(await cache.mget(keys)) == 100

            async def raw_mget() -> None:
                for _ in range(calls):
                    assert len(await raw.mget_nonatomic(keys)) == 100

            ours_work, ours_cpu = cpu_tracked(ours_mget)
            raw_work, raw_cpu = cpu_tracked(raw_mget)
            cmp = await compare(ours_work, raw_work, ops=calls, settings=fine)
            cpu = cpu_column(ours_cpu, raw_cpu, calls, fine.warmup, unit="mget")
            rows.append(
                throughput_row(
                    "cache cluster",
                    "cluster mget of 100 keys across slots (3 primaries)",
                    cmp,
                    unit="mgets/s",
                    target=TARGET,
                    baseline_name="RedisCluster.mget_nonatomic, same options",
                    note=f"{calls} sequential mgets per round; both send one MGET per "
                    "slot, pipelined per node; answers in the caller's order",
                    cpu=cpu,
                )
            )
        finally:
            await cache.close()
            await raw.aclose()
    return rows
