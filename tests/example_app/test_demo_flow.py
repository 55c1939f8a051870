"""End to end over HTTP on the demo settings: local files, memory queue and cache, the
embedded document engine and the .eml outbox."""

from __future__ import annotations

import email
import hashlib
import json
import logging
from collections.abc import Callable
from email.message import Message
from pathlib import Path

import pytest
from fastapi import FastAPI

from cloudrift.config import SectionConfig
from example_app import create_app, records
from example_app.config import IntakeConfig
from tests.example_app.conftest import demo_settings, running, upload, wait_for_status
from tests.servers._process import free_port

CONTENT = b"first line\nsecond line\nthird line without newline"


def _outbox(tmp_path: Path) -> list[Message]:
    return [
        email.message_from_bytes(p.read_bytes())
        for p in sorted((tmp_path / "outbox").glob("*.eml"))
    ]


async def test_upload_is_processed_cached_emailed_and_downloadable(
    demo_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    """Upload → worker → record updated → cache hit → .eml written → download same bytes."""
    app = demo_app()
    async with running(app) as client:
        accepted = await upload(client, CONTENT, "report.txt")
        assert accepted.status_code == 202, accepted.text
        doc_id = accepted.json()["id"]
        assert accepted.json()["status"] == "queued"
        assert accepted.headers["location"] == f"/documents/{doc_id}"

        body = await wait_for_status(client, doc_id)
        assert body["summary"] == {
            "size": len(CONTENT),
            "sha256": hashlib.sha256(CONTENT).hexdigest(),
            "is_text": True,
            "lines": 3,
            "preview": CONTENT.decode()[:200],
        }

        again = await client.get(f"/documents/{doc_id}")
        assert again.headers["x-cache"] == "hit"
        assert again.json() == body

        messages = _outbox(tmp_path)
        assert len(messages) == 1
        mail = messages[0]
        assert mail["To"] == "intake-team@example.test"
        assert "report.txt" in mail["Subject"]
        attachments = [p for p in mail.walk() if p.get_filename()]
        assert [p.get_filename() for p in attachments] == [f"summary-{doc_id}.json"]
        payload = attachments[0].get_payload(decode=True)
        assert isinstance(payload, bytes)
        assert json.loads(payload)["summary"]["sha256"] == hashlib.sha256(CONTENT).hexdigest()

        redirect = await client.get(f"/documents/{doc_id}/download", follow_redirects=False)
        assert redirect.status_code == 307
        assert redirect.headers["location"].startswith(f"/files/documents/{doc_id}?")
        downloaded = await client.get(redirect.headers["location"])
        assert downloaded.status_code == 200
        assert downloaded.content == CONTENT


async def test_cache_answers_even_when_the_database_no_longer_has_the_record(
    demo_app: Callable[..., FastAPI],
) -> None:
    """GET reads the cache first: with the record gone from the DB, a cached one is served."""
    app = demo_app()
    async with running(app) as client:
        doc_id = (await upload(client, b"cached\n")).json()["id"]
        await wait_for_status(client, doc_id)
        database = app.state.cloudrift.database()
        await database[records.COLLECTION].delete_one({"_id": doc_id})
        response = await client.get(f"/documents/{doc_id}")
        assert response.status_code == 200
        assert response.headers["x-cache"] == "hit"
        assert response.json()["id"] == doc_id


async def test_a_read_after_the_cache_expired_misses_then_fills_the_cache(
    demo_app: Callable[..., FastAPI],
) -> None:
    """A processed record missing from the cache is read from the DB, then cached."""
    app = demo_app()
    async with running(app) as client:
        doc_id = (await upload(client, b"x")).json()["id"]
        await wait_for_status(client, doc_id)
        cache = app.state.cloudrift.cache()
        assert await cache.delete(records.cache_key(doc_id))
        first = await client.get(f"/documents/{doc_id}")
        second = await client.get(f"/documents/{doc_id}")
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
        assert first.json() == second.json()


async def test_listing_pages_through_documents_in_upload_order_by_filename_prefix(
    demo_app: Callable[..., FastAPI],
) -> None:
    """GET /documents?prefix= returns matching documents a page at a time via next_cursor."""
    app = demo_app()
    async with running(app) as client:
        ids = [(await upload(client, b"r", f"report-{i}.txt")).json()["id"] for i in range(5)]
        await upload(client, b"o", "other.txt")
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"prefix": "report-", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/documents", params=params)).json()
            pages += 1
            seen += [item["id"] for item in page["items"]]
            assert all(item["filename"].startswith("report-") for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids
        assert pages == 3


async def test_prefix_is_matched_literally_not_as_a_pattern(
    demo_app: Callable[..., FastAPI],
) -> None:
    """Regex characters in ``prefix`` match themselves (a ``.*`` prefix lists nothing else)."""
    app = demo_app()
    async with running(app) as client:
        await upload(client, b"a", "abc.txt")
        listed = (await client.get("/documents", params={"prefix": ".*"})).json()
        assert listed == {"items": [], "next_cursor": None}


async def test_presigned_put_upload_then_complete_is_processed_like_a_form_upload(
    demo_app: Callable[..., FastAPI],
) -> None:
    """POST /documents/upload-url → PUT to the signed URL → complete → processed."""
    app = demo_app()
    data = b"direct upload\n"
    async with running(app) as client:
        offer = await client.post(
            "/documents/upload-url", json={"filename": "direct.txt", "content_type": "text/plain"}
        )
        assert offer.status_code == 201, offer.text
        ticket = offer.json()
        assert ticket["upload_url"].startswith("http://testserver/files/")
        early = await client.post(ticket["complete_url"])
        assert early.status_code == 409
        assert "PUT the file" in early.json()["detail"]
        put = await client.put(ticket["upload_url"], content=data, headers=ticket["headers"])
        assert put.status_code == 200, put.text
        done = await client.post(ticket["complete_url"])
        assert done.status_code == 202, done.text
        body = await wait_for_status(client, ticket["id"])
        assert body["summary"]["sha256"] == hashlib.sha256(data).hexdigest()
        twice = await client.post(ticket["complete_url"])
        assert twice.status_code == 409


async def test_openapi_documents_the_file_field_so_docs_offers_an_upload_form(
    demo_app: Callable[..., FastAPI],
) -> None:
    """/docs serves Swagger UI and the schema declares the multipart ``file`` field."""
    app = demo_app()
    async with running(app) as client:
        docs = await client.get("/docs")
        assert docs.status_code == 200
        assert "swagger-ui" in docs.text
        schema = (await client.get("/openapi.json")).json()
        body = schema["paths"]["/documents"]["post"]["requestBody"]["content"]
        assert body["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"


async def test_health_ready_reports_every_backend(demo_app: Callable[..., FastAPI]) -> None:
    """/health/ready is 200 with storage, queue, document, cache, email, the events topic
    and the audit subscription all ok."""
    app = demo_app()
    async with running(app) as client:
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")
    assert live.status_code == 200
    assert ready.status_code == 200
    assert {k.split(".")[0] for k in ready.json()["backends"]} == {
        "storage",
        "queue",
        "document",
        "cache",
        "email",
        "topic",
        "subscription",
    }


async def test_reads_survive_a_cache_outage_and_logs_never_show_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With the cache unreachable documents are still processed and read from the DB
    (X-Cache: miss), and the cache's password appears in no log line."""
    password = "c4che-p4ss-n0t-for-logs"
    settings = demo_settings(tmp_path, monkeypatch).model_copy(
        update={
            "cache": SectionConfig.model_validate(
                {
                    "provider": "redis",
                    "auth_method": "from_url",
                    "url": f"redis://:{password}@127.0.0.1:{free_port()}/0",
                }
            )
        }
    )
    app = create_app(settings, IntakeConfig())
    caplog.set_level(logging.DEBUG)
    async with running(app) as client:
        doc_id = (await upload(client, b"still readable")).json()["id"]
        await wait_for_status(client, doc_id)
        response = await client.get(f"/documents/{doc_id}")
        ready = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.headers["x-cache"] == "miss"
    assert ready.status_code == 503
    assert ready.json()["backends"]["cache.default"]["status"] == "down"
    assert "cache read failed" in caplog.text
    assert "could not cache it" in caplog.text
    assert password not in caplog.text
    assert password not in ready.text
