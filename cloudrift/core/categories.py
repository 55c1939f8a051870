"""The category registry: everything the settings, the FastAPI container, its dependencies,
health router and testing helpers need to know about a category, as data.

A category (storage, queue, ...) is one :class:`CategorySpec` here plus its own package;
the settings model, the container, the dependencies, health, the testing helpers and
the pytest plugin loop over :func:`specs`, so adding a category touches no other file.
Each spec names its code by dotted path (``"cloudrift.storage:get_storage"``) and
nothing is imported until a backend is built, so importing this module stays free.

The thing a category hands to routes is a :class:`Slot`: its backend, plus any *views*
derived from it (a document client's configured database).

A built-in category is an entry in ``_BUILTIN``; a plugin calls :func:`register` before
the settings model is first used (it is built from the registry once). The typed
module-level names in ``cloudrift_fastapi.deps`` (``get_storage_dep``...) exist for type
checkers; a category without them is still served under the names its slots declare.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cloudrift.core.exceptions import (
    CacheConnectionError,
    CloudRiftError,
    ConfigurationError,
    DocumentConnectionError,
    EmailConnectionError,
    MessagingConnectionError,
    StorageConnectionError,
)


@dataclass(frozen=True)
class Slot:
    """One object a category serves to routes: its backend, or a view of the backend.

    ``key`` names the container provider (``container.storage``), the
    ``override_backends`` keyword and, with ``__<name>``, a named backend's provider.
    """

    key: str
    #: The default backend's dependency (``get_storage_dep``).
    dependency: str
    #: The factory of named backends' dependencies (``storage_dep``).
    named_dependency: str
    #: The ``Annotated`` alias (``StorageDep``).
    alias: str
    #: ``"module:Name"`` of the type routes receive; None for native clients (Any).
    interface: str | None = None
    #: A view only: the backend setting that names it (the document ``database``).
    field: str | None = None
    #: What to tell a user asking for it when nothing serves it; None: the generic text.
    not_configured: str | None = None

    @property
    def names(self) -> tuple[str, str, str]:
        """The public names of its dependencies: default, named factory, alias."""
        return (self.dependency, self.named_dependency, self.alias)


@dataclass(frozen=True)
class CategorySpec:
    """A category as the integration layers see it.

    Behaviour hooks (``close``, ``ping``, ``diagnose``) are either ``"module:function"``
    (called with the backend) or ``".method"`` (called on the backend); both are awaited.
    """

    #: The settings section and env prefix (``CLOUDRIFT_STORAGE__...``).
    name: str
    #: ``"module:function"`` building a backend: ``factory(provider, *positional, **options)``.
    factory: str
    #: What routes receive (the backend itself).
    backend: Slot
    #: Raised when startup cannot reach a backend and no more specific cause is known.
    unavailable: type[CloudRiftError]
    #: Per-backend settings that are not provider options, with what each means; any
    #: other category's backend giving one is refused.
    fields: Mapping[str, str] = field(default_factory=dict)
    #: The ``fields`` passed positionally to the factory, in order (cache's auth_method).
    positional: tuple[str, ...] = ()
    #: Options the factory consumes itself before the provider sees the rest.
    factory_options: frozenset[str] = frozenset()
    #: Closes a backend (whoever built it closes it).
    close: str = ".close"
    #: Health probe: True when the service answers, False (never raises) when not.
    ping: str = ".health_check"
    #: Raises the cause's own cloudrift error when the probe failed; None: only the
    #: probe's answer is known, and ``unavailable`` is raised.
    diagnose: str | None = None
    #: Views of the backend served beside it (each read from ``backend[settings field]``).
    views: tuple[Slot, ...] = ()
    #: One backend's settings on the in-memory provider (memory_settings, memory_client).
    memory: Mapping[str, Any] = field(default_factory=lambda: {"provider": "memory"})
    #: A ``memory`` option that takes each backend's own name on the memory twin, so
    #: named backends stay apart (each named subscription gets every message).
    memory_named: str | None = None
    #: ``"module:function"`` naming the provider of an object without a ``provider``
    #: attribute (a native client), or None.
    identify: str | None = None
    #: ``"module:NAME"`` of the provider table (``{name: ProviderSpec}``) the factory
    #: dispatches on; None: ``PROVIDERS`` in the factory's module.
    providers: str | None = None

    @property
    def provider_table(self) -> str:
        """``"module:NAME"`` of this category's provider table."""
        return self.providers or f"{self.factory.partition(':')[0]}:PROVIDERS"

    @property
    def slots(self) -> tuple[Slot, ...]:
        """The backend's slot, then its views."""
        return (self.backend, *self.views)

    def provider_of(self, backend: Any) -> str | None:
        """The provider name ``backend`` declares (or its spec recognises), else None."""
        declared = getattr(backend, "provider", None)
        if isinstance(declared, str):
            return declared
        if self.identify is not None:
            found = load(self.identify)(backend)
            return found if isinstance(found, str) else None
        return None


def load(target: str) -> Any:
    """Import ``"module:attribute"`` and return the attribute."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


async def call_hook(hook: str, backend: Any) -> Any:
    """Run a spec's hook on ``backend`` (``".method"`` or ``"module:function"``)."""
    result = getattr(backend, hook[1:])() if hook.startswith(".") else load(hook)(backend)
    if inspect.isawaitable(result):
        result = await result
    return result


def _document_provider(client: Any) -> str | None:
    # Native driver clients carry no provider attribute; the embedded engine is ours.
    return "memory" if type(client).__module__ == "cloudrift.document.memory" else None


def _slot(key: str, interface: str | None = None, **more: Any) -> Slot:
    """The slot ``key`` with the conventional dependency names."""
    title = "Mongo" if key == "mongodb" else key.title()
    return Slot(key, f"get_{key}_dep", f"{key}_dep", f"{title}Dep", interface, **more)


