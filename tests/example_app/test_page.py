"""The page's server side, without a browser: how ``POST /documents`` answers a form
post and an API call, and the notifications endpoint. (The page itself is driven in
Chromium by ``test_browser.py``; these stay apart because that module's sync Playwright
loop cannot share a thread with pytest-asyncio's.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI

from cloudrift.config import CloudriftSettings
from example_app import create_app
from example_app.config import IntakeConfig
from example_app.services import services_of
from example_app.sweeper import sweep
from tests.example_app.conftest import running, upload, wait_for_audit, wait_for_status

#: What Chromium sends with a form post.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize("accept", ["*/*", "application/json", "text/html, application/json"])
async def test_api_clients_keep_their_json_answers(
    demo_app: Callable[..., FastAPI], accept: str
) -> None:
    """POST /documents answers JSON (202, or the error's detail) to any client that does
    not ask for HTML alone; only a browser's form post is redirected."""
    async with running(demo_app()) as client:
        accepted = await client.post(
            "/documents",
            files={"file": ("a.txt", b"json\n", "text/plain")},
            headers={"Accept": accept},
        )
        empty = await client.post(
            "/documents", files={"file": ("e.txt", b"", "text/plain")}, headers={"Accept": accept}
        )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "queued"
    assert empty.status_code == 422
    assert "empty" in empty.json()["detail"]


async def test_a_form_post_is_redirected_with_its_outcome_shown_once(
    demo_app: Callable[..., FastAPI],
) -> None:
    """A browser's form post gets 303 to / with the outcome (accepted, or the error's
    reason) in a cookie the page shows once and then deletes."""
    async with running(demo_app()) as client:
        ok = await client.post(
            "/documents",
            files={"file": ("ok.txt", b"fine\n", "text/plain")},
            headers={"Accept": BROWSER_ACCEPT},
        )
        assert (ok.status_code, ok.headers["location"]) == (303, "/")
        shown = await client.get("/")
        again = await client.get("/")
        bad = await client.post(
            "/documents",
            files={"file": ("e.txt", b"", "text/plain")},
            headers={"Accept": BROWSER_ACCEPT},
        )
        assert bad.status_code == 303
        reason = await client.get("/")
    assert "Uploaded \u201cok.txt\u201d (5 bytes)" in shown.text
    assert 'id="flash"' not in again.text
    assert "Not uploaded: the uploaded file is empty" in reason.text
    assert 'class="flash error" role="alert"' in reason.text


async def test_notifications_are_listed_for_the_memory_email_provider(tmp_path: Path) -> None:
    """With the memory provider, GET /notifications lists the sent email's subject,
    recipient and attachment, newest first, and its fragment shows them too."""
    settings = CloudriftSettings(
        storage={"provider": "local", "root_dir": str(tmp_path / "files"), "base_url": "/files"},
        queue={"provider": "memory"},
        document={"provider": "memory", "database": "intake"},
        cache={"provider": "memory"},
        email={"provider": "memory", "default_from": "intake@example.test"},
    )
    app = create_app(settings, IntakeConfig(notify_to="team@example.test"))
    async with running(app) as client:
        first = (await upload(client, b"one\n", "one.txt")).json()["id"]
        await wait_for_status(client, first)
        second = (await upload(client, b"two\n", "two.txt")).json()["id"]
        await wait_for_status(client, second)
        listed = await client.get("/notifications")
        fragment = await client.get("/ui/notifications")
        too_many = await client.get("/notifications", params={"limit": 101})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["provider"] == "memory"
    assert [(n["subject"], n["to"], n["attachments"]) for n in body["items"]] == [
        ("Document processed: two.txt", ["team@example.test"], [f"summary-{second}.json"]),
        ("Document processed: one.txt", ["team@example.test"], [f"summary-{first}.json"]),
    ]
    assert f"summary-{first}.json" in fragment.text
    assert too_many.status_code == 422


async def test_the_page_shows_the_audit_panel_and_its_fragment_lists_events(
    demo_app: Callable[..., FastAPI],
) -> None:
    """The page has an audit panel polling /ui/audit; once a document is processed the
    fragment lists its document.processed event with the file's name (escaped)."""
    app = demo_app()
    async with running(app) as client:
        page = await client.get("/")
        empty = await client.get("/ui/audit")
        doc_id = (await upload(client, b"x\n", "x<i>y.txt")).json()["id"]
        await wait_for_audit(client, doc_id)
        fragment = await client.get("/ui/audit")
    assert 'id="audit"' in page.text and 'data-refresh="/ui/audit"' in page.text
    assert "No events recorded yet." in empty.text
    assert "document.processed" in fragment.text
    assert "x&lt;i&gt;y.txt" in fragment.text and "<i>" not in fragment.text


async def test_markup_in_a_filename_is_shown_as_text(demo_app: Callable[..., FastAPI]) -> None:
    """A filename holding HTML is escaped in the page and its live-list fragment."""
    name = '<img src=x onerror="alert(1)">.txt'
    async with running(demo_app()) as client:
        accepted = await upload(client, b"markup\n", name)
        assert accepted.json()["filename"] == name
        page = await client.get("/")
        fragment = await client.get("/ui/documents")
    for html in (page.text, fragment.text):
        assert "<img src=x" not in html
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;.txt" in html


async def test_a_failed_document_shows_its_reason_in_the_list(
    demo_app: Callable[..., FastAPI],
) -> None:
    """An upload never completed, once expired by the sweeper, is listed as failed with
    the reason, and offers no download link."""
    app = demo_app(url_ttl=60, upload_ttl=120)
    async with running(app) as client:
        offer = await client.post("/documents/upload-url", json={"filename": "late.txt"})
        doc_id = offer.json()["id"]
        await sweep(services_of(app), now=datetime.now(UTC) + timedelta(seconds=121))
        fragment = await client.get("/ui/documents")
    opening = f'<tr id="doc-{doc_id}" data-status="failed">'
    assert opening in fragment.text
    row = fragment.text.split(opening, 1)[1].split("</tr>", 1)[0]
    assert "the upload was not completed within 120 seconds, so it expired" in row
    assert "/download" not in row
