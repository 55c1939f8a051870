"""Stand-ins for Microsoft Entra ID's token endpoints, as azure-identity calls them.

* ``identity_endpoint`` (plain HTTP, like App Service's local endpoint): the managed
  identity source azure-identity picks when ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``
  are set. ``GET /msi/token?api-version=2019-08-01&resource=<resource>[&client_id=<id>]``
  with ``X-IDENTITY-HEADER: <IDENTITY_HEADER>`` answers ``{"access_token", "expires_on"
  (epoch seconds, a string), "resource", "token_type", "client_id"}``; a wrong or missing
  header gets 401.
* ``entra_authority`` (HTTPS, the ``tls_files`` CA): an authority host for
  ``ClientSecretCredential(authority=...)`` / ``AZURE_AUTHORITY_HOST``.
  ``POST /<tenant>/oauth2/v2.0/token`` with the form ``grant_type=client_credentials``,
  ``client_id``, ``client_secret``, ``scope`` answers ``{"token_type", "expires_in",
  "ext_expires_in", "access_token"}``; a wrong client secret gets 401
  ``invalid_client``, as Entra ID answers.

Every token is an Entra-shaped JWT for ``https://storage.azure.com`` that Azurite's
``--oauth basic`` accepts (it checks issuer, audience and lifetime, not the signature),
numbered so each issued token differs. ``lifetime`` is the ``expires_on`` /
``expires_in`` the server announces (the JWT itself stays valid for an hour): 0 says
"already expired", so a client must come back before its next request. Both servers run
once per session (threads in this process); the function-scoped fixtures reset what they
recorded.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.servers._process import LOOPBACK
from tests.servers.tls import TLSFiles

#: The tenant every token claims to come from (Azurite reads ``tid`` / ``iss``).
TENANT = "11111111-2222-3333-4444-555555555555"
#: The header value a managed identity request must carry (App Service's secret).
IDENTITY_HEADER = "local-identity-header-value"
#: The service principal's id and secret the authority accepts (test values).
SP_CLIENT_ID = "cloudrift-test-app"
SP_CLIENT_SECRET = "sp-test-secret-value"
#: The resource a storage token is for.
STORAGE_RESOURCE = "https://storage.azure.com"

_serial = itertools.count(1)


def entra_style_jwt(subject: str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee") -> str:
    """A new bearer token shaped like Entra ID's, valid for an hour (Azurite checks all
    but its signature); a serial number in ``jti`` makes each one different."""
    now = int(time.time())
    claims = {
        "aud": STORAGE_RESOURCE,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        "oid": subject,
        "tid": TENANT,
        "jti": f"cloudrift-{next(_serial)}",
    }

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


@dataclass(frozen=True)
class TokenRequest:
    """One request the server received (and whether it handed out a token)."""

    method: str
    path: str
    #: Query parameters (first value of each).
    query: dict[str, str]
    #: Header names lower-cased.
    headers: dict[str, str]
    #: The form fields of a POST (first value of each).
    form: dict[str, str]
    #: The token handed out, or None when the request was refused.
    token: str | None


@dataclass
class EntraState:
    """What the server received and how it answers."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[TokenRequest] = field(default_factory=list)
    #: Seconds until the announced expiry of each token (0: already expired).
    lifetime: int = 3600

    def reset(self) -> None:
        """Forget requests; tokens live an hour again."""
        with self.lock:
            self.requests.clear()
            self.lifetime = 3600

    def recorded(self) -> list[TokenRequest]:
        """A copy of the requests so far, in arrival order."""
        with self.lock:
            return list(self.requests)


@dataclass(frozen=True)
class EntraServer:
    """A running token endpoint: its base URL and what it recorded."""

    url: str
    state: EntraState

    @property
    def identity_endpoint(self) -> str:
        """The value for ``IDENTITY_ENDPOINT`` (App Service managed identity)."""
        return f"{self.url}/msi/token"

    @property
    def tokens(self) -> list[TokenRequest]:
        """The requests that were answered with a token."""
        return [r for r in self.state.recorded() if r.token is not None]


def _handler(state: EntraState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self, form: dict[str, str], token: str | None) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.requests.append(
                    TokenRequest(self.command, url.path, query, headers, form, token)
                )

        def do_GET(self) -> None:
            """Managed identity: App Service's token endpoint."""
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path != "/msi/token":
                self._record({}, None)
                self._answer(404, {"error": "not_found"})
                return
            if self.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
                self._record({}, None)
                self._answer(401, {"error": "unauthorized", "message": "bad identity header"})
                return
            token = entra_style_jwt()
            self._record({}, token)
            self._answer(
                200,
                {
                    "access_token": token,
                    "expires_on": str(int(time.time()) + state.lifetime),
                    "resource": query.get("resource", STORAGE_RESOURCE),
                    "token_type": "Bearer",
                    "client_id": query.get("client_id", "system-assigned"),
                },
            )

        def do_POST(self) -> None:
            """Service principal: ``/<tenant>/oauth2/v2.0/token`` (client credentials)."""
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            form = {k: v[0] for k, v in parse_qs(raw).items()}
            if urlsplit(self.path).path != f"/{TENANT}/oauth2/v2.0/token":
                self._record(form, None)
                self._answer(404, {"error": "invalid_tenant"})
                return
            if (
                form.get("grant_type") != "client_credentials"
                or form.get("client_id") != SP_CLIENT_ID
                or form.get("client_secret") != SP_CLIENT_SECRET
            ):
                self._record(form, None)
                self._answer(
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.",
                    },
                )
                return
            token = entra_style_jwt()
            self._record(form, token)
            self._answer(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": state.lifetime,
                    "ext_expires_in": state.lifetime,
                    "access_token": token,
                },
            )

    return Handler


def _serve(context: ssl.SSLContext | None) -> tuple[ThreadingHTTPServer, EntraServer]:
    state = EntraState()
    server = ThreadingHTTPServer((LOOPBACK, 0), _handler(state))
    server.daemon_threads = True
    scheme = "http"
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=server.serve_forever, name="entra-stand-in", daemon=True).start()
    port = server.server_address[1]
    return server, EntraServer(f"{scheme}://{LOOPBACK}:{port}", state)


@contextlib.contextmanager
def serving(context: ssl.SSLContext | None) -> Iterator[EntraServer]:
    """A token endpoint (HTTPS with ``context``, else plain HTTP) for the ``with`` block:
    the session fixtures' servers, or one of a test's own, e.g. under another certificate."""
    server, running = _serve(context)
    try:
        yield running
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def identity_endpoint_server() -> Iterator[EntraServer]:
    """A plain-HTTP managed identity endpoint (App Service style) for the session."""
    with serving(None) as running:
        yield running


@pytest.fixture(scope="session")
def entra_authority_server(tls_files: TLSFiles) -> Iterator[EntraServer]:
    """An HTTPS Entra authority (certificate from the ``tls_files`` CA) for the session."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls_files.server_cert), str(tls_files.server_key))
    with serving(context) as running:
        yield running


@pytest.fixture
def identity_endpoint(identity_endpoint_server: EntraServer) -> Iterator[EntraServer]:
    """The session's managed identity endpoint, with nothing recorded yet."""
    identity_endpoint_server.state.reset()
    yield identity_endpoint_server
    identity_endpoint_server.state.reset()


@pytest.fixture
def entra_authority(entra_authority_server: EntraServer) -> Iterator[EntraServer]:
    """The session's Entra authority, with nothing recorded yet."""
    entra_authority_server.state.reset()
    yield entra_authority_server
    entra_authority_server.state.reset()
