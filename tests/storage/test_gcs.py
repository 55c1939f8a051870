"""The gcs provider on gcp-storage-emulator (the real GCS JSON API over HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from cloudrift.core.exceptions import (
    BucketNotFoundError,
    ConfigurationError,
    FeatureNotSupportedError,
    InvalidArgumentError,
    InvalidRangeError,
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
)
from cloudrift.storage import Storage, get_storage
from cloudrift.storage.gcs import _SDK, GCSStorage, _private
from tests.conformance.storage import WEIRD_KEYS, agen
from tests.servers._process import free_port
from tests.servers.gcs import GCSEmulator
from tests.storage._harness import GCSHarness

EMULATOR_GAP = (
    "gcp-storage-emulator ignores ifGenerationMatch=0, so conditional create cannot be "
    "shown against it (real GCS answers 412, which the provider maps to ObjectExistsError)"
)

MATCH_GAP = (
    "gcp-storage-emulator ignores ifGenerationMatch=<generation>, so if_match cannot be "
    "shown against it (real GCS answers 412, which the provider maps to "
    "PreconditionFailedError); the requests are shown to carry it instead"
)

READ_MATCH_GAP = (
    "gcp-storage-emulator ignores ifGenerationMatch on media downloads too, so a stale "
    "if_match read cannot be shown against it (real GCS answers 412, which the provider "
    "maps to PreconditionFailedError); the requests are shown to carry it instead"
)

SEMICOLON_GAP = (
    "gcp-storage-emulator parses request paths with urllib's urlparse, which cuts a "
    "';...' segment off the object name, so a key containing ';' is not found on download"
)


class TestGCSStorage(GCSHarness):
    """Conformance harness: gcs with a service-account file on gcp-storage-emulator, SDK engine."""

    known_gaps = {
        "test_if_not_exists_creates_once": EMULATOR_GAP,
        "test_concurrent_conditional_creates_have_one_winner": EMULATOR_GAP,
        # See test_if_match_sends_the_generation_precondition below for the requests.
        "test_if_match_with_a_stale_etag_fails_and_leaves_the_object": MATCH_GAP,
        "test_if_match_on_a_missing_key_fails_clearly": MATCH_GAP,
        "test_upload_stream_if_match_checks_the_etag": MATCH_GAP,
        "test_delete_if_match_deletes_only_that_version": MATCH_GAP,
        "test_concurrent_read_modify_write_with_if_match_loses_no_update": MATCH_GAP,
        "test_download_if_match_with_a_stale_etag_fails": READ_MATCH_GAP,
    }

    @pytest.fixture
    def emulator(self, gcs: GCSEmulator) -> GCSEmulator:
        """gcp-storage-emulator with the emptied test bucket."""
        return gcs

    @pytest.mark.parametrize(
        "key",
        [
            pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=SEMICOLON_GAP))
            if ";" in k
            else k
            for k in WEIRD_KEYS
        ],
    )
    async def test_weird_keys_round_trip_and_list_exactly(self, backend: Storage, key: str) -> None:
        """Weird keys round-trip verbatim (';' in a key: emulator gap, xfail)."""
        await super().test_weird_keys_round_trip_and_list_exactly(backend, key)


@pytest.fixture
async def gcs_storage(gcs: GCSEmulator) -> AsyncIterator[GCSStorage]:
    """A gcs backend under application default credentials (no key) on the emulator."""
    storage = GCSStorage(bucket=gcs.bucket, emulator_host=gcs.endpoint)
    try:
        yield storage
    finally:
        await storage.close()


async def test_conditional_create_sends_the_generation_precondition(
    gcs_storage: GCSStorage,
) -> None:
    """if_not_exists sends ifGenerationMatch=0, the precondition real GCS enforces."""
    sent: list[dict[str, Any]] = []
    client = await gcs_storage.native()
    original = client.upload

    async def spy(*args: Any, **kwargs: Any) -> Any:
        sent.append(dict(kwargs["parameters"]))
        return await original(*args, **kwargs)

    client.upload = spy
    await gcs_storage.upload("c", b"1", if_not_exists=True)
    await gcs_storage.upload("c", b"2")
    assert sent == [{"ifGenerationMatch": "0"}, {}]


async def test_stream_part_size_must_be_a_multiple_of_256_kib(gcs_storage: GCSStorage) -> None:
    """A part size GCS's resumable protocol cannot take is refused before anything is sent."""
    with pytest.raises(InvalidArgumentError, match="256 KiB"):
        await gcs_storage.upload_stream("s", agen(b"x"), part_size=5 * 1024 * 1024 + 1)
    assert not await gcs_storage.exists("s")


async def test_presign_under_adc_without_signer_says_what_to_set(gcs_storage: GCSStorage) -> None:
    """Without a key file or service_account_email, presigning explains the options."""
    with pytest.raises(FeatureNotSupportedError, match="service_account_email"):
        await gcs_storage.presigned_url("k")


