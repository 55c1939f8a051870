"""cloudrift_lifespan: build once at startup, close everything at shutdown, fail loudly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import cloudrift_fastapi.container as container_module
from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import (
    CacheConnectionError,
    ConfigurationError,
    DocumentConnectionError,
    MessagingConnectionError,
    MessagingPermissionError,
)
from cloudrift.messaging import Message, Queue
from cloudrift_fastapi import (
    StorageDep,
    cloudrift_lifespan,
    memory_settings,
    queue_worker,
)
from tests.servers._process import free_port

SECRET = "sup3r-s3cret-redis-pass"


@pytest.fixture
def closes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Record every backend close (category, backend) in order, still closing for real."""
    seen: list[tuple[str, Any]] = []
    real = container_module.close_backend

    async def recording(category: str, backend: Any) -> None:
        seen.append((category, backend))
        await real(category, backend)

    monkeypatch.setattr(container_module, "close_backend", recording)
    return seen


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    """Record every backend the factories build (category, name, backend)."""
    seen: list[tuple[str, str, Any]] = []
    real = CloudriftSettings.open_backend

    def recording(self: CloudriftSettings, category: str, name: str | None = None) -> Any:
        backend = real(self, category, name)
        seen.append((category, name or "", backend))
        return backend

    monkeypatch.setattr(CloudriftSettings, "open_backend", recording)
    return seen


def test_backends_are_built_at_startup_and_closed_at_shutdown(
    builds: list[tuple[str, str, Any]], closes: list[tuple[str, Any]]
) -> None:
    """Every configured backend is built once on entry and closed on exit."""
    app = FastAPI(lifespan=cloudrift_lifespan(memory_settings()))
    assert builds == []
    with TestClient(app):
        assert [c for c, _, _ in builds] == [
            "storage",
            "queue",
            "topic",
            "subscription",
            "document",
            "cache",
            "email",
        ]
        assert closes == []
        box = app.state.cloudrift
        assert box.storage() is builds[0][2]
    assert len(closes) == 7
    assert all(b.closed for c, _, b in builds if c != "document")
    assert not hasattr(app.state, "cloudrift")


def test_startup_logs_each_backend_and_provider_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Operators see which backends started (name and provider), never an option value."""
    caplog.set_level(logging.INFO, logger="cloudrift.fastapi")
    settings = CloudriftSettings(
        storage="memory",
        email={"provider": "smtp", "host": "h", "username": "u", "password": SECRET},
    )
    with TestClient(FastAPI(lifespan=cloudrift_lifespan(settings))):
        pass
    assert "cloudrift backends ready: storage.default (memory), email.default (smtp)" in (
        caplog.text
    )
    assert SECRET not in caplog.text


def test_shutdown_closes_in_reverse_build_order(
    builds: list[tuple[str, str, Any]], closes: list[tuple[str, Any]]
) -> None:
    """Backends close in the reverse of the configured order, named ones included."""
    settings = memory_settings(
        storage={
            "default": "primary",
            "backends": {"primary": {"provider": "memory"}, "avatars": {"provider": "memory"}},
        }
    )
    with TestClient(FastAPI(lifespan=cloudrift_lifespan(settings))):
        pass
    built = [backend for _, _, backend in builds]
    assert [backend for _, backend in closes] == list(reversed(built))


def test_a_backend_that_cannot_be_built_aborts_startup_naming_it(
    builds: list[tuple[str, str, Any]], closes: list[tuple[str, Any]]
) -> None:
    """A bad option stops startup with the backend's name; the others are closed."""
    settings = memory_settings(
        storage={
            "default": "primary",
            "backends": {
                "primary": {"provider": "memory"},
                "avatars": {"provider": "memory", "buckt": "typo"},
            },
        }
    )
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    with pytest.raises(ConfigurationError) as caught, TestClient(app):
        pass
    text = caught.value.message
    assert "storage backend 'avatars' (memory)" in text
    assert "'buckt'" in text
    built = {id(b) for _, _, b in builds}
    assert len(built) == 7  # every other backend was built...
    assert {id(b) for _, b in closes} == built  # ...and closed again
    assert not hasattr(app.state, "cloudrift")


def test_missing_extra_aborts_startup_naming_backend_and_install_command(
    monkeypatch: pytest.MonkeyPatch, closes: list[tuple[str, Any]]
) -> None:
    """A provider whose SDK is not installed stops startup with the pip command to run."""
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def without_aioboto3(name: str, *args: Any) -> Any:
        return None if name == "aioboto3" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_aioboto3)
    settings = CloudriftSettings(
        cache="memory", storage={"provider": "s3", "bucket": "b", "region": "eu-west-1"}
    )
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    with pytest.raises(ConfigurationError) as caught, TestClient(app):
        pass
    assert "storage backend 'default' (s3)" in caught.value.message
    assert 'pip install "cloudrift[aws]"' in caught.value.message
    assert len(closes) == 1  # the cache that was built is closed again


