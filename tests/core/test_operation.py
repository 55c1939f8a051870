"""Every public operation of every category runs through one wrapper: closed check,
observation point (telemetry), and cancellation that always propagates unchanged."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest

from cloudrift.cache import Cache
from cloudrift.cache.memory import MemoryCache
from cloudrift.core.exceptions import BackendClosedError, FeatureNotSupportedError
from cloudrift.core.lifecycle import AsyncBackend
from cloudrift.core.operation import BackendDescription, Observer, operation, set_observer
from cloudrift.email import Email
from cloudrift.kv import KVStore
from cloudrift.kv.memory import MemoryKV
from cloudrift.messaging import Queue
from cloudrift.messaging.memory import MemoryQueue
from cloudrift.storage import Storage
from cloudrift.storage.memory import MemoryStorage
from tests.conformance import NOT_OPERATIONS


class Probe(AsyncBackend):
    """A backend whose operations wait on events the test controls."""

    backend_name = "probe backend"
    category = "probe"
    provider = "probe"

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.released: list[str] = []

    @operation
    async def work(self, value: int, *, twice: bool = False) -> int:
        """Wait for the gate, then answer."""
        self.started.set()
        try:
            await self.gate.wait()
        finally:
            self.released.append("work")
        return value * (2 if twice else 1)

    @operation
    async def fail(self) -> None:
        raise KeyError("boom")

    @operation
    async def stream(self, count: int) -> AsyncIterator[int]:
        try:
            for i in range(count):
                self.started.set()
                await self.gate.wait()
                yield i
        finally:
            self.released.append("stream")

    @operation(name="renamed")
    async def _private_step(self) -> str:
        return "ok"

    def _describe(self) -> BackendDescription:
        return BackendDescription.at("probe", "dest", "redis://user:pw@host.example:6380/0")


class Recorder:
    """An observer recording (operation, outcome) and optionally suppressing errors."""

    def __init__(self, *, suppress: bool = False) -> None:
        self.events: list[tuple[str, str, str, str | None]] = []
        self.suppress = suppress

    def __call__(self, backend: AsyncBackend, name: str) -> Any:
        @contextmanager
        def scope() -> Iterator[None]:
            self.events.append(("start", backend.category, name, None))
            try:
                yield
            except BaseException as exc:
                self.events.append(("end", backend.category, name, type(exc).__name__))
                if self.suppress:
                    return
                raise
            self.events.append(("end", backend.category, name, None))

        return scope()


@pytest.fixture
def observe() -> Iterator[Any]:
    """Install observers for one test, always restoring the one before (telemetry's)."""
    before = set_observer(None)

    def install(observer: Observer) -> None:
        set_observer(observer)

    yield install
    set_observer(before)


def public_async_methods(cls: type) -> dict[str, Any]:
    found = {}
    for name in dir(cls):
        if name.startswith("_") or name in NOT_OPERATIONS:
            continue
        attr = inspect.getattr_static(cls, name)
        target = getattr(attr, "__wrapped__", attr)
        if inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target):
            found[name] = attr
    return found


@pytest.mark.parametrize("cls", [Storage, Queue, Cache, KVStore, Email])
def test_every_public_operation_of_every_category_is_wrapped(cls: type) -> None:
    """Each public async method of each category base class runs through operation()."""
    methods = public_async_methods(cls)
    assert methods, cls
    unwrapped = [name for name, fn in methods.items() if not hasattr(fn, "__wrapped__")]
    assert unwrapped == []


def test_wrapped_methods_keep_their_signature_and_stay_coroutine_functions() -> None:
    """Signatures, docs and "is a coroutine function" survive (autospec mocks are async)."""
    assert inspect.signature(Storage.upload) == inspect.signature(Storage.upload.__wrapped__)  # type: ignore[attr-defined]
    assert Storage.download.__doc__ and "ObjectNotFoundError" in Storage.download.__doc__
    assert asyncio.iscoroutinefunction(Cache.get)
    fake = mock.create_autospec(MemoryStorage, instance=True)
    assert isinstance(fake.download, mock.AsyncMock)


async def test_arguments_pass_through_by_position_and_keyword() -> None:
    """Positional, keyword and default arguments reach the method unchanged."""
    probe = Probe()
    probe.gate.set()
    assert await probe.work(3) == 3
    assert await probe.work(value=3, twice=True) == 6
    assert [i async for i in probe.stream(2)] == [0, 1]


async def test_closed_backend_raises_when_awaited_before_arguments_are_checked() -> None:
    """After close() an operation raises BackendClosedError when awaited (not when
    called), even with arguments that would be invalid."""
    storage = MemoryStorage()
    await storage.close()
    call = storage.download("../not a valid key")
    with pytest.raises(BackendClosedError, match="memory storage is closed"):
        await call
    stream = storage.iter("")
    with pytest.raises(BackendClosedError):
        await anext(stream)
    queue = MemoryQueue()
    await queue.close()
    with pytest.raises(BackendClosedError):
        await queue.receive(max_messages=0)


async def test_closed_backend_raises_for_every_operation_of_a_category() -> None:
    """Every cache operation refuses to run after close()."""
    cache = MemoryCache()
    await cache.close()
    for call in (cache.get("k"), cache.set("k", b"v"), cache.ping(), cache.health_check()):
        with pytest.raises(BackendClosedError):
            await call


