"""azure_blob with Entra ID tokens, end to end on both engines: azure-identity's own
credentials (managed identity, service principal) fetch tokens from local token
endpoints (tests/servers/entra.py), and the HTTPS Azurite with ``--oauth basic`` checks
every bearer token the data plane sends. Nothing is patched between the backend and the
token endpoint."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cloudrift.core.exceptions import StoragePermissionError
from cloudrift.storage.azure_blob import AzureBlobStorage
from tests.servers.azurite import ACCOUNT_KEY, AzuriteServer
from tests.servers.entra import (
    IDENTITY_HEADER,
    SP_CLIENT_ID,
    SP_CLIENT_SECRET,
    STORAGE_RESOURCE,
    TENANT,
    EntraServer,
    serving,
)
from tests.servers.tls import TLSFiles

ENGINES = ["obstore", "sdk"]
#: What azure-identity's pipeline puts first in its User-Agent (obstore's own Azure
#: credentials would send object_store's).
IDENTITY_AGENT = "azsdk-python-identity"
#: Variables that would make azure-identity pick another managed identity source.
_OTHER_SOURCES = (
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
)


@pytest.fixture
def oauth_container(azurite_oauth_server: AzuriteServer, tls_files: TLSFiles) -> Iterator[str]:
    """A fresh container on the HTTPS/OAuth Azurite (made with the account key)."""
    from azure.storage.blob import BlobServiceClient

    admin = BlobServiceClient(
        azurite_oauth_server.account_url,
        credential=ACCOUNT_KEY,
        connection_verify=str(tls_files.ca_cert),
    )
    name = f"token-{time.monotonic_ns()}"
    admin.create_container(name)
    try:
        yield name
    finally:
        admin.delete_container(name)
        admin.close()


@pytest.fixture
def managed_identity_env(identity_endpoint: EntraServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment App Service gives a workload: IDENTITY_ENDPOINT + IDENTITY_HEADER.

    ``AZURE_MSI_ENDPOINT`` (object_store's own managed identity variable) points at a path
    the stand-in refuses: if obstore fetched tokens itself, that request would show."""
    for name in _OTHER_SOURCES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity_endpoint.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    monkeypatch.setenv("AZURE_MSI_ENDPOINT", f"{identity_endpoint.url}/obstore-own-msi")
    monkeypatch.setenv("AZURE_CLIENT_ID", "ambient-client-id")


