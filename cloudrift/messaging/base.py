"""The messaging contract: the :class:`Queue` ABC, the :class:`Message` value type and the
shared work every provider gets for free.

Done once, here: payload JSON serialisation (:func:`encode_payload`) and decoding
(:meth:`Message.from_raw`), validation of delays, attributes, group / dedup ids and
receipt handles, capability checks (``FeatureNotSupportedError``), batch splitting by
count and bytes with per-entry failure accounting, the oversized-message check,
``health_check`` and the :meth:`Queue.consume` worker loop. Every public operation runs
through :func:`~cloudrift.core.operation.operation` (closed check, observation,
cancellation).

Providers implement small hooks (all receive already-validated arguments; none needs to
call ``_ensure_open``):

``_send_one(msg) -> str``
    Send one :class:`PreparedMessage`; return the provider's message id.
``_send_chunk(chunk) -> Sequence[str | SendFailure]``
    Send one provider-legal batch (already split by :meth:`Queue._plan_batches`); return
    one result per entry, in order: the message id, or a :class:`SendFailure`. Raising a
    :class:`MessagingError` fails the whole chunk. Default: ``_send_one`` per entry.
``_send_entries(entries) -> list[str | SendFailure]``
    Send a whole ``send_batch`` call. Default: split with ``_plan_batches`` and call
    ``_send_chunk`` per batch, up to ``batch_send_concurrency`` batches at once when no
    entry has a group (default 1: in order); a provider whose SDK sizes batches itself
    (Service Bus's ``ServiceBusMessageBatch``) overrides this instead and must return one
    result per entry.
``_receive(max_messages, wait_time, visibility_timeout, group_id) -> list[Message]``
    Receive up to ``max_messages``, long-polling up to ``wait_time`` seconds without
    blocking the loop. ``visibility_timeout`` is None for "the queue's default", and is
    None whenever the provider sets ``supports_visibility_timeout = False``.
    ``group_id`` is None unless ``supports_group_receive``. Cancelling it must lose
    nothing: a message it already took comes back after its visibility timeout.
``_delete(handle)``, ``_nack(handle)``, ``_extend_visibility(handle, seconds)``,
``_dead_letter(handle, reason)``
    Act on a receipt handle; raise :class:`ReceiptHandleError` for a stale, unknown or
    foreign handle. ``_dead_letter`` must leave the message on the source queue if moving
    it fails.
``_purge()``, ``_health() -> bool``, ``_limits() -> SendLimits``, ``_entry_size(msg)``
    Drop everything; contact the service; the provider's size/count limits (may ask the
    service once); the size an entry counts for against those limits.
``_aclose()``
    Release the client (from :class:`AsyncBackend`). Consumers are drained before it runs.

Capabilities are False unless the provider declares them, as class or instance
attributes (one provider class can differ per queue: SQS standard vs FIFO):
``supports_delay``, ``supports_groups``, ``supports_dedup``, ``supports_group_receive``,
``supports_visibility_timeout`` (False = accepted and ignored, as on Service Bus),
``supports_dead_letter``; and ``requires_group_id``.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import inspect
import json
import logging
import math
import warnings
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from cloudrift.core import telemetry
from cloudrift.core.exceptions import (
    BackendClosedError,
    FeatureNotSupportedError,
    InvalidArgumentError,
    InvalidMessageError,
    MessageSendError,
    MessageTooLargeError,
    MessagingConnectionError,
    MessagingError,
    QueueNotFoundError,
    ReceiptHandleError,
)
from cloudrift.core.lifecycle import AsyncBackend
from cloudrift.core.operation import operation
from cloudrift.core.retry import RetryPolicy
from cloudrift.core.validation import is_int, is_number

log = logging.getLogger("cloudrift.messaging")

V = TypeVar("V")
F = TypeVar("F")


def _frozen(cls: type[F], fields: dict[str, Any]) -> F:
    """An instance of the frozen dataclass ``cls`` holding ``fields`` (every field, in
    declaration order): what its generated ``__init__`` stores, without the one
    ``object.__setattr__`` call per field that makes frozen construction slow. Used on
    the per-message paths (a message sent or received builds one or two of these);
    ``tests/messaging/test_hot_paths.py`` keeps the field lists complete."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


#: Attribute a dead-lettered message carries on the dead-letter queue: the reason given.
DEAD_LETTER_REASON = "DeadLetterReason"

#: The queue whose consume() handler the current task is running (close() deadlock guard).
_CURRENT_HANDLER: contextvars.ContextVar[Queue | None] = contextvars.ContextVar(
    "cloudrift_messaging_handler", default=None
)

#: What ``consume()`` calls for every message.
#: A plain function works too (it has run when it returns) but blocks the event loop.
Handler = Callable[["Message"], Awaitable[object] | object]


#: One encoder for every payload, as ``json.dumps`` keeps one for its defaults: called
#: with options, ``json.dumps`` builds a new encoder per message (half its cost here).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_payload(payload: Any) -> bytes:
    """The one place payloads become bytes: compact UTF-8 JSON.

    Raises TypeError (before anything is sent) when the payload is not JSON-serialisable:
    sets, bytes, arbitrary objects, NaN/Infinity, circular structures.
    """
    try:
        text = _ENCODER.encode(payload)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"message payload must be JSON-serialisable (dict, list, str, int, float, bool, "
            f"None); got {type(payload).__name__}: {exc}"
        ) from exc
    return text.encode("utf-8")


