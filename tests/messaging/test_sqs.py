"""SQS (standard and FIFO) passes the messaging conformance suite on moto's real SQS API."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import boto3
import pytest

from cloudrift.core.exceptions import (
    ConfigurationError,
    InvalidMessageError,
    MessageSendError,
    MessagingConnectionError,
    QueueNotFoundError,
    ReceiptHandleError,
)
from cloudrift.messaging import DEAD_LETTER_REASON, Message, OutgoingMessage, Queue, get_queue
from cloudrift.messaging.base import SendLimits
from cloudrift.messaging.sqs import SQSQueue
from tests.conformance.messaging import MessagingConformance, drain
from tests.servers._process import free_port
from tests.servers.moto import MotoEndpoint
from tests.telemetry.support import recording


def sqs_client(moto: MotoEndpoint) -> Any:
    """A plain boto3 SQS client on the moto server, for setup and foreign producers."""
    return _client(moto.endpoint_url, moto.region, moto.access_key, moto.secret_key)


@functools.cache
def _client(endpoint_url: str, region: str, key: str, secret: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def create_queue(moto: MotoEndpoint, name: str, *, fifo: bool = False) -> str:
    """Create a queue (FIFO with content-based deduplication) and return its URL."""
    attributes = {"VisibilityTimeout": "30"}
    if fifo:
        name += ".fifo"
        attributes |= {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    return str(sqs_client(moto).create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


class _SQSHarness(MessagingConformance):
    fifo: ClassVar[bool] = False

    @pytest.fixture
    def urls(self, moto: MotoEndpoint) -> tuple[str, str]:
        return (
            create_queue(moto, "jobs", fifo=self.fifo),
            create_queue(moto, "jobs-dlq", fifo=self.fifo),
        )

    @pytest.fixture
    async def backend(self, moto: MotoEndpoint, urls: tuple[str, str]) -> AsyncIterator[Queue]:
        queue = get_queue("sqs", queue_url=urls[0], dlq_url=urls[1], **moto.credentials())
        self._moto = moto
        self._dlq_url = urls[1]
        try:
            yield queue
        finally:
            await queue.close()

    async def send_foreign(self, backend: Queue, raw: bytes) -> None:
        params: dict[str, Any] = {"QueueUrl": backend.queue_url, "MessageBody": raw.decode()}  # type: ignore[attr-defined]
        if self.fifo:
            params |= {"MessageGroupId": "foreign"}
        sqs_client(self._moto).send_message(**params)

    async def read_dead_letters(self, backend: Queue, count: int) -> list[Message]:
        async with get_queue("sqs", queue_url=self._dlq_url, **self._moto.credentials()) as dlq:
            return await drain(dlq, count)


class TestSQSStandard(_SQSHarness):
    """A standard queue: no groups, no dedup, no receive(group_id=)."""

    unsupported = frozenset({"groups", "dedup", "group_receive"})


class TestSQSFifo(_SQSHarness):
    """A FIFO queue: groups and dedup; no per-message delay, no receive(group_id=)."""

    fifo = True
    requires_group_id = True
    unsupported = frozenset({"delay", "group_receive"})


# --------------------------------------------------------------------- SQS specifics


def record_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """Record the parameters of every ``operation`` call the client makes."""
    calls: list[dict[str, Any]] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    client.meta.events.register(f"provide-client-params.sqs.{operation}", hook)
    return calls


@pytest.fixture
async def fifo(moto: MotoEndpoint) -> AsyncIterator[SQSQueue]:
    """A FIFO queue with a FIFO dead-letter queue on moto."""
    queue = SQSQueue(
        queue_url=create_queue(moto, "orders", fifo=True),
        dlq_url=create_queue(moto, "orders-dlq", fifo=True),
        **moto.credentials(),
    )
    try:
        yield queue
    finally:
        await queue.close()


@pytest.fixture
async def standard(moto: MotoEndpoint) -> AsyncIterator[SQSQueue]:
    """A standard queue on moto."""
    queue = SQSQueue(queue_url=create_queue(moto, "plain"), **moto.credentials())
    try:
        yield queue
    finally:
        await queue.close()


async def test_fifo_send_with_zero_delay_omits_delay_seconds(fifo: SQSQueue) -> None:
    """FIFO rejects an explicit DelaySeconds=0, so it is never sent when the delay is 0."""
    calls = record_calls(await fifo.native(), "SendMessage")
    batch_calls = record_calls(await fifo.native(), "SendMessageBatch")
    await fifo.send({"task": "extract"}, delay=0, group_id="owner-123", dedup_id="evt-abc")
    await fifo.send_batch([{"n": 1}, {"n": 2}], group_id="owner-123")
    assert calls and all("DelaySeconds" not in c for c in calls)
    assert batch_calls and all("DelaySeconds" not in e for e in batch_calls[0]["Entries"])
    assert calls[0]["MessageGroupId"] == "owner-123"
    assert calls[0]["MessageDeduplicationId"] == "evt-abc"


async def test_standard_delay_is_sent_as_delay_seconds(standard: SQSQueue) -> None:
    """A positive delay on a standard queue becomes DelaySeconds (rounded up)."""
    calls = record_calls(await standard.native(), "SendMessage")
    await standard.send({"n": 1}, delay=1.2)
    assert calls[0]["DelaySeconds"] == 2


async def test_batch_of_25_takes_three_calls_of_at_most_ten(standard: SQSQueue) -> None:
    """send_batch splits past SQS's 10-entry limit: 25 entries → 10 + 10 + 5."""
    calls = record_calls(await standard.native(), "SendMessageBatch")
    ids = await standard.send_batch([{"n": i} for i in range(25)])
    assert [len(c["Entries"]) for c in calls] == [10, 10, 5]
    assert len(set(ids)) == 25


