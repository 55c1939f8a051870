"""The shared work in cloudrift.messaging.base: serialisation, validation, batching, consume()."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from cloudrift.core.exceptions import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidMessageError,
    MessageSendError,
    MessagingConnectionError,
    MessagingError,
)
from cloudrift.messaging import Message, OutgoingMessage, get_queue
from cloudrift.messaging.base import (
    InFlightMap,
    PreparedMessage,
    SendFailure,
    SendLimits,
    encode_payload,
)
from cloudrift.messaging.memory import MemoryQueue
from tests.clock import FakeClock

ROOT = Path(__file__).resolve().parents[2]


class FlakyChunks(MemoryQueue):
    """Test double over the real memory queue: chunk number ``fail_at`` loses its connection."""

    def __init__(self, fail_at: int, *, wrong_count: bool = False) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.wrong_count = wrong_count
        self.chunks: list[int] = []

    async def _send_chunk(self, chunk: Sequence[PreparedMessage]) -> Sequence[str | SendFailure]:
        self.chunks.append(len(chunk))
        if len(self.chunks) == self.fail_at:
            raise MessagingConnectionError("connection reset by peer")
        results = list(await super()._send_chunk(chunk))
        return results[:-1] if self.wrong_count else results


def test_payload_is_compact_utf8_json() -> None:
    """Payloads serialise once, to compact UTF-8 JSON (non-ASCII kept as UTF-8)."""
    assert encode_payload({"a": 1, "b": "é"}) == '{"a":1,"b":"é"}'.encode()


@pytest.mark.parametrize("bad", [{1, 2}, b"bytes", object(), math.nan, {"x": math.inf}])
def test_non_json_payload_raises_type_error(bad: object) -> None:
    """Sets, bytes, objects, NaN and infinity are refused with TypeError."""
    with pytest.raises(TypeError, match="JSON-serialisable"):
        encode_payload(bad)


def test_message_from_raw_keeps_non_json_bytes() -> None:
    """Non-JSON and non-UTF-8 bytes become a Message with is_json False and raw intact."""
    text = Message.from_raw(b"hello", receipt_handle="h", message_id="m")
    binary = Message.from_raw(b"\xff", receipt_handle="h", message_id="m")
    json_null = Message.from_raw(b"null", receipt_handle="h", message_id="m")
    assert (text.is_json, text.body, text.text) == (False, None, "hello")
    assert (binary.is_json, binary.text, binary.raw) == (False, None, b"\xff")
    assert (json_null.is_json, json_null.body) == (True, None)


def test_message_repr_does_not_show_the_body() -> None:
    """repr(Message) names id, group and count, never the payload (it may be sensitive)."""
    msg = Message.from_raw(b'{"card": "4111"}', receipt_handle="h", message_id="m1")
    assert "4111" not in repr(msg) and "m1" in repr(msg)


def test_in_flight_map_evicts_oldest_beyond_its_bound() -> None:
    """The in-flight map never holds more than max_size entries."""
    inflight: InFlightMap[int] = InFlightMap(max_size=3)
    for i in range(10):
        inflight.add(f"h{i}", i)
    assert len(inflight) == 3 and list(inflight) == ["h7", "h8", "h9"]
    assert inflight.pop("h8") == 8 and inflight.get("h1") is None


async def test_batch_is_split_by_bytes_as_well_as_count() -> None:
    """Entries are packed in order into batches under both the count and byte limits."""
    queue = MemoryQueue()
    entries = [PreparedMessage(index=i, body=b"x" * 40) for i in range(7)]
    plan = queue._plan_batches(entries, SendLimits(100, 10, 100))
    assert [len(b) for b in plan] == [2, 2, 2, 1]
    plan = queue._plan_batches(entries, SendLimits(100, 3, 10_000))
    assert [len(b) for b in plan] == [3, 3, 1]


async def test_connection_loss_mid_batch_reports_every_entry() -> None:
    """Sent entries keep their ids; the failed chunk and the rest are reported as failed."""
    async with FlakyChunks(fail_at=2) as queue:
        with pytest.raises(MessageSendError, match="15 of 25 messages were not sent") as info:
            await queue.send_batch([{"n": i} for i in range(25)])
        err = info.value
        assert sorted(err.succeeded) == list(range(10))
        assert sorted(err.failed) == list(range(10, 25))
        assert "connection reset" in err.failed[10] and "not attempted" in err.failed[20]
        assert queue.chunks == [10, 10]  # the third chunk was not attempted
        got = await queue.receive(max_messages=100)
        assert {m.message_id for m in got} == set(err.succeeded.values())


class ConcurrentChunks(MemoryQueue):
    """The memory queue sending ``send_batch`` parts 8 at a time, as SQS standard does.

    Each part waits until ``width`` parts are in flight (or every part started), then
    finishes after a number of loop turns that makes later parts finish first.
    """

    def __init__(self, *, fail: dict[int, MessagingError] | None = None) -> None:
        super().__init__()
        self.batch_send_concurrency = 8
        self.fail = fail or {}
        self.started = 0
        self.in_flight = 0
        self.peak = 0
        self.crowd = asyncio.Event()

    async def _send_chunk(self, chunk: Sequence[PreparedMessage]) -> Sequence[str | SendFailure]:
        number, self.started = self.started, self.started + 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight == 8:
            self.crowd.set()
        try:
            await asyncio.wait_for(self.crowd.wait(), 10)
            if number in self.fail:
                raise self.fail[number]
            for _ in range(20 - number):  # later parts finish first
                await asyncio.sleep(0)
            return await super()._send_chunk(chunk)
        finally:
            self.in_flight -= 1


async def test_unordered_batch_parts_go_concurrently_and_ids_keep_input_order() -> None:
    """With batch_send_concurrency=8, 8 parts are in flight at once; ids stay in input order."""
    async with ConcurrentChunks() as queue:
        ids = await queue.send_batch([{"n": i} for i in range(100)])
        assert queue.peak == 8 and queue.started == 10
        got = await queue.receive(max_messages=100)
        by_id = {m.message_id: m.body["n"] for m in got}
        assert [by_id[i] for i in ids] == list(range(100))


async def test_concurrent_batch_parts_report_every_failure_by_entry() -> None:
    """A part that fails is reported per entry; after a connection loss, parts not yet
    started are not attempted; parts already in flight still count as sent."""
    fail = {0: MessagingConnectionError("connection reset"), 3: MessagingError("throttled")}
    async with ConcurrentChunks(fail=fail) as queue:
        with pytest.raises(MessageSendError) as info:
            await queue.send_batch([{"n": i} for i in range(100)])
        err = info.value
        assert sorted(err.succeeded) == [i for i in range(80) if i // 10 not in (0, 3)]
        assert {i // 10 for i in err.failed} == {0, 3, 8, 9}
        assert "connection reset" in err.failed[0] and "throttled" in err.failed[35]
        assert all("not attempted" in err.failed[i] for i in range(80, 100))
        assert queue.started == 8
        got = await queue.receive(max_messages=100)
        assert {m.message_id for m in got} == set(err.succeeded.values())


async def test_grouped_batch_parts_go_one_at_a_time_in_order() -> None:
    """Entries with a group_id are sent part after part, whatever the concurrency."""

    class Sequential(ConcurrentChunks):
        async def _send_chunk(
            self, chunk: Sequence[PreparedMessage]
        ) -> Sequence[str | SendFailure]:
            self.crowd.set()  # nothing to wait for: one part at a time is the point
            return await super()._send_chunk(chunk)

    async with Sequential() as queue:
        await queue.send_batch([{"n": i} for i in range(30)], group_id="g")
        assert queue.peak == 1 and queue.started == 3


async def test_provider_returning_too_few_results_is_an_error_not_success() -> None:
    """A provider that loses track of an entry makes send_batch fail loudly."""
    async with FlakyChunks(fail_at=0, wrong_count=True) as queue:
        with pytest.raises(MessagingError, match="outcome is unknown"):
            await queue.send_batch([{"n": 1}, {"n": 2}])


async def test_bad_message_options_are_rejected_before_sending() -> None:
    """Negative delays, bad attributes and empty ids fail fast; nothing reaches the queue."""
    async with MemoryQueue() as queue:
        with pytest.raises(ValueError, match="delay"):
            await queue.send({"n": 1}, delay=-1)
        with pytest.raises(ValueError, match="delay"):
            await queue.send({"n": 1}, delay=math.nan)
        with pytest.raises(InvalidMessageError, match="attribute"):
            await queue.send({"n": 1}, attributes={"k": 1})  # type: ignore[dict-item]
        with pytest.raises(InvalidMessageError, match="group_id"):
            await queue.send({"n": 1}, group_id="")
        with pytest.raises(InvalidMessageError, match="dedup_id cannot be shared"):
            await queue.send_batch([{"n": 1}], dedup_id="same")
        with pytest.raises(TypeError, match="list of payloads"):
            await queue.send_batch({"n": 1})  # type: ignore[arg-type]
        assert len(queue) == 0


async def test_delay_over_the_provider_maximum_is_rejected() -> None:
    """A delay beyond the provider's maximum raises InvalidMessageError naming it."""

    class Capped(MemoryQueue):
        async def _limits(self) -> SendLimits:
            return SendLimits(max_delay=900)

    async with Capped() as queue:
        with pytest.raises(InvalidMessageError, match="maximum of 900s"):
            await queue.send({"n": 1}, delay=901)


