"""In-process topics and subscriptions, for the demo and tests.

``get_topic("memory", topic="events")`` and ``get_subscription("memory", topic="events",
subscription="audit")`` meet in one registry held by this process. Each subscription is
a :class:`~cloudrift.messaging.memory.MemoryQueue` (visibility, nack, groups, dedup,
dead-lettering as there) created the first time it is opened, and receives every message
published after that. Every object opened on the same subscription shares its messages
(competing consumers); closing one leaves the subscription and its messages in place.
Once every topic and subscription object of a topic name is closed, the topic is
forgotten: the next app (or test) that opens it starts empty.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cloudrift.core.operation import operation
from cloudrift.messaging.base import Message, PreparedMessage, Queue, SendLimits
from cloudrift.messaging.memory import MemoryQueue, memory_limits
from cloudrift.messaging.topic import Topic


@dataclass
class _TopicState:
    """One topic of the registry: its subscriptions, by name."""

    subscriptions: dict[str, MemoryQueue] = field(default_factory=dict)
    #: Topic and subscription objects open on it; at 0 the topic is forgotten.
    users: int = 0


_REGISTRY: dict[str, _TopicState] = {}
_LOCK = threading.Lock()


def _open_topic(name: str) -> _TopicState:
    if not isinstance(name, str) or not name:
        raise ValueError("topic must be a non-empty str")
    with _LOCK:
        state = _REGISTRY.setdefault(name, _TopicState())
        state.users += 1
        return state


def _release_topic(name: str, state: _TopicState) -> None:
    with _LOCK:
        state.users -= 1
        if state.users <= 0 and _REGISTRY.get(name) is state:
            del _REGISTRY[name]


def reset_memory_topics() -> None:
    """Forget every memory topic and subscription (test isolation)."""
    with _LOCK:
        _REGISTRY.clear()


class MemoryTopic(Topic):
    """A topic held in this process's memory."""

    provider = "memory"
    supports_groups = True
    supports_dedup = True

    def __init__(
        self,
        *,
        topic: str = "events",
        fifo: bool = False,
        max_message_bytes: int = 256 * 1024,
    ) -> None:
        super().__init__()
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")
        self.name = topic
        self.backend_name = f"memory topic {topic!r}"
        self.requires_group_id = bool(fifo)
        self.max_message_bytes = int(max_message_bytes)
        self._state = _open_topic(topic)

    def __repr__(self) -> str:
        return f"MemoryTopic(topic={self.name!r})"

    async def _limits(self) -> SendLimits:
        return memory_limits(self.max_message_bytes)

    async def _send_one(self, msg: PreparedMessage) -> str:
        for queue in list(self._state.subscriptions.values()):
            queue._enqueue(
                msg.body,
                group_id=msg.group_id,
                dedup_id=msg.dedup_id,
                attributes=msg.wire_attributes,
            )
        return str(uuid.uuid4())

    async def _health(self) -> bool:
        return True

    async def _aclose(self) -> None:
        _release_topic(self.name, self._state)


class MemorySubscription(Queue):
    """One subscription of a memory topic, consumed as a queue.

    ``send`` puts a message on this subscription only (as sending to an SQS queue
    subscribed to a topic does).
    """

    provider = "memory"
    category = "subscription"
    max_receive_messages = MemoryQueue.max_receive_messages
    supports_delay = True
    supports_groups = True
    supports_dedup = True
    supports_group_receive = True
    supports_visibility_timeout = True
    supports_dead_letter = True

    def __init__(
        self,
        *,
        topic: str = "events",
        subscription: str,
        visibility_timeout: float = 30.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(subscription, str) or not subscription:
            raise ValueError("subscription must be a non-empty str")
        state = _open_topic(topic)
        with _LOCK:
            store = state.subscriptions.get(subscription)
            if store is None:
                # The first open creates it; later opens share it (and its options).
                store = MemoryQueue(
                    name=f"{topic}/{subscription}",
                    visibility_timeout=visibility_timeout,
                    clock=clock,
                )
                state.subscriptions[subscription] = store
        self.topic = topic
        self.subscription = subscription
        self.backend_name = f"memory subscription {subscription!r} of topic {topic!r}"
        self._store = store
        self._state = state

    def __repr__(self) -> str:
        return f"MemorySubscription(topic={self.topic!r}, subscription={self.subscription!r})"

    @property
    def dead_letter_queue(self) -> MemoryQueue:
        """Where ``dead_letter()`` moves this subscription's messages."""
        return self._store.dead_letter_queue

    @operation
    async def inject_raw(self, raw: bytes, *, attributes: Mapping[str, str] | None = None) -> str:
        """Enqueue bytes exactly as given, as a producer that does not use cloudrift would."""
        return self._store._enqueue(bytes(raw), attributes=attributes)

    async def _limits(self) -> SendLimits:
        return await self._store._limits()

    async def _send_one(self, msg: PreparedMessage) -> str:
        return await self._store._send_one(msg)

    async def _receive(
        self,
        max_messages: int,
        wait_time: float,
        visibility_timeout: float | None,
        group_id: str | None,
    ) -> list[Message]:
        return await self._store._receive(max_messages, wait_time, visibility_timeout, group_id)

    async def _delete(self, handle: str) -> None:
        await self._store._delete(handle)

    async def _nack(self, handle: str) -> None:
        await self._store._nack(handle)

    async def _extend_visibility(self, handle: str, seconds: float) -> None:
        await self._store._extend_visibility(handle, seconds)

    async def _dead_letter(self, handle: str, reason: str) -> None:
        await self._store._dead_letter(handle, reason)

    async def _purge(self) -> None:
        await self._store._purge()

    async def _health(self) -> bool:
        return True

    async def _aclose(self) -> None:
        _release_topic(self.topic, self._state)

    def __len__(self) -> int:
        """Messages this subscription currently holds."""
        return len(self._store)


__all__ = ["MemorySubscription", "MemoryTopic", "reset_memory_topics"]
