"""Self-hosted Redis: ``from_url`` (redis://, rediss://, unix://) or ``from_credentials``."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from cloudrift.cache._redis import RedisBackend, RedisOptions
from cloudrift.core.auth import AuthMethod, auth_method, select_auth
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.secrets import Secret, redact_url, secret

_METHODS = [
    auth_method("from_url", ["url"], ["username", "password"]),
    auth_method("from_credentials", ["host"], ["username", "password"]),
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


def check_redis_url(url: str) -> None:
    """Refuse URLs whose password was not percent-encoded (it would connect elsewhere)."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(
            f"invalid Redis URL {shown}: {exc}. If the password holds characters such as "
            "@ : / ? # %, percent-encode it (urllib.parse.quote(password, safe='')) or "
            "pass password= separately"
        ) from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(
            f"invalid Redis URL {shown}: the scheme must be redis://, rediss:// or unix://"
        )
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        raise ConfigurationError(
            "invalid Redis URL: an '@' appears after the host, so the password holds an "
            "unencoded / ? or #; percent-encode it (urllib.parse.quote(password, safe='')) "
            "or pass password= separately"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigurationError(f"invalid Redis URL {shown}: it names no host")
    del port


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
        ssl: bool = False,
        ssl_ca_certs: str | None = None,
        ssl_ca_data: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: str = "required",
        ssl_check_hostname: bool = True,
        socket_timeout: float = 5.0,
        socket_connect_timeout: float = 5.0,
        socket_keepalive: bool = True,
        health_check_interval: int = 30,
        max_connections: int | None = None,
        retry_attempts: int = 3,
        retry_backoff_base: float = 0.05,
        retry_backoff_cap: float = 1.0,
        client_name: str | None = None,
    ) -> None:
        where = "the 'redis' cache provider"
        url_value = url.reveal() if isinstance(url, Secret) else url
        given = {"url": url_value, "host": host, "username": username, "password": password}
        method = choose_auth(where, auth_method, given, _METHODS)
        options = RedisOptions(
            port=port,
            db=db,
            username=username,
            password=secret(password),
            ssl=ssl,
            ssl_ca_certs=ssl_ca_certs,
            ssl_ca_data=ssl_ca_data,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            ssl_cert_reqs=ssl_cert_reqs,
            ssl_check_hostname=ssl_check_hostname,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            socket_keepalive=socket_keepalive,
            health_check_interval=health_check_interval,
            max_connections=max_connections,
            retry_attempts=retry_attempts,
            retry_backoff_base=retry_backoff_base,
            retry_backoff_cap=retry_backoff_cap,
            client_name=client_name,
        )
        tls_given = sorted(
            name
            for name, value in (
                ("ssl_ca_certs", ssl_ca_certs),
                ("ssl_ca_data", ssl_ca_data),
                ("ssl_certfile", ssl_certfile),
                ("ssl_keyfile", ssl_keyfile),
            )
            if value is not None
        )
        if method == "from_url":
            assert url_value is not None
            check_redis_url(url_value)
            parts = urlsplit(url_value)
            if parts.scheme != "rediss" and (ssl or tls_given):
                raise ConfigurationError(
                    f"{where}: TLS options ({', '.join(tls_given or ['ssl'])}) need a "
                    "rediss:// URL; change the scheme instead of passing ssl=True"
                )
            if password is not None and parts.password is not None:
                raise ConfigurationError(
                    f"{where}: the URL already holds a password; give it in the URL "
                    "or as password=, not both"
                )
            options.url = Secret(url_value)
            if parts.scheme == "unix":
                options.location = f"unix:{parts.path}"
            else:
                options.location = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"
                options.location += parts.path or "/0"
        else:
            assert host is not None
            if tls_given and not ssl:
                raise ConfigurationError(
                    f"{where}: {', '.join(tls_given)} given without ssl=True; "
                    "add ssl=True to connect over TLS"
                )
            options.host = host
            options.location = f"{'rediss' if ssl else 'redis'}://{host}:{port}/{db}"
        super().__init__(options)


__all__ = ["RedisCache", "check_redis_url", "choose_auth"]
