"""The same kind of service on the Azure stand-ins: Blob on Azurite, ACS email on its REST
stand-in, Azure Cache for Redis (access key, TLS verified) on a TLS redis-server."""

# FastAPI's documented spelling puts Depends(...) in parameter defaults.
# ruff: noqa: B008

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import Depends, FastAPI

from cloudrift.config import CloudriftSettings
from cloudrift.email import Email
from cloudrift_fastapi import (
    CacheDep,
    StorageDep,
    cloudrift_lifespan,
    get_email_dep,
    health_router,
)
from tests.servers.acs import ACSServer
from tests.servers.azurite import AzuriteContainer
from tests.servers.redis import RedisServer
from tests.servers.tls import TLSFiles

ACCESS_KEY = "azure-redis-access-key-for-tests"


def _app(settings: CloudriftSettings) -> FastAPI:
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    app.include_router(health_router())

    @app.post("/reports/{name}")
    async def report(
        name: str,
        storage: StorageDep,
        cache: CacheDep,
        email: Email = Depends(get_email_dep),
    ) -> dict[str, Any]:
        await storage.upload(f"reports/{name}.txt", b"quarterly numbers")
        url = await storage.presigned_url(f"reports/{name}.txt", expires_in=300)
        count = await cache.incr("reports")
        await email.send("cfo@example.test", f"Report {name}", body_text=url)
        return {"url": url, "count": count}

    return app


async def test_a_service_on_the_azure_stand_ins(
    azurite: AzuriteContainer,
    acs: ACSServer,
    redis_server_factory: Callable[..., RedisServer],
    tls_files: TLSFiles,
) -> None:
    """A request writes Blob and Redis and mails via ACS; the SAS link works and is verified."""
    redis = redis_server_factory(tls=tls_files, extra_args=["--requirepass", ACCESS_KEY])
    settings = CloudriftSettings(
        verify_on_startup=True,
        storage={
            "provider": "azure_blob",
            "connection_string": azurite.server.connection_string,
            "container": azurite.container,
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
    app = _app(settings)
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
    sent = acs.sent
    assert [m["content"]["subject"] for m in sent] == ["Report q1", "Report q2"]
    assert [r["address"] for r in sent[0]["recipients"]["to"]] == ["cfo@example.test"]