@pytest.fixture
def authority_env(entra_authority: EntraServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``AZURE_AUTHORITY_HOST`` names the local HTTPS authority (as for a sovereign cloud)."""
    for name in _OTHER_SOURCES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", entra_authority.url)


#: Service-principal options the authority stand-in accepts.
SERVICE_PRINCIPAL = {
    "tenant_id": TENANT,
    "client_id": SP_CLIENT_ID,
    "client_secret": SP_CLIENT_SECRET,
}


@pytest.fixture(name="engine", params=ENGINES)
def _engine(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both engines."""
    return str(request.param)


@pytest.fixture
def backend(
    engine: str, azurite_oauth_server: AzuriteServer, oauth_container: str, tls_files: TLSFiles
) -> Callable[..., AzureBlobStorage]:
    """Builds an azure_blob backend on the HTTPS/OAuth Azurite's fresh container, on the
    test's engine, trusting the test CA through ``ca_bundle``; ``auth`` picks the method."""

    def build(**auth: Any) -> AzureBlobStorage:
        return AzureBlobStorage(
            account_url=azurite_oauth_server.account_url,
            container=oauth_container,
            ca_bundle=str(tls_files.ca_cert),
            engine=engine,
            **auth,
        )

    return build


async def _round_trip(storage: AzureBlobStorage) -> None:
    """Upload, download, head, exists, list and delete, each needing a valid token."""
    await storage.upload("t/a.txt", b"token bytes", metadata={"m": "1"})
    assert await storage.download("t/a.txt") == b"token bytes"
    assert (await storage.head("t/a.txt")).metadata == {"m": "1"}
    assert await storage.exists("t/a.txt")
    assert await storage.list("t/") == ["t/a.txt"]
    await storage.delete("t/a.txt")
    assert await storage.list("t/") == []


def _operations(storage: AzureBlobStorage) -> list[Any]:
    """Four operations, one request each (so each one needs its own token when tokens
    expire at once)."""
    return [
        lambda: storage.upload("r.txt", b"refresh"),
        lambda: storage.download("r.txt"),
        lambda: storage.head("r.txt"),
        lambda: storage.delete("r.txt"),
    ]


async def _each_operation_fetches_a_new_token(
    storage: AzureBlobStorage, server: EntraServer
) -> None:
    """With tokens announced as expiring at once, each operation asks for a new one and
    succeeds with it (the token the data plane sends is the new one)."""
    server.state.lifetime = 0
    async with storage:
        for run in _operations(storage):
            before = len(server.tokens)
            await run()
            assert len(server.tokens) > before
    tokens = [r.token for r in server.tokens]
    assert len(set(tokens)) == len(tokens) >= 4


# ------------------------------------------------------------------ managed identity


@pytest.mark.usefixtures("managed_identity_env")
async def test_managed_identity_token_from_the_identity_endpoint_moves_data(
    engine: str,
    backend: Callable[..., AzureBlobStorage],
    identity_endpoint: EntraServer,
) -> None:
    """A user-assigned managed identity: azure-identity asks the App Service endpoint
    (identity header, storage resource, the identity's client id) once, and every data
    operation is authorised by that bearer token; obstore fetches no token of its own."""
    storage = backend(managed_identity_client_id="user-assigned-id")
    async with storage:
        await _round_trip(storage)
        if engine == "obstore":
            assert not storage._client.opened  # the data went through obstore alone
    requests = identity_endpoint.state.recorded()
    assert len(requests) == 1, requests  # one token, cached for its hour
    (asked,) = requests
    assert (asked.method, asked.path) == ("GET", "/msi/token")
    assert asked.headers["x-identity-header"] == IDENTITY_HEADER
    assert asked.headers["user-agent"].startswith(IDENTITY_AGENT)
    assert asked.query == {
        "api-version": "2019-08-01",
        "resource": STORAGE_RESOURCE,
        "client_id": "user-assigned-id",
    }


@pytest.mark.usefixtures("managed_identity_env")
async def test_system_assigned_identity_names_no_client_id(
    backend: Callable[..., AzureBlobStorage],
    identity_endpoint: EntraServer,
) -> None:
    """account_url alone asks for the system-assigned identity: no client id is sent,
    not even the ambient AZURE_CLIENT_ID."""
    async with backend() as storage:
        await storage.upload("s.txt", b"system")
        assert await storage.download("s.txt") == b"system"
    (asked,) = identity_endpoint.tokens
    assert "client_id" not in asked.query
    assert asked.query["resource"] == STORAGE_RESOURCE


@pytest.mark.usefixtures("managed_identity_env")
async def test_expired_managed_identity_token_is_fetched_again(
    backend: Callable[..., AzureBlobStorage],
    identity_endpoint: EntraServer,
) -> None:
    """A token announced as expiring at once is fetched again before each next request,
    and each new token is the one the data plane sends (the operations succeed)."""
    await _each_operation_fetches_a_new_token(backend(), identity_endpoint)


@pytest.mark.usefixtures("managed_identity_env")
async def test_refused_identity_request_is_a_permission_error(
    backend: Callable[..., AzureBlobStorage],
    identity_endpoint: EntraServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the identity endpoint refuses (wrong identity header), the operation raises
    StoragePermissionError, not an azure-identity or obstore exception."""
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    # One attempt: the SDK engine's retry policy retries a refused token request like
    # any other error (with backoff), which proves nothing more here.
    storage = backend(max_attempts=1)
    async with storage:
        with pytest.raises(StoragePermissionError) as caught:
            await storage.upload("x.txt", b"x")
    assert "not-the-header" not in str(caught.value)
    assert identity_endpoint.state.recorded(), "the endpoint was never asked"
    assert not identity_endpoint.tokens


# ------------------------------------------------------------------ service principal


@pytest.mark.usefixtures("authority_env")
async def test_service_principal_token_from_the_authority_moves_data(
    engine: str,
    backend: Callable[..., AzureBlobStorage],
    entra_authority: EntraServer,
) -> None:
    """A service principal: azure-identity posts the client-credentials grant to the
    tenant's token endpoint on the authority (trusted through ca_bundle) once, and every
    data operation is authorised by that bearer token."""
    storage = backend(**SERVICE_PRINCIPAL)
    async with storage:
        await _round_trip(storage)
        if engine == "obstore":
            assert not storage._client.opened
    requests = entra_authority.state.recorded()
    assert len(requests) == 1, requests
    (asked,) = requests
    assert (asked.method, asked.path) == ("POST", f"/{TENANT}/oauth2/v2.0/token")
    assert asked.headers["user-agent"].startswith(IDENTITY_AGENT)
    assert {
        k: asked.form.get(k) for k in ("grant_type", "client_id", "client_secret", "scope")
    } == {
        "grant_type": "client_credentials",
        "client_id": SP_CLIENT_ID,
        "client_secret": SP_CLIENT_SECRET,
        "scope": f"{STORAGE_RESOURCE}/.default",
    }


@pytest.mark.usefixtures("authority_env")
async def test_expired_service_principal_token_is_fetched_again(
    backend: Callable[..., AzureBlobStorage],
    entra_authority: EntraServer,
) -> None:
    """A service principal token announced as expiring at once is fetched again before
    each next request; the operations succeed with each new token."""
    await _each_operation_fetches_a_new_token(backend(**SERVICE_PRINCIPAL), entra_authority)


@pytest.mark.usefixtures("authority_env")
async def test_wrong_client_secret_is_a_permission_error_without_the_secret(
    backend: Callable[..., AzureBlobStorage],
    entra_authority: EntraServer,
) -> None:
    """The authority refusing the client secret raises StoragePermissionError, and the
    secret appears neither in the error nor in the backend's repr."""
    storage = backend(
        **{**SERVICE_PRINCIPAL, "client_secret": "wrong-secret-value"},
        max_attempts=1,  # as above: the SDK engine would retry the refusal
    )
    async with storage:
        with pytest.raises(StoragePermissionError) as caught:
            await storage.upload("x.txt", b"x")
    assert "wrong-secret-value" not in str(caught.value)
    assert "wrong-secret-value" not in repr(storage)
    assert entra_authority.state.recorded() and not entra_authority.tokens


@pytest.mark.usefixtures("managed_identity_env")
async def test_both_engines_take_the_credential_from_the_backends_credential_method(
    backend: Callable[..., AzureBlobStorage],
    identity_endpoint: EntraServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The credential of either engine is whatever ``storage.credential()`` returns when
    the first operation runs (one place decides it; replacing it reaches the engine)."""
    from azure.identity.aio import ManagedIdentityCredential

    storage = backend()
    monkeypatch.setattr(
        storage, "credential", lambda: ManagedIdentityCredential(client_id="replaced-identity")
    )
    async with storage:
        await storage.upload("c.txt", b"replaced")
    (asked,) = identity_endpoint.tokens
    assert asked.query.get("client_id") == "replaced-identity"


async def test_ca_bundle_adds_trust_for_token_requests_without_dropping_the_systems(
    backend: Callable[..., AzureBlobStorage],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ca_bundle trusted for the storage endpoint, an authority whose certificate
    comes from a CA only the system trusts (SSL_CERT_FILE) is still reachable."""
    import trustme

    public = trustme.CA()
    system_bundle = tmp_path / "system-ca.pem"
    public.cert_pem.write_to_path(str(system_bundle))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    public.issue_cert("127.0.0.1").configure_cert(context)
    for name in _OTHER_SOURCES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(system_bundle))
    with serving(context) as authority:
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", authority.url)
        storage = backend(**SERVICE_PRINCIPAL)
        async with storage:
            await storage.upload("p.txt", b"public authority")
            assert await storage.download("p.txt") == b"public authority"
        assert len(authority.tokens) == 1


async def test_ca_bundle_adds_trust_for_storage_requests_without_dropping_the_systems(
    engine: str,
    azurite_oauth_server: AzuriteServer,
    oauth_container: str,
    tls_files: TLSFiles,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ca_bundle naming some other private CA still lets storage requests reach an
    endpoint whose certificate only the system's CAs vouch for (SSL_CERT_FILE here)."""
    import trustme

    unrelated = tmp_path / "other-private-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(unrelated))
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca_cert))
    storage = AzureBlobStorage(
        account_url=azurite_oauth_server.account_url,
        container=oauth_container,
        account_key=ACCOUNT_KEY,
        ca_bundle=str(unrelated),
        engine=engine,
        max_attempts=1,
    )
    async with storage:
        await storage.upload("sys.txt", b"system trust kept")
        assert await storage.download("sys.txt") == b"system trust kept"
