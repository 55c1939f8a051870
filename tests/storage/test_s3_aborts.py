"""Failed multipart uploads and copies on S3 leave no parts behind, even when the failure
was the connection itself: the abort is retried once the server is reachable again."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from cloudrift.core.exceptions import (
    FeatureNotSupportedError,
    InvalidArgumentError,
    StorageError,
)
from cloudrift.storage import get_storage
from cloudrift.storage.base import MIN_PART_SIZE
from cloudrift.storage.s3 import S3Storage
from tests.servers.azurite import AzuriteContainer
from tests.servers.gcs import GCSEmulator
from tests.servers.moto import MotoEndpoint
from tests.storage._proxy import CuttableProxy, upload_cut_midway

BUCKET = "aborts"


@pytest.fixture
def raw(moto: MotoEndpoint) -> Any:
    """A plain boto3 client straight to moto (never through the proxy), bucket created."""
    client = boto3.client(
        "s3",
        endpoint_url=moto.endpoint_url,
        region_name=moto.region,
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
    )
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
async def proxy(moto: MotoEndpoint) -> AsyncIterator[CuttableProxy]:
    """A cuttable proxy in front of moto."""
    link = await CuttableProxy.to(moto.endpoint_url)
    try:
        yield link
    finally:
        await link.cut()


def _open_uploads(raw: Any) -> list[str]:
    return [u["UploadId"] for u in raw.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


async def _until(check: Any, seconds: float, what: str) -> None:
    """Poll ``check()`` until true; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {seconds} s")
        await asyncio.sleep(0.05)


