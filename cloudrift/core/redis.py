"""Every Redis client cloudrift opens is built here: the cache flavours (``redis``,
``elasticache``, ``azure_redis``), the redis queue, the KV store over a cache, and what
comes next (topics, Redis Cluster).

One place for:

* the connection options (:class:`RedisConnectionOptions`, and
  :class:`RedisServerOptions` for a host + port) — declared once as ``TypedDict``\\ s that
  constructors take as ``**options: Unpack[...]``, so :mod:`cloudrift.core.factory` and
  the settings still see every name and type;
* one meaning of ``max_attempts``: total attempts *including the first* (1 = no retry),
  the same as every other provider; the old names (``retry_attempts``) are refused
  with a message naming the new one;
* the retry object: ``redis.asyncio.retry.Retry``. The synchronous ``redis.retry.Retry``
  handed to an asyncio client is silently ignored (its ``call_with_retry`` returns
  the coroutine unawaited, so nothing is ever retried);
* a client handed in by the caller (``client=``, e.g. ``fakeredis.FakeAsyncRedis()``):
  used as is and never closed by us (whoever opens a client closes it).

redis-py is imported inside the functions that need it, so importing this module (and
reading its option groups) needs no extra.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Final, TypedDict, cast
from urllib.parse import urlsplit

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.factory import RENAMED, check_option_group, reject_renamed
from cloudrift.core.secrets import Secret, redact_url
from cloudrift.core.validation import check_int, check_number

if TYPE_CHECKING:
    from redis.credentials import CredentialProvider


class RedisConnectionOptions(TypedDict, total=False):
    """Connection options every Redis client takes (defaults in :data:`DEFAULTS`)."""

    #: TLS. ``ssl_cert_reqs`` is ``"required"`` unless turned off explicitly.
    ssl: bool
    ssl_ca_certs: str | None
    ssl_ca_data: str | None
    ssl_certfile: str | None
    ssl_keyfile: str | None
    ssl_cert_reqs: str
    ssl_check_hostname: bool
    #: Seconds.
    socket_timeout: float
    socket_connect_timeout: float
    socket_keepalive: bool
    #: Seconds between PINGs on an idle pooled connection before it is reused (0: off).
    health_check_interval: int
    max_connections: int | None
    #: Total attempts of a command, the first included (1 = no retry).
    max_attempts: int
    retry_backoff_base: float
    retry_backoff_cap: float
    client_name: str | None
    #: Redis Cluster (ElastiCache cluster mode, Azure OSS-cluster policy, Valkey/Redis
    #: OSS clusters): ``host``/``port`` or the URL name one node; the rest is discovered.
    cluster: bool


class RedisServerOptions(RedisConnectionOptions, total=False):
    """:class:`RedisConnectionOptions` plus where the server is (managed Redis, cache)."""

    #: None: the provider's default port (6379; 6380 for Azure).
    port: int | None
    db: int


#: The default of every connection option.
DEFAULTS: Final[Mapping[str, Any]] = {
    "ssl": False,
    "ssl_ca_certs": None,
    "ssl_ca_data": None,
    "ssl_certfile": None,
    "ssl_keyfile": None,
    "ssl_cert_reqs": "required",
    "ssl_check_hostname": True,
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
    "socket_keepalive": True,
    "health_check_interval": 30,
    "max_connections": None,
    "max_attempts": 3,
    "retry_backoff_base": 0.05,
    "retry_backoff_cap": 1.0,
    "client_name": None,
    "cluster": False,
}

_CERT_REQS = ("required", "optional", "none")
_TLS_FILES = ("ssl_ca_certs", "ssl_ca_data", "ssl_certfile", "ssl_keyfile")


def check_tls_options(ssl_cert_reqs: object, ssl_check_hostname: object) -> None:
    """TLS verification is on unless turned off explicitly with ``ssl_cert_reqs="none"``."""
    if ssl_cert_reqs not in _CERT_REQS:
        raise ConfigurationError(
            f"ssl_cert_reqs must be one of {', '.join(map(repr, _CERT_REQS))}, got "
            f"{ssl_cert_reqs!r}; verification stays on unless you pass 'none' explicitly"
        )
    if not isinstance(ssl_check_hostname, bool):
        raise ConfigurationError(
            f"ssl_check_hostname must be True or False, got {ssl_check_hostname!r}"
        )


def connection_values(
    where: str,
    options: Mapping[str, Any],
    group: type = RedisConnectionOptions,
    **defaults: Any,
) -> dict[str, Any]:
    """``options`` checked against ``group`` (unknown names refused with a suggestion,
    old names with their new one, values type- and range-checked), over the defaults
    (:data:`DEFAULTS`, then the provider's own ``defaults``)."""
    reject_renamed(where, options, RENAMED)
    check_option_group(where, group, options)
    values = {**DEFAULTS, **defaults, **options}
    check_tls_options(values["ssl_cert_reqs"], values["ssl_check_hostname"])
    if not isinstance(values["ssl"], bool):
        raise ConfigurationError(f"{where}: ssl must be True or False, got {values['ssl']!r}")
    if "port" in values and values["port"] is not None:
        check_int("port", values["port"], at_least=1, at_most=65535)
    if "db" in values:
        check_int("db", values["db"], at_least=0)
    for name in ("socket_timeout", "socket_connect_timeout", "retry_backoff_base"):
        check_number(name, values[name], above=0)
    check_number("retry_backoff_cap", values["retry_backoff_cap"], at_least=0)
    check_int("health_check_interval", values["health_check_interval"], at_least=0, unit="seconds")
    check_int("max_attempts", values["max_attempts"], at_least=1, hint="1 means no retry")
    if values["max_connections"] is not None:
        check_int("max_connections", values["max_connections"], at_least=1, hint="or None")
    if not isinstance(values["cluster"], bool):
        raise ConfigurationError(
            f"{where}: cluster must be True or False, got {values['cluster']!r}"
        )
    if values["cluster"] and values.get("db", 0) != 0:
        raise ConfigurationError(
            f"{where}: a Redis Cluster has only database 0, got db={values['db']!r}; "
            "drop db (use a key prefix to separate data) or turn cluster off"
        )
    return values


def tls_files_given(values: Mapping[str, Any]) -> list[str]:
    """The TLS file/data options that were set (they need TLS on)."""
    return sorted(k for k in _TLS_FILES if values.get(k) is not None)


@dataclass
class RedisOptions:
    """Everything needed to build one ``redis.asyncio.Redis`` client."""

    host: str = "localhost"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: Secret | None = None
    credential_provider: CredentialProvider | None = None
    url: Secret | None = None  # from_url: the whole URL may hold a password
    #: Checked connection options (:func:`connection_values`); defaults when empty.
    connection: dict[str, Any] = field(default_factory=dict)
    #: An existing client handed in by the caller: used as is, never closed by us.
    client: Any = None
    location: str = ""
    secrets: list[Secret] = field(default_factory=list)
    #: Coroutines run when the backend closes (e.g. an Azure credential it created).
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.connection = {**DEFAULTS, **self.connection}

    @property
    def cluster(self) -> bool:
        """True when the client is a ``redis.asyncio.cluster.RedisCluster``."""
        if self.client is not None:
            return is_cluster_client(self.client)
        return bool(self.connection["cluster"])

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the redis-py client (secrets revealed here only)."""
        c = self.connection
        kwargs: dict[str, Any] = {
            "db": self.db,
            "socket_timeout": c["socket_timeout"],
            "socket_connect_timeout": c["socket_connect_timeout"],
            "socket_keepalive": c["socket_keepalive"],
            "health_check_interval": c["health_check_interval"],
            "max_connections": c["max_connections"],
            "client_name": c["client_name"],
            "retry": async_retry(
                c["max_attempts"], c["retry_backoff_base"], c["retry_backoff_cap"]
            ),
        }
        if self.credential_provider is not None:
            kwargs["credential_provider"] = self.credential_provider
        else:
            if self.username is not None:
                kwargs["username"] = self.username
            if self.password is not None:
                kwargs["password"] = self.password.reveal()
        url = None if self.url is None else self.url.reveal()
        if url is None:
            kwargs.update(host=self.host, port=self.port)
        elif url.startswith("unix:"):
            del kwargs["socket_keepalive"]  # a TCP option; unix sockets refuse it
        if c["ssl"] or (url is not None and url.startswith("rediss:")):
            kwargs.update({k: c[k] for k in ("ssl_cert_reqs", "ssl_check_hostname", *_TLS_FILES)})
            if url is None:
                kwargs["ssl"] = True
        if c["cluster"]:
            # A cluster has db 0 only (checked), and a per-node pool size (an int).
            del kwargs["db"]
            if kwargs["max_connections"] is None:
                del kwargs["max_connections"]
        return kwargs


def async_retry(max_attempts: int, backoff_base: float, backoff_cap: float) -> Any:
    """The asyncio ``Retry`` for ``max_attempts`` total attempts (1 = no retry).

    Retries connection drops, timeouts and READONLY (an Azure/ElastiCache failover
    leaves clients on the demoted primary): redis-py closes the connection before each
    retry, so the retry reconnects, to the new primary.
    """
    from redis import exceptions as rex
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff

    return Retry(
        ExponentialWithJitterBackoff(base=backoff_base, cap=backoff_cap),
        max_attempts - 1,
        supported_errors=(rex.ConnectionError, rex.TimeoutError, rex.ReadOnlyError),
    )


def open_client(options: RedisOptions) -> Any:
    """A new ``redis.asyncio.Redis`` for ``options`` (the caller closes it), or the
    client handed in as ``options.client``."""
    if options.client is not None:
        return options.client
    import redis.asyncio as aioredis

    kwargs = options.client_kwargs()
    if options.connection["cluster"]:
        from redis.asyncio.cluster import RedisCluster

        # The retry above also covers TRYAGAIN/CLUSTERDOWN and connection errors:
        # RedisCluster re-reads the slot map and retries those within the same budget.
        # reinitialize_steps=0: a MOVED patches the one slot it names. redis-py's default
        # (a full refresh every 5th MOVED) disconnects every node's connections,
        # including those other tasks are in the middle of a command on, which then
        # fail; a resharding answers many MOVEDs at once.
        kwargs["reinitialize_steps"] = 0
        if options.url is not None:
            cluster = RedisCluster.from_url(options.url.reveal(), **kwargs)
        else:
            cluster = RedisCluster(**kwargs)
        send_asking_with_its_command(cluster)
        return cluster
    if options.url is not None:
        return aioredis.Redis.from_url(options.url.reveal(), **kwargs)
    return aioredis.Redis(**kwargs)


#: The address (host, port) of the node whose ASKING this task's next command must
#: carry; set by a withheld lone ASKING (see :func:`send_asking_with_its_command`).
_ASKING_FOR: ContextVar[tuple[str, int] | None] = ContextVar("cloudrift_asking_for", default=None)


def send_asking_with_its_command(cluster: Any) -> None:
    """Make ``cluster`` (a ``redis.asyncio.cluster.RedisCluster``) send the ``ASKING``
    of an ``ASK`` redirect on the same connection as the command it is for.

    ``ASKING`` lets the importing node of a migrating slot serve the next command *on
    that connection* only. redis-py's asyncio cluster client sends it as a command of
    its own, through the node's pool, and the redirected command then takes another
    pooled connection whenever more than one is idle: the importing node answers
    ``MOVED`` back to the source, the source answers ``ASK`` again, and under
    concurrent traffic the command bounces until redis-py gives up with ``TTL
    exhausted`` (16 redirects). The synchronous client does this right (same
    connection). Here every node's connections are of a subclass that withholds a
    lone ``ASKING`` (answering ``OK`` for it) and writes it in front of the task's
    next command to that node, in one write on one connection.
    """
    from redis.asyncio.connection import SSLConnection

    plain, tls = _asking_connection_classes()
    manager = cluster.nodes_manager
    base = manager.connection_kwargs["connection_class"]
    cls = tls if issubclass(base, SSLConnection) else plain
    manager.connection_kwargs["connection_class"] = cls
    for node in manager.startup_nodes.values():  # built before we could choose the class
        node.connection_class = cls


@cache
def _asking_connection_classes() -> tuple[type, type]:
    """The connection classes of :func:`send_asking_with_its_command` (plain, TLS),
    defined on first use: redis-py is imported only when a client is built."""
    from redis.asyncio.connection import Connection, SSLConnection
    from redis.exceptions import ResponseError

    lone_asking = [b"*1\r\n$6\r\nASKING\r\n"]  # Connection.pack_command("ASKING")

    class AskingConnection(Connection):
        """A connection that sends a redirect's ``ASKING`` with the command it is for.

        Only ``send_packed_command`` is on the hot path; the replies that differ (ours for
        a withheld ASKING, the real one to skip) are read by a ``read_response`` set on
        the instance for the one read that needs it.
        """

        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            target = _ASKING_FOR.get()
            if target is None:
                if command == lone_asking:
                    _ASKING_FOR.set((self.host, self.port))
                    self.__dict__["read_response"] = self._withheld_asking_reply
                    return
                await super().send_packed_command(command, check_health)
                return
            # Cleared first: connecting and health checks send commands of their own.
            _ASKING_FOR.set(None)
            if target != (self.host, self.port):  # not the node it was meant for: drop it
                await super().send_packed_command(command, check_health)
                return
            if isinstance(command, str):
                command = command.encode()
            parts: list[bytes] = [command] if isinstance(command, bytes) else list(command)
            await super().send_packed_command([*lone_asking, *parts], check_health)
            self.__dict__["read_response"] = self._read_past_asking_reply

        async def _withheld_asking_reply(self, *args: Any, **kwargs: Any) -> bytes:
            del self.__dict__["read_response"]
            return b"OK"

        async def _read_past_asking_reply(self, *args: Any, **kwargs: Any) -> Any:
            del self.__dict__["read_response"]
            # An error for ASKING (if any) is followed by the command's own answer
            # (MOVED...), which tells redis-py what to do: read past it either way.
            with suppress(ResponseError):
                await self.read_response()
            return await self.read_response(*args, **kwargs)

        async def disconnect(self, *args: Any, **kwargs: Any) -> None:
            self.__dict__.pop("read_response", None)  # a reply never read is gone with it
            await super().disconnect(*args, **kwargs)

    class AskingSSLConnection(AskingConnection, SSLConnection):
        """:class:`AskingConnection` over TLS."""

    return AskingConnection, AskingSSLConnection


def is_cluster_client(client: object) -> bool:
    """True for a ``redis.asyncio.cluster.RedisCluster`` (or a look-alike with a slot map)."""
    return callable(getattr(client, "keyslot", None)) and callable(
        getattr(client, "get_nodes", None)
    )


def hash_tag(name: str) -> str:
    """``name`` as a Redis Cluster hash tag: ``{name}``. Keys that all contain it map to
    one slot, so multi-key scripts and transactions over them work on a cluster (they
    fail with CROSSSLOT otherwise). Braces inside ``name`` are refused: Redis would
    hash only up to the first ``}``."""
    if "{" in name or "}" in name:
        raise ConfigurationError(
            f"{name!r} holds a brace; a Redis Cluster hash tag ends at the first '}}', "
            "so choose a name without { or }"
        )
    return "{" + name + "}"


def key_slot(key: str | bytes) -> int:
    """The Redis Cluster slot of ``key`` (0..16383; hash tags honoured)."""
    from redis.crc import key_slot as _slot

    return int(_slot(key.encode("utf-8") if isinstance(key, str) else key))


def owns_client(options: RedisOptions) -> bool:
    """True when we open (and so must close) the client; False for one handed in."""
    return options.client is None


def check_client(where: str, client: object, conflicting: Mapping[str, object]) -> None:
    """A client handed in must look like ``redis.asyncio.Redis`` and come alone: the
    options that would build a client (``conflicting``, when set) cannot apply to it."""
    if not callable(getattr(client, "execute_command", None)) or not callable(
        getattr(client, "pipeline", None)
    ):
        raise ConfigurationError(
            f"{where}: client must be a redis.asyncio.Redis-compatible client (e.g. "
            f"redis.asyncio.Redis(...) or fakeredis.FakeAsyncRedis()), not "
            f"{type(client).__name__}"
        )
    clashing = sorted(name for name, value in conflicting.items() if value is not None)
    if clashing:
        raise ConfigurationError(
            f"{where}: client= is used as is; {', '.join(clashing)} cannot apply to it. "
            "Configure the client you pass, or drop client= and let cloudrift build one"
        )


def check_redis_url(url: str) -> None:
    """Refuse URLs whose password was not percent-encoded (it would connect elsewhere)."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
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