async def test_unreachable_service_aborts_startup_when_verifying(
    closes: list[tuple[str, Any]],
) -> None:
    """With verify_on_startup, a cache nobody answers on stops startup as a connection error."""
    port = free_port()
    settings = memory_settings(
        verify_on_startup=True,
        cache={
            "provider": "redis",
            "auth_method": "from_url",
            "url": f"redis://:{SECRET}@127.0.0.1:{port}/0",
            "socket_connect_timeout": 1,
        },
    )
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    with pytest.raises(CacheConnectionError) as caught:
        async with app.router.lifespan_context(app):
            pass
    assert "cache backend 'default' (redis)" in caught.value.message
    assert SECRET not in caught.value.message
    assert len(closes) == 7  # the unreachable one too: nothing is left open


async def test_unreachable_document_database_aborts_startup_when_verifying() -> None:
    """A MongoDB nobody answers for stops startup naming the backend, without the password."""
    port = free_port()
    settings = CloudriftSettings(
        verify_on_startup=True,
        storage="memory",
        document={
            "backends": {
                "events": {
                    "provider": "mongodb",
                    "uri": f"mongodb://app:{SECRET}@127.0.0.1:{port}/?directConnection=true",
                    "server_selection_timeout": 0.5,
                    "database": "events",
                }
            }
        },
    )
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    with pytest.raises(DocumentConnectionError) as caught:
        async with app.router.lifespan_context(app):
            pass
    assert "document backend 'events' (mongodb)" in caught.value.message
    assert SECRET not in caught.value.message


async def test_startup_error_text_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SDK error quoting a configured secret is reported with the secret masked."""

    async def leaky_check(category: str, backend: Any) -> bool:
        raise OSError(f"AUTH {SECRET} refused by 10.0.0.5")

    monkeypatch.setattr(container_module, "check_backend", leaky_check)
    settings = CloudriftSettings(
        verify_on_startup=True,
        cache={
            "provider": "redis",
            "auth_method": "from_credentials",
            "host": "h",
            "password": SECRET,
        },
    )
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    with pytest.raises(CacheConnectionError) as caught:
        async with app.router.lifespan_context(app):
            pass
    assert "cache backend 'default' (redis): OSError: AUTH ********** refused" in str(caught.value)
    assert SECRET not in str(caught.value)


async def test_verifying_every_memory_backend_succeeds() -> None:
    """verify_on_startup passes for the memory provider of every category."""
    app = FastAPI(lifespan=cloudrift_lifespan(memory_settings(verify_on_startup=True)))
    async with app.router.lifespan_context(app):
        assert await app.state.cloudrift.storage().health_check()


def test_a_failing_close_is_logged_and_the_rest_still_close(
    builds: list[tuple[str, str, Any]],
    closes: list[tuple[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One close raising does not stop the others; the failure is logged with the name."""
    app = FastAPI(lifespan=cloudrift_lifespan(memory_settings()))
    with TestClient(app):
        queue = app.state.cloudrift.queue()

        async def broken_close() -> None:
            raise RuntimeError(f"socket gone, password={SECRET}")

        queue.close = broken_close
    assert len(closes) == 7
    assert "closing queue backend 'default' failed: RuntimeError" in caplog.text
    assert SECRET not in caplog.text
    storage = next(b for c, _, b in builds if c == "storage")
    assert storage.closed  # closed after the queue in reverse order


