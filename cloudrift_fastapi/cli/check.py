"""``cloudrift check``: build every configured backend as the app would and health-check it.

The settings are read and checked exactly as at app startup
(:func:`~cloudrift_fastapi.lifespan.check_startup_settings`); each backend is built by
the same factory the container uses (``CloudriftSettings.open_backend``) and probed by
the same check as ``verify_on_startup``
(:func:`~cloudrift_fastapi.container.verify_backend`), all concurrently, each within a
timeout. Nothing shown carries a secret: targets come from the non-secret location
options (URLs with their password masked), reasons are redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import SecretStr

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import CloudRiftError, ConfigurationError
from cloudrift.core.secrets import redact, redact_url
from cloudrift_fastapi.container import backend_secrets, close_backend, verify_backend
from cloudrift_fastapi.lifespan import check_startup_settings

#: Options that say where a backend lives, in the order they are shown (two at most).
_LOCATION_OPTIONS = (
    "endpoint_url",
    "url",
    "uri",
    "host",
    "account_url",
    "queue_url",
    "queue_name",
    "bucket",
    "container",
    "container_name",
    "root_dir",
    "directory",
    "region",
)


@dataclass(frozen=True)
class BackendStatus:
    """One row of the report."""

    backend: str  # ``category.name``
    provider: str
    target: str
    status: str  # ``ok`` or ``down``
    latency_ms: float | None
    reason: str | None


def _target(options: dict[str, Any]) -> str:
    shown = []
    for option in _LOCATION_OPTIONS:
        if option not in options or options[option] is None:
            continue
        value = options[option]
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
            if "://" not in text:
                continue  # a secret that is not a URL: never shown at all
            value = text
        shown.append(redact_url(str(value)))
        if len(shown) == 2:
            break
    return " ".join(shown) or "-"


async def _probe(
    settings: CloudriftSettings, category: str, name: str, backend: Any, limit: float
) -> tuple[float, str | None]:
    """(latency in ms, None when healthy or the reason it is not)."""
    began = time.perf_counter()
    try:
        await asyncio.wait_for(verify_backend(settings, category, name, backend), limit)
        reason = None
    except TimeoutError:
        reason = f"no answer within {limit:g}s"
    except CloudRiftError as exc:
        reason = f"{type(exc).__name__}: {exc.message}"
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    latency = (time.perf_counter() - began) * 1000
    if reason is not None:
        reason = redact(reason, backend_secrets(settings, category, name))
    return latency, reason


async def check_backends(settings: CloudriftSettings, *, limit: float = 5.0) -> list[BackendStatus]:
    """Check ``settings`` as at startup, build every backend, probe each concurrently
    within ``limit`` seconds, close them all; one row per backend, in build order.

    Raises ConfigurationError (listing every problem) when the settings are unsafe for
    production or a backend cannot even be built (unknown option, missing extra).
    """
    check_startup_settings(settings)
    built: list[tuple[str, str, Any]] = []
    problems: list[str] = []
    for category, name, _config in settings.iter_backends():
        try:
            built.append((category, name, settings.open_backend(category, name)))
        except ConfigurationError as exc:
            problems.append(exc.message)
    try:
        if problems:
            raise ConfigurationError("\n".join(problems))
        results = await asyncio.gather(*(_probe(settings, c, n, b, limit) for c, n, b in built))
    finally:
        for category, _name, backend in reversed(built):
            # Closing is best effort: the report is what this command is for.
            with contextlib.suppress(Exception):
                await close_backend(category, backend)
    rows = []
    for (category, name, _backend), (latency, reason) in zip(built, results, strict=True):
        config = settings.backend(category, name)
        rows.append(
            BackendStatus(
                backend=f"{category}.{name}",
                provider=config.provider,
                target=_target(config.options),
                status="ok" if reason is None else "down",
                latency_ms=round(latency, 1),
                reason=reason,
            )
        )
    return rows


def render_json(rows: list[BackendStatus]) -> str:
    """The report as one JSON document: ``{"status": "ok"|"unhealthy", "backends": [...]}``."""
    healthy = all(r.status == "ok" for r in rows)
    return json.dumps(
        {"status": "ok" if healthy else "unhealthy", "backends": [asdict(r) for r in rows]},
        indent=2,
    )


def render_table(rows: list[BackendStatus]) -> str:
    """The report as an aligned text table."""
    header = ("BACKEND", "PROVIDER", "TARGET", "STATUS", "LATENCY", "REASON")
    lines = [
        (
            r.backend,
            r.provider,
            r.target,
            r.status,
            "-" if r.latency_ms is None else f"{r.latency_ms:.0f} ms",
            r.reason or "",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (header, *lines)) for i in range(len(header) - 1)]

    def fmt(row: tuple[str, ...]) -> str:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        return "  ".join([*cells, row[-1]]).rstrip()

    if not rows:
        return "no backend is configured"
    return "\n".join(fmt(row) for row in (header, *lines))


__all__ = ["BackendStatus", "check_backends", "render_json", "render_table"]
