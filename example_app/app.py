"""The application factory: one FastAPI app, whatever the backends are.

::

    from example_app import create_app
    app = create_app()  # $CLOUDRIFT_CONFIG, or the bundled demo settings

``create_app`` wires cloudrift's lifespan (every backend built once at startup and
closed at shutdown), the processing worker (a queue consumer run by that lifespan),
the audit consumer on the topic's ``audit`` subscription when one is configured
(``example_app.audit``),
the sweeper expiring uncompleted direct uploads (``example_app.sweeper``), the health
endpoints, the browser page at ``/`` (``example_app.web``), and, on the ``local``
storage provider, the route serving its signed URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from cloudrift.core.exceptions import CloudRiftError, ConfigurationError
from cloudrift_fastapi import cloudrift_lifespan, health_router, local_files_router, queue_worker
from example_app.audit import AUDIT_SUBSCRIPTION, AuditHandler
from example_app.config import IntakeConfig, load_settings
from example_app.routes import router
from example_app.services import CONFIG_ATTR, services_of
from example_app.sweeper import run_sweeper
from example_app.web import mount_page
from example_app.worker import JobHandler

log = logging.getLogger("example_app")

#: Categories the service needs, and what each is used for.
_NEEDS = {
    "storage": "the uploaded files",
    "queue": "processing jobs",
    "document": "document records (set document.database too)",
    "cache": "processed records",
    "email": "notifications",
}


def _check(settings: Any) -> None:
    missing = [
        f"{category} ({why})"
        for category, why in _NEEDS.items()
        if settings.section(category) is None
    ]
    if not missing and settings.backend("document").database is None:
        missing.append("document.database (the database holding the records)")
    if missing:
        raise ConfigurationError(
            "the document-intake service needs these settings: " + ", ".join(missing)
        )


def _has_audit(settings: Any) -> bool:
    """Whether the settings configure a subscription backend named ``audit``."""
    section = settings.section("subscription")
    return section is not None and AUDIT_SUBSCRIPTION in section.backends


async def _backend_failure(request: Request, exc: Exception) -> JSONResponse:
    """A backend failed mid-request: 503, with no internal detail for the client."""
    log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    if isinstance(exc, ConfigurationError):
        return JSONResponse(
            {"detail": "the service is misconfigured; see its log"}, status_code=500
        )
    return JSONResponse(
        {"detail": f"a backend is unavailable ({type(exc).__name__}); try again later"},
        status_code=503,
    )


@contextlib.asynccontextmanager
async def _sweeping(app: FastAPI) -> AsyncIterator[None]:
    """The app's own lifespan: the upload sweeper runs while the app does."""
    task = asyncio.create_task(run_sweeper(lambda: services_of(app)), name="sweeper")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(
    settings: Any = None, config: IntakeConfig | None = None, *, run_worker: bool = True
) -> FastAPI:
    """The document-intake app on ``settings`` (a CloudriftSettings; default:
    :func:`~example_app.config.load_settings`) and ``config`` (default: ``INTAKE_*`` env).
    ``run_worker=False`` serves HTTP only: jobs are left to worker processes
    (``python -m example_app worker``).

    Raises ConfigurationError naming every missing category or setting.
    """
    settings = load_settings() if settings is None else settings
    config = IntakeConfig.from_env() if config is None else config
    _check(settings)

    workers = []
    if run_worker:
        workers.append(
            queue_worker(
                JobHandler(lambda: services_of(app)), concurrency=config.worker_concurrency
            )
        )
        if _has_audit(settings):
            workers.append(
                queue_worker(
                    AuditHandler(lambda: services_of(app).database),
                    subscription=AUDIT_SUBSCRIPTION,
                )
            )
    app = FastAPI(
        title="cloudrift document intake",
        summary="Upload documents; a worker hashes, counts and previews them and emails a summary.",
        lifespan=cloudrift_lifespan(settings, lifespan=_sweeping, workers=workers),
    )
    setattr(app.state, CONFIG_ATTR, config)
    app.include_router(health_router())
    app.include_router(router)
    mount_page(app, settings)
    storage = settings.backend("storage")
    if storage.provider == "local" and storage.options.get("base_url"):
        app.include_router(local_files_router(settings))
    app.add_exception_handler(CloudRiftError, _backend_failure)
    if os.environ.get("INTAKE_TRACES"):
        trace_http(app)
    return app


def trace_http(app: FastAPI, tracer_provider: Any = None) -> None:
    """One server span per HTTP request (OpenTelemetry's FastAPI instrumentation), so an
    upload's cloudrift spans — and the worker's, through the queue — share its trace.
    Health probes are left out: they would drown the traces that matter."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, excluded_urls="/health/"
    )


__all__ = ["create_app", "trace_http"]
