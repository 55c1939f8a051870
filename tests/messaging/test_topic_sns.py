"""SNS topics with SQS subscriptions pass the topic conformance suite on moto, with raw
message delivery on and off, standard and FIFO."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import boto3
import pytest

from cloudrift.core.exceptions import (
    InvalidMessageError,
    MessageSendError,
    MessageTooLargeError,
    QueueNotFoundError,
    TopicNotFoundError,
)
from cloudrift.messaging import (
    Message,
    Queue,
    Topic,
    get_queue,
    get_subscription,
    get_topic,
)
from cloudrift.messaging.base import SendLimits
from cloudrift.messaging.provision import create_sns_topic, subscribe_sqs_queue
from cloudrift.messaging.sns import SNSTopic
from cloudrift.messaging.sqs import SQSSubscription
from tests.conformance.messaging import drain
from tests.conformance.topic import TopicConformance
from tests.servers.moto import MotoEndpoint


def _sqs(moto: MotoEndpoint) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=moto.endpoint_url,
        region_name=moto.region,
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
    )


class _SNSHarness(TopicConformance):
    raw_delivery: ClassVar[bool] = False
    fifo: ClassVar[bool] = False
    # moto delivers to the subscribed queues inside the Publish call itself.
    settle_wait = 0.0

    @pytest.fixture
    async def backend(self, moto: MotoEndpoint) -> AsyncIterator[Topic]:
        self._moto = moto
        self._dlqs: dict[str, str] = {}
        arn = await create_sns_topic(
            f"events-{uuid.uuid4().hex[:8]}", fifo=self.fifo, **moto.credentials()
        )
        topic = get_topic("sns", topic_arn=arn, **moto.credentials())
        try:
            yield topic
        finally:
            await topic.close()

    async def open_subscription(self, backend: Topic, name: str) -> Queue:
        assert isinstance(backend, SNSTopic)
        info = await subscribe_sqs_queue(
            backend.topic_arn, name, raw_delivery=self.raw_delivery, **self._moto.credentials()
        )
        assert info.dlq_url is not None
        self._dlqs[info.queue_url] = info.dlq_url
        return get_subscription(
            "sqs", queue_url=info.queue_url, dlq_url=info.dlq_url, **self._moto.credentials()
        )

    async def send_foreign(self, subscription: Queue, raw: bytes) -> None:
        assert isinstance(subscription, SQSSubscription)
        params: dict[str, Any] = {"QueueUrl": subscription.queue_url, "MessageBody": raw.decode()}
        if self.fifo:
            params["MessageGroupId"] = "foreign"
        _sqs(self._moto).send_message(**params)

    async def read_dead_letters(self, subscription: Queue, count: int) -> list[Message]:
        assert isinstance(subscription, SQSSubscription)
        dlq_url = self._dlqs[subscription.queue_url]
        async with get_queue("sqs", queue_url=dlq_url, **self._moto.credentials()) as dlq:
            return await drain(dlq, count)


class TestSNSEnvelope(_SNSHarness):
    """Standard topic, raw delivery off: the subscription unwraps SNS's JSON envelope."""

    unsupported = frozenset({"groups", "dedup"})


class TestSNSRawDelivery(_SNSHarness):
    """Standard topic, raw delivery on: body and attributes arrive as published."""

    raw_delivery = True
    unsupported = frozenset({"groups", "dedup"})


class TestSNSFifo(_SNSHarness):
    """FIFO topic (.fifo) with FIFO queues, raw delivery off: groups and dedup."""

    fifo = True
    requires_group_id = True


class TestSNSFifoRawDelivery(TestSNSFifo):
    """FIFO topic with raw delivery on."""

    raw_delivery = True


# --------------------------------------------------------------------- SNS specifics


async def test_unknown_topic_raises_topic_not_found_naming_it_fast(moto: MotoEndpoint) -> None:
    """Publishing to a topic that does not exist raises TopicNotFoundError naming the ARN."""
    arn = f"arn:aws:sns:{moto.region}:123456789012:no-such-topic"
    async with get_topic("sns", topic_arn=arn, **moto.credentials()) as topic:
        began = time.monotonic()
        with pytest.raises(TopicNotFoundError, match="no-such-topic") as info:
            await topic.publish({"n": 1})
        assert time.monotonic() - began < 5
        assert isinstance(info.value, QueueNotFoundError) and info.value.topic == arn
        assert await topic.health_check() is False