async def test_batch_group_id_applies_to_plain_entries_only() -> None:
    """send_batch(group_id=) groups plain payloads; an OutgoingMessage keeps its own group."""
    async with MemoryQueue() as queue:
        await queue.send_batch([{"n": 1}, OutgoingMessage({"n": 2}, group_id="own")], group_id="g")
        got = await queue.receive(max_messages=10)
        assert {m.body["n"]: m.group_id for m in got} == {1: "g", 2: "own"}


async def test_consume_runs_at_most_concurrency_handlers_at_once() -> None:
    """consume(concurrency=3) never runs more than three handlers at the same time."""
    async with MemoryQueue() as queue:
        await queue.send_batch([{"n": i} for i in range(12)])
        running = 0
        peak = 0

        async def handler(m: Message) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)  # the others start meanwhile
            running -= 1

        assert await queue.consume(handler, concurrency=3, limit=12, wait_time=1) == 12
        assert peak == 3 and len(queue) == 0


class CountsExtensions(MemoryQueue):
    """The memory queue on a fake clock, announcing every visibility extension."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        super().__init__(clock=self.clock)
        self.extended = asyncio.Event()

    async def _extend_visibility(self, handle: str, seconds: float) -> None:
        await super()._extend_visibility(handle, seconds)
        self.extended.set()


async def test_consume_extends_visibility_while_a_long_handler_runs() -> None:
    """With visibility_timeout the message stays hidden for as long as its handler runs."""
    async with CountsExtensions() as queue:
        await queue.send({"n": 1})
        started, release = asyncio.Event(), asyncio.Event()

        async def handler(m: Message) -> None:
            started.set()
            await release.wait()

        worker = asyncio.create_task(queue.consume(handler, visibility_timeout=0.1, limit=1))
        await asyncio.wait_for(started.wait(), 10)
        for _ in range(5):  # 5 x 0.075 s of queue time: 3.75 times the visibility timeout
            queue.extended.clear()
            await asyncio.wait_for(queue.extended.wait(), 10)
            await queue.clock.advance(0.075)
            assert await queue.receive() == []
        release.set()
        assert await worker == 1
        assert len(queue) == 0


async def test_messages_waiting_behind_their_group_stay_hidden() -> None:
    """A message held behind its group's running handler has its visibility extended too."""
    async with CountsExtensions() as queue:
        await queue.send_batch([{"n": 1}, {"n": 2}], group_id="g")
        started, release = asyncio.Event(), asyncio.Event()
        seen: list[int] = []

        async def handler(m: Message) -> None:
            seen.append(m.body["n"])
            started.set()
            await release.wait()

        worker = asyncio.create_task(
            queue.consume(handler, concurrency=2, visibility_timeout=0.1, limit=2)
        )
        await asyncio.wait_for(started.wait(), 10)
        for _ in range(5):
            queue.extended.clear()
            await asyncio.wait_for(queue.extended.wait(), 10)
            await queue.clock.advance(0.075)
            assert await queue.receive(max_messages=10) == []
        release.set()
        assert await worker == 2
        assert seen == [1, 2] and len(queue) == 0


