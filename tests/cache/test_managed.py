"""ElastiCache and Azure Cache for Redis: the same contract over TLS, and their auth paths.

The token tests use controllable clocks: a token is minted once, reused, minted again
before it expires, and it is the password the connection presents to a real
redis-server (configured with an ACL user whose password is that token).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from cloudrift.cache import Cache, get_cache
from cloudrift.cache.azure_redis import REDIS_SCOPE, AzureRedisCache
from cloudrift.cache.elasticache import (
    ElastiCache,
    IAMTokenMinter,
    cache_name_from_host,
    sign_iam_token,
)
from cloudrift.core.exceptions import CacheConnectionError, ConfigurationError
from tests.clock import FakeClock
from tests.conformance.cache import CacheConformance
from tests.servers.redis import RedisServer
from tests.servers.tls import TLSFiles

APP_USER = "lyzr-app"
APP_SECRET = "k3y-with-p@:/?#%-chars"
AWS_KEYS = {"aws_access_key_id": "AKIATESTING", "aws_secret_access_key": "aws-secret-for-tests"}


def set_acl_user(server: RedisServer, user: str, *passwords: str) -> None:
    """Make ``user`` log in with exactly ``passwords`` on ``server``."""
    with server.client() as admin:
        admin.execute_command(
            "ACL",
            "SETUSER",
            user,
            "reset",
            "on",
            *[f">{p}" for p in passwords],
            "~*",
            "&*",
            "+@all",
        )


@pytest.fixture
def app_user(redis_tls: RedisServer) -> Iterator[RedisServer]:
    """The TLS server with an ACL user APP_USER / APP_SECRET; removed afterwards."""
    set_acl_user(redis_tls, APP_USER, APP_SECRET)
    yield redis_tls
    with redis_tls.client() as admin:
        admin.execute_command("ACL", "DELUSER", APP_USER)


@pytest.fixture(scope="session")
def plain_app_user(redis_server: RedisServer) -> RedisServer:
    """The session's plain server with the ACL user APP_USER / APP_SECRET (kept all session)."""
    set_acl_user(redis_server, APP_USER, APP_SECRET)
    return redis_server


@pytest.fixture
def plain_app(plain_app_user: RedisServer) -> RedisServer:
    """The plain server with APP_USER, flushed for this test."""
    plain_app_user.flush()
    return plain_app_user


def tls_options(server: RedisServer, tls: TLSFiles) -> dict[str, Any]:
    """Connection options reaching the TLS stand-in, verifying it against the test CA."""
    return {"port": server.port, "ssl_ca_certs": str(tls.ca_cert)}


# The managed providers' conformance runs over plain TCP (ssl=False) to keep the suite
# fast: TLS handshakes dominate on small machines. Their TLS path (verified, with the
# test CA) is exercised end to end by the token tests below and by TestRedisOverTLS,
# which uses the same client construction.


class TestElastiCacheAuthToken(CacheConformance):
    """Conformance of get_cache("elasticache", "from_auth_token") with an ACL user."""

    @pytest.fixture
    async def backend(self, plain_app: RedisServer) -> AsyncIterator[Cache]:
        """An ElastiCache backend authenticating with a username and AUTH token."""
        cache = get_cache(
            "elasticache",
            "from_auth_token",
            host="127.0.0.1",
            username=APP_USER,
            auth_token=APP_SECRET,
            port=plain_app.port,
            ssl=False,
        )
        yield cache
        await cache.close()


class TestAzureRedisAccessKey(CacheConformance):
    """Conformance of get_cache("azure_redis", "from_access_key") with an ACL user."""

    @pytest.fixture
    async def backend(self, plain_app: RedisServer) -> AsyncIterator[Cache]:
        """An Azure Redis backend authenticating with a username and access key."""
        cache = get_cache(
            "azure_redis",
            "from_access_key",
            host="127.0.0.1",
            username=APP_USER,
            access_key=APP_SECRET,
            port=plain_app.port,
            ssl=False,
        )
        yield cache
        await cache.close()


# ---------------------------------------------------------------- ElastiCache IAM


def test_iam_token_is_a_sigv4_presigned_connect_request() -> None:
    """The token names the cache, the connect action, the user, a 900 s expiry and a signature."""
    from botocore.credentials import Credentials

    token = sign_iam_token(
        cache_name="my-cluster",
        username=APP_USER,
        region="us-east-1",
        credentials=Credentials("AKIATESTING", "secret"),
    )
    assert token.startswith("my-cluster/?Action=connect&User=lyzr-app&")
    assert "X-Amz-Expires=900" in token and "X-Amz-Signature=" in token
    assert "%2Fus-east-1%2Felasticache%2Faws4_request" in token
    serverless = sign_iam_token(
        cache_name="c",
        username="u",
        region="eu-west-1",
        credentials=Credentials("AKIATESTING", "secret"),
        serverless=True,
    )
    assert "ResourceType=ServerlessCache" in serverless


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("my-cluster.abc123.ng.0001.use1.cache.amazonaws.com", "my-cluster"),
        ("master.My-Cluster.abc123.use1.cache.amazonaws.com", "my-cluster"),
        ("clustercfg.big.abc123.use1.cache.amazonaws.com", "big"),
    ],
)
def test_cache_name_is_taken_from_the_endpoint(host: str, name: str) -> None:
    """Without cache_name, the replication group id is read from the endpoint host."""
    assert cache_name_from_host(host) == name


