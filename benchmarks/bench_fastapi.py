"""FastAPI: dependency injection overhead and concurrent lifespan startup.

- Requests/s of ``GET /files/{key}`` reading a 1 KiB object through
  ``Depends(get_storage_dep)`` (memory backend built by ``cloudrift_lifespan``) vs the
  same endpoint reading a module-level global memory backend. Both routes live in one
  app driven in-process through ``httpx.ASGITransport`` (no sockets: the figure is the
  framework + dependency cost), 10 requests in flight, with the client process's CPU
  per request in the CPU column. A reference row drives the routes straight through the
  ASGI app (no HTTP client) and times CPU per request, with a third route whose
  dependency is a trivial ``async def`` returning the global: FastAPI's own cost of
  any dependency, and ours on top of it.
- Startup with five backends that are slow to answer: five named ``redis`` cache
  backends, each reached through its own TCP proxy that holds every new connection
  for a different delay (100..300 ms) before joining it to a real redis-server, with
  ``verify_on_startup=True`` so startup pings each one. Startup of all five together
  is compared with the sum of each one's startup alone.

No ``from __future__ import annotations`` here: FastAPI reads the route's
``Annotated[Storage, Depends(...)]`` at definition time, from names imported lazily
inside the function.
"""

import asyncio
import contextlib
import dataclasses
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

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
DELAYS = (0.10, 0.15, 0.20, 0.25, 0.30)
DATA = b"x" * 1024


def _asgi_get(app: Any, path: str) -> Callable[[], Awaitable[None]]:
    """One GET of ``path`` straight through the ASGI app (no client, no sockets)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"bench")],
        "server": ("bench", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    async def get() -> None:
        await app(dict(scope), receive, send)

    return get


async def _dependency_rows(settings: Settings) -> list[Row]:
    import httpx
    from fastapi import Depends, FastAPI, Request, Response

    from cloudrift.config import CloudriftSettings
    from cloudrift.storage import Storage, get_storage
    from cloudrift_fastapi import cloudrift_lifespan, get_storage_dep

    global_storage = get_storage("memory")  # what a module-level global would hold
    app = FastAPI(lifespan=cloudrift_lifespan(CloudriftSettings(storage={"provider": "memory"})))

    async def the_global() -> Storage:
        """The cheapest dependency FastAPI can call: hands out the global."""
        return global_storage

    @app.get("/dep/{key}")
    async def via_dependency(
        key: str, storage: Annotated[Storage, Depends(get_storage_dep)]
    ) -> Response:
        return Response(await storage.download(key), media_type="application/octet-stream")

    @app.put("/dep/{key}", status_code=204)
    async def seed(
        key: str, request: Request, storage: Annotated[Storage, Depends(get_storage_dep)]
    ) -> None:
        await storage.upload(key, await request.body())

    @app.get("/global/{key}")
    async def via_global(key: str) -> Response:
        return Response(await global_storage.download(key), media_type="application/octet-stream")

    @app.get("/trivial/{key}")
    async def via_trivial_dependency(
        key: str, storage: Annotated[Storage, Depends(the_global)]
    ) -> Response:
        return Response(await storage.download(key), media_type="application/octet-stream")

    count = settings.n(1000, minimum=10)
    # Many short interleaved rounds: the wall clock of this shared machine drifts.
    fine = settings if settings.smoke else dataclasses.replace(settings, rounds=settings.rounds * 3)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for i in range(10):
                assert (await client.put(f"/dep/k{i}", content=DATA)).status_code == 204
                await global_storage.upload(f"k{i}", DATA)

            async def dep(i: int) -> None:
                resp = await client.get(f"/dep/k{i % 10}")
                assert resp.status_code == 200 and resp.content == DATA

            async def glob(i: int) -> None:
                resp = await client.get(f"/global/k{i % 10}")
                assert resp.status_code == 200 and resp.content == DATA

            dep_work, dep_cpu = cpu_tracked(gather_n(dep, count, 10))
            glob_work, glob_cpu = cpu_tracked(gather_n(glob, count, 10))
            cmp = await compare(dep_work, glob_work, ops=count, settings=fine)
            cpu = cpu_column(dep_cpu, glob_cpu, count, fine.warmup, unit="req")

        # The same three routes driven straight through the ASGI app (no HTTP client,
        # whose own per-request work is most of the figures above), timed by CPU: the
        # framework's own cost of a dependency, and ours inside it.
        calls = settings.n(5000, minimum=20)

        def sequential(path: str) -> Callable[[], Awaitable[None]]:
            get = _asgi_get(app, path)

            async def work() -> None:
                for _ in range(calls):
                    await get()

            return work

        paths = {
            "dep": sequential("/dep/k1"),
            "trivial": sequential("/trivial/k1"),
            "global": sequential("/global/k1"),
        }
        per_request: dict[str, list[float]] = {name: [] for name in paths}
        for round_no in range(1 + (1 if settings.smoke else fine.rounds)):
            order = list(paths) if round_no % 2 == 0 else list(paths)[::-1]
            for name in order:
                began = time.process_time()
                await paths[name]()
                if round_no:  # the first round warms up
                    per_request[name].append((time.process_time() - began) / calls * 1e6)
        dep_us, trivial_us, global_us = (
            statistics.median(per_request[name]) for name in ("dep", "trivial", "global")
        )
    await global_storage.close()
    rounds_note = f"median of {len(per_request['dep'])} interleaved rounds of {calls} requests"
    return [
        throughput_row(
            "fastapi",
            "GET 1 KiB via Depends(get_storage_dep) vs module-level global (memory backend)",
            cmp,
            unit="req/s",
            target=TARGET,
            baseline_name="module-level global",
            note=f"{count} requests per round, 10 in flight, {fine.rounds} interleaved rounds, "
            "in-process through httpx.ASGITransport (no uvicorn, no sockets; the CPU column "
            "includes the HTTP client's); the reference row below splits the dependency's cost",
            cpu=cpu,
        ),
        Row(
            category="fastapi",
            name="per-request CPU straight through the ASGI app: Depends(get_storage_dep) "
            "vs a trivial Depends vs module-level global",
            ours=f"{dep_us:.1f} µs/req (get_storage_dep)",
            baseline=f"{trivial_us:.1f} µs/req (Depends on an async def returning the "
            f"global); {global_us:.1f} µs/req (global)",
            ratio=global_us / dep_us,
            cpu=f"{dep_us:.1f} vs {global_us:.1f} µs/req ({dep_us / global_us:.2f}x)",
            note=f"reference row, no HTTP client: any Depends costs FastAPI "
            f"{trivial_us - global_us:+.1f} µs per request (dependency solving), "
            f"get_storage_dep {dep_us - trivial_us:+.1f} µs more (reading the app's "
            f"container); ratio = global / get_storage_dep CPU; {rounds_note}",
        ),
    ]


@contextlib.asynccontextmanager
async def _delay_proxy(upstream_port: int, delay: float) -> AsyncIterator[int]:
    """A TCP proxy on a free port that waits ``delay`` s before joining each connection."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


