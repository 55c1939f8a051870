"""A test server speaking the Google Cloud Pub/Sub REST API (v1) subset our clients use.

Written from Google's public REST reference (``projects.topics`` and
``projects.subscriptions``); test code, not an emulator to ship. Routes (JSON bodies,
errors as ``{"error": {"code", "message", "status"}}`` like Google's):

* ``PUT /v1/projects/P/topics/T`` create (409 ``ALREADY_EXISTS``), ``GET`` (404
  ``NOT_FOUND``), ``DELETE``; ``POST .../topics/T:publish`` ``{"messages": [{"data":
  base64, "attributes", "orderingKey"}]}`` → ``{"messageIds": [...]}``. A request over
  1,000 messages or 10,000,000 bytes, a message without data and attributes, or bad base64
  is a 400 ``INVALID_ARGUMENT``.
* ``PUT /v1/projects/P/subscriptions/S`` ``{"topic", "ackDeadlineSeconds" (10..600,
  default 10), "enableMessageOrdering", "deadLetterPolicy": {"deadLetterTopic",
  "maxDeliveryAttempts" (5..100)}}``, ``GET``, ``DELETE``.
* ``POST .../subscriptions/S:pull`` ``{"maxMessages", "returnImmediately"}`` →
  ``{"receivedMessages": [{"ackId", "message": {..., "messageId", "publishTime"},
  "deliveryAttempt"}]}``. Without ``returnImmediately`` it waits up to ``max_pull_wait``
  seconds for a message, and never hands one to a client that has already hung up.
  ``deliveryAttempt`` is present only when a dead-letter policy is set (as documented).
* ``POST /token``: the OAuth 2.0 JWT-bearer grant a service-account key uses; with
  ``access_token`` set, every API call must carry ``Authorization: Bearer <it>`` (401
  ``UNAUTHENTICATED`` otherwise).
* ``GET /computeMetadata/v1/instance/service-accounts/default/token`` (with
  ``Metadata-Flavor: Google``): the metadata server's token, for workload identity.
* ``:acknowledge`` ``{"ackIds"}``, ``:modifyAckDeadline`` ``{"ackIds",
  "ackDeadlineSeconds" (0..600)}`` (0 = nack), ``:seek`` ``{"time"}`` (acks every
  message published before ``time``: how a subscription is purged). An ack id this
  server never issued is a 400 ``INVALID_ARGUMENT`` ("invalid ack ID"); an expired one
  is accepted, and acks (or re-leases) the message unless it was redelivered since.

Semantics: every delivery gets a fresh ack id and leases the message for the ack
deadline; an expired lease makes it deliverable again. With message ordering, messages
of one ordering key are delivered in publish order and none is delivered while an
earlier one of its key is leased. With a dead-letter policy, a message that was already
delivered ``maxDeliveryAttempts`` times is forwarded to the dead-letter topic (with the
``CloudPubSubDeadLetterSource*`` attributes) instead of being delivered again.
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime
import itertools
import json
import re
import select
import socket
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

MAX_PUBLISH_MESSAGES = 1000
MAX_REQUEST_BYTES = 10_000_000
_METADATA_TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token"
_NAME = re.compile(r"^/v1/(projects/[^/:]+/(topics|subscriptions)/[^/:]+)(?::([A-Za-z]+))?$")


class ApiError(Exception):
    """An error answer in Google's JSON error shape."""

    STATUS = {
        400: "INVALID_ARGUMENT",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        429: "RESOURCE_EXHAUSTED",
        503: "UNAVAILABLE",
    }

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or self.STATUS.get(code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": str(self), "status": self.status}}


@dataclass
class StoredMessage:
    message_id: str
    data: str
    attributes: dict[str, str]
    ordering_key: str
    publish_time: datetime.datetime

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "data": self.data,
            "messageId": self.message_id,
            "publishTime": self.publish_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        if self.ordering_key:
            out["orderingKey"] = self.ordering_key
        return out


@dataclass
class Delivery:
    """One message's state on one subscription."""

    message: StoredMessage
    attempts: int = 0
    ack_id: str | None = None
    lease_until: float = 0.0
    acked: bool = False


@dataclass
class Subscription:
    name: str
    topic: str
    ack_deadline: int = 10
    ordering: bool = False
    dead_letter_topic: str | None = None
    max_attempts: int = 5
    deliveries: list[Delivery] = field(default_factory=list)
    by_ack_id: dict[str, Delivery] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "topic": self.topic,
            "ackDeadlineSeconds": self.ack_deadline,
            "enableMessageOrdering": self.ordering,
        }
        if self.dead_letter_topic:
            out["deadLetterPolicy"] = {
                "deadLetterTopic": self.dead_letter_topic,
                "maxDeliveryAttempts": self.max_attempts,
            }
        return out


