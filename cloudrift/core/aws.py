"""AWS plumbing shared by every AWS provider (S3, SQS, SES, ElastiCache).

One place for what each provider used to write again:

* the auth-method table (static keys / profile / assume role / default chain), chosen
  strictly with :func:`cloudrift.core.auth.select_auth`; each provider keeps the method
  names its users see in errors (:class:`AwsAuthNames`);
* :class:`AwsCredentials`, the chosen method with its secrets already wrapped;
* :func:`aws_session`: a *fresh* aioboto3 session per backend (each backend owns its
  credentials, so closing one can never break another), all sharing one read-only
  botocore data loader; ``role_arn`` becomes STS AssumeRole credentials that refresh
  themselves before they expire;
* :class:`SyncAwsCredentials`: the same choice for code that signs in a worker thread;
* :func:`aio_config` (pool size, timeouts, standard retries) and the sets of AWS error
  codes and botocore exception types providers translate.

No SDK is imported at module import time: ``import cloudrift.core.aws`` works with no
extra installed; aioboto3 / botocore are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final, TypedDict, Unpack

from cloudrift.core.auth import AuthMethod, auth_method, select_auth
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.factory import check_option_group, group_options
from cloudrift.core.lifecycle import LazyClient
from cloudrift.core.secrets import Secret, redact, reveal, secret
from cloudrift.core.validation import check_int, check_number

#: Canonical kinds of AWS auth (what :attr:`AwsCredentials.kind` holds).
STATIC_KEYS: Final = "static_keys"
PROFILE: Final = "profile"
ASSUME_ROLE: Final = "assume_role"
DEFAULT_CHAIN: Final = "default_chain"


class AwsAuthOptions(TypedDict, total=False):
    """The AWS credential options every AWS provider takes (``**auth: Unpack[...]``).

    Leave them all out for the default chain (environment, instance / task role).
    """

    aws_access_key_id: str | None
    aws_secret_access_key: str | Secret | None
    aws_session_token: str | Secret | None
    profile_name: str | None
    #: Assume this role (STS AssumeRole, refreshed before expiry).
    role_arn: str | None
    role_session_name: str | None
    external_id: str | None
    #: Where STS is called (moto, LocalStack, a VPC endpoint); None: AWS's own.
    sts_endpoint_url: str | None


#: The names of :class:`AwsAuthOptions`.
AUTH_OPTIONS: Final = tuple(AwsAuthOptions.__annotations__)

#: The options that carry a key pair.
KEY_OPTIONS: Final = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
#: Options that shape an AssumeRole call beside ``role_arn``.
ROLE_OPTIONS: Final = ("role_session_name", "external_id", "sts_endpoint_url")
#: Session name used when the caller gives none.
DEFAULT_ROLE_SESSION_NAME: Final = "cloudrift"

#: Error codes meaning "these credentials are not accepted or not allowed".
AUTH_ERROR_CODES: Final = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AllAccessDisabled",
        "ExpiredToken",
        "ExpiredTokenException",
        "Forbidden",
        "IncompleteSignature",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "InvalidToken",
        "MissingAuthenticationToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "403",
    }
)
#: Error codes meaning "slow down and retry later".
THROTTLING_ERROR_CODES: Final = frozenset(
    {
        "LimitExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)
#: Error codes meaning "the named thing does not exist" (services pick their own).
NOT_FOUND_ERROR_CODES: Final = frozenset(
    {
        "404",
        "AWS.SimpleQueueService.NonExistentQueue",
        "NoSuchKey",
        "NotFound",
        "NotFoundException",
        "QueueDoesNotExist",
        "ResourceNotFoundException",
    }
)


@dataclass(frozen=True)
class AwsAuthNames:
    """The names a provider shows for each AWS auth method (they appear in its errors)."""

    static_keys: str = STATIC_KEYS
    profile: str = PROFILE
    assume_role: str = ASSUME_ROLE
    default_chain: str = DEFAULT_CHAIN

    def kind(self, name: str) -> str:
        """The canonical kind of the method shown as ``name``."""
        table = {
            self.static_keys: STATIC_KEYS,
            self.profile: PROFILE,
            self.assume_role: ASSUME_ROLE,
            self.default_chain: DEFAULT_CHAIN,
        }
        return table[name]


#: ``static_keys`` / ``profile`` / ``assume_role`` / ``default_chain``.
SNAKE_NAMES: Final = AwsAuthNames()
#: ``static keys`` / ``profile`` / ``assume role`` / ``default credential chain (...)``.
WORD_NAMES: Final = AwsAuthNames(
    "static keys", "profile", "assume role", "default credential chain (IAM role / environment)"
)


def aws_auth_methods(
    names: AwsAuthNames = SNAKE_NAMES,
    *,
    assume_role: bool = True,
    role_source_credentials: bool = True,
    default_first: bool = False,
) -> tuple[AuthMethod, ...]:
    """The AWS auth-method table for :func:`select_auth`.

    ``assume_role``: offer ``role_arn`` (with ``role_session_name`` and ``external_id``).
    ``role_source_credentials``: the role may be assumed with explicit keys or a profile;
    without it the source credentials come from the default chain only.
    ``default_first``: list the default chain first in error messages.
    """
    methods = [
        auth_method(
            names.static_keys,
            ["aws_access_key_id", "aws_secret_access_key"],
            ["aws_session_token"],
        ),
        auth_method(names.profile, ["profile_name"]),
    ]
    if assume_role:
        source = [*KEY_OPTIONS, "profile_name"] if role_source_credentials else []
        methods.append(auth_method(names.assume_role, ["role_arn"], [*ROLE_OPTIONS, *source]))
    default = auth_method(names.default_chain)
    return (default, *methods) if default_first else (*methods, default)


@dataclass(frozen=True, repr=False)
class AwsCredentials:
    """How one backend authenticates to AWS: the chosen method and its (wrapped) inputs."""

    #: Who is asking, e.g. ``"s3 storage"``; starts every error message.
    where: str
    #: The method's name as the provider shows it (e.g. ``"static keys"``).
    method: str
    #: The canonical kind: STATIC_KEYS, PROFILE, ASSUME_ROLE or DEFAULT_CHAIN.
    kind: str
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    profile_name: str | None = None
    role_arn: str | None = None
    role_session_name: str = DEFAULT_ROLE_SESSION_NAME
    external_id: str | None = None
    #: Where STS is called (moto, LocalStack, a VPC endpoint); None: AWS's own.
    sts_endpoint_url: str | None = None

    @property
    def secrets(self) -> tuple[Secret | None, ...]:
        """Every secret value, for :func:`cloudrift.core.secrets.redact`."""
        return (self.secret_access_key, self.session_token)

    def __repr__(self) -> str:
        shown = f"where={self.where!r}, method={self.method!r}"
        if self.access_key_id is not None:
            shown += f", access_key_id={self.access_key_id!r}"
        if self.profile_name is not None:
            shown += f", profile_name={self.profile_name!r}"
        if self.role_arn is not None:
            shown += f", role_arn={self.role_arn!r}"
        return f"AwsCredentials({shown})"

    def assume_role_args(self) -> dict[str, str]:
        """The extra arguments of the STS AssumeRole call."""
        args = {"RoleSessionName": self.role_session_name}
        if self.external_id:
            args["ExternalId"] = self.external_id
        return args


def aws_credentials(
    where: str,
    methods: Sequence[AuthMethod],
    names: AwsAuthNames = SNAKE_NAMES,
    **options: Unpack[AwsAuthOptions],
) -> AwsCredentials:
    """Choose the auth method strictly (see :func:`select_auth`) and wrap the secrets.

    Raises ConfigurationError for unknown, incomplete, conflicting, empty or non-str
    credential options (naming the option, never showing its value).
    """
    check_option_group(where, AwsAuthOptions, options)
    given: dict[str, Any] = {name: options.get(name) for name in AUTH_OPTIONS}
    wrong = sorted(k for k, v in given.items() if v is not None and not isinstance(v, str | Secret))
    if wrong:
        got = ", ".join(f"{k} (got {type(given[k]).__name__})" for k in wrong)
        raise ConfigurationError(f"{where}: option(s) must be a str: {got}")
    offered = frozenset().union(*(m.keys for m in methods))
    unused = sorted(k for k, v in given.items() if v is not None and k not in offered)
    if unused:
        raise ConfigurationError(
            f"{where}: option(s) {', '.join(unused)} are not supported here; leave them out"
        )
    method = select_auth(where, given, methods)
    return AwsCredentials(
        where=where,
        method=method,
        kind=names.kind(method),
        access_key_id=given["aws_access_key_id"],
        secret_access_key=secret(given["aws_secret_access_key"]),
        session_token=secret(given["aws_session_token"]),
        profile_name=given["profile_name"],
        role_arn=given["role_arn"],
        role_session_name=given["role_session_name"] or DEFAULT_ROLE_SESSION_NAME,
        external_id=given["external_id"],
        sts_endpoint_url=given["sts_endpoint_url"],
    )


def split_auth_options(options: dict[str, Any]) -> dict[str, Any]:
    """Remove the :class:`AwsAuthOptions` from ``options`` and return them."""
    return {k: options.pop(k) for k in list(options) if k in group_options(AwsAuthOptions)}


# ------------------------------------------------------------------- async sessions

_shared_loader: Any = None


def data_loader() -> Any:
    """One botocore data loader for the process. Service models and endpoint rules are
    read-only JSON; parsing them again for every backend costs ~0.2 s per client. Only
    this data is shared: every backend keeps its own session and credentials."""
    global _shared_loader
    if _shared_loader is None:
        from botocore.loaders import create_loader

        _shared_loader = create_loader()
    return _shared_loader


def refuse_in_process_moto(where: str) -> None:
    """ConfigurationError when moto's ``mock_aws`` (in-process patching) is active.

    It patches botocore to answer synchronously; aiobotocore awaits that answer and
    fails deep inside with ``AttributeError: 'coroutine' object has no attribute
    'items'``. Say so, and what works instead: moto as a server.
    """
    models = sys.modules.get("moto.core.models")  # only if the test imported moto
    stubber = getattr(models, "botocore_stubber", None)
    if stubber is not None and getattr(stubber, "enabled", False) is True:
        raise ConfigurationError(
            f"{where}: moto's mock_aws (in-process patching) is active, and it cannot "
            "answer aioboto3 (the call would end in \"AttributeError: 'coroutine' object "
            "has no attribute 'items'\"). Run moto as a server instead: the pytest "
            "fixture cloudrift_moto (cloudrift_fastapi's pytest plugin), or "
            "moto.server.ThreadedMotoServer(port=0) and endpoint_url='http://127.0.0.1:<port>'"
        )


async def aws_session(
    creds: AwsCredentials, *, region: str | None, sts_endpoint_url: str | None = None
) -> Any:
    """A new aioboto3 session holding ``creds`` (never shared between backends).

    Under ASSUME_ROLE the source credentials (keys, profile or default chain) call STS
    AssumeRole (at ``sts_endpoint_url``, else ``creds.sts_endpoint_url``) on first use,
    and the temporary credentials are fetched again before they expire. Raises
    ConfigurationError when no source credentials exist.
    """
    import aioboto3

    refuse_in_process_moto(creds.where)
    session = aioboto3.Session(
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=reveal(creds.secret_access_key),
        aws_session_token=reveal(creds.session_token),
        profile_name=creds.profile_name,
        region_name=region,
    )
    core = session._session  # aioboto3 keeps its own AioSession here
    # Registered after aioboto3 set up its own loader, so the shared one never grows.
    core.register_component("data_loader", data_loader())
    if creds.kind == ASSUME_ROLE:
        await _use_assumed_role(core, creds, region, sts_endpoint_url or creds.sts_endpoint_url)
    return session


async def open_client(
    stack: AsyncExitStack,
    creds: AwsCredentials,
    service: str,
    *,
    region: str | None,
    endpoint_url: str | None,
    config: Any,
    sts_endpoint_url: str | None = None,
) -> Any:
    """An aiobotocore client for ``service`` on its own :func:`aws_session`, closed when
    ``stack`` unwinds (the body of every AWS provider's ``LazyClient`` factory)."""
    session = await aws_session(creds, region=region, sts_endpoint_url=sts_endpoint_url)
    client = session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)
    return await stack.enter_async_context(client)


