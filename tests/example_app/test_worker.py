"""The processing worker on real memory backends: what it computes, and how it fails."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cloudrift.cache import get_cache
from cloudrift.core.exceptions import EmailConnectionError
from cloudrift.document import get_mongodb
from cloudrift.email import get_email
from cloudrift.messaging import Message, get_queue
from cloudrift.storage import get_storage
from example_app import records
from example_app.config import IntakeConfig
from example_app.services import Services
from example_app.worker import JobHandler, summarize


@pytest.fixture
async def svc() -> AsyncIterator[Services]:
    """Services on memory backends (memory email keeps an ``outbox``); all closed after."""
    client = get_mongodb("memory")
    built = Services(
        storage=get_storage("memory"),
        queue=get_queue("memory"),
        database=client["intake"],
        cache=get_cache("memory"),
        email=get_email("memory", default_from="intake@example.test"),
        config=IntakeConfig(max_attempts=3),
    )
    yield built
    for backend in (built.storage, built.queue, built.cache, built.email):
        await backend.close()
    await client.close()


def job(doc_id: object, receive_count: int = 1) -> Message:
    """A received job message as the queue would deliver it."""
    return Message(
        body={"document_id": doc_id},
        receipt_handle="h",
        message_id="m",
        raw=b"{}",
        receive_count=receive_count,
    )


async def stored(svc: Services, data: bytes, filename: str = "a.txt") -> str:
    """An uploaded object plus its queued record; returns the id."""
    doc_id = records.new_id()
    key = f"documents/{doc_id}"
    await svc.storage.upload(key, data)
    await svc.documents.insert_one(
        {"_id": doc_id, "key": key, "filename": filename, "status": records.QUEUED}
    )
    return doc_id


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"one\ntwo\n", 2),
        (b"one\ntwo", 2),
        (b"single", 1),
        (b"\n\n\n", 3),
        ("h\u00e9llo w\u00f6rld\n".encode(), 1),
    ],
)
async def test_text_summary_counts_lines_hashes_and_previews(
    svc: Services, data: bytes, lines: int
) -> None:
    """Line count counts a last line without a newline; SHA-256 and size are exact."""
    await svc.storage.upload("k", data)
    summary = await summarize(svc.storage, "k", preview_chars=5)
    assert summary.size == len(data)
    assert summary.sha256 == hashlib.sha256(data).hexdigest()
    assert summary.is_text
    assert summary.lines == lines
    assert summary.preview == data.decode()[:5]


async def test_binary_files_get_no_line_count_or_preview(svc: Services) -> None:
    """Bytes with NULs or invalid UTF-8 are binary: lines and preview are None."""
    for data in (b"\x00\x01\x02text", b"\xff\xfe\xfa not utf-8"):
        await svc.storage.upload("bin", data)
        summary = await summarize(svc.storage, "bin", preview_chars=10)
        assert (summary.is_text, summary.lines, summary.preview) == (False, None, None)


async def test_a_multibyte_character_cut_by_the_sample_is_still_text(svc: Services) -> None:
    """A UTF-8 character split at the 8 KiB sniffing boundary does not make a file binary."""
    data = b"a" * 8191 + "\u00e9".encode() + b"\n"
    await svc.storage.upload("cut", data)
    summary = await summarize(svc.storage, "cut", preview_chars=3)
    assert summary.is_text
    assert summary.lines == 1


async def test_a_redelivered_job_sends_one_email_and_keeps_the_summary(svc: Services) -> None:
    """Running the same job twice (at-least-once delivery) emails once."""
    handler = JobHandler(lambda: svc)
    doc_id = await stored(svc, b"hi\n")
    await handler(job(doc_id))
    await handler(job(doc_id, receive_count=2))
    outbox: list[Any] = svc.email.outbox  # type: ignore[attr-defined]
    assert len(outbox) == 1
    record = await svc.documents.find_one({"_id": doc_id})
    assert record["status"] == records.PROCESSED
    assert record["notified"] is True


async def test_email_failure_is_retried_and_the_mail_goes_out_on_redelivery(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed notification raises (the queue redelivers); the retry sends it once."""
    handler = JobHandler(lambda: svc)
    doc_id = await stored(svc, b"x")
    original = svc.email.send

    async def down(*args: Any, **kwargs: Any) -> str:
        raise EmailConnectionError("smtp down")

    monkeypatch.setattr(svc.email, "send", down)
    with pytest.raises(EmailConnectionError):
        await handler(job(doc_id))
    monkeypatch.setattr(svc.email, "send", original)
    await handler(job(doc_id, receive_count=2))
    assert len(svc.email.outbox) == 1  # type: ignore[attr-defined]


