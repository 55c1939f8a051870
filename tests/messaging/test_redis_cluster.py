"""The redis queue on a real Redis Cluster: every key of a queue in one slot (hash tag),
the messaging conformance suite, and dead-letter streams checked against the slot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.redis import key_slot
from cloudrift.messaging import Message, Queue, get_queue
from cloudrift.messaging.redis_streams import RedisStreamQueue
from cloudrift.messaging.redis_topic import RedisSubscription, RedisTopic
from tests.conformance.messaging import MessagingConformance, drain
from tests.servers.redis_cluster import RedisClusterServer


class TestRedisStreamQueueOnCluster(MessagingConformance):
    """Redis Streams on a 6-node cluster: the same contract as on one node."""

    unsupported = frozenset({"groups", "dedup", "group_receive"})

    @pytest.fixture
    async def backend(self, redis_cluster: RedisClusterServer) -> AsyncIterator[Queue]:
        self._cluster = redis_cluster
        queue = get_queue(
            "redis", url=redis_cluster.url, queue_name="jobs", poll_interval=0.02, cluster=True
        )
        try:
            yield queue
        finally:
            await queue.close()

    async def send_foreign(self, backend: Queue, raw: bytes) -> None:
        client = await backend.native()
        await client.xadd("{jobs}", {"body": raw, "producer": "legacy"})

    async def read_dead_letters(self, backend: Queue, count: int) -> list[Message]:
        async with get_queue(
            "redis", url=self._cluster.url, queue_name="{jobs}:dead", cluster=True
        ) as dlq:
            return await drain(dlq, count)


def test_every_key_of_a_cluster_queue_shares_one_slot() -> None:
    """On a cluster the stream, inflight, delayed and dead keys carry the queue's hash tag."""
    q = RedisStreamQueue(url="redis://localhost:7000", queue_name="jobs", cluster=True)
    keys = [q.stream, q._inflight_key, q._delayed_key, q.dead_letter_stream]
    assert keys == ["{jobs}", "{jobs}:inflight", "{jobs}:delayed", "{jobs}:dead"]
    assert len({key_slot(k) for k in keys}) == 1


def test_single_node_queue_keys_are_unchanged() -> None:
    """Without cluster=True the key names stay as before (existing data stays reachable)."""
    q = RedisStreamQueue(url="redis://localhost:6379", queue_name="jobs")
    assert [q.stream, q._inflight_key, q.dead_letter_stream] == [
        "jobs",
        "jobs:inflight",
        "jobs:dead",
    ]


def test_a_tagged_queue_name_is_used_as_is() -> None:
    """A name already holding a hash tag keeps it, so "{jobs}:dead" names the DLQ stream."""
    q = RedisStreamQueue(url="redis://localhost:7000", queue_name="{jobs}:dead", cluster=True)
    assert q.stream == "{jobs}:dead" and q._inflight_key == "{jobs}:dead:inflight"


def test_dead_letter_stream_in_another_slot_is_refused() -> None:
    """A dead_letter_stream outside the queue's slot raises ConfigurationError naming the tag."""
    with pytest.raises(ConfigurationError, match=r"same hash tag"):
        RedisStreamQueue(
            url="redis://localhost:7000",
            queue_name="jobs",
            dead_letter_stream="failed-jobs",
            cluster=True,
        )


async def test_redis_topic_and_subscription_work_on_a_cluster(
    redis_cluster: RedisClusterServer,
) -> None:
    """A redis topic publishes to the tagged stream its subscription reads; keys share a slot."""
    sub = RedisSubscription(
        stream="events", group="audit", url=redis_cluster.url, start="earliest", cluster=True
    )
    keys = [sub.stream, sub._inflight_key, sub._delayed_key, sub.dead_letter_stream]
    assert keys[0] == "{events}" and len({key_slot(k) for k in keys}) == 1
    async with (
        RedisTopic(stream="events", url=redis_cluster.url, cluster=True) as topic,
        sub,
    ):
        await topic.publish({"n": 1})
        [msg] = await sub.receive(wait_time=2)
        assert msg.body == {"n": 1}
        await sub.delete(msg.receipt_handle)
