"""The s3 and r2 providers with engine="obstore" on moto: the whole conformance suite,
plus what the engine must keep (aborts, bounded memory, auth paths, lazy SDK client)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cloudrift.core.exceptions import (
    BucketNotFoundError,
    ConfigurationError,
    StorageConnectionError,
    StorageError,
)
from cloudrift.storage import get_storage
from cloudrift.storage.base import MIN_PART_SIZE
from cloudrift.storage.s3 import S3Storage
from tests.conformance.storage import agen
from tests.servers._process import free_port
from tests.servers.moto import BUCKET, MotoEndpoint, bucket  # noqa: F401 (the fixture)
from tests.storage._harness import (
    R2Harness,
    S3Harness,
    data_plane_round_trip,
    imported_after_a_round_trip,
)
from tests.storage._proxy import CuttableProxy, upload_cut_midway
from tests.storage._replaced import CASES, check_stream_while_replaced

KEYS = {"aws_access_key_id": "AKIATESTINGCLOUDRIFT", "aws_secret_access_key": "not-a-secret"}


class TestS3ObstoreStorage(S3Harness):
    """Conformance harness: s3 with static keys on moto, data plane on obstore."""

    engine = "obstore"


class TestR2ObstoreStorage(R2Harness):
    """Conformance harness: r2 on moto with the obstore engine."""

    engine = "obstore"


@pytest.fixture
async def s3(moto: MotoEndpoint, bucket: Any) -> AsyncIterator[S3Storage]:  # noqa: F811
    """An s3 backend with static keys and the obstore engine."""
    async with S3Storage(bucket=BUCKET, engine="obstore", **moto.credentials()) as storage:
        yield storage


async def test_data_plane_never_builds_the_sdk_client(s3: S3Storage) -> None:
    """Upload, download, stream, head, exists, list and delete run on obstore alone; the
    SDK client is built on the first operation that needs it (copy)."""
    await data_plane_round_trip(s3)
    assert not s3._client.opened
    await s3.copy("a.txt", "b.txt")
    assert s3._client.opened
    assert (await s3.head("b.txt")).metadata == {"m": "1"}
    await s3.delete("a.txt")
    assert await s3.list() == ["b.txt"]


async def test_aborted_stream_leaves_no_multipart_parts(s3: S3Storage, bucket: Any) -> None:  # noqa: F811
    """A source failing after parts were sent aborts obstore's multipart upload."""

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(MIN_PART_SIZE)
        yield os.urandom(MIN_PART_SIZE)
        yield os.urandom(MIN_PART_SIZE)
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        await s3.upload_stream("big", broken(), part_size=MIN_PART_SIZE)
    assert bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in bucket.list_objects_v2(Bucket=BUCKET)


async def test_stream_past_the_part_limit_fails_clearly_and_leaves_nothing(
    s3: S3Storage,
    bucket: Any,  # noqa: F811
) -> None:
    """A stream needing more parts than S3 allows raises StorageError naming part_size,
    and obstore's multipart upload is aborted (as on the SDK engine)."""
    s3.max_parts = 2
    pieces = [os.urandom(MIN_PART_SIZE) for _ in range(3)]
    with pytest.raises(StorageError, match="larger part_size"):
        await s3.upload_stream("too-many", agen(*pieces), part_size=MIN_PART_SIZE)
    assert bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert not await s3.exists("too-many")


async def test_stream_whose_link_dies_raises_a_connection_error(
    moto: MotoEndpoint,
    bucket: Any,  # noqa: F811
) -> None:
    """upload_stream whose link is cut mid-way raises StorageConnectionError (obstore
    closing the source once raised a bare GeneratorExit into the caller)."""
    proxy = await CuttableProxy.to(moto.endpoint_url)
    storage = S3Storage(
        bucket=BUCKET, engine="obstore", **{**moto.credentials(), "endpoint_url": proxy.url}
    )
    try:
        await upload_cut_midway(storage, proxy, "cut")
    finally:
        await storage.close()
        await proxy.cut()


