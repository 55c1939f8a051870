"""Bad input gets a specific 4xx with a message saying what to do; nothing half-written."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from cloudrift.core.exceptions import MessagingConnectionError
from cloudrift.messaging import get_queue
from cloudrift.storage import get_storage
from cloudrift.storage.local import LocalStorage
from cloudrift_fastapi import override_backends
from example_app import records
from tests.example_app.conftest import running, upload

LIMIT = 1000


def _stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "files"
    return [p for p in root.rglob("*") if p.is_file() and ".cloudrift" not in p.parts]


async def _records(app: FastAPI) -> list[dict[str, object]]:
    database = app.state.cloudrift.database()
    return [doc async for doc in database[records.COLLECTION].find({})]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        pytest.param({}, 415, "multipart/form-data", id="no-body"),
        pytest.param({"json": {"file": "x"}}, 415, "field named 'file'", id="json-body"),
        pytest.param(
            {"files": {"other": ("a.txt", b"abc", "text/plain")}},
            422,
            "no file in the upload",
            id="missing-file-field",
        ),
        pytest.param(
            {"files": {"file": ("a.txt", b"", "text/plain")}},
            422,
            "the uploaded file is empty",
            id="empty-file",
        ),
        pytest.param(
            {"files": {"file": ("big.bin", b"x" * (LIMIT + 1), "application/octet-stream")}},
            413,
            f"larger than the limit of {LIMIT} bytes",
            id="one-byte-over-the-limit",
        ),
        pytest.param(
            {
                "content": b'--b\r\nContent-Disposition: form-data; name="file"; '
                b'filename="a.txt"\r\n\r\nabc',
                "headers": {"content-type": "multipart/form-data; boundary=b"},
            },
            400,
            "the upload body is truncated",
            id="truncated-body",
        ),
        pytest.param(
            {"content": b"abc", "headers": {"content-type": "multipart/form-data"}},
            400,
            "no boundary",
            id="no-boundary",
        ),
    ],
)
async def test_bad_uploads_get_a_clear_4xx_and_keep_nothing(
    demo_app: Callable[..., FastAPI],
    tmp_path: Path,
    request_kwargs: dict[str, object],
    status: int,
    message: str,
) -> None:
    """Each malformed upload answers its status and message; no file, no record remains."""
    app = demo_app(max_upload_bytes=LIMIT)
    async with running(app) as client:
        response = await client.post("/documents", **request_kwargs)  # type: ignore[arg-type]
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]
        assert await _records(app) == []
    assert _stored_files(tmp_path) == []


async def test_a_file_exactly_at_the_limit_is_accepted(
    demo_app: Callable[..., FastAPI],
) -> None:
    """The limit is inclusive: LIMIT bytes pass, LIMIT + 1 do not (above)."""
    app = demo_app(max_upload_bytes=LIMIT)
    async with running(app) as client:
        response = await upload(client, b"y" * LIMIT)
    assert response.status_code == 202, response.text
    assert response.json()["size"] == LIMIT


async def test_size_limit_stops_a_chunked_upload_before_reading_the_rest(
    demo_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    """Without Content-Length the limit is enforced while streaming: 413 and most of the
    body is never read (so it is never held in memory or on disk)."""
    app = demo_app(max_upload_bytes=LIMIT)
    pulled = 0
    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield head
        for _ in range(1000):
            pulled += 1
            yield b"z" * 500

    async with running(app) as client:
        response = await client.post(
            "/documents",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
    assert response.status_code == 413
    assert pulled < 10
    assert _stored_files(tmp_path) == []


async def test_declared_content_length_over_the_limit_is_refused_before_reading(
    demo_app: Callable[..., FastAPI],
) -> None:
    """A Content-Length far over the limit gets 413 without the body being parsed."""
    app = demo_app(max_upload_bytes=LIMIT)
    async with running(app) as client:
        response = await upload(client, b"x" * (LIMIT + 200_000))
    assert response.status_code == 413
    assert "INTAKE_MAX_UPLOAD_BYTES" in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    ["/documents/not-an-id", "/documents/ABCDEF0123456789ABCDEF0123456789/download"],
)
async def test_invalid_ids_get_422_saying_what_an_id_looks_like(
    demo_app: Callable[..., FastAPI], path: str
) -> None:
    """A malformed id is rejected before any backend is asked."""
    app = demo_app()
    async with running(app) as client:
        response = await client.get(path)
    assert response.status_code == 422
    assert "ids are 32 lowercase hex characters" in response.json()["detail"]


@pytest.mark.parametrize("suffix", ["", "/download"])
async def test_unknown_documents_get_404(demo_app: Callable[..., FastAPI], suffix: str) -> None:
    """A well-formed id nobody issued is 404 for the record and the download."""
    app = demo_app()
    unknown = "0" * 32
    async with running(app) as client:
        response = await client.get(f"/documents/{unknown}{suffix}")
    assert response.status_code == 404
    assert response.json()["detail"] == f"no document {unknown}"


async def test_bad_listing_parameters_are_422(demo_app: Callable[..., FastAPI]) -> None:
    """limit out of 1..100 and a malformed cursor are refused with 422."""
    app = demo_app()
    async with running(app) as client:
        assert (await client.get("/documents", params={"limit": 0})).status_code == 422
        assert (await client.get("/documents", params={"limit": 101})).status_code == 422
        bad = await client.get("/documents", params={"cursor": "zzz"})
    assert bad.status_code == 422
    assert "invalid document id" in bad.json()["detail"]


async def test_upload_url_refuses_a_declared_size_over_the_limit_and_bad_types(
    demo_app: Callable[..., FastAPI],
) -> None:
    """upload-url: size over the limit → 413; a non-MIME content_type or no filename → 422."""
    app = demo_app(max_upload_bytes=LIMIT)
    async with running(app) as client:
        big = await client.post("/documents/upload-url", json={"filename": "a", "size": LIMIT + 1})
        odd = await client.post(
            "/documents/upload-url", json={"filename": "a", "content_type": "not a type"}
        )
        nameless = await client.post("/documents/upload-url", json={"filename": ""})
    assert big.status_code == 413
    assert odd.status_code == 422
    assert "is not a MIME type" in odd.json()["detail"]
    assert nameless.status_code == 422


async def test_completing_an_empty_direct_upload_is_422_and_removes_it(
    demo_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    """An empty object PUT through an upload URL is refused at complete and deleted."""
    app = demo_app()
    async with running(app) as client:
        ticket = (await client.post("/documents/upload-url", json={"filename": "e.txt"})).json()
        await client.put(ticket["upload_url"], content=b"", headers=ticket["headers"])
        response = await client.post(ticket["complete_url"])
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]
    assert _stored_files(tmp_path) == []


class FailingQueue:
    """A queue whose sends fail as an unreachable service's would (health is fine)."""

    async def send(self, payload: object, delay: float = 0, **_: object) -> str:
        raise MessagingConnectionError("queue service unreachable")

    async def consume(self, handler: object, **_: object) -> int:
        return 0

    async def health_check(self) -> bool:
        return True