def iam_cache(server: RedisServer, tls: TLSFiles, clock: FakeClock, **extra: Any) -> ElastiCache:
    """An IAM-auth ElastiCache backend on the TLS stand-in, on a fake clock."""
    cache = get_cache(
        "elasticache",
        "from_iam_auth",
        host="127.0.0.1",
        username=APP_USER,
        region="us-east-1",
        cache_name="my-cluster",
        clock=clock,
        **AWS_KEYS,
        **tls_options(server, tls),
        **extra,
    )
    assert isinstance(cache, ElastiCache)
    return cache


async def test_iam_token_is_minted_once_reused_and_reminted_before_expiry(
    redis_tls: RedisServer, tls_files: TLSFiles
) -> None:
    """One mint serves until 60 s before the 15-minute expiry; then a new token is minted."""
    clock = FakeClock()
    cache = iam_cache(redis_tls, tls_files, clock)
    provider = cache.token_provider
    assert provider is not None
    first = await provider.token()
    assert await provider.token() == first and provider.mint_count == 1
    assert provider.expires_at == clock.now + 900
    clock.now += 839  # still more than 60 s left
    await provider.token()
    assert provider.mint_count == 1
    clock.now += 2  # inside the refresh margin
    await provider.token()
    assert provider.mint_count == 2
    await cache.close()


async def test_iam_connection_presents_the_token_as_password(
    redis_tls: RedisServer, tls_files: TLSFiles
) -> None:
    """The server accepts the connection only because its ACL password is the minted token."""
    clock = FakeClock()
    async with iam_cache(redis_tls, tls_files, clock) as cache:
        provider = cache.token_provider
        assert provider is not None
        token = (await provider.token()).reveal()
        set_acl_user(redis_tls, APP_USER, token)
        await cache.set("k", b"v")
        assert await cache.get("k") == b"v"
        assert provider.mint_count == 1
        with redis_tls.client() as admin:
            names = {c["user"] for c in admin.client_list()}
        assert APP_USER in names
    with redis_tls.client() as admin:
        admin.execute_command("ACL", "DELUSER", APP_USER)


async def test_iam_token_not_matching_the_server_is_refused(
    redis_tls: RedisServer, tls_files: TLSFiles
) -> None:
    """A token the server does not accept gives CacheConnectionError, without the token."""
    set_acl_user(redis_tls, APP_USER, "some-other-password")
    async with iam_cache(redis_tls, tls_files, FakeClock(), max_attempts=1) as cache:
        with pytest.raises(CacheConnectionError, match="credentials") as info:
            await cache.get("k")
        assert "X-Amz-Signature" not in str(info.value)
    with redis_tls.client() as admin:
        admin.execute_command("ACL", "DELUSER", APP_USER)


async def test_iam_token_is_signed_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, redis_tls: RedisServer, tls_files: TLSFiles
) -> None:
    """Credential resolution and signing run in a worker thread, never on the loop's thread."""
    threads: list[int] = []
    original = IAMTokenMinter._sign

    def recording_sign(self: IAMTokenMinter) -> str:
        threads.append(threading.get_ident())
        return original(self)

    monkeypatch.setattr(IAMTokenMinter, "_sign", recording_sign)
    cache = iam_cache(redis_tls, tls_files, FakeClock())
    assert cache.token_provider is not None
    await cache.token_provider.token()
    assert threads and threads[0] != threading.get_ident()
    await cache.close()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"aws_access_key_id": "AKIA"}, "both"),
        ({**AWS_KEYS, "profile_name": "p"}, "not both"),
        ({"auth_token": "t"}, "does not take auth_token"),
    ],
)
def test_conflicting_iam_credentials_are_refused(extra: dict[str, str], match: str) -> None:
    """Half a key pair, keys plus a profile, or an AUTH token beside IAM are refused."""
    with pytest.raises(ConfigurationError, match=match):
        get_cache(
            "elasticache", "from_iam_auth", host="h", username="u", region="us-east-1", **extra
        )


def test_iam_auth_needs_a_region() -> None:
    """from_iam_auth without region says what is missing."""
    with pytest.raises(ConfigurationError, match="needs region"):
        get_cache("elasticache", "from_iam_auth", host="h", username="u")


