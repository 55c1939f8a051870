"""The dependency-injector container holding every configured backend, and its lifecycle.

:class:`Container` has one provider per slot of each registered category (``storage``,
``queue``, ``mongodb``, ``database``, ``cache``, ``email``: see
:mod:`cloudrift.core.categories`) plus ``<category>__<name>`` for each named backend
(``database__<name>`` for a named document backend's database). Every backend is built
by one async ``Resource`` (the library factory builds it, the same resource closes it);
:class:`BackendSet` initialises them all concurrently and shuts them down in reverse
order. Overriding a provider (``container.storage.override(providers.Object(fake))``)
changes what every dependency, ``Provide[Container.storage]`` and the health router see.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from dependency_injector import containers, providers
from pydantic import SecretStr

from cloudrift.config import CloudriftSettings
from cloudrift.core import categories
from cloudrift.core.categories import CategorySpec, Slot, call_hook
from cloudrift.core.exceptions import CloudRiftError, ConfigurationError
from cloudrift.core.secrets import redact

log = logging.getLogger("cloudrift.fastapi")

#: The ``app.state`` attribute holding the running container.
STATE_ATTR: Final = "cloudrift"

#: Container attribute of each category's default backend.
DEFAULT_ATTR: Final = {spec.name: spec.backend.key for spec in categories.specs()}


class Container(containers.DeclarativeContainer):
    """Providers of the running app's backends (filled in by the lifespan at startup)."""

    settings: providers.Dependency[Any] = providers.Dependency()

    if TYPE_CHECKING:  # for type checkers only: the providers come from the registry below
        storage: providers.Dependency[Any]
        queue: providers.Dependency[Any]
        mongodb: providers.Dependency[Any]
        database: providers.Dependency[Any]
        cache: providers.Dependency[Any]
        email: providers.Dependency[Any]


for _key in categories.slot_keys():
    setattr(Container, _key, providers.Dependency())


def _named_attr(spec: CategorySpec, slot: Slot, name: str) -> str:
    # Named backends are ``storage__avatars``, ``document__audit``; views ``database__audit``.
    return f"{spec.name if slot is spec.backend else slot.key}__{name}"


def _attr(container: Any, attr: str) -> Any:
    """The container's provider ``attr``, added (empty) when the container lacks it."""
    found = container.providers.get(attr)
    if found is None:
        found = providers.Dependency()
        container.set_provider(attr, found)
    return found


def _slot_attr(container: Any, key: str, name: str | None) -> str:
    spec, slot = categories.slot(key)
    settings: CloudriftSettings = container.settings()
    if name is None or name == settings.default_name(spec.name):
        _attr(container, slot.key)
        return slot.key
    attr = _named_attr(spec, slot, name)
    if attr not in container.providers:
        section = settings.section(spec.name)
        configured = ", ".join(section.backends) if section is not None else "none"
        raise ConfigurationError(
            f"no {spec.name} backend named {name!r} is configured (configured: {configured})"
        )
    return attr


def slot_provider(container: Any, key: str, name: str | None = None) -> Any:
    """The provider serving slot ``key`` (``"storage"``, ``"database"``...) of backend
    ``name`` (the category default when None)."""
    return container.providers[_slot_attr(container, key, name)]


#: The container attribute remembering which provider serves each ``(slot key, name)``
#: (see served_provider); :class:`BackendSet` clears it when it (re)starts.
SERVED_ATTR: Final = "_cloudrift_served"


def served_provider(container: Any, key: str, name: str | None = None) -> Any:
    """:func:`slot_provider`, with the provider's container attribute remembered per
    container: what the request dependencies call on every request.

    Working the attribute out reads the settings provider and the category registry
    (~1.5 µs); the remembered attribute is looked up again in ``container.providers``
    each time, so a provider replaced on the container is still the one served.
    """
    served: dict[tuple[str, str | None], str] | None = getattr(container, SERVED_ATTR, None)
    if served is None:
        served = {}
        setattr(container, SERVED_ATTR, served)
    attr = served.get((key, name))
    if attr is not None:
        found = container.providers.get(attr)
        if found is not None:
            return found
    attr = served[(key, name)] = _slot_attr(container, key, name)
    return container.providers[attr]


def provider_for(container: Any, category: str, name: str | None = None) -> Any:
    """The provider serving one backend: the category default when ``name`` is None."""
    return slot_provider(container, categories.get(category).backend.key, name)


def database_provider_for(container: Any, name: str | None = None) -> Any:
    """The provider of the default database of a document backend."""
    return slot_provider(container, "database", name)


async def close_backend(category: str, backend: Any) -> None:
    """Close one backend the way its category says (a document client through its helper)."""
    await call_hook(categories.get(category).close, backend)


async def check_backend(category: str, backend: Any) -> bool:
    """Contact the service behind ``backend``: True when it answers."""
    return bool(await call_hook(categories.get(category).ping, backend))


def backend_secrets(settings: CloudriftSettings, category: str, name: str) -> list[str]:
    """The secret option values of one backend (to redact from any text shown)."""
    config = settings.backend(category, name)
    return [v.get_secret_value() for v in config.options.values() if isinstance(v, SecretStr)]


