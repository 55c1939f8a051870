"""Amazon DocumentDB: TLS on by default, ``retryWrites=false`` on every path, IAM auth.

DocumentDB rejects retryable writes, so every plan built here sets
``retryWrites=false`` as a driver keyword (which overrides the URI) and refuses a URI
that asks for them. ``auth="iam"`` uses the ``MONGODB-AWS`` mechanism with the default
AWS credential chain (env vars, profile, instance or task role).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.secrets import Secret, secret
from cloudrift.document.base import (
    ConnectionPlan,
    build_uri,
    common_options,
    refuse_retryable_writes,
    tls_setting,
    uri_has_credentials,
    uri_hosts,
)

DEFAULT_PORT = 27017
WHY = "DocumentDB rejects retryable writes"


def plan(
    *,
    uri: str | Secret | None = None,
    host: str | None = None,
    port: int = DEFAULT_PORT,
    username: str | None = None,
    password: str | Secret | None = None,
    auth: Literal["password", "iam"] = "password",
    tls: bool | None = None,
    tls_ca_file: str | None = None,
    tls_insecure: bool = False,
    replica_set: str | None = None,
    read_preference: str | None = None,
    max_pool_size: int | None = None,
    min_pool_size: int | None = None,
    max_idle_time: float | None = None,
    connect_timeout: float | None = None,
    socket_timeout: float | None = None,
    server_selection_timeout: float | None = None,
    app_name: str | None = None,
    driver_options: Mapping[str, Any] | None = None,
) -> ConnectionPlan:
    """The DocumentDB connection: ``uri``, or ``host`` + ``username`` + ``password`` (or IAM)."""
    where = "the 'documentdb' document provider"
    uri_secret = secret(uri)
    pw = secret(password)
    for name, value in (("uri", uri_secret), ("host", host), ("username", username)):
        if value is not None and not (value.reveal() if isinstance(value, Secret) else value):
            raise ConfigurationError(f"{where}: {name} is an empty string; give a value")
    if uri_secret is not None and host is not None:
        raise ConfigurationError(f"{where}: give either uri or host, not both")
    if uri_secret is None and host is None:
        raise ConfigurationError(
            f"{where} needs uri=... or host=... (with username/password, or auth='iam')"
        )
    if auth not in ("password", "iam"):
        raise ConfigurationError(f"{where}: auth must be 'password' or 'iam', got {auth!r}")

    raw_uri = uri_secret.reveal() if uri_secret is not None else None
    extra_opts: dict[str, Any] = {"retryWrites": False}
    credentials: dict[str, Secret] = {}
    requires: tuple[str, ...] = ()
    extra: str | None = None
    if raw_uri is not None:
        refuse_retryable_writes("documentdb", raw_uri, WHY)

    if auth == "iam":
        if username is not None or pw is not None or (raw_uri and uri_has_credentials(raw_uri)):
            raise ConfigurationError(
                f"{where}: auth='iam' takes its credentials from the default AWS chain "
                "(environment, profile, instance or task role); remove username/password"
            )
        extra_opts["authMechanism"] = "MONGODB-AWS"
        extra_opts["authSource"] = "$external"
        requires, extra = ("pymongo_auth_aws",), "aws"
    elif raw_uri is None:
        if username is None or pw is None:
            raise ConfigurationError(
                f"{where}: host=... needs username and password (or auth='iam')"
            )
    elif (username is None) != (pw is None):
        raise ConfigurationError(f"{where}: give username and password together")
    elif username is not None and uri_has_credentials(raw_uri):
        raise ConfigurationError(
            f"{where}: the uri already holds credentials; do not also pass username/password"
        )
    elif username is not None and pw is not None:
        credentials = {"username": Secret(username), "password": pw}

    if raw_uri is None:
        assert host is not None
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigurationError(f"{where}: port must be an int between 1 and 65535")
        hostport = host if ":" in host else f"{host}:{port}"
        built = build_uri(
            [hostport],
            username=username if auth == "password" else None,
            password=pw.reveal() if pw is not None and auth == "password" else None,
        )
        uri_secret, hosts = Secret(built), hostport
    else:
        assert uri_secret is not None
        hosts = uri_hosts(raw_uri)

    extra_opts["tls"] = tls_setting(raw_uri, tls, default=True)
    if replica_set is not None:
        extra_opts["replicaSet"] = replica_set
    if read_preference is not None:
        extra_opts["readPreference"] = read_preference
    options = common_options(
        max_pool_size=max_pool_size,
        min_pool_size=min_pool_size,
        max_idle_time=max_idle_time,
        connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        server_selection_timeout=server_selection_timeout,
        app_name=app_name,
        tls_ca_file=tls_ca_file,
        tls_insecure=tls_insecure,
        driver_options=driver_options,
    )
    if driver_options and any(k.lower() == "retrywrites" for k in driver_options):
        raise ConfigurationError(f"{where}: retryWrites cannot be changed; {WHY}")
    if (tls_ca_file or tls_insecure) and not extra_opts["tls"]:
        raise ConfigurationError(f"{where}: tls_ca_file / tls_insecure need TLS, which is off")
    return ConnectionPlan(
        provider="documentdb",
        uri=uri_secret,
        options={**options, **extra_opts},
        credentials=credentials,
        hosts=hosts,
        requires=requires,
        extra=extra,
    )
