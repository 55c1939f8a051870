"""Messaging on Google Pub/Sub: cloudrift's ``gcp_pubsub`` on the Pub/Sub REST stand-in.

- ``send_batch`` of 1,000 messages: publish requests counted by the stand-in (target:
  at most 1 per 1,000 messages within Pub/Sub's 10 MB limit), timed against 1,000
  awaited ``send`` calls.
- send + receive (10 per pull) + ack of every message vs the same through the raw
  ``gcloud-aio-pubsub`` clients, on separate topics of one stand-in, 10 concurrent tasks
  (target: ratio >= 0.95). The stand-in runs in a process of its own, so its request
  handling does not compete with the measured client for this process's GIL. The client CPU
  column gives both sides' CPU per message (``time.process_time()`` in this process):
  on a loaded machine the wall-clock ratio mostly measures the neighbours, the CPU
  ratio what each client costs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._harness import (
    Row,
    Settings,
    compare,
    cpu_column,
    cpu_tracked,
    drain_deleting,
    gather_n,
    throughput_row,
)

TARGET = 0.95
CONCURRENCY = 10
PROJECT = "cloudrift-bench"


@contextlib.contextmanager
def _standin_process() -> Iterator[tuple[str, float]]:
    """The Pub/Sub stand-in as a child process: (``host:port``, seconds it took to start)."""
    import pytest

    from tests.servers._process import LOOPBACK, ManagedProcess, free_port

    with tempfile.TemporaryDirectory(prefix="bench-pubsub-") as tmp:
        port = free_port()
        process = ManagedProcess(
            "pubsub",
            [sys.executable, "-m", "tests.servers._pubsub_server", str(port)],
            port=port,
            log_dir=Path(tmp),
            timeout=30,
        )
        try:
            process.start()
        except pytest.fail.Exception as exc:
            raise RuntimeError(f"the Pub/Sub stand-in could not start: {exc}") from None
        try:
            yield f"{LOOPBACK}:{port}", process.started_in or 0.0
        finally:
            process.stop()


async def run(settings: Settings) -> list[Row]:
    """publish_batch request count, and round-trip throughput vs raw gcloud-aio-pubsub."""
    import aiohttp
    from gcloud.aio.pubsub import PublisherClient, SubscriberClient

    from cloudrift.messaging import get_queue

    rows: list[Row] = []
    with _standin_process() as (host, started_in):
        started = f"Pub/Sub stand-in started in {started_in * 1000:.0f} ms"
        root = f"http://{host}/v1"
        async with aiohttp.ClientSession() as session:
            sdk_session: Any = session
            publisher = PublisherClient(session=sdk_session, api_root=root, api_is_dev=True)
            subscriber = SubscriberClient(session=sdk_session, api_root=root, api_is_dev=True)
            for name in ("batch", "ours", "raw"):
                topic = publisher.topic_path(PROJECT, name)
                await publisher.create_topic(topic)
                await subscriber.create_subscription(
                    subscriber.subscription_path(PROJECT, f"{name}-sub"),
                    topic,
                    {"ackDeadlineSeconds": 60},
                )

            def queue(name: str) -> Any:
                return get_queue(
                    "gcp_pubsub",
                    project=PROJECT,
                    topic=name,
                    subscription=f"{name}-sub",
                    emulator_host=host,
                )

            async with queue("batch") as batch_queue:
                rows.append(await _batch_row(settings, batch_queue, subscriber, started))
            async with queue("ours") as ours:
                rows.append(await _round_trip_row(settings, ours, publisher, subscriber))
    return rows


async def _batch_row(settings: Settings, queue: Any, subscriber: Any, started: str) -> Row:
    count = 1000 if settings.scale >= 1 else settings.n(1000, minimum=25)
    payloads = [{"order": i, "item": "widget"} for i in range(count)]
    sub = subscriber.subscription_path(PROJECT, "batch-sub")
    requests: list[int] = []
    clients = await queue.native()
    original = clients.publisher.publish

    async def counting_publish(*args: Any, **kwargs: Any) -> Any:
        requests.append(len(args[1]))
        return await original(*args, **kwargs)

    clients.publisher.publish = counting_publish
    try:
        ids = await queue.send_batch(payloads)
        batch_requests = len(requests)
    finally:
        clients.publisher.publish = original
    if len(set(ids)) != count:
        raise RuntimeError(f"send_batch returned {len(set(ids))} distinct ids for {count}")

    async def empty() -> None:
        # Untimed: seek the subscription to now so the stand-in never grows between runs.
        await subscriber.seek(sub, {"time": "2999-01-01T00:00:00Z"})

    async def batch() -> None:
        await queue.send_batch(payloads)

    async def loop() -> None:
        for payload in payloads:
            await queue.send(payload)

    few = dataclasses.replace(settings, rounds=min(settings.rounds, 3))
    cmp = await compare(batch, loop, ops=count, settings=few, before_each=empty)
    row = throughput_row(
        "messaging",
        f"gcp_pubsub send_batch of {count} vs {count} awaited send",
        cmp,
        unit="msgs/s",
        baseline_name="cloudrift send loop",
    )
    allowed = math.ceil(count / 1000)
    row.target = f"<= {allowed} publish request(s) (1 per 1,000)"
    row.met = batch_requests <= allowed
    row.note = (
        f"send_batch made {batch_requests} publish request(s) for {count} messages; "
        f"ratio = throughput; {started}"
    )
    return row


async def _round_trip_row(settings: Settings, ours: Any, publisher: Any, subscriber: Any) -> Row:
    from gcloud.aio.pubsub import PubsubMessage

    count = settings.n(300, minimum=10)
    raw_topic = publisher.topic_path(PROJECT, "raw")
    raw_sub = subscriber.subscription_path(PROJECT, "raw-sub")

    async def ours_send(i: int) -> None:
        await ours.send({"order": i, "item": "widget"})

    async def ours_receive() -> list[str]:
        return [m.receipt_handle for m in await ours.receive(max_messages=10, wait_time=0)]

    async def raw_send(i: int) -> None:
        body = json.dumps({"order": i, "item": "widget"}, separators=(",", ":"))
        await publisher.publish(raw_topic, [PubsubMessage(body.encode())])

    async def raw_receive() -> list[str]:
        got = await subscriber.pull(raw_sub, 10)
        for msg in got:
            json.loads(msg.data)  # a raw user decodes the body, as cloudrift does
        return [m.ack_id for m in got]

    async def raw_ack(handle: str) -> None:
        await subscriber.acknowledge(raw_sub, [handle])

    async def ours_trip() -> None:
        await gather_n(ours_send, count, CONCURRENCY)()
        await drain_deleting(ours_receive, ours.delete, count, "cloudrift", CONCURRENCY)

    async def raw_trip() -> None:
        await gather_n(raw_send, count, CONCURRENCY)()
        await drain_deleting(raw_receive, raw_ack, count, "gcloud-aio-pubsub", CONCURRENCY)

    ours_work, ours_cpu = cpu_tracked(ours_trip)
    raw_work, raw_cpu = cpu_tracked(raw_trip)
    cmp = await compare(ours_work, raw_work, ops=count, settings=settings)
    cpu = cpu_column(ours_cpu, raw_cpu, count, settings.warmup, unit="msg")
    return throughput_row(
        "messaging",
        f"gcp_pubsub send + receive + ack of {count} messages, {CONCURRENCY} concurrent",
        cmp,
        unit="msgs/s",
        target=TARGET,
        baseline_name="gcloud-aio-pubsub",
        note="each message published, pulled (10 per pull) and acked; separate "
        "topics on one stand-in process",
        cpu=cpu,
    )
