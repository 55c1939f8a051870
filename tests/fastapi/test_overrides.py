"""Test overrides in three styles; none leaks past its block or its test."""

# FastAPI's documented spelling puts Depends(...) in parameter defaults.
# ruff: noqa: B008

from __future__ import annotations

from typing import Any

import pytest
from dependency_injector import providers
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import ConfigurationError, ObjectNotFoundError
from cloudrift.storage import Storage, get_storage
from cloudrift_fastapi import (
    StorageDep,
    cloudrift_lifespan,
    get_database_dep,
    get_storage_dep,
    health_router,
    override_backends,
    storage_dep,
)

# A storage nobody can reach: overriding it must mean it is never contacted.
UNREACHABLE = {
    "provider": "s3",
    "bucket": "never",
    "endpoint_url": "http://127.0.0.1:9",
    "region": "us-east-1",
    "aws_access_key_id": "AKIATESTNOTREAL",
    "aws_secret_access_key": "not-a-real-secret",
}


def _app(settings: CloudriftSettings) -> FastAPI:
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    app.include_router(health_router(timeout=5))

    @app.get("/kind")
    async def kind(storage: Storage = Depends(get_storage_dep)) -> str:
        return type(storage).__name__

    @app.get("/read/{key}")
    async def read(key: str, storage: StorageDep) -> str:
        return (await storage.download(key)).decode()

    return app


async def _seeded(data: bytes = b"fake") -> Storage:
    storage = get_storage("memory")
    await storage.upload("k", data)
    return storage


def test_style_one_dependency_overrides() -> None:
    """``app.dependency_overrides[get_storage_dep]`` replaces the backend for routes."""
    app = _app(CloudriftSettings(storage="memory"))
    with TestClient(app) as client:
        fake = client.portal.call(_seeded)
        app.dependency_overrides[get_storage_dep] = lambda: fake
        try:
            assert client.get("/read/k").text == '"fake"'
        finally:
            app.dependency_overrides.clear()
        with pytest.raises(ObjectNotFoundError):
            client.get("/read/k")  # the real, empty backend again


def test_override_backends_before_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    """``override_backends`` set before startup replaces the backend; it is never built."""
    built: list[tuple[str, str | None]] = []
    real = CloudriftSettings.open_backend

    def counting(self: CloudriftSettings, category: str, name: str | None = None) -> Any:
        built.append((category, name))
        return real(self, category, name)

    monkeypatch.setattr(CloudriftSettings, "open_backend", counting)
    app = _app(CloudriftSettings(storage=UNREACHABLE, cache="memory", verify_on_startup=True))
    fake = get_storage("memory")
    with override_backends(app, storage=fake), TestClient(app) as client:
        assert client.get("/kind").json() == "MemoryStorage"
        assert app.state.cloudrift.storage() is fake
        assert client.get("/health/ready").status_code == 200
    assert built == [("cache", "default")]
    assert not fake.closed  # the caller owns what it passed in


def test_override_backends_while_running_then_restores() -> None:
    """Inside the block every consumer sees the replacement; after it, the original again."""
    app = _app(CloudriftSettings(storage="memory"))
    with TestClient(app) as client:
        original = app.state.cloudrift.storage()
        client.portal.call(original.upload, "k", b"original")
        fake = client.portal.call(_seeded)
        with override_backends(app, storage=fake):
            assert client.get("/read/k").json() == "fake"
            assert app.state.cloudrift.storage() is fake
        assert client.get("/read/k").json() == "original"
        assert app.state.cloudrift.storage() is original
    assert app.dependency_overrides == {}
    assert not hasattr(app.state, "cloudrift_pending_overrides")


def test_style_three_container_override() -> None:
    """``container.storage.override(providers.Object(x))`` is dependency-injector's way."""
    app = _app(CloudriftSettings(storage="memory"))
    with TestClient(app) as client:
        fake = client.portal.call(_seeded, b"from-container")
        with app.state.cloudrift.storage.override(providers.Object(fake)):
            assert client.get("/read/k").json() == "from-container"
        assert client.get("/kind").json() == "MemoryStorage"
        assert app.state.cloudrift.storage() is not fake


def test_named_backend_override() -> None:
    """``named={("storage", "avatars"): x}`` replaces only that named backend."""
    settings = CloudriftSettings(
        storage={
            "default": "main",
            "backends": {"main": {"provider": "memory"}, "avatars": UNREACHABLE},
        }
    )
    app = _app(settings)

    @app.get("/avatar")
    async def avatar(avatars: Storage = Depends(storage_dep("avatars"))) -> str:
        return (await avatars.download("k")).decode()

    fake = get_storage("memory")
    with override_backends(app, named={("storage", "avatars"): fake}), TestClient(app) as client:
        client.portal.call(fake.upload, "k", b"avatar")
        assert client.get("/avatar").json() == "avatar"
        assert type(app.state.cloudrift.storage()).__name__ == "MemoryStorage"


def test_override_without_lifespan_uses_dependency_overrides() -> None:
    """Even an app whose lifespan never ran serves the override to routes."""
    app = _app(CloudriftSettings(storage="memory"))
    fake = get_storage("memory")
    with override_backends(app, storage=fake):
        assert TestClient(app).get("/kind").json() == "MemoryStorage"
    with pytest.raises(ConfigurationError, match="lifespan did not run"):
        TestClient(app).get("/kind")


def test_override_backends_refuses_nothing_and_unknown_kinds() -> None:
    """An empty override or an unknown kind is a mistake, reported at once."""
    app = _app(CloudriftSettings(storage="memory"))
    with pytest.raises(ValueError, match="at least one backend"), override_backends(app):
        pass
    with (
        pytest.raises(ValueError, match="unknown backend kind 'blob'"),
        override_backends(app, named={("blob", "x"): object()}),
    ):
        pass
    assert app.dependency_overrides == {}


