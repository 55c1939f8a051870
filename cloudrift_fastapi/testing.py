"""Test helpers: swap backends in one line, and settings that need no service.

::

    with override_backends(app, storage=get_storage("memory")):
        with TestClient(app) as client:
            ...

``memory_client(app)`` runs an app on memory backends and yields an httpx client. The
pytest fixtures (``cloudrift_memory_settings``, ``cloudrift_memory_client``,
``cloudrift_s3_storage``, ``cloudrift_redis_cache``, ``cloudrift_smtp_email``, ...) come
from the plugin in
:mod:`cloudrift_fastapi.pytest_plugin`, loaded automatically once cloudrift is installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from dependency_injector import providers

from cloudrift.config import CloudriftSettings
from cloudrift_fastapi.container import database_provider_for, provider_for
from cloudrift_fastapi.deps import named_dep
from cloudrift_fastapi.lifespan import PENDING_ATTR, STATE_ATTR

_KEYWORDS = {
    "storage": "storage",
    "queue": "queue",
    "mongodb": "document",
    "database": "database",
    "cache": "cache",
    "email": "email",
}


def memory_settings(**overrides: Any) -> CloudriftSettings:
    """Settings with every category on its ``memory`` provider (no service needed)."""
    values: dict[str, Any] = {
        "storage": {"provider": "memory"},
        "queue": {"provider": "memory"},
        "document": {"provider": "memory", "database": "test"},
        "cache": {"provider": "memory"},
        "email": {"provider": "memory", "default_from": "noreply@example.test"},
    }
    values.update(overrides)
    return CloudriftSettings(**values)


@contextmanager
def override_backends(
    app: Any,
    *,
    storage: Any = None,
    queue: Any = None,
    mongodb: Any = None,
    database: Any = None,
    cache: Any = None,
    email: Any = None,
    named: Mapping[tuple[str, str], Any] | None = None,
) -> Iterator[None]:
    """Serve the given objects instead of the configured backends, then restore them.

    Keywords replace each category's default; ``named={("storage", "avatars"): x}``
    replaces named backends (``mongodb`` / ``database`` keys for document ones). Works
    before startup (the replaced backend is then never built) and while the app runs
    (every dependency, ``Provide[...]`` and the health router see the replacement).
    The caller owns the objects passed in: they are not closed.
    """
    wanted: dict[tuple[str, str | None], Any] = {}
    for keyword, value in (
        ("storage", storage),
        ("queue", queue),
        ("mongodb", mongodb),
        ("database", database),
        ("cache", cache),
        ("email", email),
    ):
        if value is not None:
            wanted[(_KEYWORDS[keyword], None)] = value
    for (keyword, name), value in (named or {}).items():
        if keyword not in _KEYWORDS:
            raise ValueError(f"unknown backend kind {keyword!r}; use one of {', '.join(_KEYWORDS)}")
        wanted[(_KEYWORDS[keyword], name)] = value
    if not wanted:
        raise ValueError("override_backends needs at least one backend to swap in")

    # 1. FastAPI's own override table: works even without the lifespan.
    saved_deps: dict[Any, Any] = {}
    missing = object()
    overrides = app.dependency_overrides
    for (kind, which), replacement in wanted.items():
        dep = named_dep(kind, which)
        saved_deps[dep] = overrides.get(dep, missing)
        overrides[dep] = _returning(replacement)
    # 2. Before startup: the lifespan serves these instead of building the backends.
    saved_pending = getattr(app.state, PENDING_ATTR, None)
    setattr(app.state, PENDING_ATTR, {**(saved_pending or {}), **wanted})
    # 3. While running: override the container's providers.
    box = getattr(app.state, STATE_ATTR, None)
    overridden: list[Any] = []
    try:
        if box is not None:
            for (kind, which), replacement in wanted.items():
                if kind == "database":
                    provider = database_provider_for(box, which)
                else:
                    provider = provider_for(box, kind, which)
                provider.override(providers.Object(replacement))
                overridden.append(provider)
        yield
    finally:
        for provider in reversed(overridden):
            provider.reset_last_overriding()
        if saved_pending is None:
            if hasattr(app.state, PENDING_ATTR):
                delattr(app.state, PENDING_ATTR)
        else:
            setattr(app.state, PENDING_ATTR, saved_pending)
        for dep, previous in saved_deps.items():
            if previous is missing:
                overrides.pop(dep, None)
            else:
                overrides[dep] = previous


@asynccontextmanager
async def memory_client(app: Any, *, base_url: str = "http://testserver") -> AsyncIterator[Any]:
    """Run ``app`` with every default backend on a fresh ``memory`` one and yield an
    ``httpx.AsyncClient`` talking to it in-process.

    The configured backends are never built, so the app's production settings need no
    service. The memory backends are closed afterwards; reach them through
    ``app.state.cloudrift`` (``app.state.cloudrift.storage()``, ...) while the block runs.
    """
    import httpx

    from cloudrift.cache import get_cache
    from cloudrift.document import aclose_client, get_mongodb
    from cloudrift.email import get_email
    from cloudrift.messaging import get_queue
    from cloudrift.storage import get_storage

    backends: dict[str, Any] = {
        "storage": get_storage("memory"),
        "queue": get_queue("memory"),
        "cache": get_cache("memory"),
        "email": get_email("memory", default_from="noreply@example.test"),
    }
    mongodb = get_mongodb("memory")
    try:
        with override_backends(app, mongodb=mongodb, **backends):
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                    yield client
    finally:
        for backend in backends.values():
            await backend.close()
        await aclose_client(mongodb)


def _returning(value: Any) -> Any:
    async def override() -> Any:
        return value

    return override


__all__ = ["memory_client", "memory_settings", "override_backends"]
