"""Redis topics (one stream, a consumer group per subscription) pass the topic
conformance suite on a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from cloudrift.core.exceptions import ConfigurationError, FeatureNotSupportedError
from cloudrift.messaging import Message, Queue, Topic, get_queue, get_subscription, get_topic
from cloudrift.messaging.provision import create_redis_group
from cloudrift.messaging.redis_topic import RedisSubscription, RedisTopic
from tests.conformance.messaging import drain
from tests.conformance.topic import TopicConformance
from tests.servers.redis import RedisServer


class TestRedisTopic(TopicConformance):
    """Redis topic: no groups or dedup (as the redis queue); 100 entries per pipeline."""

    unsupported = frozenset({"groups", "dedup"})
    batch_parts = (25,)
    # XADD is done when publish returns; every group can read the entry at once.
    settle_wait = 0.0

    @pytest.fixture
    async def backend(self, redis: RedisServer) -> AsyncIterator[Topic]:
        self._server = redis
        topic = get_topic("redis", url=redis.url, stream=f"events-{uuid.uuid4().hex[:8]}")
        try:
            yield topic
        finally:
            await topic.close()

    async def open_subscription(self, backend: Topic, name: str) -> Queue:
        assert isinstance(backend, RedisTopic)
        await create_redis_group(backend.stream, name, url=self._server.url)
        return get_subscription(
            "redis", url=self._server.url, stream=backend.stream, group=name, poll_interval=0.02
        )

    async def send_foreign(self, subscription: Queue, raw: bytes) -> None:
        assert isinstance(subscription, RedisSubscription)
        with self._server.client() as client:
            client.xadd(subscription.stream, {"body": raw, "producer": "legacy"})

    async def read_dead_letters(self, subscription: Queue, count: int) -> list[Message]:
        assert isinstance(subscription, RedisSubscription)
        async with get_queue(
            "redis", url=self._server.url, queue_name=subscription.dead_letter_stream
        ) as dlq:
            return await drain(dlq, count)


async def test_group_starts_at_the_end_unless_earliest(redis: RedisServer) -> None:
    """A new group sees only later messages by default; start="earliest" sees the backlog."""
    async with get_topic("redis", url=redis.url, stream="s") as topic:
        await topic.publish({"n": "old"})
        async with (
            get_subscription("redis", url=redis.url, stream="s", group="new") as new,
            get_subscription(
                "redis", url=redis.url, stream="s", group="all", start="earliest"
            ) as everything,
        ):
            assert await new.receive(max_messages=10) == []  # creates the group at the end
            await topic.publish({"n": "fresh"})
            assert [m.body["n"] for m in await drain(everything, 2, ack=True)] == [
                "old",
                "fresh",
            ]
            assert [m.body["n"] for m in await drain(new, 1, ack=True)] == ["fresh"]


async def test_max_len_trims_the_stream(redis: RedisServer) -> None:
    """With max_len the stream stays near that length (MAXLEN ~) however much is published."""
    async with get_topic("redis", url=redis.url, stream="trimmed", max_len=100) as topic:
        for _ in range(10):
            await topic.publish_batch([{"n": n} for n in range(100)])
        with redis.client() as client:
            length = client.xlen("trimmed")
        assert 100 <= length < 1000


async def test_acked_entries_stay_for_other_groups(redis: RedisServer) -> None:
    """Acking on one group leaves the entry on the stream (another group still reads it)."""
    await create_redis_group("keep", "one", url=redis.url)
    await create_redis_group("keep", "two", url=redis.url)
    async with (
        get_topic("redis", url=redis.url, stream="keep") as topic,
        get_subscription("redis", url=redis.url, stream="keep", group="one") as one,
    ):
        await topic.publish({"n": 1})
        await drain(one, 1, ack=True)
        with redis.client() as client:
            assert client.xlen("keep") == 1


async def test_sending_to_a_subscription_is_not_supported(redis: RedisServer) -> None:
    """send() / send_batch() on a redis subscription raise FeatureNotSupportedError."""
    async with get_subscription("redis", url=redis.url, stream="s", group="g") as sub:
        with pytest.raises(FeatureNotSupportedError, match="publish to the topic"):
            await sub.send({"n": 1})
        with pytest.raises(FeatureNotSupportedError, match="publish to the topic"):
            await sub.send_batch([{"n": 1}])


async def test_purge_drops_only_this_groups_backlog(redis: RedisServer) -> None:
    """purge() on one subscription empties it and leaves the other group's messages."""
    await create_redis_group("p", "one", url=redis.url)
    await create_redis_group("p", "two", url=redis.url)
    async with (
        get_topic("redis", url=redis.url, stream="p") as topic,
        get_subscription("redis", url=redis.url, stream="p", group="one") as one,
        get_subscription("redis", url=redis.url, stream="p", group="two") as two,
    ):
        await topic.publish_batch([{"n": n} for n in range(3)])
        await one.receive()  # one message in flight, two waiting
        await one.purge()
        assert await one.receive(max_messages=10) == []
        assert len(await drain(two, 3, ack=True)) == 3


async def test_bad_start_and_max_len_are_configuration_errors(redis: RedisServer) -> None:
    """start must be latest/earliest and max_len a positive int."""
    with pytest.raises(ConfigurationError, match="start"):
        get_subscription("redis", url=redis.url, stream="s", group="g", start="beginning")
    with pytest.raises(ConfigurationError, match="max_len"):
        get_topic("redis", url=redis.url, stream="s", max_len=0)
