"""The Redis provider passes the cache contract on a real redis-server (plain and TLS)
and on fakeredis, and builds its client safely (passwords, TLS, URLs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import fakeredis
import pytest
import redis.asyncio as aioredis

from cloudrift.cache import Cache, get_cache
from cloudrift.cache.redis import RedisCache
from cloudrift.core.exceptions import CacheConnectionError, ConfigurationError
from tests.conformance.cache import CacheConformance
from tests.servers.redis import RedisServer
from tests.servers.tls import TLSFiles

# Every character the pitfall list names, plus a space and a percent sign.
HARD_PASSWORD = "p@:/?#% w=rd&x"


class TestRedisOnRealServer(CacheConformance):
    """Conformance of get_cache("redis", "from_url") on a real redis-server."""

    @pytest.fixture
    async def backend(self, redis: RedisServer) -> AsyncIterator[Cache]:
        """A cache on the session's redis-server, flushed."""
        cache = get_cache("redis", "from_url", url=redis.url)
        yield cache
        await cache.close()


class TestRedisOverTLS(CacheConformance):
    """Conformance of get_cache("redis", "from_credentials", ssl=True) on a TLS redis-server."""

    @pytest.fixture
    async def backend(self, redis_tls: RedisServer, tls_files: TLSFiles) -> AsyncIterator[Cache]:
        """A verified-TLS cache on the session's TLS redis-server."""
        cache = get_cache(
            "redis",
            "from_credentials",
            host=redis_tls.host,
            port=redis_tls.port,
            ssl=True,
            ssl_ca_certs=str(tls_files.ca_cert),
        )
        yield cache
        await cache.close()


class TestRedisOnFakeRedis(CacheConformance):
    """Conformance of get_cache("redis", client=fakeredis.FakeAsyncRedis()) (client handed in)."""

    @pytest.fixture
    async def backend(self) -> AsyncIterator[Cache]:
        """A cache over a private fakeredis server, handed in as client=."""
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        cache = get_cache("redis", client=client)
        yield cache
        await cache.close()
        await client.aclose()


# ----------------------------------------------------------------- client=


async def test_client_handed_in_is_used_and_left_open(redis: RedisServer) -> None:
    """A client passed as client= serves the cache and still works after cache.close()."""
    client = aioredis.Redis.from_url(redis.url)
    try:
        cache = get_cache("redis", client=client)
        await cache.set("k", b"v")
        assert await client.get("k") == b"v"
        await cache.close()
        assert await client.get("k") == b"v"  # not closed by the cache: we did not open it
    finally:
        await client.aclose()


async def test_client_the_cache_opened_is_closed_with_it(redis: RedisServer) -> None:
    """A client the cache built from a URL is closed by cache.close() (no connection left)."""
    cache = get_cache("redis", "from_url", url=redis.url)
    await cache.set("k", b"v")
    native = await cache.native()
    pool = native.connection_pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    assert any(c.is_connected for c in connections)
    await cache.close()
    assert not any(c.is_connected for c in connections)


@pytest.mark.parametrize(
    "options",
    [
        {"url": "redis://h:6379"},
        {"host": "h"},
        {"password": "pw"},
        {"socket_timeout": 1.0},
        {"max_attempts": 1},
        {"port": 6380},
    ],
)
def test_client_with_connection_options_is_refused(options: dict[str, Any]) -> None:
    """Options that would build a client cannot be combined with client= (never ignored)."""
    with pytest.raises(ConfigurationError, match="client"):
        get_cache("redis", client=fakeredis.FakeAsyncRedis(), **options)


def test_client_that_is_not_a_redis_client_is_refused() -> None:
    """client= must be a redis.asyncio-compatible client; a URL string is refused."""
    with pytest.raises(ConfigurationError, match=r"redis\.asyncio"):
        get_cache("redis", client="redis://localhost:6379")


@pytest.mark.parametrize("old", ["retry_attempts", "retry_total"])
def test_old_retry_option_names_say_what_they_became(old: str) -> None:
    """retry_attempts / retry_total raise ConfigurationError naming max_attempts."""
    with pytest.raises(ConfigurationError, match=f"'{old}' is now 'max_attempts'"):
        RedisCache("from_credentials", host="h", **{old: 2})  # type: ignore[arg-type]


