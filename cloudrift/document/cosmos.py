"""Azure Cosmos DB for MongoDB (RU): a connection string, or account name + account key.

The MongoDB API of Cosmos accepts account keys only; Microsoft Entra ID (managed
identity, service principal) is not accepted at the wire-protocol layer, so those
options fail loudly instead of being silently ignored. A plan built from an account
and key mirrors the portal's connection string: TLS on port 10255,
``replicaSet=globaldb``, ``retrywrites=false``, ``maxIdleTimeMS=120000`` and
``appName=@<account>@``.
"""

from __future__ import annotations

import re
from typing import Unpack

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.secrets import Secret, secret
from cloudrift.document.base import (
    ConnectionPlan,
    PoolOptions,
    ProviderRules,
    build_uri,
    tls_setting,
)

PORT = 10255
HOST_SUFFIX = "mongo.cosmos.azure.com"
# Cosmos account names: 3-44 characters, lowercase letters, digits and hyphens.
_ACCOUNT = re.compile(r"^[a-z0-9][a-z0-9-]{1,42}[a-z0-9]$")
WHY = "Cosmos DB's MongoDB API does not support retryable writes"
# No app_name: the portal's appName=@<account>@ stays.
RULES = ProviderRules("cosmos", no_retryable_writes=WHY, group=PoolOptions)
KEYS_ONLY = (
    "Cosmos DB for MongoDB accepts account keys only: Microsoft Entra ID (managed "
    "identity, service principal) is not accepted by its MongoDB wire protocol. Use "
    "connection_string=... from the portal, or account=... with account_key=..."
)


def plan(
    *,
    connection_string: str | Secret | None = None,
    account: str | None = None,
    account_key: str | Secret | None = None,
    endpoint: str | None = None,
    managed_identity: object = None,
    credential: object = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
    client_secret: str | Secret | None = None,
    **given: Unpack[PoolOptions],
) -> ConnectionPlan:
    """The Cosmos connection: ``connection_string``, or ``account`` + ``account_key``.

    ``endpoint`` (``host:port``) replaces ``<account>.mongo.cosmos.azure.com:10255``
    for sovereign clouds, private endpoints and test servers.
    """
    _refuse_entra(
        managed_identity=managed_identity,
        credential=credential,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=client_secret,
    )
    cs, key = secret(connection_string), secret(account_key)
    RULES.refuse_empty(connection_string=cs)
    RULES.refuse_both(
        "connection_string",
        "account + account_key",
        given=(cs is not None, account is not None or key is not None or endpoint is not None),
    )
    if cs is not None:
        raw = cs.reveal()
        uri, hosts = cs, RULES.check_uri(raw)
        tls = tls_setting(raw, None, default=True)
    else:
        uri, hosts = _account_uri(account, key, endpoint)
        tls = True
    return RULES.finish(
        uri=uri,
        hosts=hosts,
        given=given,
        options={"tls": tls},
    )


def _refuse_entra(**options: object) -> None:
    """Entra ID options fail loudly: the MongoDB wire protocol of Cosmos takes keys only."""
    given = [name for name, value in options.items() if value is not None and value is not False]
    if given:
        raise ConfigurationError(f"{RULES.where}: {', '.join(given)} cannot be used. {KEYS_ONLY}")


def _account_uri(
    account: str | None, key: Secret | None, endpoint: str | None
) -> tuple[Secret, str]:
    """The portal's connection string for ``account`` + ``key``, and its host."""
    if account is None or key is None:
        missing = [n for n, v in (("account", account), ("account_key", key)) if v is None]
        RULES.fail(
            f"missing {', '.join(missing)}; give connection_string=..., or "
            "account=... with account_key=..."
        )
    if not _ACCOUNT.match(account):
        RULES.fail(
            f"account {account!r} is not a Cosmos account name "
            "(3-44 lowercase letters, digits and hyphens)"
        )
    if not key.reveal():
        RULES.fail("account_key is an empty string")
    hosts = endpoint or f"{account}.{HOST_SUFFIX}:{PORT}"
    uri = build_uri(
        [hosts],
        username=account,
        password=key.reveal(),
        options={
            "ssl": "true",
            "replicaSet": "globaldb",
            "retrywrites": "false",
            "maxIdleTimeMS": "120000",
            "appName": f"@{account}@",
        },
    )
    return Secret(uri), hosts