async def test_batch_is_split_by_total_bytes(standard: SQSQueue) -> None:
    """Entries whose sizes add up past the queue's byte limit go in separate calls."""
    calls = record_calls(await standard.native(), "SendMessageBatch")
    limit = (await standard._limits()).max_message_bytes
    chunk = "x" * (limit // 3)
    await standard.send_batch([{"blob": chunk} for _ in range(5)])
    sizes = [sum(len(e["MessageBody"].encode()) for e in c["Entries"]) for c in calls]
    assert len(calls) >= 3 and all(size <= limit for size in sizes)


def gauge_calls(client: Any, operation: str) -> dict[str, int]:
    """Track how many ``operation`` calls are in flight at once (``peak``) and in all."""
    gauge = {"now": 0, "peak": 0, "calls": 0}

    def before(**_: Any) -> None:
        gauge["now"] += 1
        gauge["calls"] += 1
        gauge["peak"] = max(gauge["peak"], gauge["now"])

    def after(**_: Any) -> None:
        gauge["now"] -= 1

    client.meta.events.register(f"before-call.sqs.{operation}", before)
    client.meta.events.register(f"after-call.sqs.{operation}", after)
    return gauge


async def test_standard_batch_calls_go_concurrently_and_ids_keep_input_order(
    standard: SQSQueue,
) -> None:
    """A standard queue sends a big batch's 10-entry calls up to 8 at a time, ids in order."""
    gauge = gauge_calls(await standard.native(), "SendMessageBatch")
    ids = await standard.send_batch([{"n": i} for i in range(100)])
    assert gauge["calls"] == 10 and 1 < gauge["peak"] <= 8
    got = await drain(standard, 100, ack=True)
    by_id = {m.message_id: m.body["n"] for m in got}
    assert [by_id[i] for i in ids] == list(range(100))


async def test_fifo_batch_calls_go_one_after_another(fifo: SQSQueue) -> None:
    """A FIFO queue's batch calls are never concurrent: a group's order is its send order."""
    gauge = gauge_calls(await fifo.native(), "SendMessageBatch")
    await fifo.send_batch([{"n": i} for i in range(30)], group_id="g")
    assert gauge["calls"] == 3 and gauge["peak"] == 1
    got = await drain(fifo, 30, ack=True)
    assert [m.body["n"] for m in got] == list(range(30))


class _ServerSideLimitsOnly(SQSQueue):
    """Test subclass: lifts the client-side delay check so moto rejects the entry itself."""

    async def _limits(self) -> SendLimits:
        limits = await super()._limits()
        return SendLimits(limits.max_message_bytes, limits.max_batch_count, limits.max_batch_bytes)


async def test_partial_batch_failure_reports_failed_and_sent_entries(
    moto: MotoEndpoint,
) -> None:
    """When SQS rejects one entry, MessageSendError lists it and the ids of all others."""
    queue = _ServerSideLimitsOnly(queue_url=create_queue(moto, "partial"), **moto.credentials())
    async with queue:
        entries: list[Any] = [{"n": i} for i in range(15)]
        entries[12] = OutgoingMessage({"n": 12}, delay=1000)  # SQS's maximum is 900
        with pytest.raises(MessageSendError) as info:
            await queue.send_batch(entries)
        err = info.value
        assert set(err.failed) == {12} and "DelaySeconds" in err.failed[12]
        assert set(err.succeeded) == set(range(15)) - {12}
        got = await drain(queue, 14)
        assert {m.message_id for m in got} == set(err.succeeded.values())


async def test_dead_letter_to_fifo_dlq_keeps_group_and_body(fifo: SQSQueue) -> None:
    """Dead-lettering into a FIFO DLQ carries the group id, body and attributes across."""
    await fifo.send({"n": 1}, group_id="owner-9", attributes={"a": "1"})
    [msg] = await fifo.receive()
    await fifo.dead_letter(msg.receipt_handle, "poison")
    assert fifo.dlq_url is not None
    async with SQSQueue(
        queue_url=fifo.dlq_url,
        endpoint_url=fifo._endpoint_url,
        region=fifo.region,
        aws_access_key_id="x",
        aws_secret_access_key="y",
    ) as dlq:
        [dead] = await dlq.receive(wait_time=1)
    assert (dead.body, dead.group_id) == ({"n": 1}, "owner-9")
    assert dead.attributes == {"a": "1", DEAD_LETTER_REASON: "poison"}


async def test_dead_letter_keeps_the_trace_context(moto: MotoEndpoint) -> None:
    """A dead-lettered message carries its producer's trace context into the DLQ (so
    whoever drains it joins the original trace); when the attributes leave no room next
    to the reason, the user's attributes and the reason win."""
    url, dlq_url = create_queue(moto, "traced"), create_queue(moto, "traced-dlq")
    with recording() as recorder:
        async with (
            SQSQueue(queue_url=url, dlq_url=dlq_url, **moto.credentials()) as queue,
            SQSQueue(queue_url=dlq_url, **moto.credentials()) as dlq,
        ):
            with recorder.tracer.start_as_current_span("request"):
                await queue.send({"n": 1}, attributes={"a": "1"})
                await queue.send({"n": 2}, attributes={f"a{i}": "v" for i in range(9)})
            for msg in await queue.receive(max_messages=10, wait_time=1):
                assert msg.transport_headers["traceparent"]
                await queue.dead_letter(msg.receipt_handle, "poison")
            dead = sorted(await drain(dlq, 2), key=lambda m: len(m.attributes))
    (send, _) = [s for s in recorder.spans("queue") if s.name.startswith("send ")]
    assert f"{send.context.trace_id:032x}" in dead[0].transport_headers["traceparent"]
    assert dead[0].attributes == {"a": "1", DEAD_LETTER_REASON: "poison"}
    assert len(dead[1].attributes) == 10 and dead[1].transport_headers == {}


async def test_failed_dlq_send_keeps_message_on_source(moto: MotoEndpoint) -> None:
    """If the DLQ send fails the message is not deleted: it stays on the source queue."""
    url = create_queue(moto, "src")
    missing_dlq = url.rsplit("/", 1)[0] + "/no-such-dlq"
    async with SQSQueue(queue_url=url, dlq_url=missing_dlq, **moto.credentials()) as queue:
        await queue.send({"n": 1})
        [msg] = await queue.receive(visibility_timeout=60)
        with pytest.raises(MessageSendError, match="stays on the source queue") as info:
            await queue.dead_letter(msg.receipt_handle, "poison")
        assert isinstance(info.value.__cause__, QueueNotFoundError)
        await queue.nack(msg.receipt_handle)
        [again] = await queue.receive(wait_time=1)
        assert again.message_id == msg.message_id and again.body == {"n": 1}


async def test_in_flight_map_is_bounded(moto: MotoEndpoint) -> None:
    """Handles remembered for dead-lettering are capped; an evicted one fails clearly."""
    url = create_queue(moto, "bounded")
    async with SQSQueue(
        queue_url=url,
        dlq_url=create_queue(moto, "bounded-dlq"),
        max_in_flight=3,
        **moto.credentials(),
    ) as queue:
        await queue.send_batch([{"n": i} for i in range(6)])
        got = await drain(queue, 6, visibility_timeout=60)
        assert len(got) == 6 and len(queue._in_flight) == 3
        oldest = next(m for m in got if m.receipt_handle not in queue._in_flight)
        with pytest.raises(ReceiptHandleError, match="received by this instance"):
            await queue.dead_letter(oldest.receipt_handle, "x")
        for m in got:
            await queue.delete(m.receipt_handle)
        assert len(queue._in_flight) == 0


async def test_missing_queue_raises_queue_not_found(moto: MotoEndpoint) -> None:
    """A queue URL that does not exist raises QueueNotFoundError naming the fix."""
    url = create_queue(moto, "exists").rsplit("/", 1)[0] + "/nope"
    async with SQSQueue(queue_url=url, **moto.credentials()) as queue:
        with pytest.raises(QueueNotFoundError, match="queue_url"):
            await queue.send({"n": 1})
        assert await queue.health_check() is False


async def test_batch_to_a_missing_queue_raises_queue_not_found(moto: MotoEndpoint) -> None:
    """send_batch of 25 to a queue that does not exist raises QueueNotFoundError (not a
    MessageSendError with a failure per entry), trying no part twice."""
    url = create_queue(moto, "exists").rsplit("/", 1)[0] + "/nope"
    async with SQSQueue(queue_url=url, **moto.credentials()) as queue:
        client = await queue.native()
        calls: list[str] = []
        client.meta.events.register(
            "before-call.sqs.*", lambda model, **_: calls.append(model.name)
        )
        with pytest.raises(QueueNotFoundError, match="queue_url"):
            await queue.send_batch([{"n": n} for n in range(25)])
        assert calls.count("SendMessageBatch") <= 1


async def test_unreachable_endpoint_raises_connection_error_and_health_false() -> None:
    """A dead endpoint gives MessagingConnectionError, and health_check() returns False."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    async with SQSQueue(
        queue_url=f"{endpoint}/123456789012/q",
        endpoint_url=endpoint,
        region="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        connect_timeout=0.5,
        max_attempts=1,
    ) as queue:
        assert await queue.health_check() is False
        with pytest.raises(MessagingConnectionError, match="cannot reach SQS"):
            await queue.receive()


async def test_secret_key_never_appears_in_repr_or_errors(moto: MotoEndpoint) -> None:
    """The secret key is absent from repr() and from error messages."""
    secret_key = "very-secret-sqs-key-0001"
    url = create_queue(moto, "x").rsplit("/", 1)[0] + "/missing"
    queue = SQSQueue(
        queue_url=url,
        endpoint_url=moto.endpoint_url,
        region="us-east-1",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key=secret_key,
    )
    async with queue:
        with pytest.raises(QueueNotFoundError) as info:
            await queue.send({"n": 1})
    assert secret_key not in repr(queue) and secret_key not in str(info.value)
    assert "missing" in repr(queue)


async def test_assume_role_credentials_work(moto: MotoEndpoint) -> None:
    """role_arn assumes the role through STS and uses the temporary credentials."""
    url = create_queue(moto, "role")
    async with get_queue(
        "sqs",
        queue_url=url,
        endpoint_url=moto.endpoint_url,
        region="us-east-1",
        role_arn="arn:aws:iam::123456789012:role/worker",
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
    ) as queue:
        await queue.send({"n": 1})
        [msg] = await queue.receive(wait_time=1)
        assert msg.body == {"n": 1}


def test_bad_options_raise_configuration_error() -> None:
    """Bad URLs, conflicting credentials, empty strings and typos fail at construction."""
    aws = "https://sqs.eu-west-1.amazonaws.com/123456789012/q"
    with pytest.raises(ConfigurationError, match="queue_url"):
        get_queue("sqs", queue_url="q")
    with pytest.raises(ConfigurationError, match="credentials"):
        get_queue(
            "sqs",
            queue_url=aws,
            profile_name="dev",
            aws_access_key_id="a",
            aws_secret_access_key="b",
        )
    with pytest.raises(ConfigurationError, match="empty string"):
        get_queue("sqs", queue_url=aws, profile_name="")
    with pytest.raises(ConfigurationError, match="did you mean 'dlq_url'"):
        get_queue("sqs", queue_url=aws, dlq_ur="x")
    with pytest.raises(ConfigurationError, match="region"):
        get_queue("sqs", queue_url="http://localhost:4566/000000000000/q")
    queue = get_queue("sqs", queue_url=aws)
    assert isinstance(queue, SQSQueue) and queue.region == "eu-west-1" and not queue.fifo


def test_standard_queue_without_dlq_declares_no_dead_letter() -> None:
    """Without dlq_url dead-lettering is unsupported (and consume(max_receives=) refuses)."""
    queue = SQSQueue(queue_url="https://sqs.us-east-1.amazonaws.com/1/q.fifo")
    assert queue.fifo and not queue.supports_dead_letter and not queue.supports_delay


async def test_fifo_without_dedup_id_or_content_dedup_names_the_fix(moto: MotoEndpoint) -> None:
    """A FIFO queue without content-based dedup refuses a message lacking dedup_id, clearly."""
    url = str(
        sqs_client(moto).create_queue(QueueName="strict.fifo", Attributes={"FifoQueue": "true"})[
            "QueueUrl"
        ]
    )
    async with SQSQueue(queue_url=url, **moto.credentials()) as queue:
        with pytest.raises(InvalidMessageError, match="MessageDeduplicationId"):
            await queue.send({"n": 1}, group_id="g")
        assert await queue.send({"n": 1}, group_id="g", dedup_id="d1")


async def test_visibility_beyond_twelve_hours_is_refused(standard: SQSQueue) -> None:
    """SQS's 12-hour visibility maximum is checked before the call."""
    with pytest.raises(ValueError, match="43200"):
        await standard.receive(visibility_timeout=43201)


async def test_every_operation_translates_sdk_errors(moto: MotoEndpoint) -> None:
    """No botocore exception escapes: each operation on a missing queue raises ours."""
    url = create_queue(moto, "here").rsplit("/", 1)[0] + "/gone"
    async with SQSQueue(queue_url=url, **moto.credentials()) as queue:
        operations = [
            queue.send({"n": 1}),
            queue.send_batch([{"n": 1}]),
            queue.receive(),
            queue.purge(),
        ]
        for operation in operations:
            with pytest.raises(QueueNotFoundError):
                await operation
        for handle_op in (queue.delete, queue.nack):
            with pytest.raises((QueueNotFoundError, ReceiptHandleError)):
                await handle_op("AQEB-not-a-handle")
