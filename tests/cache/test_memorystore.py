"""Memorystore: the cache contract on a real TLS redis-server with an AUTH string
(requirepass), and IAM access tokens minted and refreshed from a Google credential."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis as redis_sync
from gcloud.aio.auth import Token
from gcloud.aio.auth.token import TokenResponse

from cloudrift.cache import Cache, get_cache
from cloudrift.cache.memorystore import MEMORYSTORE_SCOPE, MemorystoreCache
from cloudrift.core.exceptions import CacheConnectionError, ConfigurationError
from tests.clock import FakeClock
from tests.conformance.cache import CacheConformance
from tests.servers.redis import RedisServer, _start_redis
from tests.servers.tls import TLSFiles

AUTH_STRING = "memorystore-auth-p@:/?#%"


@pytest.fixture(scope="module")
def memorystore_server(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TLSFiles
) -> Iterator[RedisServer]:
    """A TLS redis-server with requirepass, as a Memorystore instance with AUTH and
    in-transit encryption is."""
    server = _start_redis(
        tmp_path_factory.mktemp("memorystore"),
        tls=tls_files,
        extra_args=["--requirepass", AUTH_STRING],
    )
    try:
        yield server
    finally:
        server.stop()


def admin(server: RedisServer, tls: TLSFiles) -> redis_sync.Redis:
    """A synchronous client authenticated with the AUTH string."""
    return redis_sync.Redis(
        host=server.host,
        port=server.port,
        password=AUTH_STRING,
        ssl=True,
        ssl_ca_certs=str(tls.ca_cert),
    )


def server_ca(tls: TLSFiles) -> str:
    """The server CA as PEM text, as the instance's serverCaCerts gives it."""
    return tls.ca_cert.read_text()


class TestMemorystoreAuthString(CacheConformance):
    """Conformance of get_cache("memorystore", "from_auth_string") over TLS with the server CA."""

    @pytest.fixture
    async def backend(
        self, memorystore_server: RedisServer, tls_files: TLSFiles
    ) -> AsyncIterator[Cache]:
        """A cache on the AUTH + TLS server, flushed."""
        with admin(memorystore_server, tls_files) as c:
            c.flushall()
        cache = get_cache(
            "memorystore",
            "from_auth_string",
            host=memorystore_server.host,
            port=memorystore_server.port,
            auth_string=AUTH_STRING,
            ssl_ca_data=server_ca(tls_files),
        )
        yield cache
        await cache.close()


class FakeGoogleToken(Token):
    """A gcloud.aio.auth Token whose refresh answers the real TokenResponse type without
    the network: ``tok-1``, ``tok-2``... each valid ``lifetime`` seconds."""

    def __init__(self, lifetime: int = 3600) -> None:
        super().__init__(service_file=None, scopes=[MEMORYSTORE_SCOPE])
        self.lifetime = lifetime
        self.refreshes = 0

    async def refresh(self, *, timeout: int) -> TokenResponse:  # noqa: ASYNC109 - Token's signature
        self.refreshes += 1
        return TokenResponse(value=f"tok-{self.refreshes}", expires_in=self.lifetime)


def iam_cache(server: RedisServer, tls: TLSFiles, clock: FakeClock, token: Any) -> MemorystoreCache:
    """An IAM-auth Memorystore cache as user "app" on the TLS server, on a fake clock."""
    cache = get_cache(
        "memorystore",
        "from_iam_auth",
        host=server.host,
        port=server.port,
        username="app",
        credential=token,
        clock=clock,
        ssl_ca_data=server_ca(tls),
    )
    assert isinstance(cache, MemorystoreCache)
    return cache


def set_app_password(server: RedisServer, tls: TLSFiles, password: str) -> None:
    """The server accepts user "app" with exactly ``password`` (the current token)."""
    with admin(server, tls) as c:
        c.execute_command("ACL", "SETUSER", "app", "reset", "on", f">{password}", "~*", "+@all")


async def test_iam_token_is_minted_reused_and_refreshed_before_expiry(
    memorystore_server: RedisServer, tls_files: TLSFiles
) -> None:
    """The access token is the password; reused until 5 minutes before expiry, then renewed."""
    clock = FakeClock()
    token = FakeGoogleToken()
    set_app_password(memorystore_server, tls_files, "tok-1")
    cache = iam_cache(memorystore_server, tls_files, clock, token)
    async with cache:
        await cache.set("k", b"v")  # authenticated with tok-1
        provider = cache.token_provider
        assert provider is not None
        assert (await provider.token()).reveal() == "tok-1" and token.refreshes == 1
        clock.now += 3600 - 300 - 1
        assert (await provider.token()).reveal() == "tok-1"
        clock.now += 2
        assert (await provider.token()).reveal() == "tok-2" and token.refreshes == 2


async def test_iam_refresher_recycles_connections_with_the_new_token(
    memorystore_server: RedisServer, tls_files: TLSFiles
) -> None:
    """The background refresher renews the token; reconnections present the new one."""
    clock = FakeClock()
    token = FakeGoogleToken()
    set_app_password(memorystore_server, tls_files, "tok-1")
    cache = iam_cache(memorystore_server, tls_files, clock, token)
    waits: list[float] = []
    gate: asyncio.Queue[None] = asyncio.Queue()

    async def controlled_sleep(seconds: float) -> None:
        waits.append(seconds)
        await gate.get()
        clock.now += seconds

    cache._sleep = controlled_sleep  # type: ignore[method-assign]
    async with cache:
        await cache.set("k", b"v")
        for _ in range(400):
            if waits:
                break
            await asyncio.sleep(0.005)
        assert waits == [3600 - 300]
        set_app_password(memorystore_server, tls_files, "tok-2")  # tok-1 now refused
        native = await cache.native()
        before = await native.client_id()
        gate.put_nowait(None)
        for _ in range(400):
            if len(waits) == 2:
                break
            await asyncio.sleep(0.005)
        assert token.refreshes == 2
        assert await cache.get("k") == b"v"  # a new connection, authenticated with tok-2
        assert await native.client_id() != before


async def test_failing_google_credential_raises_cache_connection_error(
    memorystore_server: RedisServer, tls_files: TLSFiles
) -> None:
    """A credential that cannot mint a token gives CacheConnectionError naming the cause."""

    class Broken(FakeGoogleToken):
        async def refresh(self, *, timeout: int) -> TokenResponse:  # noqa: ASYNC109
            raise RuntimeError("metadata server unreachable")

    cache = iam_cache(memorystore_server, tls_files, FakeClock(), Broken())
    with pytest.raises(CacheConnectionError, match="metadata server unreachable"):
        await cache.get("k")
    await cache.close()


def test_wrong_options_are_refused_with_the_fix() -> None:
    """Ambiguous auth, an unreadable service file and a non-Token credential are refused."""
    with pytest.raises(ConfigurationError, match="several auth methods"):
        get_cache("memorystore", host="10.0.0.3")
    with pytest.raises(ConfigurationError, match="service_file"):
        get_cache("memorystore", "from_iam_auth", host="10.0.0.3", service_file="/no/such.json")
    with pytest.raises(ConfigurationError, match=r"gcloud\.aio\.auth\.Token"):
        get_cache("memorystore", "from_iam_auth", host="10.0.0.3", credential=object())


def test_auth_string_never_appears_in_repr() -> None:
    """The AUTH string is a secret: repr of the cache and its options never shows it."""
    cache = get_cache("memorystore", host="10.0.0.3", auth_string="SECRET-AUTH")
    text = repr(cache) + repr(vars(cache)) + repr(vars(cache._options))  # type: ignore[attr-defined]
    assert "SECRET-AUTH" not in text
