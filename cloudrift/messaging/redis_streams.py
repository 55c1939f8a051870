"""A self-hosted queue on Redis Streams with a consumer group (redis.asyncio).

Layout for a queue named ``jobs`` (all keys derive from the name):

* ``jobs`` — the stream; each entry has fields ``body`` (the raw bytes), ``mid`` (the
  message id ``send`` returned), and ``attrs`` (JSON attributes, when there are any).
  Entries a foreign producer ``XADD``s are delivered too: ``body`` (or empty bytes) as the
  raw payload, its other fields as attributes.
* consumer group ``cloudrift`` (``group=``) on it, created at id 0 so nothing sent before
  the first receive is missed; each backend instance is its own consumer.
* ``jobs:inflight`` — sorted set of entry id → when its visibility runs out. A receive
  first re-claims (``XCLAIM``) entries whose time is up, so an unacked message comes back
  with ``receive_count`` = the group's delivery counter; ``nack`` sets the time to now.
* ``jobs:delayed`` — sorted set of messages sent with ``delay``, moved into the stream
  when due.
* ``jobs:dead`` — the dead-letter stream (``dead_letter_stream=``); the move is one Lua
  script, so a message is either on the dead-letter stream or still on the source.

On a Redis Cluster (``cluster=True``, or a ``RedisCluster`` handed in as ``client=``) every
key carries the queue's hash tag so they all live in one slot and the scripts run there:
``{jobs}``, ``{jobs}:inflight``, ``{jobs}:delayed``, ``{jobs}:dead``. A queue name that
already holds a tag (``{jobs}``, ``app:{jobs}``) is used as is, so ``queue_name="{jobs}:dead"``
reads that dead-letter stream. Single-node key names are unchanged.

Every multi-step operation is a server-side Lua script (atomic). ``receive`` long-polls by
re-running the receive script every ``poll_interval`` seconds (never blocking the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from typing import Any, NoReturn, Unpack

from redis.exceptions import (
    AuthenticationError,
    ClusterError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cloudrift.core.exceptions import (
    ConfigurationError,
    MessageSendError,
    MessagingConnectionError,
    MessagingError,
    MessagingPermissionError,
    ReceiptHandleError,
)
from cloudrift.core.lifecycle import LazyClient
from cloudrift.core.operation import BackendDescription
from cloudrift.core.redis import (
    RedisConnectionOptions,
    RedisOptions,
    check_client,
    check_url_options,
    connection_group,
    connection_values,
    hash_tag,
    key_slot,
    open_client,
    owns_client,
    url_location,
)
from cloudrift.core.secrets import Secret, redact, secret
from cloudrift.core.validation import check_number
from cloudrift.messaging.base import (
    Message,
    PreparedMessage,
    Queue,
    SendFailure,
    SendLimits,
)

_RESERVED = {b"body", b"mid", b"attrs"}

# KEYS: stream, inflight, delayed. ARGV: group, consumer, count, visibility ms.
# Returns {{entry id, fields, delivery count}, ...}.
_RECEIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stream, inflight, delayed = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local count, vis = tonumber(ARGV[3]), tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
for _, packed in ipairs(due) do
  redis.call('XADD', stream, '*', unpack(cjson.decode(packed)))
  redis.call('ZREM', delayed, packed)
end
local out = {}
local expired = redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, count)
for _, id in ipairs(expired) do
  local claimed = redis.call('XCLAIM', stream, group, consumer, 0, id)
  if #claimed == 0 or not claimed[1] or not claimed[1][2] then
    redis.call('ZREM', inflight, id)
    redis.call('XACK', stream, group, id)
  else
    local p = redis.call('XPENDING', stream, group, id, id, 1)
    redis.call('ZADD', inflight, now + vis, id)
    out[#out + 1] = {claimed[1][1], claimed[1][2], p[1][4]}
  end
end
if #out < count then
  local res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #out,
                         'STREAMS', stream, '>')
  if res then
    for _, e in ipairs(res[1][2]) do
      redis.call('ZADD', inflight, now + vis, e[1])
      out[#out + 1] = {e[1], e[2], 1}
    end
  end
end
return out
"""

