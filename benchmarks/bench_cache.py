"""Cache: cloudrift's ``redis`` provider vs raw ``redis.asyncio`` on the same redis-server.

Both sides use one client each (cloudrift's resilient defaults: timeouts, retries,
health checks; redis-py's plain defaults on the raw side), 1 KiB values, and the same
number of concurrent tasks. Each row states the wall-clock throughput (the target's
figure) and, in the client CPU column, the client process's CPU per operation of both sides
(``time.process_time``; redis-server runs in another process): on a shared machine the
wall clock moves with everyone else's load, the client's CPU much less.

Two reference rows say where a gap would come from: the raw client built with
cloudrift's options (what the resilient defaults cost), and both clients' per-call
work with the network taken out (``execute_command`` answered in-process): cloudrift's
own layer in µs per call (the stand-in ``execute_command`` suspends once, as a command
awaiting its reply does). The pipeline row compares 1,000 ``set``s queued in one
``cache.pipeline()`` with 1,000 awaited ``cache.set`` calls, both through cloudrift.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
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


async def _layer_rows(settings: Settings, url: str) -> list[Row]:
    """CPU µs per ``get`` / ``set`` call of each client with ``execute_command`` answered
    in-process: what each library does around the command, without the network."""
    import redis.asyncio as aioredis

    from cloudrift.cache import get_cache

    cache = get_cache("redis", "from_url", url=url)  # telemetry as in the rows above
    raw: Any = aioredis.Redis.from_url(url)

    async def answered(*_args: Any, **_kwargs: Any) -> Any:
        # Suspends once, as a command waiting for its reply does: each resumption passes
        # through every frame awaiting it, which is part of a layer's cost.
        await asyncio.sleep(0)
        return VALUE

    native = await cache.native()
    native.execute_command = answered
    raw.execute_command = answered
    calls = settings.n(50_000, minimum=100)
    rounds = 1 if settings.smoke else max(5, settings.rounds)
    rows: list[Row] = []
    try:
        for op in ("get", "set"):
            args = ("bench:1",) if op == "get" else ("bench:1", VALUE)
            ours_call, raw_call = getattr(cache, op), getattr(raw, op)
            took: dict[str, list[float]] = {"ours": [], "raw": []}
            for round_no in range(rounds + 1):  # the first round warms up
                order = [("ours", ours_call), ("raw", raw_call)]
                for side, call in order if round_no % 2 == 0 else order[::-1]:
                    began = time.process_time()
                    for _ in range(calls):
                        await call(*args)
                    if round_no:
                        took[side].append((time.process_time() - began) / calls * 1e6)
            mine, theirs = statistics.median(took["ours"]), statistics.median(took["raw"])
            rows.append(
                Row(
                    category="cache",
                    name=f"redis {op}: per-call work without the network (cloudrift's layer)",
                    ours=f"{mine:.2f} µs/call",
                    baseline=f"{theirs:.2f} µs/call (redis.asyncio {op}())",
                    cpu=f"{mine:.2f} vs {theirs:.2f} µs/call ({mine / theirs:.2f}x)",
                    note=f"cloudrift adds {mine - theirs:+.2f} µs of CPU per call (key check, "
                    "value encoding, the operation wrapper and its telemetry check, error "
                    "translation); "
                    "execute_command answered in-process after one suspension on both sides; "
                    f"median of {rounds} "
                    f"interleaved rounds of {calls} calls; compare with the client CPU per "
                    "operation of the rows above",
                )
            )
    finally:
        await cache.close()
        await raw.aclose()
    return rows


async def run(settings: Settings) -> list[Row]:
    """get/set at 1 and 50 concurrent tasks, the reference rows, pipeline vs sequential."""
    import redis.asyncio as aioredis

    from cloudrift.cache import get_cache

    rows: list[Row] = []
    # Rounds are cheap here: more, shorter interleaved rounds let the median ride out
    # bursts of load from other processes on this shared machine.
    fine = settings if settings.smoke else dataclasses.replace(settings, rounds=settings.rounds * 5)
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
                    ours_work, ours_cpu = cpu_tracked(gather_n(ours_op, ops, concurrency))
                    raw_work, raw_cpu = cpu_tracked(gather_n(raw_op, ops, concurrency))
                    cmp = await compare(ours_work, raw_work, ops=ops, settings=fine)
                    rows.append(
                        throughput_row(
                            "cache",
                            f"redis {op} 1 KiB, {concurrency} concurrent task(s)",
                            cmp,
                            target=TARGET,
                            baseline_name="redis.asyncio",
                            note=f"{ops} ops per round, {fine.rounds} interleaved rounds; "
                            f"{started}",
                            cpu=cpu_column(ours_cpu, raw_cpu, ops, fine.warmup),
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

                    ours_work, ours_cpu = cpu_tracked(gather_n(ours_op, ops, 50))
                    tuned_work, tuned_cpu = cpu_tracked(gather_n(tuned_op, ops, 50))
                    cmp = await compare(ours_work, tuned_work, ops=ops, settings=fine)
                    rows.append(
                        throughput_row(
                            "cache",
                            f"redis {op} 1 KiB, 50 tasks, vs redis.asyncio with cloudrift's "
                            "client options",
                            cmp,
                            baseline_name="redis.asyncio + same options",
                            note="reference row: isolates cloudrift's own layer from the cost "
                            "of its resilient defaults (socket timeouts, retry, health checks)",
                            cpu=cpu_column(ours_cpu, tuned_cpu, ops, fine.warmup),
                        )
                    )
            finally:
                await tuned.aclose()

            rows += await _layer_rows(settings, server.url)

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