async def test_after_max_attempts_the_document_is_marked_failed_not_retried_forever(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the last allowed delivery a failing job marks the record failed and acks."""
    handler = JobHandler(lambda: svc)
    doc_id = await stored(svc, b"x")

    async def down(*args: Any, **kwargs: Any) -> str:
        raise EmailConnectionError("smtp down")

    monkeypatch.setattr(svc.email, "send", down)
    await handler(job(doc_id, receive_count=3))
    record = await svc.documents.find_one({"_id": doc_id})
    assert record["status"] == records.FAILED
    assert "after 3 attempts" in record["error"]


async def test_a_missing_object_marks_the_document_failed(svc: Services) -> None:
    """If the stored file is gone the record says so instead of retrying."""
    handler = JobHandler(lambda: svc)
    doc_id = await stored(svc, b"x")
    await svc.storage.delete(f"documents/{doc_id}")
    await handler(job(doc_id))
    record = await svc.documents.find_one({"_id": doc_id})
    assert record["status"] == records.FAILED
    assert "missing" in record["error"]


@pytest.mark.parametrize("bad", [None, 42, "../../etc", "0" * 31])
async def test_jobs_without_a_valid_id_are_dropped_without_touching_anything(
    svc: Services, bad: object
) -> None:
    """A malformed job is acked (logged), never retried forever, and sends nothing."""
    await JobHandler(lambda: svc)(job(bad))
    assert svc.email.outbox == []  # type: ignore[attr-defined]
    assert await svc.documents.count_documents({}) == 0


async def test_bytes_changed_after_they_were_accepted_are_never_processed(svc: Services) -> None:
    """A stored file whose SHA-256 differs from the one recorded at upload/complete (an
    overwrite through a still-valid cloud upload URL) fails the document, deletes the
    file and sends no email."""
    handler = JobHandler(lambda: svc)
    doc_id = await stored(svc, b"replaced by someone else")
    accepted = hashlib.sha256(b"the bytes that were accepted").hexdigest()
    await svc.documents.update_one({"_id": doc_id}, {"$set": {"sha256": accepted}})
    await handler(job(doc_id))
    record = await svc.documents.find_one({"_id": doc_id})
    assert record["status"] == records.FAILED
    assert "changed after it was accepted" in record["error"]
    assert "summary" not in record
    assert not await svc.storage.exists(f"documents/{doc_id}")
    assert svc.email.outbox == []  # type: ignore[attr-defined]


async def test_bytes_matching_the_accepted_hash_are_processed(svc: Services) -> None:
    """The recorded SHA-256 of the accepted bytes lets the job through unchanged."""
    handler = JobHandler(lambda: svc)
    doc_id = await stored(svc, b"kept as accepted")
    accepted = hashlib.sha256(b"kept as accepted").hexdigest()
    await svc.documents.update_one({"_id": doc_id}, {"$set": {"sha256": accepted}})
    await handler(job(doc_id))
    record = await svc.documents.find_one({"_id": doc_id})
    assert record["status"] == records.PROCESSED
    assert record["summary"]["sha256"] == accepted
