"""Messaging: cloudrift's ``sqs`` provider on moto's server.

- ``send_batch`` of 1,000 messages vs 1,000 awaited ``send`` calls (both cloudrift),
  with the SQS API calls counted from botocore's own ``before-call`` event.
- send + receive (10 per call) + delete of every message vs the same through raw
  aioboto3, on separate queues of the same server, 10 concurrent tasks.
- ``consume()`` with a handler that sleeps 10 ms: concurrency 10 vs 1 on a queue
  pre-filled (untimed) with the same number of messages each round.
- ``send_batch`` of 1,000 through a proxy adding a 10 ms round trip to every request
  (``benchmarks/_delay_proxy.py``, its own process): SQS standard's 8 batches in flight
  vs the same queue sending them one after another (issue 14).

moto runs with its clock made ``time.time()`` (``_servers.moto(fast_clock=True)``): its
SQS SendMessage otherwise spends ~100 ms of CPU per 10-message batch while a queue fills
to 1,000, which no client-side effect shows through. The rows' notes give moto's CPU per
message (from ``/proc``) next to the client's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import statistics
import time
from typing import Any

from benchmarks import _servers
from benchmarks._harness import (
    Row,
    Settings,
    Work,
    compare,
    cpu_column,
    cpu_tracked,
    drain_deleting,
    gather_n,
    throughput_row,
)

TARGET = 0.95
MAX_CALLS = 100
#: send_batch with batches in flight vs one after another, through a 10 ms delay proxy.
DELAYED_BATCH_TARGET = 1.5
REQUEST_DELAY = 0.010  # one round trip per request
_FAST_CLOCK_NOTE = (
    "moto's clock made time.time() (same value; its SQS SendMessage asks every queued "
    "message for the time 4 times, ~100 ms of server CPU per batch of 10 while a queue "
    "fills to 1,000 with moto's own clock, 8 ms with this one)"
)
SPEEDUP_TARGET = 7.0  # "near-linear": 10 would be perfect
CONCURRENCY = 10


async def run(settings: Settings) -> list[Row]:
    """send_batch vs send loop (with API calls), round trip vs aioboto3, consume scaling."""
    import aioboto3
    from aiobotocore.config import AioConfig

    from cloudrift.messaging import get_queue

    rows: list[Row] = []
    with _servers.moto(fast_clock=True) as moto:
        started = _servers.started_note("moto")
        session = aioboto3.Session(
            aws_access_key_id=moto.access_key,
            aws_secret_access_key=moto.secret_key,
            region_name=moto.region,
        )
        config = AioConfig(max_pool_connections=50)
        async with session.client("sqs", endpoint_url=moto.endpoint_url, config=config) as raw:
            urls = {}
            for name in ("ours", "raw", "consume"):
                urls[name] = (await raw.create_queue(QueueName=f"bench-{name}"))["QueueUrl"]
            creds = moto.credentials()
            queues = {name: get_queue("sqs", queue_url=urls[name], **creds) for name in urls}
            try:
                rows.append(await _batch_row(settings, raw, creds, started))
                rows.append(await _round_trip_row(settings, queues["ours"], raw, urls["raw"]))
                rows.append(await _delayed_batch_row(settings, raw, moto))
                rows.append(
                    await _consume_row(
                        settings,
                        queues["consume"],
                        "sqs",
                        "bounded by moto's CPU per message (one Python process: a "
                        "DeleteMessage per message, plus the receives), not by the consume "
                        "loop: compare the memory row; moto's clock made time.time() (see "
                        "the delay proxy row)",
                        full=100,
                    )
                )
            finally:
                for queue in queues.values():
                    await queue.close()
    async with get_queue("memory") as memory:
        rows.append(
            await _consume_row(
                settings, memory, "memory", "the consume loop alone, no stand-in in the way"
            )
        )
    return rows


def _server_tracked(work: Work) -> tuple[Work, list[float]]:
    """``work`` plus the list it appends moto's CPU seconds during each call to (empty
    where ``/proc`` cannot tell)."""
    samples: list[float] = []

    async def run() -> None:
        began = _servers.cpu_seconds("moto")
        await work()
        ended = _servers.cpu_seconds("moto")
        if began is not None and ended is not None:
            samples.append(ended - began)

    return run, samples


def _server_note(ours: list[float], base: list[float], ops: int, what: str, sides: str) -> str:
    """'; moto CPU 3.1 vs 3.3 ms per message (sides)' (medians per call, ours vs
    baseline), or '' without figures."""
    if not ours or not base:
        return ""
    mine, theirs = (statistics.median(s) / ops * 1000 for s in (ours, base))
    return f"; moto CPU {mine:.1f} vs {theirs:.1f} ms per {what} ({sides})"


class _FreshQueues:
    """A new SQS queue, and a cloudrift backend on it warmed up untimed, for each timed run:
    moto's SQS slows down as a queue fills (and allows one PurgeQueue a minute)."""

    def __init__(self, raw: Any, creds: dict[str, str], prefix: str, warm: list[Any]) -> None:
        self._raw, self._creds, self._prefix, self._warm = raw, creds, prefix, warm
        self._made = itertools.count()
        self._url = ""
        self.queue: Any = None

    async def renew(self) -> None:
        """Drop the current queue (if any) and make the next one."""
        from cloudrift.messaging import get_queue

        await self.close()
        name = f"{self._prefix}-{next(self._made)}"
        self._url = (await self._raw.create_queue(QueueName=name))["QueueUrl"]
        self.queue = get_queue("sqs", queue_url=self._url, **self._creds)
        await self.queue.send_batch(self._warm)  # builds the client, reads the queue's limits

    async def close(self) -> None:
        """Close the backend and delete its queue."""
        if self.queue is not None:
            queue, self.queue = self.queue, None
            await queue.close()
            await self._raw.delete_queue(QueueUrl=self._url)


