"""Direct uploads (upload-url → PUT → complete) keep their integrity: the URL cannot
replace a completed file, is capped at the limit while it streams, complete verifies
size and SHA-256, and uploads never completed expire and are removed (injected clock)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cloudrift.core.exceptions import ConfigurationError
from example_app import records
from example_app.config import IntakeConfig
from example_app.services import services_of
from example_app.sweeper import run_sweeper, sweep
from tests.example_app.conftest import running, wait_for_status

LIMIT = 1000


def _stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "files"
    return [p for p in root.rglob("*") if p.is_file() and "meta" not in p.parts]


async def _ticket(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    offer = await client.post("/documents/upload-url", json={"filename": "d.txt", **fields})
    assert offer.status_code == 201, offer.text
    ticket: dict[str, Any] = offer.json()
    return ticket


async def _put(client: httpx.AsyncClient, ticket: dict[str, Any], data: Any) -> httpx.Response:
    return await client.put(ticket["upload_url"], content=data, headers=ticket["headers"])


async def test_the_upload_url_cannot_replace_the_file_once_uploaded(
    demo_app: Callable[..., FastAPI],
) -> None:
    """A second PUT with the same URL, before or after complete, is 412; the processed
    record's SHA-256 and the downloadable bytes stay the original's."""
    app = demo_app()
    original = b"the real document\n"
    async with running(app) as client:
        ticket = await _ticket(client)
        assert (await _put(client, ticket, original)).status_code == 200
        before = await _put(client, ticket, b"swapped before complete")
        assert before.status_code == 412
        assert (await client.post(ticket["complete_url"])).status_code == 202
        after = await _put(client, ticket, b"swapped after complete")
        assert after.status_code == 412
        assert "ask for a new URL" in after.json()["detail"]
        body = await wait_for_status(client, ticket["id"])
        download = await client.get(f"/documents/{ticket['id']}/download", follow_redirects=True)
    assert body["summary"]["sha256"] == hashlib.sha256(original).hexdigest()
    assert download.content == original


@pytest.mark.parametrize(
    ("declared", "sent"),
    [(None, LIMIT + 1), (10, 11)],
    ids=["over-the-limit", "over-the-declared-size"],
)
async def test_a_put_over_the_limit_or_declared_size_is_413_and_nothing_is_stored(
    demo_app: Callable[..., FastAPI], tmp_path: Path, declared: int | None, sent: int
) -> None:
    """The URL carries the cap (the declared size, else the limit): 413 at PUT time."""
    app = demo_app(max_upload_bytes=LIMIT)
    async with running(app) as client:
        ticket = await _ticket(client, **({"size": declared} if declared else {}))
        assert ticket["max_size"] == (declared or LIMIT)
        response = await _put(client, ticket, b"x" * sent)
        assert response.status_code == 413
        early = await client.post(ticket["complete_url"])
    assert early.status_code == 409
    assert _stored_files(tmp_path) == []


async def test_a_streamed_put_over_the_limit_stops_without_reading_the_body(
    demo_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    """A chunked 20x-the-limit PUT is refused after about the limit, nothing on disk."""
    app = demo_app(max_upload_bytes=LIMIT)
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(200):
            pulled += 1
            yield b"z" * 100

    async with running(app) as client:
        ticket = await _ticket(client)
        response = await _put(client, ticket, body())
    assert response.status_code == 413
    assert pulled <= LIMIT // 100 + 2
    assert _stored_files(tmp_path) == []


async def _key_of(app: FastAPI, doc_id: str) -> str:
    record = await app.state.cloudrift.database()[records.COLLECTION].find_one({"_id": doc_id})
    return str(record["key"])


@pytest.mark.parametrize(
    ("declared", "written", "message"),
    [
        ({"size": 10}, b"short", "has 5 bytes but 10 were declared"),
        ({"size": 5}, b"much longer than declared", "but 5 were declared"),
        ({"sha256": hashlib.sha256(b"other").hexdigest()}, b"these bytes", "not the declared"),
    ],
    ids=["smaller", "larger", "sha256"],
)
async def test_complete_refuses_and_deletes_a_file_unlike_its_declaration(
    demo_app: Callable[..., FastAPI],
    declared: dict[str, Any],
    written: bytes,
    message: str,
) -> None:
    """Size or SHA-256 not as declared (written straight to storage, as a cloud URL
    could): complete is 422, the object is deleted, the upload may be retried."""
    app = demo_app()
    async with running(app) as client:
        ticket = await _ticket(client, **declared)
        storage = app.state.cloudrift.storage()
        key = await _key_of(app, ticket["id"])
        await storage.upload(key, written)
        response = await client.post(ticket["complete_url"])
        assert response.status_code == 422, response.text
        assert message in response.json()["detail"]
        assert not await storage.exists(key)
        record = (await client.get(f"/documents/{ticket['id']}")).json()
        assert record["status"] == "awaiting_upload"


async def test_a_correct_retry_after_a_refused_complete_is_processed(
    demo_app: Callable[..., FastAPI],
) -> None:
    """After a size mismatch, the same create-only URL takes the right file."""
    app = demo_app()
    data = b"exactly right"
    fields = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest().upper()}
    async with running(app) as client:
        ticket = await _ticket(client, **fields)
        assert (await _put(client, ticket, b"short")).status_code == 200
        assert (await client.post(ticket["complete_url"])).status_code == 422
        assert (await _put(client, ticket, data)).status_code == 200
        done = await client.post(ticket["complete_url"])
        assert done.status_code == 202, done.text
        assert done.json()["size"] == len(data)
        body = await wait_for_status(client, ticket["id"])
    assert body["summary"]["sha256"] == fields["sha256"].lower()


async def test_upload_url_refuses_a_malformed_sha256(demo_app: Callable[..., FastAPI]) -> None:
    """sha256 must be 64 hex characters (422)."""
    app = demo_app()
    async with running(app) as client:
        response = await client.post(
            "/documents/upload-url", json={"filename": "a", "sha256": "abc"}
        )
    assert response.status_code == 422


async def test_uploads_not_completed_in_time_expire_and_their_files_are_removed(
    demo_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    """With the clock moved past upload_ttl: waiting uploads become failed ("expired") and
    lose their object; younger and completed ones are untouched; complete is then 409."""
    app = demo_app(url_ttl=60, upload_ttl=600)
    async with running(app) as client:
        stale = await _ticket(client)
        assert (await _put(client, stale, b"never completed")).status_code == 200
        unput = await _ticket(client)
        done = await _ticket(client)
        assert (await _put(client, done, b"completed")).status_code == 200
        assert (await client.post(done["complete_url"])).status_code == 202
        await wait_for_status(client, done["id"])
        svc = services_of(app)
        now = datetime.now(UTC)

        early = await sweep(svc, now=now + timedelta(seconds=590))
        assert (early.expired, early.purged) == (0, 0)
        late = await sweep(svc, now=now + timedelta(seconds=610))
        assert (late.expired, late.purged) == (2, 0)

        for ticket in (stale, unput):
            record = (await client.get(f"/documents/{ticket['id']}")).json()
            assert record["status"] == "failed"
            assert "expired" in record["error"]
        assert (await client.get(f"/documents/{done['id']}")).json()["status"] == "processed"
        assert not await svc.storage.exists(await _key_of(app, stale["id"]))
        assert await svc.storage.exists(await _key_of(app, done["id"]))
        refused = await client.post(stale["complete_url"])
        assert refused.status_code == 409
        assert "already failed" in refused.json()["detail"]
        again = await sweep(svc, now=now + timedelta(seconds=610))
        assert (again.expired, again.purged) == (0, 0)
    assert len(_stored_files(tmp_path)) == 1


async def test_files_reappearing_under_failed_documents_are_removed(
    demo_app: Callable[..., FastAPI],
) -> None:
    """A file stored again under a failed document (PUT through a still-valid URL after
    the failure) is deleted once the document is older than upload_ttl."""
    app = demo_app(url_ttl=60, upload_ttl=600)
    async with running(app) as client:
        ticket = await _ticket(client)
        svc = services_of(app)
        key = await _key_of(app, ticket["id"])
        await svc.documents.update_one(
            {"_id": ticket["id"]}, {"$set": {"status": records.FAILED, "error": "queueing"}}
        )
        assert (await _put(client, ticket, b"orphan")).status_code == 200
        now = datetime.now(UTC)
        result = await sweep(svc, now=now + timedelta(seconds=610))
        assert not await svc.storage.exists(key)
    assert (result.expired, result.purged) == (0, 1)


async def test_the_background_sweeper_sweeps_every_interval_on_its_clock(
    demo_app: Callable[..., FastAPI],
) -> None:
    """run_sweeper sleeps sweep_interval, then sweeps at the clock's time (injected
    clock and sleep: no real waiting)."""
    app = demo_app(url_ttl=60, upload_ttl=600, sweep_interval=30)
    async with running(app) as client:
        ticket = await _ticket(client)
        later = datetime.now(UTC) + timedelta(days=1)
        slept: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)
            if len(slept) == 2:
                raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await run_sweeper(lambda: services_of(app), clock=lambda: later, sleep=fake_sleep)
        record = (await client.get(f"/documents/{ticket['id']}")).json()
    assert slept == [30, 30]
    assert record["status"] == "failed"


def test_upload_ttl_must_outlive_the_upload_url() -> None:
    """INTAKE_UPLOAD_TTL shorter than INTAKE_URL_TTL + 60 is a configuration error."""
    with pytest.raises(ConfigurationError, match="INTAKE_UPLOAD_TTL"):
        IntakeConfig(url_ttl=900, upload_ttl=900)
    env = {"INTAKE_UPLOAD_TTL": "7200", "INTAKE_SWEEP_INTERVAL": "5"}
    config = IntakeConfig.from_env(env)
    assert (config.upload_ttl, config.sweep_interval) == (7200, 5)


async def test_openapi_declares_the_201_and_202_bodies(demo_app: Callable[..., FastAPI]) -> None:
    """upload-url's 201 and the 202s of upload and complete have typed, non-empty schemas."""
    app = demo_app()
    async with running(app) as client:
        schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    components = schema["components"]["schemas"]

    def body_of(path: str, method: str, status: str) -> dict[str, Any]:
        content = paths[path][method]["responses"][status]["content"]["application/json"]
        ref: str = content["schema"]["$ref"]
        found: dict[str, Any] = components[ref.rsplit("/", 1)[-1]]
        return found

    ticket = body_of("/documents/upload-url", "post", "201")
    assert {"id", "upload_url", "headers", "max_size", "complete_url"} <= set(ticket["properties"])
    for path in ("/documents", "/documents/{doc_id}/complete"):
        accepted = body_of(path, "post", "202")
        assert {"id", "status", "filename", "links"} <= set(accepted["properties"])
        assert "detail" in body_of(path, "post", "413")["properties"]
    assert "items" in body_of("/documents", "get", "200")["properties"]
    assert "summary" in body_of("/documents/{doc_id}", "get", "200")["properties"]