class PubSubState:
    """Topics, subscriptions and counters; every access holds ``cond``."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.topics: set[str] = set()
        self.subscriptions: dict[str, Subscription] = {}
        #: Requests answered per verb ("publish", "pull", "acknowledge", "createTopic", ...).
        self.calls: collections.Counter[str] = collections.Counter()
        #: verb → [HTTP code, message, times]: the next ``times`` calls of that verb fail.
        self.failing: dict[str, list[Any]] = {}
        #: Longest a pull without returnImmediately waits for a message (seconds).
        self.max_pull_wait = 5.0
        #: When set, API calls need ``Authorization: Bearer <access_token>`` and ``/token``
        #: mints it for a JWT assertion signed by ``token_public_key`` (PEM).
        self.access_token: str | None = None
        self.token_public_key: bytes | None = None
        self._ids = itertools.count(1)

    def reset(self) -> None:
        with self.cond:
            self.topics.clear()
            self.subscriptions.clear()
            self.calls.clear()
            self.failing.clear()
            self.max_pull_wait = 5.0
            self.access_token = None
            self.token_public_key = None

    # ----------------------------------------------------------------- topics

    def publish(self, topic: str, messages: list[Any]) -> list[str]:
        """Store ``messages`` on every subscription of ``topic`` (caller holds cond)."""
        if topic not in self.topics:
            raise ApiError(404, f"Resource not found (resource={topic.rsplit('/', 1)[-1]}).")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "The request must contain at least one message.")
        if len(messages) > MAX_PUBLISH_MESSAGES:
            raise ApiError(
                400,
                f"The value for message_count is too large. You passed {len(messages)} in "
                f"the request, but the maximum value is {MAX_PUBLISH_MESSAGES}.",
            )
        stored: list[StoredMessage] = []
        for raw in messages:
            data = raw.get("data") or ""
            attributes = raw.get("attributes") or {}
            if not data and not attributes:
                raise ApiError(400, "Some messages are empty (no data and no attributes).")
            try:
                base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ApiError(
                    400, f"Invalid value at 'messages.data' (TYPE_BYTES): {exc}"
                ) from exc
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
                raise ApiError(400, "Invalid value at 'messages.attributes': strings only.")
            stored.append(
                StoredMessage(
                    message_id=str(next(self._ids)),
                    data=data,
                    attributes=dict(attributes),
                    ordering_key=str(raw.get("orderingKey") or ""),
                    publish_time=datetime.datetime.now(datetime.UTC),
                )
            )
        for sub in self.subscriptions.values():
            if sub.topic == topic:
                sub.deliveries.extend(Delivery(m) for m in stored)
        self.cond.notify_all()
        return [m.message_id for m in stored]

    # ---------------------------------------------------------- subscriptions

    def take(self, sub: Subscription, max_messages: int) -> list[dict[str, Any]]:
        """Lease up to ``max_messages`` deliverable messages (caller holds cond)."""
        now = time.monotonic()
        out: list[dict[str, Any]] = []
        blocked: set[str] = set()
        for d in list(sub.deliveries):
            if len(out) >= max_messages:
                break
            if d.acked:
                continue
            key = d.message.ordering_key if sub.ordering else ""
            if d.ack_id is not None and d.lease_until > now:
                if key:
                    blocked.add(key)
                continue
            if key and key in blocked:
                continue
            if sub.dead_letter_topic and d.attempts >= sub.max_attempts:
                self._forward_dead_letter(sub, d)
                continue
            d.attempts += 1
            if d.ack_id is not None:
                sub.by_ack_id.pop(d.ack_id, None)
            d.ack_id = f"ack-{uuid.uuid4().hex}"
            d.lease_until = now + sub.ack_deadline
            sub.by_ack_id[d.ack_id] = d
            received: dict[str, Any] = {"ackId": d.ack_id, "message": d.message.to_json()}
            if sub.dead_letter_topic:
                received["deliveryAttempt"] = d.attempts
            out.append(received)
        sub.deliveries = [d for d in sub.deliveries if not d.acked]
        return out

    def _forward_dead_letter(self, sub: Subscription, d: Delivery) -> None:
        assert sub.dead_letter_topic is not None
        d.acked = True
        if d.ack_id is not None:
            sub.by_ack_id.pop(d.ack_id, None)
        if sub.dead_letter_topic not in self.topics:
            return  # Google drops it too (and reports the missing topic in metrics)
        attributes = {
            **d.message.attributes,
            "CloudPubSubDeadLetterSourceDeliveryCount": str(d.attempts),
            "CloudPubSubDeadLetterSourceSubscription": sub.name.rsplit("/", 1)[-1],
            "CloudPubSubDeadLetterSourceSubscriptionProject": sub.name.split("/")[1],
        }
        self.publish(
            sub.dead_letter_topic,
            [
                {
                    "data": d.message.data,
                    "attributes": attributes,
                    "orderingKey": d.message.ordering_key,
                }
            ],
        )

    def lookup(self, sub: Subscription, ack_ids: Any) -> list[Delivery]:
        """The deliveries ``ack_ids`` still lease; 400 for an id never issued."""
        if not isinstance(ack_ids, list) or not ack_ids:
            raise ApiError(400, "No ack ids specified.")
        found: list[Delivery] = []
        for ack_id in ack_ids:
            if not isinstance(ack_id, str) or not ack_id.startswith("ack-"):
                raise ApiError(
                    400, f"You have passed an invalid ack ID to the service (ack_id={ack_id})."
                )
            d = sub.by_ack_id.get(ack_id)
            if d is not None and not d.acked:
                found.append(d)
        return found


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment (the handler flushes after each request), and
    # without Nagle: otherwise the client's delayed ACK adds ~40 ms to every answer.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    state: PubSubState

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _client_gone(self) -> bool:
        """True when the client closed the connection (it timed out or was cancelled)."""
        sock: socket.socket = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            if self.path == "/token" and method == "POST":
                self._answer(200, self._token(raw))
                return
            if self.path.startswith(_METADATA_TOKEN) and method == "GET":
                self._answer(200, self._metadata_token())
                return
            self._check_bearer()
            if length > MAX_REQUEST_BYTES:
                raise ApiError(
                    400, f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes."
                )
            try:
                body = json.loads(raw) if raw else {}
            except ValueError as exc:
                raise ApiError(400, f"Invalid JSON payload received. {exc}") from exc
            if not isinstance(body, dict):
                raise ApiError(400, "Invalid JSON payload received: an object is expected.")
            found = _NAME.match(self.path.split("?", 1)[0])
            if found is None:
                raise ApiError(404, f"The requested URL {self.path} was not found on this server.")
            name, kind, verb = found.group(1), found.group(2), found.group(3)
            self._answer(200, self._route(method, name, kind, verb, body))
        except ApiError as exc:
            self._answer(exc.code, exc.body())

    def _token(self, raw: bytes) -> dict[str, Any]:
        """OAuth 2.0 token endpoint for service-account keys (RFC 7523 JWT bearer grant):
        the assertion must be signed by ``state.token_public_key`` for this audience."""
        state = self.state
        form = urllib.parse.parse_qs(raw.decode())
        with state.cond:
            state.calls["token"] += 1
            key, issued = state.token_public_key, state.access_token
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            raise ApiError(400, "unsupported_grant_type", "INVALID_ARGUMENT")
        try:
            claims = jwt.decode(
                form.get("assertion", [""])[0],
                key,
                algorithms=["RS256"],
                audience=f"http://{self.headers.get('Host')}/token",
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise ApiError(401, f"invalid_grant: {exc}", "UNAUTHENTICATED") from exc
        if "pubsub" not in str(claims.get("scope", "")):
            raise ApiError(400, "invalid_scope", "INVALID_ARGUMENT")
        return {"access_token": issued, "expires_in": 3600, "token_type": "Bearer"}

    def _metadata_token(self) -> dict[str, Any]:
        """The GCE / GKE metadata server's token for the attached service account
        (workload identity): needs ``Metadata-Flavor: Google``, as the real one does."""
        if self.headers.get("Metadata-Flavor", "").lower() != "google":
            raise ApiError(403, "Missing Metadata-Flavor:Google header.", "PERMISSION_DENIED")
        with self.state.cond:
            self.state.calls["metadataToken"] += 1
            issued = self.state.access_token
        return {"access_token": issued, "expires_in": 3599, "token_type": "Bearer"}

    def _check_bearer(self) -> None:
        """With ``state.access_token`` set, every API call must carry it (as Google's do)."""
        expected = self.state.access_token
        if expected is None:
            return
        if self.headers.get("Authorization") != f"Bearer {expected}":
            with self.state.cond:
                self.state.calls["unauthenticated"] += 1
            raise ApiError(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                "UNAUTHENTICATED",
            )

    def _route(
        self, method: str, name: str, kind: str, verb: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        state = self.state
        label = verb or f"{method.lower()}{'Topic' if kind == 'topics' else 'Subscription'}"
        with state.cond:
            state.calls[label] += 1
            failure = state.failing.get(label)
            if failure is not None:
                failure[2] -= 1
                if failure[2] <= 0:
                    del state.failing[label]
        if failure is not None:
            raise ApiError(failure[0], failure[1])
        if kind == "topics":
            return self._topic(method, name, verb, body)
        return self._subscription(method, name, verb, body)

    def _topic(
        self, method: str, name: str, verb: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        state = self.state
        with state.cond:
            if verb == "publish" and method == "POST":
                return {"messageIds": state.publish(name, body.get("messages"))}
            if verb is not None:
                raise ApiError(404, f"unknown method :{verb}")
            if method == "PUT":
                if name in state.topics:
                    raise ApiError(409, "Topic already exists")
                state.topics.add(name)
                return {"name": name}
            if name not in state.topics:
                raise ApiError(404, f"Resource not found (resource={name.rsplit('/', 1)[-1]}).")
            if method == "DELETE":
                state.topics.discard(name)
                return {}
            return {"name": name}

    def _subscription(
        self, method: str, name: str, verb: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        state = self.state
        if verb is None:
            with state.cond:
                return self._manage_subscription(method, name, body)
        with state.cond:
            sub = state.subscriptions.get(name)
            if sub is None:
                raise ApiError(404, f"Resource not found (resource={name.rsplit('/', 1)[-1]}).")
            if verb == "pull":
                return self._pull(sub, body)
            if verb == "acknowledge":
                for d in state.lookup(sub, body.get("ackIds")):
                    d.acked = True
                    sub.by_ack_id.pop(d.ack_id or "", None)
                sub.deliveries = [d for d in sub.deliveries if not d.acked]
                return {}
            if verb == "modifyAckDeadline":
                seconds = body.get("ackDeadlineSeconds")
                if not isinstance(seconds, int) or not 0 <= seconds <= 600:
                    raise ApiError(400, f"Invalid ack deadline given: {seconds}. Must be 0..600.")
                now = time.monotonic()
                # Like an ack, a late modify still counts while the message has not
                # been redelivered since (its ack id is still the current one).
                for d in state.lookup(sub, body.get("ackIds")):
                    d.lease_until = now + seconds
                state.cond.notify_all()
                return {}
            if verb == "seek":
                when = body.get("time")
                if not isinstance(when, str):
                    raise ApiError(400, "seek needs time (snapshots are not supported here)")
                cutoff = datetime.datetime.fromisoformat(when.replace("Z", "+00:00"))
                for d in sub.deliveries:
                    if d.message.publish_time <= cutoff:
                        d.acked = True
                        sub.by_ack_id.pop(d.ack_id or "", None)
                sub.deliveries = [d for d in sub.deliveries if not d.acked]
                return {}
            raise ApiError(404, f"unknown method :{verb}")

    def _manage_subscription(self, method: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        state = self.state
        if method == "PUT":
            if name in state.subscriptions:
                raise ApiError(409, "Subscription already exists")
            topic = body.get("topic")
            if topic not in state.topics:
                raise ApiError(404, f"Resource not found (resource={topic}).")
            deadline = body.get("ackDeadlineSeconds", 10) or 10
            if not isinstance(deadline, int) or not 10 <= deadline <= 600:
                raise ApiError(400, f"Invalid ack deadline given: {deadline}. Must be 10..600.")
            sub = Subscription(name, topic, deadline, bool(body.get("enableMessageOrdering")))
            policy = body.get("deadLetterPolicy")
            if policy:
                attempts = policy.get("maxDeliveryAttempts", 5) or 5
                if not isinstance(attempts, int) or not 5 <= attempts <= 100:
                    raise ApiError(400, "maxDeliveryAttempts must be between 5 and 100.")
                sub.dead_letter_topic = policy.get("deadLetterTopic")
                sub.max_attempts = attempts
            state.subscriptions[name] = sub
            return sub.to_json()
        found = state.subscriptions.get(name)
        if found is None:
            raise ApiError(404, f"Resource not found (resource={name.rsplit('/', 1)[-1]}).")
        if method == "DELETE":
            del state.subscriptions[name]
            return {}
        return found.to_json()

    def _pull(self, sub: Subscription, body: dict[str, Any]) -> dict[str, Any]:
        """Lease messages; long-poll unless returnImmediately (caller holds cond)."""
        state = self.state
        max_messages = body.get("maxMessages")
        if not isinstance(max_messages, int) or max_messages < 1:
            raise ApiError(400, "maxMessages must be a positive integer.")
        deadline = time.monotonic() + (0 if body.get("returnImmediately") else state.max_pull_wait)
        while True:
            if self._client_gone():
                return {}
            taken = state.take(sub, max_messages)
            if taken:
                return {"receivedMessages": taken}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {}
            # Short waits: notice expired leases and a client that hung up.
            state.cond.wait(min(remaining, 0.05))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops the SYNs of a burst of new connections (a pool of
    # 10 opening at once), which the client only retries after a second.
    request_queue_size = 128
    daemon_threads = True


class PubSubTestServer:
    """The server on a loopback port, in a daemon thread."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.state = PubSubState()
        handler = type("PubSubHandler", (_Handler,), {"state": self.state})
        self._httpd = _Server((host, port), handler)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="pubsub-standin", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


if __name__ == "__main__":
    # ``python -m tests.servers._pubsub_server PORT``: serve in a process of its own (the
    # benchmarks do, so the server does not compete with the measured client for a GIL).
    import sys

    server = PubSubTestServer("127.0.0.1", int(sys.argv[1]))
    server._httpd.serve_forever()
