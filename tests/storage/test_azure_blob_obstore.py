"""The azure_blob provider with engine="obstore" (its default) on Azurite: the whole
conformance suite, plus what the engine must keep (lazy SDK client, errors)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from cloudrift.core.exceptions import (
    BucketNotFoundError,
    InvalidRangeError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
)
from cloudrift.storage.azure_blob import AzureBlobStorage
from cloudrift.storage.base import MIN_PART_SIZE
from tests.conformance.storage import agen
from tests.servers.azurite import ACCOUNT_KEY, AzuriteContainer
from tests.storage._harness import (
    AzureAccountKeyHarness,
    AzureConnectionStringHarness,
    account_key_blob,
    data_plane_round_trip,
    imported_after_a_round_trip,
)
from tests.storage._proxy import CuttableProxy, upload_cut_midway
from tests.storage._replaced import CASES, check_stream_while_replaced


class TestAzureBlobObstoreConnectionString(AzureConnectionStringHarness):
    """Conformance harness: azure_blob with a connection string, data plane on obstore."""

    engine = "obstore"


class TestAzureBlobObstoreAccountKey(AzureAccountKeyHarness):
    """Conformance harness: azure_blob with account_url + account_key on obstore."""

    engine = "obstore"


@pytest.fixture
async def blob(azurite: AzuriteContainer) -> AsyncIterator[AzureBlobStorage]:
    """An account-key backend with the obstore engine on a fresh container."""
    async with account_key_blob(azurite, engine="obstore") as storage:
        yield storage


async def test_data_plane_never_builds_the_sdk_client(blob: AzureBlobStorage) -> None:
    """Upload, download, stream, head, exists, list and delete run on obstore alone; the
    SDK client is built on the first operation that needs it (copy)."""
    await data_plane_round_trip(blob)
    await blob.delete("a.txt")
    assert not blob._client.opened
    await blob.upload("b.txt", b"b")
    await blob.copy("b.txt", "c.txt")
    assert blob._client.opened
    assert await blob.download("c.txt") == b"b"


async def test_streamed_ranges_match_the_object(blob: AzureBlobStorage) -> None:
    """A multi-block streamed upload and a ranged streamed download give the exact bytes."""
    data = os.urandom(2 * MIN_PART_SIZE + 12345)
    await blob.upload_stream("big", agen(data), part_size=MIN_PART_SIZE)
    edge = MIN_PART_SIZE
    got = b"".join([c async for c in blob.download_stream("big", start=edge - 7, end=2 * edge)])
    assert got == data[edge - 7 : 2 * edge]


async def test_missing_container_raises_bucket_not_found(azurite: AzuriteContainer) -> None:
    """Operations on a container that does not exist raise BucketNotFoundError."""
    storage = AzureBlobStorage(
        account_url=azurite.server.account_url,
        account_key=ACCOUNT_KEY,
        container="no-such-container",
        engine="obstore",
    )
    with pytest.raises(BucketNotFoundError, match="no-such-container"):
        await storage.upload("k", b"v")
    await storage.close()


async def test_wrong_account_key_is_permission_error_without_the_key(
    azurite: AzuriteContainer,
) -> None:
    """Azurite's 403 for a bad key becomes StoragePermissionError; the key is not shown."""
    wrong = "d3Jvbmcta2V5LXRoYXQtaXMtbG9uZy1lbm91Z2gtZm9yLWF6dXJpdGU="
    storage = AzureBlobStorage(
        account_url=azurite.server.account_url,
        account_key=wrong,
        container=azurite.container,
        engine="obstore",
    )
    with pytest.raises(StoragePermissionError) as info:
        await storage.upload("k", b"v")
    assert wrong not in str(info.value) and ACCOUNT_KEY not in str(info.value)
    await storage.close()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Server returned non-2xx status code: 503 Service Unavailable", StorageConnectionError),
        ("HTTP error: error sending request", StorageConnectionError),
        ("Server returned non-2xx status code: 416 Range Not Satisfiable", InvalidRangeError),
        ("Server returned non-2xx status code: 400 Bad Request", StorageError),
    ],
)
def test_obstore_errors_map_to_specific_errors_without_secrets(
    message: str, expected: type[Exception]
) -> None:
    """Each obstore failure becomes the most specific cloudrift error, secrets redacted."""
    from obstore.exceptions import GenericError

    storage = AzureBlobStorage(
        account_url="http://127.0.0.1:1/acct",
        account_key=ACCOUNT_KEY,
        container="c",
        engine="obstore",
    )
    assert storage._obstore is not None
    with pytest.raises(expected) as info:
        storage._obstore._raise(GenericError(f"{message} key={ACCOUNT_KEY}"), "k")
    assert type(info.value) is expected
    assert ACCOUNT_KEY not in str(info.value)


async def test_engine_runs_without_importing_the_azure_sdk(azurite: AzuriteContainer) -> None:
    """With an account key, building the backend and running the data plane imports
    obstore and none of azure-core, azure-storage-blob or aiohttp (in a fresh process)."""
    options = {
        "provider": "azure_blob",
        "container": azurite.container,
        "engine": "obstore",
        "account_url": azurite.server.account_url,
        "account_key": ACCOUNT_KEY,
    }
    # A long switch interval keeps a thread that wants the GIL waiting until the main
    # thread gives it up itself: it turns a timing window into a certainty.
    prelude = "sys.setswitchinterval(2.0)\n"
    imported = await imported_after_a_round_trip(options, ("azure", "aiohttp", "obstore"), prelude)
    assert imported == "['obstore']"


