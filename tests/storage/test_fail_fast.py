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

import pytest

from cloudrift.core.exceptions import StorageConnectionError
from cloudrift.storage import get_storage
from tests.servers._process import LOOPBACK, free_port
from tests.servers.azurite import ACCOUNT, ACCOUNT_KEY

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
