"""Health endpoints: ``/health/live`` (the process is up) and ``/health/ready`` (every
backend answers), for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from cloudrift.core.exceptions import BackendClosedError, ConfigurationError
from cloudrift_fastapi.container import check_backend, provider_for
from cloudrift_fastapi.lifespan import STATE_ATTR


async def _probe(category: str, backend: Any, limit: float) -> dict[str, Any]:
    """One backend's status. The reason never carries an error's text (it could hold a
    host name with credentials); only a fixed phrase or the error's class name."""
    try:
        ok = await asyncio.wait_for(check_backend(category, backend), limit)
    except TimeoutError:
        return {"status": "down", "reason": f"no answer within {limit:g}s"}
    except BackendClosedError:
        return {"status": "down", "reason": "backend is closed"}
    except Exception as exc:
        return {"status": "down", "reason": f"health check raised {type(exc).__name__}"}
    if ok:
        return {"status": "ok"}
    return {"status": "down", "reason": "service did not answer"}


async def readiness(app: Any, limit: float) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Probe every backend of ``app`` concurrently, each within ``limit`` seconds:
    (all ok, status by ``category.name``)."""
    box = getattr(app.state, STATE_ATTR, None)
    if box is None:
        return False, {}
    settings = box.settings()
    targets: list[tuple[str, str, str, Any]] = []
    for category, name, config in settings.iter_backends():
        targets.append((category, name, config.provider, provider_for(box, category, name)()))
    results = await asyncio.gather(
        *(_probe(category, backend, limit) for category, _, _, backend in targets)
    )
    report: dict[str, dict[str, Any]] = {}
    for (category, name, provider, _), result in zip(targets, results, strict=True):
        report[f"{category}.{name}"] = {"provider": provider, **result}
    return all(r["status"] == "ok" for r in results), report


def health_router(
    *, prefix: str = "/health", timeout: float = 5.0, include_in_schema: bool = True
) -> Any:
    """An APIRouter with ``GET {prefix}/live`` and ``GET {prefix}/ready``.

    ``ready`` answers 200 ``{"status": "ok", "backends": {...}}`` when every backend
    answers within ``timeout`` seconds, else 503 with ``"status": "unavailable"`` and a
    safe reason for each failing backend (no secrets, no stack traces).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ConfigurationError("health_router timeout must be a number of seconds")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ConfigurationError("health_router timeout must be a positive number of seconds")
    router = APIRouter(prefix=prefix, tags=["health"], include_in_schema=include_in_schema)

    @router.get("/live")
    async def live() -> dict[str, str]:
        """The process is up and serving requests."""
        return {"status": "ok"}

    @router.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        """Every configured backend answers its health check."""
        if getattr(request.app.state, STATE_ATTR, None) is None:
            return JSONResponse(
                {"status": "unavailable", "reason": "cloudrift lifespan is not running"},
                status_code=503,
            )
        ok, report = await readiness(request.app, float(timeout))
        status = "ok" if ok else "unavailable"
        return JSONResponse({"status": status, "backends": report}, status_code=200 if ok else 503)

    return router


__all__ = ["health_router", "readiness"]
