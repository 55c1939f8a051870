"""Azure Service Bus: the real ``azure-servicebus`` SDK over AMQP 1.0 against the test broker.

First the broker itself is proven with the raw SDK (so the adapter's tests stand on a
stand-in that speaks what the SDK really sends), then the adapter runs the messaging
conformance suite on a plain and a session-enabled queue, then every row of the seed's
FIFO / sessions table for Service Bus, the pitfalls, auth, errors and secrets.

Speed without less realism: closing an SDK link sends its detach at once and then waits
up to 1 s for the link's keep-alive loop (~0.5-1 s per backend, checked by nothing).
Every test of this module runs on one event loop, and a backend is closed in the
background (:func:`opened`, the conformance ``backend`` fixture): the test waits only
until the broker has seen every receiver link detach (so no link of this test can take
a message of the next), and the rest of the close finishes while later tests run. All
closes are awaited at the end of the module; one that failed fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.amqp import AmqpAnnotatedMessage
from azure.servicebus.exceptions import (
    MessageLockLostError,
    ServiceBusAuthenticationError,
    ServiceBusConnectionError,
    ServiceBusError,
)

from cloudrift.core.exceptions import (
    BackendClosedError,
    ConfigurationError,
    FeatureNotSupportedError,
    MessagingConnectionError,
    MessagingError,
    MessagingPermissionError,
    QueueNotFoundError,
    ReceiptHandleError,
)
from cloudrift.messaging import Message, OutgoingMessage, Queue, get_queue
from cloudrift.messaging.azure_bus import AzureServiceBusQueue
from tests.conformance.messaging import MessagingConformance, drain
from tests.servers._process import free_port
from tests.servers.servicebus import (
    PLAIN_QUEUE,
    QUEUE,
    SESSION_QUEUE,
    SHORT_LOCK_QUEUE,
    SHORT_LOCK_SECONDS,
    SHORT_SESSION_QUEUE,
    ServiceBusEndpoint,
)

WRONG_KEY = "not-the-key-s3cr3t"

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    # The module-wide mark also reaches the few plain (sync) tests; nothing to run there.
    pytest.mark.filterwarnings(
        "ignore:The test <Function .* is marked with '@pytest.mark.asyncio'"
    ),
]


def bus(sb: ServiceBusEndpoint, queue: str = QUEUE, **options: Any) -> Queue:
    """A cloudrift Service Bus queue on the test broker."""
    return get_queue(
        "azure_bus", connection_string=sb.connection_string(), queue_name=queue, **options
    )


class _BackgroundCloses:
    """Backends of this module being closed in the background, and how many are open."""

    def __init__(self) -> None:
        self.closing: list[asyncio.Future[None]] = []
        self.open = 0

    async def close(self, sb: ServiceBusEndpoint, queue: Queue) -> None:
        """Start closing ``queue``; return once no backend is open and the broker has seen
        every receiver link detach (an inner backend leaves that wait to the outermost)."""
        self.closing.append(asyncio.ensure_future(queue.close()))
        self.open -= 1
        if self.open == 0:
            await sb.wait_until_detached()


_CLOSES = _BackgroundCloses()


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def _background_closes_finish() -> AsyncIterator[None]:
    """Every backend closed in the background has finished closing by the module's end."""
    yield
    outcomes = await asyncio.gather(*_CLOSES.closing, return_exceptions=True)
    _CLOSES.closing.clear()
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, f"closing a Service Bus backend failed: {errors!r}"


@contextlib.asynccontextmanager
async def opened(
    sb: ServiceBusEndpoint, queue: str = QUEUE, **options: Any
) -> AsyncIterator[Queue]:
    """``bus(...)`` for an ``async with`` block, closed in the background on exit."""
    backend = bus(sb, queue, **options)
    _CLOSES.open += 1
    try:
        yield backend
    finally:
        await _CLOSES.close(sb, backend)


def body_of(message: Any) -> bytes:
    """The SDK's body is a single-use generator of sections: join it."""
    return b"".join(message.body)


# --------------------------------------------------------------------------------------
# Step 1: the broker, proven with the raw SDK


