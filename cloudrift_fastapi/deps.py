"""FastAPI dependencies: stable module-level callables reading ``request.app.state``.

Nothing needs wiring, and because each callable is one fixed object,
``app.dependency_overrides[get_storage_dep] = ...`` always matches::

    @app.get("/files/{key}")
    async def read(key: str, storage: Storage = Depends(get_storage_dep)) -> bytes: ...

    @app.get("/avatars/{key}")
    async def avatar(key: str, storage: StorageDep) -> bytes: ...

    avatars_dep = storage_dep("avatars")  # the same object on every call

Every category in :mod:`cloudrift.core.categories` gets its three names (``get_<x>_dep``,
``<x>_dep(name)``, ``<X>Dep``) from :func:`dependency`; the built-in ones are spelled out
below so type checkers see them, any other is served by this module's ``__getattr__``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, TypeVar

from dependency_injector import errors as di_errors
from fastapi import Depends
from starlette.requests import HTTPConnection

from cloudrift.cache import Cache
from cloudrift.core import categories
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.email import Email
from cloudrift.messaging import Queue, Topic
from cloudrift.storage import Storage
from cloudrift_fastapi.container import STATE_ATTR, UNRESOLVED, served_provider

T = TypeVar("T")
Dependency = Callable[[HTTPConnection], Awaitable[T]]

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


def _not_configured(key: str) -> ConfigurationError:
    spec, slot = categories.slot(key)
    if slot.not_configured is not None:
        return ConfigurationError(slot.not_configured)
    return ConfigurationError(
        f"no {spec.name} backend is configured; add a {spec.name}: section to the settings "
        f"(e.g. CLOUDRIFT_{spec.name.upper()}__PROVIDER=memory)"
    )


# (slot key, backend name or None for the default) -> its dependency, and back.
_DEPS: dict[tuple[str, str | None], Dependency[Any]] = {}
_SLOT_OF: dict[Dependency[Any], tuple[str, str | None]] = {}


def dependency(key: str, name: str | None = None) -> Dependency[Any]:
    """The dependency serving slot ``key`` (``"storage"``, ``"mongodb"``, ``"database"``...)
    of backend ``name`` (the default when None): the same object on every call."""
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigurationError(f"a named {key} dependency needs a backend name")
    found = _DEPS.get((key, name))
    if found is not None:
        return found
    spec, slot = categories.slot(key)  # refuses an unknown key, listing the valid ones

    # Runs on every request: the container's provider for (key, name) is remembered
    # (served_provider), the provider itself is still called each time, so overrides
    # (provider.override(...)) are honoured at once.
    async def serve(request: HTTPConnection) -> Any:
        box = getattr(request.app.state, STATE_ATTR, None)
        if box is None:
            raise ConfigurationError(NOT_STARTED)
        provider = served_provider(box, key, name)
        try:
            return provider()
        except di_errors.Error:
            raise _not_configured(key) from None

    if name is None:
        serve.__name__ = slot.dependency
        serve.__doc__ = f"The default {spec.name} backend's {key}."
    else:
        serve.__name__ = f"{key}_dep_{name}"
        serve.__doc__ = f"The {key} of the {spec.name} backend named {name!r}."
    serve.__qualname__ = serve.__name__
    _DEPS[(key, name)] = serve
    _SLOT_OF[serve] = (key, name)
    return serve


def named_dependency(key: str) -> Callable[[str], Dependency[Any]]:
    """The factory of slot ``key``'s per-name dependencies (``storage_dep``)."""
    spec, slot = categories.slot(key)

    def factory(name: str) -> Dependency[Any]:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a named {spec.name} dependency needs a backend name")
        return dependency(key, name)

    factory.__name__ = factory.__qualname__ = slot.named_dependency
    factory.__doc__ = f"The dependency of the {spec.name} backend ``name`` (one object per name)."
    return factory


def slot_of(dep: Any) -> tuple[str, str | None] | None:
    """``(slot key, name)`` served by one of these dependencies, else None."""
    try:
        return _SLOT_OF.get(dep)
    except TypeError:  # an unhashable key in someone's override table
        return None


