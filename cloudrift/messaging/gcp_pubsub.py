"""Google Cloud Pub/Sub through ``gcloud-aio-pubsub`` (REST/JSON, natively async).

A queue is a topic plus one subscription on it: ``send`` publishes to ``topic``,
``receive`` pulls from ``subscription``. How our semantics map (the Pub/Sub column of
the table in ``docs/messaging.md``):

* ``group_id`` → the message's ordering key. It needs a subscription created with
  message ordering enabled; on any other subscription ``send(group_id=)`` raises
  ``FeatureNotSupportedError`` (Pub/Sub would accept the key and ignore the order). The
  subscription is read once, before the first send; an identity that may only publish
  skips that check and its ordering keys pass through as given.
* ``dedup_id`` and ``delay`` → ``FeatureNotSupportedError``: Pub/Sub has neither.
  ``receive(group_id=)`` is not supported either.
* visibility → the ack deadline: ``receive(visibility_timeout=)`` and
  ``extend_visibility`` call ``modifyAckDeadline`` (0..600 s; more is a ValueError);
  ``nack`` sets the deadline to 0.
* ``receive_count`` → ``deliveryAttempt`` when the subscription has a dead-letter
  policy (Pub/Sub counts only then); otherwise the deliveries this backend instance
  has seen of that message (another process's deliveries are not counted).
* ``dead_letter(handle, reason)`` needs ``dead_letter_topic``: the message is published
  there with its body, attributes, ordering key and the reason, and acked only after
  that publish succeeded (so it is never lost).
* batches → one publish request per 1,000 messages or 10 MB of request JSON; payload
  bytes travel base64-encoded, as the REST API requires, and the size limits count
  those encoded bytes (so one payload can be at most about 7.5 MB).
* ``purge`` → ``seek`` to the current time (acks everything published before it).
* transient failures (a dropped connection, 429 and 5xx answers) are retried up to
  ``max_attempts`` times with backoff, as Google's client libraries do — except pulls,
  which ``consume()`` retries itself. A retried publish may deliver a message twice.

Topics (``get_topic("gcp_pubsub", project=, topic=)``) publish the same way, and a
subscription (``get_subscription("gcp_pubsub", project=, subscription=)``) is consumed
exactly as the queue's subscription is; Pub/Sub's topics and subscriptions are the native
model, so nothing is emulated. ``group_id`` on a topic is the ordering key: order is kept
on the subscriptions created with message ordering enabled (the topic cannot see its
subscriptions' settings). Sending to a subscription raises ``FeatureNotSupportedError``
(publish to the topic: a message published there reaches every subscription). A topic or
subscription that does not exist raises ``TopicNotFoundError`` naming it (at once: a 404
is never retried). ``health_check()`` reads the topic (permission
``pubsub.topics.get``) or the subscription (``pubsub.subscriptions.get``).

Auth: application default credentials (also workload identity through the metadata
server) when no credential option is given, a service-account key file
(``credentials_path``), or ``emulator_host`` (``host:port``) for the Pub/Sub emulator or
a local stand-in. ``endpoint_url`` picks a regional or private API endpoint (Google
recommends a regional one when publishing with ordering keys). ``PUBSUB_EMULATOR_HOST``
in the environment is ignored: a stray variable must not redirect production traffic.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import math
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict, TypeVar, Unpack

import aiohttp
from gcloud.aio.pubsub import PublisherClient, PubsubMessage, SubscriberClient

from cloudrift.core.auth import auth_method, select_auth
from cloudrift.core.exceptions import (
    ConfigurationError,
    FeatureNotSupportedError,
    InvalidMessageError,
    MessageSendError,
    MessagingConnectionError,
    MessagingError,
    MessagingPermissionError,
    ReceiptHandleError,
    TopicNotFoundError,
)
from cloudrift.core.lifecycle import LazyClient
from cloudrift.core.operation import BackendDescription
from cloudrift.core.retry import RetryPolicy
from cloudrift.core.secrets import redact
from cloudrift.core.validation import check_int, check_number
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

log = logging.getLogger("cloudrift.messaging")

_AUTH = [
    auth_method("application default credentials"),
    auth_method("service account file", ["credentials_path"]),
    auth_method("emulator", ["emulator_host"]),
]
_PUBLIC_ROOT = "https://pubsub.googleapis.com/v1"
#: Google's resource-name rule for topics and subscriptions.
_NAME = re.compile(r"^[A-Za-z][-A-Za-z0-9_.~+%]{2,254}$")
_PROJECT = re.compile(r"^[a-z][-a-z0-9.:]{4,61}[a-z0-9]$|^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
#: Pub/Sub's publish limits: messages per request and bytes per request.
MAX_BATCH_COUNT = 1000
MAX_REQUEST_BYTES = 10_000_000
#: The JSON around the messages of a publish request: ``{"messages": [...]}``.
_REQUEST_FRAME = len(json.dumps({"messages": []}))
#: One message's JSON in a publish request without its base64 data and attributes, plus
#: the ", " that separates it from the next (see ``_entry_size``).
_MESSAGE_FRAME = len(json.dumps({"data": "", "attributes": {}})) - 2 + 2
_ORDERING_KEY_FRAME = len(', "orderingKey": ')
#: The longest ack deadline Pub/Sub accepts.
MAX_ACK_DEADLINE = 600
_TRANSIENT = {429, 500, 502, 503, 504}
_NO_ID = "Pub/Sub returned no message id for this entry"

_LIMITS = SendLimits(
    max_message_bytes=MAX_REQUEST_BYTES - _REQUEST_FRAME,
    max_batch_count=MAX_BATCH_COUNT,
    max_batch_bytes=MAX_REQUEST_BYTES - _REQUEST_FRAME,
    max_delay=None,
)

T = TypeVar("T")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _check_endpoint(where: str, endpoint_url: str, emulator_host: str | None) -> str:
    """A regional / private API endpoint: https, or plain http on loopback only (an
    access token must never cross a network in clear text)."""
    if emulator_host is not None:
        raise ConfigurationError(
            f"{where}: give emulator_host (no auth) or endpoint_url (authenticated), not both"
        )
    parts = urllib.parse.urlsplit(endpoint_url)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK_HOSTS
    )
    if not secure or not parts.hostname or parts.path.strip("/"):
        raise ConfigurationError(
            f"{where}: endpoint_url must be an https:// API root such as "
            f"'https://us-east1-pubsub.googleapis.com' (http only on loopback), got "
            f"{endpoint_url!r}"
        )
    return endpoint_url.rstrip("/")


def _retryable(error: MessagingError, cause: BaseException) -> bool:
    """Connection failures and 429 / 5xx answers; not a request that ran out of time
    (that already waited ``read_timeout``, or was a long poll ending on purpose)."""
    if not isinstance(error, MessagingConnectionError):
        return False
    return not (isinstance(cause, TimeoutError) and not isinstance(cause, aiohttp.ClientError))


class PubSubOptions(TypedDict, total=False):
    """The connection options every Pub/Sub backend takes (``**options: Unpack[...]``)."""

    #: A service-account key file; None: application default credentials.
    credentials_path: str | None
    #: ``host:port`` of the Pub/Sub emulator or a local stand-in (no auth).
    emulator_host: str | None
    #: A regional / private API root (``https://us-east1-pubsub.googleapis.com``).
    endpoint_url: str | None
    max_pool_connections: int
    connect_timeout: float
    read_timeout: float
    #: Tries per call while the failure is transient (429, 5xx, dropped connection).
    max_attempts: int


@dataclass(frozen=True)
class PubSubClients:
    """The native gcloud-aio clients (non-portable escape hatch; do not close them).

    ``topic_path`` is None on a subscription, ``subscription_path`` None on a topic."""

    publisher: PublisherClient
    subscriber: SubscriberClient
    topic_path: str | None
    subscription_path: str | None


def _check_name(where: str, name: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or value.startswith("goog"):
        raise ConfigurationError(
            f"{where}: {name} must be the short {name.split('_')[-1]} name (3-255 "
            "characters: letters, digits, - _ . ~ + %, starting with a letter, not "
            f"'goog'), not a path; got {value!r}"
        )
    return value


class _PubSubEntity(Queue):
    """The code every Pub/Sub backend shares (connection, errors, publishing, pulling):
    the queue (topic + subscription), a subscription alone, and a topic's publisher
    (:class:`GcpPubSubTopic` holds one). Not a provider itself."""

    provider = "gcp_pubsub"
    #: Pub/Sub's pull returns at most 1,000 messages.
    max_receive_messages = 1000

    def __init__(
        self,
        where: str,
        *,
        project: str,
        topic: str | None,
        subscription: str | None,
        dead_letter_topic: str | None,
        max_in_flight: int,
        options: PubSubOptions,
    ) -> None:
        super().__init__()
        known = PubSubOptions.__annotations__
        unknown = sorted(set(options) - set(known))
        if unknown:  # only reachable by a direct constructor call with a typo
            raise ConfigurationError(f"{where}: unknown option(s) {unknown}")
        if not isinstance(project, str) or not _PROJECT.match(project):
            raise ConfigurationError(
                f"{where}: project must be a Google Cloud project id, got {project!r}"
            )
        for name, value in (
            ("topic", topic),
            ("subscription", subscription),
            ("dead_letter_topic", dead_letter_topic),
        ):
            if value is not None:
                _check_name(where, name, value)
        credentials_path = options.get("credentials_path")
        emulator_host = options.get("emulator_host")
        endpoint_url = options.get("endpoint_url")
        self.auth_method = select_auth(
            where, {"credentials_path": credentials_path, "emulator_host": emulator_host}, _AUTH
        )
        if emulator_host is not None:
            emulator_host = re.sub(r"^https?://", "", emulator_host).rstrip("/")
            if not emulator_host or "/" in emulator_host:
                raise ConfigurationError(
                    f"{where}: emulator_host must be host:port (like PUBSUB_EMULATOR_HOST), "
                    f"got {emulator_host!r}"
                )
        if endpoint_url is not None:
            endpoint_url = _check_endpoint(where, endpoint_url, emulator_host)
        pool = options.get("max_pool_connections", 64)
        max_attempts = options.get("max_attempts", 3)
        connect_timeout = options.get("connect_timeout", 5.0)
        read_timeout = options.get("read_timeout", 30.0)
        for name, number in (
            ("max_pool_connections", pool),
            ("max_attempts", max_attempts),
            ("max_in_flight", max_in_flight),
        ):
            check_int(f"{where}: {name}", number, at_least=1)
        for name, timeout in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            check_number(f"{where}: {name}", timeout, above=0, unit="seconds")
        self.project = project
        self.topic = topic
        self.subscription = subscription
        self.dead_letter_topic = dead_letter_topic
        self.emulator_host = emulator_host
        self.topic_path = f"projects/{project}/topics/{topic}" if topic else None
        self.subscription_path = (
            f"projects/{project}/subscriptions/{subscription}" if subscription else None
        )
        self._dlq_path = (
            f"projects/{project}/topics/{dead_letter_topic}" if dead_letter_topic else None
        )
        if emulator_host:
            self._api_root = f"http://{emulator_host}/v1"
        elif endpoint_url:
            self._api_root = f"{endpoint_url}/v1"
        else:
            self._api_root = _PUBLIC_ROOT
        self._credentials_path = credentials_path
        self._pool = pool
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        #: The per-call timeout (whole seconds, as gcloud-aio types it), worked out once:
        #: it goes with every publish and ack.
        self._call_timeout = self._timeout()
        # Like Google's own client libraries, retry UNAVAILABLE / RESOURCE_EXHAUSTED and
        # dropped connections (a retried publish may deliver twice: at-least-once anyway).
        self._retry = RetryPolicy(attempts=max_attempts, base_delay=0.1, max_delay=2.0)
        self.backend_name = where
        self._client: LazyClient[PubSubClients] = LazyClient(self._build_client)
        self._in_flight: InFlightMap[Message] = InFlightMap(max_in_flight)
        #: message id → deliveries seen here (receive_count without a dead-letter policy).
        self._seen: InFlightMap[int] = InFlightMap(max_in_flight)
        self._subscription_info: dict[str, Any] | None = None
        self._reading = asyncio.Lock()
        # Capabilities: the Pub/Sub column of the seed's table. supports_groups is
        # settled by the subscription's enableMessageOrdering before a queue's first send.
        self.supports_delay = False
        self.supports_groups = True
        self.supports_dedup = False
        self.supports_group_receive = False
        self.supports_visibility_timeout = True
        self.supports_dead_letter = dead_letter_topic is not None
        self.requires_group_id = False
        # Publish requests without ordering keys may overlap (entries with a group_id
        # always go in order); four 10 MB requests bound the memory in flight.
        self.batch_send_concurrency = 4

    def _describe(self) -> BackendDescription:
        return BackendDescription.at(
            "gcp_pubsub", self.topic or self.subscription, self.emulator_host
        )

    @property
    def _sub_path(self) -> str:
        """The subscription's path (a topic's publisher never receives)."""
        if self.subscription_path is None:
            raise FeatureNotSupportedError(f"{self.backend_name} cannot be received from")
        return self.subscription_path

    @property
    def _pub_path(self) -> str:
        """The topic's path (a subscription alone never publishes)."""
        if self.topic_path is None:
            raise FeatureNotSupportedError(f"{self.backend_name} cannot be published to")
        return self.topic_path

    # ---------------------------------------------------------------- client

    async def _build_client(self, stack: AsyncExitStack) -> PubSubClients:
        timeout = aiohttp.ClientTimeout(sock_connect=self._connect_timeout)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._pool), timeout=timeout
        )
        stack.push_async_callback(session.close)
        sdk_session: Any = session  # gcloud-aio types it as its own alias of ClientSession
        dev = self.emulator_host is not None
        common: dict[str, Any] = {
            "service_file": self._credentials_path,
            "session": sdk_session,
            "api_root": self._api_root,
            "api_is_dev": dev,
        }
        try:
            publisher = PublisherClient(**common)
        except (OSError, ValueError) as exc:
            # gcloud-aio reads the key file while building its token.
            raise ConfigurationError(
                f"{self.backend_name}: cannot read the service-account key file (credentials_path, "
                f"or GOOGLE_APPLICATION_CREDENTIALS under application default credentials): "
                f"{type(exc).__name__}: {redact(str(exc))}"
            ) from exc
        # One token for both clients: one refresh, one metadata-server / OAuth round trip.
        subscriber = SubscriberClient(**common, token=publisher.token)
        return PubSubClients(publisher, subscriber, self.topic_path, self.subscription_path)

    async def _native_client(self) -> PubSubClients:
        """``await queue.native()``: the gcloud-aio publisher and subscriber."""
        return await self._client.get()

    async def _aclose(self) -> None:
        self._in_flight = InFlightMap(self._in_flight.max_size)
        await self._client.aclose()

    # ---------------------------------------------------------------- errors

    def _error(
        self, exc: Exception, handle: str | None, publishing: bool, resource: str | None
    ) -> MessagingError:
        """The one translation of aiohttp / gcloud-aio errors to the messaging family
        (redacted; the caller chains it with ``raise ... from exc``). ``resource`` is the
        topic or subscription path the call addressed (named when it does not exist)."""
        if isinstance(exc, aiohttp.ClientResponseError):
            text = redact(str(exc.message))
            return self._status_error(exc.status, text, handle, publishing, resource)
        if isinstance(exc, TimeoutError | aiohttp.ClientConnectionError):
            return MessagingConnectionError(
                f"{self.backend_name}: cannot reach Pub/Sub at {self._api_root} "
                f"({type(exc).__name__}: {redact(str(exc))})"
            )
        return MessagingError(f"{self.backend_name}: {type(exc).__name__}: {redact(str(exc))}")

    def _status_error(
        self, status: int, text: str, handle: str | None, publishing: bool, resource: str | None
    ) -> MessagingError:
        where = f"{self.backend_name}: Pub/Sub answered {status}: {text}"
        if status == 404:
            # A subclass of QueueNotFoundError: a queue's callers catch it as before.
            named = resource or self.subscription_path or self.topic_path or "?"
            kind = "subscription" if "/subscriptions/" in named else "topic"
            option = "dead_letter_topic" if named == self._dlq_path else kind
            return TopicNotFoundError(
                named, f"{where}; the {kind} {named!r} does not exist (check {option}=)"
            )
        if status in (401, 403):
            return MessagingPermissionError(
                f"{where}; the credentials need roles/pubsub.publisher on the topic and "
                "roles/pubsub.subscriber on the subscription"
            )
        if status == 400 and handle is not None and "ack id" in text.lower():
            return ReceiptHandleError(
                f"{where}; the receipt handle is not a Pub/Sub ack id from this subscription"
            )
        if status in _TRANSIENT:
            return MessagingConnectionError(where)
        if status == 400 and publishing:
            return InvalidMessageError(where)
        return MessagingError(where)

    async def _call(
        self,
        operation: Callable[[PubSubClients], Awaitable[T]],
        handle: str | None = None,
        *,
        publishing: bool = False,
        retry: bool = True,
        resource: str | None = None,
    ) -> T:
        """Run one API call with errors translated, retried while transient (a plain
        loop rather than a wrapper: this is on every message's path). ``resource``: the
        path it addresses when not this backend's subscription (or topic, publishing)."""
        clients = await self._client.get()
        attempts = self._retry.attempts if retry else 1
        attempt = 1
        while True:
            try:
                return await operation(clients)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if resource is None:
                    resource = self.topic_path if publishing else self.subscription_path
                error = self._error(exc, handle, publishing, resource)
                if attempt >= attempts or not _retryable(error, exc):
                    raise error from exc
            await asyncio.sleep(self._retry.delay(attempt))
            attempt += 1

    # ---------------------------------------------------------------- sending

    async def _limits(self) -> SendLimits:
        # The queue's first send reads its subscription (topic check, ordering); sends
        # racing it wait for that one read instead of each making their own.
        if self._subscription_info is None:
            async with self._reading:
                if self._subscription_info is None:
                    await self._read_subscription()
        return _LIMITS

    async def _read_subscription(self) -> None:
        """Once, before the first send: check the subscription is on our topic and learn
        whether it orders messages (``supports_groups``)."""
        try:
            info = await self._call(
                lambda c: c.subscriber.get_subscription(self._sub_path, timeout=self._timeout())
            )
        except MessagingPermissionError:
            # A publisher-only identity (roles/pubsub.publisher) may not read the
            # subscription: send anyway, passing ordering keys through unchecked.
            log.info(
                "%s: cannot read the subscription; sending without checking its topic "
                "or message ordering",
                self.backend_name,
            )
            self._subscription_info = {}
            return
        if info.get("topic") != self.topic_path:
            raise ConfigurationError(
                f"{self.backend_name}: subscription {self.subscription_path!r} is attached "
                f"to {info.get('topic')!r}, not to {self.topic_path!r}; messages sent here "
                "would never reach it"
            )
        self.supports_groups = bool(info.get("enableMessageOrdering"))
        self._subscription_info = info

    def _wire(self, msg: PreparedMessage) -> PubsubMessage:
        wire = PubsubMessage(msg.body, ordering_key=msg.group_id or "")
        # Set after construction: attribute names like "data" must not collide with
        # PubsubMessage's own keyword arguments.
        wire.attributes = dict(msg.wire_attributes)
        return wire

    def _entry_size(self, msg: PreparedMessage) -> int:
        # Exactly what the message adds to the publish request's JSON as gcloud-aio
        # serialises it (base64 data, attributes, ordering key, the separating ", "),
        # computed without building it: this runs for every message sent.
        size = _MESSAGE_FRAME + 4 * math.ceil(len(msg.body) / 3)
        size += len(json.dumps(msg.wire_attributes)) if msg.wire_attributes else 2
        if msg.group_id:
            size += _ORDERING_KEY_FRAME + len(json.dumps(msg.group_id))
        return size

    async def _send_one(self, msg: PreparedMessage) -> str:
        # The chunk path without its lists: this runs for every message sent.
        wire = [self._wire(msg)]
        path, timeout = self._pub_path, self._call_timeout
        answer = await self._call(
            lambda c: c.publisher.publish(path, wire, timeout=timeout), publishing=True
        )
        ids = answer.get("messageIds", [])
        if len(ids) != 1:
            raise MessageSendError(f"{self.backend_name}: {_NO_ID}", failed={0: _NO_ID})
        return str(ids[0])

    async def _send_chunk(self, chunk: Sequence[PreparedMessage]) -> Sequence[str | SendFailure]:
        wire = [self._wire(m) for m in chunk]
        answer = await self._call(
            lambda c: c.publisher.publish(self._pub_path, wire, timeout=self._call_timeout),
            publishing=True,
        )
        ids = answer.get("messageIds", [])
        if len(ids) != len(chunk):
            # A publish request is all-or-nothing; a short answer means we cannot tell.
            return [SendFailure(_NO_ID)] * len(chunk)
        return [str(i) for i in ids]

    # -------------------------------------------------------------- receiving

    def _timeout(self, seconds: float | None = None) -> int:
        # gcloud-aio types timeouts as int seconds.
        return max(1, math.ceil(self._read_timeout if seconds is None else seconds))

    async def _headers(self, clients: PubSubClients) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.emulator_host is None:
            headers["Authorization"] = f"Bearer {await clients.subscriber.token.get()}"
        return headers

    async def _pull(self, max_messages: int, wait: float) -> list[Any]:
        """One pull request. gcloud-aio's ``pull`` drops ``orderingKey`` and cannot ask
        for ``returnImmediately``, so this one call is made directly on its session.
        Not retried here: a retry would stretch the caller's wait (``consume()`` retries
        failed polls with backoff)."""
        body = json.dumps({"maxMessages": max_messages, "returnImmediately": wait <= 0})
        timeout = self._read_timeout if wait <= 0 else wait

        async def pull(clients: PubSubClients) -> dict[str, Any]:
            resp = await clients.subscriber.session.post(
                f"{self._api_root}/{self._sub_path}:pull",
                data=body.encode(),
                headers=await self._headers(clients),
                timeout=timeout,
            )
            answer: dict[str, Any] = await resp.json()
            return answer

        answer = await self._call(pull, retry=False)
        received: list[Any] = answer.get("receivedMessages", [])
        return received

    async def _receive(
        self,
        max_messages: int,
        wait_time: float,
        visibility_timeout: float | None,
        group_id: str | None,
    ) -> list[Message]:
        if visibility_timeout is not None and visibility_timeout > MAX_ACK_DEADLINE:
            raise ValueError(
                f"visibility_timeout must be at most {MAX_ACK_DEADLINE}s on Pub/Sub (its "
                "longest ack deadline); extend_visibility() while working instead"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_time
        while True:
            # Under 50 ms left is not worth a long poll: ask for what is there now.
            remaining = deadline - loop.time()
            wait = remaining if remaining > 0.05 else 0.0
            try:
                raw = await self._pull(max_messages, wait)
            except MessagingConnectionError as exc:
                # Our own long-poll timeout ran out (a plain TimeoutError, not a connect
                # timeout): treat it as "nothing arrived", not a failure. A message the
                # server handed out in the instant we hung up is not lost: it comes back
                # when its ack deadline passes (at-least-once, only delayed).
                cause = exc.__cause__
                if (
                    wait > 0
                    and isinstance(cause, TimeoutError)
                    and not isinstance(cause, aiohttp.ClientError)
                ):
                    return []
                raise
            if raw or loop.time() >= deadline:
                break
        messages = [self._message(m) for m in raw]
        if messages and visibility_timeout is not None:
            await self._modify([m.receipt_handle for m in messages], math.ceil(visibility_timeout))
        return messages

    def _message(self, raw: Mapping[str, Any]) -> Message:
        body = raw.get("message", {})
        message_id = str(body.get("messageId", ""))
        attempt = raw.get("deliveryAttempt")
        if not attempt:
            # Pub/Sub counts deliveries only with a dead-letter policy; count ours.
            attempt = (self._seen.get(message_id) or 0) + 1
            self._seen.add(message_id, attempt)
        msg = Message.from_raw(
            base64.b64decode(body.get("data") or ""),
            receipt_handle=str(raw["ackId"]),
            message_id=message_id,
            group_id=body.get("orderingKey") or None,
            receive_count=int(attempt),
            attributes=body.get("attributes") or {},
        )
        # Remembered (bounded) so dead_letter() can republish body and attributes.
        self._in_flight.add(msg.receipt_handle, msg)
        return msg

    # ------------------------------------------------------- acting on a handle

    async def _modify(self, handles: list[str], seconds: int) -> None:
        await self._call(
            lambda c: c.subscriber.modify_ack_deadline(
                self._sub_path, handles, seconds, timeout=self._timeout()
            ),
            handles[0],
        )

    async def _delete(self, handle: str) -> None:
        path, timeout = self._sub_path, self._call_timeout
        await self._call(
            lambda c: c.subscriber.acknowledge(path, [handle], timeout=timeout), handle
        )
        msg = self._in_flight.pop(handle)
        if msg is not None:
            self._seen.pop(msg.message_id)

    async def _nack(self, handle: str) -> None:
        await self._modify([handle], 0)
        self._in_flight.pop(handle)

    async def _extend_visibility(self, handle: str, seconds: float) -> None:
        if seconds > MAX_ACK_DEADLINE:
            raise ValueError(
                f"visibility can be extended to at most {MAX_ACK_DEADLINE}s at a time on Pub/Sub"
            )
        await self._modify([handle], math.ceil(seconds))

    async def _dead_letter(self, handle: str, reason: str) -> None:
        msg = self._in_flight.get(handle)
        if msg is None or self._dlq_path is None:
            raise ReceiptHandleError(
                f"{self.backend_name}: dead_letter() needs a message received by this "
                "instance (the handle is unknown, already acked, or was received elsewhere)"
            )
        wire = PubsubMessage(msg.raw, ordering_key=msg.group_id or "")
        # The producer's trace context travels on (never the dead-lettering span's): a
        # consumer of the dead-letter topic links back to the trace that sent it.
        wire.attributes = {**msg.attributes, **msg.transport_headers, DEAD_LETTER_REASON: reason}
        dlq = self._dlq_path
        try:
            await self._call(
                lambda c: c.publisher.publish(dlq, [wire], timeout=self._timeout()),
                publishing=True,
                resource=dlq,
            )
        except MessagingError as exc:
            # Not acked: the message stays on the subscription and comes back.
            raise MessageSendError(
                f"{self.backend_name}: could not publish to the dead-letter topic "
                f"{self._dlq_path!r}; the message stays on the subscription ({exc})",
                failed={0: str(exc)},
            ) from exc
        await self._delete(handle)

    # -------------------------------------------------------------------- misc

    async def _purge(self) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await self._call(
            lambda c: c.subscriber.seek(self._sub_path, {"time": now}, timeout=self._timeout())
        )
        self._in_flight = InFlightMap(self._in_flight.max_size)
        self._seen = InFlightMap(self._seen.max_size)

    async def _health(self) -> bool:
        # One attempt: a health check reports, it does not wait out an outage.
        await self._call(
            lambda c: c.subscriber.get_subscription(self._sub_path, timeout=self._timeout()),
            retry=False,
        )
        return True


class GcpPubSubQueue(_PubSubEntity):
    """One Pub/Sub topic and a subscription on it, used as a queue."""

    def __init__(
        self,
        *,
        project: str,
        topic: str,
        subscription: str,
        dead_letter_topic: str | None = None,
        max_in_flight: int = 10_000,
        **options: Unpack[PubSubOptions],
    ) -> None:
        where = f"gcp_pubsub queue {topic!r}/{subscription!r}"
        for name, value in (("topic", topic), ("subscription", subscription)):
            _check_name("gcp_pubsub queue", name, value)
        super().__init__(
            where,
            project=project,
            topic=topic,
            subscription=subscription,
            dead_letter_topic=dead_letter_topic,
            max_in_flight=max_in_flight,
            options=options,
        )

    def __repr__(self) -> str:
        return (
            f"GcpPubSubQueue(project={self.project!r}, topic={self.topic!r}, "
            f"subscription={self.subscription!r}, auth={self.auth_method!r})"
        )


class GcpPubSubSubscription(_PubSubEntity):
    """A Pub/Sub subscription, consumed as a queue (``get_subscription``): receive,
    delete, nack, extend_visibility, dead_letter (with ``dead_letter_topic``) and
    ``consume()`` as on the queue. Sending raises FeatureNotSupportedError: publish to
    the topic, whose every subscription gets the message."""

    category = "subscription"

    def __init__(
        self,
        *,
        project: str,
        subscription: str,
        dead_letter_topic: str | None = None,
        max_in_flight: int = 10_000,
        **options: Unpack[PubSubOptions],
    ) -> None:
        _check_name("gcp_pubsub subscription", "subscription", subscription)
        super().__init__(
            f"gcp_pubsub subscription {subscription!r}",
            project=project,
            topic=None,
            subscription=subscription,
            dead_letter_topic=dead_letter_topic,
            max_in_flight=max_in_flight,
            options=options,
        )
        self.supports_groups = False

    def __repr__(self) -> str:
        return (
            f"GcpPubSubSubscription(project={self.project!r}, "
            f"subscription={self.subscription!r}, auth={self.auth_method!r})"
        )

    def _refuse_send(self) -> FeatureNotSupportedError:
        return FeatureNotSupportedError(
            f"{self.backend_name}: a Pub/Sub subscription cannot be sent to; publish to "
            "its topic (get_topic('gcp_pubsub', ...)) instead"
        )

    async def _limits(self) -> SendLimits:
        raise self._refuse_send()

    async def _send_one(self, msg: PreparedMessage) -> str:
        raise self._refuse_send()

    async def _send_entries(self, entries: Sequence[PreparedMessage]) -> list[str | SendFailure]:
        raise self._refuse_send()


class _TopicPublisher(_PubSubEntity):
    """The publishing code of :class:`_PubSubEntity` on a topic alone (no subscription)."""

    async def _limits(self) -> SendLimits:
        return _LIMITS

    async def _health(self) -> bool:
        # gcloud-aio has no topics.get: one GET on its session (never retried).
        path = self.topic_path

        async def get_topic(clients: PubSubClients) -> None:
            resp = await clients.publisher.session.get(
                f"{self._api_root}/{path}",
                headers=await self._headers(clients),
                timeout=self._timeout(),
            )
            await resp.json()

        await self._call(get_topic, retry=False, resource=path)
        return True


class GcpPubSubTopic(Topic):
    """A Pub/Sub topic (``get_topic("gcp_pubsub", project=, topic=)``): ``publish`` /
    ``publish_batch`` as the queue's ``send`` / ``send_batch`` (1,000 messages or 10 MB
    per publish request). ``group_id`` is the ordering key; ``dedup_id`` is not
    supported."""

    provider: ClassVar[str] = "gcp_pubsub"

    def __init__(self, *, project: str, topic: str, **options: Unpack[PubSubOptions]) -> None:
        super().__init__()
        _check_name("gcp_pubsub topic", "topic", topic)
        self._publisher = _TopicPublisher(
            f"gcp_pubsub topic {topic!r}",
            project=project,
            topic=topic,
            subscription=None,
            dead_letter_topic=None,
            max_in_flight=1,
            options=options,
        )
        self.project = project
        self.topic = topic
        self.topic_path = self._publisher.topic_path
        self.auth_method = self._publisher.auth_method
        self.backend_name = self._publisher.backend_name
        self.supports_groups = True
        self.supports_dedup = False
        self.batch_send_concurrency = self._publisher.batch_send_concurrency

    def __repr__(self) -> str:
        return (
            f"GcpPubSubTopic(project={self.project!r}, topic={self.topic!r}, "
            f"auth={self.auth_method!r})"
        )

    def _describe(self) -> BackendDescription:
        return self._publisher.describe()

    async def _native_client(self) -> PubSubClients:
        """``await topic.native()``: the gcloud-aio publisher (and subscriber)."""
        return await self._publisher._client.get()

    async def _aclose(self) -> None:
        await self._publisher.close()

    async def _limits(self) -> SendLimits:
        return _LIMITS

    def _entry_size(self, msg: PreparedMessage) -> int:
        return self._publisher._entry_size(msg)

    async def _send_one(self, msg: PreparedMessage) -> str:
        return await self._publisher._send_one(msg)

    async def _send_chunk(self, chunk: Sequence[PreparedMessage]) -> Sequence[str | SendFailure]:
        return await self._publisher._send_chunk(chunk)

    async def _health(self) -> bool:
        return await self._publisher._health()


__all__ = [
    "GcpPubSubQueue",
    "GcpPubSubSubscription",
    "GcpPubSubTopic",
    "PubSubClients",
    "PubSubOptions",
]
