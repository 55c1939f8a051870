"""The Pub/Sub stand-in speaks the REST API the raw ``gcloud-aio-pubsub`` clients use.

Every test drives the unmodified SDK clients, pointed at the stand-in the way they are
pointed at Google's emulator: ``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from gcloud.aio.pubsub import PublisherClient, PubsubMessage, SubscriberClient

from tests.servers.pubsub import PubSubEndpoint


@dataclass
class Clients:
    publisher: PublisherClient
    subscriber: SubscriberClient
    server: PubSubEndpoint

    def topic(self, name: str) -> str:
        return self.server.topic_path(name)

    def sub(self, name: str) -> str:
        return self.server.subscription_path(name)


@pytest.fixture
async def raw(pubsub: PubSubEndpoint, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Clients]:
    """The SDK's publisher and subscriber on the stand-in, via PUBSUB_EMULATOR_HOST."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub.host)
    # Empty long polls end quickly so "nothing there" checks stay fast.
    pubsub.state.max_pull_wait = 0.3
    async with aiohttp.ClientSession() as session:
        publisher = PublisherClient(session=session)  # type: ignore[arg-type]
        subscriber = SubscriberClient(session=session)  # type: ignore[arg-type]
        yield Clients(publisher, subscriber, pubsub)


async def setup(raw: Clients, *, dead_letter: bool = False, **body: object) -> None:
    """Topic ``jobs`` with subscription ``jobs-sub`` (and ``dlq`` / ``dlq-sub``)."""
    await raw.publisher.create_topic(raw.topic("jobs"))
    if dead_letter:
        await raw.publisher.create_topic(raw.topic("dlq"))
        await raw.subscriber.create_subscription(raw.sub("dlq-sub"), raw.topic("dlq"))
        body["deadLetterPolicy"] = {"deadLetterTopic": raw.topic("dlq"), "maxDeliveryAttempts": 5}
    await raw.subscriber.create_subscription(raw.sub("jobs-sub"), raw.topic("jobs"), body)


async def test_publish_then_pull_round_trips_data_and_attributes(raw: Clients) -> None:
    """Published bytes and attributes come back from pull; after an ack nothing is left."""
    await setup(raw)
    answer = await raw.publisher.publish(
        raw.topic("jobs"), [PubsubMessage(b"\x00binary\xff", trace="t-1")]
    )
    [msg] = await raw.subscriber.pull(raw.sub("jobs-sub"), 10)
    assert msg.message_id == answer["messageIds"][0]
    assert msg.data == b"\x00binary\xff" and msg.attributes == {"trace": "t-1"}
    assert msg.delivery_attempt is None  # no dead-letter policy: the API leaves it out
    await raw.subscriber.acknowledge(raw.sub("jobs-sub"), [msg.ack_id])
    assert await raw.subscriber.pull(raw.sub("jobs-sub"), 10) == []


async def test_topic_and_subscription_get_create_conflict_and_missing(raw: Clients) -> None:
    """get answers the resource; creating twice is 409; a missing topic is 404."""
    await setup(raw, ackDeadlineSeconds=30, enableMessageOrdering=True)
    sub = await raw.subscriber.get_subscription(raw.sub("jobs-sub"))
    assert sub["topic"] == raw.topic("jobs") and sub["ackDeadlineSeconds"] == 30
    assert sub["enableMessageOrdering"] is True
    with pytest.raises(aiohttp.ClientResponseError) as conflict:
        await raw.publisher.create_topic(raw.topic("jobs"))
    assert conflict.value.status == 409 and "ALREADY_EXISTS" in conflict.value.message
    with pytest.raises(aiohttp.ClientResponseError) as missing:
        await raw.publisher.publish(raw.topic("nope"), [PubsubMessage(b"x")])
    assert missing.value.status == 404 and "NOT_FOUND" in missing.value.message


async def test_expired_ack_deadline_redelivers_with_a_new_ack_id(raw: Clients) -> None:
    """An unacked message whose ack deadline passes is delivered again, attempt 2."""
    await setup(raw, dead_letter=True)
    await raw.publisher.publish(raw.topic("jobs"), [PubsubMessage(b"x")])
    [first] = await raw.subscriber.pull(raw.sub("jobs-sub"), 1)
    await raw.subscriber.modify_ack_deadline(raw.sub("jobs-sub"), [first.ack_id], 1)
    raw.server.state.max_pull_wait = 5  # the long pull returns when the lease expires
    [again] = await raw.subscriber.pull(raw.sub("jobs-sub"), 1)
    assert again.message_id == first.message_id and again.ack_id != first.ack_id
    assert (first.delivery_attempt, again.delivery_attempt) == (1, 2)