# KEYS: stream, inflight, dead stream. ARGV: group, consumer, id, delivery count, action,
# seconds (extend) or reason (dead), and 'keep' to leave a settled entry on the stream
# (other consumer groups — topic subscriptions — still need it) instead of XDEL-ing it.
# Returns 1, or 0 when the handle is stale / foreign.
_SETTLE = """
local stream, inflight, dead = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, id, count, action = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local p = redis.call('XPENDING', stream, group, id, id, 1)
if #p == 0 or p[1][2] ~= consumer or tostring(p[1][4]) ~= count then return 0 end
if action == 'nack' then
  redis.call('ZADD', inflight, 0, id)
  return 1
end
if action == 'extend' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', inflight, now + tonumber(ARGV[6]), id)
  return 1
end
if action == 'dead' then
  local entry = redis.call('XRANGE', stream, id, id)
  if #entry == 0 then return 0 end
  local fields = entry[1][2]
  local copy, attrs = {}, {}
  for i = 1, #fields, 2 do
    if fields[i] == 'attrs' then
      attrs = cjson.decode(fields[i + 1])
    else
      copy[#copy + 1] = fields[i]
      copy[#copy + 1] = fields[i + 1]
    end
  end
  attrs['DeadLetterReason'] = ARGV[6]
  copy[#copy + 1] = 'attrs'
  copy[#copy + 1] = cjson.encode(attrs)
  redis.call('XADD', dead, '*', unpack(copy))
end
redis.call('XACK', stream, group, id)
if ARGV[7] ~= 'keep' then redis.call('XDEL', stream, id) end
redis.call('ZREM', inflight, id)
return 1
"""


