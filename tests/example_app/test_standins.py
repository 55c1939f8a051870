"""The same app, the same code, on real local stand-ins: changed by configuration only.

``local-aws.yaml``: moto (S3, SQS, SESv2) and a real redis-server cache. The app is
built by exactly the same ``create_app`` as the demo; only the settings file differs.
(The Azure counterpart is in ``test_azure.py``.)
"""

from __future__ import annotations

import email
import hashlib
import json
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import RawMessage, ses_backends

from cloudrift.config import CloudriftSettings
from example_app import create_app, records
from example_app.config import SETTINGS_DIR, IntakeConfig
from example_app.services import services_of
from example_app.sweeper import sweep
from tests.example_app.conftest import (
    aws_events_env,
    demo_settings,
    flow_on_standins,
    full_flow,
    running,
    wait_for_status,
)
from tests.servers.moto import MotoEndpoint
from tests.servers.redis import RedisServer

SENDER = "intake@example.test"


def _aws(moto: MotoEndpoint, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto.endpoint_url,
        region_name=moto.region,
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
    )


@pytest.fixture
def aws_standins(
    moto: MotoEndpoint, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> CloudriftSettings:
    """local-aws.yaml pointed at moto and redis-server (bucket, queue, sender, events topic
    and the audit queue subscribed to it, raw delivery off, created)."""
    _aws(moto, "s3").create_bucket(Bucket="intake")
    sqs = _aws(moto, "sqs")
    queue_url = sqs.create_queue(QueueName="intake-jobs")["QueueUrl"]
    events = aws_events_env(_aws(moto, "sns"), sqs)
    _aws(moto, "sesv2").create_email_identity(EmailIdentity=SENDER)
    for name, value in {
        "AWS_ENDPOINT_URL": moto.endpoint_url,
        "AWS_REGION": moto.region,
        "AWS_ACCESS_KEY_ID": moto.access_key,
        "AWS_SECRET_ACCESS_KEY": moto.secret_key,
        "INTAKE_QUEUE_URL": queue_url,
        "REDIS_URL": redis.url,
        **events,
    }.items():
        monkeypatch.setenv(name, value)
    return CloudriftSettings.from_yaml(SETTINGS_DIR / "local-aws.yaml")


async def test_full_flow_on_moto_s3_sqs_ses_and_redis_server(
    aws_standins: CloudriftSettings, moto: MotoEndpoint, redis: RedisServer
) -> None:
    """Upload → SQS job → worker → record → redis cache hit → SES mail → S3 presigned GET,
    and the document.processed event through SNS to the audit SQS subscription."""
    content = b"alpha\nbeta\ngamma\n"
    providers = {
        "storage.default": "s3",
        "queue.default": "sqs",
        "document.default": "memory",
        "cache.default": "redis",
        "email.default": "ses",
        "topic.default": "sns",
        "subscription.audit": "sqs",
    }
    body = await flow_on_standins(aws_standins, providers, content)

    doc_id = body["id"]
    stored = _aws(moto, "s3").get_object(Bucket="intake", Key=f"documents/{doc_id}")
    assert stored["Body"].read() == content
    with redis.client() as direct:
        cached = direct.get(records.cache_key(doc_id))
    assert cached is not None
    assert json.loads(cached)["summary"]["sha256"] == body["summary"]["sha256"]
    sent = ses_backends[DEFAULT_ACCOUNT_ID][moto.region].sent_messages
    assert len(sent) == 1
    assert isinstance(sent[0], RawMessage)
    assert parseaddr(sent[0].source)[1] == SENDER
    mail = email.message_from_string(sent[0].raw_data)
    names = [part.get_filename() for part in mail.walk() if part.get_filename()]
    assert names == [f"summary-{doc_id}.json"]


async def test_demo_with_a_redis_queue_and_cache_set_by_env_vars_only(
    redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo on a real redis-server (Streams queue + cache): only CLOUDRIFT_* env vars
    change, as example_app/README.md shows."""
    for name, value in {
        "CLOUDRIFT_QUEUE__PROVIDER": "redis",
        "CLOUDRIFT_QUEUE__URL": redis.url,
        "CLOUDRIFT_QUEUE__QUEUE_NAME": "intake-jobs",
        "CLOUDRIFT_CACHE__PROVIDER": "redis",
        "CLOUDRIFT_CACHE__AUTH_METHOD": "from_url",
        "CLOUDRIFT_CACHE__URL": redis.url,
    }.items():
        monkeypatch.setenv(name, value)
    app = create_app(demo_settings(tmp_path, monkeypatch), IntakeConfig())
    async with running(app) as client:
        ready = (await client.get("/health/ready")).json()["backends"]
        assert (ready["queue.default"]["provider"], ready["cache.default"]["provider"]) == (
            "redis",
            "redis",
        )

        async def fetch(url: str) -> bytes:
            return (await client.get(url)).content

        body = await full_flow(client, b"streams\nand cache\n", fetch)
    with redis.client() as direct:
        assert direct.exists(records.cache_key(body["id"])) == 1
        # The job went through the stream's consumer group and was acked (then deleted).
        groups = direct.xinfo_groups("intake-jobs")
        assert [g["last-delivered-id"] != b"0-0" for g in groups] == [True]
        assert direct.xlen("intake-jobs") == 0


async def test_an_s3_upload_url_cannot_change_the_file_after_complete(
    aws_standins: CloudriftSettings, moto: MotoEndpoint
) -> None:
    """On S3 the upload URL writes an incoming key that complete moves away from: a PUT
    after complete (S3 accepts it) never reaches the processed file, and the sweeper
    removes the stray object once the document is older than upload_ttl."""
    original = b"the accepted bytes\n"
    app = create_app(aws_standins, IntakeConfig(url_ttl=60, upload_ttl=600))
    async with running(app) as client, httpx.AsyncClient() as s3:
        offer = await client.post("/documents/upload-url", json={"filename": "s3.txt"})
        assert offer.status_code == 201, offer.text
        ticket = offer.json()
        put = await s3.put(ticket["upload_url"], content=original, headers=ticket["headers"])
        assert put.status_code == 200, put.text
        assert (await client.post(ticket["complete_url"])).status_code == 202
        late = await s3.put(ticket["upload_url"], content=b"swapped", headers=ticket["headers"])
        assert late.status_code == 200  # S3 cannot refuse it...
        body = await wait_for_status(client, ticket["id"])
        result = await sweep(services_of(app), now=datetime.now(UTC) + timedelta(seconds=610))
    doc_id = ticket["id"]
    assert body["summary"]["sha256"] == hashlib.sha256(original).hexdigest()  # ...unseen
    stored = _aws(moto, "s3").get_object(Bucket="intake", Key=f"documents/{doc_id}")
    assert stored["Body"].read() == original
    listed = _aws(moto, "s3").list_objects_v2(Bucket="intake", Prefix="documents/incoming/")
    assert listed.get("KeyCount") == 0
    assert result.purged == 1
