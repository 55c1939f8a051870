"""The service's own settings (``INTAKE_*`` env vars) and where its cloudrift settings come from.

The backends are configured by cloudrift's settings alone (``$CLOUDRIFT_CONFIG`` naming
a YAML file, and/or ``CLOUDRIFT_*`` env vars); with neither, the bundled
``settings/demo.yaml`` is used. Switching to AWS or Azure changes only that file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudrift.core.exceptions import ConfigurationError

#: The bundled settings files (demo, aws, azure, stand-ins).
SETTINGS_DIR = Path(__file__).parent / "settings"
DEMO_SETTINGS = SETTINGS_DIR / "demo.yaml"


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class IntakeConfig:
    """What the document-intake service itself needs to know (not the backends)."""

    #: Largest accepted upload, in bytes (``INTAKE_MAX_UPLOAD_BYTES``).
    max_upload_bytes: int = 10 * 1024 * 1024
    #: Who is told when a document has been processed (``INTAKE_NOTIFY_TO``).
    notify_to: str = "intake-team@example.test"
    #: Storage key prefix of uploaded documents (``INTAKE_KEY_PREFIX``).
    key_prefix: str = "documents/"
    #: How long a processed record stays in the cache, in seconds (``INTAKE_CACHE_TTL``).
    cache_ttl: int = 300
    #: Lifetime of presigned download / upload URLs, in seconds (``INTAKE_URL_TTL``).
    url_ttl: int = 900
    #: Characters of text kept as the preview (``INTAKE_PREVIEW_CHARS``).
    preview_chars: int = 200
    #: Deliveries of one job before the document is marked failed (``INTAKE_MAX_ATTEMPTS``).
    max_attempts: int = 5
    #: Jobs the worker processes at once (``INTAKE_WORKER_CONCURRENCY``).
    worker_concurrency: int = 4
    #: Seconds a direct upload (``POST /documents/upload-url``) may stay uncompleted; then
    #: the sweeper marks it failed and deletes its object (``INTAKE_UPLOAD_TTL``). At
    #: least ``url_ttl`` + 60, so no PUT can still be arriving.
    upload_ttl: int = 3600
    #: Seconds between two sweeps for expired uploads (``INTAKE_SWEEP_INTERVAL``).
    sweep_interval: int = 60

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise ConfigurationError("max_upload_bytes must be at least 1 byte")
        if "@" not in self.notify_to or any(c in self.notify_to for c in "\r\n"):
            raise ConfigurationError(
                f"INTAKE_NOTIFY_TO must be one email address, got {self.notify_to!r}"
            )
        prefix = self.key_prefix
        if prefix.startswith("/") or (prefix and not prefix.endswith("/")):
            raise ConfigurationError(
                f"INTAKE_KEY_PREFIX must be empty or end with '/' and not start with it, "
                f"got {prefix!r}"
            )
        if not 1 <= self.url_ttl <= 7 * 24 * 3600:
            raise ConfigurationError("INTAKE_URL_TTL must be between 1 and 604800 seconds")
        if self.upload_ttl < self.url_ttl + 60:
            raise ConfigurationError(
                f"INTAKE_UPLOAD_TTL ({self.upload_ttl}) must be at least INTAKE_URL_TTL + 60 "
                f"({self.url_ttl + 60}) seconds, so an upload URL expires before its upload does"
            )
        if self.sweep_interval < 1:
            raise ConfigurationError("INTAKE_SWEEP_INTERVAL must be at least 1 second")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IntakeConfig:
        """Read ``INTAKE_*`` variables (defaults for the rest); ConfigurationError if bad."""
        e = os.environ if env is None else env
        d = cls()
        return cls(
            max_upload_bytes=_int(e, "INTAKE_MAX_UPLOAD_BYTES", d.max_upload_bytes, minimum=1),
            notify_to=e.get("INTAKE_NOTIFY_TO") or d.notify_to,
            key_prefix=e.get("INTAKE_KEY_PREFIX", d.key_prefix),
            cache_ttl=_int(e, "INTAKE_CACHE_TTL", d.cache_ttl, minimum=1),
            url_ttl=_int(e, "INTAKE_URL_TTL", d.url_ttl, minimum=1),
            preview_chars=_int(e, "INTAKE_PREVIEW_CHARS", d.preview_chars, minimum=0),
            max_attempts=_int(e, "INTAKE_MAX_ATTEMPTS", d.max_attempts, minimum=1),
            worker_concurrency=_int(
                e, "INTAKE_WORKER_CONCURRENCY", d.worker_concurrency, minimum=1
            ),
            upload_ttl=_int(e, "INTAKE_UPLOAD_TTL", d.upload_ttl, minimum=1),
            sweep_interval=_int(e, "INTAKE_SWEEP_INTERVAL", d.sweep_interval, minimum=1),
        )


def load_settings() -> Any:
    """The cloudrift settings: the YAML file named by ``$CLOUDRIFT_CONFIG``, else the
    bundled demo settings (local files, memory queue and cache, embedded document
    engine, ``.eml`` outbox). ``CLOUDRIFT_*`` env vars override either file."""
    from cloudrift.config import CloudriftSettings

    if os.environ.get("CLOUDRIFT_CONFIG"):
        return CloudriftSettings()
    return CloudriftSettings.from_yaml(DEMO_SETTINGS)


__all__ = ["DEMO_SETTINGS", "SETTINGS_DIR", "IntakeConfig", "load_settings"]
