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

    #: The provider under test, as get_storage names it.
    provider: ClassVar[str]
    #: The storage engine the backend runs: "sdk" or "obstore" (always named, as the
    #: default differs per provider).
    engine: ClassVar[str] = "sdk"
    #: Conformance tests the stand-in cannot pass although the provider is right, each
    #: with the reason: they run as strict xfails (so a fixed stand-in is noticed).
    known_gaps: ClassVar[dict[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _known_gap(self, request: pytest.FixtureRequest) -> None:
        """Marks a test listed in ``known_gaps`` as a strict xfail."""
        reason = self.known_gaps.get(request.node.originalname)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))

    @pytest.fixture
    async def backend(self, backend_options: dict[str, str]) -> AsyncIterator[Storage]:
        """A backend on the stand-in (``backend_options``: where, and how it signs in) with
        the harness's page size and engine, closed afterwards."""
        async with get_storage(
            self.provider,
            **backend_options,
            list_page_size=self.list_page_size,
            engine=self.engine,
        ) as storage:
            yield storage


class S3Harness(Harness):
    """s3 with static keys and endpoint_url on moto."""

    provider = "s3"
    list_page_size = 5
    secrets_in_use = (MotoEndpoint.secret_key,)

    @pytest.fixture
    def backend_options(self, moto: MotoEndpoint, bucket: Any) -> dict[str, str]:
        """The test bucket on moto, with its static keys."""
        return {"bucket": BUCKET, **moto.credentials()}


class R2Harness(S3Harness):
    """r2 (the S3 driver, explicit keys and endpoint) on moto."""

    provider = "r2"
    list_page_size = 4

    @pytest.fixture
    def backend_options(self, moto: MotoEndpoint, bucket: Any) -> dict[str, str]:
        """The test bucket on moto through endpoint_url, explicit keys, a CDN for links."""
        return {
            "bucket": BUCKET,
            "endpoint_url": moto.endpoint_url,
            "aws_access_key_id": moto.access_key,
            "aws_secret_access_key": moto.secret_key,
            "public_url": "https://cdn.example.com/assets/",
        }


class AzureConnectionStringHarness(Harness):
    """azure_blob with a connection string on Azurite."""

    provider = "azure_blob"
    list_page_size = 5
    secrets_in_use = (ACCOUNT_KEY,)

    @pytest.fixture
    def backend_options(self, azurite: AzuriteContainer) -> dict[str, str]:
        """A fresh container, reached through Azurite's connection string."""
        return {
            "connection_string": azurite.server.connection_string,
            "container": azurite.container,
        }


class AzureAccountKeyHarness(AzureConnectionStringHarness):
    """azure_blob with account_url + account_key on Azurite."""

    list_page_size = 4

    @pytest.fixture
    def backend_options(self, azurite: AzuriteContainer) -> dict[str, str]:
        """A fresh container, reached with Azurite's account URL and account key."""
        return {
            "account_url": azurite.server.account_url,
            "account_key": ACCOUNT_KEY,
            "container": azurite.container,
        }


class GCSHarness(Harness):
    """gcs with a service-account file on a GCS emulator: the subclass names it with an
    ``emulator`` fixture (the stand-in with an empty test bucket)."""

    provider = "gcs"
    list_page_size = 5

    @pytest.fixture
    def backend_options(
        self, emulator: GCSEmulator | FakeGCS, service_account_file: Path
    ) -> dict[str, str]:
        """The emulator's test bucket, and a key file that signs presigned URLs (the
        emulators take no token)."""
        return {
            "bucket": emulator.bucket,
            "emulator_host": emulator.endpoint,
            "credentials_path": str(service_account_file),
        }


def account_key_blob(azurite: AzuriteContainer, **options: Any) -> AzureBlobStorage:
    """An azure_blob backend with Azurite's account key on the test's fresh container
    (``options`` go to the constructor: ``engine``, or another ``container``...)."""
    options.setdefault("container", azurite.container)
    return AzureBlobStorage(
        account_url=azurite.server.account_url, account_key=ACCOUNT_KEY, **options
    )


async def data_plane_round_trip(storage: Storage) -> None:
    """Upload ``a.txt`` (with metadata) and read it back every way: ranged download,
    stream, head, exists and list (the operations an obstore engine runs alone)."""
    await storage.upload("a.txt", b"abc", metadata={"m": "1"})
    assert await storage.download("a.txt", start=1) == b"bc"
    assert b"".join([c async for c in storage.download_stream("a.txt")]) == b"abc"
    assert (await storage.head("a.txt")).metadata == {"m": "1"}
    assert await storage.exists("a.txt") and await storage.list() == ["a.txt"]


async def imported_after_a_round_trip(
    options: dict[str, str], packages: tuple[str, ...], prelude: str = ""
) -> str:
    """What a fresh interpreter prints as the sorted list of ``packages`` (top-level
    names) it has imported after ``prelude`` (source lines) and, with asyncio,
    ``get_storage(**options)``, an upload and a download of one object, and close."""
    code = (
        "import asyncio, sys\n"
        "from cloudrift.storage import get_storage\n"
        f"{prelude}"
        "async def main():\n"
        f"    s = get_storage(**{options!r})\n"
        "    await s.upload('iso', b'v')\n"
        "    assert await s.download('iso') == b'v'\n"
        "    await s.close()\n"
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
