"""A storage server that is down fails fast on every cloud provider, with default options.

Nothing listens on the port, so each connection attempt is refused at once: the time
to fail is what the client adds itself (retry backoff). The bound (12 s) is generous
against the defaults (3 attempts, connect timeout 5 s), and still fails when a provider's
SDK stacks its own multi-second backoff on our attempts (Azure took 43 s).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import boto3
import pytest

from cloudrift.core.exceptions import StorageConnectionError
from cloudrift.storage import Storage, get_storage
from tests.servers._process import LOOPBACK, free_port
from tests.servers.azurite import ACCOUNT, ACCOUNT_KEY, AzuriteContainer
from tests.servers.gcs import GCSEmulator
from tests.servers.moto import MotoEndpoint
from tests.storage._proxy import CuttableProxy, upload_cut_midway

BOUND_SECONDS = 12.0


def _options(provider: str, port: int) -> dict[str, Any]:
    if provider == "s3":
        return {
            "bucket": "b",
            "endpoint_url": f"http://{LOOPBACK}:{port}",
            "region": "us-east-1",
            "aws_access_key_id": "AKIATESTINGCLOUDRIFT",
            "aws_secret_access_key": "not-a-real-secret",
        }
    if provider == "azure_blob":
        return {
            "container": "c",
            "account_url": f"http://{LOOPBACK}:{port}/{ACCOUNT}",
            "account_key": ACCOUNT_KEY,
        }
    return {"bucket": "b", "emulator_host": f"http://{LOOPBACK}:{port}"}


async def _time_to_fail(provider: str) -> float:
    storage = get_storage(provider, **_options(provider, free_port()))
    began = time.monotonic()
    try:
        with pytest.raises(StorageConnectionError):
            await storage.exists("k")
    finally:
        await storage.close()
    return time.monotonic() - began


async def test_exists_against_a_closed_port_fails_within_the_bound() -> None:
    """exists() against a closed loopback port raises StorageConnectionError within 12 s
    on s3, azure_blob and gcs (run side by side, so the test costs the slowest one)."""
    providers = ["s3", "azure_blob", "gcs"]
    took = dict(zip(providers, await asyncio.gather(*map(_time_to_fail, providers)), strict=True))
    slow = {name: round(seconds, 1) for name, seconds in took.items() if seconds >= BOUND_SECONDS}
    assert not slow, f"seconds to report a server that is down: {slow}"


async def _cut_midway(storage: Storage, proxy: CuttableProxy) -> float:
    """Seconds until upload_stream fails when the link is cut before its third part."""
    began = time.monotonic()
    try:
        await upload_cut_midway(storage, proxy, "big")
    finally:
        await storage.close()
    return time.monotonic() - began


async def test_upload_stream_with_the_link_cut_fails_within_the_bound(
    moto: MotoEndpoint, azurite: AzuriteContainer, gcs: GCSEmulator
) -> None:
    """upload_stream whose link dies mid-way raises StorageConnectionError within 12 s on
    s3, azure_blob and gcs (default retry options; run side by side)."""
    boto3.client(
        "s3",
        endpoint_url=moto.endpoint_url,
        region_name=moto.region,
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
    ).create_bucket(Bucket="cut")
    to_s3 = await CuttableProxy.to(moto.endpoint_url)
    to_azure = await CuttableProxy.to(azurite.server.account_url)
    to_gcs = await CuttableProxy.to(gcs.endpoint)
    s3 = get_storage("s3", bucket="cut", **{**moto.credentials(), "endpoint_url": to_s3.url})
    blob = get_storage(
        "azure_blob",
        container=azurite.container,
        account_url=f"{to_azure.url}/{ACCOUNT}",
        account_key=ACCOUNT_KEY,
    )
    bucket = get_storage("gcs", bucket=gcs.bucket, emulator_host=to_gcs.url)
    took = await asyncio.gather(
        _cut_midway(s3, to_s3), _cut_midway(blob, to_azure), _cut_midway(bucket, to_gcs)
    )
    slow = {
        name: round(seconds, 1)
        for name, seconds in zip(["s3", "azure_blob", "gcs"], took, strict=True)
        if seconds >= BOUND_SECONDS
    }
    assert not slow, f"seconds to report a cut link: {slow}"
