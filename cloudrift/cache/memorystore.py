"""Google Cloud Memorystore (for Redis, Redis Cluster and Valkey) on the one Redis
implementation: an AUTH string, or IAM authentication with Google access tokens.

* ``from_auth_string``: the instance's AUTH string as the password.
* ``from_iam_auth`` (Memorystore for Redis Cluster and for Valkey): an OAuth 2.0 access
  token from application default credentials (or ``service_file=``, or a
  ``gcloud.aio.auth.Token`` handed in as ``credential=``) is the password. Tokens are
  fetched asynchronously (gcloud-aio-auth, no thread), reused, and refreshed
  ``token_refresh_margin`` seconds before they expire by the same background refresher
  as ElastiCache IAM and Entra tokens; idle connections made with the old token are
  then recycled (on every node of a cluster).
* ``from_network``: no AUTH (an instance reachable only from your VPC).

In-transit encryption is on by default (``ssl=True``): pass the instance's server CA
(``serverCaCerts`` of the instance, PEM) as ``ssl_ca_data=`` or a file as
``ssl_ca_certs=``. Memorystore for Redis listens on 6378 with in-transit encryption and
6379 without; clusters and Valkey on 6379. ``cluster=True`` for Redis Cluster / Valkey
cluster mode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Unpack

from cloudrift.cache._redis import RedisBackend, TokenCredentialProvider, managed_options
from cloudrift.cache.redis import choose_auth
from cloudrift.core.auth import auth_method
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.redis import RedisServerOptions
from cloudrift.core.secrets import Secret, secret
from cloudrift.core.validation import check_number

#: The OAuth scope Memorystore IAM authentication accepts.
MEMORYSTORE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: Seconds a token fetch may take before the connection attempt fails.
TOKEN_TIMEOUT = 10

_WHERE = "the 'memorystore' cache provider"
_METHODS = [
    auth_method("from_auth_string", ["host", "auth_string"]),
    auth_method("from_iam_auth", ["host"], ["service_file", "credential", "username"]),
    auth_method("from_network", ["host"]),
]


class GoogleTokenMinter:
    """Gets Google access tokens from a ``gcloud.aio.auth.Token`` (``refresh`` answers a
    ``TokenResponse``: the token and its lifetime in seconds)."""

    def __init__(self, token: Any, clock: Callable[[], float]) -> None:
        self.token = token
        self._clock = clock

    async def __call__(self) -> tuple[str, float]:
        issued = self._clock()
        response = await self.token.refresh(timeout=TOKEN_TIMEOUT)
        return str(response.value), issued + float(response.expires_in)


class MemorystoreCache(RedisBackend):
    """Google Cloud Memorystore for Redis / Redis Cluster / Valkey (TLS on by default)."""

    provider = "memorystore"

    def __init__(
        self,
        auth_method: str | None = None,
        *,
        host: str | None = None,
        auth_string: str | Secret | None = None,
        username: str | None = None,
        service_file: str | None = None,
        credential: Any = None,
        token_refresh_margin: float = 300.0,
        clock: Callable[[], float] | None = None,
        **options: Unpack[RedisServerOptions],
    ) -> None:
        given = {
            "host": host,
            "auth_string": auth_string,
            "username": username,
            "service_file": service_file,
            "credential": credential,
        }
        method = choose_auth(_WHERE, auth_method, given, _METHODS)
        assert host is not None
        check_number(f"{_WHERE}: token_refresh_margin", token_refresh_margin, at_least=0)
        opts = managed_options(_WHERE, host, 6379, options)
        if method == "from_auth_string":
            opts.password = secret(auth_string)
        elif method == "from_iam_auth":
            if service_file is not None and credential is not None:
                raise ConfigurationError(f"{_WHERE}: give service_file= or credential=, not both")
            if credential is None:
                from gcloud.aio.auth import Token

                try:
                    credential = Token(service_file=service_file, scopes=[MEMORYSTORE_SCOPE])
                except (OSError, ValueError, KeyError) as exc:
                    raise ConfigurationError(
                        f"{_WHERE}: cannot read the Google credentials "
                        f"({type(exc).__name__}: {exc}); check service_file= or "
                        "GOOGLE_APPLICATION_CREDENTIALS"
                    ) from None
                opts.on_close.append(credential.close)
            elif not callable(getattr(credential, "refresh", None)):
                raise ConfigurationError(
                    f"{_WHERE}: credential must be a gcloud.aio.auth.Token (or one with its "
                    f"async refresh(timeout=)), not {type(credential).__name__}"
                )
            now = clock or time.time
            opts.credential_provider = TokenCredentialProvider(
                username or "default",
                GoogleTokenMinter(credential, now),
                clock=now,
                refresh_margin=token_refresh_margin,
            )
        super().__init__(opts)

    @property
    def token_provider(self) -> TokenCredentialProvider | None:
        """The IAM token provider (None with an AUTH string or no auth)."""
        provider = self._options.credential_provider
        return provider if isinstance(provider, TokenCredentialProvider) else None


__all__ = ["MEMORYSTORE_SCOPE", "GoogleTokenMinter", "MemorystoreCache"]