@dataclass(frozen=True)
class Message:
    """One received message.

    ``body`` is the decoded JSON payload. A message from a foreign producer whose bytes
    are not JSON (or not UTF-8) is still delivered: ``is_json`` is False, ``body`` is
    None, and ``raw`` holds the exact bytes (``text`` the UTF-8 text, if it is UTF-8).
    """

    body: Any
    receipt_handle: str
    message_id: str
    raw: bytes
    is_json: bool = True
    group_id: str | None = None
    dedup_id: str | None = None
    receive_count: int = 1
    attributes: Mapping[str, str] = field(default_factory=dict)
    #: Transport metadata the message carried besides its attributes: the W3C trace
    #: context (``traceparent`` / ``tracestate``) its producer injected. Not attributes.
    transport_headers: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_raw(
        cls,
        raw: bytes,
        *,
        receipt_handle: str,
        message_id: str,
        group_id: str | None = None,
        dedup_id: str | None = None,
        receive_count: int = 1,
        attributes: Mapping[str, str] | None = None,
    ) -> Message:
        """Build a Message from the bytes on the wire; the one place payloads are decoded.

        The trace-context headers among ``attributes`` (the providers' native metadata)
        become ``transport_headers``: they never show in ``Message.attributes``.
        """
        # Most messages carry no attributes: skip the copy and the header scan then
        # (this runs for every message received).
        attrs = dict(attributes) if attributes else {}
        headers = {k: attrs.pop(k) for k in telemetry.TRACE_HEADERS if k in attrs} if attrs else {}
        try:
            body, is_json = json.loads(raw.decode("utf-8")), True
        except (UnicodeDecodeError, ValueError):
            body, is_json = None, False
        fields = {
            "body": body,
            "receipt_handle": receipt_handle,
            "message_id": message_id,
            "raw": bytes(raw),
            "is_json": is_json,
            "group_id": group_id,
            "dedup_id": dedup_id,
            "receive_count": max(1, int(receive_count)),
            "attributes": attrs,
            "transport_headers": headers,
        }
        # A subclass may have its own fields or __post_init__: it gets its __init__.
        return _frozen(cls, fields) if cls is Message else cls(**fields)

    @property
    def text(self) -> str | None:
        """The raw bytes as UTF-8 text, or None when they are not UTF-8."""
        try:
            return self.raw.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def __repr__(self) -> str:
        return (
            f"Message(message_id={self.message_id!r}, group_id={self.group_id!r}, "
            f"receive_count={self.receive_count}, size={len(self.raw)})"
        )


@dataclass(frozen=True)
class OutgoingMessage:
    """A ``send_batch`` entry with per-message options (plain payloads work too)."""

    payload: Any
    delay: float = 0
    group_id: str | None = None
    dedup_id: str | None = None
    attributes: Mapping[str, str] | None = None


@dataclass(frozen=True)
class PreparedMessage:
    """A validated, serialised message handed to the provider hooks.

    Named for what it is: a message ``send`` / ``send_batch`` has checked and encoded
    (formerly ``OutboundMessage``, one syllable from the caller's ``OutgoingMessage``).
    """

    #: Position in the caller's input (0 for ``send``).
    index: int
    body: bytes
    delay: float = 0
    group_id: str | None = None
    dedup_id: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    #: Transport metadata to carry besides the attributes (the W3C trace context,
    #: ``traceparent`` / ``tracestate``), injected by ``send`` / ``send_batch``.
    #: Providers send :attr:`wire_attributes`, which holds both.
    transport_headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def wire_attributes(self) -> Mapping[str, str]:
        """The attributes plus the transport headers: what a provider puts in its
        native metadata (SQS message attributes, application properties, fields...)."""
        if not self.transport_headers:
            return self.attributes
        return {**self.attributes, **self.transport_headers}


@dataclass(frozen=True)
class SendFailure:
    """Why one batch entry was not sent (returned by ``_send_chunk`` / ``_send_entries``)."""

    reason: str
    #: Set when the destination itself does not exist: a batch of which no entry was
    #: sent raises this error instead of MessageSendError (nothing per entry to report).
    missing: QueueNotFoundError | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SendLimits:
    """A provider's sending limits."""

    max_message_bytes: int = 256 * 1024
    max_batch_count: int = 10
    max_batch_bytes: int = 256 * 1024
    #: Longest allowed ``delay`` in seconds; None = no limit.
    max_delay: float | None = None
    #: Most attributes one message may carry, trace-context headers included (SQS: 10);
    #: None = no limit.
    max_attributes: int | None = None


class InFlightMap(Generic[V]):
    """A bounded map of receipt handle → value: the oldest entries go first when full.

    Providers that remember something per received message (for dead-lettering, lock
    renewal, ...) use it so a consumer that never acks cannot grow memory without bound.
    """

    def __init__(self, max_size: int = 10_000) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self._items: OrderedDict[str, V] = OrderedDict()

    def add(self, handle: str, value: V) -> None:
        """Remember ``value`` for ``handle``, evicting the oldest entry when full."""
        self._items[handle] = value
        self._items.move_to_end(handle)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)

    def get(self, handle: str) -> V | None:
        """The value for ``handle``, or None."""
        return self._items.get(handle)

    def pop(self, handle: str) -> V | None:
        """Forget ``handle`` and return its value, or None."""
        return self._items.pop(handle, None)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, handle: object) -> bool:
        return handle in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))


