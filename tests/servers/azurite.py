"""Azurite's Blob service (the npm package) on a free loopback port, in memory.

Azurite speaks the real Blob REST API and really verifies Shared Key and SAS
signatures, so negative presigned-URL tests run here. ``azurite_server`` starts once
per session; ``azurite`` (function scope) hands out the endpoint and a fresh,
uniquely named container for the test, deleted afterwards.
"""

from __future__ import annotations

import itertools
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers._process import LOOPBACK, ManagedProcess, free_port, port_open
from tests.servers.tls import TLSFiles

ACCOUNT = "devstoreaccount1"
#: The well-known development key every Azurite install accepts (public, not a secret).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_ROOT = Path(__file__).resolve().parents[2]
_names = itertools.count()


def azurite_binary() -> str:
    """Path of azurite-blob, or fail saying how to install it."""
    configured = os.environ.get("CLOUDRIFT_AZURITE_BLOB")
    candidate = configured or str(_ROOT / ".tools/azurite/node_modules/.bin/azurite-blob")
    if not os.access(candidate, os.X_OK):
        pytest.fail(
            f"azurite-blob not found at {candidate}: run `make install` "
            "(scripts/ensure-azurite.sh), or set CLOUDRIFT_AZURITE_BLOB",
            pytrace=False,
        )
    return candidate


@dataclass(frozen=True)
class AzuriteServer:
    """A running Azurite blob endpoint and its well-known development account."""

    port: int
    process: ManagedProcess
    account: str = ACCOUNT
    account_key: str = ACCOUNT_KEY
    scheme: str = "http"

    @property
    def account_url(self) -> str:
        """``http://127.0.0.1:P/devstoreaccount1``: the blob endpoint of the account."""
        return f"{self.scheme}://{LOOPBACK}:{self.port}/{self.account}"

    @property
    def connection_string(self) -> str:
        """A connection string with the account key and the local blob endpoint."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={self.account_key};BlobEndpoint={self.account_url};"
        )

    @property
    def started_in(self) -> float:
        """Seconds Azurite took to start answering."""
        return self.process.started_in or 0.0


def _answers(url: str, ssl_context: ssl.SSLContext | None = None) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1, context=ssl_context)
    except urllib.error.HTTPError:
        return True  # an HTTP answer (403 without auth) means the service is up
    except OSError:
        return False
    return True


def _start(
    log_dir: Path,
    name: str,
    extra_args: list[str],
    scheme: str = "http",
    ssl_context: ssl.SSLContext | None = None,
) -> ManagedProcess:
    port = free_port()
    argv = [
        azurite_binary(),
        "--blobHost",
        LOOPBACK,
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
        *extra_args,
    ]
    probe = f"{scheme}://{LOOPBACK}:{port}/{ACCOUNT}?comp=list"
    process = ManagedProcess(
        name,
        argv,
        port=port,
        log_dir=log_dir,
        ready=lambda: port_open(port) and _answers(probe, ssl_context),
        timeout=30,
    )
    return process.start()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """azurite-blob in memory on a free 127.0.0.1 port for the whole session."""
    process = _start(tmp_path_factory.mktemp("azurite"), "azurite-blob", [])
    try:
        yield AzuriteServer(port=process.port, process=process)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def azurite_oauth_server(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TLSFiles
) -> Iterator[AzuriteServer]:
    """A second Azurite over HTTPS with ``--oauth basic``: accepts Entra-style bearer
    tokens (checking issuer, audience and lifetime, not the signature) and issues
    user-delegation keys. Clients must trust ``tls_files.ca_cert``."""
    context = ssl.create_default_context(cafile=str(tls_files.ca_cert))
    process = _start(
        tmp_path_factory.mktemp("azurite-oauth"),
        "azurite-blob-oauth",
        [
            "--oauth",
            "basic",
            "--cert",
            str(tls_files.server_cert),
            "--key",
            str(tls_files.server_key),
        ],
        scheme="https",
        ssl_context=context,
    )
    try:
        yield AzuriteServer(port=process.port, process=process, scheme="https")
    finally:
        process.stop()


@dataclass(frozen=True)
class AzuriteContainer:
    """The session's Azurite plus the name of a container created for this test."""

    server: AzuriteServer
    container: str


@pytest.fixture
def azurite(azurite_server: AzuriteServer) -> Iterator[AzuriteContainer]:
    """A fresh empty container on the session's Azurite; deleted after the test."""
    from azure.storage.blob import BlobServiceClient

    name = f"test-{os.getpid()}-{next(_names)}"
    service = BlobServiceClient.from_connection_string(azurite_server.connection_string)
    service.create_container(name)
    try:
        yield AzuriteContainer(azurite_server, name)
    finally:
        service.delete_container(name)
        service.close()
