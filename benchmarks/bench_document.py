"""Document: PyMongo Async vs Motor through ``get_mongodb``, and what cloudrift adds.

``get_mongodb`` returns the native driver client, so the only cloudrift cost is
building it (option routing, secrets, the connection plan). Measured:

- client construction: ``get_mongodb("mongodb", driver="pymongo")`` vs
  ``driver="motor"``, and vs building ``AsyncMongoClient`` directly;
- a ``ping`` round trip, PyMongo Async vs Motor, on the MongoDB wire-protocol test
  server the tests use (mockupdb: it answers in Python threads, so the absolute figure
  is the server's; the ratio compares the drivers' command paths);
- the embedded engine (``get_mongodb("memory")``): insert_one + find_one + delete_one, as a
  cost per operation only. A PyMongo-vs-Motor comparison there is not meaningful:
  ``memory`` returns the same mongomock-motor engine whichever driver is asked for.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

from benchmarks._harness import Row, Settings, compare, throughput_row


async def _construction_rows(settings: Settings, uri: str) -> list[Row]:
    from pymongo import AsyncMongoClient

    from cloudrift.document import aclose_client, get_mongodb

    count = settings.n(200, minimum=5)

    def build(driver: str) -> Any:
        async def work() -> None:
            clients = [get_mongodb("mongodb", uri=uri, driver=driver) for _ in range(count)]
            for client in clients:
                await aclose_client(client)

        return work

    async def raw() -> None:
        clients: list[Any] = [AsyncMongoClient(uri) for _ in range(count)]
        for client in clients:
            await client.close()

    rows = []
    cmp = await compare(build("pymongo"), build("motor"), ops=count, settings=settings)
    rows.append(
        throughput_row(
            "document",
            "client construction + close: get_mongodb PyMongo Async vs Motor",
            cmp,
            unit="clients/s",
            baseline_name='driver="motor"',
            note=f"{count} clients per round, no connection made before close; ratio > 1 = "
            "PyMongo Async is cheaper to build",
        )
    )
    cmp = await compare(build("pymongo"), raw, ops=count, settings=settings)
    rows.append(
        throughput_row(
            "document",
            "client construction + close: get_mongodb vs AsyncMongoClient(uri)",
            cmp,
            unit="clients/s",
            baseline_name="AsyncMongoClient directly",
            note=f"{count} clients per round; the difference is cloudrift's option routing",
        )
    )
    return rows


async def _ping_row(settings: Settings, uri: str) -> Row:
    from cloudrift.document import aclose_client, get_mongodb

    count = settings.n(300, minimum=5)
    fast = get_mongodb("mongodb", uri=uri, driver="pymongo", server_selection_timeout=5)
    motor = get_mongodb("mongodb", uri=uri, driver="motor", server_selection_timeout=5)

    def pings(client: Any) -> Any:
        async def work() -> None:
            for _ in range(count):
                assert (await client.admin.command("ping"))["ok"] == 1

        return work

    try:
        cmp = await compare(pings(fast), pings(motor), ops=count, settings=settings)
    finally:
        await aclose_client(fast)
        await aclose_client(motor)
    return throughput_row(
        "document",
        "ping round trip on the wire test server: PyMongo Async vs Motor",
        cmp,
        baseline_name="Motor",
        note=f"{count} sequential pings per round on mockupdb (threaded Python server); "
        "both clients from get_mongodb",
    )


async def _memory_row(settings: Settings) -> Row:
    from cloudrift.document import aclose_client, get_mongodb

    count = settings.n(500, minimum=20)
    client = get_mongodb("memory")
    coll = client["bench"]["items"]
    runs = []
    try:
        for round_no in range(max(1, settings.rounds)):
            began = time.perf_counter()
            for i in range(count):
                await coll.insert_one({"_id": f"{round_no}-{i}", "n": i})
                found = await coll.find_one({"_id": f"{round_no}-{i}"})
                assert found is not None and found["n"] == i
                # Keep the collection small: mongomock scans it on every lookup.
                await coll.delete_one({"_id": f"{round_no}-{i}"})
            runs.append((time.perf_counter() - began) / count)
    finally:
        await aclose_client(client)
    return Row(
        category="document",
        name="embedded engine (memory): insert_one + find_one + delete_one",
        ours=f"{statistics.median(runs) * 1e6:.0f} µs per trio",
        baseline="",
        note="cost only. PyMongo Async vs Motor on the embedded engine is not meaningful: "
        "get_mongodb('memory') returns the same mongomock-motor engine for either driver, "
        "and no real mongod can be installed here (see STANDINS.md)",
    )


async def run(settings: Settings) -> list[Row]:
    """Construction cost, driver round trips on the wire server, embedded-engine cost."""
    from tests.servers.mongo import MongoWireServer

    # mockupdb logs every request it autoresponds to.
    logging.getLogger("mockupdb").setLevel(logging.ERROR)
    server = MongoWireServer()
    began = time.monotonic()
    server.run()
    started = time.monotonic() - began
    uri = f"mongodb://{server.address}/?replicaSet={server.set_name}"
    try:
        rows = await _construction_rows(settings, uri)
        ping = await _ping_row(settings, uri)
        ping.note += f"; wire server started in {started * 1000:.0f} ms"
        rows.append(ping)
    finally:
        server.stop()
    rows.append(await _memory_row(settings))
    return rows
