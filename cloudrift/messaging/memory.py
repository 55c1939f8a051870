"""An in-process queue with the same semantics as the cloud ones, for the demo and tests.

Visibility timeouts, nack, delays, dead-lettering, deduplication (5-minute window, like
SQS FIFO) and per-group FIFO delivery (a group with a message in flight delivers nothing
more until it is acked or comes back, like SQS FIFO and Service Bus sessions) all behave
as they do on the real services. Receipt handles belong to the instance that issued them.
``clock`` (seconds, default ``time.monotonic``) drives visibility timeouts, delays and the
dedup window, so tests can let time pass without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cloudrift.core.exceptions import ReceiptHandleError
from cloudrift.core.operation import operation
from cloudrift.messaging.base import (
    DEAD_LETTER_REASON,
    Message,
    PreparedMessage,
    Queue,
    SendLimits,
)


@dataclass
class _Entry:
    message_id: str
    raw: bytes
    group_id: str | None
    dedup_id: str | None
    attributes: dict[str, str]
    visible_at: float
    receive_count: int = 0
    handle: str | None = None
    seq: int = 0
    in_flight: bool = field(default=False)


def memory_limits(max_message_bytes: int) -> SendLimits:
    """The sending limits of the memory queue and topic: SQS-like batches of 10, each
    message (and batch) at most ``max_message_bytes``."""
    return SendLimits(
        max_message_bytes=max_message_bytes,
        max_batch_count=10,
        max_batch_bytes=max_message_bytes,
    )


class MemoryQueue(Queue):
    """A queue held in this process's memory (nothing shared between instances)."""

    provider = "memory"
    max_receive_messages = 100

    supports_delay = True
    supports_groups = True
    supports_dedup = True
    supports_group_receive = True
    supports_visibility_timeout = True
    supports_dead_letter = True

    def __init__(
        self,
        *,
        name: str = "memory",
        visibility_timeout: float = 30.0,
        max_message_bytes: int = 256 * 1024,
        dedup_window: float = 300.0,
        dead_letter_queue: MemoryQueue | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        if visibility_timeout < 0 or max_message_bytes < 1 or dedup_window < 0:
            raise ValueError("visibility_timeout, max_message_bytes and dedup_window must be >= 0")
        self.name = name
        self.backend_name = f"memory queue {name!r}"
        self.default_visibility = float(visibility_timeout)
        self.max_message_bytes = int(max_message_bytes)
        self.dedup_window = float(dedup_window)
        self._token = uuid.uuid4().hex[:12]
        self._entries: dict[str, _Entry] = {}
        self._handles: dict[str, str] = {}
        self._dedup: dict[str, tuple[str, float]] = {}
        self._seq = itertools.count()
        self._wakeup: asyncio.Event | None = None
        self._dlq = dead_letter_queue
        self._clock = clock or time.monotonic

    def __repr__(self) -> str:
        return f"MemoryQueue(name={self.name!r})"

    @property
    def dead_letter_queue(self) -> MemoryQueue:
        """Where ``dead_letter()`` moves messages (created on first use if not given)."""
        if self._dlq is None:
            self._dlq = MemoryQueue(
                name=f"{self.name}-dlq",
                visibility_timeout=self.default_visibility,
                max_message_bytes=self.max_message_bytes,
            )
        return self._dlq

    # ------------------------------------------------------------- internals

    def _now(self) -> float:
        return self._clock()

    def _notify(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def _enqueue(
        self,
        raw: bytes,
        *,
        delay: float = 0,
        group_id: str | None = None,
        dedup_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        now = self._now()
        if dedup_id is not None:
            self._dedup = {k: v for k, v in self._dedup.items() if v[1] > now}
            seen = self._dedup.get(dedup_id)
            if seen is not None:
                return seen[0]
        message_id = str(uuid.uuid4())
        self._entries[message_id] = _Entry(
            message_id=message_id,
            raw=raw,
            group_id=group_id,
            dedup_id=dedup_id,
            attributes=dict(attributes or {}),
            visible_at=now + delay,
            seq=next(self._seq),
        )
        if dedup_id is not None:
            self._dedup[dedup_id] = (message_id, now + self.dedup_window)
        self._notify()
        return message_id

    def _entry_for(self, handle: str) -> _Entry:
        if not handle.startswith(f"mem:{self._token}:"):
            raise ReceiptHandleError(
                f"receipt handle was not issued by {self.backend_name} (this instance); "
                "ack a message on the queue object that received it"
            )
        message_id = self._handles.get(handle)
        entry = self._entries.get(message_id) if message_id else None
        if entry is None or entry.handle != handle:
            raise ReceiptHandleError(
                "receipt handle is stale: the message was already deleted, nacked, or "
                "received again after its visibility timeout"
            )
        return entry

    def _release(self, entry: _Entry) -> None:
        if entry.handle is not None:
            self._handles.pop(entry.handle, None)
        entry.handle = None
        entry.in_flight = False

    def _take(self, max_messages: int, visibility: float, group_id: str | None) -> list[Message]:
        now = self._now()
        # A message whose visibility ran out is back in the queue (its handle stays
        # valid until someone receives it again, as on SQS).
        for entry in self._entries.values():
            if entry.in_flight and entry.visible_at <= now:
                entry.in_flight = False
        busy_groups = {
            e.group_id for e in self._entries.values() if e.in_flight and e.group_id is not None
        }
        taken: list[Message] = []
        for entry in sorted(self._entries.values(), key=lambda e: e.seq):
            if len(taken) >= max_messages:
                break
            if entry.in_flight or entry.visible_at > now:
                if entry.group_id is not None:
                    busy_groups.add(entry.group_id)  # keep FIFO order inside the group
                continue
            if group_id is not None and entry.group_id != group_id:
                continue
            if entry.group_id is not None and entry.group_id in busy_groups:
                continue
            if entry.handle is not None:
                self._handles.pop(entry.handle, None)
            entry.handle = f"mem:{self._token}:{uuid.uuid4().hex}"
            self._handles[entry.handle] = entry.message_id
            entry.receive_count += 1
            entry.in_flight = True
            entry.visible_at = now + visibility
            taken.append(
                Message.from_raw(
                    entry.raw,
                    receipt_handle=entry.handle,
                    message_id=entry.message_id,
                    group_id=entry.group_id,
                    dedup_id=entry.dedup_id,
                    receive_count=entry.receive_count,
                    attributes=entry.attributes,
                )
            )
        return taken

    def _next_change(self) -> float | None:
        times = [e.visible_at for e in self._entries.values()]
        return min(times) if times else None

    # ----------------------------------------------------------------- hooks

    async def _limits(self) -> SendLimits:
        return memory_limits(self.max_message_bytes)

    async def _send_one(self, msg: PreparedMessage) -> str:
        return self._enqueue(
            msg.body,
            delay=msg.delay,
            group_id=msg.group_id,
            dedup_id=msg.dedup_id,
            attributes=msg.wire_attributes,
        )

    @operation
    async def inject_raw(self, raw: bytes, *, attributes: Mapping[str, str] | None = None) -> str:
        """Enqueue bytes exactly as given, as a producer that does not use cloudrift would."""
        return self._enqueue(bytes(raw), attributes=attributes)

    async def _receive(
        self,
        max_messages: int,
        wait_time: float,
        visibility_timeout: float | None,
        group_id: str | None,
    ) -> list[Message]:
        visibility = self.default_visibility if visibility_timeout is None else visibility_timeout
        # The long poll waits in real time even when ``clock`` is a test's fake clock;
        # visibility and delays follow ``clock``.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_time
        while True:
            taken = self._take(max_messages, visibility, group_id)
            timeout = deadline - loop.time()
            if taken or timeout <= 0:
                return taken
            now = self._now()
            upcoming = self._next_change()
            if upcoming is not None and upcoming > now:
                timeout = min(timeout, upcoming - now)
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(timeout, 0.001))
            self._ensure_open()

    async def _delete(self, handle: str) -> None:
        entry = self._entry_for(handle)
        self._release(entry)
        del self._entries[entry.message_id]
        self._notify()  # the next message of its group may go now

    async def _nack(self, handle: str) -> None:
        entry = self._entry_for(handle)
        self._release(entry)
        entry.visible_at = self._now()
        self._notify()

    async def _extend_visibility(self, handle: str, seconds: float) -> None:
        entry = self._entry_for(handle)
        entry.visible_at = self._now() + seconds
        entry.in_flight = True
        if seconds == 0:
            self._notify()

    async def _dead_letter(self, handle: str, reason: str) -> None:
        entry = self._entry_for(handle)
        dlq = self.dead_letter_queue
        dlq._ensure_open()  # a closed DLQ raises before the message leaves this queue
        dlq._enqueue(
            entry.raw,
            group_id=entry.group_id,
            attributes={**entry.attributes, DEAD_LETTER_REASON: reason},
        )
        self._release(entry)
        del self._entries[entry.message_id]
        self._notify()

    async def _purge(self) -> None:
        self._entries.clear()
        self._handles.clear()
        self._dedup.clear()
        self._notify()

    async def _health(self) -> bool:
        return True

    async def _aclose(self) -> None:
        self._notify()

    def __len__(self) -> int:
        """Messages currently held (visible, delayed or in flight)."""
        return len(self._entries)


__all__ = ["MemoryQueue"]