def test_override_does_not_outlive_its_block() -> None:
    """After the block, the next startup builds and serves the real backend again."""
    app = _app(CloudriftSettings(storage="memory"))
    fake = get_storage("memory")
    with override_backends(app, storage=fake), TestClient(app):
        assert app.state.cloudrift.storage() is fake
    with TestClient(app):
        assert app.state.cloudrift.storage() is not fake
    assert app.dependency_overrides == {}


def test_override_of_an_unconfigured_named_backend_is_reported() -> None:
    """Overriding a backend name the settings do not have fails startup naming it."""
    app = _app(CloudriftSettings(storage="memory"))
    fake = get_storage("memory")
    with (
        override_backends(app, named={("storage", "avatar"): fake}),
        pytest.raises(ConfigurationError, match="no storage backend named 'avatar'"),
        TestClient(app),
    ):
        pass


def test_document_override_serves_client_and_database() -> None:
    """A replacement document client also provides the configured database from it."""
    from cloudrift.document import get_mongodb

    app = _app(
        CloudriftSettings(
            document={"provider": "mongodb", "uri": "mongodb://db:1/", "database": "app"}
        )
    )

    @app.get("/db")
    async def db(database: Any = Depends(get_database_dep)) -> str:
        return str(database.name)

    fake = get_mongodb("memory")
    with override_backends(app, mongodb=fake), TestClient(app) as client:
        assert client.get("/db").json() == "app"
        assert app.state.cloudrift.mongodb() is fake


def _recording_builds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    built: list[tuple[str, str | None]] = []
    real = CloudriftSettings.open_backend

    def counting(self: CloudriftSettings, category: str, name: str | None = None) -> Any:
        built.append((category, name))
        return real(self, category, name)

    monkeypatch.setattr(CloudriftSettings, "open_backend", counting)
    return built


def test_dependency_override_before_startup_is_served_and_never_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An app configured for unreachable S3 whose storage dependency is overridden to
    memory starts (even verifying) and is ready, reporting the memory provider."""
    built = _recording_builds(monkeypatch)
    app = _app(CloudriftSettings(storage=UNREACHABLE, verify_on_startup=True))
    fake = get_storage("memory")
    app.dependency_overrides[get_storage_dep] = lambda: fake
    with TestClient(app) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["backends"] == {
            "storage.default": {"provider": "memory", "status": "ok"}
        }
        assert client.get("/kind").json() == "MemoryStorage"
        assert app.state.cloudrift.storage() is fake
    assert built == []
    assert not fake.closed  # the test owns what it passed in


def test_health_reports_the_override_provider_not_the_configured_one() -> None:
    """With ``override_backends``, health names the replacement's provider (memory), not s3."""
    app = _app(CloudriftSettings(storage=UNREACHABLE))
    with override_backends(app, storage=get_storage("memory")), TestClient(app) as client:
        ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["backends"]["storage.default"] == {"provider": "memory", "status": "ok"}


def test_overridden_categories_the_settings_lack_appear_in_health() -> None:
    """A cache (override_backends) and an email (dependency_overrides) that the settings
    do not configure are probed and reported like configured ones."""
    from cloudrift.cache import get_cache
    from cloudrift.email import get_email
    from cloudrift_fastapi import get_email_dep

    app = _app(CloudriftSettings(storage="memory"))
    email = get_email("memory", default_from="a@example.test")
    app.dependency_overrides[get_email_dep] = lambda: email
    with override_backends(app, cache=get_cache("memory")), TestClient(app) as client:
        ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["backends"] == {
        "storage.default": {"provider": "memory", "status": "ok"},
        "cache.default": {"provider": "memory", "status": "ok"},
        "email.default": {"provider": "memory", "status": "ok"},
    }


def test_health_checks_an_override_set_while_running() -> None:
    """An override installed after startup is what health probes (a closed one is down)."""
    app = _app(CloudriftSettings(storage="memory"))
    closed = get_storage("memory")
    with TestClient(app) as client:
        client.portal.call(closed.close)
        app.dependency_overrides[get_storage_dep] = lambda: closed
        try:
            down = client.get("/health/ready")
        finally:
            app.dependency_overrides.clear()
        assert client.get("/health/ready").status_code == 200
    assert down.status_code == 503
    assert down.json()["backends"]["storage.default"]["reason"] == "backend is closed"


def test_a_per_request_override_is_not_built_and_not_probed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An override that takes the request cannot be probed: not built, reported skipped."""
    built = _recording_builds(monkeypatch)
    app = _app(CloudriftSettings(storage=UNREACHABLE))
    fake = get_storage("memory")

    async def per_request(request: Request) -> Storage:
        return fake

    app.dependency_overrides[get_storage_dep] = per_request
    with TestClient(app) as client:
        assert client.get("/kind").json() == "MemoryStorage"
        ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["backends"]["storage.default"] == {
        "provider": "overridden",
        "status": "skipped",
        "reason": "overridden per request; not checked",
    }
    assert built == []


def test_health_names_an_embedded_document_client_standing_in_for_mongodb() -> None:
    """A native client carries no provider attribute; the embedded engine is still 'memory'."""
    from cloudrift.document import get_mongodb

    app = _app(CloudriftSettings(document={"provider": "mongodb", "uri": "mongodb://db:1/"}))
    with override_backends(app, mongodb=get_mongodb("memory")), TestClient(app) as client:
        ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["backends"] == {"document.default": {"provider": "memory", "status": "ok"}}
