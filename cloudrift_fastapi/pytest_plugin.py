"""pytest plugin (``pytest11`` entry point): cloudrift test fixtures, named ``cloudrift_*``.

Loaded automatically once cloudrift is installed; importing it imports nothing heavy.
Each server starts only when a test asks for it, on a free 127.0.0.1 port, and stops at
the end of the session.

Settings and in-memory backends (no service at all):

* ``cloudrift_memory_settings`` — CloudriftSettings with every category on ``memory``.
* ``cloudrift_memory_client`` — ``async with cloudrift_memory_client(app) as client:``
  runs ``app`` with every configured backend on a fresh memory one and yields an httpx
  client (the embedded document engine is needed only if the app has a document backend).
* ``cloudrift_memory_backends`` — ``{"storage", "queue", "mongodb", "cache", "email"}``
  memory backends, closed after the test; pass them to ``override_backends(app, **...)``.

Real protocols against local stand-ins (``pip install "cloudrift[dev]"``):

* ``cloudrift_moto`` — moto's server (S3, SQS, SES) for the session;
  ``cloudrift_s3_storage``, ``cloudrift_sqs_queue``, ``cloudrift_ses_email`` give backends
  on a fresh bucket / queue / verified sender pointed at it.
* ``cloudrift_redis`` — fakeredis's TCP server; ``cloudrift_redis_cache`` a ``redis``
  cache on it, flushed for the test.
* ``cloudrift_smtp_sink`` — an aiosmtpd server that records every message;
  ``cloudrift_smtp_email`` an ``smtp`` email backend sending to it.

Async fixtures are defined when pytest-asyncio is installed.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as MimeMessage
from typing import Any

import pytest

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - without pytest-asyncio only sync fixtures exist
    pytest_asyncio = None  # type: ignore[assignment]

LOOPBACK = "127.0.0.1"
SENDER = "sender@example.test"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------- servers


@dataclass
class MotoServer:
    """moto's server: endpoint and throwaway credentials for every AWS provider."""

    endpoint_url: str
    region: str = "us-east-1"
    access_key: str = "AKIACLOUDRIFTTESTING"
    secret_key: str = "cloudrift-moto-secret"
    started_in: float = 0.0

    def options(self) -> dict[str, str]:
        """Keyword options that point an AWS provider (s3, sqs, ses) at this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
        }

    def client(self, service: str) -> Any:
        """A plain boto3 client for setting up or inspecting state."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )


@dataclass
class FakeRedisServer:
    """fakeredis speaking RESP over TCP."""

    host: str
    port: int
    started_in: float = 0.0

    @property
    def url(self) -> str:
        """``redis://host:port/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def flush(self) -> None:
        """Empty every database."""
        import redis

        with redis.Redis(host=self.host, port=self.port) as client:
            client.flushall()


@dataclass
class SMTPSink:
    """A plaintext SMTP server that accepts everything and records it."""

    host: str
    port: int
    messages: list[MimeMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    started_in: float = 0.0

    def options(self) -> dict[str, Any]:
        """Keyword options for ``get_email("smtp", ...)`` to send here."""
        return {"host": self.host, "port": self.port, "mode": "plaintext"}


@pytest.fixture(scope="session")
def cloudrift_moto() -> Iterator[MotoServer]:
    """moto's ThreadedMotoServer on a free loopback port for the whole session."""
    from moto.server import ThreadedMotoServer

    began = time.monotonic()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoServer(f"http://{host}:{port}", started_in=time.monotonic() - began)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cloudrift_redis() -> Iterator[FakeRedisServer]:
    """fakeredis's TCP server on a free loopback port for the whole session."""
    from fakeredis import TcpFakeServer

    began = time.monotonic()
    port = _free_port()
    server = TcpFakeServer((LOOPBACK, port))
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="cloudrift-redis")
    thread.start()
    try:
        yield FakeRedisServer(LOOPBACK, port, started_in=time.monotonic() - began)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def cloudrift_smtp_sink() -> Iterator[SMTPSink]:
    """An aiosmtpd server recording every message sent during this test."""
    from aiosmtpd.controller import Controller

    sink = SMTPSink(LOOPBACK, _free_port())

    class Recorder:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            sink.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            sink.messages.append(message_from_bytes(envelope.original_content))
            return "250 OK"

    began = time.monotonic()
    controller = Controller(Recorder(), hostname=sink.host, port=sink.port)
    controller.start()
    sink.started_in = time.monotonic() - began
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def cloudrift_memory_client() -> Any:
    """``async with cloudrift_memory_client(app) as client:`` runs ``app`` on fresh memory
    backends (its configured ones are never built) and gives an httpx client for it.

    ``cloudrift[embedded]`` is needed only when the app configures a document backend."""
    from cloudrift_fastapi.testing import memory_client

    return memory_client