@pytest.fixture(params=["sdk", "obstore"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine: on obstore, the upload id comes from its failed abort's error."""
    return str(request.param)


def _via(proxy: CuttableProxy, moto: MotoEndpoint, engine: str) -> S3Storage:
    storage = get_storage(
        "s3",
        bucket=BUCKET,
        **{**moto.credentials(), "endpoint_url": proxy.url},
        max_attempts=1,
        upload_concurrency=1,
        engine=engine,
    )
    assert isinstance(storage, S3Storage)
    storage.abort_retry_delays = (0.2, 0.4, 0.8, 1.6, 3.2)
    return storage


async def _stream_cut_midway(storage: S3Storage, proxy: CuttableProxy) -> float:
    """Stream three parts, cutting the link before the third; return seconds to fail (the
    error names the key on the obstore engine, whose abort failure replaces the cause)."""
    began = time.monotonic()
    error = await upload_cut_midway(storage, proxy, "big")
    took = time.monotonic() - began
    if storage.engine == "obstore":
        assert "streaming 'big'" in str(error), error
        assert "retried in the background" in str(error), error
    return took


async def test_abort_is_retried_after_the_connection_returns(
    moto: MotoEndpoint, raw: Any, proxy: CuttableProxy, engine: str
) -> None:
    """A stream cut by a dead link raises at once; its upload is aborted once the link is back."""
    storage = _via(proxy, moto, engine)
    try:
        took = await _stream_cut_midway(storage, proxy)
        assert took < 10, f"the caller waited {took:.1f} s for its error"
        assert len(_open_uploads(raw)) == 1  # the first abort could not get through
        await proxy.restore()
        await _until(lambda: not _open_uploads(raw), 15, "the upload was not aborted")
    finally:
        await storage.close()


async def test_cancelled_stream_with_the_link_cut_is_aborted_once_it_returns(
    moto: MotoEndpoint, raw: Any, proxy: CuttableProxy, engine: str
) -> None:
    """A caller cancelled while the link is down leaves no upload once the link is back."""
    storage = _via(proxy, moto, engine)
    part = os.urandom(MIN_PART_SIZE)
    cut = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        yield part
        yield part
        await proxy.cut()
        cut.set()
        await asyncio.Event().wait()  # a source that never ends
        yield part

    try:
        streaming = asyncio.create_task(
            storage.upload_stream("big", source(), part_size=MIN_PART_SIZE)
        )
        await cut.wait()
        streaming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await streaming
        assert len(_open_uploads(raw)) == 1  # the first abort could not get through
        await proxy.restore()
        await _until(lambda: not _open_uploads(raw), 15, "the upload was not aborted")
    finally:
        await storage.close()


async def test_abort_that_keeps_failing_is_logged(
    moto: MotoEndpoint,
    raw: Any,
    proxy: CuttableProxy,
    engine: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the server stays unreachable, the retries end with a warning naming the upload."""
    storage = _via(proxy, moto, engine)
    storage.abort_retry_delays = (0.05, 0.05)
    caplog.set_level(logging.WARNING, logger="cloudrift")
    try:
        await _stream_cut_midway(storage, proxy)
        (upload_id,) = _open_uploads(raw)
        await _until(
            lambda: any(upload_id in r.getMessage() for r in caplog.records),
            10,
            "no warning about the open upload was logged",
        )
        message = next(r.getMessage() for r in caplog.records if upload_id in r.getMessage())
        assert "after 3 attempts" in message and "lifecycle rule" in message
    finally:
        await storage.close()


async def test_close_stops_the_retries_and_says_so(
    moto: MotoEndpoint,
    raw: Any,
    proxy: CuttableProxy,
    engine: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """close() cancels pending abort retries and logs which upload stays open."""
    storage = _via(proxy, moto, engine)
    storage.abort_retry_delays = (60.0,)
    caplog.set_level(logging.WARNING, logger="cloudrift")
    await _stream_cut_midway(storage, proxy)
    (upload_id,) = _open_uploads(raw)
    began = time.monotonic()
    await storage.close()
    assert time.monotonic() - began < 5
    assert any(upload_id in r.getMessage() and "closed" in r.getMessage() for r in caplog.records)


async def test_abort_incomplete_uploads_aborts_only_older_ones(
    moto: MotoEndpoint, raw: Any
) -> None:
    """abort_incomplete_uploads(older_than=...) aborts uploads older than that and counts them."""
    for key in ("a", "b", "c"):
        upload = raw.create_multipart_upload(Bucket=BUCKET, Key=key)
        raw.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x"
        )
    storage = get_storage("s3", bucket=BUCKET, list_page_size=2, **moto.credentials())
    assert isinstance(storage, S3Storage)
    try:
        # moto reports every upload as initiated in 2010, so "younger than the cutoff"
        # is shown with a cutoff a century back.
        assert await storage.abort_incomplete_uploads(older_than=timedelta(days=36500)) == 0
        assert len(_open_uploads(raw)) == 3
        assert await storage.abort_incomplete_uploads(older_than=timedelta(0)) == 3
        assert _open_uploads(raw) == []
        with pytest.raises(InvalidArgumentError, match="older_than"):
            await storage.abort_incomplete_uploads(older_than=3600)  # type: ignore[arg-type]
    finally:
        await storage.close()


async def test_failing_copy_part_cancels_the_others_and_aborts(
    moto: MotoEndpoint, raw: Any
) -> None:
    """In a multipart copy, one failing part cancels the parts in flight and aborts the upload."""
    storage = get_storage("s3", bucket=BUCKET, **moto.credentials())
    assert isinstance(storage, S3Storage)
    storage.copy_multipart_threshold = 0
    storage.copy_part_size = MIN_PART_SIZE
    await storage.upload("src", os.urandom(3 * MIN_PART_SIZE))
    client = await storage.native()
    cancelled: list[int] = []

    async def upload_part_copy(**args: Any) -> Any:
        if args["PartNumber"] == 2:
            await asyncio.sleep(0)
            raise ClientError({"Error": {"Code": "InternalError"}}, "UploadPartCopy")
        try:
            await asyncio.Event().wait()  # a part that would run on forever
        except asyncio.CancelledError:
            cancelled.append(args["PartNumber"])
            raise

    client.upload_part_copy = upload_part_copy
    try:
        with pytest.raises(StorageError):
            await storage.copy("src", "dst")
        assert cancelled == [1]
        assert _open_uploads(raw) == []
        assert not await storage.exists("dst")
    finally:
        await storage.close()


async def test_azure_and_gcs_say_the_service_discards_abandoned_uploads(
    azurite: AzuriteContainer, gcs: GCSEmulator
) -> None:
    """abort_incomplete_uploads on azure_blob and gcs raises FeatureNotSupportedError saying why."""
    blob = get_storage(
        "azure_blob", connection_string=azurite.server.connection_string, container="c"
    )
    bucket = get_storage("gcs", bucket=gcs.bucket, emulator_host=gcs.endpoint)
    try:
        for storage, says in ((blob, "7 days"), (bucket, "a week")):
            with pytest.raises(FeatureNotSupportedError, match=says):
                await storage.abort_incomplete_uploads(older_than=timedelta(0))  # type: ignore[attr-defined]
    finally:
        await blob.close()
        await bucket.close()
