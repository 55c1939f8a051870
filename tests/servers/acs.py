"""A local HTTP server speaking the Azure Communication Services email REST API.

What it implements (see STANDINS.md):

* ``POST /emails:send?api-version=...`` — checks the SDK's HMAC-SHA256 signature
  (``x-ms-date``, ``x-ms-content-sha256`` = base64 sha256 of the body, and
  ``Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=``
  over ``"VERB\\n/path?query\\n<date>;<host>;<hash>"`` keyed with the base64-decoded access
  key), validates the JSON body, and answers ``202 {"id", "status": "Running"}`` with
  ``Operation-Location`` and ``Retry-After``;
* ``GET /emails/operations/<id>?api-version=...`` — signed the same way; ``Running``
  for ``polls_before_done`` polls, then ``Succeeded`` (or ``Failed`` with an error).

Refusals are switched on per test: ``linked_domains`` (a sender outside them gets
404 ``DomainNotLinked``), ``refuse_recipients`` (400 ``InvalidRecipients``),
``throttle`` (429 with ``Retry-After``) and ``fail_operation`` (the operation ends
``Failed``). A wrong key gets 401 ``{"error": {"code": "Denied", ...}}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tests.servers._process import LOOPBACK

ACCESS_KEY = base64.b64encode(b"cloudrift-acs-test-access-key-32b").decode()


@dataclass
class ACSState:
    """What the server received and how it is told to behave."""

    access_key: str = ACCESS_KEY
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: JSON bodies of accepted send requests, in arrival order.
    sent: list[dict[str, Any]] = field(default_factory=list)
    #: Operation id → polls answered so far.
    operations: dict[str, int] = field(default_factory=dict)
    polls_before_done: int = 1
    linked_domains: set[str] = field(default_factory=lambda: {"example.com"})
    refuse_recipients: set[str] = field(default_factory=set)
    throttle: bool = False
    fail_operation: bool = False
    signature_failures: int = 0
    requests: int = 0
    #: Seconds each accepted send request is held open (to observe concurrency).
    send_delay: float = 0.0
    #: With N > 0, each send is held until N sends have been in flight at once, then
    #: for ``send_delay``: a client overlapping N sends is seen doing so however slowly
    #: a loaded machine schedules it. A latch: it stays open once reached, or once a
    #: send has waited ``send_gate_ceiling`` seconds (a client that never overlaps N).
    send_gate: int = 0
    send_gate_ceiling: float = 10.0
    gate_open: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0
    max_in_flight: int = 0

    def reset(self) -> None:
        """Forget messages and refusal settings."""
        with self.lock:
            self.sent.clear()
            self.operations.clear()
            self.polls_before_done = 1
            self.linked_domains = {"example.com"}
            self.refuse_recipients = set()
            self.throttle = False
            self.fail_operation = False
            self.signature_failures = 0
            self.requests = 0
            self.send_delay = 0.0
            self.send_gate = 0
            self.gate_open.clear()
            self.in_flight = 0
            self.max_in_flight = 0


def _handler(state: ACSState) -> type[BaseHTTPRequestHandler]:
    class ACSHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _answer(
            self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: str, message: str, **headers: str) -> None:
            self._answer(status, {"error": {"code": code, "message": message}}, headers)

        def _signed(self, body: bytes) -> bool:
            """Check the HMAC-SHA256 signature exactly as the service does."""
            date = self.headers.get("x-ms-date", "")
            content_hash = self.headers.get("x-ms-content-sha256", "")
            auth = self.headers.get("Authorization", "")
            expected_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
            prefix = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature="
            if not (date and auth.startswith(prefix) and content_hash == expected_hash):
                return False
            path_and_query = unquote(self.path)
            host = self.headers.get("Host", "")
            to_sign = f"{self.command}\n{path_and_query}\n{date};{host};{content_hash}"
            key = base64.b64decode(state.access_key)
            digest = hmac.new(key, to_sign.encode(), hashlib.sha256).digest()
            return hmac.compare_digest(auth[len(prefix) :], base64.b64encode(digest).decode())

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _authorised(self, body: bytes) -> bool:
            with state.lock:
                state.requests += 1
            if self._signed(body):
                return True
            with state.lock:
                state.signature_failures += 1
            self._error(401, "Denied", "Denied by the resource provider: invalid signature.")
            return False

        def do_POST(self) -> None:
            body = self._read_body()
            if not self._authorised(body):
                return
            parts = urlsplit(self.path)
            if parts.path != "/emails:send" or "api-version=" not in parts.query:
                self._error(404, "NotFound", f"no such route {parts.path}")
                return
            try:
                message = json.loads(body)
                sender = message["senderAddress"]
                recipients = message["recipients"]
                content = message["content"]
            except (ValueError, KeyError, TypeError) as exc:
                self._error(400, "BadRequest", f"invalid request body: {exc}")
                return
            if not content.get("subject") or not (content.get("plainText") or content.get("html")):
                self._error(400, "BadRequest", "subject and a body are required")
                return
            if state.throttle:
                self._error(429, "TooManyRequests", "Too many requests.", **{"Retry-After": "3"})
                return
            if sender.rpartition("@")[2].lower() not in state.linked_domains:
                self._error(
                    404, "DomainNotLinked", "The specified sender domain has not been linked."
                )
                return
            addresses = [
                r["address"].lower()
                for kind in ("to", "cc", "bcc")
                for r in recipients.get(kind, [])
            ]
            refused = [a for a in addresses if a in state.refuse_recipients]
            if refused:
                self._error(400, "InvalidRecipients", f"Invalid recipients: {', '.join(refused)}")
                return
            # The SDK may name the operation itself (Operation-Id header), as ACS allows.
            op_id = self.headers.get("Operation-Id") or str(uuid.uuid4())
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                if state.send_gate and state.in_flight >= state.send_gate:
                    state.gate_open.set()
            if state.send_gate and not state.gate_open.wait(state.send_gate_ceiling):
                state.gate_open.set()  # never reached: let the rest through, the test fails
            time.sleep(state.send_delay)
            with state.lock:
                state.in_flight -= 1
                state.sent.append(message)
                state.operations[op_id] = 0
            host = self.headers.get("Host", "")
            location = f"http://{host}/emails/operations/{op_id}?api-version=2025-09-01"
            self._answer(
                202,
                {"id": op_id, "status": "Running"},
                {"Operation-Location": location, "Retry-After": "0"},
            )

        def do_GET(self) -> None:
            if not self._authorised(b""):
                return
            parts = urlsplit(self.path)
            prefix = "/emails/operations/"
            if not parts.path.startswith(prefix):
                self._error(404, "NotFound", f"no such route {parts.path}")
                return
            op_id = parts.path[len(prefix) :]
            with state.lock:
                polls = state.operations.get(op_id)
                if polls is not None:
                    state.operations[op_id] = polls + 1
            if polls is None:
                self._error(404, "NotFound", f"operation {op_id} not found")
                return
            if polls < state.polls_before_done:
                self._answer(200, {"id": op_id, "status": "Running"}, {"Retry-After": "0"})
            elif state.fail_operation:
                self._answer(
                    200,
                    {
                        "id": op_id,
                        "status": "Failed",
                        "error": {
                            "code": "EmailDroppedAllRecipientsSuppressed",
                            "message": "All recipients suppressed.",
                        },
                    },
                )
            else:
                self._answer(200, {"id": op_id, "status": "Succeeded"})

    return ACSHandler


@dataclass
class ACSServer:
    """A running ACS email stand-in."""

    endpoint: str
    state: ACSState
    started_in: float
    access_key: str = ACCESS_KEY

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Accepted send requests (JSON bodies)."""
        with self.state.lock:
            return list(self.state.sent)

    @property
    def connection_string(self) -> str:
        """An ACS connection string for this server (plain http endpoint)."""
        return f"endpoint={self.endpoint}/;accesskey={self.access_key}"


@pytest.fixture(scope="session")
def acs_server() -> Iterator[ACSServer]:
    """The ACS email stand-in on a free 127.0.0.1 port for the whole session."""
    began = time.monotonic()
    state = ACSState()
    httpd = ThreadingHTTPServer((LOOPBACK, 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="acs-standin", daemon=True)
    thread.start()
    port = httpd.server_address[1]
    server = ACSServer(f"http://{LOOPBACK}:{port}", state, time.monotonic() - began)
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def acs(acs_server: ACSServer) -> ACSServer:
    """The session's ACS stand-in, reset for this test."""
    acs_server.state.reset()
    return acs_server