class TestBrokerSpeaksServiceBusToTheRawSDK:
    """The test broker does what the real SDK needs, seen through the SDK's own API."""

    async def test_send_receive_complete(self, servicebus: ServiceBusEndpoint) -> None:
        """A sent message is received with a lock token and sequence number, then completed."""
        async with ServiceBusClient.from_connection_string(servicebus.connection_string()) as c:
            async with c.get_queue_sender(PLAIN_QUEUE) as sender:
                await sender.send_messages(ServiceBusMessage(b"hello", message_id="m-1"))
            async with c.get_queue_receiver(PLAIN_QUEUE) as receiver:
                [msg] = await receiver.receive_messages(max_wait_time=1)
                assert body_of(msg) == b"hello" and msg.message_id == "m-1"
                assert msg.lock_token is not None and msg.sequence_number is not None
                assert msg.locked_until_utc is not None and msg.enqueued_time_utc is not None
                await receiver.complete_message(msg)
        assert servicebus.broker.messages(PLAIN_QUEUE) == []
        assert servicebus.broker.cbs_tokens_accepted >= 2

    async def test_a_missing_entity_is_refused_at_put_token_with_404(
        self, servicebus: ServiceBusEndpoint
    ) -> None:
        """As Service Bus does, a token for a missing queue is refused with status 404: the
        SDK raises ServiceBusAuthenticationError around a TokenAuthFailure naming it."""
        conn = servicebus.connection_string()
        async with ServiceBusClient.from_connection_string(conn, retry_total=0) as c:
            with pytest.raises(ServiceBusAuthenticationError) as info:
                async with c.get_queue_sender("no-such-queue") as sender:
                    await sender.send_messages(ServiceBusMessage(b"x"))
        inner = info.value.inner_exception
        assert getattr(inner, "status_code", None) == 404
        assert "'sb://" in str(inner) and "/no-such-queue' could not be found" in str(inner)

    async def test_abandon_increments_delivery_count(self, servicebus: ServiceBusEndpoint) -> None:
        """abandon (modified, delivery-failed) redelivers with delivery_count 1."""
        async with ServiceBusClient.from_connection_string(servicebus.connection_string()) as c:
            async with c.get_queue_sender(PLAIN_QUEUE) as sender:
                await sender.send_messages(ServiceBusMessage(b"x"))
            async with c.get_queue_receiver(PLAIN_QUEUE) as receiver:
                [first] = await receiver.receive_messages(max_wait_time=1)
                assert first.delivery_count == 0
                await receiver.abandon_message(first)
                [again] = await receiver.receive_messages(max_wait_time=1)
                assert again.sequence_number == first.sequence_number
                assert again.delivery_count == 1
                await receiver.complete_message(again)

    async def test_dead_letter_moves_to_the_dead_letter_sub_queue(
        self, servicebus: ServiceBusEndpoint
    ) -> None:
        """dead_letter (rejected + DeadLetterReason) lands in $DeadLetterQueue with the reason."""
        async with ServiceBusClient.from_connection_string(servicebus.connection_string()) as c:
            async with c.get_queue_sender(PLAIN_QUEUE) as sender:
                await sender.send_messages(ServiceBusMessage(b"poison"))
            async with c.get_queue_receiver(PLAIN_QUEUE) as receiver:
                [msg] = await receiver.receive_messages(max_wait_time=1)
                await receiver.dead_letter_message(msg, reason="bad", error_description="why")
            dlq = c.get_queue_receiver(PLAIN_QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
            async with dlq:
                [dead] = await dlq.receive_messages(max_wait_time=1)
                assert body_of(dead) == b"poison"
                assert dead.dead_letter_reason == "bad"
                assert dead.dead_letter_error_description == "why"
                await dlq.complete_message(dead)

    async def test_renew_lock_and_lock_lost(self, servicebus: ServiceBusEndpoint) -> None:
        """renew-lock extends the lock; after the lock expires, completing raises lock-lost."""
        async with ServiceBusClient.from_connection_string(servicebus.connection_string()) as c:
            async with c.get_queue_sender(SHORT_LOCK_QUEUE) as sender:
                await sender.send_messages(ServiceBusMessage(b"x"))
            async with c.get_queue_receiver(SHORT_LOCK_QUEUE) as receiver:
                [msg] = await receiver.receive_messages(max_wait_time=1)
                before = msg.locked_until_utc
                await asyncio.sleep(0.3)
                renewed = await receiver.renew_message_lock(msg)
                assert renewed > before
                await asyncio.sleep(1.3)
                with pytest.raises(MessageLockLostError):
                    await receiver.complete_message(msg)
        assert "com.microsoft:renew-lock" in servicebus.broker.management_ops

    async def test_schedule_and_cancel(self, servicebus: ServiceBusEndpoint) -> None:
        """schedule-message hides a message until its time; cancel-scheduled removes one."""
        now = datetime.datetime.now(datetime.UTC)
        async with ServiceBusClient.from_connection_string(servicebus.connection_string()) as c:
            async with c.get_queue_sender(PLAIN_QUEUE) as sender:
                [soon] = await sender.schedule_messages(
                    ServiceBusMessage(b"soon"), now + datetime.timedelta(seconds=2)
                )
                [later] = await sender.schedule_messages(
                    ServiceBusMessage(b"later"), now + datetime.timedelta(seconds=60)
                )
                await sender.cancel_scheduled_messages(later)
            [stored] = servicebus.broker.messages(PLAIN_QUEUE)
            assert stored.sequence_number == soon and stored.available_ms > stored.enqueued_ms
            async with c.get_queue_receiver(PLAIN_QUEUE) as receiver:
                [msg] = await receiver.receive_messages(max_wait_time=4)
                assert body_of(msg) == b"soon" and msg.sequence_number == soon
                await receiver.complete_message(msg)
        assert servicebus.broker.messages(PLAIN_QUEUE) == []

    async def test_a_batch_is_one_transfer(self, servicebus: ServiceBusEndpoint) -> None:
        """A list send arrives as ONE transfer (format 0x80013700) holding every message."""
        client = ServiceBusClient.from_connection_string(servicebus.connection_string())
        async with client, client.get_queue_sender(PLAIN_QUEUE) as sender:
            await sender.send_messages(ServiceBusMessage(b"warm-up"))
            before = servicebus.broker.transfers_received
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(5)])
            assert servicebus.broker.transfers_received == before + 1
        assert len(servicebus.broker.messages(PLAIN_QUEUE)) == 6

    async def test_session_filter_locks_one_session(self, servicebus: ServiceBusEndpoint) -> None:
        """A named session receiver gets only its session; NEXT_AVAILABLE names the one it got."""
        async with ServiceBusClient.from_connection_string(servicebus.connection_string()) as c:
            async with c.get_queue_sender(SESSION_QUEUE) as sender:
                await sender.send_messages(
                    [
                        ServiceBusMessage(b"a1", session_id="A"),
                        ServiceBusMessage(b"b1", session_id="B"),
                        ServiceBusMessage(b"a2", session_id="A"),
                    ]
                )
            async with c.get_queue_receiver(SESSION_QUEUE, session_id="B") as receiver:
                got = await receiver.receive_messages(max_message_count=10, max_wait_time=1)
                assert [body_of(m) for m in got] == [b"b1"]
                await receiver.complete_message(got[0])
            nxt = c.get_queue_receiver(SESSION_QUEUE, session_id=NEXT_AVAILABLE_SESSION)
            async with nxt:
                assert nxt.session.session_id == "A"
                got = await nxt.receive_messages(max_message_count=10, max_wait_time=1)
                assert [body_of(m) for m in got] == [b"a1", b"a2"]

    async def test_wrong_key_is_refused(self, servicebus: ServiceBusEndpoint) -> None:
        """The put-token with a signature from the wrong key is refused (401)."""
        conn = servicebus.connection_string(key=WRONG_KEY)
        async with ServiceBusClient.from_connection_string(conn, retry_total=0) as c:
            with pytest.raises(ServiceBusAuthenticationError):
                async with c.get_queue_sender(PLAIN_QUEUE) as sender:
                    await sender.send_messages(ServiceBusMessage(b"x"))
        assert servicebus.broker.messages(PLAIN_QUEUE) == []

    async def test_receive_and_delete_mode(self, servicebus: ServiceBusEndpoint) -> None:
        """RECEIVE_AND_DELETE receivers get pre-settled messages that are gone at once."""
        async with ServiceBusClient.from_connection_string(servicebus.connection_string()) as c:
            async with c.get_queue_sender(PLAIN_QUEUE) as sender:
                await sender.send_messages([ServiceBusMessage(b"1"), ServiceBusMessage(b"2")])
            receiver = c.get_queue_receiver(
                PLAIN_QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
            )
            async with receiver:
                got = await receiver.receive_messages(max_message_count=10, max_wait_time=1)
                assert sorted(body_of(m) for m in got) == [b"1", b"2"]
        assert servicebus.broker.messages(PLAIN_QUEUE) == []


