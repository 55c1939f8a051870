"""Backend lifecycle: unopened → opened → closed, done once for every category.

Every backend derives from :class:`AsyncBackend`. It gives:

* ``close()`` that is idempotent, marks the backend closed *before* tearing down (so a
  teardown that raises still leaves it closed and never half-open), and lets the
  teardown error surface only when nothing else is in flight;
* ``async with`` support whose exit never masks the error raised in the block;
* ``_ensure_open()`` so a closed backend raises :class:`BackendClosedError` instead of
  silently building a new client (public operations get this check from
  :func:`cloudrift.core.operation.operation`);
* one escape hatch, ``await backend.native()``: the provider's SDK client (built by its
  :class:`LazyClient`), or FeatureNotSupportedError for a backend without one;
* ``describe()``: what the backend tells telemetry about itself (the ``_describe()``
  hook), never a credential;
* :class:`LazyClient`, a once-only, lock-protected lazy construction of a long-lived
  SDK client held in an ``AsyncExitStack`` (SDK clients must be built inside a running
  event loop, so factories cannot build them eagerly). A failed setup unwinds what it
  had entered and leaves the holder unopened, so the next call retries and ``close()``
  has nothing half-built to trip over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

from cloudrift.core.exceptions import BackendClosedError, FeatureNotSupportedError
from cloudrift.core.operation import BackendDescription

log = logging.getLogger("cloudrift")

T = TypeVar("T")


class AsyncBackend:
    """Base of every backend: explicit closed state, idempotent close, ``async with``.

    Every subclass's ``__init__`` calls ``super().__init__()`` first.
    """

    #: Human name used in error messages, e.g. ``"s3 storage"``; set by subclasses.
    backend_name: str = "backend"
    #: The category, as in settings: ``"storage"``, ``"queue"``, ``"cache"``, ...
    category: ClassVar[str] = "backend"
    #: False when built with ``telemetry=False`` (or settings ``telemetry.enabled: false``):
    #: :mod:`cloudrift.core.telemetry` then records nothing for this backend.
    telemetry_enabled: bool = True
    #: The named backend in settings (``cloudrift.backend`` on spans), when built from them.
    telemetry_name: str | None = None

    def __init__(self) -> None:
        self._closed = False
        self._description: BackendDescription | None = None

    @property
    def closed(self) -> bool:
        """True once ``close()`` has been called."""
        return self._closed

    def _closed_error(self) -> BackendClosedError:
        return BackendClosedError(
            f"{self.backend_name} is closed; build a new backend with the factory "
            "instead of reusing one after close()"
        )

    def _ensure_open(self) -> None:
        """Raise BackendClosedError if ``close()`` was called."""
        if self._closed:
            raise self._closed_error()

    def describe(self) -> BackendDescription:
        """What this backend tells telemetry about itself: system, destination, server."""
        if self._description is None:
            self._description = self._describe()
        return self._description

    def _describe(self) -> BackendDescription:
        """Hook: providers name their destination (bucket, queue...) and server."""
        return BackendDescription(system=str(getattr(self, "provider", type(self).__name__)))

    async def native(self) -> Any:
        """The provider's own SDK client: a non-portable escape hatch (do not close it).

        Raises FeatureNotSupportedError for a backend without one (memory, local files)
        and BackendClosedError after ``close()``.
        """
        self._ensure_open()
        return await self._native_client()

    async def _native_client(self) -> Any:
        """Hook: the SDK client, usually ``await self._client.get()``."""
        raise FeatureNotSupportedError(
            f"{self.backend_name} has no native client to hand out; native() is offered by "
            "the cloud and Redis backends"
        )

    async def close(self) -> None:
        """Release every connection. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        await self._aclose()

    async def _aclose(self) -> None:
        """Hook: release provider resources. Runs at most once."""

    async def __aenter__(self) -> Self:
        self._ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close()
            return
        # The block already failed: a failing close must not replace that error.
        try:
            await self.close()
        except Exception:
            log.exception("error while closing %s after a failure", self.backend_name)


class LazyClient(Generic[T]):
    """A long-lived client built on first use, once, and torn down by ``aclose()``."""

    def __init__(self, factory: Callable[[AsyncExitStack], Awaitable[T]]) -> None:
        self._factory = factory
        self._client: T | None = None
        self._stack: AsyncExitStack | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False

    @property
    def opened(self) -> bool:
        """True when the client has been built and not torn down."""
        return self._client is not None

    async def get(self) -> T:
        """The client, built on the first call (concurrent first calls build it once)."""
        if self._client is not None:
            return self._client
        if self._closed:
            raise BackendClosedError("the client was closed; build a new backend")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                if self._closed:
                    raise BackendClosedError("the client was closed; build a new backend")
                stack = AsyncExitStack()
                try:
                    client = await self._factory(stack)
                except BaseException:
                    await stack.aclose()
                    raise
                self._stack, self._client = stack, client
        return self._client

    async def aclose(self) -> None:
        """Tear the client down; safe to call twice or when it was never built."""
        self._closed = True
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()


__all__ = ["AsyncBackend", "LazyClient"]