def test_misspelled_connection_option_suggests_the_right_one() -> None:
    """An option from the shared group, misspelled, is refused with a did-you-mean."""
    with pytest.raises(ConfigurationError, match="did you mean 'socket_timeout'"):
        get_cache("redis", "from_credentials", host="h", socket_timout=1.0)
    with pytest.raises(ConfigurationError, match="did you mean 'socket_timeout'"):
        RedisCache("from_credentials", host="h", socket_timout=1.0)  # type: ignore[call-arg]


def test_max_attempts_counts_the_first_attempt() -> None:
    """max_attempts=N gives redis-py N - 1 retries (an asyncio Retry, not the sync one)."""
    from redis.asyncio.retry import Retry

    cache = RedisCache("from_credentials", host="127.0.0.1", max_attempts=4)
    retry = cache._options.client_kwargs()["retry"]
    assert isinstance(retry, Retry)
    assert retry._retries == 3


# ----------------------------------------------------------------- passwords


@pytest.fixture
def redis_with_password(redis_server_factory: Any) -> RedisServer:
    """A private redis-server whose default user needs HARD_PASSWORD."""
    server: RedisServer = redis_server_factory(extra_args=["--requirepass", HARD_PASSWORD])
    return server


async def test_password_with_any_characters_works_in_credentials_form(
    redis_with_password: RedisServer,
) -> None:
    """from_credentials sends the password verbatim, whatever characters it holds."""
    async with get_cache(
        "redis",
        "from_credentials",
        host=redis_with_password.host,
        port=redis_with_password.port,
        password=HARD_PASSWORD,
    ) as cache:
        await cache.set("k", b"v")
        assert await cache.get("k") == b"v"


@pytest.mark.parametrize("username", ["", "default"])
async def test_percent_encoded_password_works_in_url_form(
    redis_with_password: RedisServer, username: str
) -> None:
    """A URL with the password percent-encoded (with or without the ACL 'default' user) works."""
    url = (
        f"redis://{username}:{quote(HARD_PASSWORD, safe='')}@127.0.0.1:{redis_with_password.port}/0"
    )
    async with get_cache("redis", "from_url", url=url) as cache:
        assert await cache.ping() is True


async def test_password_option_beside_a_url_needs_no_encoding(
    redis_with_password: RedisServer,
) -> None:
    """from_url with password= passes the raw password, so nothing needs escaping."""
    url = f"redis://127.0.0.1:{redis_with_password.port}/0"
    async with get_cache("redis", "from_url", url=url, password=HARD_PASSWORD) as cache:
        assert await cache.ping() is True


def test_unencoded_password_in_url_is_refused_without_leaking_it() -> None:
    """A raw / ? # in a URL password is refused (it would reach another host); no leak."""
    with pytest.raises(ConfigurationError, match="percent-encode") as info:
        get_cache("redis", "from_url", url=f"redis://:{HARD_PASSWORD}@cache.internal:6379/0")
    assert "w=rd" not in str(info.value)


async def test_wrong_password_raises_connection_error_without_the_password(
    redis_with_password: RedisServer,
) -> None:
    """Bad credentials raise CacheConnectionError naming the cause, never the password."""
    async with get_cache(
        "redis",
        "from_credentials",
        host="127.0.0.1",
        port=redis_with_password.port,
        password="wrong-secret-value",
        max_attempts=1,
    ) as cache:
        with pytest.raises(CacheConnectionError, match="credentials") as info:
            await cache.get("k")
        assert "wrong-secret-value" not in str(info.value)
        assert await cache.health_check() is False


def test_repr_shows_provider_and_location_never_the_password() -> None:
    """repr() names provider and host, and no credential, in both auth forms."""
    a = get_cache("redis", "from_credentials", host="h", password="s3cr3t-pass")
    b = get_cache("redis", "from_url", url=f"redis://u:{quote('s3cr3t-pass')}@h:1/2")
    assert repr(a) == "<RedisCache provider='redis' location='redis://h:6379/0'>"
    assert repr(b) == "<RedisCache provider='redis' location='redis://h:1/2'>"
    assert "s3cr3t" not in repr(vars(a)) + repr(vars(b))


# ------------------------------------------------------------------------ TLS


async def test_tls_verification_is_on_by_default(redis_tls: RedisServer) -> None:
    """Without the CA, TLS to a self-signed server fails: nothing is trusted blindly."""
    async with get_cache(
        "redis", "from_url", url=redis_tls.url, max_attempts=1, socket_connect_timeout=2
    ) as cache:
        with pytest.raises(CacheConnectionError, match=r"(?i)certificate"):
            await cache.ping()


