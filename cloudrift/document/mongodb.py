"""Self-hosted MongoDB or Atlas: any ``mongodb://`` or ``mongodb+srv://`` URI."""

from __future__ import annotations

from typing import Unpack

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.secrets import Secret, secret
from cloudrift.document.base import (
    ClientOptions,
    ConnectionPlan,
    ProviderRules,
    tls_files,
    tls_setting,
)

RULES = ProviderRules("mongodb")


def plan(
    *,
    uri: str | Secret | None = None,
    username: str | None = None,
    password: str | Secret | None = None,
    tls: bool | None = None,
    **given: Unpack[ClientOptions],
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
    # mongodb+srv:// turns TLS on by itself; a plain URI keeps the server's default (off).
    use_tls = tls_setting(raw, tls, default=raw.startswith("mongodb+srv://") or tls_files(given))
    return RULES.finish(
        uri=uri_secret,
        hosts=hosts,
        given=given,
        # Leave tls unset when nothing asked for it, so the URI and server defaults apply.
        options={"tls": use_tls} if use_tls or tls is False else {},
        credentials=credentials,
    )
