"""A small AMQP 1.0 TEST BROKER that the real ``azure-servicebus`` SDK talks to over the wire.

Test code only. No Service Bus emulator runs without Docker, so this broker speaks the
part of Service Bus's AMQP dialect that the SDK (``azure.servicebus.aio``, pure-python
``_pyamqp`` stack) needs, on ``python-qpid-proton``:

* the ``$cbs`` ``put-token`` handshake (reply ``status-code: 202`` on the link whose
  source is ``$cbs``, correlated by the request's message id); the SAS signature is
  verified against the configured key, so a wrong key is refused with 401, and, as on
  Service Bus, a token for an entity that does not exist is refused with 404;
* peek-lock delivery: the delivery tag is the lock token (a UUID, little-endian bytes),
  annotations ``x-opt-sequence-number``, ``x-opt-enqueued-time``, ``x-opt-locked-until``,
  header ``delivery-count``; locks expire after the queue's lock duration;
* receiver dispositions, each echoed and settled (the SDK waits for the echo):
  ``accepted`` = complete, ``modified(delivery_failed)`` = abandon (delivery count + 1),
  ``rejected`` with ``DeadLetterReason`` = move to ``<queue>/$DeadLetterQueue``,
  ``released`` = back to the queue unchanged; a settlement on a lost lock is answered
  ``rejected`` with ``com.microsoft:message-lock-lost``;
* batches: one transfer whose Data sections are themselves encoded messages
  (message format 0x80013700; proton does not expose the format, so a body made only of
  Data sections that each decode as an AMQP message is treated as a batch);
* ``$management`` (``statusCode``): renew-lock, schedule-message,
  cancel-scheduled-message, peek-message, renew-session-lock, update-disposition;
* sessions: a receiver attach whose source carries ``com.microsoft:session-filter``
  locks one session (a named one, or the next available when the filter is null); the
  attach reply names the session. With nothing available the attach is answered after
  the link's ``com.microsoft:timeout`` and detached with ``com.microsoft:timeout``;
* duplicate detection by message id, for queues created with it;
* topics (``add_topic``): a transfer to ``<topic>`` is stored on every subscription
  ``<topic>/Subscriptions/<name>`` (each a queue of its own, with its dead-letter
  sub-queue ``<topic>/Subscriptions/<name>/$DeadLetterQueue``); a subscription refusing
  the message (no session id where it needs one) refuses it for all.

It runs a proton ``Container`` in a daemon thread; every state change happens under one
lock, and calls from the test thread (``reset``, inspection) take the same lock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from proton import (
    Array,
    Condition,
    Data,
    Delivery,
    Described,
    Disposition,
    Endpoint,
    Handler,
    Link,
    Message,
    Terminus,
    symbol,
    timestamp,
    ulong,
)
from proton.reactor import ApplicationEvent, Container, EventInjector

SESSION_FILTER = symbol("com.microsoft:session-filter")
SESSION_LOCKED_UNTIL = symbol("com.microsoft:locked-until-utc")
OPERATION_TIMEOUT = symbol("com.microsoft:timeout")
LOCK_LOST = "com.microsoft:message-lock-lost"
DEAD_LETTER_SUFFIX = "/$deadletterqueue"
MAX_MESSAGE_SIZE = 256 * 1024
TICK = 0.01
# .NET DateTime ticks at the Unix epoch (the session lock expiry is sent in ticks).
_DOTNET_EPOCH_TICKS = 621355968000000000
_DATA_SECTION = 0x75
_MESSAGE_SECTIONS = range(0x70, 0x79)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _entity_path(address: str | None) -> str:
    """``amqps://host/queue/$management`` and ``queue/$management`` → ``queue/$management``."""
    if not address:
        return ""
    if "://" in address:
        address = urllib.parse.urlsplit(address).path
    return address.strip("/")


def _sections(raw: bytes) -> Iterator[tuple[int, Any]]:
    """Split an encoded AMQP message into (section descriptor code, value) pairs."""
    view = memoryview(raw)
    while len(view):
        data = Data()
        used = data.decode(bytes(view))
        if used <= 0:
            return
        data.rewind()
        data.next()
        value = data.get_object()
        if not isinstance(value, Described):
            return
        yield int(value.descriptor), value.value
        view = view[used:]


def _split_batch(raw: bytes) -> list[bytes]:
    """The inner messages of a batch transfer, or ``[raw]`` for an ordinary message."""
    inner: list[bytes] = []
    for code, value in _sections(raw):
        if code != _DATA_SECTION:
            continue
        payload = bytes(value)
        # An inner encoded message starts with a described section: 0x00 0x53 0x70..0x78.
        if len(payload) < 3 or payload[0] != 0 or payload[1] != 0x53:
            return [raw]
        if payload[2] not in _MESSAGE_SECTIONS:
            return [raw]
        inner.append(payload)
    return inner or [raw]


