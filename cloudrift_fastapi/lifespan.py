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
from cloudrift_fastapi.container import BackendSet, Container, database_provider_for, provider_for
from cloudrift_fastapi.workers import QueueWorker, RunningWorkers

#: The ``app.state`` attribute holding the running container.
STATE_ATTR = "cloudrift"
#: The ``app.state`` attribute holding overrides registered before startup.
PENDING_ATTR = "cloudrift_pending_overrides"

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


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
    that cannot be built aborts startup with an error naming it; those already built are
    closed. At shutdown, in reverse: the app's lifespan exits, workers stop, every backend
    is closed in reverse order (each close attempted, failures logged). ``settings``
    defaults to ``CloudriftSettings()`` (env vars and ``$CLOUDRIFT_CONFIG``), read at
    startup. ``wire`` lists modules using ``@inject`` + ``Provide[Container.x]``.
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
        if current.is_production:
            current.validate_production_security()
        verify = current.verify_on_startup if verify_on_startup is None else verify_on_startup
        box = container if container is not None else Container()
        # Overrides registered before startup (``override_backends``) replace the
        # backend outright: it is never built, so a test needs no real service.
        pending: dict[tuple[str, str | None], Any] = dict(getattr(app.state, PENDING_ATTR, {}))
        skip: dict[tuple[str, str], Any] = {}
        late: list[tuple[str, str | None, Any]] = []
        for (category, name), value in pending.items():
            section = current.section(category) if category != "database" else None
            if section is not None and (name is None or name in section.backends):
                skip[(category, name or section.default)] = value
            else:
                # Not a configured backend (or a database): overridden after startup,
                # where an unknown name is reported.
                late.append((category, name, value))
        backends = BackendSet(current, box, verify=verify, skip=skip)
        await backends.start()
        running = RunningWorkers()
        try:
            for category, name, value in late:
                if category == "database":
                    database_provider_for(box, name).override(providers.Object(value))
                else:
                    provider_for(box, category, name).override(providers.Object(value))
            if wire_list:
                box.wire(modules=wire_list)
            setattr(app.state, STATE_ATTR, box)
            for worker in worker_list:
                running.start(worker, provider_for(box, "queue", worker.queue)())
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
                await backends.stop()

    return run


__all__ = ["PENDING_ATTR", "STATE_ATTR", "cloudrift_lifespan"]
