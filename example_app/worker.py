"""The background worker: turns a queued document into a processed one.

For each job it streams the stored object once (size, SHA-256, line count, a text
preview), refuses bytes whose SHA-256 differs from the one recorded when the upload
was accepted, writes the summary into the record, caches the record, and emails a
notification with the summary attached as JSON, then publishes a ``document.processed``
event when a topic is configured (``example_app.audit``). It is safe to run a job twice:
a processed record is not recomputed, and the email and the event go out until they are
recorded as sent (at least once, never silently skipped).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloudrift.core.exceptions import CacheError, CloudRiftError, ObjectNotFoundError
from cloudrift.email import Attachment
from cloudrift.messaging import Message
from cloudrift.storage import Storage
from example_app import audit, records
from example_app.config import IntakeConfig
from example_app.services import Services, topic_of

log = logging.getLogger("example_app.worker")

#: Bytes read to decide whether the document is text and to build the preview.
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Summary:
    """What the worker computes from a document's bytes."""

    size: int
    sha256: str
    is_text: bool
    lines: int | None
    preview: str | None

    def as_dict(self) -> dict[str, Any]:
        """The summary as stored in the record and attached to the email."""
        return {
            "size": self.size,
            "sha256": self.sha256,
            "is_text": self.is_text,
            "lines": self.lines,
            "preview": self.preview,
        }


async def summarize(storage: Storage, key: str, preview_chars: int) -> Summary:
    """Stream the object once: its size, SHA-256, line count and preview (text only).

    Raises ObjectNotFoundError when the object is gone.
    """
    digest = hashlib.sha256()
    size = 0
    newlines = 0
    head = bytearray()
    last = b""
    async for chunk in storage.download_stream(key, chunk_size=256 * 1024):
        digest.update(chunk)
        size += len(chunk)
        newlines += chunk.count(b"\n")
        if len(head) < _SNIFF_BYTES:
            head += chunk[: _SNIFF_BYTES - len(head)]
        last = chunk[-1:]
    sniff = bytes(head)
    is_text = b"\x00" not in sniff and _is_utf8_prefix(sniff)
    lines = None
    preview = None
    if is_text:
        lines = newlines + (1 if size and last != b"\n" else 0)
        preview = sniff.decode("utf-8", "ignore")[:preview_chars]
    return Summary(size, digest.hexdigest(), is_text, lines, preview)


def _is_utf8_prefix(data: bytes) -> bool:
    """True if ``data`` is UTF-8, allowing a character cut at the end of the sample."""
    for cut in range(4):
        try:
            data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False


def _notification(record: dict[str, Any], summary: dict[str, Any]) -> tuple[str, str]:
    lines = summary["lines"]
    text = (
        f"Document {record['_id']} ({record.get('filename')}) has been processed.\n\n"
        f"Size: {summary['size']} bytes\n"
        f"SHA-256: {summary['sha256']}\n"
        f"Lines: {lines if lines is not None else 'n/a (binary)'}\n"
    )
    return f"Document processed: {record.get('filename')}", text