def _with_header(encoded: bytes, delivery_count: int) -> bytes:
    """``encoded`` with a header that always carries ``delivery-count``, as Service Bus
    sends it (proton leaves a zero count out, which the SDK would read as None)."""
    data = Data()
    used = data.decode(encoded)
    data.rewind()
    data.next()
    first = data.get_object()
    if isinstance(first, Described) and int(first.descriptor) == 0x70:
        encoded = encoded[used:]
    header = Data()
    header.put_described()
    header.enter()
    header.put_ulong(0x70)
    header.put_list()
    header.enter()
    header.put_null()  # durable
    header.put_null()  # priority
    header.put_null()  # ttl
    header.put_bool(delivery_count == 0)  # first-acquirer
    header.put_uint(delivery_count)
    header.exit()
    header.exit()
    return bytes(header.encode()) + encoded


@dataclass
class StoredMessage:
    """One message held by the broker."""

    sequence_number: int
    raw: bytes
    message_id: str | None
    session_id: str | None
    enqueued_ms: int
    available_ms: int
    delivery_count: int = 0
    lock_token: uuid.UUID | None = None
    locked_until_ms: int = 0
    link: Link | None = None
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None

    @property
    def locked(self) -> bool:
        return self.lock_token is not None

    def decoded(self) -> Message:
        message = Message()
        message.decode(self.raw)
        return message


@dataclass
class Entity:
    """A queue (or its dead-letter sub-queue)."""

    name: str
    requires_session: bool = False
    lock_duration: float = 30.0
    duplicate_detection: bool = False
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)
    # session id → the link holding its session lock
    session_locks: dict[str, Link] = field(default_factory=dict)
    # session id → when its session lock expires (ms)
    session_lock_until: dict[str, int] = field(default_factory=dict)


@dataclass
class _PendingAttach:
    link: Link
    entity: Entity
    deadline_ms: int


