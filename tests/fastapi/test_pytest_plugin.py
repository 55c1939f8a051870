"""The pytest plugin users get: fixtures on memory, moto, fakeredis and an SMTP sink."""

# FastAPI's documented spelling puts Depends(...) in parameter defaults.
# ruff: noqa: B008

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.storage import Storage
from cloudrift_fastapi import (
    QueueDep,
    StorageDep,
    cloudrift_lifespan,
    override_backends,
    storage_dep,
)
from cloudrift_fastapi.pytest_plugin import FakeRedisServer, MotoServer, SMTPSink


def test_plugin_import_is_cheap_and_needs_no_extra() -> None:
    """Importing the plugin loads no web framework, SDK or stand-in."""
    code = (
        "import sys, cloudrift_fastapi.pytest_plugin;"
        "heavy = {'fastapi', 'starlette', 'dependency_injector', 'pydantic_settings', 'moto',"
        " 'boto3', 'aioboto3', 'redis', 'fakeredis', 'aiosmtpd', 'pymongo'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_every_plugin_fixture_is_prefixed() -> None:
    """All plugin fixtures start with ``cloudrift_`` so they never clash with a user's."""
    import cloudrift_fastapi.pytest_plugin as plugin

    names = [
        name
        for name, value in vars(plugin).items()
        if hasattr(value, "_fixture_function_marker")
        or type(value).__name__ == "FixtureFunctionDefinition"
    ]
    assert len(names) >= 10
    assert all(name.startswith("cloudrift_") for name in names)


def test_memory_settings_fixture_runs_an_app(cloudrift_memory_settings: CloudriftSettings) -> None:
    """``cloudrift_memory_settings`` starts an app with every category on memory."""
    app = FastAPI(lifespan=cloudrift_lifespan(cloudrift_memory_settings))
    with TestClient(app):
        kinds = {
            type(app.state.cloudrift.storage()).__name__,
            type(app.state.cloudrift.email()).__name__,
        }
    assert kinds == {"MemoryStorage", "MemoryEmail"}


async def test_memory_backends_fixture_overrides_an_app(
    cloudrift_memory_backends: dict[str, Any],
) -> None:
    """The memory backends drop into ``override_backends`` in one line."""
    app = FastAPI(lifespan=cloudrift_lifespan(CloudriftSettings(storage="memory")))

    await cloudrift_memory_backends["storage"].upload("a", b"1")
    with override_backends(app, **cloudrift_memory_backends):
        async with app.router.lifespan_context(app):
            assert app.state.cloudrift.storage() is cloudrift_memory_backends["storage"]
            assert app.state.cloudrift.cache() is cloudrift_memory_backends["cache"]
            assert app.state.cloudrift.mongodb() is cloudrift_memory_backends["mongodb"]


async def test_memory_client_runs_a_production_configured_app(
    cloudrift_memory_client: Any,
) -> None:
    """An app configured for S3 and SQS runs on memory backends; nothing real is built."""
    settings = CloudriftSettings(
        verify_on_startup=True,
        storage={"provider": "s3", "bucket": "prod", "endpoint_url": "http://127.0.0.1:9"},
        queue={"provider": "sqs", "queue_url": "http://127.0.0.1:9/123/q", "region": "x"},
    )
    app = FastAPI(lifespan=cloudrift_lifespan(settings))

    @app.post("/jobs/{key}")
    async def job(key: str, storage: StorageDep, queue: QueueDep) -> str:
        await storage.upload(key, b"data")
        return await queue.send({"key": key})

    async with cloudrift_memory_client(app) as client:
        response = await client.post("/jobs/a.txt")
        assert response.status_code == 200
        storage: Storage = app.state.cloudrift.storage()
        assert type(storage).__name__ == "MemoryStorage"
        assert await storage.download("a.txt") == b"data"
    assert storage.closed
    assert app.dependency_overrides == {}


async def test_s3_storage_fixture_talks_to_moto(
    cloudrift_s3_storage: Any, cloudrift_moto: MotoServer
) -> None:
    """``cloudrift_s3_storage`` stores real objects in moto's S3."""
    await cloudrift_s3_storage.upload("hello.txt", b"hi", content_type="text/plain")
    bucket = cloudrift_s3_storage.bucket
    body = cloudrift_moto.client("s3").get_object(Bucket=bucket, Key="hello.txt")["Body"].read()
    assert body == b"hi"
    assert await cloudrift_s3_storage.health_check()


async def test_sqs_queue_fixture_talks_to_moto(cloudrift_sqs_queue: Any) -> None:
    """``cloudrift_sqs_queue`` sends and receives through moto's SQS."""
    await cloudrift_sqs_queue.send({"job": 1})
    messages = await cloudrift_sqs_queue.receive(max_messages=1, wait_time=1)
    assert [m.body for m in messages] == [{"job": 1}]


async def test_ses_email_fixture_sends_from_a_verified_sender(cloudrift_ses_email: Any) -> None:
    """``cloudrift_ses_email`` sends through moto's SESv2 with its verified default sender."""
    message_id = await cloudrift_ses_email.send("to@example.test", "hi", body_text="hello")
    assert message_id


async def test_redis_cache_fixture_talks_to_fakeredis_over_tcp(
    cloudrift_redis_cache: Any, cloudrift_redis: FakeRedisServer
) -> None:
    """``cloudrift_redis_cache`` is the real redis provider speaking RESP to fakeredis."""
    import redis

    await cloudrift_redis_cache.set("k", b"v")
    with redis.Redis(host=cloudrift_redis.host, port=cloudrift_redis.port) as raw:
        assert raw.get("k") == b"v"
    assert await cloudrift_redis_cache.ping()


async def test_smtp_email_fixture_records_sent_mail(
    cloudrift_smtp_email: Any, cloudrift_smtp_sink: SMTPSink
) -> None:
    """``cloudrift_smtp_email`` delivers over SMTP into the recording sink."""
    await cloudrift_smtp_email.send("alice@example.test", "Welcome", body_text="hello Alice")
    assert cloudrift_smtp_sink.envelopes == [("sender@example.test", ["alice@example.test"])]
    assert cloudrift_smtp_sink.messages[0]["Subject"] == "Welcome"


@pytest.fixture
def without_embedded_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate an install without ``cloudrift[embedded]`` (mongomock is not importable)."""
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        if name.split(".")[0] in ("mongomock", "mongomock_motor"):
            return None
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


async def test_memory_client_needs_no_embedded_engine_without_a_document_backend(
    cloudrift_memory_client: Any, without_embedded_engine: None
) -> None:
    """An app without a document database runs on memory without ``cloudrift[embedded]``."""
    app = FastAPI(lifespan=cloudrift_lifespan(CloudriftSettings(storage={"provider": "s3"})))

    @app.put("/f/{key}")
    async def put(key: str, storage: StorageDep) -> int:
        await storage.upload(key, b"abc")
        return len(await storage.list())

    async with cloudrift_memory_client(app) as client:
        assert (await client.put("/f/a")).json() == 1


async def test_memory_client_asks_for_embedded_when_a_document_backend_is_configured(
    cloudrift_memory_client: Any, without_embedded_engine: None
) -> None:
    """An app with a document database says which extra its memory engine needs."""
    settings = CloudriftSettings(document={"provider": "mongodb", "uri": "mongodb://db:1/"})
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    with pytest.raises(ConfigurationError, match=r'pip install "cloudrift\[embedded\]"') as info:
        async with cloudrift_memory_client(app):
            pass
    assert "document backend 'default' (memory)" in info.value.message


async def test_memory_client_puts_named_backends_on_memory_too(
    cloudrift_memory_client: Any,
) -> None:
    """A named backend configured for S3 also runs on memory; its name still resolves."""
    settings = CloudriftSettings(
        storage={
            "default": "main",
            "backends": {
                "main": {"provider": "s3", "bucket": "a"},
                "avatars": {"provider": "s3", "bucket": "b"},
            },
        },
        environment="production",
    )
    app = FastAPI(lifespan=cloudrift_lifespan(settings))

    @app.get("/kinds")
    async def kinds(
        main: StorageDep, avatars: Storage = Depends(storage_dep("avatars"))
    ) -> list[str]:
        return [type(main).__name__, type(avatars).__name__]

    async with cloudrift_memory_client(app) as client:
        assert (await client.get("/kinds")).json() == ["MemoryStorage", "MemoryStorage"]