async def test_cancelled_consume_gives_back_messages_waiting_behind_their_group() -> None:
    """On cancellation the running handler finishes; its group's waiting messages are nacked."""
    async with MemoryQueue() as queue:
        await queue.send_batch([{"n": i} for i in range(3)], group_id="g")
        started, release = asyncio.Event(), asyncio.Event()
        seen: list[int] = []

        async def handler(m: Message) -> None:
            seen.append(m.body["n"])
            started.set()
            await release.wait()

        worker = asyncio.create_task(queue.consume(handler, concurrency=4, wait_time=1))
        await asyncio.wait_for(started.wait(), 10)
        worker.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await worker
        assert seen == [0]
        rest = await queue.receive(max_messages=10)
        assert [(m.body["n"], m.receive_count) for m in rest] == [(1, 2), (2, 2)]


async def test_consume_holds_at_most_concurrency_times_max_messages() -> None:
    """A poll that keeps returning one busy group cannot make consume() hoard messages."""

    class OneGroupFirehose(MemoryQueue):
        """Test double: every poll returns as many messages of group "g" as asked for."""

        received = 0
        full = asyncio.Event()

        async def _receive(self, max_messages: int, *rest: object) -> list[Message]:
            start, self.received = self.received, self.received + max_messages
            if self.received >= 6:
                self.full.set()
            return [
                Message.from_raw(b"{}", receipt_handle=f"h{n}", message_id=f"m{n}", group_id="g")
                for n in range(start, self.received)
            ]

        async def _delete(self, handle: str) -> None:
            return None

        async def _nack(self, handle: str) -> None:
            return None

    async with OneGroupFirehose() as queue:
        release = asyncio.Event()
        handled: list[str] = []

        async def handler(m: Message) -> None:
            await release.wait()
            handled.append(m.message_id)

        worker = asyncio.create_task(
            queue.consume(handler, concurrency=2, max_messages=3, limit=20)
        )
        await asyncio.wait_for(queue.full.wait(), 10)
        for _ in range(50):  # an unbounded consume() would poll again at once
            await asyncio.sleep(0)
        assert queue.received == 6  # 2 x 3, all waiting behind one running handler
        release.set()
        assert await asyncio.wait_for(worker, 10) == 20
        assert handled == [f"m{n}" for n in range(20)]  # one group: strictly in order