class JobHandler:
    """The queue handler run by the lifespan's worker (``services`` read per job)."""

    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services

    async def __call__(self, message: Message) -> None:
        """Process one job; raise (so the queue redelivers) only for transient failures."""
        svc = self._services()
        body = message.body if message.is_json else None
        doc_id = body.get("document_id") if isinstance(body, dict) else None
        try:
            records.check_id(doc_id if isinstance(doc_id, str) else "")
        except records.InvalidIdError:
            # A job nobody can ever process: drop it (ack) loudly instead of looping.
            log.error("dropping a job without a valid document_id: %r", message)
            return
        assert isinstance(doc_id, str)
        try:
            await self._process(svc, doc_id)
        except Exception as exc:
            if message.receive_count >= svc.config.max_attempts:
                reason = f"processing failed after {message.receive_count} attempts: " + (
                    exc.message if isinstance(exc, CloudRiftError) else type(exc).__name__
                )
                log.error("document %s: %s", doc_id, reason)
                await _mark_failed(svc, doc_id, reason)
                return
            log.warning(
                "document %s: attempt %d failed (%s); will retry",
                doc_id,
                message.receive_count,
                type(exc).__name__,
            )
            raise

    async def _process(self, svc: Services, doc_id: str) -> None:
        documents = svc.documents
        record = await documents.find_one({"_id": doc_id})
        if record is None:
            log.error("document %s: no record (deleted?); dropping the job", doc_id)
            return
        status = record.get("status")
        if status == records.FAILED:
            return
        if status != records.PROCESSED:
            try:
                summary = await summarize(svc.storage, record["key"], svc.config.preview_chars)
            except ObjectNotFoundError:
                await _mark_failed(svc, doc_id, "the stored file is missing; upload it again")
                return
            expected = record.get("sha256")
            if expected is not None and summary.sha256 != expected:
                # The bytes are not the ones accepted at upload/complete: replaced
                # through a still-valid upload URL (cloud presigned PUTs can overwrite
                # until they expire) or by anyone else. Never process or serve them.
                await _mark_failed(
                    svc,
                    doc_id,
                    "the stored file changed after it was accepted (its SHA-256 no longer "
                    "matches), so it was deleted; upload it again",
                )
                try:
                    await svc.storage.delete(record["key"])
                except CloudRiftError as exc:
                    log.error("document %s: could not delete it (%s)", doc_id, type(exc).__name__)
                return
            await documents.update_one(
                {"_id": doc_id},
                {
                    "$set": {
                        "status": records.PROCESSED,
                        "summary": summary.as_dict(),
                        "size": summary.size,
                        "updated_at": records.now(),
                        "notified": False,
                    }
                },
            )
            record = await documents.find_one({"_id": doc_id})
            assert record is not None
        try:
            await svc.cache.set(
                records.cache_key(doc_id),
                records.encode_view(records.view(record)),
                ttl=svc.config.cache_ttl,
            )
        except CacheError as exc:
            # The record is safe in the database and reads fall back to it: a cache
            # outage must not fail the document.
            log.warning("document %s: could not cache it (%s)", doc_id, type(exc).__name__)
        if not record.get("notified"):
            subject, text = _notification(record, record["summary"])
            attachment = Attachment(
                filename=f"summary-{doc_id}.json",
                content=json.dumps(records.view(record), indent=2).encode("utf-8"),
                content_type="application/json",
            )
            await svc.email.send(
                svc.config.notify_to, subject, body_text=text, attachments=[attachment]
            )
            await documents.update_one({"_id": doc_id}, {"$set": {"notified": True}})
        if svc.topic is not None and not record.get("announced"):
            await audit.publish_processed(svc.topic, record)
            await documents.update_one({"_id": doc_id}, {"$set": {"announced": True}})


async def _mark_failed(svc: Services, doc_id: str, reason: str) -> None:
    await svc.documents.update_one(
        {"_id": doc_id},
        {"$set": {"status": records.FAILED, "error": reason, "updated_at": records.now()}},
    )


@functools.cache
def _intake_config() -> IntakeConfig:
    return IntakeConfig.from_env()


def standalone_services() -> Services:
    """The backends of the standalone worker process running this job (``cloudrift
    worker`` / ``python -m example_app worker``) and the ``INTAKE_*`` settings."""
    from cloudrift_fastapi.workers import current_container

    box = current_container()
    return Services(
        storage=box.storage(),
        queue=box.queue(),
        database=box.database(),
        cache=box.cache(),
        email=box.email(),
        config=_intake_config(),
        topic=topic_of(box),
    )


#: The handler of a standalone worker process::
#:
#:     cloudrift worker example_app.worker:job --concurrency 4
job = JobHandler(standalone_services)


__all__ = ["JobHandler", "Summary", "job", "standalone_services", "summarize"]
