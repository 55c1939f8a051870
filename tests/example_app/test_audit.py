"""The audit trail: the worker publishes ``document.processed`` to a topic, the audit
subscription's consumer records every event once, and ``GET /audit`` lists them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI

from cloudrift.config import CloudriftSettings
from cloudrift.messaging import Message, get_subscription
from example_app import audit, create_app
from example_app.config import IntakeConfig
from example_app.services import services_of
from example_app.worker import JobHandler
from tests.example_app.conftest import (
    demo_settings,
    running,
    upload,
    wait_for_audit,
    wait_for_status,
)


async def test_a_processed_document_is_recorded_once_by_the_audit_subscription(
    demo_app: Callable[..., FastAPI],
) -> None:
    """Upload → worker → document.processed on the topic → audit consumer → GET /audit
    lists it once, with the document's summary; running the job again adds nothing."""
    app = demo_app()
    async with (
        running(app) as client,
        get_subscription("memory", topic="intake-events", subscription="probe") as probe,
    ):
        accepted = await upload(client, b"one\ntwo\n", "audited.txt")
        doc_id = accepted.json()["id"]
        body = await wait_for_status(client, doc_id)
        event = await wait_for_audit(client, doc_id)
        assert event["id"] == audit.event_id(audit.PROCESSED, doc_id)
        assert event["type"] == "document.processed"
        assert event["filename"] == "audited.txt"
        assert event["sha256"] == body["summary"]["sha256"] and event["size"] == 8
        assert event["published_at"] and event["recorded_at"]
        # A redelivered job finds the event announced and publishes nothing more.
        job = JobHandler(lambda: services_of(app))
        await job(_message({"document_id": doc_id}))
        published = await probe.receive(max_messages=10)
        listed = (await client.get("/audit")).json()["items"]
    assert [m.body["id"] for m in published] == [event["id"]]
    assert published[0].attributes == {"event": "document.processed"}
    assert [e["document_id"] for e in listed] == [doc_id]


async def test_a_redelivered_event_is_recorded_once(demo_app: Callable[..., FastAPI]) -> None:
    """The audit collection is keyed by the event id: the same event twice is one entry."""
    app = demo_app()
    async with running(app) as client:
        handler = audit.AuditHandler(lambda: services_of(app).database)
        event = {"id": "document.processed:x1", "type": "document.processed", "at": "t"}
        for _ in range(2):
            await handler(_message(event))
        listed = (await client.get("/audit")).json()["items"]
    assert [e["id"] for e in listed] == ["document.processed:x1"]


async def test_a_message_that_is_not_an_event_is_dropped(
    demo_app: Callable[..., FastAPI], caplog: pytest.LogCaptureFixture
) -> None:
    """A foreign message on the audit subscription is acked and logged, not recorded."""
    app = demo_app()
    async with running(app) as client:
        handler = audit.AuditHandler(lambda: services_of(app).database)
        await handler(_message(b"not json"))
        await handler(_message({"type": "no id"}))
        listed = (await client.get("/audit")).json()["items"]
    assert listed == []
    assert "not an event" in caplog.text


async def test_audit_limit_is_validated_and_applied(demo_app: Callable[..., FastAPI]) -> None:
    """?limit= must be 1..100 (422 otherwise) and caps the list, newest first."""
    app = demo_app()
    async with running(app) as client:
        handler = audit.AuditHandler(lambda: services_of(app).database)
        for n in range(3):
            await handler(_message({"id": f"e{n}", "type": "t"}))
            await asyncio.sleep(0.002)  # distinct recorded_at (millisecond resolution)
        assert (await client.get("/audit?limit=0")).status_code == 422
        assert (await client.get("/audit?limit=101")).status_code == 422
        two = (await client.get("/audit?limit=2")).json()["items"]
    assert [e["id"] for e in two] == ["e2", "e1"]


async def test_without_a_topic_nothing_is_published_and_audit_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings with no topic and no subscription: documents are processed as before and
    GET /audit answers an empty list."""
    data = demo_settings(tmp_path, monkeypatch).model_dump()
    data.pop("topic", None)
    data.pop("subscription", None)
    settings = CloudriftSettings.model_validate(data)
    app = create_app(settings, IntakeConfig())
    async with running(app) as client:
        doc_id = (await upload(client, b"quiet")).json()["id"]
        await wait_for_status(client, doc_id)
        assert services_of(app).topic is None
        listed = (await client.get("/audit")).json()["items"]
    assert listed == []


def _message(body: object) -> Message:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message.from_raw(raw, receipt_handle="h", message_id="m")
