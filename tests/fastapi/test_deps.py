"""Dependencies: stable callables, Annotated aliases, named backends, clear errors."""

# FastAPI's documented spelling puts Depends(...) in parameter defaults.
# ruff: noqa: B008

from __future__ import annotations

import sys
from typing import Any

import pytest
from dependency_injector import providers
from dependency_injector.wiring import Provide, inject
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from cloudrift.cache import Cache
from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.email import Email
from cloudrift.messaging import Queue
from cloudrift.storage import Storage
from cloudrift_fastapi import (
    CacheDep,
    Container,
    DatabaseDep,
    EmailDep,
    MongoDep,
    QueueDep,
    StorageDep,
    cache_dep,
    cloudrift_lifespan,
    database_dep,
    email_dep,
    get_cache_dep,
    get_database_dep,
    get_email_dep,
    get_mongodb_dep,
    get_queue_dep,
    get_storage_dep,
    memory_settings,
    mongodb_dep,
    queue_dep,
    storage_dep,
)


def _app(settings: CloudriftSettings | None = None, **kwargs: Any) -> FastAPI:
    return FastAPI(lifespan=cloudrift_lifespan(settings or memory_settings(), **kwargs))


def test_design_card_spelling_with_depends() -> None:
    """``storage: Storage = Depends(get_storage_dep)`` works for every category."""
    app = _app()

    @app.post("/all")
    async def use_all(
        storage: Storage = Depends(get_storage_dep),
        queue: Queue = Depends(get_queue_dep),
        mongodb: Any = Depends(get_mongodb_dep),
        database: Any = Depends(get_database_dep),
        cache: Cache = Depends(get_cache_dep),
        email: Email = Depends(get_email_dep),
    ) -> dict[str, Any]:
        await storage.upload("a", b"1")
        await queue.send({"x": 1})
        await database["users"].insert_one({"name": "Alice"})
        await cache.set("k", b"v")
        await email.send("bob@example.test", "hi", body_text="hi")
        return {
            "storage": await storage.exists("a"),
            "queue": len(await queue.receive(max_messages=1, wait_time=0)),
            "same_db": database.name == "test" and mongodb["test"].name == "test",
            "users": await mongodb["test"]["users"].count_documents({}),
            "cache": (await cache.get("k") or b"").decode(),
            "email": len(email.outbox),  # type: ignore[attr-defined]
        }

    with TestClient(app) as client:
        assert client.post("/all").json() == {
            "storage": True,
            "queue": 1,
            "same_db": True,
            "users": 1,
            "cache": "v",
            "email": 1,
        }


def test_annotated_aliases_resolve_to_the_same_backends() -> None:
    """StorageDep, QueueDep, MongoDep, DatabaseDep, CacheDep, EmailDep give the app's backends."""
    app = _app()

    @app.get("/ids")
    async def ids(
        storage: StorageDep,
        queue: QueueDep,
        mongodb: MongoDep,
        database: DatabaseDep,
        cache: CacheDep,
        email: EmailDep,
    ) -> list[int]:
        return [id(storage), id(queue), id(mongodb), id(database), id(cache), id(email)]

    with TestClient(app) as client:
        box = app.state.cloudrift
        expected = [
            id(box.storage()),
            id(box.queue()),
            id(box.mongodb()),
            id(box.database()),
            id(box.cache()),
            id(box.email()),
        ]
        assert client.get("/ids").json() == expected


def test_named_dependencies_are_cached_callables() -> None:
    """``storage_dep("avatars")`` is the same object every call, so it can be overridden."""
    for factory in (storage_dep, queue_dep, mongodb_dep, database_dep, cache_dep, email_dep):
        assert factory("avatars") is factory("avatars")
        assert factory("avatars") is not factory("other")
    assert storage_dep("avatars") is not queue_dep("avatars")


def test_named_dependency_serves_the_named_backend() -> None:
    """A named dependency gives that backend; the default's name gives the default."""
    settings = memory_settings(
        storage={
            "default": "primary",
            "backends": {"primary": {"provider": "memory"}, "avatars": {"provider": "memory"}},
        }
    )
    app = _app(settings)

    @app.put("/avatars/{key}")
    async def put(key: str, avatars: Storage = Depends(storage_dep("avatars"))) -> None:
        await avatars.upload(key, b"png")

    @app.get("/where/{key}")
    async def where(
        key: str,
        primary: StorageDep,
        avatars: Storage = Depends(storage_dep("avatars")),
        by_name: Storage = Depends(storage_dep("primary")),
    ) -> list[bool]:
        return [await primary.exists(key), await avatars.exists(key), primary is by_name]

    with TestClient(app) as client:
        client.put("/avatars/me.png")
        assert client.get("/where/me.png").json() == [False, True, True]


def test_unknown_named_backend_is_a_clear_error() -> None:
    """Asking for a name that is not configured lists the configured ones."""
    app = _app()

    @app.get("/x")
    async def x(store: Storage = Depends(storage_dep("nope"))) -> None:
        return None

    with (
        TestClient(app) as client,
        pytest.raises(ConfigurationError, match="no storage backend named 'nope'"),
    ):
        client.get("/x")


def test_dependency_without_lifespan_says_the_lifespan_did_not_run() -> None:
    """``TestClient(app)`` without ``with`` gets an error naming the cause and the fix."""
    app = _app()

    @app.get("/x")
    async def x(storage: StorageDep) -> None:
        return None

    client = TestClient(app)
    with pytest.raises(ConfigurationError, match="the cloudrift lifespan did not run") as caught:
        client.get("/x")
    assert "with TestClient(app)" in caught.value.message


