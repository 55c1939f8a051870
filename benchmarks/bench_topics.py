"""Topics: cloudrift's ``sns`` topic with ``sqs`` subscriptions on moto's server.

- ``publish_batch`` of 1,000 messages vs 1,000 awaited ``publish`` calls (both
  cloudrift), with the SNS API calls counted from botocore's own ``before-call`` event
  (target: at most 100 ``PublishBatch`` calls, 10 entries each).
- publish + fan-out to 2 SQS subscriptions + receive (10 per call) + delete of every
  copy vs the same through raw aioboto3 (``sns.publish``; ``sqs.receive_message``, the
  SNS envelope and the payload decoded as cloudrift does, ``sqs.delete_message``), on a
  topic and two queues of its own per side, 10 concurrent tasks (target: ratio >= 0.95).
  Raw message delivery is off on every subscription, so both sides unwrap the envelope.
  moto answers every request on a new connection; the client CPU column gives each side's CPU
  per delivered message (``cpu_tracked``: this process's CPU time), the figure that
  says what cloudrift itself costs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from typing import Any

from benchmarks import _servers
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
MAX_CALLS = 100
CONCURRENCY = 10
FAN_OUT = 2


async def run(settings: Settings) -> list[Row]:
    """publish_batch vs publish loop (API calls counted); fan-out round trip vs aioboto3."""
    import aioboto3
    from aiobotocore.config import AioConfig

    rows: list[Row] = []
    with _servers.moto() as moto:
        started = _servers.started_note("moto")
        session = aioboto3.Session(
            aws_access_key_id=moto.access_key,
            aws_secret_access_key=moto.secret_key,
            region_name=moto.region,
        )
        config = AioConfig(max_pool_connections=50)
        async with (
            session.client("sns", endpoint_url=moto.endpoint_url, config=config) as sns,
            session.client("sqs", endpoint_url=moto.endpoint_url, config=config) as sqs,
        ):
            creds = moto.credentials()
            rows.append(await _batch_row(settings, sns, creds, started))
            rows.append(await _fan_out_row(settings, sns, sqs, creds))
    return rows


async def _batch_row(settings: Settings, sns: Any, creds: dict[str, str], started: str) -> Row:
    from cloudrift.messaging import get_topic

    # 1,000 in full mode, as the target says; quick and smoke modes keep it short.
    count = 1000 if settings.scale >= 1 else settings.n(500, minimum=25)
    payloads = [{"order": i, "item": "widget"} for i in range(count)]
    # No subscription: the row measures publishing, not moto's deliveries.
    arn = (await sns.create_topic(Name=f"bench-batch-{uuid.uuid4().hex[:8]}"))["TopicArn"]
    async with get_topic("sns", topic_arn=arn, **creds) as topic:
        await topic.publish_batch(payloads[:1])  # builds the client
        client = await topic.native()  # type: ignore[attr-defined]
        calls: list[str] = []

        def count_call(model: Any, **_: Any) -> None:
            calls.append(model.name)

        client.meta.events.register("before-call.sns", count_call)
        try:
            ids = await topic.publish_batch(payloads)
            batch_calls, names = len(calls), sorted(set(calls))
            calls.clear()
            # The loop's calls are counted on a tenth of the messages (slow on moto).
            sample = max(1, count // 10)
            for payload in payloads[:sample]:
                await topic.publish(payload)
            loop_calls = len(calls)
        finally:
            client.meta.events.unregister("before-call.sns", count_call)
        if len(set(ids)) != count:
            raise RuntimeError(f"publish_batch returned {len(set(ids))} distinct ids for {count}")

        async def batch() -> None:
            await topic.publish_batch(payloads)

        async def loop() -> None:
            for payload in payloads:
                await topic.publish(payload)

        few = dataclasses.replace(settings, rounds=min(settings.rounds, 3), warmup=0)
        cmp = await compare(batch, loop, ops=count, settings=few)
    row = throughput_row(
        "topics",
        f"sns publish_batch of {count} vs {count} awaited publish",
        cmp,
        unit="msgs/s",
        baseline_name="cloudrift publish loop",
    )
    allowed = math.ceil(count * MAX_CALLS / 1000)  # 100 per 1,000 messages
    row.target = f"<= {allowed} API calls ({MAX_CALLS} per 1,000)"
    row.met = batch_calls <= allowed
    row.note = (
        f"publish_batch made {batch_calls} SNS API calls ({', '.join(names)}) for {count} "
        f"messages; a publish loop made {loop_calls} for {sample}; ratio = throughput; "
        f"{started}"
    )
    return row


async def _subscribed(sns: Any, sqs: Any, side: str) -> tuple[str, list[str]]:
    """A topic and ``FAN_OUT`` queues subscribed to it (raw delivery off): (arn, urls)."""
    tag = uuid.uuid4().hex[:8]
    arn = (await sns.create_topic(Name=f"bench-{side}-{tag}"))["TopicArn"]
    urls = []
    for n in range(FAN_OUT):
        url = (await sqs.create_queue(QueueName=f"bench-{side}-{tag}-{n}"))["QueueUrl"]
        queue_arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        await sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
        urls.append(url)
    return arn, urls


async def _fan_out_row(settings: Settings, sns: Any, sqs: Any, creds: dict[str, str]) -> Row:
    from cloudrift.messaging import get_subscription, get_topic

    count = settings.n(100, minimum=4)
    ours_arn, ours_urls = await _subscribed(sns, sqs, "ours")
    raw_arn, raw_urls = await _subscribed(sns, sqs, "raw")

    topic = get_topic("sns", topic_arn=ours_arn, **creds)
    subscriptions = [get_subscription("sqs", queue_url=url, **creds) for url in ours_urls]

    async def ours_publish(i: int) -> None:
        await topic.publish({"order": i, "item": "widget"})

    async def ours_trip() -> None:
        await gather_n(ours_publish, count, CONCURRENCY)()
        for sub in subscriptions:

            async def receive(sub: Any = sub) -> list[str]:
                got = await sub.receive(max_messages=10, wait_time=0)
                return [m.receipt_handle for m in got]

            await drain_deleting(receive, sub.delete, count, "cloudrift", CONCURRENCY)

    async def raw_publish(i: int) -> None:
        await sns.publish(TopicArn=raw_arn, Message=json.dumps({"order": i, "item": "widget"}))

    async def raw_trip() -> None:
        await gather_n(raw_publish, count, CONCURRENCY)()
        for url in raw_urls:

            async def receive(url: str = url) -> list[str]:
                answer = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
                )
                for msg in answer.get("Messages", []):
                    # A raw user unwraps the SNS envelope and decodes the payload, as
                    # cloudrift's subscription does.
                    json.loads(json.loads(msg["Body"])["Message"])
                return [m["ReceiptHandle"] for m in answer.get("Messages", [])]

            async def delete(handle: str, url: str = url) -> None:
                await sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)

            await drain_deleting(receive, delete, count, "aioboto3", CONCURRENCY)

    ours_work, ours_cpu = cpu_tracked(ours_trip)
    raw_work, raw_cpu = cpu_tracked(raw_trip)
    few = dataclasses.replace(settings, rounds=min(settings.rounds, 5))
    try:
        cmp = await compare(ours_work, raw_work, ops=count, settings=few)
    finally:
        await topic.close()
        for sub in subscriptions:
            await sub.close()
    cpu = cpu_column(ours_cpu, raw_cpu, ops=count * FAN_OUT, warmup=few.warmup, unit="delivery")
    return throughput_row(
        "topics",
        f"sns publish + fan-out to {FAN_OUT} sqs subscriptions + receive + delete of {count} "
        f"messages, {CONCURRENCY} concurrent",
        cmp,
        unit="msgs/s",
        target=TARGET,
        baseline_name="aioboto3",
        note=(
            f"msgs/s = messages published per second, each delivered to {FAN_OUT} queues and "
            "received (10 per call) and deleted there; raw delivery off on both sides; "
            "client CPU is per delivered message; moto's request rate sets "
            "the wall figures; separate topics and queues on one moto server"
        ),
        cpu=cpu,
    )