async def test_tls_verification_turns_off_only_when_asked(redis_tls: RedisServer) -> None:
    """ssl_cert_reqs="none" (explicit) connects without the CA."""
    async with get_cache(
        "redis",
        "from_credentials",
        host=redis_tls.host,
        port=redis_tls.port,
        ssl=True,
        ssl_cert_reqs="none",
        ssl_check_hostname=False,
    ) as cache:
        assert await cache.ping() is True


@pytest.mark.parametrize("bad", [None, False, "CERT_NONE", "no"])
def test_tls_verification_cannot_be_turned_off_by_accident(bad: object) -> None:
    """ssl_cert_reqs=None (or any unknown spelling) is refused instead of meaning CERT_NONE."""
    with pytest.raises(ConfigurationError, match="ssl_cert_reqs"):
        get_cache("redis", "from_credentials", host="h", ssl=True, ssl_cert_reqs=bad)


# ---------------------------------------------------------------- configuration


def test_unknown_auth_method_lists_the_valid_ones() -> None:
    """A misspelled auth method raises ConfigurationError listing from_url and from_credentials."""
    with pytest.raises(ConfigurationError, match="from_credentials"):
        get_cache("redis", "from_uri", url="redis://h")


def test_options_of_another_auth_method_are_refused() -> None:
    """from_url with host= is a conflict, not a silent choice."""
    with pytest.raises(ConfigurationError, match="does not take host"):
        get_cache("redis", "from_url", url="redis://h", host="other")


def test_empty_url_is_refused() -> None:
    """An empty url (an unset env var) raises instead of falling back to localhost."""
    with pytest.raises(ConfigurationError, match="empty string"):
        get_cache("redis", "from_url", url="")


def test_misspelled_option_is_refused_with_a_suggestion() -> None:
    """A typo in an option name raises ConfigurationError suggesting the right one."""
    with pytest.raises(ConfigurationError, match="socket_timeout"):
        get_cache("redis", "from_url", url="redis://h", socket_timout=1)


def test_auth_method_is_inferred_strictly_when_omitted() -> None:
    """Without auth_method, exactly one method must fit the options given."""
    cache = get_cache("redis", url="redis://h:1/0")
    assert "redis://h:1/0" in repr(cache)
    with pytest.raises(ConfigurationError, match="conflicting"):
        get_cache("redis", url="redis://h", host="h")


def test_wrong_scheme_is_refused() -> None:
    """An http:// URL is a configuration mistake."""
    with pytest.raises(ConfigurationError, match="scheme"):
        get_cache("redis", "from_url", url="http://h:6379")


async def test_unix_socket_url_works(redis_server_factory: Any, tmp_path: Any) -> None:
    """unix:// URLs reach a redis-server listening on a socket file."""
    sock = tmp_path / "r.sock"
    server: RedisServer = redis_server_factory(extra_args=["--unixsocket", str(sock)])
    assert server.port
    async with get_cache("redis", "from_url", url=f"unix://{sock}") as cache:
        await cache.set("k", "v")
        assert await cache.get("k") == b"v"


@pytest.mark.parametrize(
    "options",
    [
        {"auth_method": "from_url", "url": "redis://h:6379", "ssl": True},
        {"auth_method": "from_url", "url": "redis://h:6379", "ssl_ca_certs": "/ca.pem"},
        {"auth_method": "from_credentials", "host": "h", "ssl_ca_certs": "/ca.pem"},
    ],
)
def test_tls_options_without_tls_are_refused(options: dict[str, Any]) -> None:
    """TLS options on a plain connection are a mistake, not silently ignored."""
    with pytest.raises(ConfigurationError, match=r"(rediss://|ssl=True)"):
        get_cache("redis", **options)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("port", "6379"),
        ("port", 0),
        ("db", -1),
        ("socket_timeout", 0),
        ("max_attempts", 0),
        ("health_check_interval", 1.5),
        ("max_connections", 0),
    ],
)
def test_bad_numeric_options_are_refused_at_construction(option: str, value: object) -> None:
    """A wrong port, db, timeout or retry count raises ConfigurationError naming the option."""
    with pytest.raises(ConfigurationError, match=option):
        get_cache("redis", "from_credentials", host="h", **{option: value})
