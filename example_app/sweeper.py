"""The sweeper: expires direct uploads that were never completed and removes their files.

A record created by ``POST /documents/upload-url`` stays ``awaiting_upload`` until the
client calls ``complete``. One still waiting ``upload_ttl`` seconds after it was created
(``INTAKE_UPLOAD_TTL``, at least the URL lifetime + 60 s, so no PUT can still arrive) is
marked ``failed`` ("expired") and its object, if any, deleted. Once as old, a failed
document also loses its file, and a completed one the incoming object a cloud upload
URL may have written after ``complete`` moved the file away: stray files would
otherwise stay in storage forever.

The app runs :func:`run_sweeper` in the background every ``sweep_interval`` seconds;
:func:`sweep` does one pass and takes the current time as an argument, so tests move a
clock instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from example_app import records
from example_app.services import Services

log = logging.getLogger("example_app.sweeper")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class SweepResult:
    """What one pass did."""

    expired: int
    purged: int


def _stamp(when: datetime) -> str:
    # The format of records.now(), so ISO strings compare in time order.
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


async def sweep(svc: Services, *, now: datetime) -> SweepResult:
    """Expire uploads not completed within ``upload_ttl`` of ``now`` (record failed, object
    deleted) and delete the objects of failed records as old. Safe to run concurrently
    with ``complete`` and with other sweepers: each record is claimed atomically."""
    documents = svc.documents
    cutoff = _stamp(now - timedelta(seconds=svc.config.upload_ttl))
    expired = purged = 0
    stale = documents.find({"status": records.AWAITING_UPLOAD, "created_at": {"$lt": cutoff}})
    async for record in stale:
        reason = (
            f"the upload was not completed within {svc.config.upload_ttl} seconds, so it "
            "expired; ask for a new upload URL"
        )
        claimed = await documents.update_one(
            {"_id": record["_id"], "status": records.AWAITING_UPLOAD},
            {"$set": {"status": records.FAILED, "error": reason, "updated_at": _stamp(now)}},
        )
        if claimed.modified_count == 1:
            expired += 1
            # Purged on a later pass if this delete fails (purged stays unset).
            if await _delete(svc, record):
                await documents.update_one({"_id": record["_id"]}, {"$set": {"purged": True}})
    # Files that can only be strays by now: everything of a failed document, and the
    # incoming object of a completed one (what a cloud upload URL wrote after complete).
    # Each record is purged once, so a pass never rescans old documents.
    strays: list[tuple[dict[str, Any], bool]] = [
        ({"status": records.FAILED}, True),
        (
            {"status": {"$in": [records.QUEUED, records.PROCESSED]}, "upload_key": {"$ne": None}},
            False,
        ),
    ]
    for query, everything in strays:
        found = documents.find({**query, "purged": {"$ne": True}, "created_at": {"$lt": cutoff}})
        async for record in found:
            if await _delete(svc, record, main=everything):
                purged += 1
                await documents.update_one({"_id": record["_id"]}, {"$set": {"purged": True}})
    if expired or purged:
        log.info(
            "sweeper: %d upload(s) expired, %d failed document file(s) removed", expired, purged
        )
    return SweepResult(expired, purged)


async def _delete(svc: Services, record: dict[str, Any], *, main: bool = True) -> bool:
    """Delete the record's incoming object and (``main``) its file; False if one failed."""
    keys = {str(record.get("upload_key") or record["key"])}
    if main:
        keys.add(str(record["key"]))
    done = True
    for key in sorted(keys):
        try:
            await svc.storage.delete(key)
        except Exception as exc:
            log.error("sweeper: could not delete %s (%s)", key, type(exc).__name__)
            done = False
    return done


async def run_sweeper(
    services: Callable[[], Services],
    *,
    clock: Clock = utc_now,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Sweep every ``sweep_interval`` seconds until cancelled; a failed pass is logged
    and the next one runs on time."""
    while True:
        svc = services()
        await sleep(svc.config.sweep_interval)
        try:
            await sweep(svc, now=clock())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("sweeper: the pass failed (%s); retrying later", type(exc).__name__)


__all__ = ["Clock", "SweepResult", "run_sweeper", "sweep", "utc_now"]