def lazy_client(
    creds: AwsCredentials,
    service: str,
    *,
    region: str | None,
    endpoint_url: str | None,
    config: Any,
    sts_endpoint_url: str | None = None,
) -> LazyClient[Any]:
    """The :class:`LazyClient` every AWS provider keeps: opened with :func:`open_client`
    on first use, closed by its ``aclose()``.

    ``config``: the ``AioConfig``, or a function that builds it when the client opens
    (so a provider that may never need the SDK imports no botocore until then).
    """

    async def build(stack: AsyncExitStack) -> Any:
        return await open_client(
            stack,
            creds,
            service,
            region=region,
            endpoint_url=endpoint_url,
            config=config() if callable(config) else config,
            sts_endpoint_url=sts_endpoint_url,
        )

    return LazyClient(build)


async def _use_assumed_role(
    core: Any, creds: AwsCredentials, region: str | None, sts_endpoint_url: str | None
) -> None:
    """Make ``core`` use STS AssumeRole credentials, refreshed before they expire."""
    from aiobotocore.credentials import (
        AioAssumeRoleCredentialFetcher,
        AioDeferredRefreshableCredentials,
    )

    source = await core.get_credentials()
    if source is None:
        raise ConfigurationError(_no_source_message(creds))
    creator = functools.partial(
        core.create_client, region_name=region, endpoint_url=sts_endpoint_url
    )
    fetcher = AioAssumeRoleCredentialFetcher(
        creator, source, creds.role_arn, extra_args=creds.assume_role_args(), cache={}
    )
    core._credentials = AioDeferredRefreshableCredentials(
        refresh_using=fetcher.fetch_credentials, method="assume-role"
    )


