"""moto's server: real S3, SQS and SESv2 HTTP APIs on a free loopback port.

``moto_server`` starts once per session; ``moto`` (function scope) resets all state
through ``POST /moto-api/reset`` before each test and hands out the endpoint and
throwaway credentials; ``bucket`` adds an empty S3 bucket named ``BUCKET`` to that.
moto does not verify presigned-URL signatures or expiry, so negative presign tests run
against Azurite instead.
"""

from __future__ import annotations

import functools
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.servers._process import LOOPBACK

REGION = "us-east-1"
ACCESS_KEY = "AKIATESTINGCLOUDRIFT"
SECRET_KEY = "moto-secret-key-for-tests"
#: The S3 bucket the ``bucket`` fixture creates.
BUCKET = "cloudrift-test"


@dataclass(frozen=True)
class MotoEndpoint:
    """Where the moto server listens and the credentials to use against it."""

    endpoint_url: str
    region: str = REGION
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    started_in: float = 0.0

    def reset(self) -> None:
        """Drop every bucket, queue and identity moto holds."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            if resp.status != 200:
                raise RuntimeError(f"moto reset answered {resp.status}")

    def credentials(self) -> dict[str, str]:
        """Keyword options shared by every AWS provider to reach this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
        }


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoEndpoint]:
    """moto's ThreadedMotoServer on a free 127.0.0.1 port for the whole session."""
    began = time.monotonic()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    try:
        server.start()
    except Exception as exc:
        pytest.fail(f"moto server could not start: {exc!r}", pytrace=False)
    host, port = server.get_host_and_port()
    endpoint = MotoEndpoint(f"http://{host}:{port}", started_in=time.monotonic() - began)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server: MotoEndpoint) -> MotoEndpoint:
    """The session's moto server, reset to empty for this test."""
    moto_server.reset()
    return moto_server


@functools.cache
def _s3_client(moto: MotoEndpoint) -> Any:
    """A raw S3 client on ``moto``, built once per server (tests create many buckets)."""
    options = moto.credentials()
    return boto3.client("s3", region_name=options.pop("region"), **options)


@pytest.fixture
def bucket(moto: MotoEndpoint) -> Any:
    """An empty bucket ``BUCKET`` on a freshly reset moto server; returns a raw boto3 client."""
    raw = _s3_client(moto)
    raw.create_bucket(Bucket=BUCKET)
    return raw
