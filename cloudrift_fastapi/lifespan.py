"""``cloudrift_lifespan``: build every backend at startup, close them all at shutdown.

Works with FastAPI and with plain Starlette (it only needs ``app.state``)::

    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    app = FastAPI(lifespan=cloudrift_lifespan(settings, lifespan=my_own_lifespan))
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import ModuleType
from typing import Any, cast

from dependency_injector import providers

from cloudrift.config import CloudriftSettings
from cloudrift.core import categories
from cloudrift.core.exceptions import ConfigurationError
from cloudrift_fastapi.container import (
    STATE_ATTR,
    UNRESOLVED,
    BackendSet,
    Container,
    provider_for,
    slot_provider,
)
from cloudrift_fastapi.deps import resolve_override, slot_of
from cloudrift_fastapi.workers import QueueWorker, RunningWorkers

#: The ``app.state`` attribute holding a callable that rewrites the settings at startup
#: (``memory_client`` uses it to run every configured backend on ``memory``).
SETTINGS_HOOK_ATTR = "cloudrift_settings_hook"

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def check_startup_settings(settings: CloudriftSettings) -> CloudriftSettings:
    """What every process does with its settings before building a backend (the
    lifespan, ``cloudrift check`` and ``cloudrift worker``): refuse settings unsafe for
    production when ``environment`` is ``production`` (ConfigurationError listing every
    problem). Returns ``settings``."""
    if settings.is_production:
        settings.validate_production_security()
    return settings


def cloudrift_lifespan(
    settings: CloudriftSettings | None = None,
    *,
    lifespan: Lifespan | Callable[[Any], AsyncIterator[Any]] | None = None,
    workers: Sequence[QueueWorker] = (),
    container: Container | None = None,
    wire: Iterable[ModuleType | str] = (),
    verify_on_startup: bool | None = None,
) -> Lifespan:
    """A lifespan that runs cloudrift's backends around the app (and the app's own lifespan).

    At startup: validates production settings when ``environment="production"``, builds
    every configured backend once and concurrently (contacting each when
    ``verify_on_startup``), stores the container on ``app.state.cloudrift``, starts the
    ``workers``, then enters ``lifespan`` (which may already use the backends). A backend
    whose dependency is overridden before startup (``app.dependency_overrides`` or
    ``override_backends``) is not built: the override is served instead. A backend
    that cannot be built aborts startup with an error naming it and its cause's own
    class; those already built are closed. At shutdown, in reverse: the app's lifespan
    exits, workers stop, every backend is closed in reverse order (each close
    attempted, failures logged). ``settings`` defaults to ``CloudriftSettings()`` (env
    vars and ``$CLOUDRIFT_CONFIG``), read at startup. ``wire`` lists modules using
    ``@inject`` + ``Provide[Container.x]``.
    """
    worker_list = list(workers)
    wire_list = list(wire)
    own: Lifespan | None
    if lifespan is not None and inspect.isasyncgenfunction(lifespan):
        # A bare ``async def lifespan(app): ... yield ...`` (no decorator) works too.
        own = asynccontextmanager(lifespan)
    else:
        own = cast("Lifespan | None", lifespan)

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        current = settings if settings is not None else CloudriftSettings()
        hook = getattr(app.state, SETTINGS_HOOK_ATTR, None)
        if hook is not None:
            current = hook(current)
        check_startup_settings(current)
        verify = current.verify_on_startup if verify_on_startup is None else verify_on_startup
        box = container if container is not None else Container()
        skip, late = _split_overrides(current, await _overrides(app))
        backends = BackendSet(current, box, verify=verify, skip=skip)
        await backends.start()
        running = RunningWorkers()
        overridden: list[Any] = []
        try:
            for key, name, value in late:
                provider = slot_provider(box, key, name)  # reports a name not configured
                if value is not UNRESOLVED:
                    provider.override(providers.Object(value))
                    overridden.append(provider)
            if wire_list:
                box.wire(modules=wire_list)
            setattr(app.state, STATE_ATTR, box)
            for worker in worker_list:
                running.start(worker, provider_for(box, worker.category, worker.queue)())
            if own is None:
                yield None
            else:
                async with own(app) as state:
                    yield state
        finally:
            try:
                await running.stop()
            finally:
                if getattr(app.state, STATE_ATTR, None) is box:
                    delattr(app.state, STATE_ATTR)
                if wire_list:
                    box.unwire()
                for provider in reversed(overridden):  # an app's own container is reused
                    provider.reset_last_overriding()
                await backends.stop()

    return run


async def _overrides(app: Any) -> list[tuple[str, str | None, Any]]:
    """``(slot key, name, value)`` of each cloudrift dependency the app overrides."""
    table = getattr(app, "dependency_overrides", None) or {}  # plain Starlette has none
    found = []
    for dep, override in list(table.items()):
        where = slot_of(dep)
        if where is not None:
            found.append((*where, await resolve_override(override)))
    return found


def _split_overrides(
    settings: CloudriftSettings, overrides: list[tuple[str, str | None, Any]]
) -> tuple[dict[tuple[str, str], Any], list[tuple[str, str | None, Any]]]:
    """The configured backends to serve instead of building them, and the overrides to
    apply once the container runs (views, and categories the settings do not configure)."""
    skip: dict[tuple[str, str], Any] = {}
    late: list[tuple[str, str | None, Any]] = []
    for key, name, value in overrides:
        spec, slot = categories.slot(key)
        section = settings.section(spec.name)
        if slot is not spec.backend or section is None:
            late.append((key, name, value))
            continue
        target = section.default if name is None else name
        if target not in section.backends:
            raise ConfigurationError(
                f"no {spec.name} backend named {target!r} is configured "
                f"(configured: {', '.join(section.backends)})"
            )
        skip[(spec.name, target)] = value
    return skip, late


__all__ = ["SETTINGS_HOOK_ATTR", "STATE_ATTR", "check_startup_settings", "cloudrift_lifespan"]
