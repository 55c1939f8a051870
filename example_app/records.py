"""Document records: ids, the stored shape, the public view, and the cache entry.

A record lives in the document DB's ``documents`` collection under ``_id`` (the
document id). Its ``status`` moves ``awaiting_upload`` → ``queued`` → ``processed``, or
to ``failed`` (with ``error`` saying why).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Final

COLLECTION: Final = "documents"

AWAITING_UPLOAD: Final = "awaiting_upload"
QUEUED: Final = "queued"
PROCESSED: Final = "processed"
FAILED: Final = "failed"

_ID = re.compile(r"^[0-9a-f]{32}$")


class InvalidIdError(ValueError):
    """A document id that this service could never have issued."""


def new_id() -> str:
    """A fresh id: 32 hex characters, the first 12 the creation time in milliseconds, so
    sorting by id lists documents in upload order."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def check_id(value: str) -> str:
    """``value`` if it is a well-formed document id; InvalidIdError saying what one is."""
    if not _ID.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidIdError(
            f"invalid document id {shown!r}: ids are 32 lowercase hex characters, "
            "as returned by POST /documents"
        )
    return value


def now() -> str:
    """The current UTC time as ISO 8601 text (portable across every document DB)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def cache_key(doc_id: str) -> str:
    """Where a processed record is cached."""
    return f"intake:document:{doc_id}"


def view(record: dict[str, Any]) -> dict[str, Any]:
    """The public JSON shape of a stored record (no storage internals)."""
    out: dict[str, Any] = {
        "id": record["_id"],
        "filename": record.get("filename"),
        "content_type": record.get("content_type"),
        "size": record.get("size"),
        "status": record.get("status"),
        "created_at": record.get("created_at"),
        "updated_at": record.get("updated_at"),
    }
    if record.get("summary") is not None:
        out["summary"] = record["summary"]
    if record.get("error"):
        out["error"] = record["error"]
    return out


def encode_view(data: dict[str, Any]) -> bytes:
    """A view as the bytes stored in the cache."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")


def decode_view(raw: bytes) -> dict[str, Any] | None:
    """A cached view, or None when the entry is not one (then the DB is asked)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("id"), str) else None


__all__ = [
    "AWAITING_UPLOAD",
    "COLLECTION",
    "FAILED",
    "PROCESSED",
    "QUEUED",
    "InvalidIdError",
    "cache_key",
    "check_id",
    "decode_view",
    "encode_view",
    "new_id",
    "now",
    "view",
]