def check_url_options(where: str, url: str, password: object, values: Mapping[str, Any]) -> None:
    """A URL connection: a valid Redis URL, TLS only through ``rediss://`` (TLS options
    with a plain URL would be ignored), and one password, not two."""
    check_redis_url(url)
    tls_given = tls_files_given(values)
    if urlsplit(url).scheme != "rediss" and (values["ssl"] or tls_given):
        raise ConfigurationError(
            f"{where}: TLS options ({', '.join(tls_given or ['ssl'])}) need a "
            "rediss:// URL; change the scheme instead of passing ssl=True"
        )
    parts = urlsplit(url)
    if values.get("cluster") and (parts.scheme == "unix" or parts.path.strip("/") not in ("", "0")):
        raise ConfigurationError(
            f"{where}: cluster=True needs a redis:// or rediss:// URL of one node, database "
            f"0 (a cluster has no other database and no unix socket); got {redact_url(url)}"
        )
    if password is not None and urlsplit(url).password is not None:
        raise ConfigurationError(
            f"{where}: the URL already holds a password; give it in the URL "
            "or as password=, not both"
        )


def url_location(url: str) -> str:
    """Where a Redis URL points, without its credentials (``redis://host:port/db``)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


def connection_group(values: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`RedisConnectionOptions` part of ``values`` (port/db removed)."""
    return cast(dict[str, Any], {k: v for k, v in values.items() if k in DEFAULTS})


__all__ = [
    "DEFAULTS",
    "RedisConnectionOptions",
    "RedisOptions",
    "RedisServerOptions",
    "async_retry",
    "check_client",
    "check_redis_url",
    "check_tls_options",
    "check_url_options",
    "connection_group",
    "connection_values",
    "hash_tag",
    "is_cluster_client",
    "key_slot",
    "open_client",
    "owns_client",
    "send_asking_with_its_command",
    "tls_files_given",
    "url_location",
]
