"""Health router: live always; ready probes every backend concurrently, 200 or 503."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import ConfigurationError, DocumentConnectionError
from cloudrift_fastapi import cloudrift_lifespan, health_router, override_backends
from tests.servers.mongo import PASSWORD, USER, MongoWireServer
from tests.servers.redis import RedisServer
from tests.servers.smtp import SMTPServer

SECRET = "h3alth-redis-p4ss"


def _app(settings: CloudriftSettings, timeout: float = 5.0) -> FastAPI:
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    app.include_router(health_router(timeout=timeout))
    return app


class HangingBackend:
    """A backend whose health check never answers (a black-holed connection)."""

    async def health_check(self) -> bool:
        await asyncio.Event().wait()
        return True


class RaisingBackend:
    """A backend whose health check raises with a credential in the message."""

    async def health_check(self) -> bool:
        raise RuntimeError(f"connect failed for redis://:{SECRET}@cache:6379")


def test_live_is_ok_without_touching_backends() -> None:
    """``/health/live`` answers 200 whenever the process serves requests."""
    app = _app(CloudriftSettings(storage="memory"))
    with TestClient(app) as client:
        assert client.get("/health/live").json() == {"status": "ok"}


def test_ready_reports_every_backend_by_category_and_name() -> None:
    """All memory backends answer: 200 with one ok entry per backend, named ones included."""
    settings = CloudriftSettings(
        storage={
            "default": "main",
            "backends": {"main": {"provider": "memory"}, "avatars": {"provider": "memory"}},
        },
        queue="memory",
        document={"provider": "memory", "database": "d"},
        cache="memory",
        email="memory",
    )
    with TestClient(_app(settings)) as client:
        response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["backends"]) == {
        "storage.main",
        "storage.avatars",
        "queue.default",
        "document.default",
        "cache.default",
        "email.default",
    }
    assert all(b == {"provider": "memory", "status": "ok"} for b in body["backends"].values())


def test_ready_turns_503_when_a_real_redis_stops_and_200_when_it_returns(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """Against a real redis-server: up → 200, stopped → 503 naming it, restarted → 200."""
    server = redis_server_factory(extra_args=["--requirepass", SECRET])
    settings = CloudriftSettings(
        storage="memory",
        cache={
            "provider": "redis",
            "auth_method": "from_url",
            "url": f"redis://:{SECRET}@127.0.0.1:{server.port}/0",
            "socket_timeout": 1,
            "socket_connect_timeout": 1,
            "max_attempts": 1,
        },
    )
    with TestClient(_app(settings)) as client:
        assert client.get("/health/ready").status_code == 200
        server.stop()
        down = client.get("/health/ready")
        assert down.status_code == 503
        body = down.json()
        assert body["status"] == "unavailable"
        assert body["backends"]["cache.default"]["status"] == "down"
        assert body["backends"]["cache.default"]["provider"] == "redis"
        assert body["backends"]["storage.default"]["status"] == "ok"
        assert SECRET not in down.text
        server.start()
        assert client.get("/health/ready").status_code == 200


def test_ready_with_real_smtp_server(smtp_servers: dict[str, SMTPServer]) -> None:
    """An SMTP backend on the STARTTLS+AUTH stand-in reports ok; its password is not shown."""
    server = smtp_servers["starttls"]
    settings = CloudriftSettings(
        email={"provider": "smtp", "default_from": "app@example.test", **server.client_options()}
    )
    with TestClient(_app(settings)) as client:
        response = client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["backends"]["email.default"] == {"provider": "smtp", "status": "ok"}
    assert str(server.password) not in response.text


def _wire_settings(server: MongoWireServer, password: str) -> CloudriftSettings:
    return CloudriftSettings(
        verify_on_startup=True,
        document={
            "provider": "mongodb",
            "uri": f"mongodb://{server.address}/?directConnection=true",
            "username": USER,
            "password": password,
            "server_selection_timeout": 2,
            "database": "app",
        },
    )


def test_document_backend_on_the_mongo_wire_server(mongo_wire: MongoWireServer) -> None:
    """A real driver logs in (SCRAM) to the wire server at startup and pings it for health."""
    with TestClient(_app(_wire_settings(mongo_wire, PASSWORD))) as client:
        response = client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["backends"]["document.default"] == {
        "provider": "mongodb",
        "status": "ok",
    }
    assert mongo_wire.requests("ping")
    assert PASSWORD not in response.text


def test_wrong_document_password_stops_startup_without_showing_it(
    mongo_wire: MongoWireServer,
) -> None:
    """Failed authentication at startup names the backend and never the password."""
    wrong = "wr0ng-p4ssword-value"
    app = _app(_wire_settings(mongo_wire, wrong))
    with pytest.raises(DocumentConnectionError) as caught, TestClient(app):
        pass
    assert "document backend 'default' (mongodb)" in caught.value.message
    assert wrong not in caught.value.message


def test_a_hanging_backend_times_out_and_the_others_still_report() -> None:
    """A health check that never answers becomes 503 after the per-backend timeout."""
    app = _app(CloudriftSettings(storage="memory", cache="memory"), timeout=0.2)
    with override_backends(app, cache=HangingBackend()), TestClient(app) as client:
        response = client.get("/health/ready")
    assert response.status_code == 503
    backends = response.json()["backends"]
    assert backends["cache.default"] == {
        "provider": "memory",
        "status": "down",
        "reason": "no answer within 0.2s",
    }
    assert backends["storage.default"]["status"] == "ok"


def test_a_raising_health_check_shows_only_the_error_class() -> None:
    """The reason names the exception type, never its text (which may hold credentials)."""
    app = _app(CloudriftSettings(cache="memory"))
    with override_backends(app, cache=RaisingBackend()), TestClient(app) as client:
        response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["backends"]["cache.default"]["reason"] == (
        "health check raised RuntimeError"
    )
    assert SECRET not in response.text
    assert "Traceback" not in response.text


def test_a_closed_backend_is_reported_down() -> None:
    """A backend closed under the app reports 'backend is closed'."""
    app = _app(CloudriftSettings(storage="memory"))
    with TestClient(app) as client:
        client.portal.call(app.state.cloudrift.storage().close)
        response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["backends"]["storage.default"]["reason"] == "backend is closed"


def test_ready_without_lifespan_is_503() -> None:
    """Not started means not ready."""
    app = _app(CloudriftSettings(storage="memory"))
    response = TestClient(app).get("/health/ready")
    assert response.status_code == 503
    assert response.json()["reason"] == "cloudrift lifespan is not running"


def test_probes_run_concurrently() -> None:
    """Each probe waits for all of them to start, which only concurrent probing allows."""
    started = 0
    everyone: asyncio.Event | None = None

    class Gate:
        async def health_check(self) -> bool:
            nonlocal started, everyone
            everyone = everyone or asyncio.Event()
            started += 1
            if started == 3:
                everyone.set()
            await everyone.wait()
            return True

    app = _app(CloudriftSettings(storage="memory", cache="memory", email="memory"), timeout=10)
    with (
        override_backends(app, storage=Gate(), cache=Gate(), email=Gate()),
        TestClient(app) as client,
    ):
        assert client.get("/health/ready").status_code == 200


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "2", True])
def test_health_router_rejects_a_bad_timeout(bad: Any) -> None:
    """A timeout that is not a positive number is refused when the router is made."""
    with pytest.raises(ConfigurationError, match="timeout"):
        health_router(timeout=bad)


def test_custom_prefix() -> None:
    """``health_router(prefix="/_status")`` mounts the endpoints there."""
    app = FastAPI(lifespan=cloudrift_lifespan(CloudriftSettings(storage="memory")))
    app.include_router(health_router(prefix="/_status"))
    with TestClient(app) as client:
        assert client.get("/_status/ready").status_code == 200
        assert client.get("/health/ready").status_code == 404