def _no_source_message(creds: AwsCredentials) -> str:
    return (
        f"{creds.where}: role_arn needs source credentials to call STS AssumeRole, and "
        "none were found (keys, profile_name or the default chain)"
    )


def aio_config(
    *,
    max_pool_connections: int,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    **extra: Any,
) -> Any:
    """An ``AioConfig``: pooled connections, timeouts and botocore's standard retries.

    Checks the options first (ConfigurationError naming the option), so every AWS
    provider refuses the same bad values at construction; ``max_attempts`` counts the
    first attempt, as botocore's standard mode does (1 = no retry).
    """
    check_int("max_pool_connections", max_pool_connections, at_least=1)
    check_number("connect_timeout", connect_timeout, above=0, unit="seconds")
    check_number("read_timeout", read_timeout, above=0, unit="seconds")
    check_int("max_attempts", max_attempts, at_least=1, hint="1 means no retry")
    from aiobotocore.config import AioConfig

    return AioConfig(
        max_pool_connections=max_pool_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts},
        **extra,
    )


# ---------------------------------------------------------------- sync credentials


class SyncAwsCredentials:
    """Resolves ``creds`` to botocore credentials from synchronous code (run it in a
    worker thread: the default chain may call the instance metadata service).

    The botocore session is built once and kept, so refreshable credentials (instance
    role, assumed role) refresh themselves when due.
    """

    def __init__(
        self, creds: AwsCredentials, *, region: str | None, sts_endpoint_url: str | None = None
    ) -> None:
        self.creds = creds
        self._region = region
        self._sts_endpoint_url = sts_endpoint_url or creds.sts_endpoint_url
        self._resolved: Any = None

    def __repr__(self) -> str:
        return f"SyncAwsCredentials({self.creds!r})"

    def frozen(self) -> Any:
        """Current botocore ``ReadOnlyCredentials`` (access_key, secret_key, token)."""
        if self._resolved is None:
            self._resolved = self._resolve()
        return self._resolved.get_frozen_credentials()

    def _resolve(self) -> Any:
        from botocore.credentials import Credentials
        from botocore.session import Session

        creds = self.creds
        source: Any
        session = Session(profile=creds.profile_name)
        if creds.access_key_id is not None and creds.secret_access_key is not None:
            source = Credentials(
                creds.access_key_id,
                creds.secret_access_key.reveal(),
                reveal(creds.session_token),
            )
        else:
            source = session.get_credentials()
        if source is None:
            if creds.kind == ASSUME_ROLE:
                raise ConfigurationError(_no_source_message(creds))
            raise ConfigurationError(
                f"{creds.where}: no AWS credentials found (environment, profile, instance "
                "role); give aws_access_key_id/aws_secret_access_key or profile_name"
            )
        if creds.kind != ASSUME_ROLE:
            return source
        from botocore.credentials import (
            AssumeRoleCredentialFetcher,
            DeferredRefreshableCredentials,
        )

        creator = functools.partial(
            session.create_client, region_name=self._region, endpoint_url=self._sts_endpoint_url
        )
        fetcher = AssumeRoleCredentialFetcher(
            creator, source, creds.role_arn, extra_args=creds.assume_role_args(), cache={}
        )
        return DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method="assume-role"
        )


