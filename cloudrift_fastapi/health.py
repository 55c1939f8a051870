"""Health endpoints: ``/health/live`` (the process is up) and ``/health/ready`` (every
backend answers), for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from dependency_injector import errors as di_errors
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from cloudrift.core import categories, telemetry
from cloudrift.core.categories import CategorySpec
from cloudrift.core.exceptions import BackendClosedError, ConfigurationError
from cloudrift.core.validation import is_number
from cloudrift_fastapi.container import STATE_ATTR, UNRESOLVED, check_backend, provider_for
from cloudrift_fastapi.deps import dependency, resolve_override

# Stands for "nothing serves this backend".
_ABSENT = object()


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


async def injected(app: Any, spec: CategorySpec, name: str | None) -> Any:
    """What routes receive for ``spec``'s backend ``name`` (None: the default): an
    ``app.dependency_overrides`` entry first, then the container's provider.

    ``UNRESOLVED`` for an override known only per request, ``_ABSENT`` for nothing.
    """
    overrides = getattr(app, "dependency_overrides", None) or {}
    dep = dependency(spec.backend.key, name)
    if dep in overrides:
        return await resolve_override(overrides[dep])
    try:
        return provider_for(getattr(app.state, STATE_ATTR), spec.name, name)()
    except (di_errors.Error, ConfigurationError):
        return _ABSENT


@dataclass(frozen=True)
class _Target:
    """One backend health reports on: what routes receive, and what the settings say."""

    spec: CategorySpec
    name: str
    backend: Any
    configured: str | None  # the provider the settings name (None: not configured)

    @property
    def provider(self) -> str:
        """The provider of what is served: the object's own, else the configured one."""
        if self.backend is UNRESOLVED:
            return "overridden"
        if self.backend is _ABSENT:
            return self.configured or "none"
        found = self.spec.provider_of(self.backend) or self.configured
        return found or type(self.backend).__name__


async def _targets(app: Any) -> list[_Target]:
    """Every backend served: the configured ones, and overridden unconfigured categories."""
    settings = getattr(app.state, STATE_ATTR).settings()
    targets: list[_Target] = []
    for spec in categories.specs():
        section = settings.section(spec.name)
        if section is None:
            # Not configured, but a test may serve one (an override): report what it is.
            backend = await injected(app, spec, None)
            if backend is not _ABSENT:
                targets.append(_Target(spec, "default", backend, None))
            continue
        for name, config in section.backends.items():
            backend = await injected(app, spec, None if name == section.default else name)
            targets.append(_Target(spec, name, backend, config.provider))
    return targets


async def _status(target: _Target, limit: float) -> dict[str, Any]:
    if target.backend is UNRESOLVED:
        return {"status": "skipped", "reason": "overridden per request; not checked"}
    if target.backend is _ABSENT:
        return {"status": "down", "reason": "not started"}
    return await _probe(target.spec.name, target.backend, limit)


async def readiness(app: Any, limit: float) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Probe every backend of ``app`` concurrently, each within ``limit`` seconds:
    (all ok, status by ``category.name``).

    What is probed and reported is what routes actually receive: an overridden
    backend's replacement (under its own provider name), and overridden categories the
    settings do not configure too. An override that needs a request cannot be probed:
    it is reported ``"skipped"`` and does not make the app unready.
    """
    if getattr(app.state, STATE_ATTR, None) is None:
        return False, {}
    targets = await _targets(app)
    results = await asyncio.gather(*(_status(t, limit) for t in targets))
    report = {
        f"{t.spec.name}.{t.name}": {"provider": t.provider, **result}
        for t, result in zip(targets, results, strict=True)
    }
    return all(r["status"] in ("ok", "skipped") for r in results), report


def health_router(
    *,
    prefix: str = "/health",
    timeout: float = 5.0,
    include_in_schema: bool = True,
    trace: bool = False,
) -> Any:
    """An APIRouter with ``GET {prefix}/live`` and ``GET {prefix}/ready``.

    ``ready`` answers 200 ``{"status": "ok", "backends": {...}}`` when every backend
    answers within ``timeout`` seconds, else 503 with ``"status": "unavailable"`` and a
    safe reason for each failing backend (no secrets, no stack traces). Its backend
    health checks record no telemetry spans unless ``trace=True``.
    """
    if not is_number(timeout):
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
        with nullcontext() if trace else telemetry.suppressed():
            ok, report = await readiness(request.app, float(timeout))
        status = "ok" if ok else "unavailable"
        return JSONResponse({"status": status, "backends": report}, status_code=200 if ok else 503)

    return router


__all__ = ["health_router", "readiness"]
