"""The messaging conformance suite: every queue provider runs it against a real stand-in.

A provider's test module subclasses :class:`MessagingConformance`, provides an async
``backend`` fixture (a fresh, empty queue; closed afterwards), implements
:meth:`send_foreign` and :meth:`read_dead_letters`, and declares in ``unsupported`` the
capabilities it lacks (each then must raise FeatureNotSupportedError):

``delay``            per-message delay (SQS FIFO lacks it)
``groups``           send(group_id=) with per-group FIFO order (SQS standard, redis lack it)
``dedup``            send(dedup_id=) deduplication (SQS standard, redis lack it)
``group_receive``    receive(group_id=) (SQS lacks it; Service Bus sessions have it)
``visibility_timeout`` receive(visibility_timeout=) honoured; a provider lacking it
                     (Service Bus: lock duration is queue config) accepts and ignores it
``dead_letter``      dead_letter(handle, reason) and consume(max_receives=)

``requires_group_id = True`` marks FIFO / session queues: every send then carries a group.

No test sleeps a guessed time to decide its outcome: time-driven behaviour (visibility
timeouts, delays) waits through :meth:`MessagingConformance.pass_time` (the memory harness
moves a fake clock; real stand-ins keep their own clock) and then polls with a bounded
deadline; "a poll is under way" is observed through the receive hook
(:func:`watch_polls`), never assumed after a sleep. "Still hidden" is asserted only when the
test's own clock, read before the call that started the server's timer, shows the timer
cannot have run out; a machine stalled longer than that is tolerated explicitly.

The seed's FIFO / sessions table maps to: ordering → ``test_group_order_is_kept``,
dedup → ``test_dedup_id_delivers_once``, per-message delay → ``test_delay_*``,
receive(group_id=) → ``test_receive_from_one_group``, visibility_timeout →
``test_unacked_message_returns_after_visibility_timeout``, nack →
``test_nack_redelivers_with_higher_receive_count``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from typing import Any, ClassVar

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from cloudrift.core.exceptions import (
    BackendClosedError,
    FeatureNotSupportedError,
    InvalidArgumentError,
    InvalidMessageError,
    MessageTooLargeError,
    ReceiptHandleError,
)
from cloudrift.messaging import DEAD_LETTER_REASON, Message, OutgoingMessage, Queue
from tests.conformance import BackendConformance
from tests.telemetry.support import Recorder

GROUP = "g-default"


async def drain(
    queue: Queue, count: int, *, rounds: int = 20, ack: bool = False, **kw: Any
) -> list[Message]:
    """Receive until ``count`` messages arrived (providers may return fewer per call).

    With ``ack`` each message is deleted as it arrives (a FIFO group delivers its next
    message only after the previous one is acked).
    """
    got: list[Message] = []
    for _ in range(rounds):
        if len(got) >= count:
            break
        batch = await queue.receive(max_messages=min(10, count - len(got)), wait_time=1, **kw)
        for msg in batch:
            if ack:
                await queue.delete(msg.receipt_handle)
        got += batch
    return got


def watch_polls(queue: Queue) -> asyncio.Event:
    """An event set as soon as the provider's receive hook runs: a poll is under way."""
    polling = asyncio.Event()
    hook = queue._receive

    async def spy(*args: Any, **kwargs: Any) -> list[Message]:
        polling.set()
        return await hook(*args, **kwargs)

    queue._receive = spy  # type: ignore[method-assign]
    return polling


