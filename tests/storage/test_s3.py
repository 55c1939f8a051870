"""The s3 and r2 providers with engine="sdk" on moto's real S3 HTTP server: conformance, auth
paths, S3 specifics (the obstore engine, their default, is in test_s3_obstore.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from cloudrift.core.exceptions import (
    BucketNotFoundError,
    ConfigurationError,
    InvalidRangeError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
)
from cloudrift.storage import get_storage
from cloudrift.storage.base import MIN_PART_SIZE
from cloudrift.storage.s3 import R2Storage, S3Storage
from tests.conformance.storage import agen
from tests.servers._process import free_port
from tests.servers.moto import BUCKET, MotoEndpoint
from tests.storage._harness import R2Harness, S3Harness
from tests.storage._proxy import CuttableProxy
from tests.storage._replaced import OLD, stream_while_replaced


class TestS3Storage(S3Harness):
    """Conformance harness: s3 with static keys and endpoint_url on moto (SDK engine)."""


class TestR2Storage(R2Harness):
    """Conformance harness: r2 (S3 driver, explicit keys and endpoint) on moto (SDK engine)."""


@pytest.fixture
async def s3(moto: MotoEndpoint, bucket: Any) -> AsyncIterator[S3Storage]:
    """An s3 backend with static keys against the test bucket."""
    async with S3Storage(engine="sdk", bucket=BUCKET, **moto.credentials()) as storage:
        yield storage


async def test_aborted_stream_leaves_no_multipart_parts(s3: S3Storage, bucket: Any) -> None:
    """A source failing after a part was sent aborts the multipart upload: no orphaned parts."""

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(MIN_PART_SIZE)
        yield os.urandom(MIN_PART_SIZE)
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        await s3.upload_stream("big", broken(), part_size=MIN_PART_SIZE)
    assert bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in bucket.list_objects_v2(Bucket=BUCKET)


async def test_streamed_upload_uses_equal_size_parts(s3: S3Storage, bucket: Any) -> None:
    """Parts of a streamed upload are all exactly part_size except the last (R2's rule)."""
    sizes: list[int] = []
    client = await s3.native()
    client.meta.events.register(
        "before-parameter-build.s3.UploadPart",
        lambda params, **_: sizes.append(len(params["Body"])),
    )
    pieces = [os.urandom(1_300_000) for _ in range(10)]
    await s3.upload_stream("eq", agen(*pieces), part_size=MIN_PART_SIZE)
    assert sizes[:-1] == [MIN_PART_SIZE] * (len(sizes) - 1) and len(sizes) == 3
    assert sum(sizes) == 13_000_000


async def test_download_is_a_single_get_request(s3: S3Storage) -> None:
    """download and a ranged download send one GetObject each, no HEAD first."""
    await s3.upload("k", b"0123456789")
    calls: list[str] = []
    client = await s3.native()
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    assert await s3.download("k") == b"0123456789"
    assert await s3.download("k", start=2, end=4) == b"23"
    assert calls == ["GetObject", "GetObject"]


async def test_one_client_serves_every_call(s3: S3Storage) -> None:
    """The backend builds one SDK client and reuses it."""
    await s3.upload("a", b"1")
    first = await s3.native()
    await s3.download("a")
    await s3.list()
    assert await s3.native() is first


async def test_large_copy_uses_multipart_copy(s3: S3Storage, bucket: Any) -> None:
    """Past the copy threshold, copy is a server-side multipart copy with metadata kept."""
    s3.copy_multipart_threshold = 1024
    s3.copy_part_size = MIN_PART_SIZE
    calls: list[str] = []
    client = await s3.native()
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    data = os.urandom(MIN_PART_SIZE * 2 + 99)
    await s3.upload("src.bin", data, metadata={"m": "1"})
    await s3.copy("src.bin", "dst.bin")
    assert calls.count("UploadPartCopy") == 3
    assert await s3.download("dst.bin") == data
    assert dict((await s3.head("dst.bin")).metadata) == {"m": "1"}


async def test_sse_options_reach_s3(moto: MotoEndpoint, bucket: Any) -> None:
    """sse='AES256' and sse_kms_key_id are sent on upload, stream and copy."""
    storage = S3Storage(engine="sdk", bucket=BUCKET, sse="AES256", **moto.credentials())
    await storage.upload("enc", b"x")
    await storage.copy("enc", "enc2")
    assert bucket.head_object(Bucket=BUCKET, Key="enc")["ServerSideEncryption"] == "AES256"
    assert bucket.head_object(Bucket=BUCKET, Key="enc2")["ServerSideEncryption"] == "AES256"
    await storage.close()
    kms = boto3.client(
        "kms",
        endpoint_url=moto.endpoint_url,
        region_name=moto.region,
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
    ).create_key()["KeyMetadata"]["KeyId"]
    storage = S3Storage(engine="sdk", bucket=BUCKET, sse_kms_key_id=kms, **moto.credentials())
    await storage.upload("kms", b"x")
    head = bucket.head_object(Bucket=BUCKET, Key="kms")
    assert head["ServerSideEncryption"] == "aws:kms" and kms in head["SSEKMSKeyId"]
    await storage.close()


async def test_missing_bucket_raises_bucket_not_found(moto: MotoEndpoint) -> None:
    """Operations on a bucket that does not exist raise BucketNotFoundError naming it."""
    storage = S3Storage(engine="sdk", bucket="no-such-bucket", **moto.credentials())
    with pytest.raises(BucketNotFoundError, match="no-such-bucket"):
        await storage.upload("k", b"v")
    with pytest.raises(BucketNotFoundError):
        await storage.list()
    assert await storage.health_check() is False
    await storage.close()


async def test_server_down_raises_connection_error_quickly() -> None:
    """With nothing listening, calls raise StorageConnectionError and health_check is False."""
    storage = S3Storage(
        engine="sdk",
        bucket=BUCKET,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region="us-east-1",
        aws_access_key_id="AKIAX",
        aws_secret_access_key="down-secret-value",
        connect_timeout=1,
        read_timeout=1,
        max_attempts=1,
    )
    with pytest.raises(StorageConnectionError) as info:
        await storage.download("k")
    assert "down-secret-value" not in str(info.value)
    assert await storage.health_check() is False
    await storage.close()


# ------------------------------------------------------------------ auth paths


async def test_profile_auth_reads_the_named_profile(
    moto: MotoEndpoint, bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """profile_name loads keys from the shared credentials file and works."""
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[dev]\naws_access_key_id = {moto.access_key}\naws_secret_access_key = {moto.secret_key}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    storage = get_storage(
        "s3", bucket=BUCKET, profile_name="dev", region=moto.region, endpoint_url=moto.endpoint_url
    )
    assert storage.auth_method == "profile"  # type: ignore[attr-defined]
    await storage.upload("p", b"profile")
    client = await storage.native()
    assert client._request_signer._credentials.access_key == moto.access_key
    await storage.close()


async def test_default_chain_uses_environment(
    moto: MotoEndpoint, bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no credential options, the default chain (here: env vars) is used."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    storage = get_storage(
        "s3", engine="sdk", bucket=BUCKET, region=moto.region, endpoint_url=moto.endpoint_url
    )
    assert storage.auth_method.startswith("default")  # type: ignore[attr-defined]
    await storage.upload("d", b"default")
    client = await storage.native()
    assert client._request_signer._credentials.access_key == "AKIAFROMENVIRONMENT"
    await storage.close()


async def test_assume_role_uses_refreshable_sts_credentials(
    moto: MotoEndpoint, bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """role_arn assumes the role through STS; the credentials refresh themselves."""
    from aiobotocore.credentials import AioRefreshableCredentials

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.secret_key)
    storage = get_storage(
        "s3",
        engine="sdk",
        bucket=BUCKET,
        role_arn="arn:aws:iam::123456789012:role/app",
        external_id="ext-1",
        region=moto.region,
        endpoint_url=moto.endpoint_url,
        sts_endpoint_url=moto.endpoint_url,
    )
    await storage.upload("r", b"role")
    client = await storage.native()
    creds = client._request_signer._credentials
    assert isinstance(creds, AioRefreshableCredentials)
    frozen = await creds.get_frozen_credentials()
    assert frozen.access_key != moto.access_key and frozen.token
    # Pretend the temporary credentials (and the fetcher's cached copy) are about to
    # expire: the next use calls STS AssumeRole again.
    creds._expiry_time = creds._expiry_time.replace(year=2000)
    creds._refresh_using.__self__._cache.clear()
    refreshed = await creds.get_frozen_credentials()
    assert refreshed.access_key != frozen.access_key
    await storage.upload("r2", b"after refresh")
    await storage.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"aws_access_key_id": "AKIA"}, "missing aws_secret_access_key"),
        (
            {"aws_access_key_id": "AKIA", "aws_secret_access_key": "s", "profile_name": "p"},
            "conflicting",
        ),
        ({"profile_name": ""}, "empty string"),
        ({"role_arn": "arn", "profile_name": "p"}, "conflicting"),
        ({"sse": "rot13"}, "sse must be one of"),
        ({"sse": "AES256", "sse_kms_key_id": "k"}, "sse='aws:kms'"),
        ({"max_pool_connections": 0}, "positive int"),
        ({"connect_timeout": -1}, "positive number"),
    ],
)
def test_bad_s3_options_are_configuration_errors(options: dict[str, Any], message: str) -> None:
    """Incomplete, conflicting or invalid options fail at construction, naming the problem."""
    with pytest.raises(ConfigurationError, match=message) as info:
        get_storage("s3", engine="sdk", bucket="b", **options)
    assert "AKIA" not in str(info.value) or "AKIA" in options.get("aws_access_key_id", "")