async def test_consume_keeps_going_after_a_receive_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed poll is logged and retried; the loop does not die."""

    class FailsOnce(MemoryQueue):
        failed = False

        async def _receive(self, *args: object) -> list[Message]:
            if not self.failed:
                self.failed = True
                raise MessagingConnectionError("blip")
            return await super()._receive(*args)  # type: ignore[arg-type]

    caplog.set_level(logging.WARNING, logger="cloudrift.messaging")
    async with FailsOnce() as queue:
        await queue.send({"n": 1})
        seen: list[Message] = []

        async def handler(m: Message) -> None:
            seen.append(m)

        assert await queue.consume(handler, limit=1, wait_time=1) == 1
        assert seen[0].body == {"n": 1}
        assert "receive failed (MessagingConnectionError)" in caplog.text


async def test_cancelled_consume_leaves_no_unretrieved_receive_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A receive that fails as consume() is cancelled (a client dropping its connection on
    cancel) is waited for: asyncio logs no "exception was never retrieved" error."""
    import gc

    polling = asyncio.Event()

    class FailsOnCancel(MemoryQueue):
        async def _receive(self, *args: object) -> list[Message]:
            polling.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                raise MessagingConnectionError("connection dropped while cancelled") from None
            return []

    caplog.set_level(logging.ERROR, logger="asyncio")
    async with FailsOnCancel() as queue:

        async def handler(m: Message) -> None:
            raise AssertionError("no message was sent")

        worker = asyncio.create_task(queue.consume(handler, wait_time=20))
        await asyncio.wait_for(polling.wait(), 5)
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_consume_rejects_bad_options() -> None:
    """Bad consume() options raise before any polling."""
    async with MemoryQueue() as queue:

        async def handler(m: Message) -> None:
            return None

        for bad in (0, -1, True, 2.0, "4", None):
            with pytest.raises(InvalidArgumentError, match="concurrency must be a positive int"):
                await queue.consume(handler, concurrency=bad)  # type: ignore[arg-type]
        for option, value in (
            ("max_messages", 0),
            ("max_receives", 0),
            ("max_receives", False),
            ("limit", -3),
            ("wait_time", -1),
            ("visibility_timeout", 0),
            ("visibility_timeout", math.inf),
        ):
            with pytest.raises(InvalidArgumentError, match=option):
                await queue.consume(handler, **{option: value})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="handler"):
            await queue.consume("not callable")  # type: ignore[arg-type]