async def poll_for(queue: Queue, message_id: str, *, within: float = 60.0, **kw: Any) -> Message:
    """Receive until the message ``message_id`` is delivered (a bounded deadline).

    Any other message arriving meanwhile fails the test: callers use it where nothing
    else may be visible. The deadline is a ceiling, not an expectation: a long poll whose
    client timed out just as the server handed it the message (a loaded machine widens
    that window) loses the delivery until the subscription's ack deadline (30 s on the
    Pub/Sub harness), so it must outlast that.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        for msg in await queue.receive(max_messages=10, wait_time=1, **kw):
            assert msg.message_id == message_id, f"unexpected message {msg!r}"
            return msg
    raise AssertionError(f"message {message_id} was not delivered within {within}s")


class MessagingConformance(BackendConformance):
    """The contract of :class:`cloudrift.messaging.Queue`."""

    failing_operation = ("send", ({}, -1), "InvalidArgumentError")

    CAPABILITIES: ClassVar[frozenset[str]] = frozenset(
        {
            "delay",
            "groups",
            "dedup",
            "group_receive",
            "visibility_timeout",
            "dead_letter",
        }
    )
    requires_group_id: ClassVar[bool] = False
    #: True where a long poll the client stopped waiting for may still be handed a
    #: message (Pub/Sub's REST pull has no server-side wait limit the client can set):
    #: that delivery counts, and the message comes back after its ack deadline, so a
    #: loaded machine can see receive_count one higher than the receives it made.
    abandoned_pull_may_take_a_delivery: ClassVar[bool] = False

    async def test_requires_group_id_matches_the_backend(self, backend: Queue) -> None:
        """The harness's requires_group_id is what the backend says (FIFO / session queue)."""
        assert backend.requires_group_id is self.requires_group_id

    # ----------------------------------------------------------- harness hooks

    async def send_foreign(self, backend: Queue, raw: bytes) -> None:
        """Put ``raw`` on the queue the way a non-cloudrift producer would."""
        raise NotImplementedError

    async def read_dead_letters(self, backend: Queue, count: int) -> list[Message]:
        """Receive ``count`` messages from the backend's dead-letter queue."""
        raise NotImplementedError

    def group(self, value: str | None = None) -> dict[str, str]:
        """send() keyword arguments for a group: always when the queue requires one."""
        if value is not None:
            return {"group_id": value}
        return {"group_id": GROUP} if self.requires_group_id else {}

    def own_group(self, value: str) -> dict[str, str]:
        """A group of its own where the queue requires groups (nothing blocks it), else none."""
        return {"group_id": value} if self.requires_group_id else {}

    async def pass_time(self, backend: Queue, seconds: float) -> None:
        """Let ``seconds`` pass for the queue's timers (visibility, delays).

        Real stand-ins keep their own clock, so this does nothing and the test then
        polls with a bounded deadline; the memory harness moves its fake clock.
        """

    # ---------------------------------------------------------- send / receive

    async def test_send_then_receive_round_trips_a_dict(self, backend: Queue) -> None:
        """A dict payload comes back equal, with the id send() returned and count 1."""
        payload = {"action": "process", "id": 42, "tags": ["a", "b"], "nested": {"x": None}}
        msg_id = await backend.send(payload, **self.group())
        [msg] = await drain(backend, 1)
        assert msg.body == payload and msg.is_json
        assert msg.message_id == msg_id
        assert msg.receive_count == 1
        assert json.loads(msg.raw) == payload
        assert isinstance(msg.receipt_handle, str) and msg.receipt_handle

    async def test_send_with_delay_zero_works(self, backend: Queue) -> None:
        """delay=0 is accepted by every provider (SQS FIFO rejects an explicit 0)."""
        await backend.send({"n": 0}, delay=0, **self.group())
        [msg] = await drain(backend, 1)
        assert msg.body == {"n": 0}

    async def test_non_json_payload_raises_type_error_and_sends_nothing(
        self, backend: Queue
    ) -> None:
        """A payload that is not JSON-serialisable raises TypeError before any send."""
        with pytest.raises(TypeError, match="JSON-serialisable"):
            await backend.send({"when": {1, 2}}, **self.group())
        with pytest.raises(TypeError, match="batch entry 1"):
            await backend.send_batch([{"ok": 1}, object()], **self.group())
        assert await backend.receive(max_messages=10, wait_time=0) == []

    async def test_attributes_round_trip(self, backend: Queue) -> None:
        """Message attributes sent with a message come back unchanged."""
        await backend.send({"n": 1}, attributes={"trace": "abc-123", "kind": "x"}, **self.group())
        [msg] = await drain(backend, 1)
        assert msg.attributes["trace"] == "abc-123" and msg.attributes["kind"] == "x"

    async def test_foreign_text_message_is_delivered_with_raw_bytes(self, backend: Queue) -> None:
        """A non-JSON message from another producer is delivered, never dropped."""
        await self.send_foreign(backend, b"plain text, not json")
        [msg] = await drain(backend, 1)
        assert not msg.is_json and msg.body is None
        assert msg.raw == b"plain text, not json" and msg.text == "plain text, not json"
        await backend.delete(msg.receipt_handle)

    async def test_receive_on_empty_queue_returns_empty_list(self, backend: Queue) -> None:
        """receive() with a wait returns [] when nothing arrives."""
        assert await backend.receive(max_messages=5, wait_time=1) == []

    async def test_long_poll_returns_a_message_sent_while_waiting(self, backend: Queue) -> None:
        """receive(wait_time=) returns as soon as a message arrives during the wait."""
        polling = watch_polls(backend)
        loop = asyncio.get_running_loop()
        began = loop.time()
        waiting = asyncio.create_task(backend.receive(max_messages=1, wait_time=10))
        await asyncio.wait_for(polling.wait(), 15)
        await backend.send({"n": 1}, **self.group())
        [msg] = await asyncio.wait_for(waiting, 15)
        assert msg.body == {"n": 1}
        assert loop.time() - began < 10  # it came back with the message, not at the end

    async def test_cancelled_idle_consume_loses_no_message(self, backend: Queue) -> None:
        """A message arriving as a polling consume() is cancelled is not lost.

        A long poll the server already started may still take it (SQS does); it then
        comes back after the consume's visibility timeout, unhandled.
        """
        handled: list[Message] = []

        async def handler(m: Message) -> None:
            handled.append(m)

        polling = watch_polls(backend)
        worker = asyncio.create_task(backend.consume(handler, wait_time=5, visibility_timeout=1))
        await asyncio.wait_for(polling.wait(), 15)
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
        await backend.send({"n": 1}, **self.group())
        assert handled == []
        if self.lacks("visibility_timeout"):
            return  # a lock taken by the cancelled poll lasts the queue's lock duration
        await self.pass_time(backend, 1)
        [msg] = await drain(backend, 1)
        assert msg.body == {"n": 1}

    async def test_receive_rejects_bad_max_messages(self, backend: Queue) -> None:
        """max_messages outside the provider's range raises InvalidArgumentError before any call."""
        with pytest.raises(InvalidArgumentError, match="max_messages"):
            await backend.receive(max_messages=0)
        with pytest.raises(InvalidArgumentError, match="max_messages"):
            await backend.receive(max_messages=backend.max_receive_messages + 1)
        with pytest.raises(ValueError, match="wait_time"):
            await backend.receive(wait_time=-1)

    # ------------------------------------------------------------------ batches

    async def test_send_batch_of_plain_dicts_returns_ids_in_order(self, backend: Queue) -> None:
        """send_batch takes plain dicts, splits past 10 entries and returns every id."""
        payloads = [{"n": i} for i in range(23)]
        ids = await backend.send_batch(payloads, **self.group())
        assert len(ids) == 23 and len(set(ids)) == 23
        got = await drain(backend, 23, ack=True)
        assert sorted(m.body["n"] for m in got) == list(range(23))
        assert {m.message_id for m in got} == set(ids)
        by_id = {m.message_id: m.body["n"] for m in got}
        assert [by_id[i] for i in ids] == list(range(23))

    async def test_send_batch_accepts_outgoing_messages_with_options(self, backend: Queue) -> None:
        """OutgoingMessage entries carry their own attributes."""
        ids = await backend.send_batch(
            [
                OutgoingMessage({"n": 1}, attributes={"k": "v1"}, **self.group()),
                OutgoingMessage({"n": 2}, attributes={"k": "v2"}, **self.group()),
            ]
        )
        got = await drain(backend, 2, ack=True)
        assert len(ids) == 2
        assert {m.body["n"]: m.attributes["k"] for m in got} == {1: "v1", 2: "v2"}

    async def test_send_batch_of_nothing_returns_empty_list(self, backend: Queue) -> None:
        """An empty batch sends nothing and returns []."""
        assert await backend.send_batch([]) == []

    async def test_oversized_message_names_the_limit(self, backend: Queue) -> None:
        """A message over the provider's size limit raises MessageTooLargeError, nothing sent."""
        big = {"blob": "x" * (1024 * 1024 + 10)}
        with pytest.raises(MessageTooLargeError) as info:
            await backend.send(big, **self.group())
        assert str(info.value.limit) in str(info.value)
        with pytest.raises(MessageTooLargeError, match="batch entry 1"):
            await backend.send_batch([{"small": 1}, big], **self.group())
        assert await backend.receive(max_messages=10, wait_time=0) == []

    # ----------------------------------------------------- ack / nack / handles

    async def test_deleted_message_is_not_redelivered(self, backend: Queue) -> None:
        """After delete() the message never comes back, even once its visibility ran out."""
        await backend.send({"n": 1}, **self.group())
        # visibility_timeout=0: without the delete it would be receivable again at once.
        [msg] = await drain(backend, 1, visibility_timeout=0)
        await backend.delete(msg.receipt_handle)
        assert await backend.receive(max_messages=10, wait_time=0) == []

    async def test_nack_redelivers_with_higher_receive_count(self, backend: Queue) -> None:
        """nack() makes the message available at once; its receive_count goes up."""
        await backend.send({"n": 1}, **self.group())
        [first] = await drain(backend, 1, visibility_timeout=60)
        await backend.nack(first.receipt_handle)
        [again] = await drain(backend, 1, visibility_timeout=60)
        assert again.message_id == first.message_id and again.body == {"n": 1}
        assert again.receive_count == first.receive_count + 1

    async def test_unacked_message_returns_after_visibility_timeout(self, backend: Queue) -> None:
        """A received, unacked message comes back after visibility_timeout, count + 1."""
        await backend.send({"n": 1}, **self.group())
        loop = asyncio.get_running_loop()
        # Before the receive: the server's timeout starts no earlier than this.
        asked_at = loop.time()
        [first] = await drain(backend, 1, visibility_timeout=1)
        hidden = await backend.receive(max_messages=1, wait_time=0)
        if self.lacks("visibility_timeout"):
            # Accepted and ignored: the message stays locked for the queue's lock duration.
            assert hidden == []
            return
        if hidden:
            # Only a machine stalled past the timeout between the two calls may see it
            # back already; that receive then holds it (default visibility), so it is
            # the redelivery to check.
            late = loop.time() - asked_at
            assert late >= 1, f"the message came back {late:.2f}s after its receive"
            [again] = hidden
        else:
            await self.pass_time(backend, 1)
            again = await poll_for(backend, first.message_id)
        assert again.message_id == first.message_id
        if self.abandoned_pull_may_take_a_delivery:
            assert again.receive_count >= 2
        else:
            assert again.receive_count == 2

    async def test_extend_visibility_keeps_message_hidden(self, backend: Queue) -> None:
        """extend_visibility() keeps a message invisible past its first timeout.

        A control message received with it under the same timeout shows, by the
        server's own clock, when that timeout has run out.
        """
        await backend.send({"n": 1}, **self.own_group("kept"))
        await backend.send({"n": 2}, **self.own_group("control"))
        loop = asyncio.get_running_loop()
        asked_at = loop.time()  # the server's timeouts start no earlier than this
        got = await drain(backend, 2, visibility_timeout=2)
        [kept] = [m for m in got if m.body == {"n": 1}]
        [control] = [m for m in got if m.body == {"n": 2}]
        timed = not self.lacks("visibility_timeout")  # else: the queue's long lock
        try:
            await backend.extend_visibility(kept.receipt_handle, 60)
        except ReceiptHandleError:
            if not timed or loop.time() - asked_at < 2:
                raise
        if timed and loop.time() - asked_at >= 2:
            # A machine stalled past the first timeout before the extension landed: the
            # message may be back already, and nothing below would prove anything.
            await backend.purge()
            return
        if timed:
            # The control was received no earlier than the kept one: once it is back,
            # the kept message's first timeout has run out as well.
            await self.pass_time(backend, 2)
            again = await poll_for(backend, control.message_id)
            await backend.delete(again.receipt_handle)
        assert await backend.receive(max_messages=10, wait_time=0) == []
        await backend.delete(kept.receipt_handle)

    async def test_garbage_receipt_handle_raises_receipt_handle_error(self, backend: Queue) -> None:
        """An unknown or malformed receipt handle raises ReceiptHandleError, not an SDK error."""
        with pytest.raises(ReceiptHandleError):
            await backend.delete("not-a-real-handle")
        with pytest.raises(ReceiptHandleError):
            await backend.nack("not-a-real-handle")
        with pytest.raises(ReceiptHandleError):
            await backend.delete("")

    async def test_purge_drops_every_message(self, backend: Queue) -> None:
        """purge() leaves the queue empty."""
        await backend.send_batch([{"n": i} for i in range(5)], **self.group())
        await backend.purge()
        assert await backend.receive(max_messages=10, wait_time=0) == []

    # ------------------------------------------------------- the seed's table

    async def test_delay_postpones_delivery(self, backend: Queue) -> None:
        """delay>0 hides a message until the delay passes (FeatureNotSupportedError if lacking)."""
        if self.lacks("delay"):
            with pytest.raises(FeatureNotSupportedError, match="delay"):
                await backend.send({"n": 1}, delay=1, **self.group())
            return
        loop = asyncio.get_running_loop()
        # The delay may start anywhere inside send() (Service Bus computes the scheduled
        # time mid-call), so it is timed from before the call: within 1 s of that the
        # message must still be hidden (a machine stalled past 1 s may get it here).
        sending_at = loop.time()
        await backend.send({"n": 1}, delay=1, **self.group())
        early = await backend.receive(max_messages=1, wait_time=0)
        if loop.time() - sending_at < 1:
            assert early == []
        await self.pass_time(backend, 1)
        [msg] = early or await drain(backend, 1)
        assert msg.body == {"n": 1}

    async def test_group_order_is_kept(self, backend: Queue) -> None:
        """Messages of one group are delivered in send order with their group_id."""
        if self.lacks("groups"):
            with pytest.raises(FeatureNotSupportedError, match="group_id"):
                await backend.send({"n": 1}, group_id="a")
            return
        for i in range(4):
            await backend.send({"n": i}, group_id="a")
        await backend.send({"n": 100}, group_id="b")
        order: list[int] = []
        for _ in range(20):
            if len(order) == 4:
                break
            for m in await backend.receive(max_messages=10, wait_time=1):
                if m.group_id == "a":
                    order.append(m.body["n"])
                else:
                    assert m.group_id == "b"
                await backend.delete(m.receipt_handle)
        assert order == [0, 1, 2, 3]

    async def test_group_with_a_message_in_flight_delivers_nothing_more(
        self, backend: Queue
    ) -> None:
        """While a group's message is in flight, receive() skips that group for another."""
        if self.lacks("groups"):
            with pytest.raises(FeatureNotSupportedError, match="group_id"):
                await backend.send({"n": 1}, group_id="a")
            return
        for group in ("a", "b"):  # distinct bodies: content-based dedup is queue-wide
            await backend.send_batch([{"g": group, "n": 0}, {"g": group, "n": 1}], group_id=group)
        [first] = await drain(backend, 1, visibility_timeout=60)
        other = "b" if first.group_id == "a" else "a"
        meanwhile = await drain(backend, 2, rounds=5, visibility_timeout=60)
        assert [(m.group_id, m.body["n"]) for m in meanwhile] == [(other, 0), (other, 1)]
        await backend.delete(first.receipt_handle)
        [then] = await drain(backend, 1, visibility_timeout=60)
        assert (then.group_id, then.body["n"]) == (first.group_id, 1)

    async def test_dedup_id_delivers_once(self, backend: Queue) -> None:
        """Two sends with one dedup_id deliver one message (FeatureNotSupportedError if lacking)."""
        if self.lacks("dedup"):
            with pytest.raises(FeatureNotSupportedError, match="dedup_id"):
                await backend.send({"n": 1}, dedup_id="evt-1", **self.group())
            return
        await backend.send({"n": 1}, dedup_id="evt-1", **self.group())
        await backend.send({"n": 1}, dedup_id="evt-1", **self.group())
        got = await backend.receive(max_messages=10, wait_time=1)
        got += await backend.receive(max_messages=10, wait_time=0)
        assert len(got) == 1 and got[0].dedup_id == "evt-1"

    async def test_receive_from_one_group(self, backend: Queue) -> None:
        """receive(group_id=) returns only that group (FeatureNotSupportedError if lacking)."""
        if self.lacks("group_receive"):
            with pytest.raises(FeatureNotSupportedError, match="group"):
                await backend.receive(group_id="owner-123")
            return
        await backend.send({"n": 1}, group_id="owner-1")
        await backend.send({"n": 2}, group_id="owner-123")
        got = await backend.receive(max_messages=10, wait_time=1, group_id="owner-123")
        assert [m.body for m in got] == [{"n": 2}]
        assert got[0].group_id == "owner-123"

    async def test_missing_group_id_on_fifo_queue_is_rejected(self, backend: Queue) -> None:
        """A FIFO / session queue refuses a message without group_id, naming the fix."""
        if not self.requires_group_id:
            assert not backend.requires_group_id
            return
        with pytest.raises(InvalidMessageError, match="group_id"):
            await backend.send({"n": 1})

    # ------------------------------------------------------------ dead letters

    async def test_dead_letter_moves_message_with_body_attributes_and_reason(
        self, backend: Queue
    ) -> None:
        """dead_letter() moves the message, keeping body, attributes, group and the reason."""
        await backend.send({"n": 7}, attributes={"trace": "t1"}, **self.group())
        # visibility_timeout=0: were it still on the source, the last receive would see it.
        [msg] = await drain(backend, 1, visibility_timeout=0)
        if self.lacks("dead_letter"):
            with pytest.raises(FeatureNotSupportedError):
                await backend.dead_letter(msg.receipt_handle, "bad")
            return
        await backend.dead_letter(msg.receipt_handle, "handler crashed")
        [dead] = await self.read_dead_letters(backend, 1)
        assert dead.body == {"n": 7}
        assert dead.attributes["trace"] == "t1"
        assert dead.attributes[DEAD_LETTER_REASON] == "handler crashed"
        assert dead.group_id == msg.group_id
        assert await backend.receive(max_messages=10, wait_time=0) == []

    # ----------------------------------------------------------------- consume

    async def test_consume_acks_handled_messages(self, backend: Queue) -> None:
        """consume() runs the handler per message and acks each one that succeeds."""
        await backend.send_batch([{"n": i} for i in range(6)], **self.group())
        seen: list[int] = []

        async def handler(m: Message) -> None:
            seen.append(m.body["n"])

        handled = await backend.consume(handler, concurrency=3, wait_time=1, limit=6)
        assert handled == 6 and sorted(seen) == list(range(6))
        await asyncio.sleep(0)
        assert await backend.receive(max_messages=10, wait_time=0) == []

    async def test_consume_runs_groups_in_parallel_and_each_group_in_order(
        self, backend: Queue
    ) -> None:
        """consume(concurrency=4) runs four groups at once, each group's messages in order.

        The first message of each group is held until every group has one running; a
        second message of a group started meanwhile (the bug this catches) would run
        beside the first and finish before it. Without groups every message is a group
        of its own, so four run at once as before.
        """
        lanes = ["A", "B", "C", "D"]
        per_lane = 1 if self.lacks("groups") else 3
        for lane in lanes:
            payloads = [{"lane": lane, "n": n} for n in range(per_lane)]
            if self.lacks("groups"):
                await backend.send_batch(payloads)
            else:
                await backend.send_batch(payloads, group_id=lane)
        running: dict[str, int] = defaultdict(int)
        overlaps: list[tuple[str, int]] = []
        order: dict[str, list[int]] = defaultdict(list)
        first_running: set[str] = set()
        all_running = asyncio.Event()

        async def handler(m: Message) -> None:
            lane, n = m.body["lane"], m.body["n"]
            if running[lane]:
                overlaps.append((lane, n))
            running[lane] += 1
            try:
                if n == 0:
                    first_running.add(lane)
                    if first_running == set(lanes):
                        all_running.set()
                    with contextlib.suppress(TimeoutError):  # the assert below reports it
                        await asyncio.wait_for(all_running.wait(), 20)
                order[lane].append(n)
            finally:
                running[lane] -= 1

        total = len(lanes) * per_lane
        handled = await asyncio.wait_for(
            backend.consume(handler, concurrency=4, wait_time=1, limit=total), 60
        )
        assert overlaps == []
        assert all_running.is_set(), f"only {sorted(first_running)} ran at once"
        assert dict(order) == {lane: list(range(per_lane)) for lane in lanes}
        assert handled == total
        assert await backend.receive(max_messages=10, wait_time=0) == []

    async def test_consume_nacks_a_failing_handler_and_retries(self, backend: Queue) -> None:
        """A handler that raises gets the message again (nacked), with receive_count 2."""
        await backend.send({"n": 1}, **self.group())
        counts: list[int] = []

        async def handler(m: Message) -> None:
            counts.append(m.receive_count)
            if len(counts) == 1:
                raise RuntimeError("first try fails")

        await backend.consume(handler, wait_time=1, limit=2)
        assert counts == [1, 2]
        assert await backend.receive(max_messages=10, wait_time=0) == []

    async def test_consume_dead_letters_after_max_receives(self, backend: Queue) -> None:
        """With max_receives=2 a message failing twice goes to the dead-letter queue."""
        if self.lacks("dead_letter"):
            with pytest.raises(FeatureNotSupportedError):
                await backend.consume(lambda m: asyncio.sleep(0), max_receives=2)
            return
        await backend.send({"n": 1}, **self.group())

        async def handler(m: Message) -> None:
            raise ValueError("poison")

        await backend.consume(handler, wait_time=1, max_receives=2, limit=2)
        [dead] = await self.read_dead_letters(backend, 1)
        assert dead.body == {"n": 1}
        assert "ValueError: poison" in dead.attributes[DEAD_LETTER_REASON]

    async def test_cancelled_consume_finishes_in_flight_handler_and_loses_nothing(
        self, backend: Queue
    ) -> None:
        """Cancelling consume() mid-handler lets it finish and ack; nothing is lost."""
        await backend.send_batch([{"n": i} for i in range(3)], **self.group())
        started = asyncio.Event()
        release = asyncio.Event()
        finished: list[int] = []

        async def handler(m: Message) -> None:
            started.set()
            await release.wait()
            finished.append(m.body["n"])

        worker = asyncio.create_task(backend.consume(handler, concurrency=1, wait_time=1))
        worker.add_done_callback(lambda _: finished.append(-1))  # -1: consume() returned
        await asyncio.wait_for(started.wait(), 15)
        worker.cancel()
        for _ in range(20):  # let the cancellation reach consume() (no time passes)
            await asyncio.sleep(0)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await worker
        await asyncio.sleep(0)  # the done callback runs on the next loop turn
        assert len(finished) == 2 and finished[1] == -1  # the handler finished first
        finished.pop()
        # The finished one was acked; the others are still there (never received or
        # returned by their visibility timeout).
        rest = await drain(backend, 2, rounds=40)
        assert sorted(m.body["n"] for m in rest) == sorted({0, 1, 2} - set(finished))

    async def test_close_stops_consume_after_in_flight_work(self, backend: Queue) -> None:
        """close() stops a running consume(): its in-flight handler finishes and is acked."""
        await backend.send({"n": 1}, **self.group())
        started, release = asyncio.Event(), asyncio.Event()
        finished: list[int] = []

        async def handler(m: Message) -> None:
            started.set()
            await release.wait()
            finished.append(m.body["n"])

        worker = asyncio.create_task(backend.consume(handler, wait_time=1))
        await asyncio.wait_for(started.wait(), 15)
        closing = asyncio.create_task(backend.close())
        for _ in range(20):  # close() is under way (no time passes)
            await asyncio.sleep(0)
        assert not closing.done()  # it waits for the in-flight handler
        release.set()
        await asyncio.wait_for(closing, 15)
        assert await asyncio.wait_for(worker, 15) == 1
        assert finished == [1]

    # ---------------------------------------------------------------- lifecycle

    async def test_health_check_is_true_when_reachable(self, backend: Queue) -> None:
        """health_check() really contacts the service and answers True."""
        assert await backend.health_check() is True

    async def test_use_after_close_raises_backend_closed(self, backend: Queue) -> None:
        """Every operation after close() raises BackendClosedError; close twice is fine."""
        await backend.close()
        await backend.close()
        with pytest.raises(BackendClosedError):
            await backend.send({"n": 1}, **self.group())
        with pytest.raises(BackendClosedError):
            await backend.receive()
        with pytest.raises(BackendClosedError):
            await backend.delete("x")
        with pytest.raises(BackendClosedError):
            await backend.health_check()

    async def test_async_with_closes_the_backend(self, backend: Queue) -> None:
        """``async with`` returns the backend and closes it on exit."""
        async with backend as q:
            assert q is backend
        assert backend.closed

    # ------------------------------------------------------------------ telemetry

    async def test_consume_handles_a_message_in_the_senders_trace(
        self, backend: Queue, recorder: Recorder
    ) -> None:
        """A message sent inside a span is handled by consume() in a CONSUMER process span
        of the same trace, child of the send span and linked to it; the handler's own
        operations join that trace, and the trace context is not among the attributes."""
        with recorder.tracer.start_as_current_span("request") as request:
            await backend.send({"n": 1}, attributes={"a": "1"}, **self.group())
        seen: list[Message] = []
        inner: list[int] = []

        async def handler(message: Message) -> None:
            seen.append(message)
            await backend.health_check()  # the worker's own operation: same trace
            inner.append(1)

        await asyncio.wait_for(backend.consume(handler, wait_time=1, limit=1), 60)
        assert inner == [1]
        assert dict(seen[0].attributes) == {"a": "1"}
        assert set(seen[0].transport_headers) >= {"traceparent"}
        spans = recorder.spans(backend.category)
        trace_id = request.get_span_context().trace_id
        (send,) = [s for s in spans if s.attributes["cloudrift.operation"] == "send"]
        (process,) = [s for s in spans if s.kind is SpanKind.CONSUMER]
        (health,) = [s for s in spans if s.attributes["cloudrift.operation"] == "health_check"]
        assert send.context.trace_id == trace_id
        assert process.context.trace_id == trace_id
        assert process.parent is not None and process.parent.span_id == send.context.span_id
        assert [link.context.span_id for link in process.links] == [send.context.span_id]
        assert process.attributes["messaging.operation.type"] == "process"
        assert health.parent is not None and health.parent.span_id == process.context.span_id
        (receive,) = [
            s for s in spans if s.attributes["cloudrift.operation"] == "receive" and s.links
        ]
        assert [link.context.span_id for link in receive.links] == [send.context.span_id]
        assert "messaging.message.id" not in send.name and seen[0].message_id not in send.name
        metrics = recorder.metrics()
        assert sum(p.value for p in metrics["messaging.client.sent.messages"]) == 1
        assert sum(p.value for p in metrics["messaging.client.consumed.messages"]) >= 1
        assert metrics["messaging.process.duration"]

    async def test_a_message_without_trace_context_is_handled_in_a_new_trace(
        self, backend: Queue, recorder: Recorder
    ) -> None:
        """A foreign message (no traceparent) is processed in a new trace, never in the
        trace that happens to surround consume(); a failing handler marks the span."""
        await self.send_foreign(backend, b'{"foreign": true}')

        def handler(message: Message) -> None:
            raise RuntimeError("boom")

        with recorder.tracer.start_as_current_span("worker") as worker:
            await asyncio.wait_for(backend.consume(handler, wait_time=1, limit=1), 60)
        (process,) = [s for s in recorder.spans(backend.category) if s.kind is SpanKind.CONSUMER]
        assert process.parent is None and process.links == ()
        assert process.context.trace_id != worker.get_span_context().trace_id
        assert process.attributes["error.type"] == "RuntimeError"
        assert process.status.status_code is StatusCode.ERROR

    async def test_send_batch_carries_the_trace_context_of_its_span(
        self, backend: Queue, recorder: Recorder
    ) -> None:
        """Every message of a batch carries the send_batch span's context, which counts
        them; a user attribute may not take the reserved traceparent name."""
        with recorder.tracer.start_as_current_span("request"):
            await backend.send_batch([{"n": 1}, {"n": 2}], **self.group())
        (batch,) = [s for s in recorder.spans(backend.category) if s.name.startswith("send_batch")]
        assert batch.attributes["messaging.batch.message_count"] == 2
        got = await drain(backend, 2, ack=True)
        for message in got:
            assert "traceparent" not in message.attributes
            assert f"{batch.context.span_id:016x}" in message.transport_headers["traceparent"]
        with pytest.raises(InvalidMessageError, match="reserved"):
            await backend.send({}, attributes={"traceparent": "x"}, **self.group())
