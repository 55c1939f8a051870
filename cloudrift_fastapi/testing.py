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

from cloudrift.config import CloudriftSettings, SectionConfig
from cloudrift.core import categories
from cloudrift_fastapi.container import STATE_ATTR, slot_provider
from cloudrift_fastapi.deps import dependency
from cloudrift_fastapi.lifespan import SETTINGS_HOOK_ATTR


def memory_settings(**overrides: Any) -> CloudriftSettings:
    """Settings with every category on its ``memory`` provider (no service needed)."""
    values: dict[str, Any] = {spec.name: dict(spec.memory) for spec in categories.specs()}
    values.update(overrides)
    return CloudriftSettings(**values)


def memory_twin(settings: CloudriftSettings) -> CloudriftSettings:
    """``settings`` with every configured backend (same names, same default, same
    category fields such as the document ``database``) on its ``memory`` provider.

    The environment becomes ``development``: memory backends are refused in production.
    """
    sections: dict[str, Any] = {}
    for spec in categories.specs():
        section = settings.section(spec.name)
        if section is None:
            continue
        memory = {k: v for k, v in spec.memory.items() if k not in spec.fields}
        backends = {}
        for name, config in section.backends.items():
            own = {f: config.field(f) for f in spec.fields if config.field(f) is not None}
            if spec.memory_named is not None:
                own[spec.memory_named] = name
            backends[name] = {**memory, **own}
        sections[spec.name] = SectionConfig.model_validate(
            {"default": section.default, "backends": backends}
        )
    return settings.model_copy(update={"environment": "development", **sections})


def _slot_key(kind: str) -> str:
    """A slot key (``storage``, ``mongodb``, ``database``) or a category name (``document``)."""
    if kind in categories.slot_keys():
        return kind
    if kind in categories.names():
        return categories.get(kind).backend.key
    raise ValueError(
        f"unknown backend kind {kind!r}; use one of {', '.join(categories.slot_keys())}"
    )


@contextmanager
def override_backends(
    app: Any,
    *,
    named: Mapping[tuple[str, str], Any] | None = None,
    **backends: Any,
) -> Iterator[None]:
    """Serve the given objects instead of the configured backends, then restore them.

    Keywords replace each category's default: ``storage``, ``queue``, ``mongodb``,
    ``database``, ``cache``, ``email`` (every slot of :mod:`cloudrift.core.categories`);
    ``named={("storage", "avatars"): x}`` replaces named backends (``mongodb`` /
    ``database`` keys for document ones). Entered before startup, the replaced backends
    are never built; entered while the app runs, every dependency, ``Provide[...]`` and
    the health router see the replacement. The caller owns the objects passed in: they
    are not closed.
    """
    wanted: dict[tuple[str, str | None], Any] = {}
    for keyword, value in backends.items():
        if value is not None:
            wanted[(_slot_key(keyword), None)] = value
    for (keyword, name), value in (named or {}).items():
        wanted[(_slot_key(keyword), name)] = value
    if not wanted:
        raise ValueError("override_backends needs at least one backend to swap in")

    # 1. FastAPI's own override table: routes see it even without the lifespan, and a
    #    lifespan starting inside the block serves it instead of building the backend.
    saved_deps: dict[Any, Any] = {}
    missing = object()
    overrides = app.dependency_overrides
    for (key, which), replacement in wanted.items():
        dep = dependency(key, which)
        saved_deps[dep] = overrides.get(dep, missing)
        overrides[dep] = _returning(replacement)
    # 2. While running: override the container's providers.
    box = getattr(app.state, STATE_ATTR, None)
    overridden: list[Any] = []
    try:
        if box is not None:
            for (key, which), replacement in wanted.items():
                provider = slot_provider(box, key, which)
                provider.override(providers.Object(replacement))
                overridden.append(provider)
        yield
    finally:
        for provider in reversed(overridden):
            provider.reset_last_overriding()
        for dep, previous in saved_deps.items():
            if previous is missing:
                overrides.pop(dep, None)
            else:
                overrides[dep] = previous


@asynccontextmanager
async def memory_client(app: Any, *, base_url: str = "http://testserver") -> AsyncIterator[Any]:
    """Run ``app`` with every configured backend (named ones too) on a fresh ``memory``
    one and yield an ``httpx.AsyncClient`` talking to it in-process.

    The configured backends are never built, so the app's production settings need no
    service; a category's memory provider is needed only when the app configures that
    category (the document one needs ``cloudrift[embedded]``). The memory backends are
    closed afterwards; reach them through ``app.state.cloudrift``
    (``app.state.cloudrift.storage()``, ...) while the block runs.
    """
    import httpx

    saved = getattr(app.state, SETTINGS_HOOK_ATTR, None)
    setattr(app.state, SETTINGS_HOOK_ATTR, memory_twin)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                yield client
    finally:
        if saved is None:
            delattr(app.state, SETTINGS_HOOK_ATTR)
        else:
            setattr(app.state, SETTINGS_HOOK_ATTR, saved)


def _returning(value: Any) -> Any:
    async def override() -> Any:
        return value

    return override


__all__ = ["memory_client", "memory_settings", "memory_twin", "override_backends"]
