"""Upload filenames arrive exactly as sent (raw UTF-8, latin-1, RFC 8187 ``filename*``),
minus directories and control characters; one file per upload. Bodies are built by hand
so the bytes on the wire are exactly what a browser, curl or a hostile client sends."""

from __future__ import annotations

import email
import email.header
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from example_app import records
from example_app.uploads import MAX_FILENAME, MAX_PART_HEADER_BYTES, clean_filename
from tests.example_app.conftest import running, wait_for_status

BOUNDARY = b"----cloudriftBoundary7MA4YWxk"
CTYPE = {"content-type": "multipart/form-data; boundary=" + BOUNDARY.decode()}


def part(disposition: bytes, content: bytes, content_type: bytes = b"text/plain") -> bytes:
    """One multipart part with a raw Content-Disposition header value."""
    return (
        b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        b"Content-Type: " + content_type + b"\r\n\r\n" + content + b"\r\n"
    )


def form(*parts: bytes) -> bytes:
    """A complete multipart body of ``parts``."""
    return b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"


def _stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "files"
    return [p for p in root.rglob("*") if p.is_file() and ".cloudrift" not in p.parts]


async def _records(app: FastAPI) -> list[dict[str, object]]:
    database = app.state.cloudrift.database()
    return [doc async for doc in database[records.COLLECTION].find({})]


async def _post(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post("/documents", content=body, headers=CTYPE)


@pytest.mark.parametrize(
    ("disposition", "stored"),
    [
        pytest.param('form-data; name="file"; filename="日本.txt"'.encode(), "日本.txt", id="utf8"),
        pytest.param(
            'form-data; name="file"; filename="résumé.txt"'.encode(),
            "résumé.txt",
            id="utf8-accents",
        ),
        pytest.param(
            b'form-data; name="file"; filename="r\xe9sum\xe9.txt"', "résumé.txt", id="latin-1"
        ),
        pytest.param(
            b"form-data; name=\"file\"; filename*=UTF-8''%E6%97%A5.txt", "日.txt", id="rfc8187"
        ),
        pytest.param(
            b'form-data; name="file"; filename="plain.txt"; filename*=utf-8\'ja\'%E6%97%A5.txt',
            "日.txt",
            id="rfc8187-wins-over-filename",
        ),
        pytest.param(
            b"form-data; name=\"file\"; filename*=iso-8859-1''r%E9sum%E9.txt",
            "résumé.txt",
            id="rfc8187-latin-1",
        ),
        pytest.param(
            b'form-data; name="file"; filename="kept.txt"; filename*=UTF-8\'\'%FF%FE.txt',
            "kept.txt",
            id="undecodable-rfc8187-falls-back",
        ),
        pytest.param(
            'form-data; name="file"; filename="👨‍👩‍👧 family.txt"'.encode(),
            "👨‍👩‍👧 family.txt",
            id="emoji-zwj-and-space",
        ),
        pytest.param(
            b'form-data; name="file"; filename="say \\"hi\\"; a=b.txt"',
            'say "hi"; a=b.txt',
            id="escaped-quote-and-semicolon",
        ),
        pytest.param(b'form-data; name="file"; filename=bare.txt', "bare.txt", id="unquoted"),
        pytest.param(
            b'form-data; name="file"; filename="a%22b%22 100%25 %0Ax.txt"',
            'a"b" 100%25 x.txt',
            id="browser-escaped-quote-and-newline",
        ),
        pytest.param(
            b'form-data; name="file"; filename="../../etc/passwd"', "passwd", id="dot-dot-path"
        ),
        pytest.param(
            b'form-data; name="file"; filename="C:\\Users\\me\\report.txt"',
            "report.txt",
            id="windows-path",
        ),
        pytest.param(b'form-data; name="file"; filename="a\x00b\tc.txt"', "abc.txt", id="nul-tab"),
        pytest.param(
            'form-data; name="file"; filename="invoice\u202etxt.exe"'.encode(),
            "invoicetxt.exe",
            id="bidi-override",
        ),
        pytest.param(b'form-data; name="file"; filename=".."', "upload", id="dot-dot"),
        pytest.param(b'form-data; name="file"; filename=""', "upload", id="empty"),
        pytest.param(b'form-data; name="file"; filename="///"', "upload", id="only-slashes"),
        pytest.param(b'form-data; name="file"; filename="\\\\"', "upload", id="only-backslash"),
        pytest.param(b'form-data; name="file"; filename="\x01\x02"', "upload", id="only-controls"),
        pytest.param(b'form-data; name="file"', "upload", id="missing-filename"),
        pytest.param(
            b'form-data; name="file"; filename=".env"', ".env", id="leading-dot-is-a-name"
        ),
    ],
)
async def test_the_filename_is_kept_exactly_minus_directories_and_controls(
    demo_app: Callable[..., FastAPI], disposition: bytes, stored: str
) -> None:
    """Each Content-Disposition answers 202 and records (and lists) the expected name."""
    app = demo_app()
    async with running(app) as client:
        response = await _post(client, form(part(disposition, b"hello\n")))
        assert response.status_code == 202, response.text
        assert response.json()["filename"] == stored
        doc_id = response.json()["id"]
        record = (await client.get(f"/documents/{doc_id}")).json()
        listed = (await client.get("/documents", params={"prefix": stored})).json()
    assert record["filename"] == stored
    assert [item["id"] for item in listed["items"]] == [doc_id]


async def test_a_very_long_filename_keeps_its_start_and_extension(
    demo_app: Callable[..., FastAPI],
) -> None:
    """A 1,000-character name is cut to MAX_FILENAME characters, extension kept."""
    long_name = "長" * 1000 + ".txt"
    app = demo_app()
    async with running(app) as client:
        disposition = f'form-data; name="file"; filename="{long_name}"'.encode()
        response = await _post(client, form(part(disposition, b"x")))
    assert response.status_code == 202, response.text
    assert response.json()["filename"] == "長" * (MAX_FILENAME - 4) + ".txt"


async def test_a_unicode_upload_is_processed_and_its_email_names_the_file(
    demo_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    """日本.txt goes through the worker; the notification's subject carries the name."""
    app = demo_app()
    async with running(app) as client:
        disposition = 'form-data; name="file"; filename="日本.txt"'.encode()
        response = await _post(client, form(part(disposition, "こんにちは\n".encode())))
        assert response.status_code == 202, response.text
        body = await wait_for_status(client, response.json()["id"])
    assert body["filename"] == "日本.txt"
    (eml,) = sorted((tmp_path / "outbox").glob("*.eml"))
    subject = email.message_from_bytes(eml.read_bytes())["Subject"]
    decoded = str(email.header.make_header(email.header.decode_header(subject)))
    assert decoded == "Document processed: 日本.txt"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            form(
                part(b'form-data; name="file"; filename="a.txt"', b"first"),
                part(b'form-data; name="file"; filename="b.txt"', b"second"),
            ),
            id="two-file-parts",
        ),
        pytest.param(
            form(
                part(b'form-data; name="file"', b"a text field named file"),
                part(b'form-data; name="note"', b"between"),
                part(b'form-data; name="file"; filename="b.txt"', b"second"),
            ),
            id="file-field-then-file-part",
        ),
    ],
)
async def test_a_second_file_part_is_422_and_nothing_is_kept(
    demo_app: Callable[..., FastAPI], tmp_path: Path, body: bytes
) -> None:
    """Two ``file`` fields answer 422 saying only one file is accepted; nothing stored."""
    app = demo_app()
    async with running(app) as client:
        response = await _post(client, body)
        assert response.status_code == 422, response.text
        assert "only one file is accepted" in response.json()["detail"]
        assert await _records(app) == []
    assert _stored_files(tmp_path) == []