async def test_a_process_that_streamed_through_obstore_exits_cleanly(
    azurite: AzuriteContainer,
) -> None:
    """A script that streams an upload and a download through the engine and returns
    exits with status 0 every time (obstore's threads once aborted the interpreter at
    exit, SIGABRT, in about half the runs)."""
    code = (
        "import asyncio, sys\n"
        "from cloudrift.storage import get_storage\n"
        # A long switch interval keeps a thread that wants the GIL waiting until the
        # main thread gives it up itself: it turns a timing window into a certainty.
        "sys.setswitchinterval(2.0)\n"
        "async def main():\n"
        f"    s = get_storage('azure_blob', container={azurite.container!r}, engine='obstore',\n"
        f"        account_url={azurite.server.account_url!r}, account_key={ACCOUNT_KEY!r})\n"
        "    key = sys.argv[1]\n"
        "    async def parts():\n"
        "        for _ in range(12):\n"
        "            yield bytes(1 << 20)\n"
        "    await s.upload_stream(key, parts(), part_size=5 << 20)\n"
        "    n = 0\n"
        "    async for chunk in s.download_stream(key):\n"
        "        n += len(chunk)\n"
        "    assert n == 12 << 20, n\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
    )

    def run(key: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, key],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # Four rounds of two concurrent scripts. The abort is a race: before the fix one to
    # three of six scripts aborted in 5 of 9 trials of three rounds.
    results = []
    for i in range(4):
        results += await asyncio.gather(
            asyncio.to_thread(run, f"exit-{i}-a"), asyncio.to_thread(run, f"exit-{i}-b")
        )
    assert [r.returncode for r in results] == [0] * 8, [r.stderr[-500:] for r in results]


async def test_stream_whose_link_is_cut_fails_and_commits_nothing(
    azurite: AzuriteContainer,
) -> None:
    """upload_stream whose link is cut before its third block raises StorageConnectionError
    and the blob never appears (the test proxy once let one connection outlive its cut,
    and the upload completed whole through it)."""
    target = urlsplit(azurite.server.account_url)
    proxy = await CuttableProxy.to(azurite.server.account_url)
    storage = AzureBlobStorage(
        account_url=f"{proxy.url}{target.path}",
        account_key=ACCOUNT_KEY,
        container=azurite.container,
        engine="obstore",
        max_attempts=2,
    )
    try:
        await upload_cut_midway(storage, proxy, "cut")
    finally:
        await storage.close()
        await proxy.cut()
    direct = AzureBlobStorage(
        account_url=azurite.server.account_url,
        account_key=ACCOUNT_KEY,
        container=azurite.container,
        engine="obstore",
    )
    try:
        assert not await direct.exists("cut")
    finally:
        await direct.close()


@pytest.fixture
async def via_proxy(
    azurite: AzuriteContainer, blob: AzureBlobStorage
) -> AsyncIterator[tuple[AzureBlobStorage, CuttableProxy]]:
    """An engine backend on the same container as ``blob`` but through a cuttable proxy."""
    target = urlsplit(azurite.server.account_url)
    proxy = await CuttableProxy.to(azurite.server.account_url)
    storage = AzureBlobStorage(
        account_url=f"{proxy.url}{target.path}",
        account_key=ACCOUNT_KEY,
        container=azurite.container,
        engine="obstore",
    )
    try:
        yield storage, proxy
    finally:
        await storage.close()
        await proxy.cut()


@pytest.mark.parametrize(("replace", "cut"), CASES)
async def test_download_stream_never_mixes_two_versions(
    blob: AzureBlobStorage,
    via_proxy: tuple[AzureBlobStorage, CuttableProxy],
    replace: bool,
    cut: bool,
) -> None:
    """download_stream while the blob is replaced and/or the link breaks: one version only
    (see check_stream_while_replaced for what each case must do)."""
    through, proxy = via_proxy
    await check_stream_while_replaced(through, blob, proxy, replace=replace, cut=cut)


def test_obstore_is_the_default_of_azure_blob() -> None:
    """Without engine, azure_blob runs its data plane on obstore; engine='sdk' keeps the SDK."""
    options = {"account_url": "https://a.blob.core.windows.net", "account_key": "a2V5"}
    storage = AzureBlobStorage(container="c", **options)
    assert storage.engine == "obstore" and storage._obstore is not None
    sdk = AzureBlobStorage(container="c", engine="sdk", **options)
    assert sdk.engine == "sdk" and sdk._obstore is None


def test_an_error_says_obstores_nested_prefix_once() -> None:
    """object_store repeats "Generic <Store> error: " per nesting level; we say it once."""
    from obstore.exceptions import GenericError

    storage = AzureBlobStorage(
        account_url="http://127.0.0.1:1/acct", account_key=ACCOUNT_KEY, container="c"
    )
    assert storage._obstore is not None
    nested = "Generic MicrosoftAzure error: " * 2 + "HTTP error: error sending request"
    with pytest.raises(StorageConnectionError) as info:
        storage._obstore._raise(GenericError(nested), "k")
    assert str(info.value).count("Generic MicrosoftAzure error:") == 1, info.value
