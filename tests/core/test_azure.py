"""The shared Entra ID plumbing: identity methods, explicit credentials, one per backend."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from cloudrift.core.auth import auth_method, select_auth
from cloudrift.core.azure import (
    BLOB_CONNECTION_STRING,
    FEDERATED_TOKEN_ENV,
    MANAGED_IDENTITY,
    SERVICE_BUS_CONNECTION_STRING,
    SERVICE_PRINCIPAL,
    SNAKE_NAMES,
    WORD_NAMES,
    AzureAuthNames,
    ConnectionStringShape,
    azure_identity,
    identity_auth_methods,
    identity_credential,
    open_identity_credential,
    parse_connection_string,
)
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.secrets import Secret

SP_SECRET = "sp-secret-value-42"
SP = {"tenant_id": "t", "client_id": "c", "client_secret": SP_SECRET}


@pytest.fixture
def federated_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AKS workload identity's environment: a mounted federated token file."""
    token = tmp_path / "token"
    token.write_text("jwt")
    monkeypatch.setenv(FEDERATED_TOKEN_ENV, str(token))
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant")
    monkeypatch.setenv("AZURE_CLIENT_ID", "client")


@pytest.fixture
def no_federated_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """No workload-identity token mounted: plain managed identity."""
    monkeypatch.delenv(FEDERATED_TOKEN_ENV, raising=False)


def _methods(names: AzureAuthNames = SNAKE_NAMES) -> list[Any]:
    pair = identity_auth_methods("account_url", names)
    return [auth_method("account key", ["account_url", "account_key"]), *vars(pair).values()]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"account_url": "u"}, "managed_identity"),
        ({"account_url": "u", "managed_identity_client_id": "id"}, "managed_identity"),
        ({"account_url": "u", **SP}, "service_principal"),
        ({"account_url": "u", "account_key": "k"}, "account key"),
    ],
)
def test_identity_methods_select_strictly(given: dict[str, str], expected: str) -> None:
    """Location alone is managed identity; the three service-principal options are one."""
    assert select_auth("blob", given, _methods()) == expected


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ({"account_url": "u", "tenant_id": "t"}, "missing client_id, client_secret"),
        ({"account_url": "u", "client_secret": ""}, "empty string"),
        ({"account_url": "u", "account_key": "k", "tenant_id": "t"}, "conflicting"),
    ],
)
def test_incomplete_or_conflicting_identity_options_are_refused(
    given: dict[str, str], match: str
) -> None:
    """Half a service principal, empty values or mixed methods raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match=match):
        select_auth("blob", given, _methods())


def test_provider_names_and_options_are_kept() -> None:
    """A provider's names, location options and managed-identity option come through."""
    names = AzureAuthNames("from_managed_identity", "from_service_principal")
    pair = identity_auth_methods(["host", "username"], names, managed_identity_option="client_id")
    assert pair.managed_identity.name == "from_managed_identity"
    assert pair.managed_identity.required == {"host", "username"}
    assert pair.managed_identity.optional == {"client_id"}
    assert pair.service_principal.required == {"host", "username", *SP}
    assert WORD_NAMES.kind("service principal") == SERVICE_PRINCIPAL
    assert WORD_NAMES.kind("account key") is None


def test_key_based_methods_have_no_identity() -> None:
    """azure_identity is None for methods that are not Entra identities."""
    assert azure_identity("blob", "account key", WORD_NAMES) is None


def test_service_principal_secret_is_wrapped_and_hidden() -> None:
    """The client secret becomes a Secret and never shows in repr."""
    identity = azure_identity("blob", "service_principal", **SP)
    assert identity is not None and identity.kind == SERVICE_PRINCIPAL
    assert isinstance(identity.client_secret, Secret)
    assert SP_SECRET not in repr(identity) and "client_id='c'" in repr(identity)
    assert identity.secrets == (Secret(SP_SECRET),)


def test_service_principal_builds_a_client_secret_credential() -> None:
    """A service principal becomes ClientSecretCredential with its tenant and client id."""
    from azure.identity.aio import ClientSecretCredential

    identity = azure_identity("blob", "service_principal", **SP)
    assert identity is not None
    credential = identity_credential(identity)
    assert isinstance(credential, ClientSecretCredential)
    assert credential._client._tenant_id == "t" and credential._client_id == "c"


