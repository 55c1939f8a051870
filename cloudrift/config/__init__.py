"""Settings for every cloudrift backend: env vars, a YAML file, or plain Python.

``import cloudrift.config`` needs nothing installed; the settings model itself needs
pydantic-settings and PyYAML (the ``fastapi`` extra) and is imported on first use::

    from cloudrift.config import CloudriftSettings

    settings = CloudriftSettings(storage={"provider": "memory"})
    settings = CloudriftSettings.from_yaml("cloudrift.yaml")  # ${VAR} / ${VAR:-default}
    settings = CloudriftSettings()  # CLOUDRIFT_STORAGE__PROVIDER=s3, CLOUDRIFT_CONFIG=...
    settings = CloudriftSettings(_env_file=".env", _secrets_dir="/run/secrets")

Precedence: keywords > env vars > ``.env`` > secret files > YAML. Every value is
converted to the type the provider declares for its option, never by its look
(``CLOUDRIFT_STORAGE__BUCKET=123`` is the bucket ``"123"``).

Each category section (``storage``, ``queue``, ``document``, ``cache``, ``email``) is
either one backend (``{"provider": "s3", "bucket": "b"}``) or several named ones
(``{"default": "primary", "backends": {"primary": {...}, "avatars": {...}}}``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.factory import install_hint

if TYPE_CHECKING:
    from cloudrift.config._settings import (
        CATEGORIES,
        BackendConfig,
        CloudriftSettings,
        SectionConfig,
    )
    from cloudrift.config._yaml import interpolate, load_yaml

_LAZY = {
    "CATEGORIES": "cloudrift.config._settings",
    "BackendConfig": "cloudrift.config._settings",
    "CloudriftSettings": "cloudrift.config._settings",
    "SectionConfig": "cloudrift.config._settings",
    "interpolate": "cloudrift.config._yaml",
    "load_yaml": "cloudrift.config._yaml",
}
_NEEDS = ("pydantic", "pydantic_settings", "yaml")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cloudrift.config' has no attribute {name!r}")
    try:
        target = importlib.import_module(module)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in _NEEDS:
            raise
        raise ConfigurationError(
            f"cloudrift.config.{name} needs {exc.name}, which is not installed; "
            f"install it with: {install_hint('fastapi')}"
        ) from exc
    return getattr(target, name)


__all__ = [
    "CATEGORIES",
    "BackendConfig",
    "CloudriftSettings",
    "SectionConfig",
    "interpolate",
    "load_yaml",
]
