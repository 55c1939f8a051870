"""The SQS benchmark's stand-in helpers keep their promises: the delay proxy adds one
round trip per request and carries every byte both ways; moto's fast clock tells the
same time as moto's own."""

from __future__ import annotations

import datetime
import time

import moto.core.utils as moto_utils

from benchmarks import _servers
from benchmarks._moto_fast_clock import unix_time, unix_time_millis
from cloudrift.messaging import get_queue
from tests.messaging.test_sqs import sqs_client
from tests.servers.moto import MotoEndpoint

ROUND_TRIP = 0.05


async def test_delay_proxy_adds_a_round_trip_and_carries_both_ways(moto: MotoEndpoint) -> None:
    """Through the proxy a request takes at least one round trip; a big body arrives intact."""
    url = sqs_client(moto).create_queue(QueueName="through-proxy")["QueueUrl"]
    with _servers.delay_proxy(moto.endpoint_url, ROUND_TRIP) as proxy_url:
        creds = {**moto.credentials(), "endpoint_url": proxy_url}
        async with get_queue("sqs", queue_url=url, **creds) as queue:
            began = time.perf_counter()
            assert await queue.health_check() is True
            assert time.perf_counter() - began >= ROUND_TRIP
            payload = {"blob": "x" * 200_000}  # several reads and writes each way
            await queue.send(payload)
            got = await queue.receive(max_messages=1, wait_time=2)
            assert [m.body for m in got] == [payload]


def test_fast_clock_tells_moto_the_same_time() -> None:
    """The benchmark's moto clock gives moto's own values, now and for a given datetime."""
    assert abs(unix_time() - moto_utils.unix_time()) < 0.5
    assert abs(unix_time_millis() - moto_utils.unix_time_millis()) < 500
    then = datetime.datetime(2026, 11, 30, 17, 0, 0, 123000)
    assert unix_time(then) == moto_utils.unix_time(then)
    assert unix_time_millis(then) == moto_utils.unix_time_millis(then)
