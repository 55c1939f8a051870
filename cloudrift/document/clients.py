"""Building driver clients from a plan, and the checks that work on every client type.

Imported only when a client is built or checked, so PyMongo, Motor and mongomock are
imported lazily. ``ping``, ``verify`` and ``aclose_client`` accept every client this
package returns: PyMongo's ``AsyncMongoClient`` and ``MongoClient``, Motor's
``AsyncIOMotorClient``, and the embedded engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import warnings
from collections.abc import Iterator
from typing import Any, Final, NoReturn

from cloudrift.core.exceptions import (
    BackendClosedError,
    ConfigurationError,
    DocumentConnectionError,
)
from cloudrift.core.factory import require_modules
from cloudrift.core.secrets import redact
from cloudrift.document.base import ConnectionPlan

DRIVERS: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    # driver name -> (modules it needs, the extra that installs them)
    "pymongo": (("pymongo",), "mongo"),
    "motor": (("motor", "pymongo"), "motor"),
}
#: Attribute under which a built client keeps its plan (hosts and secrets for messages).
PLAN_ATTR: Final = "_cloudrift_plan"
# PyMongo's "AuthenticationFailed" server error code.
AUTH_FAILED: Final = 18


def _constructor_failed(plan: ConnectionPlan, exc: Exception) -> NoReturn:
    """Translate an error raised while building a client (no network yet, except SRV DNS)."""
    text = plan.redact(str(exc))
    inner = exc.__cause__ or exc.__context__
    dns_failed = "DNS" in text or type(inner).__module__.startswith("dns.")
    # The blocking client resolves mongodb+srv:// records while it is being built.
    if plan.uri.reveal().startswith("mongodb+srv://") and dns_failed:
        raise DocumentConnectionError(
            f"could not resolve the mongodb+srv record for {plan.hosts}: {text}", host=plan.hosts
        ) from exc
    raise ConfigurationError(
        f"the {plan.provider!r} document provider rejected its options: {text}"
    ) from exc


def _remember(client: Any, plan: ConnectionPlan) -> Any:
    # The native client is returned unwrapped, so the plan (hosts for messages, secrets
    # to redact) travels with it as a private attribute.
    client.__dict__[PLAN_ATTR] = plan
    return client


def build_async(plan: ConnectionPlan, driver: str) -> Any:
    """An async client for ``plan`` on ``driver`` ("pymongo" or "motor")."""
    if driver not in DRIVERS:
        raise ConfigurationError(
            f"unknown document driver {driver!r}; valid drivers: {', '.join(sorted(DRIVERS))}"
        )
    modules, extra = DRIVERS[driver]
    require_modules(f"the {driver!r} document driver", modules, extra)
    if plan.requires:
        require_modules(f"the {plan.provider!r} document provider", plan.requires, plan.extra)
    client: Any
    try:
        with _quiet_cosmos_notice(plan):
            client = _construct(plan, driver)
    except Exception as exc:
        _constructor_failed(plan, exc)
    return _remember(client, plan)


def _construct(plan: ConnectionPlan, driver: str) -> Any:
    if driver == "motor":
        from motor.motor_asyncio import AsyncIOMotorClient

        return AsyncIOMotorClient(plan.uri.reveal(), **plan.driver_kwargs())
    from pymongo import AsyncMongoClient

    return AsyncMongoClient(plan.uri.reveal(), **plan.driver_kwargs())


@contextlib.contextmanager
def _quiet_cosmos_notice(plan: ConnectionPlan) -> Iterator[None]:
    """Mute PyMongo's "you appear to be connected to a CosmosDB cluster" notice for cosmos.

    The caller chose the cosmos provider on purpose; the notice would fire for every
    client built, so it is muted for that provider only.
    """
    with warnings.catch_warnings():
        if plan.provider == "cosmos":
            warnings.filterwarnings("ignore", message="You appear to be connected to a CosmosDB")
        yield


def build_sync(plan: ConnectionPlan) -> Any:
    """A blocking ``pymongo.MongoClient`` for ``plan``."""
    require_modules("the blocking document client", ("pymongo",), "mongo")
    if plan.requires:
        require_modules(f"the {plan.provider!r} document provider", plan.requires, plan.extra)
    from pymongo import MongoClient

    try:
        with _quiet_cosmos_notice(plan):
            client = MongoClient(plan.uri.reveal(), **plan.driver_kwargs())
    except Exception as exc:
        _constructor_failed(plan, exc)
    return _remember(client, plan)


# ------------------------------------------------------------------- checks, closing


def _is_blocking(client: Any) -> bool:
    """True for PyMongo's and mongomock's blocking MongoClient."""
    module = type(client).__module__
    return module.startswith(("pymongo.synchronous", "mongomock."))


def _plan_of(client: Any) -> ConnectionPlan | None:
    plan = getattr(client, "__dict__", {}).get(PLAN_ATTR)
    return plan if isinstance(plan, ConnectionPlan) else None


def client_hosts(client: Any) -> str:
    """The hosts a client connects to, for messages; never its credentials."""
    plan = _plan_of(client)
    if plan is not None:
        return plan.hosts
    if type(client).__module__.startswith(("mongomock", "cloudrift.document.memory")):
        return "memory (embedded engine)"
    try:
        servers = client.topology_description.server_descriptions()
        return ",".join(f"{h}:{p}" for h, p in servers) or "the document database"
    except Exception:
        return "the document database"


async def _ping(client: Any, timeout: float) -> None:  # noqa: ASYNC109 - see ping()
    if _is_blocking(client):
        await asyncio.wait_for(asyncio.to_thread(client.admin.command, "ping"), timeout)
    else:
        await asyncio.wait_for(client.admin.command("ping"), timeout)


def _connection_errors() -> tuple[type[BaseException], ...]:
    from pymongo.errors import PyMongoError

    return (PyMongoError, OSError, TimeoutError)


# The timeout parameter is the contract the FastAPI health router calls with.
async def ping(client: Any, *, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
    """True when the server answers a ``ping`` within ``timeout`` seconds; False otherwise.

    Never raises for connectivity, authentication or TLS problems; works on every
    client type this package returns.
    """
    try:
        await _ping(client, timeout)
    except _connection_errors():
        return False
    return True


async def verify(client: Any, *, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - as ping
    """Ping the server; raise DocumentConnectionError naming the host if that fails.

    The startup check: unreachable hosts, failed authentication and TLS verification
    failures all surface here, within ``timeout`` seconds (or the client's server
    selection timeout, if shorter), with the driver's error chained. The message never
    contains a password. A client that was already closed raises BackendClosedError.
    """
    from pymongo.errors import InvalidOperation, OperationFailure, ServerSelectionTimeoutError

    hosts = client_hosts(client)
    plan = _plan_of(client)
    try:
        await _ping(client, timeout)
    except TimeoutError as exc:
        raise DocumentConnectionError(
            f"the document database at {hosts} did not answer within {timeout:g}s; check "
            "the host, port, firewall / security group and TLS settings",
            host=hosts,
        ) from exc
    except InvalidOperation as exc:
        if "after close" in str(exc):
            raise BackendClosedError(
                f"the document client for {hosts} was closed; build a new one with the factory"
            ) from exc
        raise DocumentConnectionError(
            f"the document database at {hosts} could not be checked: {exc}", host=hosts
        ) from exc
    except OperationFailure as exc:
        text = plan.redact(str(exc)) if plan else redact(str(exc))
        if exc.code == AUTH_FAILED:
            raise DocumentConnectionError(
                f"authentication failed at {hosts}: check the user name and password "
                f"(or key / IAM role) and the auth source. Server said: {text}",
                host=hosts,
            ) from exc
        raise DocumentConnectionError(
            f"the document database at {hosts} refused the connection check: {text}",
            host=hosts,
        ) from exc
    except ServerSelectionTimeoutError as exc:
        text = plan.redact(str(exc)) if plan else redact(str(exc))
        hint = (
            "the server's TLS certificate was not trusted: pass tls_ca_file= with the CA "
            "bundle (for DocumentDB, the RDS global bundle)"
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text
            else "check the host, port, TLS setting and that the server is running"
        )
        raise DocumentConnectionError(
            f"could not connect to the document database at {hosts}: {hint}. Driver said: {text}",
            host=hosts,
        ) from exc
    except _connection_errors() as exc:
        text = plan.redact(str(exc)) if plan else redact(str(exc))
        raise DocumentConnectionError(
            f"could not connect to the document database at {hosts}: {text}", host=hosts
        ) from exc


async def aclose_client(client: Any) -> None:
    """Close any client this package returns, the right way for its type.

    PyMongo Async's ``close()`` is a coroutine and must be awaited; Motor's and the
    blocking client's ``close()`` are plain calls. Closing twice is harmless.
    """
    result = client.close()
    if inspect.isawaitable(result):
        await result
