"""A small service on real local stand-ins: every request goes through the real protocols.

S3 and SQS on moto, Redis on redis-server, SMTP on aiosmtpd (STARTTLS + AUTH), the
document category on its embedded engine, and a queue worker turning jobs into mail.
"""

# FastAPI's documented spelling puts Depends(...) in parameter defaults.
# ruff: noqa: B008

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import httpx
from fastapi import Depends, FastAPI

from cloudrift.config import CloudriftSettings
from cloudrift.email import Email
from cloudrift.messaging import Message
from cloudrift_fastapi import (
    CacheDep,
    DatabaseDep,
    QueueDep,
    StorageDep,
    cloudrift_lifespan,
    get_email_dep,
    health_router,
    queue_worker,
    storage_dep,
)
from tests.servers.moto import MotoEndpoint
from tests.servers.redis import RedisServer
from tests.servers.smtp import SMTPServer


def _settings(
    moto: MotoEndpoint, queue_url: str, redis: RedisServer, smtp: SMTPServer
) -> CloudriftSettings:
    s3 = moto.credentials()
    return CloudriftSettings(
        verify_on_startup=True,
        storage={
            "default": "uploads",
            "backends": {
                "uploads": {"provider": "s3", "bucket": "uploads", **s3},
                "avatars": {"provider": "s3", "bucket": "avatars", **s3},
            },
        },
        queue={"provider": "sqs", "queue_url": queue_url, **s3},
        document={"provider": "memory", "database": "service"},
        cache={"provider": "redis", "auth_method": "from_url", "url": redis.url},
        email={"provider": "smtp", "default_from": "app@example.test", **smtp.client_options()},
    )


def _build_app(settings: CloudriftSettings, delivered: asyncio.Event) -> FastAPI:
    sent: list[str] = []

    async def mail_job(message: Message) -> None:
        email: Email = app.state.cloudrift.email()
        await email.send(message.body["to"], message.body["subject"], body_text="done")
        sent.append(message.body["to"])
        if len(sent) == 2:  # the server has recorded a mail before it answers 250
            delivered.set()

    app = FastAPI(
        lifespan=cloudrift_lifespan(settings, workers=[queue_worker(mail_job, wait_time=1)])
    )
    app.include_router(health_router())

    @app.put("/users/{name}/avatar")
    async def put_avatar(
        name: str, avatars: Any = Depends(storage_dep("avatars"))
    ) -> dict[str, str]:
        await avatars.upload(f"{name}.png", b"\x89PNG", content_type="image/png")
        return {"url": await avatars.presigned_url(f"{name}.png", expires_in=60)}

    @app.post("/users/{name}")
    async def create_user(
        name: str,
        db: DatabaseDep,
        cache: CacheDep,
        queue: QueueDep,
        uploads: StorageDep,
    ) -> dict[str, Any]:
        await db["users"].insert_one({"name": name})
        await uploads.upload(f"profiles/{name}.json", b'{"name": "%s"}' % name.encode())
        count = await cache.incr("signups")
        await queue.send({"to": f"{name}@example.test", "subject": "Welcome"})
        return {"signups": count, "users": await db["users"].count_documents({})}

    @app.get("/mail/ok")
    async def mail_ok(email: Email = Depends(get_email_dep)) -> bool:
        return await email.health_check()

    return app


async def test_a_service_on_real_stand_ins(
    moto: MotoEndpoint, redis: RedisServer, smtp_servers: dict[str, SMTPServer]
) -> None:
    """Signup writes S3, Mongo, Redis and SQS; the worker mails via SMTP; health is 200."""
    smtp = smtp_servers["starttls"]
    smtp.handler.reset()

    aws = {
        "endpoint_url": moto.endpoint_url,
        "region_name": moto.region,
        "aws_access_key_id": moto.access_key,
        "aws_secret_access_key": moto.secret_key,
    }
    s3 = boto3.client("s3", **aws)
    for bucket in ("uploads", "avatars"):
        s3.create_bucket(Bucket=bucket)
    queue_url = boto3.client("sqs", **aws).create_queue(QueueName="jobs")["QueueUrl"]

    delivered = asyncio.Event()
    app = _build_app(_settings(moto, queue_url, redis, smtp), delivered)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            first = await client.post("/users/alice")
            second = await client.post("/users/bob")
            assert first.json() == {"signups": 1, "users": 1}
            assert second.json() == {"signups": 2, "users": 2}

            avatar = await client.put("/users/alice/avatar")
            assert avatar.status_code == 200
            async with httpx.AsyncClient() as outside:
                fetched = await outside.get(avatar.json()["url"])
            assert fetched.content == b"\x89PNG"

            ready = await client.get("/health/ready")
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["backends"]) == {
                "storage.uploads",
                "storage.avatars",
                "queue.default",
                "document.default",
                "cache.default",
                "email.default",
            }
            assert (await client.get("/mail/ok")).json() is True

            await asyncio.wait_for(delivered.wait(), 20)  # deadlock guard
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="uploads")["Contents"]]
    assert sorted(keys) == ["profiles/alice.json", "profiles/bob.json"]
    assert redis.client().get("signups") == b"2"
    recipients = sorted(r for mail in smtp.handler.received for r in mail.rcpt_tos)
    assert recipients == ["alice@example.test", "bob@example.test"]