async def verify_backend(
    settings: CloudriftSettings, category: str, name: str, backend: Any
) -> None:
    """Probe the backend; when it does not answer, raise the cause's own error (startup
    with ``verify_on_startup``, and ``cloudrift check``)."""
    if await check_backend(category, backend):
        return
    spec = categories.get(category)
    what = f"{category} backend {name!r} ({settings.backend(category, name).provider})"
    if spec.diagnose is not None:
        # The probe only says no; the category's diagnosis raises why (no credentials,
        # permission denied, unreachable host), which is what an operator needs. It runs
        # only after a failed probe, so a healthy startup contacts each service once.
        try:
            await call_hook(spec.diagnose, backend)
        except CloudRiftError:
            raise
        except Exception as exc:
            text = redact(str(exc), backend_secrets(settings, category, name))
            raise spec.unavailable(f"{what} is unreachable: {type(exc).__name__}: {text}") from exc
    raise spec.unavailable(f"{what} did not answer its health check")


async def _backend_resource(
    settings: CloudriftSettings, category: str, name: str, verify: bool
) -> AsyncIterator[Any]:
    """Build one backend with the library factory, hand it out, close it at shutdown."""
    backend = settings.open_backend(category, name)
    try:
        if verify:
            await verify_backend(settings, category, name, backend)
        yield backend
    finally:
        await close_backend(category, backend)


#: Stands for an override whose value can only be had per request (it takes parameters).
UNRESOLVED: Final = object()


@dataclass
class _Entry:
    category: str
    name: str
    resource: providers.Resource[Any] | None = None
    instance: Any = None


def _with_cause(cause: CloudRiftError, message: str) -> CloudRiftError:
    """A copy of ``cause`` (same class and attributes) carrying ``message``, chained to it."""
    error = type(cause).__new__(type(cause))
    Exception.__init__(error, message)
    error.__dict__.update(cause.__dict__)
    error.message = message
    error.__cause__ = cause
    return error


@dataclass
class BackendSet:
    """Every configured backend of one app: built together, closed in reverse order.

    ``skip`` maps ``(category, name)`` to a replacement object that is served instead
    of building that backend (overrides set before startup); :data:`UNRESOLVED` means
    the backend is overridden per request, so nothing is built or served for it.
    """

    settings: CloudriftSettings
    container: Any
    verify: bool = False
    skip: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    _entries: list[_Entry] = field(default_factory=list)

    async def start(self) -> None:
        """Build every backend concurrently; on any failure close the built ones and raise.

        The error names each backend that failed and why, as the cause's own class.
        """
        container, settings = self.container, self.settings
        container.settings.set_default(providers.Object(settings))
        # New settings may name other defaults: forget what the dependencies resolved.
        setattr(container, SERVED_ATTR, {})
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
            ", ".join(self._describe(e) for e in self._entries) or "none configured",
        )

    def _describe(self, entry: _Entry) -> str:
        provider = self.settings.backend(entry.category, entry.name).provider
        if entry.resource is None:
            return f"{entry.category}.{entry.name} (overridden, not built)"
        return f"{entry.category}.{entry.name} ({provider})"

    async def _init(self, entry: _Entry) -> None:
        assert entry.resource is not None
        entry.instance = await cast(Awaitable[Any], entry.resource.init())

    def _publish(self, entry: _Entry) -> None:
        if entry.instance is UNRESOLVED:
            return  # overridden per request: the container has nothing to serve
        spec = categories.get(entry.category)
        config = self.settings.backend(entry.category, entry.name)
        default = self.settings.default_name(entry.category) == entry.name
        for slot in spec.slots:
            if slot is spec.backend:
                value = entry.instance
            else:
                view = config.field(slot.field) if slot.field else None
                # A replacement handed in by a test may not support the view (e.g. a
                # fake client that is not subscriptable): then only the backend is served.
                if view is None or not hasattr(entry.instance, "__getitem__"):
                    continue
                value = entry.instance[view]
            attr = slot.key if default else _named_attr(spec, slot, entry.name)
            _attr(self.container, attr).set_default(providers.Object(value))

    def _startup_error(self, failures: list[tuple[_Entry, BaseException]]) -> BaseException:
        first_entry, first = failures[0]
        for _, exc in failures:
            if not isinstance(exc, Exception):  # cancellation and the like win as they are
                return exc
        lines = []
        for entry, exc in failures:
            provider = self.settings.backend(entry.category, entry.name).provider
            secrets = backend_secrets(self.settings, entry.category, entry.name)
            if isinstance(exc, CloudRiftError):
                # Settings errors already start with the backend's path; the line names it.
                reason = exc.message.removeprefix(f"{entry.category}.backends.{entry.name}: ")
            else:
                reason = f"{type(exc).__name__}: {exc}"
            reason = redact(reason, secrets)
            lines.append(f"{entry.category} backend {entry.name!r} ({provider}): {reason}")
        message = "cloudrift could not start its backends:\n  " + "\n  ".join(lines)
        if isinstance(first, CloudRiftError):
            # The cause's own class (ConfigurationError for missing credentials,
            # MessagingPermissionError for a refused queue...), so callers can branch on it.
            return _with_cause(first, message)
        error = categories.get(first_entry.category).unavailable(message)
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
                text = redact(str(exc), backend_secrets(self.settings, entry.category, entry.name))
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
    "STATE_ATTR",
    "UNRESOLVED",
    "BackendSet",
    "Container",
    "backend_secrets",
    "check_backend",
    "close_backend",
    "database_provider_for",
    "provider_for",
    "served_provider",
    "slot_provider",
    "verify_backend",
]
