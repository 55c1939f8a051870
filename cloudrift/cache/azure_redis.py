"""Azure Cache for Redis / Azure Managed Redis: an access key, or Microsoft Entra tokens.

Entra auth: the password is an access token for ``https://redis.azure.com/.default``
and the username is the identity's object id (or the name given to it in the cache's
data-access configuration). Tokens come from an async azure-identity credential (no
blocking call on the loop), are cached, and are fetched again before they expire by
a background task, so new connections always present a valid token.

Ports: 6380 (TLS) for Azure Cache for Redis; give ``port=10000`` for Azure Managed
Redis / Enterprise endpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Unpack

from cloudrift.cache._redis import RedisBackend, TokenCredentialProvider, managed_options
from cloudrift.cache.redis import choose_auth
from cloudrift.core.auth import auth_method
from cloudrift.core.azure import (
    AzureAuthNames,
    azure_identity,
    identity_auth_methods,
    identity_credential,
)
from cloudrift.core.redis import RedisServerOptions
from cloudrift.core.secrets import Secret, secret

#: The Entra scope of Azure Cache for Redis data access.
REDIS_SCOPE = "https://redis.azure.com/.default"

_NAMES = AzureAuthNames("from_managed_identity", "from_service_principal")
_IDENTITY = identity_auth_methods(["host", "username"], _NAMES, managed_identity_option="client_id")
_METHODS = [
    auth_method("from_access_key", ["host", "access_key"], ["username"]),
    _IDENTITY.managed_identity,
    _IDENTITY.service_principal,
    auth_method("from_credential", ["host", "username", "credential"]),
]


class EntraTokenMinter:
    """Gets Entra access tokens for Redis from an async azure-identity credential."""

    def __init__(self, credential: Any) -> None:
        self.credential = credential

    async def __call__(self) -> tuple[str, float]:
        access = await self.credential.get_token(REDIS_SCOPE)
        return access.token, float(access.expires_on)


class AzureRedisCache(RedisBackend):
    """Azure Cache for Redis (TLS on port 6380 by default)."""

    provider = "azure_redis"

    def __init__(
        self,
        auth_method: str | None = None,
        *,
        host: str | None = None,
        access_key: str | Secret | None = None,
        username: str | None = None,
        client_id: str | None = None,
        tenant_id: str | None = None,
        client_secret: str | Secret | None = None,
        credential: Any = None,
        token_refresh_margin: float = 300.0,
        clock: Callable[[], float] | None = None,
        **options: Unpack[RedisServerOptions],
    ) -> None:
        where = "the 'azure_redis' cache provider"
        given = {
            "host": host,
            "access_key": access_key,
            "username": username,
            "client_id": client_id,
            "tenant_id": tenant_id,
            "client_secret": client_secret,
            "credential": credential,
        }
        method = choose_auth(where, auth_method, given, _METHODS)
        assert host is not None
        opts = managed_options(where, host, 6380, options)
        if method == "from_access_key":
            opts.username = username
            opts.password = secret(access_key)
        else:
            assert username is not None
            identity = azure_identity(
                where,
                method,
                _NAMES,
                tenant_id=tenant_id,
                client_id=client_id,
                client_secret=client_secret,
                # client_id names a user-assigned managed identity; None: system-assigned.
                managed_identity_client_id=client_id,
            )
            if identity is None:
                # from_credential: handed in by the caller, who closes it.
                cred = credential
            else:
                # Our own credential (explicit managed identity, never the
                # DefaultAzureCredential chain); closed with this backend.
                cred = identity_credential(identity)
                opts.on_close.append(cred.close)
                opts.secrets += [s for s in identity.secrets if s]
            opts.credential_provider = TokenCredentialProvider(
                username,
                EntraTokenMinter(cred),
                clock=clock or time.time,
                refresh_margin=token_refresh_margin,
            )
        super().__init__(opts)

    @property
    def token_provider(self) -> TokenCredentialProvider | None:
        """The Entra token provider (None with an access key)."""
        provider = self._options.credential_provider
        return provider if isinstance(provider, TokenCredentialProvider) else None


__all__ = ["REDIS_SCOPE", "AzureRedisCache", "EntraTokenMinter"]
