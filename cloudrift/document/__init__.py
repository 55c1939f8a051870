"""Document databases through the native MongoDB drivers, configured right per service.

``get_mongodb(provider, **options)`` returns the driver's own async client — PyMongo's
``AsyncMongoClient`` by default, Motor's ``AsyncIOMotorClient`` with
``driver="motor"`` — and ``get_mongodb_sync(...)`` a blocking ``pymongo.MongoClient``,
with identical provider and auth routing. No wrapper: operation errors stay native
``pymongo.errors``. Connection problems surface as
:class:`~cloudrift.core.exceptions.DocumentConnectionError` from :func:`verify` (or
:func:`connect_mongodb`, which builds and verifies in one step).

Providers: ``documentdb`` (Amazon DocumentDB), ``cosmos`` (Azure Cosmos DB for MongoDB),
``firestore`` (Firestore with MongoDB compatibility), ``mongodb`` (self-hosted, Atlas),
``memory`` (embedded engine, dev and tests only).

This module imports no SDK; drivers are imported when a client is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeAlias

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.factory import ProviderSpec, check_options, require_modules, resolve_provider

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient, MongoClient

    from cloudrift.document.base import ConnectionPlan

    #: What ``get_mongodb`` returns: PyMongo Async, Motor, or the embedded engine
    #: (Motor-style). Motor is untyped, so this is effectively ``Any`` for Motor code.
    AsyncDocumentClient: TypeAlias = AsyncMongoClient[dict[str, Any]] | Any
    SyncDocumentClient: TypeAlias = MongoClient[dict[str, Any]] | Any
else:
    AsyncDocumentClient = Any
    SyncDocumentClient = Any

#: Provider name -> the module building its connection plan (none imports an SDK).
PROVIDERS: Final[dict[str, ProviderSpec]] = {
    "documentdb": ProviderSpec("cloudrift.document.documentdb", "plan", "aws"),
    "cosmos": ProviderSpec("cloudrift.document.cosmos", "plan", "azure"),
    "firestore": ProviderSpec("cloudrift.document.firestore", "plan", "gcp"),
    "mongodb": ProviderSpec("cloudrift.document.mongodb", "plan", "mongo"),
    "memory": ProviderSpec("cloudrift.document.memory", "build_async", "embedded"),
}
MEMORY: Final = "memory"
_MEMORY_MODULES: Final = ("mongomock", "mongomock_motor")


def _plan(provider: str, options: dict[str, Any]) -> ConnectionPlan:
    target = resolve_provider("document", provider, {k: v for k, v in PROVIDERS.items()})
    check_options(f"the {provider!r} document provider", target, options)
    plan: ConnectionPlan = target(**options)
    return plan


def _memory_options(options: dict[str, Any]) -> None:
    if options:
        raise ConfigurationError(
            f"the 'memory' document provider takes no options, got {', '.join(sorted(options))}"
        )
    require_modules("the 'memory' document provider", _MEMORY_MODULES, "embedded")


def get_mongodb(provider: str, *, driver: str = "pymongo", **options: Any) -> AsyncDocumentClient:
    """A configured async client for ``provider``; build it once and share it.

    ``driver="pymongo"`` (default) returns PyMongo's ``AsyncMongoClient`` (close it with
    ``await client.close()``); ``driver="motor"`` returns Motor's ``AsyncIOMotorClient``
    (``client.close()``, not awaited). :func:`aclose_client` closes either. The
    ``memory`` provider returns the embedded engine whatever the driver. Unknown
    providers, options or drivers and missing extras raise ConfigurationError.
    """
    if provider == MEMORY:
        _memory_options(options)
        from cloudrift.document.clients import DRIVERS

        if driver not in DRIVERS:
            raise ConfigurationError(
                f"unknown document driver {driver!r}; valid drivers: {', '.join(sorted(DRIVERS))}"
            )
        from cloudrift.document import memory

        return memory.build_async()
    plan = _plan(provider, options)
    from cloudrift.document.clients import build_async

    return build_async(plan, driver)


def get_mongodb_sync(provider: str, **options: Any) -> SyncDocumentClient:
    """A configured blocking ``pymongo.MongoClient`` with the same routing as get_mongodb."""
    if provider == MEMORY:
        _memory_options(options)
        from cloudrift.document import memory

        return memory.build_sync()
    plan = _plan(provider, options)
    from cloudrift.document.clients import build_sync

    return build_sync(plan)


async def connect_mongodb(
    provider: str, *, driver: str = "pymongo", verify_timeout: float = 10.0, **options: Any
) -> AsyncDocumentClient:
    """Build the client and verify it answers; on failure close it and raise.

    Raises DocumentConnectionError naming the host (never the password) when the
    server is unreachable, refuses the credentials or fails TLS verification.
    """
    client = get_mongodb(provider, driver=driver, **options)
    try:
        await verify(client, timeout=verify_timeout)
    except BaseException:
        await aclose_client(client)
        raise
    return client


# The timeout parameter is the contract the FastAPI health router calls with.
async def ping(client: Any, *, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
    """True when the server answers a ping within ``timeout`` s; False on any connection problem."""
    from cloudrift.document.clients import ping as _ping

    return await _ping(client, timeout=timeout)


async def verify(client: Any, *, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - as ping
    """Raise DocumentConnectionError naming the host when the server cannot be used."""
    from cloudrift.document.clients import verify as _verify

    await _verify(client, timeout=timeout)


async def aclose_client(client: Any) -> None:
    """Close any client returned here: awaits PyMongo Async's close(), calls Motor's."""
    from cloudrift.document.clients import aclose_client as _aclose

    await _aclose(client)


__all__ = [
    "PROVIDERS",
    "AsyncDocumentClient",
    "SyncDocumentClient",
    "aclose_client",
    "connect_mongodb",
    "get_mongodb",
    "get_mongodb_sync",
    "ping",
    "verify",
]