# --------------------------------------------------------------------------------------
# Step 2: the adapter runs the conformance suite


class _BusHarness(MessagingConformance):
    """The suite on one queue: a fresh backend per test, closed in the background."""

    queue_name: ClassVar[str] = QUEUE
    session_enabled: ClassVar[bool] = False

    @pytest_asyncio.fixture(loop_scope="module")
    async def backend(self, servicebus: ServiceBusEndpoint) -> AsyncIterator[Queue]:
        self._sb = servicebus
        async with opened(servicebus, self.queue_name, session_enabled=self.session_enabled) as q:
            yield q

    async def send_foreign(self, backend: Queue, raw: bytes) -> None:
        session = "foreign" if self.session_enabled else None
        client = ServiceBusClient.from_connection_string(self._sb.connection_string())
        async with client, client.get_queue_sender(self.queue_name) as sender:
            await sender.send_messages(ServiceBusMessage(raw, session_id=session))

    async def read_dead_letters(self, backend: Queue, count: int) -> list[Message]:
        async with opened(self._sb, f"{self.queue_name}/$DeadLetterQueue") as dlq:
            return await drain(dlq, count)


class TestServiceBusQueue(_BusHarness):
    """A queue without sessions (duplicate detection on): no groups, lock-based visibility."""

    unsupported = frozenset({"groups", "group_receive", "visibility_timeout"})


class TestServiceBusSessionQueue(_BusHarness):
    """A session-enabled queue: group_id is the session id and is required."""

    queue_name = SESSION_QUEUE
    session_enabled = True
    requires_group_id = True
    unsupported = frozenset({"visibility_timeout"})


# --------------------------------------------------------------------------------------
# The seed's FIFO / sessions table, Service Bus column


@pytest_asyncio.fixture(loop_scope="module")
async def sessions(servicebus: ServiceBusEndpoint) -> AsyncIterator[Queue]:
    """The adapter on the session-enabled queue."""
    async with opened(servicebus, SESSION_QUEUE, session_enabled=True) as queue:
        yield queue


async def test_seed_ordering_receive_without_group_drains_one_session_at_a_time(
    sessions: Queue,
) -> None:
    """receive() without group_id returns one session's messages, in order, then the next."""
    for n in range(3):
        await sessions.send({"n": n}, group_id="A")
        await sessions.send({"n": n}, group_id="B")
    first = await sessions.receive(max_messages=10, wait_time=1)
    assert len({m.group_id for m in first}) == 1 and [m.body["n"] for m in first] == [0, 1, 2]
    for m in first:
        await sessions.delete(m.receipt_handle)
    second = await sessions.receive(max_messages=10, wait_time=1)
    assert {m.group_id for m in second} == {"A", "B"} - {first[0].group_id}
    assert [m.body["n"] for m in second] == [0, 1, 2]


async def test_seed_dedup_by_message_id_only_when_the_queue_enables_it(
    servicebus: ServiceBusEndpoint,
) -> None:
    """dedup_id becomes the message id: deduplicated on a queue with duplicate detection only."""
    async with (
        opened(servicebus, QUEUE) as with_detection,
        opened(servicebus, PLAIN_QUEUE) as plain,
    ):
        for queue in (with_detection, plain):
            ids = [await queue.send({"n": 1}, dedup_id="evt-abc") for _ in range(2)]
            assert ids == ["evt-abc", "evt-abc"]
        assert len(await drain(with_detection, 2, rounds=2)) == 1
        both = await drain(plain, 2, rounds=3)
        assert [m.dedup_id for m in both] == ["evt-abc", "evt-abc"]