def test_unconfigured_category_is_a_clear_error() -> None:
    """Using a category the settings do not configure says how to configure it."""
    app = _app(CloudriftSettings(storage="memory"))

    @app.get("/x")
    async def x(queue: QueueDep) -> None:
        return None

    with (
        TestClient(app) as client,
        pytest.raises(ConfigurationError, match="no queue backend is configured"),
    ):
        client.get("/x")


def test_database_dependency_needs_a_database_name() -> None:
    """get_database_dep without ``document.database`` says which setting to add."""
    app = _app(CloudriftSettings(document={"provider": "memory"}))

    @app.get("/x")
    async def x(db: DatabaseDep) -> None:
        return None

    with (
        TestClient(app) as client,
        pytest.raises(ConfigurationError, match="CLOUDRIFT_DOCUMENT__DATABASE"),
    ):
        client.get("/x")


def test_named_document_backend_has_its_own_database() -> None:
    """``database_dep("audit")`` is the named client's configured database."""
    settings = CloudriftSettings(
        document={
            "default": "main",
            "backends": {
                "main": {"provider": "memory", "database": "app"},
                "audit": {"provider": "memory", "database": "audit_log"},
            },
        }
    )
    app = _app(settings)

    @app.get("/dbs")
    async def dbs(main: DatabaseDep, audit: Any = Depends(database_dep("audit"))) -> list[str]:
        return [main.name, audit.name]

    with TestClient(app) as client:
        assert client.get("/dbs").json() == ["app", "audit_log"]


def test_backends_are_app_scoped_across_a_thousand_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,000 requests see one backend instance, built once."""
    built: list[Any] = []
    real = CloudriftSettings.open_backend

    def counting(self: CloudriftSettings, category: str, name: str | None = None) -> Any:
        backend = real(self, category, name)
        built.append(backend)
        return backend

    monkeypatch.setattr(CloudriftSettings, "open_backend", counting)
    app = _app(CloudriftSettings(cache="memory"))

    @app.get("/hit")
    async def hit(cache: CacheDep) -> int:
        await cache.incr("hits")
        return id(cache)

    with TestClient(app) as client:
        seen = {client.get("/hit").json() for _ in range(1000)}
        hits = client.portal.call(app.state.cloudrift.cache().get, "hits")
    assert len(built) == 1
    assert seen == {id(built[0])}
    assert hits == b"1000"


@inject
async def read_with_provide(
    key: str, storage: Storage = Depends(Provide[Container.storage])
) -> bytes:
    """A dependency-injector style endpoint body (wired below)."""
    return await storage.download(key)


def test_inject_and_provide_work_when_wired() -> None:
    """``@inject`` + ``Provide[Container.storage]`` gets the running app's backend."""
    app = _app(CloudriftSettings(storage="memory"), wire=[sys.modules[__name__]])

    @app.get("/doc/{key}")
    @inject
    async def doc(key: str, storage: Storage = Depends(Provide[Container.storage])) -> str:
        return (await storage.download(key)).decode()

    with TestClient(app) as client:
        client.portal.call(app.state.cloudrift.storage().upload, "k", b"provided")
        assert client.get("/doc/k").text == '"provided"'
        assert client.portal.call(read_with_provide, "k") == b"provided"


class AppContainer(Container):
    """An application's own container extending cloudrift's providers."""

    greeting = providers.Object("hello")


@inject
async def greet_and_count(
    greeting: str = Depends(Provide[AppContainer.greeting]),
    storage: Storage = Depends(Provide[AppContainer.storage]),
) -> str:
    """An endpoint body using both the app's own provider and cloudrift's."""
    return f"{greeting} {len(await storage.list())}"


def test_an_app_container_subclass_is_filled_in() -> None:
    """``container=`` takes the app's own subclass; its providers and ours both inject."""
    box = AppContainer()
    app = _app(CloudriftSettings(storage="memory"), container=box, wire=[sys.modules[__name__]])
    with TestClient(app) as client:
        assert app.state.cloudrift is box
        client.portal.call(box.storage().upload, "a", b"1")
        assert client.portal.call(greet_and_count) == "hello 1"


def test_a_reused_container_serves_the_new_settings_defaults() -> None:
    """A container run again with settings naming another default serves the new backends."""
    box = Container()
    first = memory_settings(
        storage={
            "default": "primary",
            "backends": {"primary": {"provider": "memory"}, "avatars": {"provider": "memory"}},
        }
    )
    second = memory_settings(
        storage={"default": "avatars", "backends": {"avatars": {"provider": "memory"}}}
    )
    seen: list[int] = []
    for settings in (first, second):
        app = _app(settings, container=box)

        @app.get("/ids")
        async def ids(
            default: StorageDep, avatars: Storage = Depends(storage_dep("avatars"))
        ) -> list[int]:
            return [id(default), id(avatars)]

        with TestClient(app) as client:
            got = client.get("/ids").json()
            assert got[1] == id(box.storage__avatars() if settings is first else box.storage())
            assert not (settings is second and got[0] != got[1])
            seen.extend(got)
    assert len(set(seen)) == 3  # primary, the first avatars, the second run's avatars


def test_a_provider_replaced_on_the_container_is_served() -> None:
    """Replacing the container's provider after requests were served changes what they get."""
    app = _app()
    fake = object()

    @app.get("/which")
    async def which(storage: StorageDep) -> bool:
        return storage is fake

    with TestClient(app) as client:
        assert client.get("/which").json() is False
        app.state.cloudrift.storage = providers.Object(fake)
        assert client.get("/which").json() is True
