"""The topic conformance suite: every topic provider runs it against a real stand-in.

A provider's test module subclasses :class:`TopicConformance` and provides:

* an async ``backend`` fixture: a fresh topic with no subscriptions (closed afterwards);
* :meth:`TopicConformance.open_subscription`: a new subscription of that topic, consumed as
  a :class:`~cloudrift.messaging.Queue` (the suite closes it after the test);
* :meth:`TopicConformance.send_foreign` and :meth:`TopicConformance.read_dead_letters`;
* optionally :meth:`TopicConformance.failing_entry` (default: the provider's batch hook
  reports one entry failed and sends the rest, which checks the shared accounting
  end to end; a harness whose service can refuse one entry overrides it to do so).

Capabilities a provider may lack (each then must raise FeatureNotSupportedError):

``groups``       publish(group_id=) with per-group FIFO order on every subscription
``dedup``        publish(dedup_id=) deduplication
``dead_letter``  dead_letter() on a subscription

``requires_group_id = True`` marks FIFO topics (SNS ``.fifo``): every publish carries a
group. ``batch_parts`` is how ``publish_batch`` of 25 must be split into provider
requests (``(10, 10, 5)`` on SNS); None where the SDK sizes batches itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import ClassVar

import pytest
from opentelemetry.trace import SpanKind

from cloudrift.core.exceptions import (
    BackendClosedError,
    FeatureNotSupportedError,
    InvalidMessageError,
    MessageSendError,
    MessageTooLargeError,
)
from cloudrift.messaging import DEAD_LETTER_REASON, Message, OutgoingMessage, Queue, Topic
from cloudrift.messaging.base import PreparedMessage, SendFailure
from tests.conformance import BackendConformance
from tests.conformance.messaging import drain
from tests.telemetry.support import Recorder

GROUP = "g-default"


async def nothing_more(subscription: Queue, wait: float = 1.0) -> None:
    """Assert the subscription holds nothing else (a short long-poll finds nothing)."""
    assert await subscription.receive(max_messages=10, wait_time=wait) == []


class TopicConformance(BackendConformance):
    """The contract of :class:`cloudrift.messaging.Topic` and its subscriptions."""

    failing_operation = (
        "publish_batch",
        ([OutgoingMessage({}, delay=-1)],),
        "InvalidArgumentError",
    )

    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"groups", "dedup", "dead_letter"})
    requires_group_id: ClassVar[bool] = False
    batch_parts: ClassVar[tuple[int, ...] | None] = (10, 10, 5)
    #: How long "nothing more arrives" waits: fan-out over a network may lag a publish;
    #: in-process fan-out (memory) is done when publish returns.
    settle_wait: ClassVar[float] = 1.0

    _opened: list[Queue]

    # ----------------------------------------------------------- harness hooks

    async def open_subscription(self, backend: Topic, name: str) -> Queue:
        """A new subscription ``name`` of ``backend``, receiving what is published next."""
        raise NotImplementedError

    async def send_foreign(self, subscription: Queue, raw: bytes) -> None:
        """Put ``raw`` on the subscription the way a non-cloudrift producer would."""
        raise NotImplementedError

    async def read_dead_letters(self, subscription: Queue, count: int) -> list[Message]:
        """Receive ``count`` messages from the subscription's dead-letter queue."""
        raise NotImplementedError

    @contextlib.contextmanager
    def failing_entry(self, backend: Topic, index: int) -> Iterator[None]:
        """While active, entry ``index`` of a ``publish_batch`` fails; the rest are sent."""
        real = backend._send_chunk

        async def chunk_with_a_failure(
            chunk: Sequence[PreparedMessage],
        ) -> Sequence[str | SendFailure]:
            keep = [m for m in chunk if m.index != index]
            sent = iter(await real(keep) if keep else [])
            return [
                SendFailure("refused by the test") if m.index == index else next(sent)
                for m in chunk
            ]

        backend._send_chunk = chunk_with_a_failure  # type: ignore[method-assign]
        try:
            yield
        finally:
            del backend._send_chunk

    def group(self, value: str | None = None) -> dict[str, str]:
        """publish() keyword arguments for a group: always when the topic requires one."""
        if value is not None:
            return {"group_id": value}
        return {"group_id": GROUP} if self.requires_group_id else {}

    @pytest.fixture(autouse=True)
    async def _close_subscriptions(self) -> AsyncIterator[None]:
        self._opened = []
        yield
        for subscription in self._opened:
            await subscription.close()

    async def subscribe(self, backend: Topic, name: str) -> Queue:
        """Open a subscription through the harness; the suite closes it afterwards."""
        subscription = await self.open_subscription(backend, name)
        self._opened.append(subscription)
        return subscription

    # ---------------------------------------------------------------- capabilities

    async def test_unsupported_matches_the_backend_flags(self, backend: Topic) -> None:
        """The topic's supports_groups / supports_dedup and a subscription's
        supports_dead_letter are bools saying exactly what the harness's ``unsupported``
        says; a topic has no per-message delay."""
        subscription = await self.subscribe(backend, "flags")
        has = {
            "groups": backend.supports_groups,
            "dedup": backend.supports_dedup,
            "dead_letter": subscription.supports_dead_letter,
        }
        assert all(isinstance(value, bool) for value in has.values()), has
        assert {cap for cap, value in has.items() if not value} == self.unsupported
        assert backend.supports_delay is False
        assert backend.requires_group_id is self.requires_group_id

    # ---------------------------------------------------------------- fan-out

    async def test_publish_fans_out_to_every_subscription_exactly_once(
        self, backend: Topic
    ) -> None:
        """Each of two subscriptions receives every published message exactly once."""
        audit = await self.subscribe(backend, "audit")
        search = await self.subscribe(backend, "search")
        ids = [await backend.publish({"n": n}, **self.group()) for n in range(5)]
        assert len(set(ids)) == 5 and all(isinstance(i, str) and i for i in ids)
        for subscription in (audit, search):
            got = await drain(subscription, 5, ack=True)
            assert sorted(m.body["n"] for m in got) == list(range(5))
            await nothing_more(subscription, self.settle_wait)

    async def test_group_order_is_kept_on_every_subscription(self, backend: Topic) -> None:
        """Messages of one group arrive in publish order on each subscription."""
        first = await self.subscribe(backend, "first")
        second = await self.subscribe(backend, "second")
        if self.lacks("groups"):
            with pytest.raises(FeatureNotSupportedError, match="group_id"):
                await backend.publish({"n": 0}, group_id="g")
            return
        await backend.publish_batch([{"n": n} for n in range(12)], group_id="owner-1")
        for subscription in (first, second):
            got = await drain(subscription, 12, ack=True)
            assert [m.body["n"] for m in got] == list(range(12))
            assert {m.group_id for m in got} == {"owner-1"}

    async def test_each_subscription_handles_a_message_in_the_publishers_trace(
        self, backend: Topic, recorder: Recorder
    ) -> None:
        """A message published inside a span is handled by consume() on every
        subscription in a CONSUMER process span of the same trace, child of the publish
        span; the trace context is not among the message's attributes."""
        subs = [await self.subscribe(backend, name) for name in ("a", "b")]
        with recorder.tracer.start_as_current_span("request") as request:
            await backend.publish({"n": 1}, attributes={"a": "1"}, **self.group())
        seen: list[Message] = []
        for subscription in subs:
            await asyncio.wait_for(subscription.consume(seen.append, wait_time=1, limit=1), 60)
        assert [dict(m.attributes) for m in seen] == [{"a": "1"}, {"a": "1"}]
        spans = recorder.spans()
        trace_id = request.get_span_context().trace_id
        operations = [(s.attributes or {}).get("cloudrift.operation") for s in spans]
        (publish,) = [s for s, op in zip(spans, operations, strict=True) if op == "publish"]
        processes = [s for s in spans if s.kind is SpanKind.CONSUMER]
        assert len(processes) == 2
        for process in processes:
            assert process.context.trace_id == trace_id
            assert process.parent is not None and process.parent.span_id == publish.context.span_id

    async def test_attributes_round_trip(self, backend: Topic) -> None:
        """Attributes published with a message reach every subscription unchanged."""
        subs = [await self.subscribe(backend, name) for name in ("a", "b")]
        await backend.publish(
            {"n": 1}, attributes={"trace": "abc-123", "kind": "order.created"}, **self.group()
        )
        for subscription in subs:
            [msg] = await drain(subscription, 1, ack=True)
            assert msg.body == {"n": 1} and msg.is_json
            assert msg.attributes["trace"] == "abc-123"
            assert msg.attributes["kind"] == "order.created"

    async def test_subscription_opened_after_a_publish_does_not_see_it(
        self, backend: Topic
    ) -> None:
        """A subscription receives only what is published after it existed."""
        early = await self.subscribe(backend, "early")
        await backend.publish({"n": "before"}, **self.group())
        [seen] = await drain(early, 1, ack=True)  # the first publish has been fanned out
        assert seen.body == {"n": "before"}
        late = await self.subscribe(backend, "late")
        await backend.publish({"n": "after"}, **self.group())
        [msg] = await drain(late, 1, ack=True)
        assert msg.body == {"n": "after"}
        await nothing_more(late, self.settle_wait)
        [again] = await drain(early, 1, ack=True)
        assert again.body == {"n": "after"}

    # ------------------------------------------------------------------ batches

    async def test_publish_batch_is_split_into_provider_batches(self, backend: Topic) -> None:
        """publish_batch of 25 returns 25 ids in order, sent in provider-legal requests."""
        subscription = await self.subscribe(backend, "batch")
        parts: list[int] = []
        real = backend._send_chunk

        async def counting(chunk: Sequence[PreparedMessage]) -> Sequence[str | SendFailure]:
            parts.append(len(chunk))
            return await real(chunk)

        backend._send_chunk = counting  # type: ignore[method-assign]
        try:
            ids = await backend.publish_batch([{"n": n} for n in range(25)], **self.group())
        finally:
            del backend._send_chunk
        assert len(ids) == 25 and len(set(ids)) == 25
        if self.batch_parts is not None:
            assert tuple(parts) == self.batch_parts
        got = await drain(subscription, 25, ack=True)
        assert sorted(m.body["n"] for m in got) == list(range(25))
        await nothing_more(subscription, self.settle_wait)

    async def test_partial_batch_failure_reports_failed_and_published_entries(
        self, backend: Topic
    ) -> None:
        """When one entry fails, MessageSendError names it and the ids of all others,
        and every other entry reaches the subscription."""
        subscription = await self.subscribe(backend, "partial")
        with self.failing_entry(backend, 3), pytest.raises(MessageSendError) as info:
            await backend.publish_batch([{"n": n} for n in range(7)], **self.group())
        err = info.value
        assert set(err.failed) == {3} and err.failed[3]
        assert set(err.succeeded) == {0, 1, 2, 4, 5, 6}
        got = await drain(subscription, 6, ack=True)
        assert sorted(m.body["n"] for m in got) == [0, 1, 2, 4, 5, 6]
        await nothing_more(subscription, self.settle_wait)

    async def test_publish_batch_of_nothing_returns_empty_list(self, backend: Topic) -> None:
        """An empty batch publishes nothing and returns []."""
        assert await backend.publish_batch([]) == []

    # -------------------------------------------------------------- bad input

    async def test_oversized_publish_names_the_limit(self, backend: Topic) -> None:
        """A message over the provider's limit raises MessageTooLargeError; nothing sent."""
        subscription = await self.subscribe(backend, "big")
        big = {"blob": "x" * (1024 * 1024 + 10)}
        with pytest.raises(MessageTooLargeError) as info:
            await backend.publish(big, **self.group())
        assert str(info.value.limit) in str(info.value)
        with pytest.raises(MessageTooLargeError, match="batch entry 1"):
            await backend.publish_batch([{"small": 1}, big], **self.group())
        await nothing_more(subscription, self.settle_wait)

    async def test_non_json_payload_raises_type_error(self, backend: Topic) -> None:
        """A payload that is not JSON-serialisable raises TypeError before any publish."""
        with pytest.raises(TypeError, match="JSON-serialisable"):
            await backend.publish({"when": {1, 2}}, **self.group())
        with pytest.raises(TypeError, match="batch entry 1"):
            await backend.publish_batch([{"ok": 1}, object()], **self.group())

    async def test_fifo_topic_without_group_id_is_rejected(self, backend: Topic) -> None:
        """A FIFO topic refuses a message without group_id, naming the fix."""
        if not self.requires_group_id:
            assert not backend.requires_group_id
            return
        with pytest.raises(InvalidMessageError, match="group_id"):
            await backend.publish({"n": 1})
        with pytest.raises(InvalidMessageError, match="group_id"):
            await backend.publish_batch([{"n": 1}])

    async def test_dedup_id_delivers_once_per_subscription(self, backend: Topic) -> None:
        """Two publishes with one dedup_id reach each subscription once."""
        if self.lacks("dedup"):
            with pytest.raises(FeatureNotSupportedError, match="dedup_id"):
                await backend.publish({"n": 1}, dedup_id="d-1", **self.group())
            return
        subscription = await self.subscribe(backend, "dedup")
        await backend.publish({"n": 1}, dedup_id="d-1", **self.group())
        await backend.publish({"n": 1}, dedup_id="d-1", **self.group())
        [msg] = await drain(subscription, 1, ack=True)
        assert msg.body == {"n": 1}
        await nothing_more(subscription, self.settle_wait)

    # --------------------------------------------------- subscriptions as queues

    async def test_ack_on_one_subscription_does_not_affect_the_other(self, backend: Topic) -> None:
        """Deleting a message on one subscription leaves the other's copy to deliver."""
        one = await self.subscribe(backend, "one")
        two = await self.subscribe(backend, "two")
        await backend.publish({"n": 1}, **self.group())
        [msg] = await drain(one, 1)
        await one.delete(msg.receipt_handle)
        await nothing_more(one, self.settle_wait)
        [other] = await drain(two, 1)
        assert other.body == {"n": 1} and other.receive_count == 1
        await two.nack(other.receipt_handle)
        [again] = await drain(two, 1, ack=True)
        assert again.body == {"n": 1} and again.receive_count == 2
        await nothing_more(one, self.settle_wait)

    async def test_dead_letter_is_per_subscription(self, backend: Topic) -> None:
        """Dead-lettering on one subscription keeps body, attributes and reason there,
        and leaves the other subscription's copy alone."""
        poisoned = await self.subscribe(backend, "poisoned")
        healthy = await self.subscribe(backend, "healthy")
        await backend.publish({"n": 7}, attributes={"trace": "t1"}, **self.group())
        [msg] = await drain(poisoned, 1)
        if self.lacks("dead_letter"):
            with pytest.raises(FeatureNotSupportedError):
                await poisoned.dead_letter(msg.receipt_handle, "bad")
            return
        await poisoned.dead_letter(msg.receipt_handle, "handler crashed")
        [dead] = await self.read_dead_letters(poisoned, 1)
        assert dead.body == {"n": 7} and dead.attributes["trace"] == "t1"
        assert dead.attributes[DEAD_LETTER_REASON] == "handler crashed"
        await nothing_more(poisoned, self.settle_wait)
        [copy] = await drain(healthy, 1, ack=True)
        assert copy.body == {"n": 7} and DEAD_LETTER_REASON not in copy.attributes

    async def test_consume_on_a_subscription_handles_and_acks(self, backend: Topic) -> None:
        """consume() on a subscription runs the handler per published message and acks."""
        subscription = await self.subscribe(backend, "worker")
        await backend.publish_batch([{"n": n} for n in range(4)], **self.group())
        seen: list[int] = []

        async def handler(m: Message) -> None:
            seen.append(m.body["n"])

        handled = await asyncio.wait_for(
            subscription.consume(handler, concurrency=2, wait_time=1, limit=4), 60
        )
        assert handled == 4 and sorted(seen) == list(range(4))
        await nothing_more(subscription, self.settle_wait)

    async def test_foreign_non_json_message_is_delivered_raw(self, backend: Topic) -> None:
        """A non-JSON message another producer put on the subscription is delivered raw."""
        subscription = await self.subscribe(backend, "foreign")
        await self.send_foreign(subscription, b"plain text, not json")
        [msg] = await drain(subscription, 1)
        assert not msg.is_json and msg.body is None
        assert msg.raw == b"plain text, not json" and msg.text == "plain text, not json"
        await subscription.delete(msg.receipt_handle)

    # --------------------------------------------------------------- lifecycle

    async def test_health_check_is_true_when_reachable(self, backend: Topic) -> None:
        """health_check() is True for a reachable topic."""
        assert await backend.health_check() is True

    async def test_use_after_close_raises_backend_closed(self, backend: Topic) -> None:
        """After close(), publishing raises BackendClosedError; closing again is harmless."""
        await backend.close()
        await backend.close()
        with pytest.raises(BackendClosedError):
            await backend.publish({"n": 1}, **self.group())
        with pytest.raises(BackendClosedError):
            await backend.publish_batch([{"n": 1}], **self.group())
        with pytest.raises(BackendClosedError):
            await backend.health_check()


__all__ = ["TopicConformance", "nothing_more"]