def test_managed_connection_option_typos_are_refused() -> None:
    """A misspelled connection option on a managed provider suggests the right one."""
    with pytest.raises(ConfigurationError, match="ssl_ca_certs"):
        get_cache("elasticache", "from_auth_token", host="h", auth_token="t", ssl_ca_cert="x")


def test_managed_providers_verify_tls_by_default() -> None:
    """ElastiCache and Azure use TLS with verification unless told otherwise; None is refused."""
    e = get_cache("elasticache", "from_auth_token", host="h", auth_token="t")
    a = get_cache(
        "azure_redis", "from_access_key", host="c.redis.cache.windows.net", access_key="k"
    )
    assert repr(e) == "<ElastiCache provider='elasticache' location='rediss://h:6379/0'>"
    assert "rediss://c.redis.cache.windows.net:6380/0" in repr(a)
    with pytest.raises(ConfigurationError, match="ssl_cert_reqs"):
        get_cache("azure_redis", "from_access_key", host="h", access_key="k", ssl_cert_reqs=None)


def test_managed_secrets_never_appear_in_repr() -> None:
    """AUTH tokens, access keys, AWS secrets and client secrets stay out of repr()."""
    backends = [
        get_cache("elasticache", "from_auth_token", host="h", auth_token="tok-SECRET-1"),
        get_cache(
            "elasticache",
            "from_iam_auth",
            host="h",
            username="u",
            region="r",
            aws_access_key_id="AKIA",
            aws_secret_access_key="aws-SECRET-2",
        ),
        get_cache("azure_redis", "from_access_key", host="h", access_key="key-SECRET-3"),
    ]
    for backend in backends:
        text = repr(backend) + repr(vars(backend)) + repr(vars(backend._options))
        assert "SECRET" not in text


# ------------------------------------------------------------------ Azure Entra


class FakeAsyncTokenCredential:
    """Test double of azure.core.credentials_async.AsyncTokenCredential.

    Same method signatures, returns the real ``AccessToken`` type; hands out
    ``token-1``, ``token-2``... each valid ``lifetime`` seconds from the fake clock.
    """

    def __init__(self, clock: FakeClock, lifetime: int = 3600) -> None:
        self.clock, self.lifetime = clock, lifetime
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(f"token-{len(self.scopes)}", int(self.clock() + self.lifetime))

    async def close(self) -> None:
        self.closed = True


def refresher_tasks() -> list[asyncio.Task[Any]]:
    """The token-refresher tasks alive in this loop."""
    return [t for t in asyncio.all_tasks() if "_refresh_tokens" in repr(t.get_coro())]


def entra_cache(
    server: RedisServer, tls: TLSFiles, clock: FakeClock, credential: FakeAsyncTokenCredential
) -> AzureRedisCache:
    """An Entra-auth Azure Redis backend on the TLS stand-in, on a fake clock."""
    cache = get_cache(
        "azure_redis",
        "from_credential",
        host="127.0.0.1",
        username=APP_USER,
        credential=credential,
        clock=clock,
        **tls_options(server, tls),
    )
    assert isinstance(cache, AzureRedisCache)
    return cache


async def test_entra_token_is_reused_then_refreshed_before_expiry(
    redis_tls: RedisServer, tls_files: TLSFiles
) -> None:
    """The Redis scope is asked once; 5 minutes before expiry a new token is fetched."""
    clock = FakeClock()
    credential = FakeAsyncTokenCredential(clock)
    cache = entra_cache(redis_tls, tls_files, clock, credential)
    provider = cache.token_provider
    assert provider is not None
    assert (await provider.token()).reveal() == "token-1"
    assert (await provider.token()).reveal() == "token-1"
    assert credential.scopes == [(REDIS_SCOPE,)]
    clock.now += 3600 - 300 + 1
    assert (await provider.token()).reveal() == "token-2"
    await cache.close()
    assert credential.closed is False  # handed in by the caller, so left open


