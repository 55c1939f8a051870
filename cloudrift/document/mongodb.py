"""Self-hosted MongoDB or Atlas: any ``mongodb://`` or ``mongodb+srv://`` URI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.secrets import Secret, secret
from cloudrift.document.base import (
    ConnectionPlan,
    common_options,
    tls_setting,
    uri_has_credentials,
    uri_hosts,
)


def plan(
    *,
    uri: str | Secret | None = None,
    username: str | None = None,
    password: str | Secret | None = None,
    tls: bool | None = None,
    tls_ca_file: str | None = None,
    tls_insecure: bool = False,
    max_pool_size: int | None = None,
    min_pool_size: int | None = None,
    max_idle_time: float | None = None,
    connect_timeout: float | None = None,
    socket_timeout: float | None = None,
    server_selection_timeout: float | None = None,
    app_name: str | None = None,
    driver_options: Mapping[str, Any] | None = None,
) -> ConnectionPlan:
    """Any MongoDB URI; ``username``/``password`` may be given apart so they need no escaping."""
    where = "the 'mongodb' document provider"
    uri_secret = secret(uri)
    if uri_secret is None or not uri_secret.reveal():
        raise ConfigurationError(f"{where} needs uri='mongodb://host:27017/' (or mongodb+srv://)")
    raw = uri_secret.reveal()
    hosts = uri_hosts(raw)
    pw = secret(password)
    if (username is None) != (pw is None):
        raise ConfigurationError(f"{where}: give username and password together")
    credentials: dict[str, Secret] = {}
    if username is not None and pw is not None:
        if uri_has_credentials(raw):
            raise ConfigurationError(
                f"{where}: the uri already holds credentials; do not also pass username/password"
            )
        credentials = {"username": Secret(username), "password": pw}
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
    # mongodb+srv:// turns TLS on by itself; a plain URI keeps the server's default (off).
    default_tls = raw.startswith("mongodb+srv://") or bool(tls_ca_file or tls_insecure)
    use_tls = tls_setting(raw, tls, default=default_tls)
    if (tls_ca_file or tls_insecure) and not use_tls:
        raise ConfigurationError(f"{where}: tls_ca_file / tls_insecure need TLS, which is off")
    if use_tls:
        options["tls"] = True
    elif tls is False:
        options["tls"] = False
    return ConnectionPlan(
        provider="mongodb", uri=uri_secret, options=options, credentials=credentials, hosts=hosts
    )
