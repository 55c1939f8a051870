"""Service Bus topics and subscriptions: the real ``azure-servicebus`` SDK over AMQP 1.0
against the test broker, which fans a transfer to ``<topic>`` out to every
``<topic>/Subscriptions/<name>``.

Each test gets a topic of its own (subscriptions are added to the broker as the suite
opens them, so one created after a publish does not see it, as on Service Bus), and
backends are closed in the background (see ``test_azure_bus``): nothing links one test's
receivers to another's topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from cloudrift.core.exceptions import (
    ConfigurationError,
    FeatureNotSupportedError,
    QueueNotFoundError,
    TopicNotFoundError,
)
from cloudrift.messaging import Message, Queue, Topic, get_queue, get_subscription, get_topic
from cloudrift.messaging.azure_bus import (
    AzureServiceBusQueue,
    AzureServiceBusSubscription,
    AzureServiceBusTopic,
)
from cloudrift.messaging.base import PreparedMessage, SendFailure
from tests.conformance.messaging import drain
from tests.conformance.topic import TopicConformance
from tests.servers.servicebus import ServiceBusEndpoint

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings(
        "ignore:The test <Function .* is marked with '@pytest.mark.asyncio'"
    ),
]

_CLOSING: list[asyncio.Future[None]] = []


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def _background_closes_finish() -> AsyncIterator[None]:
    """Every backend closed in the background has finished closing by the module's end."""
    yield
    outcomes = await asyncio.gather(*_CLOSING, return_exceptions=True)
    _CLOSING.clear()
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, f"closing a Service Bus backend failed: {errors!r}"


def _close_later(backend: Any) -> None:
    _CLOSING.append(asyncio.ensure_future(backend.close()))


class _BusTopicHarness(TopicConformance):
    session_enabled: ClassVar[bool] = False
    batch_parts = None  # the SDK's ServiceBusMessageBatch sizes batches itself

    @pytest_asyncio.fixture(loop_scope="module")
    async def backend(self, servicebus: ServiceBusEndpoint) -> AsyncIterator[Topic]:
        self._sb = servicebus
        self._topic = f"events-{uuid.uuid4().hex[:8]}"
        servicebus.broker.add_topic(self._topic, [], duplicate_detection=True)
        topic = get_topic(
            "azure_bus",
            connection_string=servicebus.connection_string(),
            topic_name=self._topic,
            session_enabled=self.session_enabled,
        )
        try:
            yield topic
        finally:
            _close_later(topic)

    @pytest_asyncio.fixture(loop_scope="module", autouse=True)
    async def _close_subscriptions(self) -> AsyncIterator[None]:
        self._opened = []
        yield
        for subscription in self._opened:
            _close_later(subscription)

    async def open_subscription(self, backend: Topic, name: str) -> Queue:
        self._sb.broker.add_subscription(self._topic, name, requires_session=self.session_enabled)
        return get_subscription(
            "azure_bus",
            connection_string=self._sb.connection_string(),
            topic_name=self._topic,
            subscription_name=name,
            session_enabled=self.session_enabled,
        )

    async def send_foreign(self, subscription: Queue, raw: bytes) -> None:
        # Service Bus cannot send to a subscription: a foreign producer publishes to the
        # topic; the suite's other subscriptions are not read afterwards.
        session = "foreign" if self.session_enabled else None
        client = ServiceBusClient.from_connection_string(self._sb.connection_string())
        async with client, client.get_topic_sender(self._topic) as sender:
            await sender.send_messages(ServiceBusMessage(raw, session_id=session))

    async def read_dead_letters(self, subscription: Queue, count: int) -> list[Message]:
        assert isinstance(subscription, AzureServiceBusSubscription)
        dlq = get_queue(
            "azure_bus",
            connection_string=self._sb.connection_string(),
            queue_name=f"{subscription.queue_name}/$DeadLetterQueue",
        )
        try:
            return await drain(dlq, count)
        finally:
            _close_later(dlq)

    @contextlib.contextmanager
    def failing_entry(self, backend: Topic, index: int) -> Iterator[None]:
        real = backend._send_entries

        async def with_a_failure(entries: Sequence[PreparedMessage]) -> list[str | SendFailure]:
            keep = [m for m in entries if m.index != index]
            sent = iter(await real(keep))
            return [
                SendFailure("refused by the test") if m.index == index else next(sent)
                for m in entries
            ]

        backend._send_entries = with_a_failure  # type: ignore[method-assign]
        try:
            yield
        finally:
            del backend._send_entries


class TestServiceBusTopic(_BusTopicHarness):
    """Subscriptions without sessions: group_id is refused (it is a session id)."""

    unsupported = frozenset({"groups"})