async def test_entra_refresher_renews_the_token_and_new_connections_use_it(
    redis_tls: RedisServer, tls_files: TLSFiles
) -> None:
    """The background refresher mints token-2 ahead of expiry; reconnecting presents token-2."""
    clock = FakeClock()
    credential = FakeAsyncTokenCredential(clock)
    set_acl_user(redis_tls, APP_USER, "token-1")
    cache = entra_cache(redis_tls, tls_files, clock, credential)
    waits: list[float] = []
    gate: asyncio.Queue[None] = asyncio.Queue()

    async def controlled_sleep(seconds: float) -> None:
        waits.append(seconds)
        await gate.get()
        clock.now += seconds

    cache._sleep = controlled_sleep  # type: ignore[method-assign]
    async with cache:
        await cache.set("k", b"v")  # connects with token-1 and starts the refresher
        for _ in range(100):
            if waits:
                break
            await asyncio.sleep(0)
        assert waits == [3600 - 300]
        set_acl_user(redis_tls, APP_USER, "token-2")  # the server now refuses token-1
        native = await cache.native()
        before = await native.client_id()
        gate.put_nowait(None)
        for _ in range(200):
            if len(waits) == 2:
                break
            await asyncio.sleep(0.005)
        assert cache.token_provider is not None and cache.token_provider.mint_count == 2
        assert await cache.get("k") == b"v"  # a new connection, authenticated with token-2
        assert await native.client_id() != before
        assert refresher_tasks()  # running while the cache is open
    assert refresher_tasks() == []  # close() stopped it
    with redis_tls.client() as admin:
        admin.execute_command("ACL", "DELUSER", APP_USER)


async def test_failing_credential_raises_cache_connection_error(
    redis_tls: RedisServer, tls_files: TLSFiles
) -> None:
    """A credential that cannot get a token gives CacheConnectionError naming the cause."""

    class Unavailable(FakeAsyncTokenCredential):
        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise RuntimeError("no managed identity endpoint")

    cache = entra_cache(redis_tls, tls_files, FakeClock(), Unavailable(FakeClock()))
    async with cache:
        with pytest.raises(CacheConnectionError, match="no managed identity endpoint"):
            await cache.get("k")
        assert await cache.health_check() is False


async def test_managed_identity_uses_only_managed_identity_and_closes_it() -> None:
    """from_managed_identity builds a ManagedIdentityCredential that close() closes."""
    from azure.identity.aio import ManagedIdentityCredential

    cache = get_cache(
        "azure_redis", "from_managed_identity", host="c.redis.cache.windows.net", username="oid"
    )
    assert isinstance(cache, AzureRedisCache) and cache.token_provider is not None
    credential = cache.token_provider._mint.credential  # type: ignore[attr-defined]
    assert isinstance(credential, ManagedIdentityCredential)
    closed: list[bool] = []
    original = credential.close

    async def recording_close() -> None:
        closed.append(True)
        await original()

    cache._options.on_close[0] = recording_close
    await cache.close()
    assert closed == [True]


def test_service_principal_secret_stays_hidden() -> None:
    """from_service_principal keeps the client secret out of repr()."""
    cache = get_cache(
        "azure_redis",
        "from_service_principal",
        host="h",
        username="oid",
        tenant_id="t",
        client_id="c",
        client_secret="sp-SECRET-4",
    )
    assert "SECRET" not in repr(cache) + repr(vars(cache)) + repr(vars(cache._options))


@pytest.mark.parametrize(
    ("provider", "method", "secret_option"),
    [
        ("elasticache", "from_auth_token", "auth_token"),
        ("azure_redis", "from_access_key", "access_key"),
    ],
)
async def test_static_secret_auth_works_over_verified_tls(
    app_user: RedisServer, tls_files: TLSFiles, provider: str, method: str, secret_option: str
) -> None:
    """ElastiCache AUTH tokens and Azure access keys authenticate over TLS verified by the CA."""
    async with get_cache(
        provider,
        method,
        host="127.0.0.1",
        username=APP_USER,
        **{secret_option: APP_SECRET},
        **tls_options(app_user, tls_files),
    ) as cache:
        await cache.set("k", "v")
        assert await cache.get("k") == b"v"


async def test_iam_without_any_aws_credentials_says_so(
    monkeypatch: pytest.MonkeyPatch, redis_tls: RedisServer, tls_files: TLSFiles, tmp_path: Any
) -> None:
    """With no keys, profile, env or instance role, the error says no AWS credentials were found."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    async with get_cache(
        "elasticache",
        "from_iam_auth",
        host="127.0.0.1",
        username=APP_USER,
        region="us-east-1",
        max_attempts=1,
        **tls_options(redis_tls, tls_files),
    ) as cache:
        with pytest.raises(CacheConnectionError, match="no AWS credentials"):
            await cache.get("k")


def test_managed_tls_options_with_tls_off_are_refused() -> None:
    """ssl=False plus a CA file is contradictory and raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="ssl=False"):
        get_cache(
            "azure_redis", "from_access_key", host="h", access_key="k", ssl=False, ssl_ca_certs="x"
        )


def test_misspelled_aws_option_given_directly_suggests_the_right_one() -> None:
    """ElastiCache(...) built directly still refuses a typo'd AWS option with a suggestion."""
    from cloudrift.cache.elasticache import ElastiCache

    with pytest.raises(ConfigurationError, match="did you mean 'aws_secret_access_key'"):
        ElastiCache("from_iam_auth", host="h", username="u", region="r", aws_secret_acess_key="x")  # type: ignore[call-arg]