class AmqpTestBroker(Handler):  # type: ignore[misc]
    """The test broker. Build it, ``add_queue(...)``, ``start()``, and ``stop()`` it after."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int,
        key_name: str = "k",
        key: str = "v",
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.key_name = key_name
        self.key = key
        self.entities: dict[str, Entity] = {}
        #: topic name (lower case) → the entity keys of its subscriptions
        self.topics: dict[str, list[str]] = {}
        #: topic name (lower case) → message ids seen, for topics with duplicate detection
        self.topic_seen_ids: dict[str, set[str]] = {}
        self.lock = threading.RLock()
        self.started_in: float | None = None
        self._sequence = 0
        self._pending_attaches: list[_PendingAttach] = []
        self._deliveries: dict[tuple[int, bytes], StoredMessage] = {}
        self._link_entity: dict[int, Entity] = {}
        self._link_session: dict[int, str] = {}
        self._sender_links: dict[int, Link] = {}
        self._next_link_id = 0
        self._container: Container | None = None
        self._thread: threading.Thread | None = None
        self._injector = EventInjector()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._acceptor: Any = None
        self.cbs_tokens_accepted = 0
        #: put-token requests refused because their entity does not exist
        self.cbs_tokens_not_found = 0
        self.management_ops: list[str] = []
        self.transfers_received = 0
        self.sender_links_opened = 0
        self.receiver_links_opened = 0

    # ------------------------------------------------------------------ configuration

    def add_queue(
        self,
        name: str,
        *,
        requires_session: bool = False,
        lock_duration: float = 30.0,
        duplicate_detection: bool = False,
    ) -> None:
        """Create a queue (and its dead-letter sub-queue)."""
        with self.lock:
            key = name.lower()
            self.entities[key] = Entity(name, requires_session, lock_duration, duplicate_detection)
            self.entities[key + DEAD_LETTER_SUFFIX] = Entity(
                name + "/$DeadLetterQueue", False, lock_duration
            )

    def add_topic(
        self,
        name: str,
        subscriptions: list[str],
        *,
        requires_session: bool = False,
        lock_duration: float = 30.0,
        duplicate_detection: bool = False,
    ) -> None:
        """Create a topic and its subscriptions (each a queue with a dead-letter queue);
        duplicate detection, as on Service Bus, is the topic's."""
        with self.lock:
            self.topics[name.lower()] = []
            if duplicate_detection:
                self.topic_seen_ids[name.lower()] = set()
            for subscription in subscriptions:
                self.add_subscription(
                    name,
                    subscription,
                    requires_session=requires_session,
                    lock_duration=lock_duration,
                )

    def add_subscription(
        self,
        topic: str,
        name: str,
        *,
        requires_session: bool = False,
        lock_duration: float = 30.0,
    ) -> None:
        """Subscribe ``name`` to ``topic``: it receives what is published from now on."""
        with self.lock:
            path = f"{topic}/Subscriptions/{name}"
            self.add_queue(path, requires_session=requires_session, lock_duration=lock_duration)
            self.topics[topic.lower()].append(path.lower())

    def reset(self) -> None:
        """Drop every message, lock and session lock, keeping the queues."""
        with self.lock:
            for ids in self.topic_seen_ids.values():
                ids.clear()
            for entity in self.entities.values():
                entity.messages.clear()
                entity.seen_ids.clear()
                entity.session_locks.clear()
                entity.session_lock_until.clear()
            self._deliveries.clear()
            self._pending_attaches.clear()

    def delivering_links(self) -> int:
        """How many receiver links (links the broker delivers on) are attached now."""
        with self.lock:
            return len(self._sender_links)

    def messages(self, queue: str) -> list[StoredMessage]:
        """A snapshot of the messages a queue (or ``q/$DeadLetterQueue``) holds, in order."""
        with self.lock:
            entity = self.entities[queue.lower()]
            return [entity.messages[s] for s in sorted(entity.messages)]

    def set_lock_duration(self, queue: str, seconds: float) -> None:
        """Change a queue's lock duration (real Service Bus: queue-level configuration)."""
        with self.lock:
            self.entities[queue.lower()].lock_duration = seconds

    # ------------------------------------------------------------------------ running

    def start(self, timeout: float = 10.0) -> None:
        """Start the container thread and wait until it listens."""
        began = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="amqp-test-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the AMQP test broker did not start listening in time")
        if self._startup_error is not None:
            raise RuntimeError(f"the AMQP test broker failed: {self._startup_error!r}")
        self.started_in = time.monotonic() - began

    def _run(self) -> None:
        try:
            container = Container(self)
            container.container_id = "cloudrift-amqp-test-broker"
            self._container = container
            container.selectable(self._injector)
            container.run()
        except BaseException as exc:  # surfaced by start() and check()
            self._startup_error = exc
            self._ready.set()

    def check(self) -> None:
        """Raise if the broker thread died (a broker bug must fail the test, not hang it)."""
        if self._startup_error is not None:
            raise RuntimeError(f"the AMQP test broker crashed: {self._startup_error!r}") from (
                self._startup_error
            )
        if self._thread is not None and not self._thread.is_alive():
            raise RuntimeError("the AMQP test broker thread is no longer running")

    def stop(self) -> None:
        """Close the listener and stop the container thread."""
        if self._thread is None:
            return
        self._injector.trigger(ApplicationEvent("broker_stop"))
        self._thread.join(timeout=10)
        self._thread = None

    def on_reactor_init(self, event: Any) -> None:
        try:
            self._acceptor = event.container.listen(f"{self.host}:{self.port}")
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            event.container.stop()
            return
        event.container.schedule(TICK, self)
        self._ready.set()

    def on_broker_stop(self, event: Any) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
        event.container.stop()

    def on_timer_task(self, event: Any) -> None:
        """Every 50 ms: expire locks, release scheduled messages, answer waiting attaches."""
        with self.lock:
            now = _now_ms()
            for entity in self.entities.values():
                if entity.requires_session:
                    # In a session the session lock governs its messages' locks.
                    self._expire_session_locks(entity, now)
                    continue
                for stored in entity.messages.values():
                    if stored.locked and stored.locked_until_ms <= now:
                        self._unlock(stored, count_delivery=True)
            self._serve_pending_attaches(now)
            self._pump_all()
        event.container.schedule(TICK, self)

    # ------------------------------------------------------------------ endpoint opens

    def on_connection_remote_open(self, event: Any) -> None:
        conn = event.connection
        if conn.state & Endpoint.LOCAL_UNINIT:
            conn.open()

    def on_session_remote_open(self, event: Any) -> None:
        ssn = event.session
        if ssn.state & Endpoint.LOCAL_UNINIT:
            ssn.incoming_capacity = 10 * 1024 * 1024
            ssn.open()

    def on_link_remote_open(self, event: Any) -> None:
        with self.lock:
            self._on_link_remote_open(event.link)

    def _on_link_remote_open(self, link: Link) -> None:
        self._next_link_id += 1
        link.broker_id = self._next_link_id
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        # Service Bus standard tier: 256 KiB per message (the SDK sizes batches by it).
        link.max_message_size = MAX_MESSAGE_SIZE
        if link.is_receiver:  # the client sends on it
            self.receiver_links_opened += 1
            path = _entity_path(link.remote_target.address)
            known = path.lower() in self.entities or path.lower() in self.topics
            if not self._is_node(path) and not known:
                self._refuse(
                    link, "amqp:not-found", f"The messaging entity '{path}' could not be found."
                )
                return
            link.open()
            link.flow(1000)
            return
        # A sender: the client receives from it.
        self.sender_links_opened += 1
        path = _entity_path(link.remote_source.address)
        if self._is_node(path):
            link.open()
            return
        entity = self.entities.get(path.lower())
        if entity is None:
            self._refuse(
                link, "amqp:not-found", f"The messaging entity '{path}' could not be found."
            )
            return
        self._link_entity[_lid(link)] = entity
        self._sender_links[_lid(link)] = link
        filters = _filter_map(link.remote_source)
        if SESSION_FILTER not in filters:
            if entity.requires_session:
                self._refuse(
                    link,
                    "amqp:not-allowed",
                    "It is not possible for an entity that requires sessions to create a "
                    "non-sessionful message receiver.",
                )
                return
            link.open()
            return
        if not entity.requires_session:
            self._refuse(
                link,
                "amqp:not-allowed",
                "It is not possible for an entity that does not require sessions to create "
                "a sessionful message receiver.",
            )
            return
        wanted = filters[SESSION_FILTER]
        if wanted is not None:
            session_id = str(wanted)
            holder = entity.session_locks.get(session_id)
            if holder is not None and _lid(holder) != _lid(link):
                self._refuse(
                    link,
                    "com.microsoft:session-cannot-be-locked",
                    f"The requested session '{session_id}' cannot be accepted. It may be "
                    "locked by another receiver.",
                )
                return
            self._grant_session(link, entity, session_id)
            return
        properties = link.remote_properties or {}
        timeout_ms = int(properties.get(OPERATION_TIMEOUT, 60_000))
        pending = _PendingAttach(link, entity, _now_ms() + timeout_ms)
        if not self._try_next_session(pending):
            self._pending_attaches.append(pending)

    def _is_node(self, path: str) -> bool:
        return path == "$cbs" or path.lower().endswith("/$management")

    def _refuse(self, link: Link, condition: str, description: str) -> None:
        # An (empty) properties map: the SDK's session attach callback reads it.
        link.properties = {}
        link.open()
        link.condition = Condition(condition, description)
        link.close()

    def _expire_session_locks(self, entity: Entity, now: int) -> None:
        """An expired session lock detaches its receiver with session-lock-lost; the
        session's locked messages become available again, counted as delivered."""
        for session_id, until in list(entity.session_lock_until.items()):
            if until > now:
                continue
            link = entity.session_locks.get(session_id)
            del entity.session_lock_until[session_id]
            if link is None:
                continue
            self._forget_link(link)
            if link.state & Endpoint.LOCAL_ACTIVE:
                link.condition = Condition(
                    "com.microsoft:session-lock-lost",
                    "The session lock has expired on the MessageSession. Accept a new "
                    "MessageSession.",
                )
                link.close()

    def _grant_session(self, link: Link, entity: Entity, session_id: str) -> None:
        entity.session_locks[session_id] = link
        entity.session_lock_until[session_id] = _now_ms() + int(entity.lock_duration * 1000)
        self._link_session[_lid(link)] = session_id
        flt = link.source.filter
        flt.clear()
        flt.put_map()
        flt.enter()
        flt.put_symbol(SESSION_FILTER)
        flt.put_string(session_id)
        flt.exit()
        expiry_ms = _now_ms() + int(entity.lock_duration * 1000)
        link.properties = {SESSION_LOCKED_UNTIL: _DOTNET_EPOCH_TICKS + expiry_ms * 10_000}
        link.open()

    def _try_next_session(self, pending: _PendingAttach) -> bool:
        entity = pending.entity
        now = _now_ms()
        for seq in sorted(entity.messages):
            stored = entity.messages[seq]
            sid = stored.session_id
            if sid is None or stored.locked or stored.available_ms > now:
                continue
            if sid in entity.session_locks:
                continue
            self._grant_session(pending.link, entity, sid)
            return True
        return False

    def _serve_pending_attaches(self, now: int) -> None:
        still: list[_PendingAttach] = []
        for pending in self._pending_attaches:
            if pending.link.state & Endpoint.REMOTE_CLOSED:
                continue
            if self._try_next_session(pending):
                continue
            if pending.deadline_ms <= now:
                # Answer with a source that names no session (the SDK then skips its
                # session bookkeeping) and detach with the timeout condition.
                pending.link.source.address = _entity_path(pending.link.remote_source.address)
                self._refuse(
                    pending.link,
                    "com.microsoft:timeout",
                    "The operation did not complete within the allotted timeout: no session "
                    "was available.",
                )
                continue
            still.append(pending)
        self._pending_attaches = still

    # ------------------------------------------------------------------ endpoint closes

    def on_link_remote_close(self, event: Any) -> None:
        with self.lock:
            link = event.link
            self._forget_link(link)
            if link.state & Endpoint.LOCAL_ACTIVE:
                link.close()

    def on_link_remote_detach(self, event: Any) -> None:
        self.on_link_remote_close(event)

    def on_session_remote_close(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_ACTIVE:
            event.session.close()

    def on_connection_remote_close(self, event: Any) -> None:
        with self.lock:
            link = event.connection.link_head(0)
            while link is not None:
                self._forget_link(link)
                link = link.next(0)
        if event.connection.state & Endpoint.LOCAL_ACTIVE:
            event.connection.close()

    def on_transport_closed(self, event: Any) -> None:
        conn = event.connection
        if conn is None:
            return
        with self.lock:
            link = conn.link_head(0)
            while link is not None:
                self._forget_link(link)
                link = link.next(0)

    def _forget_link(self, link: Link) -> None:
        self._sender_links.pop(_lid(link), None)
        entity = self._link_entity.pop(_lid(link), None)
        session_id = self._link_session.pop(_lid(link), None)
        if entity is None:
            return
        for stored in entity.messages.values():
            if _lid(stored.link) == _lid(link):
                if session_id is not None:
                    # Closing a session receiver ends the session lock: its messages
                    # become available again, counted as delivered.
                    self._unlock(stored, count_delivery=True)
                else:
                    # A closed peek-lock link keeps its locks until they expire (as
                    # Service Bus does); the lock token can no longer be settled.
                    stored.link = None
        if session_id is not None and _lid(entity.session_locks.get(session_id)) == _lid(link):
            del entity.session_locks[session_id]
            entity.session_lock_until.pop(session_id, None)
        for key in [k for k in self._deliveries if k[0] == _lid(link)]:
            self._deliveries.pop(key, None)
        self._pump_all()

    # ---------------------------------------------------------------------- delivering

    def on_link_flow(self, event: Any) -> None:
        with self.lock:
            link = event.link
            if link.is_sender:
                self._pump(link)
                if link.drain_mode:
                    link.drained()

    def _pump_all(self) -> None:
        for link in list(self._sender_links.values()):
            self._pump(link)

    def _pump(self, link: Link) -> None:
        entity = self._link_entity.get(_lid(link))
        if entity is None or not link.state & Endpoint.LOCAL_ACTIVE:
            return
        if link.state & Endpoint.REMOTE_CLOSED:
            return
        session_id = self._link_session.get(_lid(link))
        now = _now_ms()
        while link.credit > 0:
            stored = self._next_available(entity, session_id, now)
            if stored is None:
                return
            self._deliver(link, entity, stored, now)

    def _next_available(
        self, entity: Entity, session_id: str | None, now: int
    ) -> StoredMessage | None:
        for seq in sorted(entity.messages):
            stored = entity.messages[seq]
            if stored.locked or stored.available_ms > now:
                continue
            if entity.requires_session and stored.session_id != session_id:
                continue
            return stored
        return None

    def _deliver(self, link: Link, entity: Entity, stored: StoredMessage, now: int) -> None:
        token = uuid.uuid4()
        stored.lock_token = token
        stored.locked_until_ms = now + int(entity.lock_duration * 1000)
        stored.link = link
        message = stored.decoded()
        annotations = dict(message.annotations or {})
        annotations[symbol("x-opt-sequence-number")] = stored.sequence_number
        annotations[symbol("x-opt-enqueued-time")] = timestamp(stored.enqueued_ms)
        annotations[symbol("x-opt-locked-until")] = timestamp(stored.locked_until_ms)
        if stored.dead_letter_reason is not None:
            properties = dict(message.properties or {})
            properties["DeadLetterReason"] = stored.dead_letter_reason
            properties["DeadLetterErrorDescription"] = stored.dead_letter_description or ""
            message.properties = properties
        message.annotations = annotations
        tag = token.bytes_le
        delivery = link.delivery(tag)
        # proton reads tags back as UTF-8 text, which a binary lock token is not: keep
        # the token on the delivery itself.
        delivery.lock_token = token
        link.send(_with_header(message.encode(), stored.delivery_count))
        link.advance()
        if link.snd_settle_mode == Link.SND_SETTLED:
            # receive-and-delete: the message is gone once sent.
            delivery.settle()
            entity.messages.pop(stored.sequence_number, None)
            return
        self._deliveries[(_lid(link), token.bytes_le)] = stored

    def _unlock(self, stored: StoredMessage, *, count_delivery: bool) -> None:
        stored.lock_token = None
        stored.locked_until_ms = 0
        stored.link = None
        if count_delivery:
            stored.delivery_count += 1

    # ---------------------------------------------------------------------- deliveries

    def on_delivery(self, event: Any) -> None:
        with self.lock:
            delivery = event.delivery
            link = event.link
            if link.is_receiver:
                if delivery.readable and not delivery.partial:
                    self._on_incoming(link, delivery)
            elif delivery.updated:
                self._on_disposition(link, delivery)

    def _on_disposition(self, link: Link, delivery: Delivery) -> None:
        token: uuid.UUID | None = getattr(delivery, "lock_token", None)
        key = (_lid(link), token.bytes_le if token is not None else b"")
        stored = self._deliveries.pop(key, None)
        entity = self._link_entity.get(_lid(link))
        state = delivery.remote_state
        valid = (
            stored is not None
            and entity is not None
            and _lid(stored.link) == _lid(link)
            and stored.lock_token is not None
            and stored.lock_token == token
        )
        if not valid or stored is None or entity is None:
            delivery.local.condition = Condition(
                LOCK_LOST,
                "The lock supplied is invalid. Either the lock expired, or the message has "
                "already been removed from the queue.",
            )
            delivery.update(Disposition.REJECTED)
            delivery.settle()
            return
        if state == Disposition.ACCEPTED:
            entity.messages.pop(stored.sequence_number, None)
            delivery.update(Disposition.ACCEPTED)
        elif state == Disposition.MODIFIED:
            remote = delivery.remote
            self._unlock(stored, count_delivery=bool(remote.failed))
            delivery.local.failed = remote.failed
            delivery.local.undeliverable = remote.undeliverable
            delivery.update(Disposition.MODIFIED)
        elif state == Disposition.REJECTED:
            condition = delivery.remote.condition
            info = dict(condition.info or {}) if condition is not None else {}
            reason = info.get("DeadLetterReason")
            description = info.get("DeadLetterErrorDescription")
            self._dead_letter(entity, stored, reason, description)
            # The echo of an applied dead-letter is a bare `rejected`; one carrying an
            # error would tell the SDK the settlement failed.
            delivery.update(Disposition.REJECTED)
        elif state == Disposition.RELEASED:
            self._unlock(stored, count_delivery=False)
            delivery.update(Disposition.RELEASED)
        else:
            self._deliveries[key] = stored
            return
        delivery.settle()
        self._pump_all()

    def _dead_letter(
        self, entity: Entity, stored: StoredMessage, reason: Any, description: Any
    ) -> None:
        entity.messages.pop(stored.sequence_number, None)
        dlq = self.entities.get(entity.name.lower() + DEAD_LETTER_SUFFIX)
        if dlq is None:
            return
        self._unlock(stored, count_delivery=False)
        stored.dead_letter_reason = None if reason is None else str(reason)
        stored.dead_letter_description = None if description is None else str(description)
        self._sequence += 1
        stored.sequence_number = self._sequence
        dlq.messages[stored.sequence_number] = stored

    def _on_incoming(self, link: Link, delivery: Delivery) -> None:
        raw = link.recv(delivery.pending)
        link.advance()
        self.transfers_received += 1
        path = _entity_path(link.remote_target.address)
        if link.credit < 500:
            link.flow(1000 - link.credit)
        if self._is_node(path):
            delivery.update(Disposition.ACCEPTED)
            delivery.settle()
            request = Message()
            request.decode(raw)
            self._on_request(link, path, request)
            return
        entity = self.entities.get(path.lower())
        subscriptions = self.topics.get(path.lower())
        if subscriptions is not None:
            seen = self.topic_seen_ids.get(path.lower())
            problem = self._publish(subscriptions, _split_batch(raw), _now_ms(), seen)
        else:
            problem = (
                ("amqp:not-found", f"The messaging entity '{path}' could not be found.")
                if entity is None
                else self._enqueue(entity, _split_batch(raw), _now_ms())
            )
        if problem is not None:
            delivery.local.condition = Condition(*problem)
            delivery.update(Disposition.REJECTED)
        else:
            delivery.update(Disposition.ACCEPTED)
        delivery.settle()
        self._pump_all()
        self._serve_pending_attaches(_now_ms())

    def _publish(
        self, keys: list[str], raws: list[bytes], now: int, seen: set[str] | None
    ) -> tuple[str, str] | None:
        """Store a topic's messages on every subscription (none if one would refuse)."""
        entities = [self.entities[key] for key in keys]
        fresh = []
        for raw in raws:
            message = Message()
            message.decode(raw)
            if any(e.requires_session for e in entities) and not message.group_id:
                return self._enqueue(entities[0], [raw], now)  # the session refusal
            if seen is not None and message.id is not None:
                if str(message.id) in seen:
                    continue
                seen.add(str(message.id))
            fresh.append(raw)
        for entity in entities:
            self._enqueue(entity, fresh, now)
        return None

    def _enqueue(
        self, entity: Entity, raws: list[bytes], now: int, available_ms: int | None = None
    ) -> tuple[str, str] | None:
        """Store messages; returns (condition, description) if any is refused (none stored)."""
        parsed = []
        for raw in raws:
            message = Message()
            message.decode(raw)
            session_id = message.group_id
            if entity.requires_session and not session_id:
                return (
                    "amqp:not-allowed",
                    "The SessionId was not set on a message, and it cannot be sent to the "
                    "entity. Entities that have session support enabled can only receive "
                    "messages that have the SessionId set to a valid value.",
                )
            parsed.append((raw, message))
        for raw, message in parsed:
            message_id = None if message.id is None else str(message.id)
            if entity.duplicate_detection and message_id is not None:
                if message_id in entity.seen_ids:
                    continue
                entity.seen_ids.add(message_id)
            annotations = message.annotations or {}
            scheduled = annotations.get(symbol("x-opt-scheduled-enqueue-time"))
            at = available_ms if available_ms is not None else now
            if scheduled is not None and available_ms is None:
                at = max(now, int(scheduled))
            self._sequence += 1
            entity.messages[self._sequence] = StoredMessage(
                sequence_number=self._sequence,
                raw=raw,
                message_id=message_id,
                session_id=message.group_id or None,
                enqueued_ms=now,
                available_ms=at,
            )
        return None

    # ----------------------------------------------------------------- request/response

    def _reply(
        self,
        link: Link,
        node: str,
        request: Message,
        status: int,
        body: Any,
        *,
        field_name: str,
        description: str = "OK",
        condition: str | None = None,
    ) -> None:
        reply = Message(body=body)
        reply.correlation_id = request.id
        props: dict[str, Any] = {
            field_name: status,
            field_name.replace("Code", "Description").replace("code", "description"): description,
        }
        if condition is not None:
            props["errorCondition"] = symbol(condition)
        reply.properties = props
        connection = link.connection
        candidate = connection.link_head(Endpoint.LOCAL_ACTIVE)
        chosen = None
        while candidate is not None:
            if candidate.is_sender and _entity_path(candidate.remote_source.address) == node:
                chosen = candidate
                if request.reply_to and candidate.remote_target.address == request.reply_to:
                    break
            candidate = candidate.next(Endpoint.LOCAL_ACTIVE)
        if chosen is None:
            return
        delivery = chosen.delivery(str(uuid.uuid4()))
        chosen.send(reply.encode())
        chosen.advance()
        delivery.settle()

    def _on_request(self, link: Link, path: str, request: Message) -> None:
        props = request.properties or {}
        operation = str(props.get("operation", ""))
        if path == "$cbs":
            status, description = self._check_token(request)
            if status == 202:
                self.cbs_tokens_accepted += 1
            elif status == 404:
                self.cbs_tokens_not_found += 1
            self._reply(
                link, path, request, status, None, field_name="status-code", description=description
            )
            return
        self.management_ops.append(operation)
        entity_path = path[: -len("/$management")].lower()
        entity = self.entities.get(entity_path)
        if entity is None:
            self._reply(
                link,
                path,
                request,
                404,
                None,
                field_name="statusCode",
                description="entity not found",
                condition="amqp:not-found",
            )
            return
        body = request.body if isinstance(request.body, dict) else {}
        handler = {
            "com.microsoft:renew-lock": self._op_renew_lock,
            "com.microsoft:schedule-message": self._op_schedule,
            "com.microsoft:cancel-scheduled-message": self._op_cancel,
            "com.microsoft:peek-message": self._op_peek,
            "com.microsoft:renew-session-lock": self._op_renew_session,
            "com.microsoft:update-disposition": self._op_update_disposition,
            "com.microsoft:get-session-state": self._op_get_session_state,
        }.get(operation)
        if handler is None:
            self._reply(
                link,
                path,
                request,
                501,
                None,
                field_name="statusCode",
                description=f"operation {operation} is not implemented by the test broker",
                condition="amqp:not-implemented",
            )
            return
        status, result, condition, description = handler(entity, body)
        self._reply(
            link,
            path,
            request,
            status,
            result,
            field_name="statusCode",
            description=description,
            condition=condition,
        )
        self._pump_all()

    def _check_token(self, request: Message) -> tuple[int, str]:
        token = request.body
        if not isinstance(token, str) or not token.startswith("SharedAccessSignature "):
            return 401, "unsupported token type"
        fields = dict(
            part.split("=", 1) for part in token[len("SharedAccessSignature ") :].split("&")
        )
        if fields.get("skn") != self.key_name:
            return 401, "InvalidSignature: The token has an invalid signature."
        resource = fields.get("sr", "")
        expiry = fields.get("se", "")
        to_sign = f"{resource}\n{expiry}".encode()
        expected = base64.b64encode(
            hmac.new(self.key.encode(), to_sign, hashlib.sha256).digest()
        ).decode()
        given = urllib.parse.unquote(fields.get("sig", ""))
        if not hmac.compare_digest(expected, given):
            return 401, "InvalidSignature: The token has an invalid signature."
        # Service Bus checks the token's audience (the entity the link is for) at
        # put-token: a missing queue or topic is refused here with 404, before any link
        # attaches (the SDK raises ServiceBusAuthenticationError around a
        # TokenAuthFailure with status_code 404). A missing subscription of an existing
        # topic gets its token and is refused at attach (amqp:not-found).
        audience = str((request.properties or {}).get("name", ""))
        path = _entity_path(audience).lower()
        top = path.split("/subscriptions/")[0].removesuffix(DEAD_LETTER_SUFFIX)
        if top and top not in self.entities and top not in self.topics:
            return 404, f"The messaging entity '{audience}' could not be found."
        return 202, "Accepted"

    def _find_locked(self, entity: Entity, token: uuid.UUID) -> StoredMessage | None:
        for stored in entity.messages.values():
            if stored.lock_token == token:
                return stored
        return None

    def _op_renew_lock(
        self, entity: Entity, body: dict[Any, Any]
    ) -> tuple[int, Any, str | None, str]:
        tokens = list(body.get("lock-tokens") or [])
        expirations = []
        now = _now_ms()
        for token in tokens:
            stored = self._find_locked(entity, token)
            if stored is None:
                return (
                    410,
                    None,
                    LOCK_LOST,
                    "The lock supplied is invalid. Either the lock expired, or the message "
                    "has already been removed from the queue.",
                )
            stored.locked_until_ms = now + int(entity.lock_duration * 1000)
            expirations.append(timestamp(stored.locked_until_ms))
        return 200, {"expirations": Array(Data.NULL, Data.TIMESTAMP, *expirations)}, None, "OK"

    def _op_schedule(
        self, entity: Entity, body: dict[Any, Any]
    ) -> tuple[int, Any, str | None, str]:
        numbers = []
        now = _now_ms()
        for item in body.get("messages") or []:
            raw = bytes(item["message"])
            before = self._sequence
            problem = self._enqueue(entity, [raw], now)
            if problem is not None:
                return 400, None, problem[0], problem[1]
            numbers.append(ulong(self._sequence) if self._sequence > before else ulong(0))
        return (
            200,
            {"sequence-numbers": Array(Data.NULL, Data.LONG, *[int(n) for n in numbers])},
            None,
            "OK",
        )

    def _op_cancel(self, entity: Entity, body: dict[Any, Any]) -> tuple[int, Any, str | None, str]:
        for number in body.get("sequence-numbers") or []:
            stored = entity.messages.get(int(number))
            if stored is not None and stored.available_ms > _now_ms():
                del entity.messages[int(number)]
        return 200, None, None, "OK"

    def _op_peek(self, entity: Entity, body: dict[Any, Any]) -> tuple[int, Any, str | None, str]:
        start = int(body.get("from-sequence-number", 0))
        count = int(body.get("message-count", 1))
        found = [entity.messages[s] for s in sorted(entity.messages) if s >= start][:count]
        if not found:
            return 204, None, None, "No messages"
        out = []
        for stored in found:
            message = stored.decoded()
            annotations = dict(message.annotations or {})
            annotations[symbol("x-opt-sequence-number")] = stored.sequence_number
            annotations[symbol("x-opt-enqueued-time")] = timestamp(stored.enqueued_ms)
            message.annotations = annotations
            message.delivery_count = stored.delivery_count
            out.append({"message": message.encode()})
        return 200, {"messages": out}, None, "OK"

    def _op_renew_session(
        self, entity: Entity, body: dict[Any, Any]
    ) -> tuple[int, Any, str | None, str]:
        session_id = str(body.get("session-id"))
        if session_id not in entity.session_locks:
            return 410, None, "com.microsoft:session-lock-lost", "The session lock has expired."
        expiry = _now_ms() + int(entity.lock_duration * 1000)
        entity.session_lock_until[session_id] = expiry
        return 200, {"expiration": timestamp(expiry)}, None, "OK"

    def _op_get_session_state(
        self, entity: Entity, body: dict[Any, Any]
    ) -> tuple[int, Any, str | None, str]:
        session_id = str(body.get("session-id"))
        if session_id not in entity.session_locks:
            return 410, None, "com.microsoft:session-lock-lost", "The session lock has expired."
        return 200, {"session-state": None}, None, "OK"

    def _op_update_disposition(
        self, entity: Entity, body: dict[Any, Any]
    ) -> tuple[int, Any, str | None, str]:
        status = str(body.get("disposition-status"))
        for token in body.get("lock-tokens") or []:
            stored = self._find_locked(entity, token)
            if stored is None:
                return 410, None, LOCK_LOST, "The lock supplied is invalid."
            if status == "completed":
                entity.messages.pop(stored.sequence_number, None)
            elif status == "abandoned":
                self._unlock(stored, count_delivery=True)
            elif status == "suspended":
                self._dead_letter(
                    entity,
                    stored,
                    body.get("deadletter-reason"),
                    body.get("deadletter-description"),
                )
        return 200, None, None, "OK"


def _lid(link: Link | None) -> int:
    """A stable id for a link (proton hands out a new Python wrapper per event)."""
    return -1 if link is None else int(getattr(link, "broker_id", -1))


def _filter_map(terminus: Terminus) -> dict[Any, Any]:
    data = terminus.filter
    data.rewind()
    if not data.next():
        return {}
    value = data.get_object()
    data.rewind()
    return dict(value) if isinstance(value, dict) else {}