async def test_deadline_zero_is_a_nack(raw: Clients) -> None:
    """modifyAckDeadline(0) makes the message deliverable at once."""
    await setup(raw, ackDeadlineSeconds=600)
    await raw.publisher.publish(raw.topic("jobs"), [PubsubMessage(b"x")])
    [first] = await raw.subscriber.pull(raw.sub("jobs-sub"), 1)
    assert await raw.subscriber.pull(raw.sub("jobs-sub"), 1) == []
    await raw.subscriber.modify_ack_deadline(raw.sub("jobs-sub"), [first.ack_id], 0)
    [again] = await raw.subscriber.pull(raw.sub("jobs-sub"), 1)
    assert again.message_id == first.message_id


async def test_ordering_key_holds_later_messages_until_the_earlier_is_acked(
    raw: Clients,
) -> None:
    """With ordering on, a key's next message waits for the leased one; other keys flow."""
    await setup(raw, enableMessageOrdering=True)
    await raw.publisher.publish(
        raw.topic("jobs"),
        [
            PubsubMessage(b"a1", ordering_key="a"),
            PubsubMessage(b"a2", ordering_key="a"),
            PubsubMessage(b"b1", ordering_key="b"),
        ],
    )
    [a1] = await raw.subscriber.pull(raw.sub("jobs-sub"), 1)
    assert a1.data == b"a1"
    assert [m.data for m in await raw.subscriber.pull(raw.sub("jobs-sub"), 10)] == [b"b1"]
    await raw.subscriber.acknowledge(raw.sub("jobs-sub"), [a1.ack_id])
    assert [m.data for m in await raw.subscriber.pull(raw.sub("jobs-sub"), 10)] == [b"a2"]


async def test_dead_letter_policy_forwards_after_max_delivery_attempts(raw: Clients) -> None:
    """After maxDeliveryAttempts (5) deliveries the message moves to the dead-letter topic."""
    await setup(raw, dead_letter=True)
    await raw.publisher.publish(raw.topic("jobs"), [PubsubMessage(b"poison", kind="x")])
    attempts = []
    for _ in range(5):
        [msg] = await raw.subscriber.pull(raw.sub("jobs-sub"), 1)
        attempts.append(msg.delivery_attempt)
        await raw.subscriber.modify_ack_deadline(raw.sub("jobs-sub"), [msg.ack_id], 0)
    assert attempts == [1, 2, 3, 4, 5]
    assert await raw.subscriber.pull(raw.sub("jobs-sub"), 1) == []
    [dead] = await raw.subscriber.pull(raw.sub("dlq-sub"), 1)
    assert dead.data == b"poison" and dead.attributes is not None
    assert dead.attributes["kind"] == "x"
    assert dead.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"


async def test_invalid_ack_id_is_rejected_with_400(raw: Clients) -> None:
    """An ack id the server never issued answers 400 INVALID_ARGUMENT naming it."""
    await setup(raw)
    with pytest.raises(aiohttp.ClientResponseError) as bad:
        await raw.subscriber.acknowledge(raw.sub("jobs-sub"), ["garbage"])
    assert bad.value.status == 400 and "invalid ack ID" in bad.value.message


async def test_publish_over_1000_messages_is_rejected(raw: Clients) -> None:
    """A publish request of 1,001 messages answers 400; 1,000 is accepted."""
    await setup(raw)
    ok = await raw.publisher.publish(raw.topic("jobs"), [PubsubMessage(b"x")] * 1000)
    assert len(ok["messageIds"]) == 1000
    with pytest.raises(aiohttp.ClientResponseError) as bad:
        await raw.publisher.publish(raw.topic("jobs"), [PubsubMessage(b"x")] * 1001)
    assert bad.value.status == 400


async def test_seek_to_now_drops_every_published_message(raw: Clients) -> None:
    """seek(time=now) acks everything published before it (how a subscription is purged)."""
    await setup(raw)
    await raw.publisher.publish(raw.topic("jobs"), [PubsubMessage(b"x")] * 3)
    await raw.subscriber.seek(raw.sub("jobs-sub"), {"time": "2999-01-01T00:00:00Z"})
    assert await raw.subscriber.pull(raw.sub("jobs-sub"), 10) == []


async def test_long_pull_waits_for_a_message_and_skips_a_client_that_hung_up(
    raw: Clients,
) -> None:
    """A pull waits for a publish; a pull whose client gave up is never handed one."""
    await setup(raw)
    raw.server.state.max_pull_wait = 10
    with pytest.raises(TimeoutError):
        await raw.subscriber.pull(raw.sub("jobs-sub"), 1, timeout=1)
    waiting = asyncio.create_task(raw.subscriber.pull(raw.sub("jobs-sub"), 1))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await raw.publisher.publish(raw.topic("jobs"), [PubsubMessage(b"late")])
    [msg] = await asyncio.wait_for(waiting, 10)
    assert msg.data == b"late"