async def test_seed_delay_is_a_scheduled_enqueue(servicebus: ServiceBusEndpoint) -> None:
    """delay>0 goes through the schedule-message operation and hides the message until then."""
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        sending_at = time.monotonic()
        msg_id = await queue.send({"n": 1}, delay=1)
        assert "com.microsoft:schedule-message" in servicebus.broker.management_ops
        early = await queue.receive(max_messages=1, wait_time=0)
        if time.monotonic() - sending_at < 1:  # a machine stalled past 1 s may get it here
            assert early == []
        [msg] = early or await drain(queue, 1, rounds=5)
        assert msg.message_id == msg_id and msg.body == {"n": 1}


async def test_seed_delay_in_a_batch_is_scheduled_too(servicebus: ServiceBusEndpoint) -> None:
    """A batch entry with a delay is scheduled; the others are sent at once, ids in order."""
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        ids = await queue.send_batch([{"n": 0}, OutgoingMessage({"n": 1}, delay=30), {"n": 2}])
        assert len(ids) == 3 and len(set(ids)) == 3
        got = await drain(queue, 2, rounds=3)
        assert sorted(m.message_id for m in got) == sorted([ids[0], ids[2]])
        stored = servicebus.broker.messages(PLAIN_QUEUE)
        assert len(stored) == 3


async def test_seed_receive_group_id_reads_only_that_session(sessions: Queue) -> None:
    """receive(group_id=...) returns only that session, in order."""
    await sessions.send({"n": 1}, group_id="owner-1")
    await sessions.send({"n": 2}, group_id="owner-123")
    await sessions.send({"n": 3}, group_id="owner-123")
    got = await sessions.receive(max_messages=10, wait_time=1, group_id="owner-123")
    assert [(m.group_id, m.body["n"]) for m in got] == [("owner-123", 2), ("owner-123", 3)]


async def test_seed_receive_group_id_on_a_plain_queue_is_not_supported(
    servicebus: ServiceBusEndpoint,
) -> None:
    """Without session_enabled, receive(group_id=) raises FeatureNotSupportedError."""
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        with pytest.raises(FeatureNotSupportedError, match="session-enabled Service Bus"):
            await queue.receive(group_id="owner-123")


async def test_seed_visibility_timeout_is_ignored_lock_duration_rules(
    servicebus: ServiceBusEndpoint,
) -> None:
    """visibility_timeout=60 is ignored: the message returns after the queue's 1 s lock."""
    async with opened(servicebus, SHORT_LOCK_QUEUE) as queue:
        await queue.send({"n": 1})
        [first] = await queue.receive(max_messages=1, wait_time=1, visibility_timeout=60)
        [again] = await drain(queue, 1, rounds=5)
        assert again.message_id == first.message_id


async def test_seed_nack_abandons_and_the_delivery_count_grows(
    servicebus: ServiceBusEndpoint,
) -> None:
    """nack() is abandon: the broker's delivery count goes up and receive_count follows."""
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        await queue.send({"n": 1})
        [first] = await drain(queue, 1)
        await queue.nack(first.receipt_handle)
        [stored] = servicebus.broker.messages(PLAIN_QUEUE)
        assert stored.delivery_count == 1 and not stored.locked
        [again] = await drain(queue, 1)
        assert (first.receive_count, again.receive_count) == (1, 2)


# --------------------------------------------------------------------------------------
# At-least-once delivery and the pitfalls


async def test_unacked_message_returns_after_the_lock_expires_with_count_two(
    servicebus: ServiceBusEndpoint,
) -> None:
    """A received, unacked message comes back after its lock expires, receive_count 2."""
    async with opened(servicebus, SHORT_LOCK_QUEUE) as queue:
        await queue.send({"n": 1})
        [first] = await drain(queue, 1)
        [again] = await drain(queue, 1, rounds=5)
        assert again.message_id == first.message_id and again.receive_count == 2
        with pytest.raises(ReceiptHandleError, match="lock expired"):
            await queue.delete(first.receipt_handle)
        await queue.delete(again.receipt_handle)
    assert servicebus.broker.messages(SHORT_LOCK_QUEUE) == []


async def test_one_sender_link_is_reused_across_sends(servicebus: ServiceBusEndpoint) -> None:
    """Many sends and batches use one AMQP sender link (never a link per send)."""
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        await queue.send({"n": 0})
        links = servicebus.broker.receiver_links_opened
        for n in range(5):
            await queue.send({"n": n})
        await queue.send_batch([{"n": n} for n in range(5)])
        assert servicebus.broker.receiver_links_opened == links


async def test_the_receiver_is_kept_alive_across_receives(servicebus: ServiceBusEndpoint) -> None:
    """Receives reuse one receiver link (no receiver leaked per receive()), so locks stay valid."""
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        await queue.send_batch([{"n": n} for n in range(4)])
        [first] = await queue.receive(max_messages=1, wait_time=1)
        links = servicebus.broker.sender_links_opened
        held = [first] + [m for _ in range(3) for m in await queue.receive(1, wait_time=1)]
        assert servicebus.broker.sender_links_opened == links
        for m in held:  # every lock token is still settleable on the live receiver
            await queue.delete(m.receipt_handle)
    assert servicebus.broker.messages(PLAIN_QUEUE) == []


async def test_message_bodies_are_read_from_the_sdk_generator(
    servicebus: ServiceBusEndpoint,
) -> None:
    """Bodies come from the SDK's real section generator; bytes and non-UTF-8 survive."""
    client = ServiceBusClient.from_connection_string(servicebus.connection_string())
    async with client, client.get_queue_sender(PLAIN_QUEUE) as sender:
        await sender.send_messages(ServiceBusMessage(b"\xff\xfe not utf-8"))
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        [msg] = await drain(queue, 1)
        assert msg.raw == b"\xff\xfe not utf-8" and not msg.is_json and msg.text is None