async def resolve_override(override: Callable[..., Any]) -> Any:
    """What an ``app.dependency_overrides`` entry hands out, when that needs no request.

    An override taking no parameters (``lambda: fake``, ``async def f(): return fake``)
    is called; one that takes parameters or yields is only known per request:
    :data:`~cloudrift_fastapi.container.UNRESOLVED`.
    """
    if inspect.isgeneratorfunction(override) or inspect.isasyncgenfunction(override):
        return UNRESOLVED
    try:
        if inspect.signature(override).parameters:
            return UNRESOLVED
    except (TypeError, ValueError):
        return UNRESOLVED
    value = override()
    return await value if inspect.isawaitable(value) else value


def _annotated(key: str) -> Any:
    _, slot = categories.slot(key)
    interface = categories.load(slot.interface) if slot.interface else Any
    return Annotated[interface, Depends(dependency(key))]


get_storage_dep: Dependency[Storage] = dependency("storage")
get_queue_dep: Dependency[Queue] = dependency("queue")
get_topic_dep: Dependency[Topic] = dependency("topic")
get_subscription_dep: Dependency[Queue] = dependency("subscription")
get_mongodb_dep: Dependency[Any] = dependency("mongodb")
get_database_dep: Dependency[Any] = dependency("database")
get_cache_dep: Dependency[Cache] = dependency("cache")
get_email_dep: Dependency[Email] = dependency("email")

storage_dep: Callable[[str], Dependency[Storage]] = named_dependency("storage")
queue_dep: Callable[[str], Dependency[Queue]] = named_dependency("queue")
topic_dep: Callable[[str], Dependency[Topic]] = named_dependency("topic")
subscription_dep: Callable[[str], Dependency[Queue]] = named_dependency("subscription")
mongodb_dep: Callable[[str], Dependency[Any]] = named_dependency("mongodb")
database_dep: Callable[[str], Dependency[Any]] = named_dependency("database")
cache_dep: Callable[[str], Dependency[Cache]] = named_dependency("cache")
email_dep: Callable[[str], Dependency[Email]] = named_dependency("email")

StorageDep = Annotated[Storage, Depends(get_storage_dep)]
QueueDep = Annotated[Queue, Depends(get_queue_dep)]
TopicDep = Annotated[Topic, Depends(get_topic_dep)]
SubscriptionDep = Annotated[Queue, Depends(get_subscription_dep)]
MongoDep = Annotated[Any, Depends(get_mongodb_dep)]
DatabaseDep = Annotated[Any, Depends(get_database_dep)]
CacheDep = Annotated[Cache, Depends(get_cache_dep)]
EmailDep = Annotated[Email, Depends(get_email_dep)]

#: The dependency callable of each category's default backend (and ``database``).
DEFAULT_DEPS: Final[dict[str, Dependency[Any]]] = {
    **{spec.name: dependency(spec.backend.key) for spec in categories.specs()},
    **{view.key: dependency(view.key) for spec in categories.specs() for view in spec.views},
}


def named_dep(category: str, name: str | None) -> Dependency[Any]:
    """The dependency serving ``category``'s backend ``name`` (the default when None);
    ``category`` may also be a slot key (``"mongodb"``, ``"database"``)."""
    key = categories.get(category).backend.key if category in categories.names() else category
    return dependency(key, name)


def __getattr__(name: str) -> Any:
    # The names of categories without a line above (registered by a plugin).
    for spec in categories.specs():
        for slot in spec.slots:
            if name == slot.dependency:
                return dependency(slot.key)
            if name == slot.named_dependency:
                return named_dependency(slot.key)
            if name == slot.alias:
                return _annotated(slot.key)
    raise AttributeError(f"module 'cloudrift_fastapi.deps' has no attribute {name!r}")


__all__ = [
    "DEFAULT_DEPS",
    "NOT_STARTED",
    "CacheDep",
    "DatabaseDep",
    "EmailDep",
    "MongoDep",
    "QueueDep",
    "StorageDep",
    "SubscriptionDep",
    "TopicDep",
    "cache_dep",
    "container_of",
    "database_dep",
    "dependency",
    "email_dep",
    "get_cache_dep",
    "get_database_dep",
    "get_email_dep",
    "get_mongodb_dep",
    "get_queue_dep",
    "get_storage_dep",
    "get_subscription_dep",
    "get_topic_dep",
    "mongodb_dep",
    "named_dep",
    "named_dependency",
    "queue_dep",
    "resolve_override",
    "slot_of",
    "storage_dep",
    "subscription_dep",
    "topic_dep",
]
