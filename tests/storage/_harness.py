"""Conformance harnesses shared by the two engines of s3/r2, azure_blob and gcs.

Each of those providers runs the storage conformance suite twice: on its SDK engine
(``test_<provider>.py``) and on obstore (``test_<provider>_obstore.py``). The harness
classes here build the ``backend`` the same way for both; a test module subclasses one,
says which ``engine`` it runs (and, for gcs, which stand-in), and lists the conformance
tests its stand-in cannot pass in ``known_gaps``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from cloudrift.storage import Storage, get_storage
from cloudrift.storage.azure_blob import AzureBlobStorage
from tests.conformance.storage import StorageConformance
from tests.servers.azurite import ACCOUNT_KEY, AzuriteContainer
from tests.servers.gcs import GCSEmulator
from tests.servers.gcs_xml import FakeGCS
from tests.servers.moto import BUCKET, MotoEndpoint


class Harness(StorageConformance):
    """The storage suite on one engine of a provider."""

    #: The storage engine the backend runs: "sdk" or "obstore".
    engine: ClassVar[str]
    #: Conformance tests the stand-in cannot pass although the provider is right, each
    #: with the reason: they run as strict xfails (so a fixed stand-in is noticed).
    known_gaps: ClassVar[dict[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _known_gap(self, request: pytest.FixtureRequest) -> None:
        """Marks a test listed in ``known_gaps`` as a strict xfail."""
        reason = self.known_gaps.get(request.node.originalname)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


class S3Harness(Harness):
    """s3 with static keys and endpoint_url on moto."""

    list_page_size = 5
    secrets_in_use = (MotoEndpoint.secret_key,)

    @pytest.fixture
    async def backend(self, moto: MotoEndpoint, bucket: Any) -> AsyncIterator[Storage]:
        """An s3 backend against the test bucket, closed afterwards."""
        async with get_storage(
            "s3", bucket=BUCKET, list_page_size=5, engine=self.engine, **moto.credentials()
        ) as storage:
            yield storage


class R2Harness(Harness):
    """r2 (the S3 driver, explicit keys and endpoint) on moto."""

    list_page_size = 4
    secrets_in_use = (MotoEndpoint.secret_key,)

    @pytest.fixture
    async def backend(self, moto: MotoEndpoint, bucket: Any) -> AsyncIterator[Storage]:
        """An r2 backend pointed at moto through endpoint_url, closed afterwards."""
        async with get_storage(
            "r2",
            bucket=BUCKET,
            endpoint_url=moto.endpoint_url,
            aws_access_key_id=moto.access_key,
            aws_secret_access_key=moto.secret_key,
            public_url="https://cdn.example.com/assets/",
            list_page_size=4,
            engine=self.engine,
        ) as storage:
            yield storage


class AzureConnectionStringHarness(Harness):
    """azure_blob with a connection string on Azurite."""

    list_page_size = 5
    secrets_in_use = (ACCOUNT_KEY,)

    @pytest.fixture
    async def backend(self, azurite: AzuriteContainer) -> AsyncIterator[Storage]:
        """A backend on a fresh container, closed afterwards."""
        async with get_storage(
            "azure_blob",
            connection_string=azurite.server.connection_string,
            container=azurite.container,
            list_page_size=5,
            engine=self.engine,
        ) as storage:
            yield storage


class AzureAccountKeyHarness(Harness):
    """azure_blob with account_url + account_key on Azurite."""

    list_page_size = 4
    secrets_in_use = (ACCOUNT_KEY,)

    @pytest.fixture
    async def backend(self, azurite: AzuriteContainer) -> AsyncIterator[Storage]:
        """A backend on a fresh container, closed afterwards."""
        async with get_storage(
            "azure_blob",
            account_url=azurite.server.account_url,
            account_key=ACCOUNT_KEY,
            container=azurite.container,
            list_page_size=4,
            engine=self.engine,
        ) as storage:
            yield storage


def account_key_blob(azurite: AzuriteContainer, **options: Any) -> AzureBlobStorage:
    """An azure_blob backend with Azurite's account key on the test's fresh container
    (``options`` go to the constructor: ``engine``, or another ``container``...)."""
    options.setdefault("container", azurite.container)
    return AzureBlobStorage(
        account_url=azurite.server.account_url, account_key=ACCOUNT_KEY, **options
    )


class GCSHarness(Harness):
    """gcs with a service-account file on a GCS emulator: the subclass names it with an
    ``emulator`` fixture (the stand-in with an empty test bucket)."""

    list_page_size = 5

    @pytest.fixture
    async def backend(
        self, emulator: GCSEmulator | FakeGCS, service_account_file: Path
    ) -> AsyncIterator[Storage]:
        """A gcs backend on the emulator's test bucket, closed afterwards."""
        async with get_storage(
            "gcs",
            bucket=emulator.bucket,
            emulator_host=emulator.endpoint,
            # Signs presigned URLs; the emulators take no token.
            credentials_path=str(service_account_file),
            list_page_size=5,
            engine=self.engine,
        ) as storage:
            yield storage


async def data_plane_round_trip(storage: Storage) -> None:
    """Upload ``a.txt`` (with metadata) and read it back every way: ranged download,
    stream, head, exists and list (the operations an obstore engine runs alone)."""
    await storage.upload("a.txt", b"abc", metadata={"m": "1"})
    assert await storage.download("a.txt", start=1) == b"bc"
    assert b"".join([c async for c in storage.download_stream("a.txt")]) == b"abc"
    assert (await storage.head("a.txt")).metadata == {"m": "1"}
    assert await storage.exists("a.txt") and await storage.list() == ["a.txt"]


async def packages_imported_by(main: str, packages: tuple[str, ...], prelude: str = "") -> str:
    """The sorted list of ``packages`` (top-level names) that a fresh interpreter has
    imported after running ``prelude`` and then, with asyncio, ``async def main()`` whose
    body is ``main`` (indented source lines), as that interpreter prints it."""
    code = (
        "import asyncio, sys\n"
        "from cloudrift.storage import get_storage\n"
        f"{prelude}"
        "async def main():\n"
        f"{main}"
        "asyncio.run(main())\n"
        "print(sorted({m.split('.')[0] for m in sys.modules\n"
        f"    if m.startswith({packages!r})}}))\n"
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()