async def test_value_and_sequence_bodies_from_foreign_producers_are_delivered(
    servicebus: ServiceBusEndpoint,
) -> None:
    """AMQP value / sequence bodies (e.g. JMS text messages) arrive with raw bytes, never crash."""
    client = ServiceBusClient.from_connection_string(servicebus.connection_string())
    async with client, client.get_queue_sender(PLAIN_QUEUE) as sender:
        await sender.send_messages(AmqpAnnotatedMessage(value_body="plain jms text"))
        await sender.send_messages(AmqpAnnotatedMessage(value_body={"k": 1}))
        await sender.send_messages(AmqpAnnotatedMessage(sequence_body=[[1, 2]]))
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        got = await drain(queue, 3)
        assert [(m.raw, m.is_json) for m in got] == [
            (b"plain jms text", False),
            (b'{"k":1}', True),
            (b"[[1,2]]", True),
        ]


async def test_batch_is_split_by_the_sdk_batch_capacity_and_ids_keep_order(
    servicebus: ServiceBusEndpoint,
) -> None:
    """A batch larger than one ServiceBusMessageBatch is split; every id comes back in order."""
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        await queue.send({"warm": "up"})
        before = servicebus.broker.transfers_received
        payloads = [{"n": n, "pad": "x" * 60_000} for n in range(10)]
        ids = await queue.send_batch(payloads)
        transfers = servicebus.broker.transfers_received - before
        assert 3 <= transfers < 10
        stored = servicebus.broker.messages(PLAIN_QUEUE)[1:]
        assert [s.message_id for s in stored] == ids


async def test_session_batch_entries_of_different_sessions_all_arrive(sessions: Queue) -> None:
    """A batch mixing sessions is split per session; each lands in its own session."""
    ids = await sessions.send_batch(
        [OutgoingMessage({"n": n}, group_id="A" if n % 2 else "B") for n in range(4)]
    )
    a = await sessions.receive(max_messages=10, wait_time=1, group_id="A")
    b = await sessions.receive(max_messages=10, wait_time=1, group_id="B")
    assert [m.message_id for m in a] == [ids[1], ids[3]]
    assert [m.message_id for m in b] == [ids[0], ids[2]]


async def test_session_lock_renewal_extends_a_session_message(sessions: Queue) -> None:
    """extend_visibility on a session message renews the session lock, then it can be acked."""
    await sessions.send({"n": 1}, group_id="A")
    [msg] = await sessions.receive(max_messages=1, wait_time=1, group_id="A")
    await sessions.extend_visibility(msg.receipt_handle, 30)
    await sessions.delete(msg.receipt_handle)


async def test_purge_empties_every_session(sessions: Queue, servicebus: ServiceBusEndpoint) -> None:
    """purge() on a session queue drains every session."""
    for group in ("A", "B", "C"):
        await sessions.send({"g": group}, group_id=group)
    await sessions.purge()
    assert servicebus.broker.messages(SESSION_QUEUE) == []


async def test_dead_letter_keeps_message_when_it_fails(servicebus: ServiceBusEndpoint) -> None:
    """A dead-letter on a lost lock raises ReceiptHandleError and the message stays queued."""
    async with opened(servicebus, SHORT_LOCK_QUEUE) as queue:
        await queue.send({"n": 1})
        [msg] = await drain(queue, 1)
        await asyncio.sleep(1.3)
        with pytest.raises(ReceiptHandleError):
            await queue.dead_letter(msg.receipt_handle, "too late")
        assert len(servicebus.broker.messages(SHORT_LOCK_QUEUE)) == 1
        assert servicebus.broker.messages(f"{SHORT_LOCK_QUEUE}/$DeadLetterQueue") == []


# --------------------------------------------------------------------------------------
# Receipt handles


async def test_handle_from_another_instance_is_refused(servicebus: ServiceBusEndpoint) -> None:
    """A lock token can only be settled by the backend that received it: clear error."""
    async with opened(servicebus, PLAIN_QUEUE) as one, opened(servicebus, PLAIN_QUEUE) as other:
        await one.send({"n": 1})
        [msg] = await drain(one, 1)
        with pytest.raises(ReceiptHandleError, match=r"not issued by this backend"):
            await other.delete(msg.receipt_handle)
        await one.delete(msg.receipt_handle)


async def test_settling_twice_raises_receipt_handle_error(servicebus: ServiceBusEndpoint) -> None:
    """Deleting an already deleted message raises ReceiptHandleError, not an SDK error."""
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        await queue.send({"n": 1})
        [msg] = await drain(queue, 1)
        await queue.delete(msg.receipt_handle)
        with pytest.raises(ReceiptHandleError):
            await queue.delete(msg.receipt_handle)
        with pytest.raises(ReceiptHandleError):
            await queue.extend_visibility(msg.receipt_handle, 10)


async def test_in_flight_map_is_bounded(servicebus: ServiceBusEndpoint) -> None:
    """Unacked receipts never grow memory without bound (in_flight_limit)."""
    async with opened(servicebus, PLAIN_QUEUE, in_flight_limit=2) as queue:
        await queue.send_batch([{"n": n} for n in range(4)])
        got = await drain(queue, 4)
        assert len(queue._held) == 2  # type: ignore[attr-defined]
        with pytest.raises(ReceiptHandleError, match="unknown"):
            await queue.delete(got[0].receipt_handle)


