"""What every document provider shares: the connection plan, URI building, option checks.

A provider module turns the caller's options into a :class:`ConnectionPlan` (a URI, the
driver keyword options and the secrets inside them) without importing any SDK; the
driver module then hands that plan to PyMongo or Motor. Keeping the plan SDK-free makes
every provider's routing testable on its own and keeps ``import cloudrift.document``
free of third-party imports.

A provider describes itself with :class:`ProviderRules` (its name, whether its service
rejects retryable writes) and its ``plan()`` keeps only what is its own: the checks every
managed MongoDB-compatible service needs (empty values, credentials given twice, a port
out of range, retryable writes, TLS options without TLS) and the final assembly of the
plan live here, once. Adding a provider is a module with a ``plan()`` that calls them,
plus its line in ``cloudrift.document.PROVIDERS``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn, TypedDict
from urllib.parse import parse_qsl, quote, unquote, urlencode

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.factory import check_option_group
from cloudrift.core.secrets import Secret, redact
from cloudrift.core.validation import is_int, is_number

SCHEMES: Final = ("mongodb://", "mongodb+srv://")


@dataclass(frozen=True)
class ConnectionPlan:
    """Everything needed to build a driver client for one provider; never prints a secret."""

    provider: str
    #: The connection URI; it may hold a password, so it stays a Secret.
    uri: Secret
    #: Driver keyword options (camelCase, as PyMongo spells them); no secrets here.
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Credentials passed as driver keywords instead of inside the URI.
    credentials: Mapping[str, Secret] = field(default_factory=dict)
    #: Hosts as shown in messages and repr, e.g. ``"db.example.com:27017"``.
    hosts: str = ""
    #: Extra modules this plan needs at run time, and the cloudrift extra installing them.
    requires: tuple[str, ...] = ()
    extra: str | None = None

    def driver_kwargs(self) -> dict[str, Any]:
        """The keyword options for the driver constructor, credentials revealed."""
        return {**self.options, **{k: v.reveal() for k, v in self.credentials.items()}}

    def secrets(self) -> list[Secret]:
        """Every secret in the plan, for redaction of driver error texts."""
        found = [self.uri, *self.credentials.values()]
        password = uri_password(self.uri.reveal())
        if password:
            # Both spellings: drivers echo either the escaped or the decoded form.
            found += [Secret(password), Secret(unquote(password))]
        return found

    def redact(self, text: str) -> str:
        """``text`` with every secret of this plan (and any URL password) masked."""
        return redact(text, self.secrets())

    def __repr__(self) -> str:
        return f"ConnectionPlan(provider={self.provider!r}, hosts={self.hosts!r})"


# ------------------------------------------------------------------------------ URIs


def build_uri(
    hosts: Sequence[str],
    *,
    username: str | None = None,
    password: str | None = None,
    database: str = "",
    options: Mapping[str, str] | None = None,
) -> str:
    """A ``mongodb://`` URI whose user name and password are percent-escaped.

    Every character outside RFC 3986's unreserved set is escaped, so credentials
    holding ``@ : / ? # %`` (or anything else) survive the driver's parser intact.
    """
    userinfo = ""
    if username is not None:
        userinfo = quote(username, safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        userinfo += "@"
    query = urlencode(list((options or {}).items()), safe="@$")
    return f"mongodb://{userinfo}{','.join(hosts)}/{quote(database, safe='')}" + (
        f"?{query}" if query else ""
    )


def split_uri(uri: str) -> tuple[str, str, str]:
    """``(userinfo, hosts, query)`` of a MongoDB URI, without decoding anything."""
    scheme = next((s for s in SCHEMES if uri.startswith(s)), None)
    if scheme is None:
        raise ConfigurationError(
            f"a MongoDB URI must start with mongodb:// or mongodb+srv://, got {redact(uri)[:40]!r}"
        )
    rest = uri[len(scheme) :]
    authority, _, tail = rest.partition("/")
    if "?" in authority:  # mongodb://host?opt=1 without the slash
        authority, _, query = authority.partition("?")
    else:
        query = tail.partition("?")[2]
    userinfo, at, hosts = authority.rpartition("@")
    if not at:
        userinfo, hosts = "", authority
    if not hosts:
        raise ConfigurationError("the MongoDB URI names no host; give mongodb://host:port/")
    return userinfo, hosts, query


def uri_hosts(uri: str) -> str:
    """The host list of a URI (never its credentials)."""
    return split_uri(uri)[1]


def uri_password(uri: str) -> str | None:
    """The raw (still escaped) password in a URI, if any; used only to redact it."""
    try:
        userinfo = split_uri(uri)[0]
    except ConfigurationError:
        return None
    _, colon, password = userinfo.partition(":")
    return password if colon and password else None


def uri_has_credentials(uri: str) -> bool:
    """True when the URI carries a user name."""
    return bool(split_uri(uri)[0])


def uri_options(uri: str) -> dict[str, str]:
    """The URI's query options, keys lower-cased (MongoDB option names are case-insensitive)."""
    return {k.lower(): v for k, v in parse_qsl(split_uri(uri)[2], keep_blank_values=True)}


