"""FastAPI / Starlette integration for cloudrift.

::

    from fastapi import Depends, FastAPI
    from cloudrift.config import CloudriftSettings
    from cloudrift.storage import Storage
    from cloudrift_fastapi import cloudrift_lifespan, get_storage_dep, health_router

    settings = CloudriftSettings(storage={"provider": "memory"})
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    app.include_router(health_router())

    @app.get("/files/{key}")
    async def read(key: str, storage: Storage = Depends(get_storage_dep)) -> bytes: ...

Names are imported on first use, so importing this package (as the pytest plugin does)
costs nothing and needs no extra; using them needs ``pip install "cloudrift[fastapi]"``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cloudrift.core import categories
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.factory import install_hint

if TYPE_CHECKING:
    from cloudrift_fastapi.container import Container
    from cloudrift_fastapi.deps import (
        CacheDep,
        DatabaseDep,
        EmailDep,
        MongoDep,
        QueueDep,
        StorageDep,
        SubscriptionDep,
        TopicDep,
        cache_dep,
        database_dep,
        email_dep,
        get_cache_dep,
        get_database_dep,
        get_email_dep,
        get_mongodb_dep,
        get_queue_dep,
        get_storage_dep,
        get_subscription_dep,
        get_topic_dep,
        mongodb_dep,
        queue_dep,
        storage_dep,
        subscription_dep,
        topic_dep,
    )
    from cloudrift_fastapi.health import health_router
    from cloudrift_fastapi.lifespan import cloudrift_lifespan
    from cloudrift_fastapi.local_files import local_files_router
    from cloudrift_fastapi.testing import memory_client, memory_settings, override_backends
    from cloudrift_fastapi.workers import queue_worker

# Where each name lives; every category's dependency names (get_storage_dep,
# storage_dep, StorageDep, ...) live in deps and come from the registry (_module_of).
_WHERE = {
    "Container": "container",
    "health_router": "health",
    "cloudrift_lifespan": "lifespan",
    "local_files_router": "local_files",
    "memory_client": "testing",
    "memory_settings": "testing",
    "override_backends": "testing",
    "queue_worker": "workers",
}
_NEEDS = ("fastapi", "starlette", "dependency_injector", "pydantic", "pydantic_settings", "yaml")


def _module_of(name: str) -> str | None:
    if name in _WHERE:
        return _WHERE[name]
    if any(name in slot.names for spec in categories.specs() for slot in spec.slots):
        return "deps"
    return None


def __getattr__(name: str) -> Any:
    module = _module_of(name)
    if module is None:
        raise AttributeError(f"module 'cloudrift_fastapi' has no attribute {name!r}")
    try:
        target = importlib.import_module(f"cloudrift_fastapi.{module}")
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in _NEEDS:
            raise
        raise ConfigurationError(
            f"cloudrift_fastapi.{name} needs {exc.name}, which is not installed; "
            f"install it with: {install_hint('fastapi')}"
        ) from exc
    return getattr(target, name)


__all__ = [
    "CacheDep",
    "Container",
    "DatabaseDep",
    "EmailDep",
    "MongoDep",
    "QueueDep",
    "StorageDep",
    "SubscriptionDep",
    "TopicDep",
    "cache_dep",
    "cloudrift_lifespan",
    "database_dep",
    "email_dep",
    "get_cache_dep",
    "get_database_dep",
    "get_email_dep",
    "get_mongodb_dep",
    "get_queue_dep",
    "get_storage_dep",
    "get_subscription_dep",
    "get_topic_dep",
    "health_router",
    "local_files_router",
    "memory_client",
    "memory_settings",
    "mongodb_dep",
    "override_backends",
    "queue_dep",
    "queue_worker",
    "storage_dep",
    "subscription_dep",
    "topic_dep",
]