async def test_queue_failure_after_upload_removes_the_file_marks_failed_and_says_so(
    demo_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    """If the job cannot be queued: 503 telling the client, no stored file, record failed."""
    app = demo_app()
    with override_backends(app, queue=FailingQueue()):
        async with running(app) as client:
            response = await upload(client, b"will not be kept")
            assert response.status_code == 503
            body = response.json()
            assert body["status"] == "failed"
            assert "could not be queued" in body["detail"]
            record = (await client.get(f"/documents/{body['id']}")).json()
            assert record["status"] == "failed"
            assert "upload it again" in record["error"]
            download = await client.get(f"/documents/{body['id']}/download")
            assert download.status_code == 409
    assert _stored_files(tmp_path) == []


async def test_a_backend_error_becomes_503_without_leaking_its_message(
    demo_app: Callable[..., FastAPI],
) -> None:
    """A cloudrift error escaping a route is a 503 naming only its kind, never its text."""
    secret = "s3cr3t-token-value"

    class BrokenStorage:
        provider = "broken"

        async def presigned_url(self, *args: object, **kwargs: object) -> str:
            from cloudrift.core.exceptions import StorageConnectionError

            raise StorageConnectionError(f"connect to https://user:{secret}@host failed")

        async def health_check(self) -> bool:
            return True

    app = demo_app()
    with override_backends(app, storage=BrokenStorage()):
        async with running(app) as client:
            response = await client.post("/documents/upload-url", json={"filename": "a.txt"})
    assert response.status_code == 503
    assert secret not in response.text
    assert "StorageConnectionError" in response.json()["detail"]


async def test_memory_storage_cannot_presign_so_download_streams_and_upload_url_is_501(
    demo_app: Callable[..., FastAPI],
) -> None:
    """On storage that cannot presign, download streams through the app and upload-url
    answers 501 pointing at POST /documents."""
    app = demo_app()
    memory_storage = get_storage("memory")
    memory_queue = get_queue("memory")
    try:
        with override_backends(app, storage=memory_storage, queue=memory_queue):
            async with running(app) as client:
                doc_id = (await upload(client, b"through the app")).json()["id"]
                download = await client.get(f"/documents/{doc_id}/download")
                offer = await client.post("/documents/upload-url", json={"filename": "a"})
    finally:
        await memory_storage.close()
        await memory_queue.close()
    assert download.status_code == 200
    assert download.content == b"through the app"
    assert offer.status_code == 501
    assert "POST /documents" in offer.json()["detail"]


async def test_uploads_reach_storage_while_the_body_is_still_arriving(
    demo_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    """The file is streamed: storage gets its first part long before the last body chunk
    is read, so a large upload is never held whole in memory."""
    chunk = b"s" * (1024 * 1024)
    chunks = 12
    pulled = 0
    pulled_at_first_part: list[int] = []

    class WatchedStorage(LocalStorage):
        async def _put_stream(self, key: str, parts: Any, *args: Any) -> None:
            async def watched() -> AsyncIterator[bytes]:
                async for part in parts:
                    pulled_at_first_part.append(pulled)
                    yield part

            await super()._put_stream(key, watched(), *args)

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        for _ in range(chunks):
            pulled += 1
            yield chunk
        yield b"\r\n--b--\r\n"

    app = demo_app(max_upload_bytes=chunks * len(chunk))
    storage = WatchedStorage(root_dir=tmp_path / "watched", base_url="/files")
    try:
        with override_backends(app, storage=storage):
            async with running(app) as client:
                response = await client.post(
                    "/documents",
                    content=body(),
                    headers={"content-type": "multipart/form-data; boundary=b"},
                )
    finally:
        await storage.close()
    assert response.status_code == 202, response.text
    assert response.json()["size"] == chunks * len(chunk)
    assert pulled_at_first_part
    assert pulled_at_first_part[0] < chunks


async def test_database_failure_after_upload_removes_the_file_and_answers_503(
    demo_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    """If the record cannot be written the stored file is deleted and the client told."""
    from pymongo.errors import AutoReconnect

    class DownCollection:
        async def insert_one(self, document: object) -> None:
            raise AutoReconnect("connection reset by the database")

    class DownDatabase:
        def __getitem__(self, name: str) -> DownCollection:
            return DownCollection()

    app = demo_app()
    with override_backends(app, database=DownDatabase()):
        async with running(app) as client:
            response = await upload(client, b"not recorded")
    assert response.status_code == 503
    assert "nothing was kept" in response.json()["detail"]
    assert _stored_files(tmp_path) == []
