"""Self-hosted Redis: ``from_url`` (redis://, rediss://, unix://), ``from_credentials``,
or ``from_client`` (an existing ``redis.asyncio``-compatible client, never closed by us)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Unpack

from cloudrift.cache._redis import RedisBackend
from cloudrift.core.auth import AuthMethod, auth_method, select_auth
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.redis import (
    RedisConnectionOptions,
    RedisOptions,
    check_client,
    check_redis_url,
    check_url_options,
    connection_group,
    connection_values,
    tls_files_given,
    url_location,
)
from cloudrift.core.secrets import Secret, secret

_WHERE = "the 'redis' cache provider"
_METHODS = [
    auth_method("from_url", ["url"], ["username", "password"]),
    auth_method("from_credentials", ["host"], ["username", "password"]),
    # An existing redis.asyncio-compatible client (e.g. fakeredis), used as is.
    auth_method("from_client", ["client"]),
]


def choose_auth(
    where: str, auth_method: str | None, given: Mapping[str, object], methods: list[AuthMethod]
) -> str:
    """The auth method: the one named (checked against the options) or the one that fits."""
    names = [m.name for m in methods]
    if auth_method is None:
        return select_auth(where, given, methods)
    if auth_method not in names:
        raise ConfigurationError(
            f"{where}: unknown auth_method {auth_method!r}; valid: {', '.join(names)}"
        )
    method = next(m for m in methods if m.name == auth_method)
    present = {k for k, v in given.items() if v is not None}
    empty = sorted(k for k in present if given[k] == "")
    if empty:
        raise ConfigurationError(
            f"{where}: option(s) {', '.join(empty)} are set to an empty string; "
            "give a value or leave them out"
        )
    missing = sorted(method.required - present)
    if missing:
        raise ConfigurationError(f"{where}: {auth_method} needs {', '.join(missing)}")
    foreign = sorted(present - method.keys)
    if foreign:
        raise ConfigurationError(
            f"{where}: {auth_method} does not take {', '.join(foreign)}; "
            f"it takes {', '.join(sorted(method.keys))}"
        )
    return auth_method


class RedisCache(RedisBackend):
    """A self-hosted Redis (or any Redis-protocol server, e.g. Valkey, KeyDB)."""

    provider = "redis"

    def __init__(
        self,
        auth_method: str | None = None,
        *,
        url: str | Secret | None = None,
        host: str | None = None,
        port: int = 6379,
        db: int = 0,
        username: str | None = None,
        password: str | Secret | None = None,
        client: Any = None,
        **options: Unpack[RedisConnectionOptions],
    ) -> None:
        url_value = url.reveal() if isinstance(url, Secret) else url
        given = {
            "url": url_value,
            "host": host,
            "username": username,
            "password": password,
            "client": client,
        }
        method = choose_auth(_WHERE, auth_method, given, _METHODS)
        values = connection_values(_WHERE, options, port=port, db=db)
        if method == "from_client":
            moved = {"port": port != 6379 or None, "db": db != 0 or None}
            check_client(_WHERE, client, {**{k: True for k in options}, **moved})
            opts = RedisOptions(client=client, location=f"client={type(client).__name__}")
        else:
            opts = RedisOptions(
                port=port,
                db=db,
                username=username,
                password=secret(password),
                connection=connection_group(values),
            )
            if method == "from_url":
                assert url_value is not None
                _use_url(opts, url_value, password, values)
            else:
                assert host is not None
                _use_host(opts, host, values)
        super().__init__(opts)


def _use_url(opts: RedisOptions, url: str, password: object, values: Mapping[str, Any]) -> None:
    """Connect with ``url`` (TLS only through a rediss:// URL; one password only)."""
    check_url_options(_WHERE, url, password, values)
    opts.url = Secret(url)
    opts.location = url_location(url)


def _use_host(opts: RedisOptions, host: str, values: Mapping[str, Any]) -> None:
    """Connect to ``host`` (TLS files need ``ssl=True``)."""
    tls_given = tls_files_given(values)
    if tls_given and not values["ssl"]:
        raise ConfigurationError(
            f"{_WHERE}: {', '.join(tls_given)} given without ssl=True; "
            "add ssl=True to connect over TLS"
        )
    opts.host = host
    scheme = "rediss" if values["ssl"] else "redis"
    opts.location = f"{scheme}://{host}:{opts.port}/{opts.db}"


__all__ = ["RedisCache", "check_redis_url", "choose_auth"]
