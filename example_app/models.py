"""The JSON shapes of the API, declared so ``/openapi.json`` and ``/docs`` show them.

The routes build their answers from :func:`example_app.records.view`; these models
describe those answers (a test checks each documented route against them).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class UploadUrlRequest(BaseModel):
    """Ask for a presigned PUT URL to upload a file directly to storage."""

    filename: str = Field(min_length=1, max_length=255, examples=["report.txt"])
    content_type: str | None = Field(default=None, examples=["text/plain"])
    size: int | None = Field(
        default=None,
        ge=1,
        description="bytes the client will send; complete refuses (and deletes) a file of "
        "another size, and on local storage the URL itself refuses a larger body",
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="hex SHA-256 of the file; complete refuses (and deletes) other bytes",
    )


class Summary(BaseModel):
    """What the worker computed from the document's bytes."""

    size: int
    sha256: str
    is_text: bool
    lines: int | None
    preview: str | None


class Document(BaseModel):
    """A document's record."""

    id: str = Field(description="32 lowercase hex characters")
    filename: str | None
    content_type: str | None
    size: int | None = Field(description="bytes; null until the file has been received")
    status: Literal["awaiting_upload", "queued", "processed", "failed"]
    created_at: str | None
    updated_at: str | None
    summary: Summary | None = Field(default=None, description="once processed")
    error: str | None = Field(default=None, description="why it failed")


class Links(BaseModel):
    """Where to read the document and download its file."""

    self: str
    download: str


class AcceptedDocument(Document):
    """A document accepted for processing (202)."""

    links: Links


class NotQueued(BaseModel):
    """The file was received but could not be queued, so it was not kept (503)."""

    detail: str
    id: str
    status: Literal["failed"]


class UploadTicket(BaseModel):
    """How to upload a file straight to storage, then start its processing (201)."""

    id: str
    upload_url: str = Field(description="PUT the file here, with `headers`")
    method: Literal["PUT"]
    headers: dict[str, str]
    expires_in: int = Field(description="seconds until upload_url stops working")
    max_size: int = Field(description="largest file accepted, in bytes")
    complete_url: str = Field(description="POST here once the PUT succeeded")


class DocumentPage(BaseModel):
    """One page of documents; pass ``next_cursor`` back as ``cursor`` for the next."""

    items: list[Document]
    next_cursor: str | None


class AuditEvent(BaseModel):
    """One event the audit subscription recorded."""

    id: str = Field(examples=["document.processed:0193b2c4e5f6..."])
    type: str = Field(examples=["document.processed"])
    document_id: str | None
    filename: str | None
    size: int | None
    sha256: str | None
    published_at: str | None
    recorded_at: str


class AuditPage(BaseModel):
    """The newest recorded events, newest first."""

    items: list[AuditEvent]


class Problem(BaseModel):
    """An error, saying what to do about it."""

    detail: str


__all__ = [
    "AcceptedDocument",
    "Document",
    "DocumentPage",
    "Links",
    "NotQueued",
    "Problem",
    "Summary",
    "UploadTicket",
    "UploadUrlRequest",
]
