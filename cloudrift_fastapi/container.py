"""The dependency-injector container holding every configured backend, and its lifecycle.

:class:`Container` has one provider per category default (``storage``, ``queue``,
``mongodb``, ``database``, ``cache``, ``email``) plus ``<category>__<name>`` for each
named backend. Every backend is built by one async ``Resource`` (the library factory
builds it, the same resource closes it); :class:`BackendSet` initialises them all
concurrently and shuts them down in reverse order. Overriding a provider
(``container.storage.override(providers.Object(fake))``) changes what every dependency,
``Provide[Container.storage]`` and the health router see.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

from dependency_injector import containers, providers
from pydantic import SecretStr

import cloudrift.document as document_api
from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import (
    CacheConnectionError,
    CloudRiftError,
    ConfigurationError,
    DocumentConnectionError,
    EmailConnectionError,
    MessagingConnectionError,
    StorageConnectionError,
)
from cloudrift.core.secrets import redact

log = logging.getLogger("cloudrift.fastapi")

#: Container attribute of each category's default backend.
DEFAULT_ATTR: Final = {
    "storage": "storage",
    "queue": "queue",
    "document": "mongodb",
    "cache": "cache",
    "email": "email",
}

_UNAVAILABLE: Final[dict[str, type[CloudRiftError]]] = {
    "storage": StorageConnectionError,
    "queue": MessagingConnectionError,
    "document": DocumentConnectionError,
    "cache": CacheConnectionError,
    "email": EmailConnectionError,
}


class Container(containers.DeclarativeContainer):
    """Providers of the running app's backends (filled in by the lifespan at startup)."""

    settings: providers.Dependency[Any] = providers.Dependency()
    storage: providers.Dependency[Any] = providers.Dependency()
    queue: providers.Dependency[Any] = providers.Dependency()
    mongodb: providers.Dependency[Any] = providers.Dependency()
    database: providers.Dependency[Any] = providers.Dependency()
    cache: providers.Dependency[Any] = providers.Dependency()
    email: providers.Dependency[Any] = providers.Dependency()


def provider_for(container: Any, category: str, name: str | None = None) -> Any:
    """The provider serving one backend: the category default when ``name`` is None."""
    settings: CloudriftSettings = container.settings()
    default = settings.default_name(category)
    if name is None or name == default:
        return getattr(container, DEFAULT_ATTR[category])
    attr = f"{category}__{name}"
    found = container.providers.get(attr)
    if found is None:
        configured = ", ".join(k for c, k, _ in settings.iter_backends() if c == category) or "none"
        raise ConfigurationError(
            f"no {category} backend named {name!r} is configured (configured: {configured})"
        )
    return found


def database_provider_for(container: Any, name: str | None = None) -> Any:
    """The provider of the default database of a document backend."""
    settings: CloudriftSettings = container.settings()
    if name is None or name == settings.default_name("document"):
        return container.database
    provider_for(container, "document", name)  # names the backend when it is unknown
    return container.providers[f"database__{name}"]


def _document() -> Any:
    return document_api


async def close_backend(category: str, backend: Any) -> None:
    """Close one backend (a document client through the document helpers)."""
    if category == "document":
        await _document().aclose_client(backend)
    else:
        await backend.close()


async def check_backend(category: str, backend: Any) -> bool:
    """Contact the service behind ``backend``: True when it answers."""
    if category == "document":
        return bool(await _document().ping(backend))
    return bool(await backend.health_check())


def _secrets(settings: CloudriftSettings, category: str, name: str) -> list[str]:
    config = settings.backend(category, name)
    return [v.get_secret_value() for v in config.options.values() if isinstance(v, SecretStr)]


async def _verify(settings: CloudriftSettings, category: str, name: str, backend: Any) -> None:
    provider = settings.backend(category, name).provider
    what = f"{category} backend {name!r} ({provider})"
    if category == "document":
        try:
            await _document().verify(backend)
        except CloudRiftError:
            raise
        except Exception as exc:
            text = redact(str(exc), _secrets(settings, category, name))
            raise DocumentConnectionError(f"{what} is unreachable: {text}") from exc
        return
    if not await check_backend(category, backend):
        raise _UNAVAILABLE[category](f"{what} did not answer its health check")


async def _backend_resource(
    settings: CloudriftSettings, category: str, name: str, verify: bool
) -> AsyncIterator[Any]:
    """Build one backend with the library factory, hand it out, close it at shutdown."""
    backend = settings.open_backend(category, name)
    try:
        if verify:
            await _verify(settings, category, name, backend)
        yield backend
    finally:
        await close_backend(category, backend)


@dataclass
class _Entry:
    category: str
    name: str
    resource: providers.Resource[Any] | None = None
    instance: Any = None


