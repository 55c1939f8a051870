"""The same kind of service on the Azure stand-ins: Blob on Azurite, Service Bus on the AMQP
test broker (real SDK), ACS email on its REST stand-in, Azure Cache for Redis (access key,
TLS verified) on a TLS redis-server, and a queue worker turning jobs into mail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
    queue_worker,
)
from tests.servers.acs import ACSServer
from tests.servers.azurite import AzuriteContainer
from tests.servers.redis import RedisServer
from tests.servers.servicebus import PLAIN_QUEUE, ServiceBusEndpoint
from tests.servers.tls import TLSFiles

ACCESS_KEY = "azure-redis-access-key-for-tests"


def _app(settings: CloudriftSettings, mailed: asyncio.Event) -> FastAPI:
    sent: list[str] = []

    async def mail_report(message: Message) -> None:
        email: Email = app.state.cloudrift.email()
        body = message.body
        await email.send("cfo@example.test", f"Report {body['name']}", body_text=body["url"])
        sent.append(body["name"])
        if len(sent) == 2:
            mailed.set()

    app = FastAPI(
        lifespan=cloudrift_lifespan(settings, workers=[queue_worker(mail_report, wait_time=1)])
    )
    app.include_router(health_router())

    @app.post("/reports/{name}")
    async def report(
        name: str, storage: StorageDep, cache: CacheDep, queue: QueueDep
    ) -> dict[str, Any]:
        await storage.upload(f"reports/{name}.txt", b"quarterly numbers")
        url = await storage.presigned_url(f"reports/{name}.txt", expires_in=300)
        count = await cache.incr("reports")
        await queue.send({"name": name, "url": url})
        return {"url": url, "count": count}

    return app


async def test_a_service_on_the_azure_stand_ins(
    azurite: AzuriteContainer,
    acs: ACSServer,
    servicebus: ServiceBusEndpoint,
    redis_server_factory: Callable[..., RedisServer],
    tls_files: TLSFiles,
) -> None:
    """Requests write Blob, Redis and Service Bus; the worker mails via ACS; SAS is verified."""
    redis = redis_server_factory(tls=tls_files, extra_args=["--requirepass", ACCESS_KEY])
    settings = CloudriftSettings(
        verify_on_startup=True,
        storage={
            "provider": "azure_blob",
            "connection_string": azurite.server.connection_string,
            "container": azurite.container,
        },
        queue={
            "provider": "azure_bus",
            "connection_string": servicebus.connection_string(),
            "queue_name": PLAIN_QUEUE,
        },
        cache={
            "provider": "azure_redis",
            "auth_method": "from_access_key",
            "host": "127.0.0.1",
            "port": redis.port,
            "access_key": ACCESS_KEY,
            "ssl_ca_certs": str(tls_files.ca_cert),
        },
        email={
            "provider": "azure_acs",
            "endpoint": acs.endpoint,
            "access_key": acs.access_key,
            "default_from": "reports@example.com",  # the stand-in links example.com
            "poll_interval": 0.01,
        },
    )
    mailed = asyncio.Event()
    app = _app(settings, mailed)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            first = (await client.post("/reports/q1")).json()
            second = (await client.post("/reports/q2")).json()
            ready = await client.get("/health/ready")
        assert [first["count"], second["count"]] == [1, 2]
        assert ready.status_code == 200, ready.text
        assert {k: v["provider"] for k, v in ready.json()["backends"].items()} == {
            "storage.default": "azure_blob",
            "queue.default": "azure_bus",
            "cache.default": "azure_redis",
            "email.default": "azure_acs",
        }
        assert ACCESS_KEY not in ready.text
        assert azurite.server.account_key not in ready.text
        async with httpx.AsyncClient() as outside:
            fetched = await outside.get(first["url"])
            forged = await outside.get(first["url"].replace("sig=", "sig=A"))
        assert fetched.content == b"quarterly numbers"
        assert forged.status_code == 403  # Azurite checks SAS signatures for real
        await asyncio.wait_for(mailed.wait(), 20)  # deadlock guard
    sent = acs.sent
    assert sorted(m["content"]["subject"] for m in sent) == ["Report q1", "Report q2"]
    assert [r["address"] for r in sent[0]["recipients"]["to"]] == ["cfo@example.test"]
