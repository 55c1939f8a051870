"""The memory topic passes the topic conformance suite; its subscriptions pass the queue suite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.messaging import Message, Queue, Topic, get_subscription, get_topic
from cloudrift.messaging.memory_topic import MemorySubscription, MemoryTopic
from tests.clock import FakeClock
from tests.conformance.messaging import MessagingConformance, drain
from tests.conformance.topic import TopicConformance


def _name() -> str:
    return f"events-{uuid.uuid4().hex[:8]}"


class TestMemoryTopic(TopicConformance):
    """Memory topic: every capability; a fresh topic name per test."""

    settle_wait = 0.0

    @pytest.fixture
    async def backend(self) -> AsyncIterator[Topic]:
        topic = get_topic("memory", topic=_name())
        try:
            yield topic
        finally:
            await topic.close()

    async def open_subscription(self, backend: Topic, name: str) -> Queue:
        assert isinstance(backend, MemoryTopic)
        return get_subscription("memory", topic=backend.name, subscription=name)

    async def send_foreign(self, subscription: Queue, raw: bytes) -> None:
        assert isinstance(subscription, MemorySubscription)
        await subscription.inject_raw(raw)

    async def read_dead_letters(self, subscription: Queue, count: int) -> list[Message]:
        assert isinstance(subscription, MemorySubscription)
        return await drain(subscription.dead_letter_queue, count)


class TestMemoryFifoTopic(TestMemoryTopic):
    """Memory topic with fifo=True: every publish carries a group."""

    requires_group_id = True

    @pytest.fixture
    async def backend(self) -> AsyncIterator[Topic]:
        topic = get_topic("memory", topic=_name(), fifo=True)
        try:
            yield topic
        finally:
            await topic.close()


class TestMemorySubscriptionIsAQueue(MessagingConformance):
    """A memory subscription passes the whole queue suite (send puts on it alone)."""

    @pytest.fixture
    async def backend(self) -> AsyncIterator[Queue]:
        self._clock = FakeClock()
        subscription = get_subscription(
            "memory", topic=_name(), subscription="audit", clock=self._clock
        )
        try:
            yield subscription
        finally:
            await subscription.close()

    async def pass_time(self, backend: Queue, seconds: float) -> None:
        await self._clock.advance(seconds)

    async def send_foreign(self, backend: Queue, raw: bytes) -> None:
        assert isinstance(backend, MemorySubscription)
        await backend.inject_raw(raw)

    async def read_dead_letters(self, backend: Queue, count: int) -> list[Message]:
        assert isinstance(backend, MemorySubscription)
        return await drain(backend.dead_letter_queue, count)


async def test_two_objects_on_one_subscription_compete_for_its_messages() -> None:
    """Two objects opened on one subscription share it: each message goes to one of them."""
    name = _name()
    async with (
        get_topic("memory", topic=name) as topic,
        get_subscription("memory", topic=name, subscription="w") as one,
        get_subscription("memory", topic=name, subscription="w") as two,
    ):
        await topic.publish_batch([{"n": n} for n in range(4)])
        got = await drain(one, 2, ack=True) + await drain(two, 2, ack=True)
        assert sorted(m.body["n"] for m in got) == [0, 1, 2, 3]


async def test_closing_a_subscription_object_keeps_its_messages() -> None:
    """Closing one subscription object leaves the subscription receiving for the next."""
    name = _name()
    async with get_topic("memory", topic=name) as topic:
        first = get_subscription("memory", topic=name, subscription="s")
        await first.close()
        await topic.publish({"n": 1})
        async with get_subscription("memory", topic=name, subscription="s") as again:
            [msg] = await drain(again, 1)
            assert msg.body == {"n": 1}


async def test_unknown_provider_lists_the_valid_ones() -> None:
    """get_topic / get_subscription with an unknown provider name the valid choices."""
    with pytest.raises(ConfigurationError, match=r"unknown topic provider 'memroy'.*memory"):
        get_topic("memroy")
    with pytest.raises(ConfigurationError, match="unknown subscription provider"):
        get_subscription("nope", subscription="x")


async def test_misspelled_option_is_rejected() -> None:
    """A misspelled option raises ConfigurationError instead of being ignored."""
    with pytest.raises(ConfigurationError, match="topik"):
        get_topic("memory", topik="events")


async def test_a_topic_is_forgotten_once_every_object_on_it_is_closed() -> None:
    """After every topic and subscription object of a name closed, reopening starts empty
    (one app's or test's events never leak into the next)."""
    name = _name()
    async with (
        get_topic("memory", topic=name) as topic,
        get_subscription("memory", topic=name, subscription="s"),
    ):
        await topic.publish({"n": 1})
    async with get_subscription("memory", topic=name, subscription="s") as again:
        assert await again.receive(max_messages=10) == []