async def test_source_closed_by_a_failing_upload_is_not_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When obstore's upload fails, it closes the source (GeneratorExit inside it) and
    raises its own error: the caller gets that error translated, never GeneratorExit
    (the real race behind the test above, made certain)."""
    from obstore.exceptions import GenericError

    storage = S3Storage(
        bucket="b",
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="AKIATESTINGCLOUDRIFT",
        aws_secret_access_key="not-a-real-secret",
        engine="obstore",
    )
    engine = storage._obstore
    assert engine is not None

    async def put_async(store: Any, key: str, source: Any, **options: Any) -> None:
        await anext(source)
        await source.aclose()  # as obstore does when a part's request fails
        raise GenericError("Generic S3 error: HTTP error: error sending request")

    monkeypatch.setattr(engine, "_build_store", lambda: object())
    monkeypatch.setattr(engine._obstore, "put_async", put_async)
    part = bytes(MIN_PART_SIZE)
    with pytest.raises(StorageConnectionError):
        await storage.upload_stream("k", agen(part, part, part), part_size=MIN_PART_SIZE)
    await storage.close()


async def test_streamed_upload_uses_equal_size_parts(s3: S3Storage, bucket: Any) -> None:  # noqa: F811
    """Parts are all exactly part_size except the last (R2's rule), on obstore too."""
    pieces = [os.urandom(1_300_000) for _ in range(10)]
    await s3.upload_stream("eq", agen(*pieces), part_size=MIN_PART_SIZE)
    head = bucket.head_object(Bucket=BUCKET, Key="eq", PartNumber=1)
    assert head["PartsCount"] == 3 and head["ContentLength"] == MIN_PART_SIZE
    assert await s3.download("eq") == b"".join(pieces)


async def test_streamed_upload_keeps_few_parts_in_memory(
    moto: MotoEndpoint,
    bucket: Any,  # noqa: F811
) -> None:
    """upload_stream pulls only a few parts ahead of what the server has received."""
    storage = S3Storage(bucket=BUCKET, upload_concurrency=2, engine="obstore", **moto.credentials())
    worst = 0

    def received() -> int:
        uploads = bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        if not uploads:
            return 0
        got = bucket.list_parts(Bucket=BUCKET, Key="bounded", UploadId=uploads[0]["UploadId"])
        return len(got.get("Parts", []))

    async def source() -> AsyncIterator[bytes]:
        nonlocal worst
        for i in range(8):
            worst = max(worst, i - received())
            yield bytes([i]) * MIN_PART_SIZE

    await storage.upload_stream("bounded", source(), part_size=MIN_PART_SIZE)
    assert (await storage.head("bounded")).size == 8 * MIN_PART_SIZE
    assert worst <= 2 + 2
    await storage.close()


async def test_sse_options_reach_s3(moto: MotoEndpoint, bucket: Any) -> None:  # noqa: F811
    """sse='AES256' is sent on obstore's uploads (single and multipart)."""
    storage = S3Storage(bucket=BUCKET, sse="AES256", engine="obstore", **moto.credentials())
    await storage.upload("enc", b"x")
    await storage.upload_stream(
        "enc-big", agen(b"y" * (2 * MIN_PART_SIZE)), part_size=MIN_PART_SIZE
    )
    for key in ("enc", "enc-big"):
        assert bucket.head_object(Bucket=BUCKET, Key=key)["ServerSideEncryption"] == "AES256"
    await storage.close()


async def test_missing_bucket_raises_bucket_not_found(moto: MotoEndpoint) -> None:
    """Operations on a missing bucket raise BucketNotFoundError naming it."""
    storage = S3Storage(bucket="no-such-bucket", engine="obstore", **moto.credentials())
    with pytest.raises(BucketNotFoundError, match="no-such-bucket"):
        await storage.upload("k", b"v")
    with pytest.raises(BucketNotFoundError):
        await storage.list()
    await storage.close()


async def test_server_down_raises_connection_error_without_the_secret() -> None:
    """With nothing listening, calls raise StorageConnectionError, secret redacted."""
    storage = S3Storage(
        bucket=BUCKET,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region="us-east-1",
        aws_access_key_id="AKIAX",
        aws_secret_access_key="down-secret-value",
        connect_timeout=1,
        read_timeout=1,
        max_attempts=1,
        engine="obstore",
    )
    with pytest.raises(StorageConnectionError) as info:
        await storage.download("k")
    assert "down-secret-value" not in str(info.value)
    await storage.close()


async def test_profile_auth_works_with_the_engine(
    moto: MotoEndpoint,
    bucket: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """profile_name keys reach obstore through the credential callback."""
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[dev]\naws_access_key_id = {moto.access_key}\naws_secret_access_key = {moto.secret_key}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    storage = S3Storage(
        bucket=BUCKET,
        profile_name="dev",
        region=moto.region,
        endpoint_url=moto.endpoint_url,
        engine="obstore",
    )
    await storage.upload("p", b"profile")
    assert storage._obstore is not None
    store = await storage._obstore._store.get()
    given = await store.credential_provider()
    assert given["access_key_id"] == moto.access_key and given["expires_at"] is None
    await storage.close()


async def test_assume_role_feeds_refreshing_sts_credentials(
    moto: MotoEndpoint,
    bucket: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """role_arn: obstore gets STS credentials with their expiry, so it asks again in time."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.secret_key)
    storage = S3Storage(
        bucket=BUCKET,
        role_arn="arn:aws:iam::123456789012:role/app",
        region=moto.region,
        endpoint_url=moto.endpoint_url,
        sts_endpoint_url=moto.endpoint_url,
        engine="obstore",
    )
    await storage.upload("r", b"role")
    assert storage._obstore is not None
    store = await storage._obstore._store.get()
    given = await store.credential_provider()
    assert given["access_key_id"] != moto.access_key and given["token"]
    assert given["expires_at"] is not None
    await storage.close()


def test_unknown_engine_is_a_configuration_error() -> None:
    """engine takes 'sdk' or 'obstore' and nothing else."""
    with pytest.raises(ConfigurationError, match="engine must be one of"):
        get_storage("s3", bucket=BUCKET, engine="rust")


def test_missing_obstore_names_the_providers_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without obstore installed, s3 and r2 (obstore by default) name the aws extra and
    engine='sdk', azure_blob the azure extra; gcs's opt-in engine names the obstore extra."""
    monkeypatch.setitem(sys.modules, "obstore", None)
    for build, extra in (
        (lambda: get_storage("s3", bucket=BUCKET), "aws"),
        (lambda: get_storage("r2", bucket=BUCKET, account_id="a1", **KEYS), "aws"),
        (
            lambda: get_storage(
                "azure_blob",
                container="c",
                account_url="https://a.blob.core.windows.net",
                account_key="a2V5",
            ),
            "azure",
        ),
        (lambda: get_storage("gcs", bucket="b", engine="obstore"), "obstore"),
    ):
        with pytest.raises(
            ConfigurationError, match=rf'pip install "cloudrift\[{extra}\]".*engine=.sdk'
        ):
            build()


def test_obstore_is_the_default_of_s3_and_r2() -> None:
    """Without engine, s3 and r2 run their data plane on obstore; engine='sdk' keeps the SDK."""
    for storage in (
        get_storage("s3", bucket=BUCKET),
        get_storage("r2", bucket=BUCKET, account_id="a1", **KEYS),
    ):
        assert storage.engine == "obstore"  # type: ignore[attr-defined]
        assert storage._obstore is not None  # type: ignore[attr-defined]
    sdk = get_storage("s3", bucket=BUCKET, engine="sdk")
    assert sdk.engine == "sdk" and sdk._obstore is None  # type: ignore[attr-defined]


async def test_ambient_aws_variables_do_not_join_the_chosen_options(
    moto: MotoEndpoint,
    bucket: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ambient AWS_* variable (here AWS_SERVER_SIDE_ENCRYPTION) is not picked up by
    obstore's store: only the options given to the backend count."""
    monkeypatch.setenv("AWS_SERVER_SIDE_ENCRYPTION", "AES256")
    storage = S3Storage(bucket=BUCKET, engine="obstore", **moto.credentials())
    await storage.upload("k", b"v")
    assert "ServerSideEncryption" not in bucket.head_object(Bucket=BUCKET, Key="k")
    assert os.environ["AWS_SERVER_SIDE_ENCRYPTION"] == "AES256"
    await storage.close()


async def test_engine_runs_without_importing_the_aws_sdk(
    moto: MotoEndpoint,
    bucket: Any,  # noqa: F811
) -> None:
    """With static keys, building the backend and running the data plane imports obstore
    and no botocore / aioboto3 (checked in a fresh process)."""
    options = {"provider": "s3", "bucket": BUCKET, "engine": "obstore", **moto.credentials()}
    packages = ("botocore", "aioboto3", "aiobotocore", "obstore")
    assert await imported_after_a_round_trip(options, packages) == "['obstore']"


async def test_cancelled_stream_leaves_no_multipart_parts(s3: S3Storage, bucket: Any) -> None:  # noqa: F811
    """Cancelling upload_stream while it waits for the source aborts the multipart upload."""
    waiting = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(MIN_PART_SIZE)
        waiting.set()
        await asyncio.Event().wait()  # a source that never yields again
        yield b""

    task = asyncio.create_task(s3.upload_stream("c", slow(), part_size=MIN_PART_SIZE))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in bucket.list_objects_v2(Bucket=BUCKET)


@pytest.fixture
async def via_proxy(
    moto: MotoEndpoint, s3: S3Storage
) -> AsyncIterator[tuple[S3Storage, CuttableProxy]]:
    """An engine backend on the same bucket as ``s3`` but through a cuttable proxy."""
    proxy = await CuttableProxy.to(moto.endpoint_url)
    storage = S3Storage(
        bucket=BUCKET, engine="obstore", **{**moto.credentials(), "endpoint_url": proxy.url}
    )
    try:
        yield storage, proxy
    finally:
        await storage.close()
        await proxy.cut()


@pytest.mark.parametrize(("replace", "cut"), CASES)
async def test_download_stream_never_mixes_two_versions(
    s3: S3Storage, via_proxy: tuple[S3Storage, CuttableProxy], replace: bool, cut: bool
) -> None:
    """download_stream while the object is replaced and/or the link breaks: one version only
    (see check_stream_while_replaced for what each case must do)."""
    through, proxy = via_proxy
    await check_stream_while_replaced(through, s3, proxy, replace=replace, cut=cut)