def test_unknown_provider_lists_the_valid_ones() -> None:
    """get_queue with a typo names every valid provider."""
    with pytest.raises(ConfigurationError, match="azure_bus, gcp_pubsub, memory, redis, sqs"):
        get_queue("sqs_fifo")


def test_importing_messaging_needs_no_sdk() -> None:
    """With no third-party package importable, cloudrift.messaging and memory still work."""
    code = (
        "import asyncio, sys\n"
        "import cloudrift.messaging as m\n"
        "from cloudrift.core.exceptions import ConfigurationError\n"
        "q = m.get_queue('memory')\n"
        "asyncio.run(q.send({'n': 1}))\n"
        "try:\n"
        "    m.get_queue('sqs', queue_url='https://sqs.us-east-1.amazonaws.com/1/q')\n"
        "except ConfigurationError as e:\n"
        "    print(e)\n"
        "bad = [x for x in ('aioboto3', 'botocore', 'redis', 'azure') if x in sys.modules]\n"
        "print('loaded', bad)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert 'pip install "cloudrift[aws]"' in out
    assert "loaded []" in out


async def test_close_called_from_a_handler_does_not_deadlock() -> None:
    """A handler may close its own queue: consume() then stops instead of hanging."""
    queue = MemoryQueue()
    await queue.send_batch([{"n": 1}, {"n": 2}])

    async def handler(m: Message) -> None:
        await queue.close()

    assert await asyncio.wait_for(queue.consume(handler, wait_time=1), 10) >= 1
    assert queue.closed


async def test_consume_accepts_a_plain_function_handler() -> None:
    """A synchronous handler works: returning acks, raising nacks."""
    async with MemoryQueue() as queue:
        await queue.send({"n": 1})
        calls: list[int] = []

        def handler(m: Message) -> None:
            calls.append(m.receive_count)
            if len(calls) == 1:
                raise RuntimeError("retry me")

        assert await queue.consume(handler, limit=2, wait_time=1) == 2
        assert calls == [1, 2] and len(queue) == 0


async def test_consume_raises_a_bad_receive_option_instead_of_retrying() -> None:
    """An option the provider refuses (a ValueError) ends consume() instead of spinning."""

    class Refuses(MemoryQueue):
        async def _receive(self, *args: object) -> list[Message]:
            raise ValueError("visibility_timeout must be at most 43200s")

    async with Refuses() as queue:
        with pytest.raises(ValueError, match="43200"):
            await asyncio.wait_for(queue.consume(lambda m: None, wait_time=1), 10)


def test_old_outbound_message_name_still_imports_with_a_deprecation_warning() -> None:
    """OutboundMessage (renamed PreparedMessage) still works for one release, and warns."""
    from cloudrift.messaging import base

    with pytest.warns(DeprecationWarning, match="renamed PreparedMessage"):
        old = base.OutboundMessage
    assert old is PreparedMessage
    with pytest.raises(AttributeError):
        base.NoSuchName  # noqa: B018
