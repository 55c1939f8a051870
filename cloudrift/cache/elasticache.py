"""AWS ElastiCache (Redis OSS / Valkey): an AUTH token, or IAM auth with SigV4 tokens.

IAM auth: the password is a SigV4-presigned ``connect`` request for the cache, valid
15 minutes. Tokens are minted in a worker thread (botocore's credential chain may
call the instance metadata service, which blocks), cached, and minted again a
minute before expiry by a background task, so a new connection never presents a
stale token and the event loop never waits on botocore.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Unpack, cast
from urllib.parse import urlencode

from cloudrift.cache._redis import RedisBackend, TokenCredentialProvider, managed_options
from cloudrift.cache.redis import choose_auth
from cloudrift.core.auth import auth_method
from cloudrift.core.aws import (
    AUTH_OPTIONS,
    AwsAuthOptions,
    SyncAwsCredentials,
    aws_auth_methods,
    aws_credentials,
    split_auth_options,
)
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.factory import check_option_group
from cloudrift.core.redis import RedisServerOptions
from cloudrift.core.secrets import Secret, secret

#: ElastiCache IAM tokens are valid for 15 minutes.
TOKEN_LIFETIME = 900


class ElastiCacheOptions(RedisServerOptions, AwsAuthOptions, total=False):
    """The Redis connection options plus the AWS credential options (IAM auth)."""


#: How the IAM token's AWS credentials are chosen (a role may use keys or a profile).
_AWS_METHODS = aws_auth_methods()
_METHODS = [
    auth_method("from_auth_token", ["host", "auth_token"], ["username"]),
    auth_method(
        "from_iam_auth",
        ["host", "username", "region"],
        ["cache_name", "serverless", *AUTH_OPTIONS],
    ),
]
# Endpoint prefixes that are not the replication group id.
_ENDPOINT_PREFIXES = {"master", "replica", "clustercfg"}


def cache_name_from_host(host: str) -> str:
    """The replication group id in an ElastiCache endpoint name (lower-cased)."""
    labels = host.lower().split(".")
    if len(labels) > 1 and labels[0] in _ENDPOINT_PREFIXES:
        return labels[1]
    return labels[0]


def sign_iam_token(
    *,
    cache_name: str,
    username: str,
    region: str,
    credentials: Any,
    serverless: bool = False,
    expires_in: int = TOKEN_LIFETIME,
) -> str:
    """A SigV4 presigned ``connect`` request for ``cache_name``, without the scheme.

    ``credentials`` are botocore credentials. Pure CPU: no network.
    """
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest

    query = {"Action": "connect", "User": username}
    if serverless:
        query["ResourceType"] = "ServerlessCache"
    request = AWSRequest(method="GET", url=f"http://{cache_name}/?{urlencode(query)}")
    SigV4QueryAuth(credentials, "elasticache", region, expires=expires_in).add_auth(request)
    url: str = request.url
    return url.removeprefix("http://")


class IAMTokenMinter:
    """Resolves AWS credentials (in a thread) and signs ElastiCache IAM tokens."""

    def __init__(
        self,
        *,
        cache_name: str,
        username: str,
        region: str,
        serverless: bool,
        clock: Callable[[], float],
        source: SyncAwsCredentials,
    ) -> None:
        self.cache_name, self.username, self.region = cache_name, username, region
        self.serverless = serverless
        self._clock = clock
        self._source = source

    def _credentials(self) -> Any:
        # Refreshable (role) credentials refresh themselves here when due.
        return self._source.frozen()

    def _sign(self) -> str:
        return sign_iam_token(
            cache_name=self.cache_name,
            username=self.username,
            region=self.region,
            credentials=self._credentials(),
            serverless=self.serverless,
        )

    async def __call__(self) -> tuple[str, float]:
        issued = self._clock()
        token = await asyncio.to_thread(self._sign)
        return token, issued + TOKEN_LIFETIME


class ElastiCache(RedisBackend):
    """Amazon ElastiCache for Redis OSS / Valkey (TLS on by default)."""

    provider = "elasticache"

    def __init__(
        self,
        auth_method: str | None = None,
        *,
        host: str | None = None,
        auth_token: str | Secret | None = None,
        username: str | None = None,
        region: str | None = None,
        cache_name: str | None = None,
        serverless: bool | None = None,
        token_refresh_margin: float = 60.0,
        clock: Callable[[], float] | None = None,
        **options: Unpack[ElastiCacheOptions],
    ) -> None:
        where = "the 'elasticache' cache provider"
        check_option_group(where, ElastiCacheOptions, options)  # typos: did-you-mean
        rest: dict[str, Any] = dict(options)
        auth = split_auth_options(rest)
        given = {
            "host": host,
            "auth_token": auth_token,
            "username": username,
            "region": region,
            "cache_name": cache_name,
            "serverless": serverless,
            **auth,
        }
        method = choose_auth(where, auth_method, given, _METHODS)
        assert host is not None
        opts = managed_options(where, host, 6379, cast(RedisServerOptions, rest))
        if method == "from_auth_token":
            opts.username = username
            opts.password = secret(auth_token)
        else:
            assert username is not None and region is not None
            key_id = auth.get("aws_access_key_id")
            if (key_id is None) != (auth.get("aws_secret_access_key") is None):
                raise ConfigurationError(
                    f"{where}: give both aws_access_key_id and aws_secret_access_key, or neither"
                )
            if auth.get("profile_name") is not None and key_id is not None:
                raise ConfigurationError(
                    f"{where}: give either static keys or profile_name, not both"
                )
            if auth.get("aws_session_token") is not None and key_id is None:
                raise ConfigurationError(f"{where}: aws_session_token needs static keys")
            creds = aws_credentials(where, _AWS_METHODS, **auth)
            minter = IAMTokenMinter(
                cache_name=(cache_name or cache_name_from_host(host)).lower(),
                username=username,
                region=region,
                serverless=bool(serverless),
                clock=clock or time.time,
                source=SyncAwsCredentials(creds, region=region),
            )
            opts.credential_provider = TokenCredentialProvider(
                username, minter, clock=clock or time.time, refresh_margin=token_refresh_margin
            )
            opts.secrets += [s for s in creds.secrets if s]
        super().__init__(opts)

    @property
    def token_provider(self) -> TokenCredentialProvider | None:
        """The IAM token provider (None with an AUTH token)."""
        provider = self._options.credential_provider
        return provider if isinstance(provider, TokenCredentialProvider) else None


__all__ = ["ElastiCache", "IAMTokenMinter", "cache_name_from_host", "sign_iam_token"]