@dataclass
class BackendSet:
    """Every configured backend of one app: built together, closed in reverse order.

    ``skip`` maps ``(category, name)`` to a replacement object that is served instead
    of building that backend (test overrides set before startup).
    """

    settings: CloudriftSettings
    container: Any
    verify: bool = False
    skip: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    _entries: list[_Entry] = field(default_factory=list)

    async def start(self) -> None:
        """Build every backend concurrently; on any failure close the built ones and raise.

        The error names each backend that failed and why.
        """
        container, settings = self.container, self.settings
        container.settings.set_default(providers.Object(settings))
        for category, name, _config in settings.iter_backends():
            entry = _Entry(category, name)
            if (category, name) in self.skip:
                entry.instance = self.skip[(category, name)]
            else:
                entry.resource = providers.Resource(
                    _backend_resource, settings, category, name, self.verify
                )
            self._entries.append(entry)
        pending = [e for e in self._entries if e.resource is not None]
        try:
            results = await asyncio.gather(
                *(self._init(e) for e in pending), return_exceptions=True
            )
        except BaseException:
            # Startup itself was cancelled: close whatever finished building.
            await self.stop()
            raise
        failures = [
            (e, r) for e, r in zip(pending, results, strict=True) if isinstance(r, BaseException)
        ]
        if failures:
            await self.stop()
            raise self._startup_error(failures)
        for entry in self._entries:
            self._publish(entry)
        log.info(
            "cloudrift backends ready: %s",
            ", ".join(
                f"{e.category}.{e.name} ({settings.backend(e.category, e.name).provider})"
                for e in self._entries
            )
            or "none configured",
        )

    async def _init(self, entry: _Entry) -> None:
        assert entry.resource is not None
        entry.instance = await cast(Awaitable[Any], entry.resource.init())

    def _publish(self, entry: _Entry) -> None:
        container, settings = self.container, self.settings
        default = settings.default_name(entry.category) == entry.name
        value = providers.Object(entry.instance)
        if default:
            getattr(container, DEFAULT_ATTR[entry.category]).set_default(value)
        else:
            container.set_provider(f"{entry.category}__{entry.name}", providers.Dependency())
            container.providers[f"{entry.category}__{entry.name}"].set_default(value)
        if entry.category == "document":
            database = settings.backend("document", entry.name).database
            # A replacement client handed in by a test may not be subscriptable; then
            # only the client is served and the database stays unset.
            if database is not None and hasattr(entry.instance, "__getitem__"):
                db = providers.Object(entry.instance[database])
                if default:
                    container.database.set_default(db)
                else:
                    container.set_provider(f"database__{entry.name}", providers.Dependency())
                    container.providers[f"database__{entry.name}"].set_default(db)

    def _startup_error(self, failures: list[tuple[_Entry, BaseException]]) -> BaseException:
        first_entry, first = failures[0]
        for _, exc in failures:
            if not isinstance(exc, Exception):  # cancellation and the like win as they are
                return exc
        lines = []
        for entry, exc in failures:
            provider = self.settings.backend(entry.category, entry.name).provider
            if isinstance(exc, CloudRiftError):
                # Settings errors already start with the backend's path; the line names it.
                reason = exc.message.removeprefix(f"{entry.category}.backends.{entry.name}: ")
            else:
                reason = f"{type(exc).__name__}: " + redact(
                    str(exc), _secrets(self.settings, entry.category, entry.name)
                )
            lines.append(f"{entry.category} backend {entry.name!r} ({provider}): {reason}")
        message = "cloudrift could not start its backends:\n  " + "\n  ".join(lines)
        cls = (
            ConfigurationError
            if isinstance(first, ConfigurationError)
            else _UNAVAILABLE[first_entry.category]
        )
        error = cls(message)
        error.__cause__ = first
        return error

    async def stop(self) -> None:
        """Close every built backend in reverse order; each close is attempted and a
        failure is logged (naming the backend), never raised."""
        entries, self._entries = self._entries, []
        for entry in reversed(entries):
            resource = entry.resource
            if resource is None or not resource.initialized:
                continue
            try:
                await cast(Awaitable[None], resource.shutdown())
            except Exception as exc:
                text = redact(str(exc), _secrets(self.settings, entry.category, entry.name))
                log.error(
                    "closing %s backend %r failed: %s: %s",
                    entry.category,
                    entry.name,
                    type(exc).__name__,
                    text,
                )

    def names(self) -> list[tuple[str, str]]:
        """``(category, name)`` of every backend, in build order."""
        return [(e.category, e.name) for e in self._entries]


__all__ = [
    "DEFAULT_ATTR",
    "BackendSet",
    "Container",
    "check_backend",
    "close_backend",
    "database_provider_for",
    "provider_for",
]
