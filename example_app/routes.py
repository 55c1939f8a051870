"""The HTTP API: upload, direct-upload URLs, read, download and list documents.

Every backend arrives through cloudrift_fastapi's dependencies (``StorageDep``,
``QueueDep``, ``DatabaseDep``, ``CacheDep``), so the same routes run on local files,
S3 or Azure Blob, a memory queue, SQS or Service Bus, and so on.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from cloudrift.core.exceptions import CacheError, FeatureNotSupportedError, ObjectNotFoundError
from cloudrift.messaging import Queue
from cloudrift.storage import Storage
from cloudrift.storage.local import LocalStorage
from cloudrift_fastapi import CacheDep, DatabaseDep, QueueDep, StorageDep
from example_app import audit, records
from example_app.config import IntakeConfig
from example_app.models import (
    AcceptedDocument,
    AuditPage,
    Document,
    DocumentPage,
    NotQueued,
    Problem,
    UploadTicket,
    UploadUrlRequest,
)
from example_app.services import CONFIG_ATTR
from example_app.uploads import MultipartFile, UploadError, boundary_of, clean_filename
from example_app.web import form_fallback

log = logging.getLogger("example_app")

#: Room for the multipart framing around the file when checking Content-Length early.
_FORM_OVERHEAD = 64 * 1024
_MIME = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")

# /docs shows a file picker for POST /documents: the route reads the body as a stream,
# so FastAPI cannot infer this part of the schema itself.
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def get_config(request: Request) -> IntakeConfig:
    """The service's own settings."""
    config: IntakeConfig = getattr(request.app.state, CONFIG_ATTR)
    return config


ConfigDep = Annotated[IntakeConfig, Depends(get_config)]

router = APIRouter(tags=["documents"])


