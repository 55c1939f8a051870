"""Topics on Redis Streams: one stream per topic, one consumer group per subscription.

``get_topic("redis", stream="events")`` appends every message to the stream ``events``
(the same entry layout as the redis queue: ``body``, ``mid``, ``attrs``).
``get_subscription("redis", stream="events", group="audit")`` is a consumer group on it,
consumed exactly like the redis queue (visibility, nack, redelivery, dead-lettering —
per group; its keys are ``events:audit:inflight`` and ``events:audit:dead``). Acked
entries stay on the stream for the other groups: pass ``max_len`` to the topic so the
stream is trimmed (``XADD MAXLEN ~``, approximate) instead of growing forever — an entry
trimmed before a slow group read it is lost to that group.

A group is created when the subscription first receives (or ahead of time with
:func:`cloudrift.messaging.provision.create_redis_group`), at the stream's end: it sees
only messages published after that ("new messages only"). ``start="earliest"`` creates
it at the beginning of the stream instead. Publishing to a subscription (``send``) is not
supported: an entry added to the stream would reach every group.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal, Unpack

from redis.exceptions import ResponseError

from cloudrift.core.exceptions import ConfigurationError, FeatureNotSupportedError
from cloudrift.core.operation import BackendDescription
from cloudrift.core.redis import RedisConnectionOptions
from cloudrift.core.secrets import Secret
from cloudrift.core.validation import check_int
from cloudrift.messaging.base import PreparedMessage, SendFailure, SendLimits
from cloudrift.messaging.redis_streams import RedisStreamQueue
from cloudrift.messaging.topic import Topic

#: Where a new group starts reading: the stream's end, or its beginning.
_START_IDS = {"latest": "$", "earliest": "0"}


class RedisTopic(Topic):
    """A topic on one Redis stream; the redis queue's client does the talking."""

    provider = "redis"

    def __init__(
        self,
        *,
        stream: str,
        url: str | Secret | None = None,
        password: str | Secret | None = None,
        client: Any = None,
        max_len: int | None = None,
        max_message_bytes: int = 1024 * 1024,
        **options: Unpack[RedisConnectionOptions],
    ) -> None:
        super().__init__()
        if max_len is not None:
            check_int("redis topic: max_len", max_len, at_least=1)
        # The queue object is only the connection (client construction, error
        # translation, entry layout); it never creates a group or reads.
        self._writer = RedisStreamQueue(
            queue_name=stream,
            url=url,
            password=password,
            client=client,
            max_message_bytes=max_message_bytes,
            **options,
        )
        self.stream = self._writer.stream  # hash-tagged on a Redis Cluster, as the queue's
        self.max_len = max_len
        self.backend_name = f"redis topic {stream!r}"

    def __repr__(self) -> str:
        return repr(self._writer).replace("RedisStreamQueue(", "RedisTopic(", 1)

    def _describe(self) -> BackendDescription:
        return self._writer.describe()

    async def _native_client(self) -> Any:
        """``await topic.native()``: the ``redis.asyncio.Redis`` client."""
        return await self._writer._client.get()

    async def _aclose(self) -> None:
        await self._writer.close()

    async def _limits(self) -> SendLimits:
        return await self._writer._limits()

    def _trim(self) -> dict[str, Any]:
        if self.max_len is None:
            return {}
        return {"maxlen": self.max_len, "approximate": True}

    async def _send_one(self, msg: PreparedMessage) -> str:
        message_id = _new_id()
        client = await self._writer._client.get()
        with self._writer._translate():
            await client.xadd(self.stream, self._writer._fields(msg, message_id), **self._trim())
        return message_id

    async def _send_chunk(self, chunk: Sequence[PreparedMessage]) -> Sequence[str | SendFailure]:
        ids = [_new_id() for _ in chunk]
        client = await self._writer._client.get()
        with self._writer._translate():
            async with client.pipeline(transaction=False) as pipe:
                for msg, message_id in zip(chunk, ids, strict=True):
                    pipe.xadd(self.stream, self._writer._fields(msg, message_id), **self._trim())
                answers = await pipe.execute(raise_on_error=False)
        return [
            SendFailure(str(answer)) if isinstance(answer, Exception) else message_id
            for message_id, answer in zip(ids, answers, strict=True)
        ]

    async def _health(self) -> bool:
        return await self._writer._health()


class RedisSubscription(RedisStreamQueue):
    """One consumer group on a topic's stream, consumed as the redis queue is."""

    category = "subscription"

    _settled_entries = "keep"

    def __init__(
        self,
        *,
        stream: str,
        group: str,
        start: Literal["latest", "earliest"] = "latest",
        url: str | Secret | None = None,
        password: str | Secret | None = None,
        client: Any = None,
        consumer: str | None = None,
        dead_letter_stream: str | None = None,
        visibility_timeout: float = 30.0,
        poll_interval: float = 0.1,
        **options: Unpack[RedisConnectionOptions],
    ) -> None:
        if start not in _START_IDS:
            raise ConfigurationError(
                f"redis subscription: start must be 'latest' or 'earliest', got {start!r}"
            )
        if not isinstance(group, str) or not group.strip():
            raise ConfigurationError("redis subscription: group must be a non-empty string")
        super().__init__(
            queue_name=stream,
            url=url,
            password=password,
            client=client,
            group=group,
            consumer=consumer,
            dead_letter_stream=dead_letter_stream,
            visibility_timeout=visibility_timeout,
            poll_interval=poll_interval,
            **options,
        )
        # self.stream is the key: the name, hash-tagged on a Redis Cluster ("{events}").
        self.dead_letter_stream = dead_letter_stream or f"{self.stream}:{group}:dead"
        # Per group: one subscription's in-flight set never touches another's.
        self._inflight_key = f"{self.stream}:{group}:inflight"
        self._delayed_key = f"{self.stream}:{group}:delayed"
        self.start = start
        self.backend_name = f"redis subscription {group!r} of stream {stream!r}"
        self.supports_delay = False

    def __repr__(self) -> str:
        inner = super().__repr__().removeprefix("RedisStreamQueue(").removesuffix(")")
        return f"RedisSubscription({inner}, group={self.group!r})"

    async def _ensure_group(self, force: bool = False) -> None:
        if self._group_ready and not force:
            return
        client = await self._client.get()
        with self._translate():
            try:
                await client.xgroup_create(
                    self.stream, self.group, id=_START_IDS[self.start], mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group_ready = True

    def _refuse_send(self) -> FeatureNotSupportedError:
        return FeatureNotSupportedError(
            f"{self.backend_name}: a subscription cannot be sent to (the entry would reach "
            "every group of the stream); publish to the topic instead"
        )

    async def _send_one(self, msg: PreparedMessage) -> str:
        raise self._refuse_send()

    async def _send_entries(self, entries: Sequence[PreparedMessage]) -> list[str | SendFailure]:
        raise self._refuse_send()

    async def _purge(self) -> None:
        # Drop this group's backlog only: the stream belongs to every subscription.
        await self._ensure_group()
        client = await self._client.get()
        with self._translate():
            await client.xgroup_setid(self.stream, self.group, id="$")
            pending = await client.xpending_range(self.stream, self.group, "-", "+", 10_000)
            if pending:
                await client.xack(self.stream, self.group, *[p["message_id"] for p in pending])
            await client.delete(self._inflight_key, self._delayed_key)


def _new_id() -> str:
    return str(uuid.uuid4())


__all__ = ["RedisSubscription", "RedisTopic"]
