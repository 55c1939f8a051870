"""The shared stand-ins start on free loopback ports and speak their real protocols."""

from __future__ import annotations

import boto3
import pytest

from tests.servers.moto import MotoEndpoint
from tests.servers.redis import RedisServer


def test_moto_serves_real_s3_and_resets_between_tests(moto: MotoEndpoint) -> None:
    """boto3 talks S3 to the moto server; the per-test reset starts it empty."""
    s3 = boto3.client(
        "s3",
        endpoint_url=moto.endpoint_url,
        region_name=moto.region,
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
    )
    assert s3.list_buckets()["Buckets"] == []
    s3.create_bucket(Bucket="standin-check")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["standin-check"]
    moto.reset()
    assert s3.list_buckets()["Buckets"] == []


@pytest.mark.parametrize("fixture_name", ["redis", "redis_tls"])
def test_redis_servers_answer_over_their_protocol(
    fixture_name: str, request: pytest.FixtureRequest
) -> None:
    """Both the plain and the TLS redis-server store and return a value."""
    server: RedisServer = request.getfixturevalue(fixture_name)
    assert server.url.startswith("rediss://" if server.tls else "redis://")
    with server.client() as client:
        client.set("standin", b"ok")
        assert client.get("standin") == b"ok"


def test_a_stopped_redis_server_refuses_connections(redis_server_factory: object) -> None:
    """A private server can be stopped to simulate an outage, and restarted."""
    import redis as redis_sync

    server = redis_server_factory()  # type: ignore[operator]
    server.stop()
    with pytest.raises(redis_sync.ConnectionError), server.client() as client:
        client.ping()
    server.start()
    with server.client() as client:
        assert client.ping() is True