def _error(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def _id_or_422(doc_id: str) -> str:
    try:
        return records.check_id(doc_id)
    except records.InvalidIdError as exc:
        raise _error(422, str(exc)) from None


def _content_type(declared: str | None, filename: str) -> str:
    if declared and _MIME.fullmatch(declared.split(";", 1)[0].strip()):
        return declared.split(";", 1)[0].strip()
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def _links(doc_id: str) -> dict[str, str]:
    return {"self": f"/documents/{doc_id}", "download": f"/documents/{doc_id}/download"}


async def _discard(storage: Storage, key: str) -> None:
    """Best-effort removal of an object nobody will ever process."""
    try:
        await storage.delete(key)
    except Exception as exc:
        log.error("could not delete orphaned object %s: %s", key, type(exc).__name__)


async def _enqueue_or_fail(
    queue: Queue, storage: Storage, documents: Any, doc_id: str, key: str
) -> JSONResponse | None:
    """Queue the processing job; if that fails, remove the stored file, mark the record
    failed and return the 503 that tells the client (None when the job was queued)."""
    try:
        await queue.send({"document_id": doc_id})
    except Exception as exc:
        log.error("document %s: queueing failed (%s); rolling back", doc_id, type(exc).__name__)
        await _discard(storage, key)
        reason = (
            "the document could not be queued for processing, so it was not kept; upload it again"
        )
        try:
            await documents.update_one(
                {"_id": doc_id},
                {"$set": {"status": records.FAILED, "error": reason, "updated_at": records.now()}},
            )
        except Exception as db_exc:
            log.error("document %s: could not mark failed (%s)", doc_id, type(db_exc).__name__)
        return JSONResponse(
            {"detail": reason, "id": doc_id, "status": records.FAILED}, status_code=503
        )
    return None


def _problems(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error answers, each a ``{"detail": ...}`` Problem."""
    return {
        status: {"model": Problem, "description": text} for status, text in descriptions.items()
    }


@router.post(
    "/documents",
    status_code=202,
    response_model=AcceptedDocument,
    openapi_extra=_UPLOAD_BODY,
    summary="Upload a document (multipart field 'file') for processing",
    responses={
        **_problems(
            {
                400: "a malformed or truncated form",
                413: "over the size limit",
                415: "not multipart/form-data",
                422: "no file, an empty file, or more than one file",
            }
        ),
        503: {"model": NotQueued, "description": "received but not queued, so not kept"},
    },
)
@form_fallback  # the page's no-JS <form> gets a redirect back to it, API clients JSON
async def upload_document(
    request: Request,
    storage: StorageDep,
    queue: QueueDep,
    db: DatabaseDep,
    config: ConfigDep,
) -> JSONResponse:
    """Stream the file into storage, record it, queue it; 202 with the new id."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > config.max_upload_bytes + _FORM_OVERHEAD:
        raise _error(
            413,
            f"the file is larger than the limit of {config.max_upload_bytes} bytes; upload "
            "a smaller file or ask the operator to raise INTAKE_MAX_UPLOAD_BYTES",
        )
    doc_id = records.new_id()
    key = f"{config.key_prefix}{doc_id}"
    try:
        upload = MultipartFile(
            request.stream(),
            boundary_of(request.headers.get("content-type")),
            limit=config.max_upload_bytes,
            overhead=_FORM_OVERHEAD,
        )
        await upload.open()
        content_type = _content_type(upload.content_type, upload.filename)
        digest = hashlib.sha256()

        async def hashed() -> AsyncIterator[bytes]:
            async for chunk in upload.chunks():
                digest.update(chunk)
                yield chunk

        await storage.upload_stream(
            key, hashed(), content_type=content_type, metadata={"document_id": doc_id}
        )
    except UploadError as exc:
        raise _error(exc.status, exc.message) from None
    stamp = records.now()
    record = {
        "_id": doc_id,
        "key": key,
        "filename": upload.filename,
        "content_type": content_type,
        "size": upload.size,
        "sha256": digest.hexdigest(),
        "status": records.QUEUED,
        "created_at": stamp,
        "updated_at": stamp,
    }
    documents = db[records.COLLECTION]
    try:
        await documents.insert_one(record)
    except Exception as exc:
        log.error("document %s: could not record it (%s)", doc_id, type(exc).__name__)
        await _discard(storage, key)
        raise _error(
            503, "the document database is unavailable; nothing was kept, try again"
        ) from exc
    failed = await _enqueue_or_fail(queue, storage, documents, doc_id, key)
    if failed is not None:
        return failed
    body = {**records.view(record), "links": _links(doc_id)}
    return JSONResponse(body, status_code=202, headers={"Location": f"/documents/{doc_id}"})


async def _upload_url(
    storage: Storage, key: str, content_type: str, max_size: int, expires_in: int
) -> tuple[str, str]:
    """A presigned PUT URL, as tamper-proof as the provider can make it, and the key it
    writes to (the document's own key only where the URL cannot replace a file)."""
    if isinstance(storage, LocalStorage):
        # Local signed URLs carry the limits: the body is capped while it streams, and
        # the URL only creates the object, so it cannot replace the file once uploaded.
        url = await storage.presigned_upload_url(
            key,
            expires_in=expires_in,
            content_type=content_type,
            max_size=max_size,
            if_not_exists=True,
        )
        return url, key
    # Cloud presigned PUTs (as cloudrift issues them today) can overwrite their object
    # until they expire, so they write to an incoming key that complete moves away from:
    # a later PUT can only create a stray incoming object (the sweeper removes it).
    head, _, doc_id = key.rpartition("/")
    incoming = f"{head}/incoming/{doc_id}" if head else f"incoming/{doc_id}"
    url = await storage.presigned_url(
        incoming, expires_in=expires_in, method="PUT", content_type=content_type
    )
    return url, incoming


def _put_headers(storage: Storage, content_type: str) -> dict[str, str]:
    """The headers a client must send with its PUT to the upload URL."""
    headers = {"Content-Type": content_type}
    if storage.provider == "azure_blob":
        headers["x-ms-blob-type"] = "BlockBlob"  # Azure's Put Blob refuses a PUT without it
    return headers


@router.post(
    "/documents/upload-url",
    status_code=201,
    response_model=UploadTicket,
    summary="Get a presigned PUT URL to upload a file straight to storage",
    responses=_problems(
        {
            413: "the declared size is over the limit",
            501: "the storage cannot issue upload URLs",
        }
    ),
)
async def create_upload_url(
    payload: UploadUrlRequest,
    request: Request,
    storage: StorageDep,
    db: DatabaseDep,
    config: ConfigDep,
) -> JSONResponse:
    """PUT the file to ``upload_url`` with ``headers``, then POST ``complete_url`` before
    ``INTAKE_UPLOAD_TTL`` seconds pass (later, the upload is expired and removed)."""
    if payload.size is not None and payload.size > config.max_upload_bytes:
        raise _error(413, f"the file is larger than the limit of {config.max_upload_bytes} bytes")
    filename = clean_filename(payload.filename)
    if payload.content_type is not None and not _MIME.fullmatch(payload.content_type):
        raise _error(
            422, f"content_type {payload.content_type!r} is not a MIME type like text/plain"
        )
    content_type = _content_type(payload.content_type, filename)
    doc_id = records.new_id()
    key = f"{config.key_prefix}{doc_id}"
    max_size = payload.size or config.max_upload_bytes
    try:
        url, upload_key = await _upload_url(storage, key, content_type, max_size, config.url_ttl)
    except FeatureNotSupportedError:
        raise _error(
            501,
            f"the configured storage ({storage.provider}) cannot issue upload URLs; "
            "use POST /documents instead",
        ) from None
    if url.startswith("/"):
        url = str(request.base_url).rstrip("/") + url
    stamp = records.now()
    await db[records.COLLECTION].insert_one(
        {
            "_id": doc_id,
            "key": key,
            # Where the upload URL writes, when that is not the document's key.
            "upload_key": upload_key if upload_key != key else None,
            "filename": filename,
            "content_type": content_type,
            "size": None,
            "declared_size": payload.size,
            "declared_sha256": payload.sha256.lower() if payload.sha256 else None,
            "status": records.AWAITING_UPLOAD,
            "created_at": stamp,
            "updated_at": stamp,
        }
    )
    return JSONResponse(
        {
            "id": doc_id,
            "upload_url": url,
            "method": "PUT",
            "headers": _put_headers(storage, content_type),
            "expires_in": config.url_ttl,
            "max_size": max_size,
            "complete_url": f"/documents/{doc_id}/complete",
        },
        status_code=201,
    )


async def _receive_upload(
    storage: Storage, record: dict[str, Any], config: IntakeConfig
) -> tuple[int, str]:
    """Size and SHA-256 of a directly uploaded file, checked against the limit and what
    the client declared. The file is first moved out of the upload URL's reach (when the
    URL wrote elsewhere), so the bytes checked are the bytes processed. A refused file
    is deleted (HTTPException saying why); the client may upload again."""
    key = record["key"]
    upload_key = record.get("upload_key") or key
    try:
        if upload_key != key:
            await storage.move(upload_key, key)
        info = await storage.head(key)
    except ObjectNotFoundError:
        raise _error(
            409, "nothing has been uploaded yet: PUT the file to upload_url first"
        ) from None
    again = "; upload the right file again (the upload URL works until it expires)"
    if info.size == 0:
        await _discard(storage, key)
        raise _error(422, "the uploaded file is empty; upload a file with some content")
    if info.size > config.max_upload_bytes:
        await _discard(storage, key)
        raise _error(413, f"the file is larger than the limit of {config.max_upload_bytes} bytes")
    declared = record.get("declared_size")
    if declared is not None and info.size != declared:
        await _discard(storage, key)
        raise _error(
            422,
            f"the uploaded file has {info.size} bytes but {declared} were declared; it was "
            "deleted" + again,
        )
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in storage.download_stream(key):
            digest.update(chunk)
            size += len(chunk)
    except ObjectNotFoundError:
        raise _error(
            409, "the uploaded file disappeared while it was checked; PUT it again"
        ) from None
    if size != info.size:
        raise _error(409, "the uploaded file changed while it was checked; try complete again")
    sha256 = digest.hexdigest()
    wanted = record.get("declared_sha256")
    if wanted is not None and sha256 != wanted:
        await _discard(storage, key)
        raise _error(
            422,
            f"the uploaded file's SHA-256 is {sha256}, not the declared {wanted}; it was "
            "deleted" + again,
        )
    return size, sha256


@router.post(
    "/documents/{doc_id}/complete",
    status_code=202,
    response_model=AcceptedDocument,
    summary="Start processing a file uploaded through an upload URL",
    responses={
        **_problems(
            {
                404: "no such document",
                409: "nothing uploaded yet, or the document is no longer awaiting its upload",
                413: "over the size limit (the file was deleted)",
                422: "empty, or not the declared size or SHA-256 (the file was deleted)",
            }
        ),
        503: {"model": NotQueued, "description": "received but not queued, so not kept"},
    },
)
async def complete_upload(
    doc_id: str, storage: StorageDep, queue: QueueDep, db: DatabaseDep, config: ConfigDep
) -> JSONResponse:
    """Verify the directly uploaded object (size, SHA-256) and queue it; 202 like
    POST /documents."""
    _id_or_422(doc_id)
    documents = db[records.COLLECTION]
    record = await documents.find_one({"_id": doc_id})
    if record is None:
        raise _error(404, f"no document {doc_id}")
    if record.get("status") != records.AWAITING_UPLOAD:
        raise _error(409, f"document {doc_id} is already {record.get('status')}")
    key = record["key"]
    size, sha256 = await _receive_upload(storage, record, config)
    claimed = await documents.update_one(
        {"_id": doc_id, "status": records.AWAITING_UPLOAD},
        {
            "$set": {
                "status": records.QUEUED,
                "size": size,
                "sha256": sha256,
                "updated_at": records.now(),
            }
        },
    )
    if claimed.modified_count != 1:
        current = await documents.find_one({"_id": doc_id})
        status = current.get("status") if current else "gone"
        raise _error(409, f"document {doc_id} is already {status}")
    failed = await _enqueue_or_fail(queue, storage, documents, doc_id, key)
    if failed is not None:
        return failed
    record = await documents.find_one({"_id": doc_id})
    assert record is not None
    return JSONResponse(
        {**records.view(record), "links": _links(doc_id)},
        status_code=202,
        headers={"Location": f"/documents/{doc_id}"},
    )


@router.get(
    "/documents",
    response_model=DocumentPage,
    summary="List documents, optionally by filename prefix, a page at a time",
)
async def list_documents(
    db: DatabaseDep,
    prefix: Annotated[str, Query(max_length=255, description="filename prefix")] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> JSONResponse:
    """Documents in upload order; pass ``next_cursor`` back as ``cursor`` for the next page."""
    query: dict[str, Any] = {}
    if prefix:
        query["filename"] = {"$regex": "^" + re.escape(prefix)}
    if cursor is not None:
        query["_id"] = {"$gt": _id_or_422(cursor)}
    found = db[records.COLLECTION].find(query).sort("_id", 1).limit(limit + 1)
    items = [records.view(doc) async for doc in found]
    more = len(items) > limit
    items = items[:limit]
    return JSONResponse({"items": items, "next_cursor": items[-1]["id"] if more else None})


@router.get(
    "/audit",
    response_model=AuditPage,
    tags=["audit"],
    summary="The newest events recorded by the audit subscription, newest first",
)
async def list_audit(
    db: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_LIMIT)] = 20,
) -> JSONResponse:
    """Every ``document.processed`` event the worker published reaches the topic's
    ``audit`` subscription; its consumer records each once. Empty when the settings
    configure no topic or no ``audit`` subscription."""
    return JSONResponse({"items": await audit.recent(db, limit)})


@router.get(
    "/documents/{doc_id}",
    response_model=Document,
    summary="A document's record (cache first, then the database)",
    responses=_problems({404: "no such document", 422: "not a document id"}),
)
async def get_document(
    doc_id: str, db: DatabaseDep, cache: CacheDep, config: ConfigDep
) -> Response:
    """The record; the ``X-Cache`` header says whether the cache answered (hit/miss)."""
    _id_or_422(doc_id)
    key = records.cache_key(doc_id)
    try:
        raw = await cache.get(key)
    except CacheError as exc:  # a cache outage must not take reads down
        log.warning("cache read failed (%s); asking the database", type(exc).__name__)
        raw = None
    cached = records.decode_view(raw) if raw is not None else None
    if cached is not None:
        return JSONResponse(cached, headers={"X-Cache": "hit"})
    record = await db[records.COLLECTION].find_one({"_id": doc_id})
    if record is None:
        raise _error(404, f"no document {doc_id}")
    data = records.view(record)
    if data["status"] == records.PROCESSED:
        try:
            await cache.set(key, records.encode_view(data), ttl=config.cache_ttl)
        except CacheError as exc:
            log.warning("cache write failed (%s)", type(exc).__name__)
    return JSONResponse(data, headers={"X-Cache": "miss"})


@router.get(
    "/documents/{doc_id}/download",
    status_code=307,
    summary="Redirect to a presigned URL of the stored file",
)
async def download_document(
    doc_id: str, storage: StorageDep, db: DatabaseDep, config: ConfigDep
) -> Response:
    """307 to a short-lived presigned GET URL (streamed through here if the storage
    cannot presign, as with the memory provider)."""
    _id_or_422(doc_id)
    record = await db[records.COLLECTION].find_one({"_id": doc_id})
    if record is None:
        raise _error(404, f"no document {doc_id}")
    status = record.get("status")
    if status == records.AWAITING_UPLOAD:
        raise _error(409, f"document {doc_id} has not been uploaded yet")
    if status == records.FAILED:
        raise _error(409, f"document {doc_id} failed: {record.get('error')}")
    key = record["key"]
    try:
        url = await storage.presigned_url(key, expires_in=config.url_ttl)
    except FeatureNotSupportedError:
        return StreamingResponse(
            storage.download_stream(key),
            media_type=record.get("content_type") or "application/octet-stream",
        )
    return RedirectResponse(url, status_code=307)


__all__ = ["ConfigDep", "UploadUrlRequest", "get_config", "router"]
