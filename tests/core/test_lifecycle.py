"""Backends move unopened → opened → closed; close is idempotent and never masks errors."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

import pytest

from cloudrift.core.exceptions import BackendClosedError
from cloudrift.core.lifecycle import AsyncBackend, LazyClient


class Probe(AsyncBackend):
    backend_name = "probe backend"

    def __init__(self, fail_close: bool = False) -> None:
        super().__init__()
        self.closes = 0
        self.fail_close = fail_close

    async def use(self) -> str:
        self._ensure_open()
        return "ok"

    async def _aclose(self) -> None:
        self.closes += 1
        if self.fail_close:
            raise RuntimeError("teardown failed")


async def test_use_after_close_raises_backend_closed() -> None:
    """A closed backend refuses work instead of silently reconnecting."""
    b = Probe()
    await b.close()
    with pytest.raises(BackendClosedError, match="probe backend is closed"):
        await b.use()


async def test_close_twice_runs_teardown_once() -> None:
    """A second close() is a no-op."""
    b = Probe()
    await b.close()
    await b.close()
    assert b.closes == 1


async def test_failed_teardown_still_leaves_backend_closed() -> None:
    """Teardown that raises still marks the backend closed; a second close is quiet."""
    b = Probe(fail_close=True)
    with pytest.raises(RuntimeError):
        await b.close()
    assert b.closed
    await b.close()


async def test_async_with_failure_is_not_masked_by_close(caplog: pytest.LogCaptureFixture) -> None:
    """The block's error propagates even when close() also fails; the close error is logged."""
    caplog.set_level(logging.ERROR, logger="cloudrift")
    with pytest.raises(ValueError, match="from the block"):
        async with Probe(fail_close=True):
            raise ValueError("from the block")
    assert "error while closing probe backend" in caplog.text


async def test_lazy_client_builds_once_under_concurrency() -> None:
    """Fifty concurrent first uses build the client exactly once."""
    builds = 0

    async def factory(stack: AsyncExitStack) -> object:
        nonlocal builds
        builds += 1
        await asyncio.sleep(0.01)
        return object()

    lazy: LazyClient[object] = LazyClient(factory)
    clients = await asyncio.gather(*(lazy.get() for _ in range(50)))
    assert builds == 1 and len({id(c) for c in clients}) == 1


async def test_lazy_client_failed_setup_unwinds_and_retries() -> None:
    """A setup that fails releases what it entered and the next get() tries again."""
    released: list[str] = []
    attempts = 0

    async def factory(stack: AsyncExitStack) -> str:
        nonlocal attempts
        attempts += 1

        async def release() -> None:
            released.append(f"attempt-{attempts}")

        stack.push_async_callback(release)
        if attempts == 1:
            raise ConnectionError("first attempt fails")
        return "client"

    lazy: LazyClient[str] = LazyClient(factory)
    with pytest.raises(ConnectionError):
        await lazy.get()
    assert released == ["attempt-1"] and not lazy.opened
    assert await lazy.get() == "client"
    await lazy.aclose()
    assert released == ["attempt-1", "attempt-2"]
    with pytest.raises(BackendClosedError):
        await lazy.get()
    await lazy.aclose()