async def test_observer_sees_category_provider_name_and_description(observe: Any) -> None:
    """The observer's scope encloses each operation and knows where it ran."""
    seen: list[tuple[str, str, str, BackendDescription]] = []

    @contextmanager
    def scope() -> Iterator[None]:
        yield

    def observer(backend: AsyncBackend, name: str) -> Any:
        seen.append((backend.category, getattr(backend, "provider", ""), name, backend.describe()))
        return scope()

    observe(observer)
    storage = MemoryStorage()
    await storage.upload("k", b"v")
    kv = MemoryKV()
    await kv.get("k")
    probe = Probe()
    assert await probe._private_step() == "ok"
    assert [s[:3] for s in seen] == [
        ("storage", "memory", "upload"),
        ("kv", "memory", "get"),
        ("probe", "probe", "renamed"),
    ]
    assert seen[0][3] == BackendDescription(system="memory")
    assert seen[2][3] == BackendDescription("probe", "dest", "host.example", 6380)


async def test_observer_gets_the_error_which_still_propagates(observe: Any) -> None:
    """A failing operation reports its error to the scope and raises it unchanged."""
    recorder = Recorder(suppress=True)
    observe(recorder)
    with pytest.raises(KeyError, match="boom"):
        await Probe().fail()
    assert recorder.events[-1] == ("end", "probe", "fail", "KeyError")


async def test_cancellation_propagates_unchanged_even_if_the_observer_would_swallow_it(
    observe: Any,
) -> None:
    """Cancelling an operation cancels the caller's task; the hook's cleanup runs."""
    recorder = Recorder(suppress=True)
    observe(recorder)
    probe = Probe()
    task = asyncio.ensure_future(probe.work(1))
    await probe.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert probe.released == ["work"]
    assert recorder.events[-1] == ("end", "probe", "work", "CancelledError")


async def test_cancellation_propagates_without_an_observer() -> None:
    """With no observer, cancellation reaches the caller just the same."""
    probe = Probe()
    task = asyncio.ensure_future(probe.work(1))
    await probe.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.released == ["work"]


@pytest.mark.parametrize("observed", [True, False])
async def test_cancelled_stream_releases_its_resources(observe: Any, observed: bool) -> None:
    """Cancelling a consumer mid-stream propagates and closes the provider's stream,
    with or without an observer."""
    recorder = Recorder(suppress=True)
    if observed:
        observe(recorder)
    probe = Probe()

    async def consume() -> list[int]:
        return [i async for i in probe.stream(3)]

    task = asyncio.ensure_future(consume())
    await probe.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.released == ["stream"]
    if observed:
        assert recorder.events[-1] == ("end", "probe", "stream", "CancelledError")


async def test_stream_scope_lasts_until_exhausted_or_closed(observe: Any) -> None:
    """A stream's scope ends when it is exhausted, or normally when closed early."""
    recorder = Recorder()
    observe(recorder)
    probe = Probe()
    probe.gate.set()
    assert [i async for i in probe.stream(2)] == [0, 1]
    assert recorder.events == [("start", "probe", "stream", None), ("end", "probe", "stream", None)]
    stream = probe.stream(5)
    assert await anext(stream) == 0
    assert recorder.events[-1][0] == "start"
    await stream.aclose()  # type: ignore[attr-defined]
    assert recorder.events[-1] == ("end", "probe", "stream", None)
    assert probe.released == ["stream", "stream"]


async def test_a_failing_observer_never_breaks_the_operation(
    observe: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An observer that raises is logged and the operation still runs and answers."""

    def broken(backend: AsyncBackend, name: str) -> Any:
        raise RuntimeError("exporter down")

    observe(broken)
    caplog.set_level(logging.ERROR, logger="cloudrift")
    cache = MemoryCache()
    await cache.set("k", b"v")
    assert await cache.get("k") == b"v"
    assert "observer failed" in caplog.text


async def test_pipeline_is_one_operation(observe: Any) -> None:
    """A cache pipeline is observed once, as "pipeline", when it runs."""
    recorder = Recorder()
    observe(recorder)
    cache = MemoryCache()
    async with cache.pipeline() as pipe:
        pipe.set("a", b"1").incr("n")
    assert pipe.results == [True, 1]
    assert [e[2] for e in recorder.events] == ["pipeline", "pipeline"]


async def test_description_never_keeps_credentials() -> None:
    """A URL's user and password never reach the description."""
    described = BackendDescription.at("redis", "q", "rediss://default:s3cret@cache.local:6380")
    assert "s3cret" not in repr(described) and described.server_address == "cache.local"
    assert BackendDescription.at("smtp", None, "mail.local:2525").server_port == 2525


async def test_memory_backends_have_no_native_client() -> None:
    """native() on an in-process backend raises FeatureNotSupportedError (nothing to
    escape to), and BackendClosedError once closed."""
    for backend in (MemoryStorage(), MemoryQueue(), MemoryCache(), MemoryKV()):
        with pytest.raises(FeatureNotSupportedError, match="no native client"):
            await backend.native()
        await backend.close()
        with pytest.raises(BackendClosedError):
            await backend.native()


def test_operation_refuses_a_plain_function() -> None:
    """Only async methods and async generators can be operations."""
    with pytest.raises(TypeError, match="async def"):
        operation(lambda self: None)


async def test_a_quiet_gate_skips_the_observer_while_its_key_is_unchanged(observe: Any) -> None:
    """While the gate's key returns the object in its holder the observer is not called
    (the operation still runs); once the key moves on, it is called again."""
    calls: list[str] = []
    key = [object()]

    def observer(backend: AsyncBackend, name: str) -> Any:
        calls.append(name)
        return None

    set_observer(observer, quiet=(lambda: key[0], [key[0]]))
    try:
        cache = MemoryCache()
        assert await cache.set("k", b"v") is True
        assert calls == []
        key[0] = object()
        assert await cache.get("k") == b"v"
        assert calls == ["get"]
    finally:
        set_observer(None)