async def test_publish_batch_to_an_unknown_topic_raises_topic_not_found(
    moto: MotoEndpoint,
) -> None:
    """publish_batch of 25 to a topic that does not exist raises TopicNotFoundError naming
    the ARN (not a MessageSendError per entry), each of the 3 parts refused once at most."""
    arn = f"arn:aws:sns:{moto.region}:123456789012:no-such-topic"
    async with get_topic("sns", topic_arn=arn, **moto.credentials()) as topic:
        client = await topic.native()  # type: ignore[attr-defined]
        calls: list[str] = []
        client.meta.events.register(
            "before-call.sns.*", lambda model, **_: calls.append(model.name)
        )
        with pytest.raises(TopicNotFoundError, match="no-such-topic") as info:
            await topic.publish_batch([{"n": n} for n in range(25)])
        assert info.value.topic == arn
        assert 1 <= len(calls) <= 3 and set(calls) == {"PublishBatch"}


async def test_bad_topic_arn_is_a_configuration_error() -> None:
    """A topic_arn that is not an SNS ARN is refused when the topic is built."""
    from cloudrift.core.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="topic_arn"):
        get_topic("sns", topic_arn="https://sns.example/events", region="us-east-1")


async def test_publish_batch_of_1000_takes_100_calls(moto: MotoEndpoint) -> None:
    """publish_batch of 1,000 messages is 100 PublishBatch calls of 10."""
    arn = await create_sns_topic("many", **moto.credentials())
    async with get_topic("sns", topic_arn=arn, **moto.credentials()) as topic:
        client = await topic.native()  # type: ignore[attr-defined]
        calls: list[str] = []
        client.meta.events.register(
            "before-call.sns.*", lambda model, **_: calls.append(model.name)
        )
        ids = await topic.publish_batch([{"n": n} for n in range(1000)])
        assert len(set(ids)) == 1000
        assert calls == ["PublishBatch"] * 100


async def test_fifo_topic_without_group_id_is_rejected_before_sending(
    moto: MotoEndpoint,
) -> None:
    """A FIFO topic refuses publish() without group_id, naming the fix, nothing sent."""
    arn = await create_sns_topic("orders", fifo=True, **moto.credentials())
    async with get_topic("sns", topic_arn=arn, **moto.credentials()) as topic:
        with pytest.raises(InvalidMessageError, match="group_id"):
            await topic.publish({"n": 1})


async def test_oversized_publish_names_the_sns_limit(moto: MotoEndpoint) -> None:
    """A message over 256 KiB raises MessageTooLargeError naming 262144."""
    arn = await create_sns_topic("big", **moto.credentials())
    async with get_topic("sns", topic_arn=arn, **moto.credentials()) as topic:
        with pytest.raises(MessageTooLargeError, match="262144"):
            await topic.publish({"x": "y" * 262144})


async def test_plain_sqs_message_that_looks_like_json_is_not_unwrapped(
    moto: MotoEndpoint,
) -> None:
    """Only a real SNS notification envelope is unwrapped; other JSON stays the payload."""
    url = str(_sqs(moto).create_queue(QueueName="plain")["QueueUrl"])
    body = {"Type": "Other", "Message": "inner", "TopicArn": "x"}
    _sqs(moto).send_message(QueueUrl=url, MessageBody=json.dumps(body))
    async with get_subscription("sqs", queue_url=url, **moto.credentials()) as sub:
        [msg] = await drain(sub, 1)
        assert msg.body == body


class _ServerSideLimitsOnly(SNSTopic):
    """Test subclass: lifts the client-side size check so SNS refuses the entry itself."""

    async def _limits(self) -> SendLimits:
        return SendLimits(10 * 1024 * 1024, 10, 10 * 1024 * 1024)


async def test_entry_sns_refuses_is_reported_with_the_others_ids(moto: MotoEndpoint) -> None:
    """When SNS refuses one PublishBatch entry, MessageSendError names it (with SNS's
    reason) and lists the ids of the entries it published."""
    arn = await create_sns_topic("partial", **moto.credentials())
    info = await subscribe_sqs_queue(arn, "partial", **moto.credentials())
    topic = _ServerSideLimitsOnly(topic_arn=arn, **moto.credentials())
    subscription = get_subscription("sqs", queue_url=info.queue_url, **moto.credentials())
    async with topic, subscription:
        entries: list[Any] = [{"n": n} for n in range(12)]
        entries[11] = {"n": 11, "pad": "x" * 262144}
        with pytest.raises(MessageSendError) as caught:
            await topic.publish_batch(entries)
        err = caught.value
        assert set(err.failed) == {11} and "too long" in err.failed[11].lower()
        assert set(err.succeeded) == set(range(11))
        got = await drain(subscription, 11, ack=True)
        assert sorted(m.body["n"] for m in got) == list(range(11))
