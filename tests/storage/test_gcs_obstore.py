"""The gcs provider with engine="obstore": the whole conformance suite on fake-gcs-server
(XML reads served by the emulator itself, XML writes through the test shim; see
``tests/servers/gcs_xml.py`` for what that proves), plus what the engine must keep."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudrift.core.exceptions import BucketNotFoundError, ConfigurationError, ObjectNotFoundError
from cloudrift.storage.base import MIN_PART_SIZE
from cloudrift.storage.gcs import GCSStorage
from tests.conformance.storage import agen
from tests.servers._process import free_port
from tests.servers.gcs_xml import FakeGCS
from tests.storage._harness import GCSHarness, data_plane_round_trip, imported_after_a_round_trip

#: Conditional replaces and deletes (if_match) run on the SDK client on both engines.
MATCH_GAP = (
    "if_match runs on the SDK client (JSON API), not obstore; fake-gcs-server 1.54 answers "
    "412 instead of 404 for ifGenerationMatch on a missing object, and ignores it on "
    "resumable uploads, deletes and downloads (the SDK engine's own tests cover the requests)"
)


class TestGCSObstore(GCSHarness):
    """Conformance harness: gcs on fake-gcs-server, data plane on obstore."""

    engine = "obstore"
    known_gaps = dict.fromkeys(
        [
            "test_if_match_on_a_missing_key_fails_clearly",
            "test_upload_stream_if_match_checks_the_etag",
            "test_download_if_match_with_a_stale_etag_fails",
            "test_delete_if_match_deletes_only_that_version",
        ],
        MATCH_GAP,
    )

    @pytest.fixture
    def emulator(self, gcs_xml: FakeGCS) -> FakeGCS:
        """fake-gcs-server (XML writes through the test shim) with a fresh bucket."""
        return gcs_xml


@pytest.fixture
async def gcs_obstore(gcs_xml: FakeGCS) -> AsyncIterator[GCSStorage]:
    """A gcs backend with the obstore engine on a fresh bucket."""
    storage = GCSStorage(bucket=gcs_xml.bucket, emulator_host=gcs_xml.endpoint, engine="obstore")
    try:
        yield storage
    finally:
        await storage.close()


async def test_data_plane_never_builds_the_sdk_client(gcs_obstore: GCSStorage) -> None:
    """Upload, download, stream, head, exists, list and delete run on obstore alone."""
    await data_plane_round_trip(gcs_obstore)
    assert (await gcs_obstore.head("a.txt")).content_type == "text/plain"
    await gcs_obstore.delete("a.txt")
    with pytest.raises(ObjectNotFoundError):
        await gcs_obstore.head("a.txt")
    assert not gcs_obstore._client.opened


async def test_reads_with_if_match_go_through_the_sdk_client(gcs_obstore: GCSStorage) -> None:
    """download(if_match=) needs a generation precondition, which obstore cannot send: it
    runs on the SDK client (built for it), a plain download on obstore."""
    await gcs_obstore.upload("v.txt", b"v1")
    assert await gcs_obstore.download("v.txt") == b"v1"
    assert not gcs_obstore._client.opened
    etag = (await gcs_obstore.head("v.txt")).etag
    assert etag is not None
    assert await gcs_obstore.download("v.txt", if_match=etag) == b"v1"
    assert gcs_obstore._client.opened


async def test_head_etag_is_the_generation(gcs_obstore: GCSStorage) -> None:
    """head().etag is the object's generation on the obstore engine too (what if_match
    compares on GCS), and changes with each upload."""
    await gcs_obstore.upload("g", b"1")
    first = (await gcs_obstore.head("g")).etag
    assert first is not None and first.isdigit()
    await gcs_obstore.upload("g", b"2")
    assert (await gcs_obstore.head("g")).etag != first


async def test_streamed_upload_is_an_xml_multipart_upload(gcs_obstore: GCSStorage) -> None:
    """A three-part streamed upload arrives whole, with its content type and metadata,
    and a ranged streamed download across part edges gives the exact bytes."""
    data = os.urandom(2 * MIN_PART_SIZE + 12345)
    await gcs_obstore.upload_stream(
        "big.bin", agen(data), part_size=MIN_PART_SIZE, metadata={"kind": "blob"}
    )
    info = await gcs_obstore.head("big.bin")
    assert info.size == len(data) and info.metadata == {"kind": "blob"}
    edge = MIN_PART_SIZE
    got = b"".join(
        [c async for c in gcs_obstore.download_stream("big.bin", start=edge - 7, end=2 * edge)]
    )
    assert got == data[edge - 7 : 2 * edge]


async def test_missing_bucket_raises_bucket_not_found(gcs_xml: FakeGCS) -> None:
    """An upload to a bucket that does not exist raises BucketNotFoundError."""
    storage = GCSStorage(bucket="no-such-bucket", emulator_host=gcs_xml.endpoint, engine="obstore")
    with pytest.raises(BucketNotFoundError, match="no-such-bucket"):
        await storage.upload("k", b"v")
    await storage.close()


async def test_engine_runs_without_importing_gcloud_or_aiohttp(gcs_xml: FakeGCS) -> None:
    """Against an emulator, building the backend and running the data plane imports
    obstore and none of gcloud-aio or aiohttp (in a fresh process)."""
    options = {
        "provider": "gcs",
        "bucket": gcs_xml.bucket,
        "engine": "obstore",
        "emulator_host": gcs_xml.endpoint,
    }
    packages = ("gcloud", "aiohttp", "obstore")
    assert await imported_after_a_round_trip(options, packages) == "['obstore']"


def test_sdk_stays_the_default_and_engine_is_checked() -> None:
    """Without engine, gcs runs on its SDK; an unknown engine is a ConfigurationError."""
    storage = GCSStorage(bucket="b")
    assert storage.engine == "sdk" and storage._obstore is None
    with pytest.raises(ConfigurationError, match="engine must be one of"):
        GCSStorage(bucket="b", engine="rust")


async def test_kms_writes_stay_on_the_sdk_client(gcs_xml: FakeGCS) -> None:
    """With kms_key_name, uploads go through the SDK client (obstore cannot send the key
    name), reads through obstore."""
    storage = GCSStorage(
        bucket=gcs_xml.bucket,
        emulator_host=gcs_xml.endpoint,
        kms_key_name="projects/p/locations/l/keyRings/r/cryptoKeys/k",
        engine="obstore",
    )
    try:
        await storage.upload("cmek.txt", b"sealed")
        assert storage._client.opened
        assert await storage.download("cmek.txt") == b"sealed"
    finally:
        await storage.close()


@pytest.fixture
def token_server_key(service_account_file: Path, tmp_path: Path) -> tuple[Path, int]:
    """A copy of the service-account file whose token_uri is a free local port."""
    port = free_port()
    account = json.loads(service_account_file.read_text())
    account["token_uri"] = f"http://127.0.0.1:{port}/token"
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(account))
    return key_file, port


async def test_tokens_come_from_the_service_account_file(
    token_server_key: tuple[Path, int],
) -> None:
    """Outside an emulator the engine sends the service account's OAuth token (minted by
    gcloud-aio-auth from the key file, via obstore's credential callback) on its requests."""
    from aiohttp import web

    from cloudrift.storage._obstore import gcs_engine

    key_file, port = token_server_key
    seen: list[str | None] = []

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        return web.json_response({"access_token": "tok-1", "expires_in": 3600})

    async def head(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(status=404)

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_route("HEAD", "/bkt/{name}", head)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    engine = gcs_engine(
        where="gcs storage",
        bucket="bkt",
        endpoint=f"http://127.0.0.1:{port}",
        emulator=False,
        credentials_path=str(key_file),
        connect_timeout=5.0,
        read_timeout=5.0,
        max_attempts=1,
        list_page_size=10,
    )
    try:
        assert await engine.exists("k") is False
        assert await engine.exists("k") is False
    finally:
        await engine.aclose()
        await runner.cleanup()
    assert seen == ["Bearer tok-1", "Bearer tok-1"]
