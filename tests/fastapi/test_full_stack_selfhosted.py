"""The no-cloud deployment: local files with signed URLs, Redis Streams as the queue, Redis
as the cache, SMTP for mail — all on real local servers, through the whole request path."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from cloudrift.config import CloudriftSettings
from cloudrift.email import Email
from cloudrift.messaging import Message
from cloudrift_fastapi import (
    CacheDep,
    QueueDep,
    StorageDep,
    cloudrift_lifespan,
    health_router,
    local_files_router,
    queue_worker,
)
from tests.servers.redis import RedisServer
from tests.servers.smtp import SMTPServer


def _app(settings: CloudriftSettings, mailed: asyncio.Event) -> FastAPI:
    async def notify(message: Message) -> None:
        email: Email = app.state.cloudrift.email()
        await email.send(message.body["to"], "Your upload link", body_text=message.body["url"])
        mailed.set()

    app = FastAPI(
        lifespan=cloudrift_lifespan(settings, workers=[queue_worker(notify, wait_time=0.2)])
    )
    app.include_router(health_router())
    app.include_router(local_files_router(settings))

    @app.post("/uploads/{key:path}")
    async def start_upload(
        key: str, storage: StorageDep, queue: QueueDep, cache: CacheDep
    ) -> dict[str, Any]:
        put = await storage.presigned_url(key, expires_in=300, method="PUT")
        get = await storage.presigned_url(key, expires_in=300)
        await queue.send({"to": "owner@example.test", "url": get})
        return {"put": put, "get": get, "pending": await cache.incr("uploads")}

    return app


async def test_a_service_without_any_cloud(
    tmp_path: Path, redis: RedisServer, smtp_servers: dict[str, SMTPServer]
) -> None:
    """Presigned upload and download through our own router; job and mail over real servers."""
    smtp = smtp_servers["plaintext"]
    smtp.handler.reset()
    settings = CloudriftSettings(
        verify_on_startup=True,
        storage={
            "provider": "local",
            "root_dir": str(tmp_path / "files"),
            "base_url": "http://svc/files",
            "signing_key": "self-hosted-signing-key",
        },
        queue={"provider": "redis", "url": redis.url, "queue_name": "notifications"},
        cache={"provider": "redis", "auth_method": "from_url", "url": redis.url},
        email={"provider": "smtp", "default_from": "app@example.test", **smtp.client_options()},
    )
    mailed = asyncio.Event()
    app = _app(settings, mailed)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            links = (await client.post("/uploads/docs/report 2026.pdf")).json()
            assert links["pending"] == 1
            uploaded = await client.put(links["put"], content=b"%PDF-1.7 body")
            assert uploaded.status_code == 200
            downloaded = await client.get(links["get"])
            assert downloaded.content == b"%PDF-1.7 body"
            assert (await client.get(links["put"])).status_code == 403  # PUT link, GET verb
            ready = await client.get("/health/ready")
            assert ready.status_code == 200, ready.text
            await asyncio.wait_for(mailed.wait(), 20)  # deadlock guard
    assert (tmp_path / "files" / "docs" / "report 2026.pdf").read_bytes() == b"%PDF-1.7 body"
    assert [mail.rcpt_tos for mail in smtp.handler.received] == [["owner@example.test"]]
    mail = message_from_bytes(smtp.handler.received[0].data, policy=policy.default)
    body = mail.get_body(("plain",))
    assert body is not None
    assert body.get_content().strip() == links["get"]
