"""What the CLI tests run in their child processes: queue handlers and a small upload API.

``drain``: writes ``started-<id>`` into ``$JOBS_DIR``; a ``slow`` job then waits until a
``release`` file exists there before writing ``done-<id>``.

``process`` (at-least-once tests): reads the uploaded object from storage, records the
run and the result in the cache (a real redis-server shared by every process), emails
one notification per document unless the record says it was already sent, the way
``example_app``'s worker does. In a worker started with ``JOB_HOLD=1`` (the one the
test kills) every job stops mid-way, its ``inflight`` record written, until the process
dies: the kill lands mid-job however slow the machine is. ``app`` accepts uploads:
stores the object, queues a job.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

from dependency_injector.wiring import Provide, inject
from fastapi import FastAPI, Request

from cloudrift.messaging import Message
from cloudrift.storage import Storage
from cloudrift_fastapi import CacheDep, Container, QueueDep, StorageDep, cloudrift_lifespan
from cloudrift_fastapi.workers import current_container


async def drain(message: Message) -> None:
    """A job of the SIGTERM drain test."""
    folder = Path(os.environ["JOBS_DIR"])
    body: Any = message.body
    (folder / f"started-{body['id']}").touch()
    if body.get("slow"):
        # Another process creates the file: polling is the only way to see it.
        while not (folder / "release").exists():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    (folder / f"done-{body['id']}").touch()


@inject
async def injected(message: Message, storage: Storage = Provide[Container.storage]) -> None:
    """Receives the worker's storage the dependency-injector way (the module is wired)."""
    await storage.upload(f"seen-{message.body['id']}", b"1")


async def process(message: Message) -> None:
    """Process one uploaded document, idempotently (safe to run twice)."""
    box = current_container()
    cache, storage, email = box.cache(), box.storage(), box.email()
    doc = message.body["doc"]
    pid = os.getpid()
    await cache.incr(f"runs:{doc}")
    await cache.set(f"inflight:{pid}:{doc}", b"1")
    data = await storage.download(f"docs/{doc}")
    if os.environ.get("JOB_HOLD"):
        await asyncio.Event().wait()  # until SIGKILL: this worker is the victim
    # The work itself takes a while: jobs overlap, and a redis restart lands mid-job.
    await asyncio.sleep(float(os.environ.get("JOB_SECONDS", "0.05")))
    digest = hashlib.sha256(data).hexdigest()
    if await cache.get(f"notified:{doc}") is None:
        await email.send("team@example.test", f"processed {doc}", body_text=digest)
        await cache.set(f"notified:{doc}", b"1")
    await cache.set(f"processed:{doc}", digest.encode())
    await cache.delete(f"inflight:{pid}:{doc}")


app = FastAPI(lifespan=cloudrift_lifespan())


@app.get("/ready")
async def ready() -> dict[str, str]:
    """The API is up."""
    return {"status": "ok"}


@app.post("/documents/{doc}")
async def upload(
    doc: str, request: Request, storage: StorageDep, queue: QueueDep, cache: CacheDep
) -> dict[str, str]:
    """Store the document and queue its job."""
    await storage.upload(f"docs/{doc}", await request.body())
    await cache.set(f"uploaded:{doc}", b"1")
    await queue.send({"doc": doc})
    return {"doc": doc}