def uri_flag(uri: str, *names: str) -> bool | None:
    """The boolean value of the first of ``names`` present in the URI, else None."""
    opts = uri_options(uri)
    for name in names:
        if name.lower() in opts:
            return opts[name.lower()].strip().lower() in ("true", "1", "yes")
    return None


# --------------------------------------------------------------------------- options


def check_positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    """ConfigurationError unless ``value`` is None or a positive number."""
    if value is None:
        return
    if not is_number(value):
        raise ConfigurationError(f"{name} must be a number, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"{name} must be {'zero or more' if allow_zero else 'positive'}")


class PoolOptions(TypedDict, total=False):
    """The pool, timeout and TLS-file options every document provider takes
    (``**options: Unpack[...]``); times are in seconds."""

    max_pool_size: int | None
    min_pool_size: int | None
    max_idle_time: float | None
    connect_timeout: float | None
    socket_timeout: float | None
    server_selection_timeout: float | None
    #: A PEM CA bundle to verify the server with.
    tls_ca_file: str | None
    #: Only an explicit True turns certificate and host name verification off.
    tls_insecure: bool
    #: Further PyMongo keyword options; one repeating an option above is refused.
    driver_options: Mapping[str, Any] | None


class ClientOptions(PoolOptions, total=False):
    """:class:`PoolOptions` plus the application name the server logs (every provider
    but Cosmos, whose own ``appName=@<account>@`` stays)."""

    app_name: str | None


def common_options(where: str, group: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """Validated driver options from a :class:`PoolOptions` ``group`` (seconds in,
    PyMongo's milliseconds out); ConfigurationError naming ``where`` for a name not in
    ``group`` (options given to ``plan()`` directly, which the factory does not check)."""
    check_option_group(where, group, options)
    max_pool_size = options.get("max_pool_size")
    min_pool_size = options.get("min_pool_size")
    for name, count in (("max_pool_size", max_pool_size), ("min_pool_size", min_pool_size)):
        if count is not None and not is_int(count):
            raise ConfigurationError(f"{name} must be an int, got {type(count).__name__}")
    check_positive("max_pool_size", max_pool_size, allow_zero=True)  # 0 = unbounded (PyMongo)
    check_positive("min_pool_size", min_pool_size, allow_zero=True)
    if max_pool_size and min_pool_size is not None and min_pool_size > max_pool_size:
        raise ConfigurationError(
            f"min_pool_size ({min_pool_size}) is larger than max_pool_size ({max_pool_size})"
        )
    opts: dict[str, Any] = {}
    if max_pool_size is not None:
        opts["maxPoolSize"] = max_pool_size
    if min_pool_size is not None:
        opts["minPoolSize"] = min_pool_size
    for name, key in (
        ("max_idle_time", "maxIdleTimeMS"),
        ("connect_timeout", "connectTimeoutMS"),
        ("socket_timeout", "socketTimeoutMS"),
        ("server_selection_timeout", "serverSelectionTimeoutMS"),
    ):
        seconds = options.get(name)
        check_positive(name, seconds)
        if seconds is not None:
            opts[key] = max(1, round(seconds * 1000))
    app_name = options.get("app_name")
    if app_name is not None:
        if not isinstance(app_name, str) or not app_name:
            raise ConfigurationError("app_name must be a non-empty string")
        opts["appName"] = app_name
    tls_ca_file = options.get("tls_ca_file")
    if tls_ca_file is not None:
        if not isinstance(tls_ca_file, str) or not tls_ca_file:
            raise ConfigurationError("tls_ca_file must be the path of a PEM CA bundle")
        opts["tlsCAFile"] = tls_ca_file
    if options.get("tls_insecure"):
        # Only an explicit True turns verification off; None/False keep it on.
        opts["tlsInsecure"] = True
    driver_options = options.get("driver_options")
    if driver_options:
        clash = sorted(k for k in driver_options if k.lower() in {o.lower() for o in opts})
        if clash:
            raise ConfigurationError(
                f"driver_options repeats {', '.join(clash)}, which cloudrift already sets "
                "from its own option; give it once"
            )
        opts.update(driver_options)
    return opts


def tls_files(options: Mapping[str, Any]) -> bool:
    """True when ``options`` name a CA file or turn verification off (they need TLS)."""
    return bool(options.get("tls_ca_file") or options.get("tls_insecure"))


def refuse_retryable_writes(provider: str, uri: str, why: str) -> None:
    """ConfigurationError when a URI turns retryable writes on for a service that rejects them."""
    if uri_flag(uri, "retryWrites") is True:
        raise ConfigurationError(
            f"the {provider} URI sets retryWrites=true, but {why}; "
            "remove it (cloudrift sets retryWrites=false)"
        )


def tls_setting(uri: str | None, tls: bool | None, default: bool) -> bool:
    """The TLS choice from the explicit option, else the URI, else ``default``; conflicts fail."""
    in_uri = uri_flag(uri, "tls", "ssl") if uri else None
    if tls is not None and in_uri is not None and tls != in_uri:
        raise ConfigurationError(
            f"tls={tls} conflicts with the URI's tls={str(in_uri).lower()}; give it once"
        )
    if tls is not None:
        return tls
    return default if in_uri is None else in_uri


# ------------------------------------------------------------------ provider rules


@dataclass(frozen=True)
class ProviderRules:
    """The checks a provider's ``plan()`` shares with the others, worded with its name."""

    #: The provider name, as given to ``get_mongodb``.
    name: str
    #: Why the service rejects retryable writes (every plan then sets
    #: ``retryWrites=false`` and refuses a URI or driver option turning them on), or
    #: None when the service accepts them.
    no_retryable_writes: str | None = None
    #: The option group its ``plan(**options)`` takes.
    group: type = ClientOptions

    @property
    def where(self) -> str:
        """The provider as named at the start of every message."""
        return f"the {self.name!r} document provider"

    def fail(self, problem: str) -> NoReturn:
        """Raise ConfigurationError naming the provider."""
        raise ConfigurationError(f"{self.where}: {problem}")

    def refuse_empty(self, **values: str | Secret | None) -> None:
        """An option given as an empty string is refused (an unset env var, usually)."""
        for name, value in values.items():
            if value is not None and not (value.reveal() if isinstance(value, Secret) else value):
                self.fail(f"{name} is an empty string; give a value")

    def refuse_both(self, first: str, second: str, *, given: tuple[bool, bool]) -> None:
        """Two ways of saying where to connect, both given: refuse rather than pick one."""
        if all(given):
            self.fail(f"give either {first} or {second}, not both")

    def check_uri(self, uri: str) -> str:
        """The URI's hosts (for messages); refuses a URI turning retryable writes on."""
        if self.no_retryable_writes is not None:
            refuse_retryable_writes(self.name, uri, self.no_retryable_writes)
        return uri_hosts(uri)

    def host_port(self, host: str, port: object) -> str:
        """``host:port``; a port inside ``host`` wins over ``port``."""
        if not is_int(port) or not 0 < port < 65536:
            self.fail("port must be an int between 1 and 65535")
        return host if ":" in host else f"{host}:{port}"

    def check_auth(self, auth: object) -> None:
        """``auth`` is ``"password"`` (a database user) or ``"iam"`` (the cloud identity)."""
        if auth not in ("password", "iam"):
            self.fail(f"auth must be 'password' or 'iam', got {auth!r}")

    def host_uri(
        self,
        host: str,
        port: object,
        *,
        username: str | None,
        password: Secret | None,
        auth: str,
        database: str = "",
    ) -> tuple[str, Secret]:
        """``host:port`` and the URI built from it; the username and password go into
        the URI only under ``auth="password"``."""
        hosts = self.host_port(host, port)
        signs_in = auth == "password"
        uri = build_uri(
            [hosts],
            username=username if signs_in else None,
            password=password.reveal() if signs_in and password is not None else None,
            database=database,
        )
        return hosts, Secret(uri)

    def credentials(
        self, uri: str | None, username: str | None, password: Secret | None
    ) -> dict[str, Secret]:
        """Username and password given apart from a URI, as driver keywords (no escaping)."""
        if (username is None) != (password is None):
            self.fail("give username and password together")
        if username is None or password is None:
            return {}
        if uri is not None and uri_has_credentials(uri):
            self.fail("the uri already holds credentials; do not also pass username/password")
        return {"username": Secret(username), "password": password}

    def finish(
        self,
        *,
        uri: Secret,
        hosts: str,
        given: Mapping[str, Any],
        options: Mapping[str, Any],
        credentials: Mapping[str, Secret] | None = None,
        requires: tuple[str, ...] = (),
        extra: str | None = None,
    ) -> ConnectionPlan:
        """The plan: the caller's :attr:`group` options ``given`` (checked and converted
        by :func:`common_options`) overlaid with the provider's own driver ``options``.

        ``tls_ca_file`` and ``tls_insecure`` mean nothing without TLS (``options["tls"]``):
        refused then.
        """
        tuning = common_options(self.where, self.group, given)
        if self.no_retryable_writes is not None and any(
            key.lower() == "retrywrites" for key in given.get("driver_options") or {}
        ):
            self.fail(f"retryWrites cannot be changed; {self.no_retryable_writes}")
        if tls_files(given) and not options.get("tls"):
            self.fail("tls_ca_file / tls_insecure need TLS, which is off")
        merged = {**tuning, **options}
        if self.no_retryable_writes is not None:
            merged["retryWrites"] = False
        return ConnectionPlan(
            provider=self.name,
            uri=uri,
            options=merged,
            credentials=dict(credentials or {}),
            hosts=hosts,
            requires=requires,
            extra=extra,
        )


__all__ = [
    "SCHEMES",
    "ClientOptions",
    "ConnectionPlan",
    "PoolOptions",
    "ProviderRules",
    "build_uri",
    "check_positive",
    "common_options",
    "refuse_retryable_writes",
    "split_uri",
    "tls_files",
    "tls_setting",
    "uri_flag",
    "uri_has_credentials",
    "uri_hosts",
    "uri_options",
    "uri_password",
]