@pytest.fixture
def cloudrift_memory_settings() -> Any:
    """CloudriftSettings with every category on its ``memory`` provider."""
    from cloudrift_fastapi.testing import memory_settings

    return memory_settings()


# ---------------------------------------------------------------------- backends

if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def cloudrift_memory_backends() -> AsyncIterator[dict[str, Any]]:
        """A fresh memory backend of every category (storage, queue, mongodb, cache, email),
        keyed for ``override_backends``, closed afterwards."""
        from cloudrift.core import categories
        from cloudrift.core.categories import call_hook
        from cloudrift_fastapi.testing import memory_settings

        settings = memory_settings()
        built: list[tuple[Any, Any]] = []
        try:
            for spec in categories.specs():
                built.append((spec, settings.open_backend(spec.name)))
            yield {spec.backend.key: backend for spec, backend in built}
        finally:
            for spec, backend in reversed(built):
                await call_hook(spec.close, backend)

    @pytest_asyncio.fixture
    async def cloudrift_s3_storage(cloudrift_moto: MotoServer) -> AsyncIterator[Any]:
        """An ``s3`` storage backend on a fresh bucket in moto."""
        from cloudrift.storage import get_storage

        bucket = f"cloudrift-{uuid.uuid4().hex[:12]}"
        cloudrift_moto.client("s3").create_bucket(Bucket=bucket)
        storage = get_storage("s3", bucket=bucket, **cloudrift_moto.options())
        try:
            yield storage
        finally:
            await storage.close()

    @pytest_asyncio.fixture
    async def cloudrift_sqs_queue(cloudrift_moto: MotoServer) -> AsyncIterator[Any]:
        """An ``sqs`` queue backend on a fresh standard queue in moto."""
        from cloudrift.messaging import get_queue

        name = f"cloudrift-{uuid.uuid4().hex[:12]}"
        url = cloudrift_moto.client("sqs").create_queue(QueueName=name)["QueueUrl"]
        queue = get_queue("sqs", queue_url=url, **cloudrift_moto.options())
        try:
            yield queue
        finally:
            await queue.close()

    @pytest_asyncio.fixture
    async def cloudrift_ses_email(cloudrift_moto: MotoServer) -> AsyncIterator[Any]:
        """A ``ses`` email backend in moto whose default sender is verified."""
        from cloudrift.email import get_email

        cloudrift_moto.client("sesv2").create_email_identity(EmailIdentity=SENDER)
        email = get_email("ses", default_from=SENDER, **cloudrift_moto.options())
        try:
            yield email
        finally:
            await email.close()

    @pytest_asyncio.fixture
    async def cloudrift_redis_cache(cloudrift_redis: FakeRedisServer) -> AsyncIterator[Any]:
        """A ``redis`` cache on fakeredis's TCP server, flushed for this test."""
        from cloudrift.cache import get_cache

        cloudrift_redis.flush()
        cache = get_cache("redis", "from_url", url=cloudrift_redis.url)
        try:
            yield cache
        finally:
            await cache.close()

    @pytest_asyncio.fixture
    async def cloudrift_smtp_email(cloudrift_smtp_sink: SMTPSink) -> AsyncIterator[Any]:
        """An ``smtp`` email backend sending (plaintext) to ``cloudrift_smtp_sink``."""
        from cloudrift.email import get_email

        email = get_email("smtp", default_from=SENDER, **cloudrift_smtp_sink.options())
        try:
            yield email
        finally:
            await email.close()