def _check_id(kind: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 128:
        raise InvalidMessageError(f"{kind} must be a non-empty string of at most 128 characters")
    return value


def _check_attributes(attributes: Mapping[str, str] | None) -> dict[str, str]:
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise InvalidMessageError("attributes must be a mapping of str → str")
    out: dict[str, str] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InvalidMessageError(
                f"message attribute {key!r} must have a non-empty str name and a str value"
            )
        if key in telemetry.TRACE_HEADERS:
            raise InvalidMessageError(
                f"message attribute name {key!r} is reserved for the trace context "
                "cloudrift carries; choose another name"
            )
        out[key] = value
    return out


def _check_positive_number(name: str, value: object, *, allow_zero: bool) -> float:
    if not is_number(value) or not math.isfinite(value):
        raise InvalidArgumentError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidArgumentError(f"{name} must be {bound}, got {value!r}")
    return float(value)


class MessageSender(AsyncBackend, abc.ABC):
    """What every sending side shares (:class:`Queue` and :class:`~cloudrift.messaging.
    topic.Topic`): validation, JSON encoding, the size check, batch splitting and
    per-entry failure accounting — written once, here.

    Subclasses implement ``_send_one`` (and optionally ``_send_chunk`` /
    ``_send_entries`` / ``_limits`` / ``_entry_size``, see the module docstring).
    """

    backend_name = "messaging"

    # Sending capabilities: False unless the provider declares them.
    supports_delay: bool = False
    supports_groups: bool = False
    supports_dedup: bool = False
    requires_group_id: bool = False

    #: How many parts of one batch may be in flight at once. 1 (the default) sends
    #: them in order; a provider without ordering (SQS standard) raises it. Entries
    #: with a ``group_id`` always go in order.
    batch_send_concurrency: int = 1

    async def _send_validated(self, out: OutgoingMessage) -> str:
        """Validate, encode and size-check one message, then send it; its id."""
        limits = await self._limits()
        msg = self._prepare(0, out, limits)
        size = self._entry_size(msg)
        if size > limits.max_message_bytes:
            raise MessageTooLargeError(size, limits.max_message_bytes)
        message_id = await self._send_one(msg)
        telemetry.note_message_id(message_id)
        return message_id

    async def _send_many(
        self,
        payloads: Sequence[Any],
        *,
        group_id: str | None,
        dedup_id: str | None,
        what: str = "send_batch",
    ) -> list[str]:
        """Validate every entry, send them in provider-legal batches, and return the ids
        in input order (MessageSendError with ``succeeded`` / ``failed`` otherwise)."""
        if isinstance(payloads, str | bytes | Mapping) or not isinstance(payloads, Sequence):
            raise TypeError(f"{what} takes a list of payloads")
        if dedup_id is not None:
            raise InvalidMessageError(
                "dedup_id cannot be shared by a batch; give each entry its own with "
                "OutgoingMessage(payload, dedup_id=...)"
            )
        if not payloads:
            return []
        limits = await self._limits()
        entries: list[PreparedMessage] = []
        for index, item in enumerate(payloads):
            out = (
                item
                if isinstance(item, OutgoingMessage)
                else OutgoingMessage(item, group_id=group_id)
            )
            if out.group_id is None and group_id is not None:
                out = OutgoingMessage(
                    out.payload, out.delay, group_id, out.dedup_id, out.attributes
                )
            try:
                msg = self._prepare(index, out, limits)
            except TypeError as exc:
                raise TypeError(f"batch entry {index}: {exc}") from exc
            size = self._entry_size(msg)
            if size > limits.max_message_bytes:
                raise MessageTooLargeError(
                    size,
                    limits.max_message_bytes,
                    f"batch entry {index} is {size} bytes, over the provider's limit of "
                    f"{limits.max_message_bytes} bytes; nothing was sent",
                )
            entries.append(msg)
        telemetry.note_message_count(len(entries))
        results = await self._send_entries(entries)
        if len(results) != len(entries):  # a provider bug must not look like success
            raise MessagingError(
                f"{self.backend_name} returned {len(results)} results for {len(entries)} "
                "messages; the outcome of the batch is unknown"
            )
        succeeded = {i: r for i, r in enumerate(results) if isinstance(r, str)}
        failed = {i: r.reason for i, r in enumerate(results) if isinstance(r, SendFailure)}
        missing = [r.missing for r in results if isinstance(r, SendFailure) and r.missing]
        if missing and not succeeded:
            raise missing[0]
        if failed:
            first = min(failed)
            raise MessageSendError(
                f"{len(failed)} of {len(entries)} messages were not sent "
                f"(first: entry {first}: {failed[first]}); see .failed and .succeeded",
                succeeded=succeeded,
                failed=failed,
            )
        return [succeeded[i] for i in range(len(entries))]

    def _prepare(self, index: int, out: OutgoingMessage, limits: SendLimits) -> PreparedMessage:
        """Validate one message against the capabilities and serialise it."""
        delay = _check_positive_number("delay", out.delay, allow_zero=True)
        if delay > 0 and not self.supports_delay:
            raise FeatureNotSupportedError(
                f"{self.backend_name} does not support a per-message delay "
                "(SQS FIFO queues only have a queue-level delay); send with delay=0"
            )
        if limits.max_delay is not None and delay > limits.max_delay:
            raise InvalidMessageError(
                f"delay {delay:g}s is over {self.backend_name}'s maximum of {limits.max_delay:g}s"
            )
        group = _check_id("group_id", out.group_id)
        dedup = _check_id("dedup_id", out.dedup_id)
        if group is not None and not self.supports_groups:
            raise FeatureNotSupportedError(
                f"{self.backend_name} does not support group_id; use a FIFO queue "
                "(SQS URL ending in .fifo) or a session-enabled Service Bus queue"
            )
        if dedup is not None and not self.supports_dedup:
            raise FeatureNotSupportedError(
                f"{self.backend_name} does not support dedup_id; use an SQS FIFO queue"
            )
        if group is None and self.requires_group_id:
            raise InvalidMessageError(
                f"{self.backend_name} is a FIFO / session queue: pass group_id= "
                "(the ordering key) with every message"
            )
        attributes = _check_attributes(out.attributes)
        # The send span's trace context travels as transport metadata (never attributes).
        # A Topic's publish must inject the same way (see cloudrift.core.telemetry).
        headers: dict[str, str] = {}
        if self.telemetry_enabled:
            telemetry.inject(headers)
        if limits.max_attributes is not None and len(attributes) + len(headers) > (
            limits.max_attributes
        ):
            room = limits.max_attributes - len(headers)
            why = (
                f"; the trace context takes {len(headers)} (traceparent/tracestate): pass at "
                f"most {room}, or build the queue with telemetry=False"
                if headers and len(attributes) <= limits.max_attributes
                else ""
            )
            raise InvalidMessageError(
                f"{self.backend_name} allows at most {limits.max_attributes} attributes per "
                f"message, got {len(attributes)}{why}"
            )
        return _frozen(
            PreparedMessage,
            {
                "index": index,
                "body": encode_payload(out.payload),
                "delay": delay,
                "group_id": group,
                "dedup_id": dedup,
                "attributes": attributes,
                "transport_headers": headers,
            },
        )

    def _entry_size(self, msg: PreparedMessage) -> int:
        """Hook: bytes ``msg`` counts for against the limits (body + attribute text)."""
        return len(msg.body) + sum(
            len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in msg.wire_attributes.items()
        )

    async def _limits(self) -> SendLimits:
        """Hook: the provider's limits (default: SQS-like 256 KiB and 10 per batch)."""
        return SendLimits()

    def _plan_batches(
        self, entries: Sequence[PreparedMessage], limits: SendLimits
    ) -> list[list[PreparedMessage]]:
        """Split ``entries`` in order into batches legal by count and total bytes."""
        batches: list[list[PreparedMessage]] = []
        current: list[PreparedMessage] = []
        current_bytes = 0
        for msg in entries:
            size = self._entry_size(msg)
            if current and (
                len(current) >= limits.max_batch_count
                or current_bytes + size > limits.max_batch_bytes
            ):
                batches.append(current)
                current, current_bytes = [], 0
            current.append(msg)
            current_bytes += size
        if current:
            batches.append(current)
        return batches

    async def _send_entries(self, entries: Sequence[PreparedMessage]) -> list[str | SendFailure]:
        """Hook: send a whole batch; default splits it and calls ``_send_chunk`` per part.

        Parts go one after another, or up to ``batch_send_concurrency`` at once when the
        queue keeps no order and no entry has a group (a group's order is its send
        order). After a connection failure the parts not yet started are not attempted
        and are reported as failed, so the caller knows exactly what to resend.
        """
        chunks = self._plan_batches(entries, await self._limits())
        ordered = any(msg.group_id is not None for msg in entries)
        width = 1 if ordered else max(1, self.batch_send_concurrency)
        gave_up: list[str] = []  # the first connection failure, once there is one
        if width == 1 or len(chunks) == 1:
            per_chunk = [await self._send_chunk_reporting(chunk, gave_up) for chunk in chunks]
        else:
            gate = asyncio.Semaphore(width)

            async def send(chunk: list[PreparedMessage]) -> list[str | SendFailure]:
                async with gate:
                    return await self._send_chunk_reporting(chunk, gave_up)

            # Every part finishes (or fails) before an error surfaces: none keeps
            # sending behind the caller's back.
            outcomes = await asyncio.gather(*(send(c) for c in chunks), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            per_chunk = [o for o in outcomes if not isinstance(o, BaseException)]
        return [result for results in per_chunk for result in results]

    async def _send_chunk_reporting(
        self, chunk: Sequence[PreparedMessage], gave_up: list[str]
    ) -> list[str | SendFailure]:
        """One part's results; a failure of the whole part becomes one failure per entry."""
        if gave_up:
            return [SendFailure(f"not attempted: {gave_up[0]}") for _ in chunk]
        try:
            results = list(await self._send_chunk(chunk))
        except MessagingConnectionError as exc:
            gave_up.append(str(exc))
            return [SendFailure(str(exc)) for _ in chunk]
        except QueueNotFoundError as exc:  # the next part would only be refused too
            gave_up.append(str(exc))
            return [SendFailure(str(exc), missing=exc) for _ in chunk]
        except (MessagingError, FeatureNotSupportedError) as exc:
            return [SendFailure(str(exc)) for _ in chunk]
        if len(results) != len(chunk):
            raise MessagingError(
                f"{self.backend_name} returned {len(results)} results for a batch "
                f"of {len(chunk)}; the outcome is unknown"
            )
        return results

    async def _send_chunk(self, chunk: Sequence[PreparedMessage]) -> Sequence[str | SendFailure]:
        """Hook: send one provider-legal batch; default sends the entries one by one."""
        results: list[str | SendFailure] = []
        for msg in chunk:
            try:
                results.append(await self._send_one(msg))
            except QueueNotFoundError as exc:
                if not results:
                    raise  # the whole part fails: see _send_chunk_reporting
                results.append(SendFailure(str(exc)))
            except MessagingError as exc:
                results.append(SendFailure(str(exc)))
        return results

    @abc.abstractmethod
    async def _send_one(self, msg: PreparedMessage) -> str:
        """Hook: send one message, return its id."""

    @operation
    async def health_check(self) -> bool:
        """Contact the service: True if the queue or topic answers, False if not (never
        raises for connectivity). Raises BackendClosedError after ``close()``."""
        try:
            return bool(await self._health())
        except (asyncio.CancelledError, BackendClosedError):
            raise
        except Exception as exc:
            log.warning("%s health check failed: %s", self.backend_name, type(exc).__name__)
            return False

    @abc.abstractmethod
    async def _health(self) -> bool:
        """Hook: a cheap call that proves the queue or topic exists and is reachable."""


class Queue(MessageSender):
    """A message queue. Every method is async; one instance per queue, reused.

    Delivery is at-least-once: a received message that is not deleted comes back after
    its visibility timeout (or lock) with ``receive_count`` incremented.
    """

    backend_name = "queue"
    category = "queue"
    #: Provider name as given to ``get_queue``.
    provider: ClassVar[str] = "abstract"

    #: Largest ``max_messages`` one ``receive`` may ask for.
    max_receive_messages: int = 10

    # Capabilities: False unless the provider declares them (see the module docstring);
    # the sending ones (delay, groups, dedup, requires_group_id) live on MessageSender.
    supports_group_receive: bool = False
    supports_visibility_timeout: bool = False
    supports_dead_letter: bool = False

    #: Backoff between ``consume()`` polls that failed to reach the service.
    consume_retry: ClassVar[RetryPolicy] = RetryPolicy(attempts=1, base_delay=0.2, max_delay=5.0)

    def __init__(self) -> None:
        super().__init__()
        #: One event per running ``consume()``, set once that loop has fully finished.
        self._consumers: set[asyncio.Event] = set()
        #: Set by ``close()``: every ``consume()`` loop stops polling.
        self._consume_stop = asyncio.Event()

    # ------------------------------------------------------------------ sending

    @operation
    async def send(
        self,
        payload: Any,
        delay: float = 0,
        *,
        group_id: str | None = None,
        dedup_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Send one JSON-serialisable payload and return its message id.

        Raises TypeError for a payload that is not JSON-serialisable,
        MessageTooLargeError (with the limit) for an oversized one,
        FeatureNotSupportedError for ``delay > 0``, ``group_id`` or ``dedup_id`` where the
        provider cannot honour them, and InvalidMessageError for a bad delay, attribute
        or a missing group id on a FIFO / session queue — all before anything is sent.
        """
        out = _frozen(
            OutgoingMessage,
            {
                "payload": payload,
                "delay": delay,
                "group_id": group_id,
                "dedup_id": dedup_id,
                "attributes": attributes,
            },
        )
        return await self._send_validated(out)

    @operation
    async def send_batch(
        self,
        payloads: Sequence[Any],
        *,
        group_id: str | None = None,
        dedup_id: str | None = None,
    ) -> list[str]:
        """Send many messages and return their ids in input order.

        Entries are plain payloads (dicts...) or :class:`OutgoingMessage` for per-entry
        options; ``group_id`` applies to plain entries. The batch is split by the
        provider's count and byte limits. Every entry is validated first: a bad or
        oversized entry raises (InvalidMessageError / MessageTooLargeError / TypeError)
        with nothing sent. If some entries fail to send, MessageSendError is raised
        whose ``succeeded`` ({index: id}) and ``failed`` ({index: reason}) cover every
        entry.
        """
        return await self._send_many(payloads, group_id=group_id, dedup_id=dedup_id)

    # ---------------------------------------------------------------- receiving

    @operation
    async def receive(
        self,
        max_messages: int = 1,
        wait_time: float = 0,
        visibility_timeout: float | None = None,
        group_id: str | None = None,
    ) -> list[Message]:
        """Receive up to ``max_messages`` messages, waiting up to ``wait_time`` seconds.

        Returns an empty list when nothing arrives in time. Received messages stay
        invisible to other receivers for ``visibility_timeout`` seconds (the queue's
        default when None; ignored where the lock duration is queue config). ``group_id``
        receives from one group / session; FeatureNotSupportedError where not supported.
        InvalidArgumentError (a ValueError) for ``max_messages`` outside
        1..``max_receive_messages`` or a negative wait.
        """
        if not is_int(max_messages) or not 1 <= max_messages <= self.max_receive_messages:
            raise InvalidArgumentError(
                f"max_messages must be an int from 1 to {self.max_receive_messages} for "
                f"{self.backend_name}, got {max_messages!r}"
            )
        wait = _check_positive_number("wait_time", wait_time, allow_zero=True)
        visibility: float | None = None
        if visibility_timeout is not None:
            visibility = _check_positive_number(
                "visibility_timeout", visibility_timeout, allow_zero=True
            )
        if not self.supports_visibility_timeout:
            visibility = None
        group = None
        if group_id is not None:
            if not self.supports_group_receive:
                raise FeatureNotSupportedError(
                    f"{self.backend_name} cannot receive from one group: receive(group_id=) "
                    "is supported on session-enabled Service Bus queues and the memory queue"
                )
            group = _check_id("group_id", group_id)
        messages = await self._receive(max_messages, wait, visibility, group)
        telemetry.note_received(messages)
        return messages

    @abc.abstractmethod
    async def _receive(
        self,
        max_messages: int,
        wait_time: float,
        visibility_timeout: float | None,
        group_id: str | None,
    ) -> list[Message]:
        """Hook: receive up to ``max_messages`` (see the module docstring)."""

    # ------------------------------------------------------- acting on a handle

    def _check_handle(self, handle: object) -> str:
        if not isinstance(handle, str) or not handle:
            raise ReceiptHandleError(
                f"receipt handle must be the non-empty str from Message.receipt_handle, "
                f"got {type(handle).__name__}"
            )
        return handle

    @operation
    async def delete(self, receipt_handle: str) -> None:
        """Acknowledge a message so it is never delivered again.

        Raises ReceiptHandleError for a handle that is stale, unknown, or from another
        backend instance (where the provider can tell).
        """
        await self._delete(self._check_handle(receipt_handle))

    @operation
    async def nack(self, receipt_handle: str) -> None:
        """Return a message for immediate redelivery (its ``receive_count`` grows)."""
        await self._nack(self._check_handle(receipt_handle))

    @operation
    async def extend_visibility(self, receipt_handle: str, seconds: float) -> None:
        """Keep a message invisible for ``seconds`` more (lock renewal on Service Bus)."""
        handle = self._check_handle(receipt_handle)
        await self._extend_visibility(
            handle, _check_positive_number("seconds", seconds, allow_zero=True)
        )

    @operation
    async def dead_letter(self, receipt_handle: str, reason: str = "unspecified") -> None:
        """Move a message to the dead-letter queue with ``reason``; body and attributes kept.

        If the move fails the message stays on this queue (it is never lost).
        FeatureNotSupportedError when the backend has no dead-letter queue configured.
        """
        handle = self._check_handle(receipt_handle)
        if not isinstance(reason, str):
            raise TypeError("reason must be a str")
        # Some services refuse empty or huge attribute values; keep the reason portable.
        reason = reason[:1024] or "unspecified"
        if not self.supports_dead_letter:
            raise FeatureNotSupportedError(
                f"{self.backend_name} has no dead-letter queue; configure one "
                "(e.g. dlq_url= for SQS)"
            )
        await self._dead_letter(handle, reason)

    @abc.abstractmethod
    async def _delete(self, handle: str) -> None:
        """Hook: ack."""

    @abc.abstractmethod
    async def _nack(self, handle: str) -> None:
        """Hook: make visible again now."""

    @abc.abstractmethod
    async def _extend_visibility(self, handle: str, seconds: float) -> None:
        """Hook: change visibility / renew lock."""

    async def _dead_letter(self, handle: str, reason: str) -> None:
        """Hook: move to the dead-letter queue (never losing the message)."""
        raise FeatureNotSupportedError(f"{self.backend_name} does not support dead_letter")

    # -------------------------------------------------------------------- misc

    @operation
    async def purge(self) -> None:
        """Delete every message in the queue."""
        await self._purge()

    @abc.abstractmethod
    async def _purge(self) -> None:
        """Hook: drop every message."""

    # ---------------------------------------------------------------- consume

    async def close(self) -> None:
        """Stop every ``consume()`` loop (in-flight handlers finish and are acked or
        nacked), then release every connection. Calling it again does nothing."""
        if self._closed:
            return
        if self._consumers:
            self._consume_stop.set()
            # From inside a handler, waiting for the consumers would wait for ourselves:
            # close now; unacked messages come back after their visibility timeout.
            if _CURRENT_HANDLER.get() is not self:
                await asyncio.gather(*(event.wait() for event in list(self._consumers)))
        await super().close()

    async def consume(
        self,
        handler: Handler,
        *,
        concurrency: int = 1,
        max_messages: int = 10,
        wait_time: float = 5,
        visibility_timeout: float | None = None,
        max_receives: int | None = None,
        limit: int | None = None,
    ) -> int:
        """Run ``handler`` on every message until cancelled, ``close()``d or ``limit`` done.

        Up to ``concurrency`` handlers run at once, spread across groups / sessions and
        never within one: the messages of one ``group_id`` are handled one after another
        in receive order (each acked before the next starts), different groups in
        parallel; messages without a group run independently. A handler that returns
        acks the message; one that raises nacks it — or dead-letters it once
        ``receive_count`` reaches ``max_receives``. With ``visibility_timeout`` the
        message's visibility is extended every half timeout from receipt until it is
        settled (also while it waits behind its group). On cancellation or ``close()``
        polling stops, in-flight handlers finish and are acked/nacked, and messages
        still waiting behind their group are nacked unhandled, before this returns
        (cancellation is then re-raised): nothing is lost. Returns the number of
        messages whose handler ran. Bad options raise InvalidArgumentError before any
        polling.
        """
        self._ensure_open()
        batch = min(_positive_int("max_messages", max_messages), self.max_receive_messages)
        options = _ConsumeOptions.checked(
            handler,
            concurrency=concurrency,
            max_messages=batch,
            wait_time=wait_time,
            visibility_timeout=visibility_timeout,
            max_receives=max_receives,
            limit=limit,
        )
        if max_receives is not None and not self.supports_dead_letter:
            raise FeatureNotSupportedError(
                f"max_receives needs a dead-letter queue, which {self.backend_name} lacks"
            )
        done = asyncio.Event()
        self._consumers.add(done)
        try:
            return await _ConsumeRun(self, options).run()
        finally:
            self._consumers.discard(done)
            done.set()


def _positive_int(name: str, value: object, *, optional: bool = False) -> int:
    """A consume() count option: a positive int (None allowed when ``optional``)."""
    if value is None and optional:
        return 0
    if not is_int(value) or value < 1:
        allowed = "None or a positive int" if optional else "a positive int"
        raise InvalidArgumentError(f"consume(): {name} must be {allowed}, got {value!r}")
    return value


@dataclass(frozen=True)
class _ConsumeOptions:
    """The checked options of one ``consume()`` call."""

    handler: Handler
    concurrency: int
    batch: int
    wait_time: float
    visibility_timeout: float | None
    max_receives: int | None
    limit: int | None

    @classmethod
    def checked(
        cls,
        handler: Handler,
        *,
        concurrency: object,
        max_messages: int,
        wait_time: object,
        visibility_timeout: object,
        max_receives: object,
        limit: object,
    ) -> _ConsumeOptions:
        if not callable(handler):
            raise TypeError("handler must be an async callable taking a Message")
        try:
            wait = _check_positive_number("wait_time", wait_time, allow_zero=True)
            visibility = (
                None
                if visibility_timeout is None
                else _check_positive_number(
                    "visibility_timeout", visibility_timeout, allow_zero=False
                )
            )
        except ValueError as exc:
            raise InvalidArgumentError(f"consume(): {exc}") from None
        return cls(
            handler=handler,
            concurrency=_positive_int("concurrency", concurrency),
            batch=max_messages,
            wait_time=wait,
            visibility_timeout=visibility,
            max_receives=_positive_int("max_receives", max_receives, optional=True) or None,
            limit=_positive_int("limit", limit, optional=True) or None,
        )


@dataclass
class _Received:
    """A message consume() holds: waiting behind its group or being handled."""

    message: Message
    #: Extends the message's visibility from receipt until it is settled.
    keeper: asyncio.Task[None] | None


class _ConsumeRun:
    """The state of one ``consume()`` call.

    Received messages are handled in *lanes*: a message without a group is a lane of
    its own; the messages of one group share a lane and run one after another, in
    receive order. At most ``concurrency`` lanes run at once, so concurrency spreads
    across groups and never breaks a group's order. Messages held (running or waiting
    behind their group) are bounded by ``concurrency * max_messages``.
    """

    def __init__(self, queue: Queue, options: _ConsumeOptions) -> None:
        self.queue = queue
        self.options = options
        self.stop = queue._consume_stop
        #: One task per running lane.
        self.lanes: set[asyncio.Task[None]] = set()
        #: group_id → messages waiting behind the group's running handler (present
        #: while the group's lane runs).
        self.waiting: dict[str, deque[_Received]] = {}
        self.received = 0
        self.handled = 0
        #: Received and not yet acked / nacked.
        self.held = 0
        #: Polling stopped before the limit: messages not yet started go back unhandled.
        self.stopping = False
        self.failures = 0

    async def run(self) -> int:
        cancelled = False
        reached_limit = False
        try:
            reached_limit = await self._poll_until_done()
        except asyncio.CancelledError:
            cancelled = True
        finally:
            self.stopping = not reached_limit
            # In-flight handlers always finish, even when we were cancelled.
            cancelled = await self._wait_for_lanes() or cancelled
        if cancelled:
            raise asyncio.CancelledError
        return self.handled

    # ---------------------------------------------------------------- polling

    async def _poll_until_done(self) -> bool:
        """Receive and dispatch; True once ``limit`` messages were received, False when
        stopped by ``close()`` or a closed backend."""
        limit = self.options.limit
        while not self.stop.is_set():
            if limit is not None and self.received >= limit:
                return True
            want = self._room()
            if want == 0:
                running = asyncio.wait(set(self.lanes), return_when=asyncio.FIRST_COMPLETED)
                if await _wait_or_stop(running, self.stop):
                    return False
                continue
            messages = await self._poll(want)
            if messages is None:
                return False
            self._dispatch(messages)
        return False

    def _room(self) -> int:
        """How many messages the next receive may ask for (0: wait for a lane first)."""
        opts = self.options
        want = min(
            opts.batch,
            opts.concurrency - len(self.lanes),
            opts.concurrency * opts.batch - self.held,
        )
        if opts.limit is not None:
            want = min(want, opts.limit - self.received)
        return max(want, 0)

    async def _poll(self, want: int) -> list[Message] | None:
        """One receive: its messages, [] after a transient failure (logged, backed
        off), None when stopped or the backend is closed. A bad option raises."""
        queue, opts = self.queue, self.options
        receiving = asyncio.ensure_future(
            queue.receive(want, opts.wait_time, opts.visibility_timeout)
        )
        if await _wait_or_stop(receiving, self.stop) and not receiving.done():
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
        if receiving.cancelled():
            return None
        error = receiving.exception()
        if error is None:
            self.failures = 0
            return receiving.result()
        if isinstance(error, BackendClosedError):
            return None
        if isinstance(error, ValueError | TypeError | NotImplementedError):
            raise error  # a bad option, not a transient failure: never spin
        self.failures += 1
        log.warning(
            "%s consume(): receive failed (%s); retrying",
            queue.backend_name,
            type(error).__name__,
        )
        backoff = asyncio.sleep(queue.consume_retry.delay(min(self.failures, 8)))
        return None if await _wait_or_stop(backoff, self.stop) else []

    def _dispatch(self, messages: Sequence[Message]) -> None:
        """Start a lane per message, or queue it behind its group's running lane."""
        for message in messages:
            self.received += 1
            self.held += 1
            item = _Received(message, self._start_keeper(message))
            group = message.group_id
            if group is not None:
                if group in self.waiting:
                    self.waiting[group].append(item)
                    continue
                self.waiting[group] = deque()
            lane = asyncio.ensure_future(self._lane(group, item))
            self.lanes.add(lane)
            lane.add_done_callback(self.lanes.discard)

    async def _wait_for_lanes(self) -> bool:
        """Wait until every lane is done; True if we were cancelled meanwhile."""
        cancelled = False
        while pending := {lane for lane in self.lanes if not lane.done()}:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError:
                cancelled = True
        return cancelled

    # ---------------------------------------------------------------- handling

    async def _lane(self, group: str | None, item: _Received) -> None:
        """Settle ``item``, then each message of its group received meanwhile, in order."""
        _CURRENT_HANDLER.set(self.queue)  # this task's own context only
        while True:
            try:
                await self._settle(item)
            finally:
                self.held -= 1
            backlog = self.waiting.get(group) if group is not None else None
            if not backlog:
                if group is not None:
                    del self.waiting[group]
                return
            item = backlog.popleft()

    async def _settle(self, item: _Received) -> None:
        """Run the handler and ack / nack / dead-letter; once stopping, nack unhandled."""
        if self.stopping or self.stop.is_set():
            await self._stop_keeper(item)
            await self._try(self.queue.nack, item.message, "give back an unhandled")
            return
        self.handled += 1
        message = item.message
        # The handler (and the ack) run in the producer's trace: its storage reads and
        # emails join the trace of the request that sent the message.
        with telemetry.process_scope(self.queue, message):
            await self._handle(item)

    async def _handle(self, item: _Received) -> None:
        message, max_receives = item.message, self.options.max_receives
        try:
            try:
                outcome = self.options.handler(message)
                if inspect.isawaitable(outcome):
                    await outcome
            finally:
                await self._stop_keeper(item)
        except Exception as exc:
            telemetry.note_process_error(exc)
            if max_receives is not None and message.receive_count >= max_receives:
                reason = f"{type(exc).__name__}: {exc}"[:1000]
                await self._try(
                    lambda handle: self.queue.dead_letter(handle, reason),
                    message,
                    "dead-letter a failed",
                )
            else:
                await self._try(self.queue.nack, message, "nack a failed")
            return
        await self._try(self.queue.delete, message, "ack a handled")

    async def _try(
        self, settle: Callable[[str], Awaitable[None]], message: Message, doing: str
    ) -> None:
        try:
            await settle(message.receipt_handle)
        except Exception:
            log.exception("%s: could not %s message", self.queue.backend_name, doing)

    def _start_keeper(self, message: Message) -> asyncio.Task[None] | None:
        seconds = self.options.visibility_timeout
        if seconds is None:
            return None
        return asyncio.ensure_future(self._keep_invisible(message.receipt_handle, seconds))

    @staticmethod
    async def _stop_keeper(item: _Received) -> None:
        if item.keeper is not None:
            item.keeper.cancel()
            await asyncio.gather(item.keeper, return_exceptions=True)

    async def _keep_invisible(self, handle: str, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds / 2)
            try:
                await self.queue.extend_visibility(handle, seconds)
            except Exception:
                log.warning("%s: could not extend visibility", self.queue.backend_name)


async def _wait_or_stop(work: Awaitable[object], stop: asyncio.Event) -> bool:
    """Await ``work`` unless ``stop`` fires first; True when stopped."""
    job = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({job, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        # Our caller was cancelled: a poll still running must not take messages
        # that no handler will ever see.
        job.cancel()
        job.add_done_callback(_outcome_retrieved)
        raise
    finally:
        stopper.cancel()
    if not job.done():
        if not isinstance(work, asyncio.Future):
            job.cancel()
            job.add_done_callback(_outcome_retrieved)
        return True
    return False


def _outcome_retrieved(task: asyncio.Future[Any]) -> None:
    # A receive abandoned on cancel may end in an error (redis-py drops its connection
    # when cancelled mid-command): nobody awaits it, and asyncio would log "Task
    # exception was never retrieved" at ERROR level as the task is collected.
    if not task.cancelled() and task.exception() is not None:
        log.debug("an abandoned receive ended with %s", type(task.exception()).__name__)


def __getattr__(name: str) -> Any:
    # The old name keeps third-party providers importing for one more release, with a
    # warning: it is part of the hook signatures a provider written outside this
    # repository implements, so removing it at once would break them on upgrade.
    if name == "OutboundMessage":
        warnings.warn(
            "cloudrift.messaging.base.OutboundMessage was renamed PreparedMessage; "
            "the old name will be removed in the next minor release",
            DeprecationWarning,
            stacklevel=2,
        )
        return PreparedMessage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEAD_LETTER_REASON",
    "Handler",
    "InFlightMap",
    "Message",
    "MessageSender",
    "OutgoingMessage",
    "PreparedMessage",
    "Queue",
    "SendFailure",
    "SendLimits",
    "encode_payload",
]
