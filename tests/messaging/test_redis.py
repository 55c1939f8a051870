"""Redis Streams queue passes the messaging conformance suite on a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from cloudrift.core.exceptions import (
    BackendClosedError,
    ConfigurationError,
    MessageSendError,
    MessagingConnectionError,
    MessagingPermissionError,
    ReceiptHandleError,
)
from cloudrift.messaging import Message, Queue, get_queue
from cloudrift.messaging.redis_streams import RedisStreamQueue
from tests.conformance.messaging import MessagingConformance, drain
from tests.servers.redis import RedisServer


class TestRedisStreamQueue(MessagingConformance):
    """Redis Streams: no groups, dedup or receive(group_id=); delay, visibility, DLQ yes."""

    unsupported = frozenset({"groups", "dedup", "group_receive"})

    @pytest.fixture
    async def backend(self, redis: RedisServer) -> AsyncIterator[Queue]:
        self._server = redis
        queue = get_queue("redis", url=redis.url, queue_name="jobs", poll_interval=0.02)
        try:
            yield queue
        finally:
            await queue.close()

    async def send_foreign(self, backend: Queue, raw: bytes) -> None:
        with self._server.client() as client:
            client.xadd("jobs", {"body": raw, "producer": "legacy"})

    async def read_dead_letters(self, backend: Queue, count: int) -> list[Message]:
        async with get_queue("redis", url=self._server.url, queue_name="jobs:dead") as dlq:
            return await drain(dlq, count)


@pytest.fixture
async def queue(redis: RedisServer) -> AsyncIterator[RedisStreamQueue]:
    """A Redis Streams queue named "work" on the session's redis-server."""
    q = RedisStreamQueue(url=redis.url, queue_name="work", poll_interval=0.02)
    try:
        yield q
    finally:
        await q.close()


async def test_non_utf8_foreign_entry_is_delivered_as_raw_bytes(
    redis: RedisServer, queue: RedisStreamQueue
) -> None:
    """An entry whose body is not UTF-8 is delivered with its raw bytes, never dropped."""
    with redis.client() as client:
        client.xadd("work", {"body": b"\xff\xfe\x00bin"})
    [msg] = await queue.receive(wait_time=1)
    assert msg.raw == b"\xff\xfe\x00bin" and msg.text is None and not msg.is_json


async def test_handle_from_another_instance_is_rejected(
    redis: RedisServer, queue: RedisStreamQueue
) -> None:
    """Each instance is its own consumer: another instance's handle raises clearly."""
    await queue.send({"n": 1})
    [msg] = await queue.receive()
    async with RedisStreamQueue(url=redis.url, queue_name="work") as other:
        with pytest.raises(ReceiptHandleError, match="another consumer"):
            await other.delete(msg.receipt_handle)
    await queue.delete(msg.receipt_handle)


async def test_stale_handle_after_redelivery_is_rejected(queue: RedisStreamQueue) -> None:
    """After a nack and redelivery the first handle is stale; so is a handle already acked."""
    await queue.send({"n": 1})
    [first] = await queue.receive()
    await queue.nack(first.receipt_handle)
    [second] = await queue.receive()
    assert second.receive_count == 2
    with pytest.raises(ReceiptHandleError, match="stale"):
        await queue.delete(first.receipt_handle)
    await queue.delete(second.receipt_handle)
    with pytest.raises(ReceiptHandleError, match="stale"):
        await queue.delete(second.receipt_handle)


async def test_message_received_by_a_crashed_consumer_is_reclaimed(
    redis: RedisServer,
) -> None:
    """A message a consumer took and never acked is reclaimed by another after its timeout."""
    async with RedisStreamQueue(url=redis.url, queue_name="work") as crashed:
        await crashed.send({"n": 1})
        [taken] = await crashed.receive(visibility_timeout=0.2)
    async with RedisStreamQueue(url=redis.url, queue_name="work") as survivor:
        [again] = await survivor.receive(wait_time=2)
        assert again.message_id == taken.message_id and again.receive_count == 2
        await survivor.delete(again.receipt_handle)


async def test_stream_keys_are_named_after_the_queue(
    redis: RedisServer, queue: RedisStreamQueue
) -> None:
    """The stream, in-flight and delayed keys all derive from queue_name."""
    await queue.send({"n": 1})
    await queue.send({"n": 2}, delay=30)
    await queue.receive()
    with redis.client() as client:
        assert client.type("work") == b"stream"
        assert client.zcard("work:inflight") == 1
        assert client.zcard("work:delayed") == 1


