"""Run inside a fresh venv that has cloudrift with ONE extra (or none) installed.

Usage: python probe_extras.py none|aws|azure|gcp [moto_endpoint | pubsub_host]. Prints
"PROBE OK" at the end; any failed check raises. Kept free of test-suite imports: the
venv has no pytest.
"""

from __future__ import annotations

import asyncio
import sys
import uuid


def sdk_roots() -> set[str]:
    roots = {name.split(".")[0] for name in sys.modules}
    return roots & {
        "azure",
        "aioboto3",
        "aiobotocore",
        "boto3",
        "botocore",
        "gcloud",
        "motor",
        "opentelemetry",
    }


def expect_missing_extra(build: object, extra: str) -> None:
    from cloudrift.core.exceptions import ConfigurationError

    try:
        build()  # type: ignore[operator]
    except ConfigurationError as exc:
        assert f'pip install "cloudrift[{extra}]"' in str(exc), str(exc)  # noqa: PT017 - no pytest in the probe venv
    else:
        raise AssertionError(f"expected ConfigurationError naming cloudrift[{extra}]")


async def probe_none() -> None:
    from cloudrift.storage import get_storage

    async with get_storage("memory") as storage:
        await storage.upload("k", b"v")
        assert await storage.download("k") == b"v"
    expect_missing_extra(lambda: get_storage("s3", bucket="b", region="us-east-1"), "aws")
    expect_missing_gcp()
    # Without opentelemetry-api no observer is left after the first operation (above) and
    # queues still carry nothing.
    from cloudrift.core import operation, telemetry
    from cloudrift.messaging import get_queue

    assert not telemetry.available() and operation._GLOBALS["_op_observer"] is None
    async with get_queue("memory") as queue:
        await queue.send({"n": 1})
        (message,) = await queue.receive()
        assert message.transport_headers == {}, message.transport_headers
    assert sdk_roots() == set(), sdk_roots()


def expect_missing_gcp() -> None:
    from cloudrift.messaging import get_queue

    expect_missing_extra(
        lambda: get_queue("gcp_pubsub", project="cloudrift-test", topic="t-1", subscription="s-1"),
        "gcp",
    )


async def probe_aws(endpoint: str) -> None:
    import boto3  # installed by the [aws] extra; used only to create the test bucket/queue

    creds = {
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "aws_access_key_id": "AKIATESTINGCLOUDRIFT",
        "aws_secret_access_key": "moto-secret-key-for-tests",
    }
    raw = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": creds["aws_access_key_id"],
        "aws_secret_access_key": creds["aws_secret_access_key"],
    }
    bucket = f"iso-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", **raw).create_bucket(Bucket=bucket)
    queue_url = boto3.client("sqs", **raw).create_queue(QueueName=bucket)["QueueUrl"]

    from cloudrift.cache import get_cache
    from cloudrift.document import get_mongodb
    from cloudrift.email import get_email
    from cloudrift.messaging import get_queue
    from cloudrift.storage import get_storage

    async with get_storage("s3", bucket=bucket, **creds) as storage:
        await storage.upload("hello.txt", b"from an aws-only install")
        assert await storage.download("hello.txt") == b"from an aws-only install"
    async with get_queue("sqs", queue_url=queue_url, **creds) as queue:
        await queue.send({"n": 1})
        got = await queue.receive(max_messages=1, wait_time=1)
        assert [m.body for m in got] == [{"n": 1}], got
    async with get_email("ses", default_from="noreply@example.com", **creds):
        pass
    async with get_cache("elasticache", "from_auth_token", host="127.0.0.1", auth_token="t0k"):
        pass
    client = get_mongodb("documentdb", uri="mongodb://user:pw@127.0.0.1:27017/?tls=false")
    from cloudrift.document import aclose_client

    await aclose_client(client)
    expect_missing_extra(
        lambda: get_storage(
            "azure_blob", connection_string="UseDevelopmentStorage=true", container="c"
        ),
        "azure",
    )
    expect_missing_extra(
        lambda: get_cache(
            "azure_redis", "from_access_key", host="x.redis.cache.windows.net", access_key="k"
        ),
        "azure",
    )
    expect_missing_extra(
        lambda: get_queue(
            "azure_bus",
            connection_string="Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;"
            "SharedAccessKey=v;UseDevelopmentEmulator=true",
            queue_name="q",
        ),
        "azure",
    )
    expect_missing_gcp()
    leaked = sdk_roots() & {"azure", "gcloud", "motor"}
    assert not leaked, f"an aws-only install imported {leaked}"