async def test_other_fields_around_the_file_are_accepted(
    demo_app: Callable[..., FastAPI],
) -> None:
    """Non-file fields before and after the file are read and ignored."""
    app = demo_app()
    body = form(
        part(b'form-data; name="note"', b"before"),
        part(b'form-data; name="file"; filename="f.txt"', b"content"),
        part(b'form-data; name="tag"', b"after"),
    )
    async with running(app) as client:
        response = await _post(client, body)
    assert response.status_code == 202, response.text
    assert response.json()["size"] == len(b"content")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param(
            form(part(b'form-data; name="file"; filename="' + b"n" * MAX_PART_HEADER_BYTES, b"x")),
            400,
            "header lines may be at most",
            id="huge-header",
        ),
        pytest.param(
            b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; '
            b'filename="a\rX-Injected: 1.txt"\r\n\r\nabc\r\n--' + BOUNDARY + b"--\r\n",
            400,
            "the multipart body is malformed",
            id="bare-cr-in-a-header",
        ),
        pytest.param(
            part(b'form-data; name="file"; filename="a.txt"', b"complete file part"),
            400,
            "truncated",
            id="no-closing-boundary",
        ),
    ],
)
async def test_malformed_forms_around_a_good_file_keep_nothing(
    demo_app: Callable[..., FastAPI], tmp_path: Path, body: bytes, status: int, message: str
) -> None:
    """An oversized part header or a body cut after the file part: 400, nothing kept."""
    app = demo_app()
    async with running(app) as client:
        response = await _post(client, body)
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]
        assert await _records(app) == []
    assert _stored_files(tmp_path) == []


async def test_an_endless_field_after_the_file_is_413_without_reading_it_all(
    demo_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    """Without Content-Length, the body (file + framing) is capped while streaming."""
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield part(b'form-data; name="file"; filename="a.txt"', b"small file")
        yield b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="junk"\r\n\r\n'
        for _ in range(10_000):
            pulled += 1
            yield b"j" * 1000

    app = demo_app(max_upload_bytes=1000)
    async with running(app) as client:
        response = await client.post("/documents", content=body(), headers=CTYPE)
        assert response.status_code == 413, response.text
        assert await _records(app) == []
    assert pulled < 200
    assert _stored_files(tmp_path) == []


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../x/日本.txt", "日本.txt"),
        ("a\x00b.txt", "ab.txt"),
        ("..", "upload"),
        ("\\\\server\\share\\f.txt", "f.txt"),
        ("line\u2028break.txt", "linebreak.txt"),
        (" spaced name .txt", " spaced name .txt"),
    ],
)
def test_clean_filename_strips_only_directories_and_control_characters(
    sent: str, kept: str
) -> None:
    """clean_filename keeps everything but path parts and control/bidi characters."""
    assert clean_filename(sent) == kept


async def test_upload_url_records_the_filename_cleaned_the_same_way(
    demo_app: Callable[..., FastAPI],
) -> None:
    """The JSON upload-url flow applies the same cleaning as the multipart upload."""
    app = demo_app()
    async with running(app) as client:
        offer = await client.post(
            "/documents/upload-url", json={"filename": "../dir/r\u00e9sum\u00e9\u0000.txt"}
        )
        assert offer.status_code == 201, offer.text
        record = (await client.get(f"/documents/{offer.json()['id']}")).json()
    assert record["filename"] == "résumé.txt"
