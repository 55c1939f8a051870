"""The audit trail: pub/sub between the processing worker and an independent consumer.

After a document is processed, the worker publishes a ``document.processed`` event to
the configured topic (:func:`publish_processed`). The audit consumer, a second
``queue_worker`` on the topic's ``audit`` subscription, records every event in the
``audit`` collection (:class:`AuditHandler`), and ``GET /audit`` lists the newest.

Both sides are at-least-once and idempotent: the worker marks the record ``announced``
once the event is published (a job run twice publishes again only if that mark was not
stored), and the audit collection is keyed by the event's id, so a redelivered event
is recorded once. The trail is optional: without a ``topic`` section in the settings
nothing is published, and without an ``audit`` subscription nothing is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cloudrift.messaging import Message, Topic
from example_app import records

log = logging.getLogger("example_app.audit")

#: The collection holding the recorded events.
AUDIT_COLLECTION = "audit"
#: The named subscription the audit consumer reads (``subscription.backends.audit``).
AUDIT_SUBSCRIPTION = "audit"
#: The event published once a document has been processed.
PROCESSED = "document.processed"
#: The largest ``GET /audit?limit=``.
MAX_LIMIT = 100


def event_id(kind: str, doc_id: str) -> str:
    """One id per (event, document): a republished event is the same event."""
    return f"{kind}:{doc_id}"


def processed_event(record: dict[str, Any]) -> dict[str, Any]:
    """The ``document.processed`` payload for a processed record."""
    summary = record.get("summary") or {}
    return {
        "id": event_id(PROCESSED, str(record["_id"])),
        "type": PROCESSED,
        "document_id": str(record["_id"]),
        "filename": record.get("filename"),
        "size": summary.get("size"),
        "sha256": summary.get("sha256"),
        "at": records.now(),
    }


async def publish_processed(topic: Topic, record: dict[str, Any]) -> str:
    """Publish ``document.processed`` for ``record``; its type is also an attribute, so
    subscriptions can filter on it (SNS filter policies, Service Bus rules)."""
    return await topic.publish(processed_event(record), attributes={"event": PROCESSED})


class AuditHandler:
    """The audit subscription's handler: record each event once in ``audit``."""

    def __init__(self, database: Callable[[], Any]) -> None:
        self._database = database

    async def __call__(self, message: Message) -> None:
        """Record one event; a message that is not an event is dropped (acked) loudly."""
        body = message.body if message.is_json else None
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            log.error("audit: dropping a message that is not an event: %r", message)
            return
        entry = {
            "type": str(body.get("type", "")),
            "document_id": body.get("document_id"),
            "filename": body.get("filename"),
            "size": body.get("size"),
            "sha256": body.get("sha256"),
            "published_at": body.get("at"),
            "recorded_at": records.now(),
        }
        # Keyed by the event id: a redelivered (or republished) event changes nothing.
        await self._database()[AUDIT_COLLECTION].update_one(
            {"_id": body["id"]}, {"$setOnInsert": entry}, upsert=True
        )


async def recent(database: Any, limit: int) -> list[dict[str, Any]]:
    """The newest recorded events, newest first."""
    found = database[AUDIT_COLLECTION].find({}).sort("recorded_at", -1).limit(limit)
    return [{"id": doc.pop("_id"), **doc} async for doc in found]


def _standalone_database() -> Any:
    from cloudrift_fastapi.workers import current_container

    return current_container().database()


#: The audit consumer as a standalone worker process::
#:
#:     cloudrift worker example_app.audit:record --subscription audit
record = AuditHandler(_standalone_database)


__all__ = [
    "AUDIT_COLLECTION",
    "AUDIT_SUBSCRIPTION",
    "MAX_LIMIT",
    "PROCESSED",
    "AuditHandler",
    "event_id",
    "processed_event",
    "publish_processed",
    "recent",
    "record",
]
