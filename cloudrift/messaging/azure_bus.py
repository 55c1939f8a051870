"""Azure Service Bus queues (``azure-servicebus``, async API).

One :class:`ServiceBusClient` per backend, one sender link reused by every send, and
long-lived receivers: the plain receiver for ordinary queues, one session receiver per
session in use for session-enabled queues. Receivers stay open while any message they
delivered is unsettled, because a lock token can only be settled on the receiver link
that received it; ``close()`` closes all of them.

The seed's table for Service Bus: ``delay`` is a scheduled enqueue; ``visibility_timeout``
is ignored (the lock duration is queue configuration); ``nack`` abandons (the delivery
count goes up); dedup is by message id and works only when the queue was created with
duplicate detection; ``receive(group_id=)`` reads one session, and ``receive()`` on a
session queue drains one session at a time (``NEXT_AVAILABLE_SESSION``), moving on to
another session while one it delivered is unsettled (as an SQS FIFO group in flight).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn, TypedDict, Unpack

from cloudrift.core.auth import auth_method, select_auth
from cloudrift.core.azure import (
    SERVICE_BUS_CONNECTION_STRING,
    azure_identity,
    identity_auth_methods,
    identity_credential,
    parse_connection_string,
)
from cloudrift.core.exceptions import (
    ConfigurationError,
    FeatureNotSupportedError,
    MessageTooLargeError,
    MessagingConnectionError,
    MessagingError,
    MessagingPermissionError,
    QueueNotFoundError,
    ReceiptHandleError,
    TopicNotFoundError,
)
from cloudrift.core.factory import check_options
from cloudrift.core.lifecycle import LazyClient
from cloudrift.core.operation import BackendDescription
from cloudrift.core.secrets import Secret, redact, secret
from cloudrift.core.validation import check_int
from cloudrift.messaging.base import (
    DEAD_LETTER_REASON,
    InFlightMap,
    Message,
    PreparedMessage,
    Queue,
    SendFailure,
    SendLimits,
)
from cloudrift.messaging.topic import Topic

_IDENTITY = identity_auth_methods("fully_qualified_namespace")
_AUTH_METHODS = (
    auth_method("connection_string", ["connection_string"]),
    _IDENTITY.managed_identity,
    _IDENTITY.service_principal,
)


class ServiceBusAuthOptions(TypedDict, total=False):
    """How the queue, topic and subscription reach the namespace (``**auth:
    Unpack[...]``): exactly one of a connection string, managed / workload identity
    (``fully_qualified_namespace``, optionally ``managed_identity_client_id``) or a
    service principal (``fully_qualified_namespace``, ``tenant_id``, ``client_id``,
    ``client_secret``)."""

    connection_string: str | Secret | None
    fully_qualified_namespace: str | None
    managed_identity_client_id: str | None
    tenant_id: str | None
    client_id: str | None
    client_secret: str | Secret | None


#: The names of :class:`ServiceBusAuthOptions`.
_AUTH_OPTIONS = tuple(ServiceBusAuthOptions.__annotations__)

#: Application property that marks ``message_id`` as the caller's ``dedup_id``.
_DEDUP_PROPERTY = "cloudrift-dedup-id"
#: Service Bus standard tier's message size limit; premium namespaces allow more.
STANDARD_MAX_MESSAGE_BYTES = 256 * 1024
#: The SDK refuses ``max_wait_time=0``; a zero-wait receive polls this briefly.
_MIN_WAIT = 0.2


@dataclass
class _Held:
    """A received message kept so its lock token can be settled on its own receiver."""

    receiver: Any
    message: Any
    session_id: str | None


class AzureServiceBusQueue(Queue):
    """A Service Bus queue. See the module docstring for the semantics it maps."""

    provider: ClassVar[str] = "azure_bus"
    max_receive_messages = 100

    supports_visibility_timeout = False
    supports_dead_letter = True
    supports_delay = True
    supports_dedup = True

    def __init__(
        self,
        *,
        queue_name: str | None = None,
        session_enabled: bool = False,
        max_message_bytes: int = STANDARD_MAX_MESSAGE_BYTES,
        # Four attempts: the three retries this provider always made (retry_total=3).
        max_attempts: int = 4,
        retry_backoff_factor: float = 0.8,
        in_flight_limit: int = 10_000,
        **auth: Unpack[ServiceBusAuthOptions],
    ) -> None:
        super().__init__()
        where = f"the 'azure_bus' {self.category} provider"
        # An option none of the parameters names lands in **auth: refuse it here, naming
        # every option this class takes (a typo must not fall through silently).
        check_options(where, type(self), auth)
        connection_string = auth.get("connection_string")
        fully_qualified_namespace = auth.get("fully_qualified_namespace")
        if not isinstance(queue_name, str) or not queue_name.strip():
            raise ConfigurationError(f"{where} needs queue_name= (the Service Bus queue name)")
        if not isinstance(session_enabled, bool):
            raise ConfigurationError(f"{where}: session_enabled must be True or False")
        check_int(f"{where}: max_message_bytes", max_message_bytes, at_least=1024)
        check_int(f"{where}: max_attempts", max_attempts, at_least=1, hint="1 means no retry")
        check_int(f"{where}: in_flight_limit", in_flight_limit, at_least=1)
        self.auth_method = select_auth(
            where, {name: auth.get(name) for name in _AUTH_OPTIONS}, _AUTH_METHODS
        )
        self._identity = azure_identity(
            where,
            self.auth_method,
            tenant_id=auth.get("tenant_id"),
            client_id=auth.get("client_id"),
            client_secret=auth.get("client_secret"),
            managed_identity_client_id=auth.get("managed_identity_client_id"),
        )
        self.queue_name = queue_name
        self._connection_string = secret(connection_string)
        if self._connection_string is not None:
            parse_connection_string(where, self._connection_string, SERVICE_BUS_CONNECTION_STRING)
        self._namespace = fully_qualified_namespace or _namespace_of(self._connection_string)
        self.session_enabled = session_enabled
        self.supports_groups = session_enabled
        self.supports_group_receive = session_enabled
        self.requires_group_id = session_enabled
        self._max_message_bytes = max_message_bytes
        self._retry: dict[str, Any] = {
            "retry_total": max_attempts - 1,  # the SDK counts retries
            "retry_backoff_factor": retry_backoff_factor,
        }
        self.backend_name = f"azure_bus queue {queue_name!r}"
        # Handles carry this instance's id, so a handle from another backend is refused.
        self._instance = uuid.uuid4().hex[:12]
        self._held: InFlightMap[_Held] = InFlightMap(in_flight_limit)
        self._client: LazyClient[Any] = LazyClient(self._build_client)
        self._sender: LazyClient[Any] = LazyClient(self._build_sender)
        self._receiver: LazyClient[Any] = LazyClient(self._build_receiver)
        self._sessions: dict[str, Any] = {}
        self._current_session: str | None = None
        self._receive_lock: asyncio.Lock | None = None
        self._closing: set[asyncio.Future[Any]] = set()

    def __repr__(self) -> str:
        return (
            f"AzureServiceBusQueue(namespace={self._namespace!r}, queue={self.queue_name!r}, "
            f"session_enabled={self.session_enabled})"
        )

    def _describe(self) -> BackendDescription:
        return BackendDescription.at("servicebus", self.queue_name, self._namespace)

    async def _native_client(self) -> Any:
        """``await queue.native()``: the SDK's ``ServiceBusClient``."""
        return await self._client.get()

    # ------------------------------------------------------------------ clients

    def _secrets(self) -> tuple[Secret | None, ...]:
        identity = self._identity.secrets if self._identity else ()
        return (self._connection_string, *identity)

    async def _build_client(self, stack: AsyncExitStack) -> Any:
        from azure.servicebus.aio import ServiceBusClient

        if self.auth_method == "connection_string":
            assert self._connection_string is not None
            try:
                client = ServiceBusClient.from_connection_string(
                    self._connection_string.reveal(), **self._retry
                )
            except ValueError as exc:
                raise ConfigurationError(
                    "the 'azure_bus' connection_string is not a valid Service Bus connection "
                    "string (expected Endpoint=sb://...;SharedAccessKeyName=...;"
                    f"SharedAccessKey=...): {redact(str(exc), self._secrets())}"
                ) from None
        else:
            credential = await stack.enter_async_context(self._build_credential())
            client = ServiceBusClient(str(self._namespace), credential, **self._retry)
        return await stack.enter_async_context(client)

    def _build_credential(self) -> Any:
        assert self._identity is not None
        # The same identity rules as every Azure provider: managed or workload identity,
        # or an explicit service principal; never DefaultAzureCredential, whose CLI / IDE
        # / environment fallbacks would let a developer's login stand in for the
        # workload's own identity.
        return identity_credential(self._identity)

    async def _build_sender(self, stack: AsyncExitStack) -> Any:
        client = await self._client.get()
        sender = await _open_handler(client.get_queue_sender(self.queue_name))
        stack.push_async_exit(sender)
        return sender

    async def _build_receiver(self, stack: AsyncExitStack) -> Any:
        client = await self._client.get()
        receiver = await _open_handler(client.get_queue_receiver(self.queue_name, prefetch_count=0))
        stack.push_async_exit(receiver)
        return receiver

    async def _aclose(self) -> None:
        receivers = list(self._sessions.values())
        self._sessions.clear()
        self._current_session = None
        self._held = InFlightMap(self._held.max_size)
        # Links close concurrently (each SDK handler waits for its keep-alive loop to
        # notice), then the client; every close is attempted even when one fails.
        outcomes = await asyncio.gather(
            *(receiver.close() for receiver in receivers),
            *list(self._closing),
            self._receiver.aclose(),
            self._sender.aclose(),
            return_exceptions=True,
        )
        outcomes.append(*await asyncio.gather(self._client.aclose(), return_exceptions=True))
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            raise MessagingError(
                f"{self.backend_name}: error while closing: "
                f"{redact(str(errors[0]), self._secrets())}"
            ) from errors[0]

    # ------------------------------------------------------------------ errors

    def _translate(self, exc: BaseException, doing: str) -> NoReturn:
        """Raise the cloudrift error for an SDK error (ServiceBusError or azure-core's)."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
        )
        from azure.servicebus import exceptions as sb

        text = redact(f"{type(exc).__name__}: {exc}", self._secrets())
        where = f"{self.backend_name}: {doing} failed: {text}"
        if isinstance(exc, sb.MessageSizeExceededError):
            raise MessageTooLargeError(0, self._max_message_bytes, where) from exc
        if _is_missing_entity(exc):
            # The SDK's text for a refused token says nothing useful; the service's says
            # which entity it could not find.
            inner = getattr(exc, "inner_exception", None)
            said = getattr(inner, "status_description", None) or getattr(exc, "message", exc)
            detail = _text(said).split(" TrackingId:")[0].split(" Error condition:")[0]
            detail = detail.strip().rstrip(".")
            raise self._not_found(
                f"{self.backend_name}: {doing} failed: {redact(detail, self._secrets())}"
            ) from exc
        if isinstance(
            exc,
            sb.MessageLockLostError
            | sb.SessionLockLostError
            | sb.MessageAlreadySettled
            | sb.MessageNotFoundError,
        ):
            raise ReceiptHandleError(
                f"{where}. The lock expired or the message was already settled; receive it again"
            ) from exc
        if isinstance(
            exc,
            sb.ServiceBusAuthenticationError
            | sb.ServiceBusAuthorizationError
            | ClientAuthenticationError,
        ):
            raise MessagingPermissionError(
                f"{where}. Check the credentials and that they may use this queue"
            ) from exc
        if isinstance(
            exc,
            sb.ServiceBusConnectionError
            | sb.ServiceBusCommunicationError
            | sb.OperationTimeoutError
            | sb.ServiceBusServerBusyError
            | ServiceRequestError,
        ):
            raise MessagingConnectionError(where) from exc
        if isinstance(exc, HttpResponseError):
            status = getattr(exc, "status_code", None)
            if status in (401, 403):
                raise MessagingPermissionError(where) from exc
            if status == 404:
                raise self._not_found(where) from exc
            raise MessagingError(where) from exc
        raise MessagingError(where) from exc

    def _not_found(self, message: str) -> QueueNotFoundError:
        """The error for "the entity does not exist" (a topic's classes name the topic)."""
        return QueueNotFoundError(
            f"{message}. Check queue_name {self.queue_name!r} and that the queue exists in "
            "the namespace"
        )

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        from azure.core.exceptions import AzureError

        try:
            yield
        except MessagingError:
            raise
        except AzureError as exc:  # ServiceBusError and every azure-core error
            self._translate(exc, doing)
        except (OSError, ConnectionError) as exc:
            self._translate(exc, doing)

    # ----------------------------------------------------------------- sending

    async def _limits(self) -> SendLimits:
        return SendLimits(
            max_message_bytes=self._max_message_bytes,
            max_batch_count=4500,
            max_batch_bytes=self._max_message_bytes,
            max_delay=None,
        )

    def _to_sdk(self, msg: PreparedMessage) -> Any:
        from azure.servicebus import ServiceBusMessage

        properties: dict[str | bytes, Any] = {k: v for k, v in msg.wire_attributes.items()}
        if msg.dedup_id is not None:
            properties[_DEDUP_PROPERTY] = "1"
        return ServiceBusMessage(
            msg.body,
            message_id=msg.dedup_id or uuid.uuid4().hex,
            session_id=msg.group_id,
            content_type="application/json",
            application_properties=properties or None,
        )

    async def _send_one(self, msg: PreparedMessage) -> str:
        sdk_message = self._to_sdk(msg)
        with self._errors("send"):
            sender = await self._sender.get()
            if msg.delay > 0:
                await sender.schedule_messages(sdk_message, _enqueue_time(msg.delay))
            else:
                await sender.send_messages(sdk_message)
        return str(sdk_message.message_id)

    async def _send_entries(self, entries: Sequence[PreparedMessage]) -> list[str | SendFailure]:
        """Send with ``ServiceBusMessageBatch``: the SDK measures the real encoded size, so a
        batch is sent when the next message does not fit, and when the session changes (one
        batch carries one session). Delayed entries are scheduled one by one. After a
        connection failure or a missing entity nothing more is attempted and the rest are
        reported failed."""
        from azure.servicebus.exceptions import MessageSizeExceededError

        results: dict[int, str | SendFailure] = {}
        state: dict[str, Any] = {"gave_up": None, "batch": None, "group": None, "pending": []}

        def fail(indexes: Sequence[int], exc: MessagingError) -> None:
            missing = exc if isinstance(exc, QueueNotFoundError) else None
            if isinstance(exc, MessagingConnectionError) or missing:
                state["gave_up"] = str(exc)
            results.update({i: SendFailure(str(exc), missing=missing) for i in indexes})

        async def flush() -> None:
            batch, pending = state["batch"], state["pending"]
            state["batch"], state["pending"] = None, []
            if batch is None or not pending:
                return
            try:
                with self._errors("send_batch"):
                    sender = await self._sender.get()
                    await sender.send_messages(batch)
            except MessagingError as exc:
                fail([i for i, _ in pending], exc)
                return
            results.update({i: str(m.message_id) for i, m in pending})

        for position, msg in enumerate(entries):
            if state["gave_up"] is None and msg.delay > 0:
                try:
                    results[position] = await self._send_one(msg)
                except MessagingError as exc:
                    fail([position], exc)
                continue
            if state["batch"] is not None and msg.group_id != state["group"]:
                await flush()
            sdk_message = self._to_sdk(msg)
            while state["gave_up"] is None and position not in results:
                if state["batch"] is None:
                    try:
                        with self._errors("send_batch"):
                            sender = await self._sender.get()
                            state["batch"] = await sender.create_message_batch()
                    except MessagingError as exc:
                        fail([position], exc)
                        break
                    state["group"] = msg.group_id
                try:
                    state["batch"].add_message(sdk_message)
                except MessageSizeExceededError:
                    if not state["pending"]:  # it does not fit even alone
                        limit = state["batch"].max_size_in_bytes
                        state["batch"] = None
                        results[position] = SendFailure(
                            f"message is over the batch capacity of {limit} bytes"
                        )
                        break
                    await flush()
                    continue
                state["pending"].append((position, sdk_message))
                break
            queued = any(i == position for i, _ in state["pending"])
            if state["gave_up"] is not None and position not in results and not queued:
                results[position] = SendFailure(f"not attempted: {state['gave_up']}")
        await flush()
        return [results[i] for i in range(len(entries))]

    # --------------------------------------------------------------- receiving

    def _lock(self) -> asyncio.Lock:
        if self._receive_lock is None:
            self._receive_lock = asyncio.Lock()
        return self._receive_lock

    async def _receive(
        self,
        max_messages: int,
        wait_time: float,
        visibility_timeout: float | None,
        group_id: str | None,
    ) -> list[Message]:
        wait = max(wait_time, _MIN_WAIT)
        # One receive at a time per backend: an SDK receiver must not be read concurrently.
        async with self._lock():
            with self._errors("receive"):
                if not self.session_enabled:
                    receiver = await self._receiver.get()
                    received = await _take(receiver, max_messages, wait)
                    return [self._wrap(receiver, m, None) for m in received]
                return await self._receive_session(max_messages, wait, group_id)

    async def _receive_session(
        self, max_messages: int, wait: float, group_id: str | None
    ) -> list[Message]:
        """A session queue's receive: one named session, or one session at a time.

        Without ``group_id`` the current session is read again while it has messages,
        unless a message it delivered is still unsettled: then, like an SQS FIFO group
        with a message in flight, it delivers nothing more and the next available
        session is read instead (so ``consume()`` spreads across sessions).
        """
        if group_id is not None:
            return await self._receive_named_session(group_id, max_messages, wait)
        current = self._current_session
        readable = current in self._sessions and current not in self._busy_sessions()
        if current is not None and readable:
            received = await self._receive_current_session(current, max_messages)
            if received:
                return received
        self._current_session = None
        self._release_idle_sessions()
        return await self._receive_next_session(max_messages, wait)

    async def _receive_named_session(
        self, session_id: str, max_messages: int, wait: float
    ) -> list[Message]:
        """``receive(group_id=)``: read that session, locking it first if we do not hold
        it; [] when another receiver holds it. A held receiver whose session lock was
        lost is dropped and the session locked afresh, once."""
        from azure.servicebus.exceptions import SessionCannotBeLockedError, SessionLockLostError

        for _attempt in range(2):
            receiver = self._sessions.get(session_id)
            if receiver is None:
                receiver = await self._lock_session(session_id)
                if receiver is None:
                    return []
            try:
                received = await _take(receiver, max_messages, wait)
            except SessionCannotBeLockedError:
                # The refusal can arrive after the attach: someone else holds it.
                self._drop_session(session_id)
                return []
            except SessionLockLostError:
                self._drop_session(session_id)
                continue
            messages = [self._wrap(receiver, m, session_id) for m in received]
            self._release_idle_sessions()
            return messages
        return []

    async def _lock_session(self, session_id: str) -> Any | None:
        """Open a receiver on one named session; None when another receiver holds it."""
        from azure.servicebus.exceptions import SessionCannotBeLockedError

        client = await self._client.get()
        receiver = client.get_queue_receiver(
            self.queue_name, session_id=session_id, prefetch_count=0
        )
        try:
            await _open_handler(receiver)
        except SessionCannotBeLockedError:
            self._close_later(receiver)
            return None
        except BaseException:
            self._close_later(receiver)
            raise
        self._sessions[session_id] = receiver
        return receiver

    async def _receive_current_session(self, session_id: str, max_messages: int) -> list[Message]:
        """What the session we are draining has right now ([] once its lock is lost)."""
        from azure.servicebus.exceptions import SessionLockLostError

        receiver = self._sessions[session_id]
        try:
            received = await _take(receiver, max_messages, _MIN_WAIT)
        except SessionLockLostError:
            self._drop_session(session_id)
            return []
        return [self._wrap(receiver, m, session_id) for m in received]

    async def _receive_next_session(self, max_messages: int, wait: float) -> list[Message]:
        """Lock the next session that has messages (waiting up to ``wait``) and read it;
        it becomes the current session."""
        from azure.servicebus import NEXT_AVAILABLE_SESSION
        from azure.servicebus.exceptions import OperationTimeoutError

        client = await self._client.get()
        receiver = client.get_queue_receiver(
            self.queue_name,
            session_id=NEXT_AVAILABLE_SESSION,
            max_wait_time=wait,
            prefetch_count=0,
        )
        try:
            await _open_handler(receiver)
            session_id = str(receiver.session.session_id)
            received = await _take(receiver, max_messages, wait)
        except OperationTimeoutError:
            # No session had messages within wait_time: an empty receive, not an error.
            self._close_later(receiver)
            return []
        except BaseException:
            self._close_later(receiver)
            raise
        self._sessions[session_id] = receiver
        self._current_session = session_id
        return [self._wrap(receiver, m, session_id) for m in received]

    def _busy_sessions(self) -> set[str | None]:
        """Sessions with a delivered message not yet settled."""
        return {held.session_id for held in (self._held.get(h) for h in self._held) if held}

    def _forget_lost_session(self, held: _Held, exc: BaseException) -> None:
        """After a session-lock-lost, drop that session's receiver (it cannot settle)."""
        from azure.servicebus.exceptions import SessionLockLostError

        lost = isinstance(exc.__cause__, SessionLockLostError)
        if (
            lost
            and held.session_id is not None
            and self._sessions.get(held.session_id) is (held.receiver)
        ):
            self._drop_session(held.session_id)

    def _close_later(self, receiver: Any) -> None:
        """Close an SDK receiver in the background (its close waits for its keep-alive
        loop, up to a second); ``close()`` awaits whatever is still closing."""
        task = asyncio.ensure_future(receiver.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _drop_session(self, session_id: str) -> None:
        receiver = self._sessions.pop(session_id, None)
        if self._current_session == session_id:
            self._current_session = None
        for handle in self._held:
            held = self._held.get(handle)
            if held is not None and held.session_id == session_id:
                self._held.pop(handle)
        if receiver is not None:
            self._close_later(receiver)

    def _release_idle_sessions(self) -> None:
        """Close session receivers that hold no unsettled message (frees the session lock)."""
        busy = self._busy_sessions()
        for session_id in list(self._sessions):
            if session_id == self._current_session or session_id in busy:
                continue
            self._close_later(self._sessions.pop(session_id))

    def _wrap(self, receiver: Any, sdk_message: Any, session_id: str | None) -> Message:
        raw = _raw_body(sdk_message)
        handle = f"{self._instance}:{sdk_message.lock_token}"
        self._held.add(handle, _Held(receiver, sdk_message, session_id))
        props = {_text(k): _text(v) for k, v in (sdk_message.application_properties or {}).items()}
        dedup = str(sdk_message.message_id) if props.pop(_DEDUP_PROPERTY, None) else None
        if sdk_message.dead_letter_reason is not None:
            props[DEAD_LETTER_REASON] = str(sdk_message.dead_letter_reason)
        return Message.from_raw(
            raw,
            receipt_handle=handle,
            message_id=str(sdk_message.message_id),
            group_id=sdk_message.session_id,
            dedup_id=dedup,
            receive_count=(sdk_message.delivery_count or 0) + 1,
            attributes=props,
        )

    # -------------------------------------------------------- acting on handles

    def _held_for(self, handle: str) -> _Held:
        if not handle.startswith(f"{self._instance}:"):
            raise ReceiptHandleError(
                f"{self.backend_name}: this receipt handle was not issued by this backend "
                "instance; Service Bus lock tokens can only be settled by the receiver that "
                "received the message"
            )
        held = self._held.get(handle)
        if held is None:
            raise ReceiptHandleError(
                f"{self.backend_name}: unknown or already settled receipt handle; receive the "
                "message again"
            )
        return held

    async def _settle(self, handle: str, doing: str, **kwargs: Any) -> None:
        held = self._held_for(handle)
        try:
            with self._errors(doing):
                method = getattr(held.receiver, f"{doing}_message")
                await method(held.message, **kwargs)
        except ReceiptHandleError as exc:
            self._held.pop(handle)
            self._forget_lost_session(held, exc)
            raise
        except ValueError as exc:  # the SDK's "handler already shut down" / peeked message
            self._held.pop(handle)
            raise ReceiptHandleError(f"{self.backend_name}: cannot {doing}: {exc}") from exc
        self._held.pop(handle)

    async def _delete(self, handle: str) -> None:
        await self._settle(handle, "complete")

    async def _nack(self, handle: str) -> None:
        await self._settle(handle, "abandon")

    async def _dead_letter(self, handle: str, reason: str) -> None:
        await self._settle(handle, "dead_letter", reason=reason, error_description=reason)

    async def _extend_visibility(self, handle: str, seconds: float) -> None:
        """Renew the lock: Service Bus extends it by the queue's lock duration (the
        ``seconds`` asked for cannot be chosen); a session message renews its session."""
        held = self._held_for(handle)
        try:
            with self._errors("extend_visibility"):
                if held.session_id is not None:
                    await held.receiver.session.renew_lock()
                else:
                    await held.receiver.renew_message_lock(held.message)
        except ReceiptHandleError as exc:
            self._held.pop(handle)
            self._forget_lost_session(held, exc)
            raise

    # -------------------------------------------------------------------- misc

    async def _purge(self) -> None:
        from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceiveMode
        from azure.servicebus.exceptions import OperationTimeoutError

        async with self._lock():
            with self._errors("purge"):
                client = await self._client.get()
                while True:
                    kwargs: dict[str, Any] = {
                        "receive_mode": ServiceBusReceiveMode.RECEIVE_AND_DELETE,
                        "max_wait_time": _MIN_WAIT,
                    }
                    if self.session_enabled:
                        kwargs["session_id"] = NEXT_AVAILABLE_SESSION
                    receiver = client.get_queue_receiver(self.queue_name, **kwargs)
                    try:
                        async with await _open_handler(receiver):
                            drained = 0
                            while True:
                                got = await receiver.receive_messages(
                                    max_message_count=100, max_wait_time=_MIN_WAIT
                                )
                                if not got:
                                    break
                                drained += len(got)
                    except OperationTimeoutError:
                        return  # no session left with messages
                    if not self.session_enabled or drained == 0:
                        return

    async def _health(self) -> bool:
        # A read-only $management round trip: it proves the namespace answers, the
        # credentials work and the queue exists (an attach alone does not: a missing
        # entity is reported by a detach that may arrive after the attach).
        with self._errors("health_check"):
            if not self.session_enabled:
                receiver = await self._receiver.get()
                await receiver.peek_messages(max_message_count=1)
                return True
            # A session queue only serves session receivers: lock a fresh, empty session
            # and read its state.
            client = await self._client.get()
            probe = client.get_queue_receiver(
                self.queue_name, session_id=f"cloudrift-health-{uuid.uuid4().hex}"
            )
            async with await _open_handler(probe):
                await probe.session.get_state()
        return True


def _is_missing_entity(exc: BaseException) -> bool:
    """Whether Service Bus said the queue, topic or subscription does not exist.

    It says so in one of two ways: the token for a missing entity is refused at
    put-token with status 404 (the SDK raises ServiceBusAuthenticationError around a
    TokenAuthFailure carrying that status), or a link to it is detached with
    ``amqp:not-found`` (MessagingEntityNotFoundError).
    """
    from azure.servicebus import exceptions as sb

    if isinstance(exc, sb.MessagingEntityNotFoundError):
        return True
    inner = getattr(exc, "inner_exception", None)
    return isinstance(exc, sb.ServiceBusAuthenticationError) and (
        getattr(inner, "status_code", None) == 404
    )


async def _open_handler(handler: Any) -> Any:
    """Open an SDK sender or receiver; a missing entity fails on the first attempt.

    The SDK retries a refused token like a transient fault (``retry_total`` times, with
    backoff: ~15 s with the default four attempts) although a missing queue or topic
    will not appear by retrying. So the first attempt runs without the SDK's retries;
    a missing entity (or, for a next-available-session receiver, no session within
    the wait) is raised at once, anything else is retried with the attempts left.
    """
    from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

    # SDK internals (azure-servicebus 7.x): each handler reads its own Configuration's
    # retry_total when it retries; the not-found tests on the test broker fail if that
    # changes.
    config = handler._config
    retries = config.retry_total
    config.retry_total = 0
    try:
        await handler.__aenter__()
        return handler
    except ServiceBusError as exc:
        if retries <= 0 or _is_missing_entity(exc) or isinstance(exc, OperationTimeoutError):
            raise
        if not getattr(exc, "_retryable", True):
            raise
    finally:
        config.retry_total = retries
    config.retry_total = retries - 1
    try:
        await handler.__aenter__()
    finally:
        config.retry_total = retries
    return handler


async def _take(receiver: Any, max_messages: int, wait: float) -> list[Any]:
    """``receive_messages`` on a long-lived peek-lock receiver, leaving it no link credit.

    The SDK (7.x, ``prefetch_count=0``) grants the link credit for what a receive asks,
    and whatever that receive did not use stays granted when it returns (an empty
    receive leaves all of it). The broker then locks and pushes new messages to the idle
    link: their lock runs down before the next receive returns them (a shorter visibility
    than asked, or lock-lost on settle), and until the SDK releases them (its keep-alive
    reads the link every few seconds) no other receiver, ``purge()``'s included, sees
    them. So the credit is revoked (``flow`` with credit 0) after every receive; a message
    already on the wire when it is revoked is released by the SDK when it arrives.
    """
    try:
        return list(
            await receiver.receive_messages(max_message_count=max_messages, max_wait_time=wait)
        )
    finally:
        await _revoke_credit(receiver)


async def _revoke_credit(receiver: Any) -> None:
    # SDK internals (azure-servicebus 7.x, pure-python AMQP stack); the tests on the test
    # broker fail if they change. A link that is gone or broken holds no credit to revoke,
    # and the SDK rebuilds it on the next receive.
    link = getattr(getattr(receiver, "_handler", None), "_link", None)
    if link is None or getattr(link, "_is_closed", False):
        return
    if getattr(link, "current_link_credit", 0) <= 0:
        return
    try:
        await link.flow(link_credit=0)
    except Exception:  # see above: a broken link has no credit to revoke
        return


def _raw_body(sdk_message: Any) -> bytes:
    """The bytes of a received body, whatever AMQP body type a producer used.

    A data body is a single-use generator of sections (``bytes(message)`` never worked):
    join it. Foreign producers may send an AMQP value or sequence body instead (JMS text
    messages are a string value): strings become UTF-8, other values JSON, so such a
    message is still delivered instead of crashing ``receive()``.
    """
    from azure.servicebus.amqp import AmqpMessageBodyType

    body = sdk_message.body
    if sdk_message.body_type == AmqpMessageBodyType.DATA:
        return b"".join(bytes(section) for section in body)
    if sdk_message.body_type == AmqpMessageBodyType.SEQUENCE:
        body = [list(section) for section in body]
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    try:
        return json.dumps(_plain(body), default=_text, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError):  # never let an odd body crash receive()
        return _text(body).encode("utf-8")


def _plain(value: Any) -> Any:
    """An AMQP value as JSON-ready Python (the SDK decodes AMQP strings as bytes)."""
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, dict):
        return {_text(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _enqueue_time(delay: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=delay)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _namespace_of(connection_string: Secret | None) -> str | None:
    """The host named by a connection string's Endpoint= (no secret in it)."""
    if connection_string is None:
        return None
    for part in connection_string.reveal().split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "endpoint":
            return value.strip().removeprefix("sb://").rstrip("/") or None
    return None


# ------------------------------------------------------------------ topics


class _EntityClient:
    """The SDK client as the queue's code paths call it, pointed at a topic entity.

    Every path of :class:`AzureServiceBusQueue` (sender, plain and session receivers,
    purge, health, settlement) asks for ``get_queue_sender`` / ``get_queue_receiver``;
    this answers with the topic's sender and the subscription's receivers, so a
    subscription runs through exactly the same code as a queue.
    """

    def __init__(self, client: Any, topic_name: str, subscription_name: str | None) -> None:
        self.sdk = client
        self._topic = topic_name
        self._subscription = subscription_name

    def get_queue_sender(self, _entity: str, **kwargs: Any) -> Any:
        return self.sdk.get_topic_sender(self._topic, **kwargs)

    def get_queue_receiver(self, _entity: str, **kwargs: Any) -> Any:
        if self._subscription is None:
            raise FeatureNotSupportedError("a Service Bus topic cannot be received from")
        return self.sdk.get_subscription_receiver(self._topic, self._subscription, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sdk, name)


class _OnTopic(AzureServiceBusQueue):
    """The queue's code on a topic's entities: the topic's sender link (no
    ``subscription_name``) or a subscription's receivers; "not found" names the topic."""

    topic_name: str
    subscription_name: str | None

    async def _build_client(self, stack: AsyncExitStack) -> Any:
        client = await super()._build_client(stack)
        return _EntityClient(client, self.topic_name, self.subscription_name)

    def _check_hint(self) -> str:
        return f"Check topic_name {self.topic_name!r} and that the topic exists in the namespace"

    def _not_found(self, message: str) -> QueueNotFoundError:
        return TopicNotFoundError(self.topic_name, f"{message}. {self._check_hint()}")


class AzureServiceBusSubscription(_OnTopic):
    """A Service Bus topic subscription, consumed as a queue (``session_enabled`` as for
    queues). Sending to a subscription is not possible on Service Bus: publish to the
    topic."""

    category = "subscription"

    def __init__(
        self,
        *,
        topic_name: str,
        subscription_name: str,
        session_enabled: bool = False,
        max_message_bytes: int = STANDARD_MAX_MESSAGE_BYTES,
        # Four attempts: as the queue (three retries).
        max_attempts: int = 4,
        retry_backoff_factor: float = 0.8,
        in_flight_limit: int = 10_000,
        **auth: Unpack[ServiceBusAuthOptions],
    ) -> None:
        for name, value in (("topic_name", topic_name), ("subscription_name", subscription_name)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(f"the 'azure_bus' subscription needs {name}=")
        super().__init__(
            queue_name=f"{topic_name}/Subscriptions/{subscription_name}",
            session_enabled=session_enabled,
            max_message_bytes=max_message_bytes,
            max_attempts=max_attempts,
            retry_backoff_factor=retry_backoff_factor,
            in_flight_limit=in_flight_limit,
            **auth,
        )
        self.topic_name = topic_name
        self.subscription_name = subscription_name
        self.backend_name = f"azure_bus subscription {subscription_name!r} of topic {topic_name!r}"

    def __repr__(self) -> str:
        return (
            f"AzureServiceBusSubscription(namespace={self._namespace!r}, "
            f"topic={self.topic_name!r}, subscription={self.subscription_name!r}, "
            f"session_enabled={self.session_enabled})"
        )

    async def _native_client(self) -> Any:
        """``await subscription.native()``: the SDK's ``ServiceBusClient``."""
        entity = await self._client.get()
        return entity.sdk

    def _refuse_send(self) -> FeatureNotSupportedError:
        return FeatureNotSupportedError(
            f"{self.backend_name}: Service Bus cannot send to a subscription; publish to "
            "the topic instead"
        )

    async def _send_one(self, msg: PreparedMessage) -> str:
        raise self._refuse_send()

    async def _send_entries(self, entries: Sequence[PreparedMessage]) -> list[str | SendFailure]:
        raise self._refuse_send()

    def _check_hint(self) -> str:
        return (
            f"Check topic_name {self.topic_name!r} and subscription_name "
            f"{self.subscription_name!r}, and that both exist in the namespace"
        )


class _TopicSender(_OnTopic):
    """The queue's sending code (SDK batches, errors) on a topic's sender link."""

    def __init__(self, *, topic_name: str, **options: Any) -> None:
        super().__init__(queue_name=topic_name, **options)
        self.topic_name = topic_name
        self.subscription_name = None
        self.backend_name = f"azure_bus topic {topic_name!r}"


class AzureServiceBusTopic(Topic):
    """A Service Bus topic (``topic_name`` + the queue's auth options).

    ``session_enabled=True`` when its subscriptions require sessions: ``group_id`` (the
    session id) is then required, as on a session queue; without it ``group_id`` is
    refused. ``dedup_id`` works when the topic has duplicate detection. Filters are
    subscription rules (infrastructure).
    """

    provider: ClassVar[str] = "azure_bus"
    supports_dedup = True

    def __init__(
        self,
        *,
        topic_name: str,
        session_enabled: bool = False,
        max_message_bytes: int = STANDARD_MAX_MESSAGE_BYTES,
        # Four attempts: as the queue (three retries).
        max_attempts: int = 4,
        retry_backoff_factor: float = 0.8,
        **auth: Unpack[ServiceBusAuthOptions],
    ) -> None:
        super().__init__()
        check_options("the 'azure_bus' topic", type(self), auth)
        if not isinstance(topic_name, str) or not topic_name.strip():
            raise ConfigurationError("the 'azure_bus' topic needs topic_name=")
        if not isinstance(session_enabled, bool):
            raise ConfigurationError("the 'azure_bus' topic: session_enabled must be True or False")
        self.session_enabled = session_enabled
        self.supports_groups = session_enabled
        self.requires_group_id = session_enabled
        self._sender = _TopicSender(
            topic_name=topic_name,
            max_message_bytes=max_message_bytes,
            max_attempts=max_attempts,
            retry_backoff_factor=retry_backoff_factor,
            **auth,
        )
        self.topic_name = topic_name
        self.backend_name = self._sender.backend_name

    def __repr__(self) -> str:
        return (
            f"AzureServiceBusTopic(namespace={self._sender._namespace!r}, "
            f"topic={self.topic_name!r})"
        )

    def _describe(self) -> BackendDescription:
        return self._sender.describe()

    async def _native_client(self) -> Any:
        """``await topic.native()``: the SDK's ``ServiceBusClient``."""
        entity = await self._sender._client.get()
        return entity.sdk

    async def _aclose(self) -> None:
        await self._sender.close()

    async def _limits(self) -> SendLimits:
        return await self._sender._limits()

    async def _send_one(self, msg: PreparedMessage) -> str:
        return await self._sender._send_one(msg)

    async def _send_entries(self, entries: Sequence[PreparedMessage]) -> list[str | SendFailure]:
        return await self._sender._send_entries(entries)

    async def _health(self) -> bool:
        # A topic has no peek: opening its sender link proves the namespace answers and
        # the credentials work (a missing topic may be reported only on the first send).
        with self._sender._errors("health_check"):
            await self._sender._sender.get()
        return True


__all__ = [
    "STANDARD_MAX_MESSAGE_BYTES",
    "AzureServiceBusQueue",
    "AzureServiceBusSubscription",
    "AzureServiceBusTopic",
    "ServiceBusAuthOptions",
]
