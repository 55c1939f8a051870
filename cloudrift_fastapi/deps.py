"""FastAPI dependencies: stable module-level callables reading ``request.app.state``.

Nothing needs wiring, and because each callable is one fixed object,
``app.dependency_overrides[get_storage_dep] = ...`` always matches::

    @app.get("/files/{key}")
    async def read(key: str, storage: Storage = Depends(get_storage_dep)) -> bytes: ...

    @app.get("/avatars/{key}")
    async def avatar(key: str, storage: StorageDep) -> bytes: ...

    avatars_dep = storage_dep("avatars")  # the same object on every call
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from dependency_injector import errors as di_errors
from fastapi import Depends
from starlette.requests import HTTPConnection

from cloudrift.cache import Cache
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.email import Email
from cloudrift.messaging import Queue
from cloudrift.storage import Storage
from cloudrift_fastapi.container import DEFAULT_ATTR, database_provider_for, provider_for
from cloudrift_fastapi.lifespan import STATE_ATTR

T = TypeVar("T")

NOT_STARTED = (
    "cloudrift's backends are not available: the cloudrift lifespan did not run. Create "
    "the app with FastAPI(lifespan=cloudrift_lifespan(settings)), and in tests enter the "
    "client (`with TestClient(app) as client:`; httpx's ASGITransport does not run "
    "lifespans, so wrap it in `async with app.router.lifespan_context(app):`)."
)


def container_of(conn: HTTPConnection) -> Any:
    """The running container of the request's app; a clear error when it is not running."""
    box = getattr(conn.app.state, STATE_ATTR, None)
    if box is None:
        raise ConfigurationError(NOT_STARTED)
    return box


def _not_configured(category: str) -> ConfigurationError:
    if category == "database":
        return ConfigurationError(
            "no database is configured: set document.database (e.g. "
            "CLOUDRIFT_DOCUMENT__DATABASE=app) to use get_database_dep"
        )
    return ConfigurationError(
        f"no {category} backend is configured; add a {category}: section to the settings "
        f"(e.g. CLOUDRIFT_{category.upper()}__PROVIDER=memory)"
    )


def _resolve(provider: Any, category: str) -> Any:
    try:
        return provider()
    except di_errors.Error:
        raise _not_configured(category) from None


async def get_storage_dep(request: HTTPConnection) -> Storage:
    """The default storage backend."""
    backend: Storage = _resolve(container_of(request).storage, "storage")
    return backend


async def get_queue_dep(request: HTTPConnection) -> Queue:
    """The default queue backend."""
    backend: Queue = _resolve(container_of(request).queue, "queue")
    return backend


async def get_mongodb_dep(request: HTTPConnection) -> Any:
    """The default document backend's native client (PyMongo async or Motor)."""
    return _resolve(container_of(request).mongodb, "document")


async def get_database_dep(request: HTTPConnection) -> Any:
    """The configured database (``document.database``) of the default document client."""
    return _resolve(container_of(request).database, "database")


async def get_cache_dep(request: HTTPConnection) -> Cache:
    """The default cache backend."""
    backend: Cache = _resolve(container_of(request).cache, "cache")
    return backend


async def get_email_dep(request: HTTPConnection) -> Email:
    """The default email backend."""
    backend: Email = _resolve(container_of(request).email, "email")
    return backend


_NAMED: dict[tuple[str, str], Callable[[HTTPConnection], Awaitable[Any]]] = {}


def _named(category: str, name: str) -> Callable[[HTTPConnection], Awaitable[Any]]:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a named {category} dependency needs a backend name")
    key = (category, name)
    found = _NAMED.get(key)
    if found is not None:
        return found

    if category == "database":

        async def dependency(request: HTTPConnection) -> Any:
            return _resolve(database_provider_for(container_of(request), name), "database")
    else:

        async def dependency(request: HTTPConnection) -> Any:
            return _resolve(provider_for(container_of(request), category, name), category)

    dependency.__name__ = f"{DEFAULT_ATTR.get(category, category)}_dep_{name}"
    dependency.__qualname__ = dependency.__name__
    dependency.__doc__ = f"The {category} backend named {name!r}."
    return _NAMED.setdefault(key, dependency)


def storage_dep(name: str) -> Callable[[HTTPConnection], Awaitable[Storage]]:
    """The dependency of the storage backend ``name`` (the same object every call)."""
    return _named("storage", name)


def queue_dep(name: str) -> Callable[[HTTPConnection], Awaitable[Queue]]:
    """The dependency of the queue backend ``name`` (the same object every call)."""
    return _named("queue", name)


def mongodb_dep(name: str) -> Callable[[HTTPConnection], Awaitable[Any]]:
    """The dependency of the document client ``name`` (the same object every call)."""
    return _named("document", name)


def database_dep(name: str) -> Callable[[HTTPConnection], Awaitable[Any]]:
    """The dependency of document backend ``name``'s database (the same object every call)."""
    return _named("database", name)


def cache_dep(name: str) -> Callable[[HTTPConnection], Awaitable[Cache]]:
    """The dependency of the cache backend ``name`` (the same object every call)."""
    return _named("cache", name)


def email_dep(name: str) -> Callable[[HTTPConnection], Awaitable[Email]]:
    """The dependency of the email backend ``name`` (the same object every call)."""
    return _named("email", name)


StorageDep = Annotated[Storage, Depends(get_storage_dep)]
QueueDep = Annotated[Queue, Depends(get_queue_dep)]
MongoDep = Annotated[Any, Depends(get_mongodb_dep)]
DatabaseDep = Annotated[Any, Depends(get_database_dep)]
CacheDep = Annotated[Cache, Depends(get_cache_dep)]
EmailDep = Annotated[Email, Depends(get_email_dep)]

#: The dependency callable of each category's default backend.
DEFAULT_DEPS: dict[str, Callable[[HTTPConnection], Awaitable[Any]]] = {
    "storage": get_storage_dep,
    "queue": get_queue_dep,
    "document": get_mongodb_dep,
    "database": get_database_dep,
    "cache": get_cache_dep,
    "email": get_email_dep,
}


def named_dep(category: str, name: str | None) -> Callable[[HTTPConnection], Awaitable[Any]]:
    """The dependency serving ``category``'s backend ``name`` (the default when None)."""
    return DEFAULT_DEPS[category] if name is None else _named(category, name)


__all__ = [
    "DEFAULT_DEPS",
    "NOT_STARTED",
    "CacheDep",
    "DatabaseDep",
    "EmailDep",
    "MongoDep",
    "QueueDep",
    "StorageDep",
    "cache_dep",
    "container_of",
    "database_dep",
    "email_dep",
    "get_cache_dep",
    "get_database_dep",
    "get_email_dep",
    "get_mongodb_dep",
    "get_queue_dep",
    "get_storage_dep",
    "mongodb_dep",
    "named_dep",
    "queue_dep",
    "storage_dep",
]