async def probe_azure() -> None:
    from cloudrift.cache import get_cache
    from cloudrift.document import aclose_client, get_mongodb
    from cloudrift.email import get_email
    from cloudrift.messaging import get_queue
    from cloudrift.storage import get_storage

    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
        "KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
    )
    async with get_storage("azure_blob", connection_string=conn, container="c"):
        pass
    async with get_queue(
        "azure_bus",
        connection_string="Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;"
        "SharedAccessKey=v;UseDevelopmentEmulator=true",
        queue_name="q",
    ):
        pass
    async with get_email(
        "azure_acs",
        connection_string="endpoint=https://x.communication.azure.com/;accesskey=a2V5",
        default_from="DoNotReply@example.com",
    ):
        pass
    async with get_cache(
        "azure_redis", "from_access_key", host="x.redis.cache.windows.net", access_key="k"
    ):
        pass
    client = get_mongodb("cosmos", account="acct", account_key="a2V5")
    await aclose_client(client)
    expect_missing_extra(lambda: get_storage("s3", bucket="b", region="us-east-1"), "aws")
    expect_missing_gcp()
    leaked = sdk_roots() & {"aioboto3", "aiobotocore", "boto3", "botocore", "gcloud", "motor"}
    assert not leaked, f"an azure-only install imported {leaked}"


async def probe_gcp(pubsub_host: str) -> None:
    from cloudrift.messaging import get_queue
    from cloudrift.storage import get_storage

    # The test created topic "iso" and subscription "iso-sub" on the Pub/Sub stand-in.
    async with get_queue(
        "gcp_pubsub",
        project="cloudrift-test",
        topic="iso",
        subscription="iso-sub",
        emulator_host=pubsub_host,
    ) as queue:
        await queue.send({"n": 1})
        got = await queue.receive(max_messages=1, wait_time=2)
        assert [m.body for m in got] == [{"n": 1}], got
        await queue.delete(got[0].receipt_handle)
    from cloudrift.messaging import get_subscription, get_topic

    pubsub = {"project": "cloudrift-test", "emulator_host": pubsub_host}
    async with (
        get_topic("gcp_pubsub", topic="iso", **pubsub) as topic,
        get_subscription("gcp_pubsub", subscription="iso-sub", **pubsub) as subscription,
    ):
        await topic.publish({"n": 2})
        got = await subscription.receive(max_messages=1, wait_time=2)
        assert [m.body for m in got] == [{"n": 2}], got
        await subscription.delete(got[0].receipt_handle)
    async with get_storage("gcs", bucket="b", emulator_host="http://127.0.0.1:1"):
        pass
    from cloudrift.document import aclose_client, get_mongodb

    client = get_mongodb(
        "firestore", host="uid.us-east1.firestore.goog", username="u", password="p@ss"
    )
    await aclose_client(client)
    expect_missing_extra(lambda: get_storage("s3", bucket="b", region="us-east-1"), "aws")
    expect_missing_extra(
        lambda: get_queue(
            "azure_bus",
            connection_string="Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;"
            "SharedAccessKey=v;UseDevelopmentEmulator=true",
            queue_name="q",
        ),
        "azure",
    )
    leaked = sdk_roots() & {"azure", "aioboto3", "aiobotocore", "boto3", "botocore", "motor"}
    assert not leaked, f"a gcp-only install imported {leaked}"


def main() -> None:
    import cloudrift
    import cloudrift.cache
    import cloudrift.document
    import cloudrift.email
    import cloudrift.kv
    import cloudrift.messaging
    import cloudrift.storage

    assert cloudrift.__version__
    assert sdk_roots() == set(), f"importing the categories imported SDKs: {sdk_roots()}"
    which = sys.argv[1]
    if which == "none":
        asyncio.run(probe_none())
    elif which == "aws":
        asyncio.run(probe_aws(sys.argv[2]))
    elif which == "azure":
        asyncio.run(probe_azure())
    elif which == "gcp":
        asyncio.run(probe_gcp(sys.argv[2]))
    else:
        raise SystemExit(f"unknown probe {which}")
    print("PROBE OK")


if __name__ == "__main__":
    main()