class TestServiceBusSessionTopic(_BusTopicHarness):
    """Session-enabled subscriptions: group_id is the session id and is required."""

    session_enabled = True
    requires_group_id = True


# --------------------------------------------------------------------- Service Bus specifics


async def test_sending_to_a_subscription_is_not_supported(servicebus: ServiceBusEndpoint) -> None:
    """send() on a Service Bus subscription raises FeatureNotSupportedError."""
    servicebus.broker.add_topic("t-send", ["s"])
    subscription = get_subscription(
        "azure_bus",
        connection_string=servicebus.connection_string(),
        topic_name="t-send",
        subscription_name="s",
    )
    try:
        with pytest.raises(FeatureNotSupportedError, match="publish to the topic"):
            await subscription.send({"n": 1})
    finally:
        _close_later(subscription)


async def test_missing_subscription_raises_topic_not_found_naming_it(
    servicebus: ServiceBusEndpoint,
) -> None:
    """Receiving from a subscription that does not exist raises TopicNotFoundError (a
    QueueNotFoundError) naming the topic and subscription; health_check is False."""
    subscription = get_subscription(
        "azure_bus",
        connection_string=servicebus.connection_string(),
        topic_name="no-such-topic",
        subscription_name="audit",
    )
    before = servicebus.broker.cbs_tokens_not_found
    try:
        with pytest.raises(TopicNotFoundError, match=r"no-such-topic.*'audit'") as info:
            await subscription.receive(max_messages=1, wait_time=0)
        assert isinstance(info.value, QueueNotFoundError)
        assert info.value.topic == "no-such-topic"
        # One refused token: the SDK's retries (~15 s) were not spent on it.
        assert servicebus.broker.cbs_tokens_not_found == before + 1
        assert await subscription.health_check() is False
    finally:
        _close_later(subscription)


async def test_missing_subscription_of_a_topic_raises_topic_not_found(
    servicebus: ServiceBusEndpoint,
) -> None:
    """A subscription missing from an existing topic (refused at attach, amqp:not-found)
    raises TopicNotFoundError naming both."""
    servicebus.broker.add_topic("t-nosub", [])
    subscription = get_subscription(
        "azure_bus",
        connection_string=servicebus.connection_string(),
        topic_name="t-nosub",
        subscription_name="absent",
    )
    try:
        with pytest.raises(TopicNotFoundError, match=r"t-nosub.*'absent'") as info:
            await subscription.receive(max_messages=1, wait_time=0)
        assert info.value.topic == "t-nosub"
        assert "could not be found" in str(info.value)
    finally:
        _close_later(subscription)


@pytest.mark.parametrize("how", ["publish", "publish_batch", "health_check"])
async def test_missing_topic_is_reported_on_the_first_attempt(
    servicebus: ServiceBusEndpoint, how: str
) -> None:
    """publish and publish_batch to a topic that does not exist raise TopicNotFoundError
    naming it (a batch: not a failure per entry) after one refused token, with the
    default retries; health_check() is False."""
    topic = get_topic(
        "azure_bus", connection_string=servicebus.connection_string(), topic_name="no-topic"
    )
    before = servicebus.broker.cbs_tokens_not_found
    try:
        if how == "health_check":
            assert await topic.health_check() is False
        else:
            batch = [{"n": i} for i in range(3)]
            call = topic.publish(batch[0]) if how == "publish" else topic.publish_batch(batch)
            with pytest.raises(TopicNotFoundError, match="'no-topic'") as info:
                await call
            assert info.value.topic == "no-topic"
        assert servicebus.broker.cbs_tokens_not_found == before + 1
    finally:
        _close_later(topic)


_CONNECTION = "Endpoint=sb://h/;SharedAccessKeyName=k;SharedAccessKey=v"


@pytest.mark.parametrize(
    ("backend", "names"),
    [
        (AzureServiceBusQueue, {"queue_name": "q"}),
        (AzureServiceBusTopic, {"topic_name": "t"}),
        (AzureServiceBusSubscription, {"topic_name": "t", "subscription_name": "s"}),
    ],
)
def test_an_unknown_option_is_a_configuration_error_naming_the_closest(
    backend: type, names: dict[str, str]
) -> None:
    """Queue, topic and subscription share one auth option group: a misspelled option
    given to the class itself raises ConfigurationError suggesting the right name."""
    with pytest.raises(ConfigurationError, match="did you mean 'tenant_id'"):
        backend(**names, connection_string=_CONNECTION, tenant="x")
    with pytest.raises(ConfigurationError, match="did you mean 'connection_string'"):
        backend(**names, conection_string=_CONNECTION)