# --------------------------------------------------------------------------------------
# Errors, auth, secrets


async def test_missing_queue_raises_queue_not_found(servicebus: ServiceBusEndpoint) -> None:
    """A queue that does not exist raises QueueNotFoundError naming the fix."""
    async with opened(servicebus, "no-such-queue", max_attempts=1) as queue:
        with pytest.raises(QueueNotFoundError, match="queue_name"):
            await queue.receive(max_messages=1, wait_time=0)
        assert await queue.health_check() is False


@pytest.mark.parametrize("doing", ["send", "receive"])
async def test_missing_queue_is_reported_on_the_first_attempt(
    servicebus: ServiceBusEndpoint, doing: str
) -> None:
    """With the default retries, a missing queue raises QueueNotFoundError naming it after
    one refused token: the SDK's retries (~15 s) are not spent on it."""
    before = servicebus.broker.cbs_tokens_not_found
    async with opened(servicebus, "no-such-queue") as queue:
        call = queue.send({"n": 1}) if doing == "send" else queue.receive(wait_time=0)
        with pytest.raises(QueueNotFoundError, match="/no-such-queue' could not be found"):
            await call
    assert servicebus.broker.cbs_tokens_not_found == before + 1


async def test_wrong_key_raises_permission_error_without_the_key(
    servicebus: ServiceBusEndpoint,
) -> None:
    """A wrong SharedAccessKey raises MessagingPermissionError; the key is not in the text."""
    conn = servicebus.connection_string(key=WRONG_KEY)
    async with get_queue(
        "azure_bus", connection_string=conn, queue_name=PLAIN_QUEUE, max_attempts=1
    ) as queue:
        with pytest.raises(MessagingPermissionError) as info:
            await queue.send({"n": 1})
        assert WRONG_KEY not in str(info.value) and WRONG_KEY not in repr(queue)
        assert await queue.health_check() is False
    assert servicebus.broker.messages(PLAIN_QUEUE) == []


async def test_unreachable_namespace_fails_fast_with_connection_error() -> None:
    """Nothing listening: MessagingConnectionError (no hang), and health_check() is False."""
    conn = (
        f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=k;SharedAccessKey=v;"
        "UseDevelopmentEmulator=true"
    )
    async with get_queue(
        "azure_bus", connection_string=conn, queue_name="q", max_attempts=1
    ) as queue:
        with pytest.raises(MessagingConnectionError):
            await asyncio.wait_for(queue.send({"n": 1}), 30)
        assert await asyncio.wait_for(queue.health_check(), 30) is False


async def test_health_check_contacts_the_broker(servicebus: ServiceBusEndpoint) -> None:
    """health_check() is True because the broker answered a $management request."""
    ops = servicebus.broker.management_ops
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        assert await queue.health_check() is True
        assert ops[-1] == "com.microsoft:peek-message"
    async with opened(servicebus, SESSION_QUEUE, session_enabled=True) as queue:
        assert await queue.health_check() is True
        assert ops[-1] == "com.microsoft:get-session-state"
    async with opened(servicebus, "no-such-queue", session_enabled=True, max_attempts=1) as queue:
        assert await queue.health_check() is False


def test_service_bus_error_is_translated(servicebus: ServiceBusEndpoint) -> None:
    """ServiceBusError subclasses map to the messaging family, chained (not HttpResponseError)."""
    queue = bus(servicebus)
    assert not issubclass(ServiceBusError, HttpResponseError)
    cases: list[tuple[BaseException, type[MessagingError]]] = [
        (MessageLockLostError(message="lock"), ReceiptHandleError),
        (ServiceBusConnectionError(message="down"), MessagingConnectionError),
        (ServiceBusAuthenticationError(message="auth"), MessagingPermissionError),
        (ServiceBusError(message="other"), MessagingError),
        (HttpResponseError(message="nope", response=None), MessagingError),
        (ClientAuthenticationError(message="no token"), MessagingPermissionError),
    ]
    for sdk_error, ours in cases:
        with pytest.raises(ours) as info:
            queue._translate(sdk_error, "test")  # type: ignore[attr-defined]
        assert info.value.__cause__ is sdk_error


def test_http_response_error_status_codes_are_translated(servicebus: ServiceBusEndpoint) -> None:
    """azure-core HttpResponseError: 403 → permission, 404 → queue not found."""
    queue = bus(servicebus)
    for status, ours in ((403, MessagingPermissionError), (404, QueueNotFoundError)):
        error = HttpResponseError(message=f"status {status}")
        error.status_code = status
        with pytest.raises(ours):
            queue._translate(error, "test")  # type: ignore[attr-defined]


def test_repr_shows_namespace_and_queue_never_the_key(servicebus: ServiceBusEndpoint) -> None:
    """repr() names provider, namespace and queue; the SharedAccessKey never appears."""
    conn = servicebus.connection_string(key="super-secret-key-value")
    queue = get_queue("azure_bus", connection_string=conn, queue_name="jobs")
    text = repr(queue)
    assert "super-secret-key-value" not in text and "127.0.0.1" in text and "jobs" in text


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"connection_string": "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v"},
            "queue_name",
        ),
        ({"queue_name": "q"}, "conflicting|incomplete|Auth methods"),
        ({"queue_name": "q", "connection_string": ""}, "empty string"),
        (
            {
                "queue_name": "q",
                "connection_string": "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v",
                "fully_qualified_namespace": "ns.servicebus.windows.net",
            },
            "conflicting",
        ),
        (
            {"queue_name": "q", "fully_qualified_namespace": "ns", "tenant_id": "t"},
            "incomplete|missing",
        ),
        ({"queue_name": "q", "connection_string": "x", "sesion_enabled": True}, "session_enabled"),
        ({"queue_name": "q", "connection_string": "x", "in_flight_limit": 0}, "in_flight_limit"),
    ],
)
def test_bad_configuration_raises_configuration_error(options: dict[str, Any], match: str) -> None:
    """Missing queue, no/conflicting/empty credentials and typos fail fast, naming the fix."""
    with pytest.raises(ConfigurationError, match=match):
        get_queue("azure_bus", **options)