def test_startup_is_concurrent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backends are verified at the same time: each check waits for all seven to start."""
    started = 0
    everyone: asyncio.Event | None = None

    async def check(category: str, backend: Any) -> bool:
        nonlocal started, everyone
        if everyone is None:
            everyone = asyncio.Event()
        started += 1
        if started == 7:
            everyone.set()
        # Deadlock guard, not a timing assertion: sequential startup never gets here.
        await asyncio.wait_for(everyone.wait(), 10)
        return True

    monkeypatch.setattr(container_module, "check_backend", check)
    settings = memory_settings(
        verify_on_startup=True,
        document=None,
        storage={
            "default": "a",
            "backends": {"a": {"provider": "memory"}, "b": {"provider": "memory"}},
        },
    )
    with TestClient(FastAPI(lifespan=cloudrift_lifespan(settings))):
        assert started == 7


async def test_cancelled_startup_closes_what_was_built(
    monkeypatch: pytest.MonkeyPatch,
    builds: list[tuple[str, str, Any]],
    closes: list[tuple[str, Any]],
) -> None:
    """If startup is cancelled while one service hangs, every built backend is closed."""
    checked: list[str] = []
    all_checked = asyncio.Event()

    async def check(category: str, backend: Any) -> bool:
        checked.append(category)
        if len(checked) == 3:
            all_checked.set()
        if category == "cache":
            await asyncio.Event().wait()  # a service that never answers
        return True

    monkeypatch.setattr(container_module, "check_backend", check)
    settings = CloudriftSettings(
        verify_on_startup=True, storage="memory", queue="memory", cache="memory"
    )
    app = FastAPI(lifespan=cloudrift_lifespan(settings))

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            raise AssertionError("startup must not finish")  # pragma: no cover

    task = asyncio.create_task(serve())
    await asyncio.wait_for(all_checked.wait(), 10)  # deadlock guard
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert {id(b) for _, b in closes} == {id(b) for _, _, b in builds}
    assert len(closes) == 3


def test_own_lifespan_runs_inside_ours_and_sees_the_backends() -> None:
    """The app's lifespan starts after the backends exist and ends before they close."""
    events: list[str] = []

    @asynccontextmanager
    async def mine(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        storage = app.state.cloudrift.storage()
        await storage.upload("seed.txt", b"seeded")
        events.append("mine:start")
        yield {"greeting": "hello"}
        events.append(f"mine:stop closed={storage.closed}")

    app = FastAPI(lifespan=cloudrift_lifespan(memory_settings(), lifespan=mine))

    @app.get("/seed")
    async def seed(request: Request, storage: StorageDep) -> dict[str, str]:
        return {
            "seed": (await storage.download("seed.txt")).decode(),
            "greeting": request.state.greeting,
        }

    with TestClient(app) as client:
        assert client.get("/seed").json() == {"seed": "seeded", "greeting": "hello"}
    assert events == ["mine:start", "mine:stop closed=False"]


def test_own_lifespan_may_be_a_bare_async_generator() -> None:
    """An undecorated ``async def lifespan(app): yield`` composes like a context manager."""
    events: list[str] = []

    async def mine(app: FastAPI) -> AsyncIterator[None]:
        events.append("start")
        yield
        events.append("stop")

    app = FastAPI(lifespan=cloudrift_lifespan(memory_settings(), lifespan=mine))
    with TestClient(app):
        assert events == ["start"]
    assert events == ["start", "stop"]


def test_own_lifespan_failing_at_startup_closes_backends_and_keeps_its_error(
    closes: list[tuple[str, Any]],
) -> None:
    """If the app's own startup raises, backends are closed and that error surfaces."""

    @asynccontextmanager
    async def mine(app: FastAPI) -> AsyncIterator[None]:
        raise LookupError("app startup failed")
        yield

    app = FastAPI(lifespan=cloudrift_lifespan(memory_settings(), lifespan=mine))
    with pytest.raises(LookupError, match="app startup failed"), TestClient(app):
        pass
    assert len(closes) == 7


def test_production_environment_refuses_unsafe_settings_at_startup(
    builds: list[tuple[str, str, Any]],
) -> None:
    """environment=production runs the production checks before anything is built."""
    app = FastAPI(lifespan=cloudrift_lifespan(memory_settings(environment="production")))
    with pytest.raises(ConfigurationError, match="not safe for production"), TestClient(app):
        pass
    assert builds == []


def test_settings_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without settings, the lifespan reads CLOUDRIFT_* env vars at startup."""
    monkeypatch.setenv("CLOUDRIFT_STORAGE__PROVIDER", "memory")
    app = FastAPI(lifespan=cloudrift_lifespan())

    @app.get("/kind")
    async def kind(storage: StorageDep) -> str:
        return type(storage).__name__

    with TestClient(app) as client:
        assert client.get("/kind").json() == "MemoryStorage"


def test_works_with_plain_starlette() -> None:
    """A Starlette app (no FastAPI) gets the same lifespan and container."""

    async def home(request: Any) -> PlainTextResponse:
        storage = request.app.state.cloudrift.storage()
        await storage.upload("k", b"starlette")
        return PlainTextResponse((await storage.download("k")).decode())

    settings = CloudriftSettings(storage="memory")
    app = Starlette(routes=[Route("/", home)], lifespan=cloudrift_lifespan(settings))
    with TestClient(app) as client:
        assert client.get("/").text == "starlette"


async def test_asgi_transport_inside_lifespan_context() -> None:
    """httpx.AsyncClient over ASGITransport works inside ``lifespan_context``."""
    app = FastAPI(lifespan=cloudrift_lifespan(CloudriftSettings(storage="memory")))

    @app.put("/f/{key}")
    async def put(key: str, request: Request, storage: StorageDep) -> int:
        body = await request.body()
        await storage.upload(key, body)
        return len(body)

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.put("/f/a.txt", content=b"12345")
            assert response.json() == 5
            assert await app.state.cloudrift.storage().download("a.txt") == b"12345"


async def test_queue_worker_consumes_until_shutdown() -> None:
    """A registered worker handles messages while the app runs and stops at shutdown."""
    handled: list[Any] = []
    done = asyncio.Event()

    async def handler(message: Message) -> None:
        handled.append(message.body)
        if len(handled) == 3:
            done.set()

    settings = CloudriftSettings(queue={"provider": "memory"})
    app = FastAPI(
        lifespan=cloudrift_lifespan(
            settings, workers=[queue_worker(handler, concurrency=2, wait_time=0.05)]
        )
    )
    async with app.router.lifespan_context(app):
        queue: Queue = app.state.cloudrift.queue()
        await queue.send_batch([{"n": 1}, {"n": 2}, {"n": 3}])
        await asyncio.wait_for(done.wait(), 10)  # deadlock guard
    assert sorted(m["n"] for m in handled) == [1, 2, 3]
    assert queue.closed


async def test_worker_on_an_unknown_queue_fails_startup_and_closes_backends(
    closes: list[tuple[str, Any]],
) -> None:
    """A worker naming a queue that is not configured stops startup; nothing stays open."""

    async def handler(message: Message) -> None:
        return None

    settings = CloudriftSettings(queue="memory", storage="memory")
    app = FastAPI(
        lifespan=cloudrift_lifespan(settings, workers=[queue_worker(handler, queue="jobs")])
    )
    with pytest.raises(ConfigurationError, match="no queue backend named 'jobs'"):
        async with app.router.lifespan_context(app):
            pass
    assert len(closes) == 2


def test_queue_worker_rejects_bad_concurrency() -> None:
    """A worker with a nonsensical concurrency fails when declared, not at startup."""

    async def handler(message: Message) -> None:
        return None

    with pytest.raises(ValueError, match="concurrency must be a positive int"):
        queue_worker(handler, concurrency=0)


def test_lifespan_can_restart_with_fresh_backends(
    builds: list[tuple[str, str, Any]],
) -> None:
    """Entering the app twice builds new backends the second time (the old ones are closed)."""
    app = FastAPI(lifespan=cloudrift_lifespan(CloudriftSettings(storage="memory")))
    with TestClient(app):
        first = app.state.cloudrift.storage()
    with TestClient(app):
        second = app.state.cloudrift.storage()
    assert first is not second
    assert first.closed and second.closed
    assert len(builds) == 2


def test_log_of_failing_close_uses_the_cloudrift_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Close failures go to the ``cloudrift.fastapi`` logger at ERROR level."""
    app = FastAPI(lifespan=cloudrift_lifespan(CloudriftSettings(cache="memory")))
    with TestClient(app):
        cache = app.state.cloudrift.cache()

        async def broken_close() -> None:
            raise OSError("boom")

        cache.close = broken_close
    records = [r for r in caplog.records if r.name == "cloudrift.fastapi"]
    assert records and records[0].levelno == logging.ERROR


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """An environment where botocore's default credential chain finds nothing."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


async def test_verify_on_startup_raises_missing_credentials_as_configuration_error(
    no_aws_credentials: None,
) -> None:
    """No AWS credentials: startup says so (ConfigurationError naming the backend), not
    that the service 'did not answer its health check'."""
    settings = CloudriftSettings(
        verify_on_startup=True,
        storage={"provider": "s3", "bucket": "b", "region": "us-east-1"},
    )
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    with pytest.raises(ConfigurationError) as caught:
        async with app.router.lifespan_context(app):
            pass
    text = caught.value.message
    assert "storage backend 'default' (s3)" in text
    assert "s3 storage has no usable credentials" in text
    assert isinstance(caught.value.__cause__, ConfigurationError)


async def test_verify_on_startup_keeps_a_permission_error_a_permission_error(
    no_aws_credentials: None,
) -> None:
    """An SQS queue that refuses us stops startup with MessagingPermissionError, naming it."""
    settings = CloudriftSettings(
        verify_on_startup=True,
        queue={
            "provider": "sqs",
            "queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
            "region": "us-east-1",
        },
    )
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    with pytest.raises(MessagingPermissionError) as caught:
        async with app.router.lifespan_context(app):
            pass
    assert not isinstance(caught.value, MessagingConnectionError)
    assert "queue backend 'default' (sqs)" in caught.value.message
    assert "no AWS credentials" in caught.value.message
