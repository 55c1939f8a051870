"""Microsoft Entra ID plumbing shared by every Azure provider (Blob, Service Bus, ACS, Redis).

One place for what each provider used to write again:

* the two identity auth methods every Azure provider offers beside its key-based ones
  (:func:`identity_auth_methods`): managed identity (optionally naming a user-assigned
  identity) and service principal (tenant id + client id + client secret), under the
  names each provider already shows in its errors (:class:`AzureAuthNames`);
* :class:`AzureIdentity`, the chosen identity with its secret already wrapped;
* :func:`identity_credential` / :func:`open_identity_credential`: a *new* async
  azure-identity credential per backend (never shared: closing one backend must not
  break another), closed with the backend.

Managed identity is always asked for explicitly: ``WorkloadIdentityCredential`` when a
federated token is mounted (AKS workload identity), else ``ManagedIdentityCredential``.
Never ``DefaultAzureCredential``: ambient ``AZURE_CLIENT_SECRET`` variables, CLI or IDE
logins must not silently stand in for the workload's identity.

No SDK is imported at module import time: ``import cloudrift.core.azure`` works with no
extra installed; azure-identity is imported inside :func:`identity_credential`.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final

from cloudrift.core.auth import AuthMethod, auth_method
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.secrets import Secret, reveal, secret

#: Canonical kinds of Entra ID auth (what :attr:`AzureIdentity.kind` holds).
MANAGED_IDENTITY: Final = "managed_identity"
SERVICE_PRINCIPAL: Final = "service_principal"

#: The options a service principal needs.
SERVICE_PRINCIPAL_OPTIONS: Final = ("tenant_id", "client_id", "client_secret")
#: Set by AKS workload identity; its presence selects WorkloadIdentityCredential.
FEDERATED_TOKEN_ENV: Final = "AZURE_FEDERATED_TOKEN_FILE"


@dataclass(frozen=True)
class AzureAuthNames:
    """The names a provider shows for the identity methods (they appear in its errors)."""

    managed_identity: str = MANAGED_IDENTITY
    service_principal: str = SERVICE_PRINCIPAL

    def kind(self, name: str) -> str | None:
        """The canonical kind of the method shown as ``name``; None for key-based ones."""
        table = {
            self.managed_identity: MANAGED_IDENTITY,
            self.service_principal: SERVICE_PRINCIPAL,
        }
        return table.get(name)


#: ``managed_identity`` / ``service_principal``.
SNAKE_NAMES: Final = AzureAuthNames()
#: ``managed identity`` / ``service principal``.
WORD_NAMES: Final = AzureAuthNames("managed identity", "service principal")


@dataclass(frozen=True)
class IdentityMethods:
    """The two identity auth methods of a provider; put them where its table wants them."""

    managed_identity: AuthMethod
    service_principal: AuthMethod


def identity_auth_methods(
    location: str | Sequence[str],
    names: AzureAuthNames = SNAKE_NAMES,
    *,
    managed_identity_option: str = "managed_identity_client_id",
) -> IdentityMethods:
    """Managed identity (``location`` + optional ``managed_identity_option``) and
    service principal (``location`` + tenant_id + client_id + client_secret).

    ``location`` names the option(s) saying where the resource is (``account_url``,
    ``endpoint``, ``fully_qualified_namespace``, ``host`` + ``username`` ...).
    """
    where = [location] if isinstance(location, str) else list(location)
    return IdentityMethods(
        managed_identity=auth_method(names.managed_identity, where, [managed_identity_option]),
        service_principal=auth_method(
            names.service_principal, [*where, *SERVICE_PRINCIPAL_OPTIONS]
        ),
    )


@dataclass(frozen=True, repr=False)
class AzureIdentity:
    """The Entra identity one backend authenticates as."""

    #: Who is asking, e.g. ``"azure_blob storage"``.
    where: str
    #: MANAGED_IDENTITY or SERVICE_PRINCIPAL.
    kind: str
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    #: A user-assigned managed identity's client id; None: the system-assigned one.
    managed_identity_client_id: str | None = None

    @property
    def secrets(self) -> tuple[Secret | None, ...]:
        """Every secret value, for :func:`cloudrift.core.secrets.redact`."""
        return (self.client_secret,)

    def __repr__(self) -> str:
        shown = f"where={self.where!r}, kind={self.kind!r}"
        if self.kind == SERVICE_PRINCIPAL:
            shown += f", tenant_id={self.tenant_id!r}, client_id={self.client_id!r}"
        elif self.managed_identity_client_id is not None:
            shown += f", managed_identity_client_id={self.managed_identity_client_id!r}"
        return f"AzureIdentity({shown})"


def azure_identity(
    where: str,
    method: str,
    names: AzureAuthNames = SNAKE_NAMES,
    *,
    tenant_id: str | None = None,
    client_id: str | None = None,
    client_secret: str | Secret | None = None,
    managed_identity_client_id: str | None = None,
) -> AzureIdentity | None:
    """The identity for the auth method ``method`` (already chosen with select_auth);
    None when ``method`` is not an identity method (keys, SAS, connection string)."""
    kind = names.kind(method)
    if kind is None:
        return None
    if kind == SERVICE_PRINCIPAL:
        return AzureIdentity(
            where,
            kind,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=secret(client_secret),
        )
    return AzureIdentity(where, kind, managed_identity_client_id=managed_identity_client_id)


def identity_credential(identity: AzureIdentity, *, ca_bundle: str | None = None) -> Any:
    """A new async azure-identity credential for ``identity``; the caller closes it.

    ``ca_bundle`` (a PEM file) is trusted for the token requests too, beside the system's
    CAs: where the resource sits behind a private CA, the authority often does as well
    (Azure Stack, a TLS-inspecting proxy), while a public authority stays reachable.
    With it, the credential must be built in the running event loop (it opens its
    aiohttp session then).
    """
    options: dict[str, Any] = {}
    if ca_bundle is not None:
        options["transport"] = _transport_trusting(ca_bundle)
    if identity.kind == SERVICE_PRINCIPAL:
        from azure.identity.aio import ClientSecretCredential

        return ClientSecretCredential(
            identity.tenant_id or "",
            identity.client_id or "",
            identity.client_secret.reveal() if identity.client_secret else "",
            **options,
        )
    if os.environ.get(FEDERATED_TOKEN_ENV):
        from azure.identity.aio import WorkloadIdentityCredential

        return WorkloadIdentityCredential(client_id=identity.managed_identity_client_id, **options)
    from azure.identity.aio import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=identity.managed_identity_client_id, **options)


def trusting_context(ca_bundle: str) -> ssl.SSLContext:
    """A verifying TLS context that trusts ``ca_bundle`` (a PEM file) beside the system's
    CAs. azure-core's ``connection_verify=<file>`` trusts that file *instead of* them,
    which would cut off public endpoints (Entra ID, a public blob host) whenever a
    private CA is added."""
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca_bundle)
    return context


def _transport_trusting(ca_bundle: str) -> Any:
    """An azure-core aiohttp transport that trusts ``ca_bundle`` beside the system's CAs.

    azure-core's ``connection_verify=<file>`` would trust that file *instead of* the
    system's CAs, so the context is built here and handed to aiohttp's connector; the
    session keeps azure-core's own settings (proxies from the environment, no cookies,
    no automatic decompression) and is closed with the credential.
    """
    import aiohttp
    from azure.core.pipeline.transport import AioHttpTransport

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=trusting_context(ca_bundle)),
        trust_env=True,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )
    return AioHttpTransport(session=session, session_owner=True)


async def open_identity_credential(stack: AsyncExitStack, identity: AzureIdentity) -> Any:
    """:func:`identity_credential`, closed when ``stack`` unwinds."""
    credential = identity_credential(identity)
    stack.push_async_callback(credential.close)
    return credential


@dataclass(frozen=True)
class ConnectionStringShape:
    """What one service's connection string must hold (keys match case-insensitively)."""

    #: e.g. "Service Bus".
    service: str
    #: Alternatives: the string must hold every key of at least one of them.
    needs: tuple[tuple[str, ...], ...]
    #: A sample to show in errors (no real secret in it).
    example: str
    #: Keys whose value must be base64 (the SDK decodes them when it first signs).
    base64_keys: tuple[str, ...] = ()
    #: Keys whose value must be a URL naming a host.
    url_keys: tuple[str, ...] = ()


