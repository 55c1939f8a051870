"""Azurite's Blob service (the npm package) on a free loopback port, in memory.

Azurite speaks the real Blob REST API and really verifies Shared Key and SAS
signatures, so negative presigned-URL tests run here. ``azurite_server`` starts once
per session; ``azurite`` (function scope) hands out the endpoint and a fresh,
uniquely named container for the test, deleted afterwards.
"""

from __future__ import annotations

import itertools
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers._process import LOOPBACK, ManagedProcess, free_port, port_open

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

    @property
    def account_url(self) -> str:
        """``http://127.0.0.1:P/devstoreaccount1``: the blob endpoint of the account."""
        return f"http://{LOOPBACK}:{self.port}/{self.account}"

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


def _answers(port: int) -> bool:
    if not port_open(port):
        return False
    try:
        urllib.request.urlopen(f"http://{LOOPBACK}:{port}/{ACCOUNT}?comp=list", timeout=1)
    except urllib.error.HTTPError:
        return True  # an HTTP answer (403 without auth) means the service is up
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """azurite-blob in memory on a free 127.0.0.1 port for the whole session."""
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
    ]
    process = ManagedProcess(
        "azurite-blob",
        argv,
        port=port,
        log_dir=tmp_path_factory.mktemp("azurite"),
        ready=lambda: _answers(port),
        timeout=30,
    )
    process.start()
    try:
        yield AzuriteServer(port=port, process=process)
    finally:
        process.stop()


@dataclass(frozen=True)
class AzuriteContainer:
    """The session's Azurite plus the name of a container created for this test."""

    server: AzuriteServer
    container: str

    def __getattr__(self, name: str) -> object:
        return getattr(self.server, name)


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
