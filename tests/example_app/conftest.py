"""Helpers for the example app's tests: run the app in-process over HTTP, upload, wait."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cloudrift.config import CloudriftSettings
from cloudrift.document import aclose_client
from example_app import create_app
from example_app.config import DEMO_SETTINGS, IntakeConfig

#: Upper bound on waiting for the worker; a bound on a wait, not a timing assertion.
WORKER_WAIT = 20.0


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (backends + worker) running, and an HTTP client on it.

    httpx's ASGITransport streams request bodies chunk by chunk, as a server would.
    """
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def upload(
    client: httpx.AsyncClient,
    content: bytes,
    filename: str = "notes.txt",
    content_type: str = "text/plain",
) -> httpx.Response:
    """POST /documents with ``content`` as the multipart field ``file``."""
    return await client.post("/documents", files={"file": (filename, content, content_type)})


async def wait_for_status(
    client: httpx.AsyncClient, doc_id: str, wanted: str = "processed"
) -> dict[str, Any]:
    """Poll GET /documents/{id} until its status is ``wanted``; fail saying what it was."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WORKER_WAIT
    body: dict[str, Any] = {}
    while loop.time() < deadline:
        response = await client.get(f"/documents/{doc_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] == wanted:
            return body
        await asyncio.sleep(0.02)
    pytest.fail(f"document {doc_id} never became {wanted!r}; last seen: {body}")


async def wait_for_audit(client: httpx.AsyncClient, doc_id: str) -> dict[str, Any]:
    """Poll GET /audit until it lists the document's ``document.processed`` event."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WORKER_WAIT
    items: list[dict[str, Any]] = []
    while loop.time() < deadline:
        response = await client.get("/audit", params={"limit": 100})
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        found = [e for e in items if e["document_id"] == doc_id]
        if found:
            return found[0]
        await asyncio.sleep(0.02)
    pytest.fail(f"document {doc_id} has no audit event; /audit lists: {items}")


def aws_events_env(sns: Any, sqs: Any) -> dict[str, str]:
    """Create local-aws.yaml's events topic and the audit queue subscribed to it (raw
    delivery off: the SNS envelope is unwrapped) with boto3 clients on moto; returns the
    environment variables that name them."""
    topic_arn = sns.create_topic(Name="intake-events")["TopicArn"]
    audit_url = sqs.create_queue(QueueName="intake-audit")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=audit_url, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=attributes["Attributes"]["QueueArn"])
    return {"INTAKE_EVENTS_TOPIC_ARN": topic_arn, "INTAKE_AUDIT_QUEUE_URL": audit_url}


def demo_settings(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CloudriftSettings:
    """The bundled demo settings file, with its data under ``data_dir``."""
    monkeypatch.setenv("DEMO_DATA_DIR", str(data_dir))
    return CloudriftSettings.from_yaml(DEMO_SETTINGS)


@pytest.fixture
def demo_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., FastAPI]:
    """Builds the app on the demo settings (data in a temp dir) with IntakeConfig overrides."""

    def build(**config: Any) -> FastAPI:
        return create_app(demo_settings(tmp_path, monkeypatch), IntakeConfig(**config))

    return build


Fetch = Callable[[str], Awaitable[bytes]]


async def full_flow(client: httpx.AsyncClient, content: bytes, fetch: Fetch) -> dict[str, Any]:
    """The whole story through HTTP: upload → worker → record updated → cache hit →
    download through the presigned URL (``fetch`` GETs it) returns the same bytes.

    Returns the processed record; the caller checks where the email went.
    """
    accepted = await upload(client, content, "report.txt")
    assert accepted.status_code == 202, accepted.text
    doc_id = accepted.json()["id"]
    body = await wait_for_status(client, doc_id)
    assert body["summary"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["summary"]["size"] == len(content)
    assert body["summary"]["lines"] == content.count(b"\n") + (0 if content.endswith(b"\n") else 1)
    again = await client.get(f"/documents/{doc_id}")
    assert again.headers["x-cache"] == "hit"
    assert again.json() == body
    redirect = await client.get(f"/documents/{doc_id}/download", follow_redirects=False)
    assert redirect.status_code == 307
    assert await fetch(redirect.headers["location"]) == content
    return body


async def fetch_over_network(url: str) -> bytes:
    """GET an absolute (presigned) URL with a real HTTP client; fail unless 200."""
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200, response.text
    return response.content


async def flow_on_standins(
    settings: CloudriftSettings, providers: dict[str, str], content: bytes
) -> dict[str, Any]:
    """On ``create_app(settings)``: /health/ready answers 200 with ``providers`` as its
    backends' providers, the full flow runs (presigned GET over the network), and the
    document.processed event reaches the audit subscription. Returns the record."""
    app = create_app(settings, IntakeConfig())
    async with running(app) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert {k: v["provider"] for k, v in ready.json()["backends"].items()} == providers
        body = await full_flow(client, content, fetch_over_network)
        event = await wait_for_audit(client, body["id"])
        assert event["sha256"] == body["summary"]["sha256"]
    return body


@asynccontextmanager
async def every_backend(settings: CloudriftSettings) -> AsyncIterator[tuple[dict[str, Any], Any]]:
    """Every category's backend of ``settings`` built (lazily: nothing is contacted) and
    the document client, closed afterwards: ``({category: backend}, document client)``."""
    built = {
        c: settings.open_backend(c)
        for c in ("storage", "queue", "cache", "email", "topic", "subscription")
    }
    client = settings.open_backend("document")
    try:
        yield built, client
    finally:
        for backend in built.values():
            await backend.close()
        await aclose_client(client)