# ------------------------------------------------------------------------- errors


@functools.cache
def connection_errors() -> tuple[type[Exception], ...]:
    """botocore's exception types for "the service could not be reached"."""
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    return (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)


@functools.cache
def credential_errors() -> tuple[type[Exception], ...]:
    """botocore's exception types for "no usable credentials were found"."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError, ProfileNotFound

    return (NoCredentialsError, PartialCredentialsError, ProfileNotFound)


@dataclass(frozen=True)
class AwsErrorDetails:
    """What a botocore ``ClientError`` says, with secrets already redacted."""

    code: str
    status: int | None
    message: str


def client_error_details(
    exc: Exception, secrets: Sequence[Secret | str | None] = ()
) -> AwsErrorDetails:
    """The code, HTTP status and redacted message of a botocore ``ClientError``."""
    response: Any = getattr(exc, "response", None) or {}
    error = response.get("Error", {}) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    text = str(error.get("Message") or "") or str(exc)
    return AwsErrorDetails(
        code=str(error.get("Code", "")),
        status=status if isinstance(status, int) else None,
        message=redact(text, secrets),
    )


__all__ = [
    "ASSUME_ROLE",
    "AUTH_ERROR_CODES",
    "AUTH_OPTIONS",
    "DEFAULT_CHAIN",
    "DEFAULT_ROLE_SESSION_NAME",
    "KEY_OPTIONS",
    "NOT_FOUND_ERROR_CODES",
    "PROFILE",
    "ROLE_OPTIONS",
    "SNAKE_NAMES",
    "STATIC_KEYS",
    "THROTTLING_ERROR_CODES",
    "WORD_NAMES",
    "AwsAuthNames",
    "AwsAuthOptions",
    "AwsCredentials",
    "AwsErrorDetails",
    "SyncAwsCredentials",
    "aio_config",
    "aws_auth_methods",
    "aws_credentials",
    "aws_session",
    "client_error_details",
    "connection_errors",
    "credential_errors",
    "data_loader",
    "lazy_client",
    "open_client",
    "refuse_in_process_moto",
    "split_auth_options",
]