# ``diagnose="._health"``: each provider's health hook raises the translated error
# (no credentials, permission denied, unreachable) that ``health_check()`` turns into False.
_BUILTIN: Final = (
    CategorySpec(
        name="storage",
        factory="cloudrift.storage:get_storage",
        backend=_slot("storage", "cloudrift.storage:Storage"),
        unavailable=StorageConnectionError,
        diagnose="._health",
    ),
    CategorySpec(
        name="queue",
        factory="cloudrift.messaging:get_queue",
        backend=_slot("queue", "cloudrift.messaging:Queue"),
        unavailable=MessagingConnectionError,
        diagnose="._health",
    ),
    CategorySpec(
        name="topic",
        factory="cloudrift.messaging:get_topic",
        backend=_slot("topic", "cloudrift.messaging:Topic"),
        providers="cloudrift.messaging:TOPIC_PROVIDERS",
        unavailable=MessagingConnectionError,
        diagnose="._health",
        memory={"provider": "memory", "topic": "events"},
    ),
    CategorySpec(
        name="subscription",
        factory="cloudrift.messaging:get_subscription",
        backend=_slot("subscription", "cloudrift.messaging:Queue"),
        providers="cloudrift.messaging:SUBSCRIPTION_PROVIDERS",
        unavailable=MessagingConnectionError,
        diagnose="._health",
        # The memory topic above fans out to it: both meet in the process's registry.
        memory={"provider": "memory", "topic": "events", "subscription": "default"},
        memory_named="subscription",
    ),
    CategorySpec(
        name="document",
        factory="cloudrift.document:get_mongodb",
        backend=_slot("mongodb"),
        unavailable=DocumentConnectionError,
        fields={"database": "the database get_database_dep hands out"},
        factory_options=frozenset({"driver"}),
        close="cloudrift.document:aclose_client",
        ping="cloudrift.document:ping",
        diagnose="cloudrift.document:verify",
        views=(
            _slot(
                "database",
                field="database",
                not_configured=(
                    "no database is configured: set document.database (e.g. "
                    "CLOUDRIFT_DOCUMENT__DATABASE=app) to use get_database_dep"
                ),
            ),
        ),
        memory={"provider": "memory", "database": "test"},
        identify="cloudrift.core.categories:_document_provider",
    ),
    CategorySpec(
        name="cache",
        factory="cloudrift.cache:get_cache",
        backend=_slot("cache", "cloudrift.cache:Cache"),
        unavailable=CacheConnectionError,
        fields={"auth_method": "the seed's auth method (from_url, from_credentials, ...)"},
        positional=("auth_method",),
        diagnose=".ping",
    ),
    CategorySpec(
        name="email",
        factory="cloudrift.email:get_email",
        backend=_slot("email", "cloudrift.email:Email"),
        unavailable=EmailConnectionError,
        diagnose="._health",
        memory={"provider": "memory", "default_from": "noreply@example.test"},
    ),
)

_registry: dict[str, CategorySpec] = {spec.name: spec for spec in _BUILTIN}
_sealed = False


def register(spec: CategorySpec) -> None:
    """Add a category (before the settings model is built, which reads the registry once).

    Raises ConfigurationError for a name, provider key or dependency name already taken,
    or once the settings model exists.
    """
    if spec.name in _registry:
        raise ConfigurationError(f"category {spec.name!r} is already registered")
    taken = {slot.key for s in _registry.values() for slot in s.slots}
    taken |= {n for s in _registry.values() for slot in s.slots for n in slot.names}
    for slot in spec.slots:
        clash = ({slot.key} | set(slot.names)) & taken
        if clash:
            raise ConfigurationError(
                f"category {spec.name!r}: {', '.join(sorted(clash))} already used by another"
            )
    if _sealed:
        raise ConfigurationError(
            f"category {spec.name!r} registered too late: register categories before "
            "cloudrift.config.CloudriftSettings is first used"
        )
    _registry[spec.name] = spec


def seal() -> tuple[CategorySpec, ...]:
    """Every category, after which :func:`register` refuses (the settings model calls it)."""
    global _sealed
    _sealed = True
    return specs()


def specs() -> tuple[CategorySpec, ...]:
    """Every registered category, in build order (backends close in reverse)."""
    return tuple(_registry.values())


def names() -> tuple[str, ...]:
    """Every category's name, in build order."""
    return tuple(_registry)


def get(name: str) -> CategorySpec:
    """The spec of category ``name``; ConfigurationError listing the categories if unknown."""
    found = _registry.get(name)
    if found is None:
        raise ConfigurationError(f"unknown category {name!r}; categories: {', '.join(_registry)}")
    return found


def slot(key: str) -> tuple[CategorySpec, Slot]:
    """The category and slot served under ``key`` (``"mongodb"``, ``"database"``, ...);
    ConfigurationError listing the keys if there is none."""
    for spec in _registry.values():
        for found in spec.slots:
            if found.key == key:
                return spec, found
    raise ConfigurationError(f"unknown backend kind {key!r}; kinds: {', '.join(slot_keys())}")


def slot_keys() -> tuple[str, ...]:
    """Every slot key: each category's backend, then its views."""
    return tuple(s.key for spec in _registry.values() for s in spec.slots)


def field_names() -> frozenset[str]:
    """Every per-backend settings field some category declares (not provider options)."""
    return frozenset(name for spec in _registry.values() for name in spec.fields)


__all__ = [
    "CategorySpec",
    "Slot",
    "call_hook",
    "field_names",
    "get",
    "load",
    "names",
    "register",
    "seal",
    "slot",
    "slot_keys",
    "specs",
]
