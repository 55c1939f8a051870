"""Redis Streams queue passes the messaging conformance suite on a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

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
from tests.servers.cache_faults import FailoverProxy
from tests.servers.redis import RedisServer
from tests.servers.tls import TLSFiles


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
        url=server.url, queue_name="q", socket_connect_timeout=0.5, max_attempts=1
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
    async with RedisStreamQueue(url=url, queue_name="q", max_attempts=1) as q:
        assert "wrong-pass-456" not in repr(q)
        with pytest.raises(MessagingPermissionError, match="credentials") as info:
            await q.send({"n": 1})
        assert "wrong-pass-456" not in str(info.value)


def test_bad_options_raise_configuration_error() -> None:
    """A bad URL, empty queue name or empty password fails at construction."""
    with pytest.raises(ConfigurationError, match=r"(?i)url"):
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
        url=server.url, queue_name="q", socket_connect_timeout=0.5, max_attempts=1
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


# ------------------------------------------------------- retries and client=


class DroppingProxy(FailoverProxy):
    """Forwards to one redis-server, but cuts its first ``drops`` connections as soon
    as the client sends a command (what a managed Redis reaping a connection does)."""

    def __init__(self, upstream: int, drops: int) -> None:
        super().__init__([upstream])
        self.drops = drops

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections < self.drops:
            self.connections += 1
            await reader.read(1)
            writer.close()
            return
        await super()._handle(reader, writer)


@pytest.fixture
async def dropping_proxy(redis: RedisServer) -> AsyncIterator[DroppingProxy]:
    """A proxy to the session's redis-server that drops its first connection."""
    proxy = await DroppingProxy(redis.port, drops=1).start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_dropped_connection_is_retried(dropping_proxy: DroppingProxy) -> None:
    """A connection cut mid-command is retried on a new one (max_attempts counts it)."""
    url = f"redis://127.0.0.1:{dropping_proxy.port}/0"
    async with RedisStreamQueue(url=url, queue_name="q", max_attempts=2) as q:
        await q.send({"n": 1})
        [msg] = await q.receive(max_messages=1)
        assert msg.body == {"n": 1}
    assert dropping_proxy.connections == 2  # the dropped one, then the retry


async def test_dropped_connection_fails_without_retries(dropping_proxy: DroppingProxy) -> None:
    """With max_attempts=1 the same cut surfaces as MessagingConnectionError."""
    url = f"redis://127.0.0.1:{dropping_proxy.port}/0"
    async with RedisStreamQueue(url=url, queue_name="q", max_attempts=1) as q:
        with pytest.raises(MessagingConnectionError, match="cannot reach Redis"):
            await q.send({"n": 1})


async def test_client_handed_in_is_used_and_left_open(redis: RedisServer) -> None:
    """A queue on client= sends and receives through it and leaves it open on close."""
    client = aioredis.Redis.from_url(redis.url)
    try:
        async with get_queue("redis", queue_name="q", client=client) as q:
            await q.send({"n": 1})
            [msg] = await q.receive(max_messages=1)
            await q.delete(msg.receipt_handle)
        assert await client.ping()  # still open: the queue did not open it
    finally:
        await client.aclose()


async def test_client_the_queue_opened_is_closed_with_it(redis: RedisServer) -> None:
    """The client a queue built from its URL is closed (no connection left) by close()."""
    q = RedisStreamQueue(url=redis.url, queue_name="q")
    await q.send({"n": 1})
    pool = (await q.native()).connection_pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    assert any(c.is_connected for c in connections)
    await q.close()
    assert not any(c.is_connected for c in connections)


@pytest.mark.parametrize(
    "options", [{"url": "redis://h:6379/0"}, {"password": "pw"}, {"max_attempts": 2}]
)
def test_client_with_connection_options_is_refused(options: dict[str, Any]) -> None:
    """Options that would build a client cannot be combined with client=."""
    with pytest.raises(ConfigurationError, match="client"):
        get_queue("redis", queue_name="q", client=aioredis.Redis(), **options)


def test_old_retry_option_name_says_what_it_became() -> None:
    """retry_attempts (which counted retries here) raises ConfigurationError naming max_attempts."""
    with pytest.raises(ConfigurationError, match="'retry_attempts' is now 'max_attempts'"):
        RedisStreamQueue(queue_name="q", retry_attempts=3)  # type: ignore[call-arg]


def test_queue_takes_the_same_connection_options_as_the_cache() -> None:
    """The queue's options are the cache's shared group: a misspelling gets a suggestion."""
    with pytest.raises(ConfigurationError, match="did you mean 'socket_connect_timeout'"):
        get_queue("redis", queue_name="q", socket_conect_timeout=1)


async def test_queue_over_verified_tls_with_a_private_ca(
    redis_tls: RedisServer, tls_files: TLSFiles
) -> None:
    """The cache's TLS options work on the queue too: rediss:// with ssl_ca_certs."""
    async with get_queue(
        "redis", url=redis_tls.url, queue_name="q", ssl_ca_certs=str(tls_files.ca_cert)
    ) as q:
        await q.send({"n": 1})
        [msg] = await q.receive(max_messages=1)
        assert msg.body == {"n": 1}


def test_tls_options_on_a_plain_url_are_refused() -> None:
    """ssl=True or a CA file with a redis:// URL is refused (it would be ignored)."""
    with pytest.raises(ConfigurationError, match="rediss://"):
        get_queue("redis", url="redis://h:6379/0", queue_name="q", ssl_ca_certs="/ca.pem")