#: Blob storage: an account key, a SAS, or Azurite's shorthand.
BLOB_CONNECTION_STRING: Final = ConnectionStringShape(
    "Blob Storage",
    needs=(
        ("UseDevelopmentStorage",),
        ("AccountName", "AccountKey"),
        ("AccountName", "SharedAccessSignature"),
        ("BlobEndpoint", "SharedAccessSignature"),
    ),
    example="DefaultEndpointsProtocol=https;AccountName=<account>;AccountKey=<key>;"
    "EndpointSuffix=core.windows.net",
    base64_keys=("AccountKey",),
    url_keys=("BlobEndpoint",),
)
#: Service Bus: a shared access key (name + key) or a SAS.
SERVICE_BUS_CONNECTION_STRING: Final = ConnectionStringShape(
    "Service Bus",
    needs=(
        ("Endpoint", "SharedAccessKeyName", "SharedAccessKey"),
        ("Endpoint", "SharedAccessSignature"),
    ),
    example="Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<name>;"
    "SharedAccessKey=<key>",
    url_keys=("Endpoint",),
)


def parse_connection_string(
    where: str, value: Secret | str | None, shape: ConnectionStringShape
) -> dict[str, str]:
    """The ``Key=Value`` pairs of an Azure connection string (keys lower-cased), checked
    against ``shape`` when the backend is built, not on first use.

    Raises ConfigurationError saying what is wrong — a segment that is not ``Key=Value``,
    the keys missing, a key that is not base64, an endpoint that is not a URL — and
    never quoting the string or any of its values (they hold the key).
    """
    text = reveal(secret(value)) or ""
    expected = f"expected {shape.example}"
    pairs: dict[str, str] = {}
    for number, segment in enumerate(text.split(";"), start=1):
        if not segment.strip():
            continue
        key, sep, val = segment.partition("=")
        if not sep or not key.strip().isalnum():  # keys are words: AccountKey, Endpoint
            raise ConfigurationError(
                f"{where}: connection_string is not a {shape.service} connection string "
                f"(segment {number} is not Key=Value); {expected}"
            )
        pairs[key.strip().lower()] = val.strip()
    present = {k for k, v in pairs.items() if v}
    if not any({k.lower() for k in need} <= present for need in shape.needs):
        # The alternative the string already holds most of, then the one missing least.
        nearest = min(
            shape.needs,
            key=lambda need: (
                -len({k.lower() for k in need} & present),
                len({k.lower() for k in need} - present),
            ),
        )
        missing = [k for k in nearest if k.lower() not in present]
        raise ConfigurationError(
            f"{where}: connection_string is not a {shape.service} connection string "
            f"(it lacks {', '.join(missing)}); {expected}"
        )
    for key in shape.base64_keys:
        if key.lower() in pairs:
            try:
                base64.b64decode(pairs[key.lower()], validate=True)
            except (binascii.Error, ValueError):
                raise ConfigurationError(
                    f"{where}: the {key} in connection_string is not valid base64; copy "
                    "the connection string again from the portal"
                ) from None
    for key in shape.url_keys:
        url = pairs.get(key.lower())
        if url is not None and ("://" not in url or not url.split("://", 1)[1].strip("/")):
            raise ConfigurationError(
                f"{where}: the {key} in connection_string is not a URL with a host; {expected}"
            )
    return pairs


__all__ = [
    "BLOB_CONNECTION_STRING",
    "FEDERATED_TOKEN_ENV",
    "MANAGED_IDENTITY",
    "SERVICE_BUS_CONNECTION_STRING",
    "SERVICE_PRINCIPAL",
    "SERVICE_PRINCIPAL_OPTIONS",
    "SNAKE_NAMES",
    "WORD_NAMES",
    "AzureAuthNames",
    "AzureIdentity",
    "ConnectionStringShape",
    "IdentityMethods",
    "azure_identity",
    "identity_auth_methods",
    "identity_credential",
    "open_identity_credential",
    "parse_connection_string",
]