def test_managed_identity_names_the_identity_over_ambient_variables(
    no_federated_token: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The named user-assigned identity wins over an ambient AZURE_CLIENT_ID; no chain."""
    from azure.identity.aio import ManagedIdentityCredential

    monkeypatch.setenv("AZURE_CLIENT_ID", "ambient-client-id")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "ambient-secret")
    identity = azure_identity("blob", "managed_identity", managed_identity_client_id="my-identity")
    assert identity is not None and identity.kind == MANAGED_IDENTITY
    credential = identity_credential(identity)
    assert isinstance(credential, ManagedIdentityCredential)
    assert credential._credential._client._identity_config == {"client_id": "my-identity"}


def test_workload_identity_when_a_federated_token_is_mounted(federated_token: None) -> None:
    """With AZURE_FEDERATED_TOKEN_FILE set, managed identity means workload identity."""
    from azure.identity.aio import WorkloadIdentityCredential

    identity = azure_identity("blob", "managed_identity")
    assert identity is not None
    assert isinstance(identity_credential(identity), WorkloadIdentityCredential)


async def test_every_backend_gets_its_own_credential_closed_with_its_stack(
    no_federated_token: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stacks get two credentials; unwinding one closes only its own."""
    from azure.identity.aio import ManagedIdentityCredential

    closed: list[int] = []
    original = ManagedIdentityCredential.close

    async def recording_close(self: Any) -> None:
        closed.append(id(self))
        await original(self)

    monkeypatch.setattr(ManagedIdentityCredential, "close", recording_close)
    identity = azure_identity("blob", "managed_identity")
    assert identity is not None
    async with AsyncExitStack() as outer:
        second = await open_identity_credential(outer, identity)
        async with AsyncExitStack() as stack:
            first = await open_identity_credential(stack, identity)
            assert first is not second
        assert closed == [id(first)]
    assert closed == [id(first), id(second)]


# ----------------------------------------------------- every Azure provider, the same way


async def test_acs_managed_identity_uses_workload_identity_when_mounted(
    federated_token: None,
) -> None:
    """azure_acs follows the same identity rule as azure_blob (workload identity on AKS)."""
    from azure.identity.aio import WorkloadIdentityCredential

    from cloudrift.email import get_email

    async with get_email("azure_acs", endpoint="https://r.communication.azure.com") as email:
        client = await email._client.get()  # type: ignore[attr-defined]
        credential = client._config.authentication_policy._credential
        assert isinstance(credential, WorkloadIdentityCredential)


def test_azure_redis_managed_identity_uses_workload_identity_when_mounted(
    federated_token: None,
) -> None:
    """azure_redis follows the same identity rule as azure_blob (workload identity on AKS)."""
    from azure.identity.aio import WorkloadIdentityCredential

    from cloudrift.cache import get_cache

    cache = get_cache(
        "azure_redis", "from_managed_identity", host="c.redis.cache.windows.net", username="oid"
    )
    credential = cache.token_provider._mint.credential  # type: ignore[attr-defined]
    assert isinstance(credential, WorkloadIdentityCredential)


async def test_acs_service_principal_secret_never_shows(no_federated_token: None) -> None:
    """azure_acs builds a ClientSecretCredential and keeps the secret out of repr."""
    from azure.identity.aio import ClientSecretCredential

    from cloudrift.email import get_email

    email = get_email("azure_acs", endpoint="https://r.communication.azure.com", **SP)
    client = await email._client.get()  # type: ignore[attr-defined]
    assert isinstance(client._config.authentication_policy._credential, ClientSecretCredential)
    assert SP_SECRET not in repr(email) + repr(vars(email))
    await email.close()


# ------------------------------------------------------- connection strings

GOOD_KEY = "a2V5LWJ5dGVzLWZvci10ZXN0cw=="
SECRET_MARK = "hunter2"


@pytest.mark.parametrize(
    ("connection_string", "match"),
    [
        (f"AccountName=acct;AccountKey={SECRET_MARK}!!notbase64", "not valid base64"),
        (f"AccountName=acct;{SECRET_MARK}", "segment 2 is not Key=Value"),
        (f"AccountKey={GOOD_KEY}", "lacks AccountName"),
        (f"https://acct.blob.core.windows.net/?sig={SECRET_MARK}", "not Key=Value"),
        (f"BlobEndpoint=acct;SharedAccessSignature=sig={SECRET_MARK}", "not a URL"),
        ("", "lacks"),
    ],
)
def test_malformed_blob_connection_string_fails_at_build(
    connection_string: str, match: str
) -> None:
    """get_storage("azure_blob") refuses a malformed connection string before any request,
    saying what is wrong and never quoting the string."""
    from cloudrift.storage import get_storage

    with pytest.raises(ConfigurationError, match=match) as info:
        get_storage("azure_blob", container="c", connection_string=connection_string or " ")
    assert SECRET_MARK not in str(info.value)
    assert GOOD_KEY not in str(info.value)


@pytest.mark.parametrize(
    ("connection_string", "match"),
    [
        (f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey={SECRET_MARK}", "lacks"),
        (f"SharedAccessKeyName=n;SharedAccessKey={SECRET_MARK}", "lacks Endpoint"),
        (f"Endpoint=ns;SharedAccessKeyName=n;SharedAccessKey={SECRET_MARK}", "not a URL"),
        (f"{SECRET_MARK};Endpoint=sb://ns/", "segment 1"),
    ],
)
def test_malformed_service_bus_connection_string_fails_at_build(
    connection_string: str, match: str
) -> None:
    """get_queue("azure_bus") refuses a malformed connection string at build, key unquoted."""
    from cloudrift.messaging import get_queue

    with pytest.raises(ConfigurationError, match=match) as info:
        get_queue("azure_bus", queue_name="q", connection_string=connection_string)
    assert SECRET_MARK not in str(info.value)


@pytest.mark.parametrize(
    ("shape", "connection_string"),
    [
        (BLOB_CONNECTION_STRING, "UseDevelopmentStorage=true"),
        (
            BLOB_CONNECTION_STRING,
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={GOOD_KEY};"
            "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        ),
        (
            BLOB_CONNECTION_STRING,
            "BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=1&sig=x",
        ),
        (
            SERVICE_BUS_CONNECTION_STRING,
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=abc=;EntityPath=q",
        ),
        (
            SERVICE_BUS_CONNECTION_STRING,
            "endpoint=sb://127.0.0.1:5672;sharedaccesskeyname=n;sharedaccesskey=k;"
            "UseDevelopmentEmulator=true",
        ),
    ],
)
def test_valid_connection_strings_are_accepted(
    shape: ConnectionStringShape, connection_string: str
) -> None:
    """Portal, Azurite and emulator connection strings parse (keys case-insensitive)."""
    pairs = parse_connection_string("test", connection_string, shape)
    assert pairs
