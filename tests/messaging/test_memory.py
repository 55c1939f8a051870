"""The memory queue passes the messaging conformance suite, plus its own guarantees."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cloudrift.core.exceptions import BackendClosedError, ReceiptHandleError
from cloudrift.messaging import Message, Queue, get_queue
from cloudrift.messaging.memory import MemoryQueue
from tests.clock import FakeClock
from tests.conformance.messaging import MessagingConformance, drain


class TestMemoryQueue(MessagingConformance):
    """Memory provider: every capability supported; time is a fake clock."""

    @pytest.fixture
    async def backend(self) -> AsyncIterator[Queue]:
        self._clock = FakeClock()
        queue = get_queue("memory", clock=self._clock)
        try:
            yield queue
        finally:
            await queue.close()

    async def pass_time(self, backend: Queue, seconds: float) -> None:
        await self._clock.advance(seconds)

    async def send_foreign(self, backend: Queue, raw: bytes) -> None:
        assert isinstance(backend, MemoryQueue)
        await backend.inject_raw(raw)

    async def read_dead_letters(self, backend: Queue, count: int) -> list[Message]:
        assert isinstance(backend, MemoryQueue)
        return await drain(backend.dead_letter_queue, count)

    async def test_queue_timers_follow_the_clock(self, backend: Queue) -> None:
        """Visibility timeouts and delays move with the injected clock, not wall time."""
        await backend.send({"n": 1}, delay=3600)
        assert await backend.receive(wait_time=0) == []
        await self.pass_time(backend, 3600)
        [msg] = await backend.receive(visibility_timeout=3600)
        assert await backend.receive(wait_time=0) == []
        await self.pass_time(backend, 3600)
        [again] = await backend.receive()
        assert again.message_id == msg.message_id and again.receive_count == 2


async def test_get_queue_memory_needs_no_options() -> None:
    """get_queue("memory") builds a working queue with no options."""
    async with get_queue("memory") as queue:
        assert isinstance(queue, MemoryQueue)
        assert repr(queue) == "MemoryQueue(name='memory')"


async def test_non_utf8_foreign_message_is_delivered_as_raw_bytes() -> None:
    """Bytes that are not UTF-8 are delivered with raw bytes and do not break receive()."""
    async with MemoryQueue() as queue:
        await queue.inject_raw(b"\xff\xfe\x00binary")
        [msg] = await queue.receive()
        assert msg.raw == b"\xff\xfe\x00binary" and msg.text is None and not msg.is_json


async def test_handle_from_another_instance_is_rejected() -> None:
    """A receipt handle from another memory queue raises ReceiptHandleError naming why."""
    async with MemoryQueue() as one, MemoryQueue() as other:
        await one.send({"n": 1})
        [msg] = await one.receive()
        with pytest.raises(ReceiptHandleError, match="not issued by"):
            await other.delete(msg.receipt_handle)


async def test_stale_handle_after_redelivery_is_rejected() -> None:
    """Once a message is received again, the earlier handle is stale."""
    async with MemoryQueue() as queue:
        await queue.send({"n": 1})
        [first] = await queue.receive(visibility_timeout=60)
        await queue.nack(first.receipt_handle)
        [second] = await queue.receive(visibility_timeout=60)
        with pytest.raises(ReceiptHandleError, match="stale"):
            await queue.delete(first.receipt_handle)
        await queue.delete(second.receipt_handle)
        with pytest.raises(ReceiptHandleError, match="stale"):
            await queue.delete(second.receipt_handle)


async def test_dead_letter_into_closed_dlq_keeps_message_on_source() -> None:
    """If the move to the dead-letter queue fails, the message stays on the source queue."""
    dlq = MemoryQueue(name="dlq")
    async with MemoryQueue(dead_letter_queue=dlq) as queue:
        await queue.send({"n": 1}, group_id="g")
        [msg] = await queue.receive(visibility_timeout=60)
        await dlq.close()
        with pytest.raises(BackendClosedError):
            await queue.dead_letter(msg.receipt_handle, "poison")
        assert len(queue) == 1
        await queue.nack(msg.receipt_handle)
        [again] = await queue.receive()
        assert again.body == {"n": 1} and again.group_id == "g"


async def test_group_with_message_in_flight_delivers_nothing_more() -> None:
    """Like SQS FIFO: a group's next message waits until the in-flight one is acked."""
    async with MemoryQueue() as queue:
        await queue.send_batch([{"n": 1}, {"n": 2}], group_id="g")
        [first] = await queue.receive(max_messages=1, visibility_timeout=60)
        assert await queue.receive(max_messages=10) == []
        await queue.delete(first.receipt_handle)
        [second] = await queue.receive(max_messages=10)
        assert second.body == {"n": 2}