def test_malformed_connection_string_is_a_configuration_error() -> None:
    """A malformed connection string fails when the queue is built, without the key."""
    with pytest.raises(ConfigurationError, match="lacks Endpoint") as info:
        get_queue("azure_bus", connection_string="SharedAccessKey=hunter2-secret", queue_name="q")
    assert "hunter2-secret" not in str(info.value)


async def test_managed_identity_builds_managed_identity_credential_without_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fully_qualified_namespace alone selects the managed identity, never a CLI/IDE login."""
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
    queue = get_queue(
        "azure_bus", fully_qualified_namespace="ns.servicebus.windows.net", queue_name="jobs"
    )
    assert isinstance(queue, AzureServiceBusQueue) and queue.auth_method == "managed_identity"
    client = await queue._client.get()
    assert isinstance(client._credential, ManagedIdentityCredential)
    assert not isinstance(client._credential, DefaultAzureCredential)
    assert client.fully_qualified_namespace == "ns.servicebus.windows.net"
    assert await queue.native() is client
    await queue.close()
    with pytest.raises(BackendClosedError):
        await queue.native()


async def test_workload_identity_when_a_federated_token_is_mounted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With AZURE_FEDERATED_TOKEN_FILE set (AKS workload identity) that identity is used."""
    from azure.identity.aio import WorkloadIdentityCredential

    token = tmp_path / "token"
    token.write_text("header.payload.signature")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token))
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant")
    monkeypatch.setenv("AZURE_CLIENT_ID", "client")
    queue = get_queue(
        "azure_bus", fully_qualified_namespace="ns.servicebus.windows.net", queue_name="jobs"
    )
    client = await queue._client.get()
    assert isinstance(client._credential, WorkloadIdentityCredential)
    await queue.close()


async def test_service_principal_builds_client_secret_credential_without_network() -> None:
    """tenant_id/client_id/client_secret select ClientSecretCredential; the secret stays hidden."""
    from azure.identity.aio import ClientSecretCredential

    queue = get_queue(
        "azure_bus",
        fully_qualified_namespace="ns.servicebus.windows.net",
        queue_name="jobs",
        tenant_id="tenant",
        client_id="client",
        client_secret="sp-secret-value",
    )
    assert isinstance(queue, AzureServiceBusQueue) and queue.auth_method == "service_principal"
    assert "sp-secret-value" not in repr(queue) and "sp-secret-value" not in repr(vars(queue))
    client = await queue._client.get()
    assert isinstance(client._credential, ClientSecretCredential)
    await queue.close()


async def test_batch_to_a_missing_queue_raises_queue_not_found(
    servicebus: ServiceBusEndpoint,
) -> None:
    """A batch to a missing queue raises QueueNotFoundError (not a MessageSendError with a
    failure per entry) after one refused token."""
    before = servicebus.broker.cbs_tokens_not_found
    async with opened(servicebus, "no-such-queue") as queue:
        with pytest.raises(QueueNotFoundError, match="no-such-queue"):
            await queue.send_batch([{"n": 0}, {"n": 1}, {"n": 2}])
    assert servicebus.broker.cbs_tokens_not_found == before + 1