async def test_emulator_host_comes_from_the_option_not_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """STORAGE_EMULATOR_HOST in the environment does not redirect a backend without the option."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    storage = GCSStorage(bucket="b")
    client = await storage.native()
    assert client._api_root == "https://storage.googleapis.com"
    await storage.close()


async def test_server_down_raises_connection_error() -> None:
    """With nothing listening, calls raise StorageConnectionError; health_check is False."""
    storage = GCSStorage(
        bucket="b", emulator_host=f"http://127.0.0.1:{free_port()}", connect_timeout=1
    )
    with pytest.raises(StorageConnectionError):
        await storage.download("k")
    assert await storage.health_check() is False
    await storage.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"credentials_path": ""}, "empty string"),
        ({"emulator_host": "127.0.0.1:9023"}, "scheme"),
        ({"list_page_size": 0}, "positive int"),
        ({"credential_path": "x"}, "did you mean 'credentials_path'"),
    ],
)
def test_bad_gcs_options_are_configuration_errors(options: dict[str, Any], message: str) -> None:
    """Bad or misspelled options fail at construction."""
    with pytest.raises(ConfigurationError, match=message):
        get_storage("gcs", bucket="b", **options)


def test_gcs_repr_shows_bucket_only() -> None:
    """repr names provider and bucket, not the credentials file contents."""
    text = repr(GCSStorage(bucket="b", credentials_path="/secret/sa.json"))
    assert "'gcs'" in text and "bucket='b'" in text and "sa.json" not in text


async def test_cmek_key_is_sent_on_every_write(gcs: GCSEmulator) -> None:
    """kms_key_name is sent as kmsKeyName on uploads and copies (the emulator ignores it)."""
    key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
    storage = GCSStorage(bucket=gcs.bucket, emulator_host=gcs.endpoint, kms_key_name=key)
    client = await storage.native()
    seen: list[dict[str, str] | None] = []
    real_upload, real_copy = client.upload, client.copy

    async def spy_upload(*args: Any, **kwargs: Any) -> Any:
        seen.append(dict(kwargs["parameters"]))
        return await real_upload(*args, **kwargs)

    async def spy_copy(*args: Any, **kwargs: Any) -> Any:
        seen.append(dict(kwargs["params"]))
        return await real_copy(*args, **kwargs)

    client.upload, client.copy = spy_upload, spy_copy
    try:
        await storage.upload("a", b"1")
        await storage.copy("a", "b")
        assert seen == [{"kmsKeyName": key}, {"kmsKeyName": key}]
        assert await storage.download("b") == b"1"
    finally:
        await storage.close()


async def test_missing_bucket_listing_raises_bucket_not_found(gcs: GCSEmulator) -> None:
    """Listing a bucket that does not exist raises BucketNotFoundError naming it."""
    storage = GCSStorage(bucket="no-such-bucket", emulator_host=gcs.endpoint)
    try:
        with pytest.raises(BucketNotFoundError, match="no-such-bucket"):
            await storage.list()
        assert await storage.health_check() is False
    finally:
        await storage.close()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, "No such object: my-bucket/k", ObjectNotFoundError),
        (
            404,
            '{"error": {"message": "The specified bucket does not exist."}}',
            BucketNotFoundError,
        ),
        (403, "caller does not have storage.objects.get access", StoragePermissionError),
        (412, "Precondition Failed", ObjectExistsError),
        (416, "Requested range not satisfiable", InvalidRangeError),
        (503, "Backend Error", StorageConnectionError),
        (429, "rate limited", StorageConnectionError),
        (400, "Invalid argument", StorageError),
    ],
)
def test_http_errors_map_to_specific_errors(
    status: int, body: str, expected: type[Exception]
) -> None:
    """Each GCS status (and the missing-bucket message) becomes its cloudrift error, chained."""
    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    info = aiohttp.RequestInfo(
        URL("https://storage.googleapis.com/x"), "GET", CIMultiDictProxy(CIMultiDict())
    )
    error = aiohttp.ClientResponseError(info, (), status=status, message=f"Reason: {body}")
    storage = GCSStorage(bucket="my-bucket")
    with pytest.raises(expected) as raised, storage._errors("k", exists_key="k"):
        raise error
    assert raised.value.__cause__ is error


async def test_gcloud_aio_internals_are_still_there(gcs_storage: GCSStorage) -> None:
    """Every private gcloud-aio-storage detail the provider uses exists and has its shape."""
    client = await gcs_storage.native()
    assert await _SDK.auth_headers(client) == {}  # the emulator needs no token
    assert _SDK.upload_root(client) == f"{gcs_storage.emulator_host}/upload/storage/v1/b"
    assert isinstance(_SDK.http_session(client), aiohttp.ClientSession)
    await gcs_storage.upload("k", b"data")
    stream = await client.download_stream(gcs_storage.bucket, "k", headers={"Range": "bytes=1-"})
    resp = _SDK.response(stream)
    try:
        assert isinstance(resp, aiohttp.ClientResponse)
        assert resp.headers["Content-Range"] == "bytes 1-3/4"
    finally:
        resp.release()
    stream = await _SDK.download_stream(
        client, gcs_storage.bucket, "k", headers={}, params={"ifGenerationMatch": "1"}, timeout=5
    )
    resp = _SDK.response(stream)
    try:
        assert str(resp.url.query["ifGenerationMatch"]) == "1"
        assert await resp.read() == b"data"
    finally:
        resp.release()


def test_a_vanished_gcloud_aio_internal_fails_loudly() -> None:
    """If gcloud-aio-storage drops a private detail, the error names it and the version."""
    with pytest.raises(StorageError, match=r"gcloud-aio-storage \S+ no longer has object\._x"):
        _private(object(), "_x")


async def test_if_match_sends_the_generation_precondition(gcs_storage: GCSStorage) -> None:
    """upload/upload_stream/delete with if_match=etag send ifGenerationMatch=<generation>
    (the etag head() returns is the object's generation)."""
    await gcs_storage.upload("g", b"1")
    etag = (await gcs_storage.head("g")).etag
    assert etag and etag.isdigit()
    client = await gcs_storage.native()
    sent: list[dict[str, Any]] = []
    upload, delete = client.upload, client.delete

    async def spy_upload(*args: Any, **kwargs: Any) -> Any:
        sent.append(dict(kwargs["parameters"]))
        return await upload(*args, **kwargs)

    async def spy_delete(*args: Any, **kwargs: Any) -> Any:
        sent.append(dict(kwargs["params"]))
        return await delete(*args, **kwargs)

    client.upload, client.delete = spy_upload, spy_delete
    await gcs_storage.upload("g", b"2", if_match=etag)
    new = (await gcs_storage.head("g")).etag
    assert new and new != etag
    await gcs_storage.delete("g", if_match=new)
    assert sent == [{"ifGenerationMatch": etag}, {"ifGenerationMatch": new}]


async def test_if_match_maps_412_and_404_to_precondition_failed(
    gcs_storage: GCSStorage,
) -> None:
    """A 412 (what real GCS answers to a stale generation) and a 404 (no object) on an
    if_match write raise PreconditionFailedError naming the key."""
    client = await gcs_storage.native()

    def failing(status: int) -> Any:
        async def upload(*args: Any, **kwargs: Any) -> Any:
            raise aiohttp.ClientResponseError(
                aiohttp.RequestInfo(URL("http://gcs/o"), "POST", CIMultiDictProxy(CIMultiDict())),
                (),
                status=status,
                message="conditionNotMet" if status == 412 else "No such object",
            )

        return upload

    client.upload = failing(412)
    with pytest.raises(PreconditionFailedError, match="changed") as info:
        await gcs_storage.upload("g", b"x", if_match="123")
    assert info.value.key == "g"
    client.upload = failing(404)
    with pytest.raises(PreconditionFailedError, match="no object"):
        await gcs_storage.upload("g", b"x", if_match="123")


async def test_download_if_match_sends_the_generation_precondition(
    gcs_storage: GCSStorage,
) -> None:
    """download (whole and ranged) and download_stream with if_match=etag send
    ifGenerationMatch=<generation> on the media GET; without it, none."""
    await gcs_storage.upload("g", b"data")
    etag = (await gcs_storage.head("g")).etag
    assert etag and etag.isdigit()
    client = await gcs_storage.native()
    sent: list[dict[str, Any]] = []
    get = client.session.get

    async def spy_get(url: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(dict(kwargs.get("params") or {}))
        return await get(url, *args, **kwargs)

    client.session.get = spy_get
    assert await gcs_storage.download("g", if_match=etag) == b"data"
    assert await gcs_storage.download("g", start=1, end=3, if_match=etag) == b"at"
    assert b"".join([c async for c in gcs_storage.download_stream("g", if_match=etag)]) == b"data"
    assert await gcs_storage.download("g", start=1) == b"ata"
    expected = {"alt": "media", "ifGenerationMatch": etag}
    assert sent == [expected, expected, expected, {"alt": "media"}]


async def test_download_if_match_maps_412_to_precondition_failed(
    gcs_storage: GCSStorage,
) -> None:
    """A 412 on an if_match read (what real GCS answers to a stale generation) raises
    PreconditionFailedError naming the key, from download and download_stream."""
    await gcs_storage.upload("g", b"data")
    client = await gcs_storage.native()

    async def stale(url: str, *args: Any, **kwargs: Any) -> Any:
        raise aiohttp.ClientResponseError(
            aiohttp.RequestInfo(URL(url), "GET", CIMultiDictProxy(CIMultiDict())),
            (),
            status=412,
            message="conditionNotMet",
        )

    client.session.get = stale
    with pytest.raises(PreconditionFailedError, match="changed") as info:
        await gcs_storage.download("g", if_match="123")
    assert info.value.key == "g"
    with pytest.raises(PreconditionFailedError, match="changed"):
        async for _ in gcs_storage.download_stream("g", start=1, if_match="123"):
            pass


async def test_if_match_with_a_foreign_etag_is_refused(gcs_storage: GCSStorage) -> None:
    """An ETag that is not a generation (e.g. from another provider) is refused unsent."""
    with pytest.raises(PreconditionFailedError, match="generation"):
        await gcs_storage.upload("g", b"x", if_match="abc")