def test_misspelled_s3_option_is_refused() -> None:
    """A typo like 'regoin' is rejected with a suggestion."""
    with pytest.raises(ConfigurationError, match="did you mean 'region'"):
        get_storage("s3", engine="sdk", bucket="b", regoin="us-east-1")


def test_s3_repr_hides_secrets() -> None:
    """repr shows provider and bucket but not the secret key or session token."""
    storage = get_storage(
        "s3",
        engine="sdk",
        bucket="b",
        aws_access_key_id="AKIA1",
        aws_secret_access_key="top-secret-key",
        aws_session_token="session-token-value",
    )
    text = repr(storage)
    assert "'s3'" in text and "bucket='b'" in text
    assert "top-secret-key" not in text and "session-token-value" not in text


def test_repr_names_the_engine_that_moves_the_data() -> None:
    """repr says which transport runs: obstore by default on s3, the SDK when chosen."""
    keys = {"aws_access_key_id": "AKIA1", "aws_secret_access_key": "k"}
    assert "engine='obstore'" in repr(get_storage("s3", bucket="b", **keys))
    assert "engine='sdk'" in repr(get_storage("s3", bucket="b", engine="sdk", **keys))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"account_id": "abc"}, "explicit aws_access_key_id"),
        ({"aws_access_key_id": "k", "aws_secret_access_key": "s"}, "exactly one of account_id"),
        (
            {
                "aws_access_key_id": "k",
                "aws_secret_access_key": "s",
                "account_id": "a",
                "endpoint_url": "http://x",
            },
            "exactly one of account_id",
        ),
        (
            {"aws_access_key_id": "k", "aws_secret_access_key": "s", "account_id": "a/b"},
            "alphanumeric",
        ),
        ({"profile_name": "dev", "account_id": "a"}, "unknown option"),
    ],
)
def test_r2_requires_explicit_keys_and_endpoint(options: dict[str, Any], message: str) -> None:
    """R2 without keys, or without exactly one endpoint source, is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=message):
        get_storage("r2", engine="sdk", bucket="b", **options)


def test_r2_account_id_builds_the_endpoint_and_public_links() -> None:
    """account_id gives the R2 endpoint; public_url_for builds quoted CDN links."""
    r2 = R2Storage(
        engine="sdk",
        bucket="b",
        account_id="abc123",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        public_url="https://cdn.example.com/",
    )
    assert r2.endpoint_url == "https://abc123.r2.cloudflarestorage.com"
    assert r2.public_url_for("a b/ü.png") == "https://cdn.example.com/a%20b/%C3%BC.png"


async def test_streamed_upload_keeps_few_parts_in_memory(moto: MotoEndpoint, bucket: Any) -> None:
    """upload_stream pulls at most upload_concurrency + 2 parts ahead of the parts sent."""
    storage = S3Storage(engine="sdk", bucket=BUCKET, upload_concurrency=2, **moto.credentials())
    client = await storage.native()
    sent = 0
    worst = 0

    def done(**_: Any) -> None:
        nonlocal sent
        sent += 1

    client.meta.events.register("after-call.s3.UploadPart", done)

    async def source() -> AsyncIterator[bytes]:
        nonlocal worst
        for i in range(6):
            worst = max(worst, i + 1 - sent)
            yield bytes([i]) * MIN_PART_SIZE

    await storage.upload_stream("bounded", source(), part_size=MIN_PART_SIZE)
    assert sent == 6 and worst <= 2 + 2
    assert (await storage.head("bounded")).size == 6 * MIN_PART_SIZE
    await storage.close()


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("AccessDenied", 403, StoragePermissionError),
        ("InvalidAccessKeyId", 403, StoragePermissionError),
        ("NoSuchBucket", 404, BucketNotFoundError),
        ("NoSuchKey", 404, ObjectNotFoundError),
        ("PreconditionFailed", 412, ObjectExistsError),
        ("InvalidRange", 416, InvalidRangeError),
        ("SlowDown", 503, StorageConnectionError),
        ("InternalError", 500, StorageConnectionError),
        ("WeirdNewError", 400, StorageError),
    ],
)
def test_client_errors_map_to_specific_errors_without_secrets(
    code: str, status: int, expected: type[Exception]
) -> None:
    """Each S3 error code becomes its cloudrift error, chained, with secrets masked."""
    from botocore.exceptions import ClientError

    storage = S3Storage(
        engine="sdk",
        bucket="b",
        aws_access_key_id="AKIA1",
        aws_secret_access_key="very-secret-value",
    )
    error = ClientError(
        {
            "Error": {"Code": code, "Message": "request signed with very-secret-value failed"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutObject",
    )
    with pytest.raises(expected) as info, storage._errors("k", exists_key="k"):
        raise error
    assert info.value.__cause__ is error
    assert "very-secret-value" not in str(info.value)


async def test_stream_past_the_part_limit_fails_clearly_and_leaves_nothing(
    s3: S3Storage, bucket: Any
) -> None:
    """A stream needing more parts than S3 allows raises StorageError naming part_size."""
    s3.max_parts = 2
    pieces = [os.urandom(MIN_PART_SIZE) for _ in range(3)]
    with pytest.raises(StorageError, match="larger part_size"):
        await s3.upload_stream("too-many", agen(*pieces), part_size=MIN_PART_SIZE)
    assert bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert not await s3.exists("too-many")


async def test_stream_whose_link_breaks_raises_a_connection_error(
    moto: MotoEndpoint,
    bucket: Any,
) -> None:
    """download_stream whose link breaks mid-body raises StorageConnectionError having
    delivered only the object's own bytes (aiohttp's ClientPayloadError leaked before)."""
    proxy = await CuttableProxy.to(moto.endpoint_url)
    direct = S3Storage(engine="sdk", bucket=BUCKET, **moto.credentials())
    through = S3Storage(
        engine="sdk", bucket=BUCKET, **{**moto.credentials(), "endpoint_url": proxy.url}
    )
    try:
        data, error = await stream_while_replaced(through, direct, proxy, replace=False, cut=True)
    finally:
        await through.close()
        await direct.close()
        await proxy.cut()
    assert isinstance(error, StorageConnectionError), repr(error)
    assert OLD.startswith(data) and len(data) < len(OLD)