def test_the_sdk_is_imported_only_when_azure_bus_is_chosen() -> None:
    """``import cloudrift.messaging`` loads no Azure SDK; building azure_bus loads it lazily."""
    code = (
        "import sys, cloudrift.messaging as m\n"
        "assert 'azure.servicebus' not in sys.modules, 'imported eagerly'\n"
        "q = m.get_queue('azure_bus', connection_string="
        "'Endpoint=sb://h/;SharedAccessKeyName=k;SharedAccessKey=v', queue_name='q')\n"
        "assert 'azure.servicebus' not in sys.modules, 'constructor imported the SDK'\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


async def test_receive_from_a_session_locked_elsewhere_returns_nothing(
    servicebus: ServiceBusEndpoint,
) -> None:
    """receive(group_id=) on a session another backend holds returns [] (no error, no steal)."""
    async with (
        opened(servicebus, SESSION_QUEUE, session_enabled=True) as one,
        opened(servicebus, SESSION_QUEUE, session_enabled=True, max_attempts=1) as other,
    ):
        await one.send({"n": 1}, group_id="A")
        await one.send({"n": 2}, group_id="A")
        [held] = await one.receive(max_messages=1, wait_time=1, group_id="A")
        assert await other.receive(max_messages=10, wait_time=0.5, group_id="A") == []
        await one.delete(held.receipt_handle)
        [rest] = await one.receive(max_messages=10, wait_time=1, group_id="A")
        assert rest.body == {"n": 2}


async def test_lost_session_lock_is_a_receipt_error_and_the_session_is_relocked(
    servicebus: ServiceBusEndpoint,
) -> None:
    """After the session lock expires: settling raises ReceiptHandleError; the session's
    message comes back on the next receive(group_id=) with receive_count 2."""
    async with opened(servicebus, SHORT_SESSION_QUEUE, session_enabled=True) as queue:
        await queue.send({"n": 1}, group_id="A")
        [first] = await queue.receive(max_messages=1, wait_time=1, group_id="A")
        await asyncio.sleep(1.4)
        with pytest.raises(ReceiptHandleError):
            await queue.delete(first.receipt_handle)
        [again] = await queue.receive(max_messages=1, wait_time=1, group_id="A")
        assert again.message_id == first.message_id and again.receive_count == 2
        await queue.delete(again.receipt_handle)
    assert servicebus.broker.messages(SHORT_SESSION_QUEUE) == []


# --------------------------------------------------------------------------------------
# An idle receiver holds no link credit: the broker hands out nothing between receives


def _lock_taken_ms(sb: ServiceBusEndpoint, queue: str, message_id: str) -> int:
    """When the broker locked (delivered) a message: its lock expiry minus the lock duration."""
    [stored] = [m for m in sb.broker.messages(queue) if m.message_id == message_id]
    return stored.locked_until_ms - int(SHORT_LOCK_SECONDS * 1000)


async def test_purge_after_an_idle_receive_leaves_the_queue_empty(
    servicebus: ServiceBusEndpoint,
) -> None:
    """purge() empties the queue also when the backend's receiver is attached and idle."""
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        assert await queue.receive(max_messages=1, wait_time=0) == []  # receiver attached
        await queue.send_batch([{"n": n} for n in range(5)])
        await queue.purge()
        assert await queue.receive(max_messages=10, wait_time=0) == []
    assert servicebus.broker.messages(PLAIN_QUEUE) == []


async def test_a_message_sent_while_the_receiver_idles_is_locked_only_when_received(
    servicebus: ServiceBusEndpoint,
) -> None:
    """After an empty receive, a message sent later is locked by the next receive(), not at
    send time, so its lock (its visibility timeout) is whole when the caller gets it."""
    async with opened(servicebus, SHORT_LOCK_QUEUE) as queue:
        assert await queue.receive(max_messages=5, wait_time=0) == []  # receiver attached
        sent = await queue.send({"n": 1})
        # Give the broker time to hand it to a link that still held credit (the bug).
        await asyncio.sleep(0.3)
        assert [m.message_id for m in servicebus.broker.messages(SHORT_LOCK_QUEUE)] == [sent]
        assert not servicebus.broker.messages(SHORT_LOCK_QUEUE)[0].locked
        before_receive = int(time.time() * 1000)
        [msg] = await queue.receive(max_messages=1, wait_time=1)
        assert _lock_taken_ms(servicebus, SHORT_LOCK_QUEUE, sent) >= before_receive
        await queue.delete(msg.receipt_handle)
    assert servicebus.broker.messages(SHORT_LOCK_QUEUE) == []


async def test_a_partial_receive_leaves_no_credit_behind(servicebus: ServiceBusEndpoint) -> None:
    """A receive that got fewer messages than asked leaves the rest of the queue unlocked."""
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        await queue.send({"n": 0})
        [first] = await queue.receive(max_messages=10, wait_time=1)
        later = await queue.send_batch([{"n": n} for n in range(1, 4)])
        await asyncio.sleep(0.3)  # the broker would have pushed them to the idle link by now
        stored = servicebus.broker.messages(PLAIN_QUEUE)
        assert [m.message_id for m in stored if not m.locked] == later
        await queue.delete(first.receipt_handle)
        await queue.purge()
    assert servicebus.broker.messages(PLAIN_QUEUE) == []


async def test_a_long_lived_backend_settles_every_way_across_idle_periods(
    servicebus: ServiceBusEndpoint,
) -> None:
    """One backend, idle between operations: nack, dead_letter and delete all settle the
    message the caller was given, and nothing is left locked behind."""
    async with opened(servicebus, PLAIN_QUEUE) as queue:
        assert await queue.receive(max_messages=10, wait_time=0) == []
        sent = await queue.send({"n": 1})
        await asyncio.sleep(0.3)
        [first] = await queue.receive(max_messages=10, wait_time=1)
        await queue.nack(first.receipt_handle)
        [again] = await queue.receive(max_messages=10, wait_time=1)
        assert (again.message_id, again.receive_count) == (sent, 2)
        await queue.dead_letter(again.receipt_handle, "poison")
        [dead] = servicebus.broker.messages(f"{PLAIN_QUEUE}/$DeadLetterQueue")
        assert dead.message_id == sent and dead.dead_letter_reason == "poison"
        other = await queue.send({"n": 2})
        await asyncio.sleep(0.3)
        [last] = await queue.receive(max_messages=10, wait_time=1)
        assert last.message_id == other and last.receive_count == 1
        await queue.delete(last.receipt_handle)
    assert servicebus.broker.messages(PLAIN_QUEUE) == []


async def test_a_held_session_receiver_takes_nothing_while_idle(
    sessions: Queue, servicebus: ServiceBusEndpoint
) -> None:
    """A session receiver kept open between receives does not lock its session's next
    message before the next receive() asks for it."""
    await sessions.send({"n": 1}, group_id="S")
    [first] = await sessions.receive(max_messages=5, wait_time=1, group_id="S")
    second = await sessions.send({"n": 2}, group_id="S")
    await asyncio.sleep(0.3)  # the broker would have pushed it to the idle link by now
    [stored] = [m for m in servicebus.broker.messages(SESSION_QUEUE) if m.message_id == second]
    assert not stored.locked
    await sessions.delete(first.receipt_handle)
    [again] = await sessions.receive(max_messages=5, wait_time=1, group_id="S")
    assert again.message_id == second
    await sessions.delete(again.receipt_handle)