async def _startup_seconds(ports: dict[str, int]) -> float:
    """Time from lifespan start until the app is ready, with these cache backends."""
    from fastapi import FastAPI

    from cloudrift.config import CloudriftSettings
    from cloudrift_fastapi import cloudrift_lifespan

    backends = {
        name: {"provider": "redis", "auth_method": "from_url", "url": f"redis://127.0.0.1:{port}/0"}
        for name, port in ports.items()
    }
    config = CloudriftSettings(cache={"default": next(iter(ports)), "backends": backends})
    app = FastAPI(lifespan=cloudrift_lifespan(config, verify_on_startup=True))
    began = time.perf_counter()
    async with app.router.lifespan_context(app):
        return time.perf_counter() - began


async def _startup_row(settings: Settings) -> Row:
    rounds = 1 if settings.smoke else 3
    with _servers.redis_server() as redis:
        async with contextlib.AsyncExitStack() as stack:
            ports = {
                f"slow{i}": await stack.enter_async_context(_delay_proxy(redis.port, delay))
                for i, delay in enumerate(DELAYS)
            }
            together: list[float] = []
            sums: list[float] = []
            slowest: list[float] = []
            await _startup_seconds(ports)  # warm-up: first use imports redis and friends
            for _ in range(rounds):
                together.append(await _startup_seconds(ports))
                alone = [await _startup_seconds({name: port}) for name, port in ports.items()]
                sums.append(sum(alone))
                slowest.append(max(alone))
    both = statistics.median(together)
    total = statistics.median(sums)
    slow = statistics.median(slowest)
    return Row(
        category="fastapi",
        name="lifespan startup, 5 backends delaying 100/150/200/250/300 ms",
        ours=f"{both * 1000:.0f} ms (all 5 together)",
        baseline=f"{total * 1000:.0f} ms (sum of each alone); slowest alone {slow * 1000:.0f} ms",
        ratio=total / both,
        target="together <= 1.25 x slowest alone",
        met=both <= 1.25 * slow,
        note=f"ratio = sum / together; median of {rounds} round(s); 5 named redis cache "
        "backends behind delaying TCP proxies to a real redis-server, verify_on_startup=True; "
        + _servers.started_note("redis-server"),
    )


async def run(settings: Settings) -> list[Row]:
    """Dependency vs global requests/s, and concurrent startup."""
    return [*await _dependency_rows(settings), await _startup_row(settings)]