async def _batch_row(settings: Settings, raw: Any, creds: dict[str, str], started: str) -> Row:

    # 1,000 in full mode, as the target says; quick mode keeps it short (moto is slow).
    count = 1000 if settings.scale >= 1 else settings.n(500, minimum=25)
    payloads = [{"order": i, "item": "widget"} for i in range(count)]
    fresh = _FreshQueues(raw, creds, "bench-batch", payloads[:1])
    await fresh.renew()
    client = await fresh.queue.native()
    calls: list[str] = []

    def count_call(model: Any, **_: Any) -> None:
        calls.append(model.name)

    client.meta.events.register("before-call.sqs", count_call)
    try:
        ids = await fresh.queue.send_batch(payloads)
        batch_calls, names = len(calls), list(calls)
        calls.clear()
        # The loop's calls are counted on a tenth of the messages (it is slow on moto).
        sample = max(1, count // 10)
        for payload in payloads[:sample]:
            await fresh.queue.send(payload)
        loop_calls = len(calls)
    finally:
        client.meta.events.unregister("before-call.sqs", count_call)
    if len(set(ids)) != count:
        raise RuntimeError(f"send_batch returned {len(set(ids))} distinct ids for {count}")

    async def batch() -> None:
        await fresh.queue.send_batch(payloads)

    async def loop() -> None:
        queue = fresh.queue
        for payload in payloads:
            await queue.send(payload)

    try:
        # The send loop of 1,000 takes ~20 s on moto: 3 interleaved rounds are enough, and
        # the untimed fresh queue + client warm-up before each run replaces the warm-up.
        few = dataclasses.replace(settings, rounds=min(settings.rounds, 3), warmup=0)
        cmp = await compare(batch, loop, ops=count, settings=few, before_each=fresh.renew)
    finally:
        await fresh.close()
    row = throughput_row(
        "messaging",
        f"sqs send_batch of {count} vs {count} awaited send",
        cmp,
        unit="msgs/s",
        baseline_name="cloudrift send loop",
    )
    allowed = math.ceil(count * MAX_CALLS / 1000)  # 100 per 1,000 messages
    row.target = f"<= {allowed} API calls ({MAX_CALLS} per 1,000)"
    row.met = batch_calls <= allowed
    row.note = (
        f"send_batch made {batch_calls} SQS API calls ({', '.join(sorted(set(names)))}) for "
        f"{count} messages; a send loop made {loop_calls} for {sample}; ratio = throughput; "
        f"each timed run on a fresh queue; {started}"
    )
    return row


async def _delayed_batch_row(settings: Settings, raw: Any, moto: Any) -> Row:
    """send_batch of 1,000 on SQS standard through a 10 ms round-trip proxy: batches in
    flight (the provider's default, 8) vs the same queue with batch_send_concurrency=1."""

    count = 1000 if settings.scale >= 1 else settings.n(500, minimum=25)
    payloads = [{"order": i, "item": "widget"} for i in range(count)]

    with _servers.delay_proxy(moto.endpoint_url, REQUEST_DELAY) as proxy_url:
        creds = {**moto.credentials(), "endpoint_url": proxy_url}
        fresh = _FreshQueues(raw, creds, "bench-delayed", payloads[:1])

        async def in_flight() -> None:
            await fresh.queue.send_batch(payloads)

        async def sequential() -> None:
            fresh.queue.batch_send_concurrency = 1
            await fresh.queue.send_batch(payloads)

        await fresh.renew()
        width = fresh.queue.batch_send_concurrency
        timed_wide, cpu_wide = cpu_tracked(in_flight)
        timed_narrow, cpu_narrow = cpu_tracked(sequential)
        timed_wide, moto_wide = _server_tracked(timed_wide)
        timed_narrow, moto_narrow = _server_tracked(timed_narrow)
        try:
            few = dataclasses.replace(settings, rounds=min(settings.rounds, 5), warmup=0)
            cmp = await compare(
                timed_wide, timed_narrow, ops=count, settings=few, before_each=fresh.renew
            )
        finally:
            await fresh.close()
    row = throughput_row(
        "messaging",
        f"sqs standard send_batch of {count} through a {REQUEST_DELAY * 1000:.0f} ms "
        "round-trip proxy: batches in flight vs one after another",
        cmp,
        target=DELAYED_BATCH_TARGET,
        unit="msgs/s",
        baseline_name="same queue, batch_send_concurrency=1",
        cpu=cpu_column(cpu_wide, cpu_narrow, count, 0, "msg"),
    )
    row.note = (
        f"{width} batches of 10 in flight; the proxy (its own process) delivers every byte "
        f"{REQUEST_DELAY * 500:.0f} ms after it was sent, each way, so each request costs "
        f"one {REQUEST_DELAY * 1000:.0f} ms round trip; each timed run on a fresh queue"
        + _server_note(
            moto_wide, moto_narrow, count // 10, "batch of 10", "in flight vs one after another"
        )
        + f"; {_FAST_CLOCK_NOTE}"
    )
    return row


async def _round_trip_row(settings: Settings, ours: Any, raw: Any, raw_url: str) -> Row:
    count = settings.n(150, minimum=10)

    async def ours_send(i: int) -> None:
        await ours.send({"order": i, "item": "widget"})

    async def ours_receive() -> list[str]:
        return [m.receipt_handle for m in await ours.receive(max_messages=10, wait_time=0)]

    async def raw_send(i: int) -> None:
        await raw.send_message(
            QueueUrl=raw_url, MessageBody=json.dumps({"order": i, "item": "widget"})
        )

    async def raw_receive() -> list[str]:
        answer = await raw.receive_message(
            QueueUrl=raw_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        for msg in answer.get("Messages", []):
            json.loads(msg["Body"])  # a raw user decodes the body, as cloudrift does
        return [m["ReceiptHandle"] for m in answer.get("Messages", [])]

    async def raw_delete(handle: str) -> None:
        await raw.delete_message(QueueUrl=raw_url, ReceiptHandle=handle)

    async def ours_trip() -> None:
        await gather_n(ours_send, count, CONCURRENCY)()
        await drain_deleting(ours_receive, ours.delete, count, "cloudrift", CONCURRENCY)

    async def raw_trip() -> None:
        await gather_n(raw_send, count, CONCURRENCY)()
        await drain_deleting(raw_receive, raw_delete, count, "aioboto3", CONCURRENCY)

    timed_ours, cpu_ours = cpu_tracked(ours_trip)
    timed_raw, cpu_raw = cpu_tracked(raw_trip)
    timed_ours, moto_ours = _server_tracked(timed_ours)
    timed_raw, moto_raw = _server_tracked(timed_raw)
    few = dataclasses.replace(settings, rounds=min(settings.rounds, 5))
    cmp = await compare(timed_ours, timed_raw, ops=count, settings=few)
    server = _server_note(
        moto_ours[few.warmup :], moto_raw[few.warmup :], count, "message", "cloudrift vs aioboto3"
    )
    return throughput_row(
        "messaging",
        f"sqs send + receive + delete of {count} messages, {CONCURRENCY} concurrent",
        cmp,
        unit="msgs/s",
        target=TARGET,
        baseline_name="aioboto3",
        cpu=cpu_column(cpu_ours, cpu_raw, count, few.warmup, "msg"),
        note="each message sent, received (10 per call) and deleted; separate queues on one "
        f"moto server{server}: the server's CPU, not the client's, "
        "sets the wall figures; moto's clock made time.time() (see the delay proxy row)",
    )


async def _consume_row(
    settings: Settings, queue: Any, label: str, why: str, full: int = 200
) -> Row:
    count = settings.n(full, minimum=10)
    rounds = 1 if settings.smoke else max(3, settings.rounds // 2)
    payloads = [{"job": i} for i in range(count)]

    async def handler(message: Any) -> None:
        await asyncio.sleep(0.01)

    server: dict[int, list[float]] = {CONCURRENCY: [], 1: []}
    client: dict[int, list[float]] = {CONCURRENCY: [], 1: []}

    async def timed(concurrency: int) -> float:
        await queue.send_batch(payloads)  # untimed refill
        handled = 0

        async def work() -> None:
            nonlocal handled
            handled = await queue.consume(
                handler, concurrency=concurrency, max_messages=10, wait_time=1, limit=count
            )

        run, cpu = cpu_tracked(work)
        run, moto = _server_tracked(run)
        began = time.perf_counter()
        await run()
        elapsed = time.perf_counter() - began
        if handled != count:
            raise RuntimeError(f"consume handled {handled} of {count}")
        server[concurrency] += moto
        client[concurrency] += cpu
        return count / elapsed

    wide: list[float] = []
    narrow: list[float] = []
    for round_no in range(rounds):
        if round_no % 2 == 0:
            wide.append(await timed(CONCURRENCY))
            narrow.append(await timed(1))
        else:
            narrow.append(await timed(1))
            wide.append(await timed(CONCURRENCY))
    speedup = statistics.median(wide) / statistics.median(narrow)
    ratios = [w / n for w, n in zip(wide, narrow, strict=True)]
    return Row(
        category="messaging",
        name=f"{label} consume() concurrency {CONCURRENCY} vs 1, 10 ms handler, {count} messages",
        ours=f"{statistics.median(wide):,.0f} msgs/s (concurrency {CONCURRENCY})",
        baseline=f"{statistics.median(narrow):,.0f} msgs/s (concurrency 1)",
        ratio=speedup,
        spread=f"{min(ratios):.2f}..{max(ratios):.2f}",
        target=f">= {SPEEDUP_TARGET:.1f}x (near-linear; 10x ideal)",
        met=speedup >= SPEEDUP_TARGET,
        cpu=cpu_column(client[CONCURRENCY], client[1], count, 0, "msg"),
        note=f"{rounds} interleaved rounds; each message acked (deleted) after its handler; "
        + why
        + _server_note(
            server[CONCURRENCY], server[1], count, "message", f"concurrency {CONCURRENCY} vs 1"
        ),
    )