async def test_server_down_raises_connection_error_and_health_false(
    redis_server_factory: object,
) -> None:
    """A stopped server gives MessagingConnectionError; health_check() returns False."""
    server = redis_server_factory()  # type: ignore[operator]
    async with RedisStreamQueue(
        url=server.url, queue_name="q", socket_connect_timeout=0.5, retry_attempts=0
    ) as q:
        assert await q.health_check() is True
        server.stop()
        assert await q.health_check() is False
        with pytest.raises(MessagingConnectionError, match="cannot reach Redis"):
            await q.send({"n": 1})


async def test_password_never_appears_in_repr_or_errors(redis_server_factory: object) -> None:
    """A wrong password gives MessagingPermissionError; neither it nor repr echoes the password."""
    server = redis_server_factory(extra_args=["--requirepass", "right-pass-123"])  # type: ignore[operator]
    url = f"redis://:wrong-pass-456@127.0.0.1:{server.port}/0"
    async with RedisStreamQueue(url=url, queue_name="q", retry_attempts=0) as q:
        assert "wrong-pass-456" not in repr(q)
        with pytest.raises(MessagingPermissionError, match="credentials") as info:
            await q.send({"n": 1})
        assert "wrong-pass-456" not in str(info.value)


def test_bad_options_raise_configuration_error() -> None:
    """A bad URL, empty queue name or empty password fails at construction."""
    with pytest.raises(ConfigurationError, match="url"):
        get_queue("redis", queue_name="q", url="http://x")
    with pytest.raises(ConfigurationError, match="queue_name"):
        get_queue("redis", queue_name="")
    with pytest.raises(ConfigurationError, match="password"):
        get_queue("redis", queue_name="q", password="")


async def test_failed_dead_letter_keeps_message_on_source(
    redis: RedisServer, queue: RedisStreamQueue
) -> None:
    """If writing to the dead-letter stream fails, the message stays on the source stream."""
    with redis.client() as client:
        client.set("work:dead", "not a stream")  # XADD to it fails with WRONGTYPE
    await queue.send({"n": 1}, attributes={"a": "1"})
    [msg] = await queue.receive()
    with pytest.raises(MessageSendError, match="stays on the source"):
        await queue.dead_letter(msg.receipt_handle, "poison")
    await queue.nack(msg.receipt_handle)
    [again] = await queue.receive()
    assert again.message_id == msg.message_id and again.attributes == {"a": "1"}


async def test_every_operation_translates_connection_errors(
    redis_server_factory: object,
) -> None:
    """With the server gone, each operation raises MessagingConnectionError, never redis's."""
    server = redis_server_factory()  # type: ignore[operator]
    async with RedisStreamQueue(
        url=server.url, queue_name="q", socket_connect_timeout=0.5, retry_attempts=0
    ) as q:
        await q.send({"n": 1})
        [msg] = await q.receive()
        server.stop()
        for operation in (
            q.send({"n": 2}),
            q.send({"n": 2}, delay=5),
            q.receive(),
            q.delete(msg.receipt_handle),
            q.nack(msg.receipt_handle),
            q.extend_visibility(msg.receipt_handle, 10),
            q.purge(),
        ):
            with pytest.raises(MessagingConnectionError):
                await operation


async def test_connections_dropped_by_a_server_restart_are_retried(
    redis_server_factory: object,
) -> None:
    """After redis-server restarts, the next call reconnects instead of failing with
    "Connection closed by server" (the asyncio client needs redis.asyncio's Retry)."""
    server = redis_server_factory()  # type: ignore[operator]
    async with RedisStreamQueue(url=server.url, queue_name="q") as q:
        await q.send({"n": 1})
        server.stop()
        server.start()
        await q.send({"n": 2})  # the pooled connection is stale: retried on a fresh one
        assert [m.body for m in await q.receive(10)] == [{"n": 2}]


async def test_native_is_the_one_lazy_client_and_is_released_on_close(
    queue: RedisStreamQueue,
) -> None:
    """native() is the redis.asyncio client every operation uses (built once, by
    LazyClient); close() releases it and native() then raises BackendClosedError."""
    await queue.send({"n": 1})
    client = await queue.native()
    assert isinstance(client, aioredis.Redis)
    assert await client.xlen("work") == 1
    assert await queue.native() is client
    await queue.close()
    with pytest.raises(BackendClosedError):
        await queue.native()