class RedisStreamQueue(Queue):
    """A queue on one Redis stream with a consumer group; each instance is one consumer."""

    provider = "redis"
    max_receive_messages = 100
    # Streams have no groups or dedup; delay is a sorted set, the DLQ a second stream.
    supports_delay = True
    supports_visibility_timeout = True
    supports_dead_letter = True
    #: What happens to a stream entry once acked or dead-lettered: ``"delete"`` (XDEL;
    #: the queue's group is its only reader) or ``"keep"`` (a topic's stream, read by
    #: other groups too).
    _settled_entries = "delete"

    def __init__(
        self,
        *,
        queue_name: str,
        url: str | Secret | None = None,
        password: str | Secret | None = None,
        client: Any = None,
        group: str = "cloudrift",
        consumer: str | None = None,
        dead_letter_stream: str | None = None,
        visibility_timeout: float = 30.0,
        max_message_bytes: int = 1024 * 1024,
        poll_interval: float = 0.1,
        **options: Unpack[RedisConnectionOptions],
    ) -> None:
        super().__init__()
        if not isinstance(queue_name, str) or not queue_name.strip():
            raise ConfigurationError("redis queue: queue_name must be a non-empty string")
        self._connection = _connection(url, password, client, options)
        for name, value in (
            ("visibility_timeout", visibility_timeout),
            ("poll_interval", poll_interval),
        ):
            check_number(f"redis queue: {name}", value, above=0)
        self.queue_name = queue_name
        self.stream = _stream_key(queue_name) if self._connection.cluster else queue_name
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dead_letter_stream = dead_letter_stream or f"{self.stream}:dead"
        if self._connection.cluster and key_slot(self.dead_letter_stream) != key_slot(self.stream):
            raise ConfigurationError(
                f"redis queue: on a Redis Cluster the dead-letter stream must share the "
                f"queue's slot (the move is one script); name it '{self.stream}:...' "
                f"(same hash tag), not {self.dead_letter_stream!r}"
            )
        self.default_visibility = float(visibility_timeout)
        self.max_message_bytes = int(max_message_bytes)
        self.poll_interval = float(poll_interval)
        self.backend_name = f"redis queue {queue_name!r}"
        self._inflight_key = f"{self.stream}:inflight"
        self._delayed_key = f"{self.stream}:delayed"
        self._client: LazyClient[Any] = LazyClient(self._build_client)
        self._group_ready = False
        self._receive_script: Any = None
        self._settle_script: Any = None

    def __repr__(self) -> str:
        return f"RedisStreamQueue({self._connection.location}, stream={self.stream!r})"

    def _describe(self) -> BackendDescription:
        c = self._connection
        if c.client is not None:  # a client handed in: its address is not ours to know
            return BackendDescription("redis", self.stream)
        if c.url is not None:
            return BackendDescription.at("redis", self.stream, c.url.reveal())
        return BackendDescription("redis", self.stream, c.host, c.port)

    # ---------------------------------------------------------------- client

    def _secrets(self) -> list[Secret | None]:
        return [self._connection.url, self._connection.password]

    async def _build_client(self, stack: AsyncExitStack) -> Any:
        # redis-py connects on the first command, inside the running loop.
        client = open_client(self._connection)
        if owns_client(self._connection):  # a client handed in stays open: its owner closes it
            stack.push_async_callback(client.aclose)
        self._receive_script = client.register_script(_RECEIVE)
        self._settle_script = client.register_script(_SETTLE)
        return client

    async def _native_client(self) -> Any:
        """``await queue.native()``: the ``redis.asyncio.Redis`` client."""
        return await self._client.get()

    async def _ensure_group(self, force: bool = False) -> None:
        if self._group_ready and not force:
            return
        client = await self._client.get()
        with self._translate():
            try:
                await client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group_ready = True

    async def _aclose(self) -> None:
        await self._client.aclose()

    # -------------------------------------------------------------- errors

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except (AuthenticationError, NoPermissionError) as exc:
            self._fail(MessagingPermissionError, "Redis refused the credentials", exc)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._fail(MessagingConnectionError, "cannot reach Redis", exc)
        except (ClusterError, SlotNotCoveredError) as exc:  # ClusterDownError, TTL exhausted
            self._fail(MessagingConnectionError, "the Redis Cluster cannot serve the queue", exc)
        except (RedisError, RedisClusterException) as exc:
            self._fail(MessagingError, "Redis error", exc)

    def _fail(self, kind: type[MessagingError], what: str, exc: BaseException) -> NoReturn:
        text = redact(f"{type(exc).__name__}: {exc}", self._secrets())
        raise kind(f"{self.backend_name}: {what} ({text})") from exc

    async def _run(self, script_name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script, recreating the consumer group once if it vanished."""
        await self._ensure_group()
        script = self._receive_script if script_name == "receive" else self._settle_script
        for attempt in (1, 2):
            try:
                with self._translate():
                    return await script(keys=keys, args=args)
            except MessagingError as exc:
                if attempt == 1 and "NOGROUP" in str(exc):
                    await self._ensure_group(force=True)
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # ---------------------------------------------------------------- sending

    async def _limits(self) -> SendLimits:
        return SendLimits(
            max_message_bytes=self.max_message_bytes,
            max_batch_count=100,
            max_batch_bytes=8 * self.max_message_bytes,
        )

    def _fields(self, msg: PreparedMessage, message_id: str) -> dict[str, Any]:
        fields: dict[str, Any] = {"body": msg.body, "mid": message_id}
        if msg.wire_attributes:
            fields["attrs"] = json.dumps(dict(msg.wire_attributes))
        return fields

    async def _send_delayed(self, msg: PreparedMessage, message_id: str) -> None:
        client = await self._client.get()
        fields = self._fields(msg, message_id)
        flat: list[str] = []
        for key, value in fields.items():
            flat += [key, value.decode("utf-8") if isinstance(value, bytes) else value]
        with self._translate():
            seconds, micros = await client.time()
            due = int(seconds) * 1000 + int(micros) // 1000 + int(msg.delay * 1000)
            await client.zadd(self._delayed_key, {json.dumps(flat): due})

    async def _send_one(self, msg: PreparedMessage) -> str:
        message_id = str(uuid.uuid4())
        if msg.delay > 0:
            await self._send_delayed(msg, message_id)
            return message_id
        client = await self._client.get()
        with self._translate():
            await client.xadd(self.stream, self._fields(msg, message_id))
        return message_id

    async def _send_chunk(self, chunk: Sequence[PreparedMessage]) -> Sequence[str | SendFailure]:
        ids = [str(uuid.uuid4()) for _ in chunk]
        results: list[str | SendFailure] = list(ids)
        immediate = [(i, m) for i, m in enumerate(chunk) if m.delay <= 0]
        for i, msg in enumerate(chunk):
            if msg.delay > 0:
                try:
                    await self._send_delayed(msg, ids[i])
                except MessagingError as exc:
                    results[i] = SendFailure(str(exc))
        if immediate:
            client = await self._client.get()
            with self._translate():
                async with client.pipeline(transaction=False) as pipe:
                    for i, msg in immediate:
                        pipe.xadd(self.stream, self._fields(msg, ids[i]))
                    answers = await pipe.execute(raise_on_error=False)
            for (i, _), answer in zip(immediate, answers, strict=True):
                if isinstance(answer, Exception):
                    results[i] = SendFailure(redact(str(answer), self._secrets()))
        return results

    # -------------------------------------------------------------- receiving

    async def _receive(
        self,
        max_messages: int,
        wait_time: float,
        visibility_timeout: float | None,
        group_id: str | None,
    ) -> list[Message]:
        visibility = self.default_visibility if visibility_timeout is None else visibility_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_time
        keys = [self.stream, self._inflight_key, self._delayed_key]
        args = [self.group, self.consumer, max_messages, int(visibility * 1000)]
        while True:
            rows = await self._run("receive", keys, args)
            if rows:
                return [self._message(row) for row in rows]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await asyncio.sleep(min(self.poll_interval, remaining))
            self._ensure_open()

    def _message(self, row: Sequence[Any]) -> Message:
        entry_id = _text(row[0])
        flat = list(row[1])
        fields = {bytes(flat[i]): bytes(flat[i + 1]) for i in range(0, len(flat), 2)}
        count = int(row[2])
        attributes: dict[str, str] = {}
        if b"attrs" in fields:
            with contextlib.suppress(ValueError, TypeError):
                loaded = json.loads(fields[b"attrs"])
                if isinstance(loaded, dict):
                    attributes = {str(k): str(v) for k, v in loaded.items()}
        for key, value in fields.items():
            if key not in _RESERVED:
                attributes[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        mid = fields.get(b"mid")
        return Message.from_raw(
            fields.get(b"body", b""),
            receipt_handle=f"{self.consumer}|{entry_id}|{count}",
            message_id=mid.decode("utf-8", "replace") if mid else entry_id,
            receive_count=count,
            attributes=attributes,
        )

    # ------------------------------------------------------- acting on a handle

    def _parse(self, handle: str) -> tuple[str, str]:
        parts = handle.split("|")
        if len(parts) < 3 or not parts[-1].isdigit():
            raise ReceiptHandleError(
                f"{self.backend_name}: not a receipt handle from this queue: {handle[:40]!r}"
            )
        consumer = "|".join(parts[:-2])
        if consumer != self.consumer:
            raise ReceiptHandleError(
                f"{self.backend_name}: the receipt handle belongs to another consumer "
                "(another backend instance); ack a message on the instance that received it"
            )
        return parts[-2], parts[-1]

    async def _settle(self, handle: str, action: str, extra: Any = "") -> None:
        entry_id, count = self._parse(handle)
        done = await self._run(
            "settle",
            [self.stream, self._inflight_key, self.dead_letter_stream],
            [self.group, self.consumer, entry_id, count, action, extra, self._settled_entries],
        )
        if not done:
            raise ReceiptHandleError(
                f"{self.backend_name}: the receipt handle is stale (the message was acked, "
                "dead-lettered, or redelivered since); receive it again"
            )

    async def _delete(self, handle: str) -> None:
        await self._settle(handle, "delete")

    async def _nack(self, handle: str) -> None:
        await self._settle(handle, "nack")

    async def _extend_visibility(self, handle: str, seconds: float) -> None:
        await self._settle(handle, "extend", int(seconds * 1000))

    async def _dead_letter(self, handle: str, reason: str) -> None:
        try:
            await self._settle(handle, "dead", reason)
        except ReceiptHandleError:
            raise
        except MessagingError as exc:
            # The script adds to the dead-letter stream before it acks, and Redis stops a
            # script at the failing command: the message is still on the source.
            raise MessageSendError(
                f"{self.backend_name}: could not dead-letter the message; it stays on the "
                f"source stream ({exc})",
                failed={0: str(exc)},
            ) from exc

    # -------------------------------------------------------------------- misc

    async def _purge(self) -> None:
        client = await self._client.get()
        with self._translate():
            await client.delete(self.stream, self._inflight_key, self._delayed_key)
        await self._ensure_group(force=True)

    async def _health(self) -> bool:
        client = await self._client.get()
        with self._translate():
            return bool(await client.ping())


_WHERE = "redis queue"
#: Without url= or client=: a local Redis.
DEFAULT_URL = "redis://localhost:6379/0"


def _connection(
    url: str | Secret | None,
    password: str | Secret | None,
    client: Any,
    options: RedisConnectionOptions,
) -> RedisOptions:
    """How the queue reaches Redis: a client handed in (used as is), or one built from
    ``url`` / ``password`` and the connection options (the same as the cache's)."""
    if client is not None:
        check_client(
            _WHERE, client, {"url": url, "password": password, **{k: True for k in options}}
        )
        return RedisOptions(client=client, location=f"client={type(client).__name__}")
    url_secret = secret(url if url is not None else DEFAULT_URL)
    assert url_secret is not None
    if password == "":
        raise ConfigurationError("redis queue: password is an empty string; omit it instead")
    # 50 pooled connections by default: consume() holds one per poller and handler.
    values = connection_values(_WHERE, options, max_connections=50)
    check_url_options(_WHERE, url_secret.reveal(), password, values)
    return RedisOptions(
        url=url_secret,
        password=secret(password),
        connection=connection_group(values),
        location=f"url={url_location(url_secret.reveal())!r}",
    )


def _stream_key(queue_name: str) -> str:
    """The stream's key on a cluster: the name as a hash tag, unless it holds one."""
    start = queue_name.find("{")
    if start != -1 and queue_name.find("}", start + 2) != -1:
        return queue_name  # already tagged ("{jobs}", "app:{jobs}"): Redis hashes the tag
    return hash_tag(queue_name)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["RedisStreamQueue"]
