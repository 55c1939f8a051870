"""Self-hosted MongoDB or Atlas: any ``mongodb://`` or ``mongodb+srv://`` URI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.secrets import Secret, secret
from cloudrift.document.base import ConnectionPlan, ProviderRules, common_options, tls_setting

RULES = ProviderRules("mongodb")


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
    uri_secret = secret(uri)
    if uri_secret is None or not uri_secret.reveal():
        raise ConfigurationError(
            f"{RULES.where} needs uri='mongodb://host:27017/' (or mongodb+srv://)"
        )
    raw = uri_secret.reveal()
    hosts = RULES.check_uri(raw)
    credentials = RULES.credentials(raw, username, secret(password))
    tuning = common_options(
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
    tls_files = bool(tls_ca_file or tls_insecure)
    use_tls = tls_setting(raw, tls, default=raw.startswith("mongodb+srv://") or tls_files)
    # Leave tls unset when nothing asked for it, so the URI and server defaults apply.
    options = {"tls": use_tls} if use_tls or tls is False else {}
    return RULES.finish(
        uri=uri_secret,
        hosts=hosts,
        tuning=tuning,
        options=options,
        driver_options=driver_options,
        tls=use_tls,
        tls_files=tls_files,
        credentials=credentials,
    )
