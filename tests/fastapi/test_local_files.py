"""The local storage's signed URLs served by local_files_router: GET, HEAD, PUT, the
signed upload limits (size cap, create-only), and 403s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import ConfigurationError, InvalidArgumentError
from cloudrift.storage import Storage
from cloudrift.storage.local import LocalStorage
from cloudrift_fastapi import cloudrift_lifespan, local_files_router

SIGNING_KEY = "local-signing-key-for-tests"


@pytest.fixture
def settings(tmp_path: Path) -> CloudriftSettings:
    """Local storage under a temp folder, signed URLs served at http://testserver/files."""
    return CloudriftSettings(
        storage={
            "provider": "local",
            "root_dir": str(tmp_path / "objects"),
            "base_url": "http://testserver/files",
            "signing_key": SIGNING_KEY,
        }
    )


@pytest.fixture
def client(settings: CloudriftSettings) -> TestClient:
    """A started app with the signed-URL router mounted."""
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    app.include_router(local_files_router(settings))
    with TestClient(app) as started:
        yield started  # type: ignore[misc]


def _storage(client: TestClient) -> Storage:
    storage: Storage = client.app.state.cloudrift.storage()  # type: ignore[attr-defined]
    return storage


def _tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())))


def test_signed_get_streams_the_object(client: TestClient) -> None:
    """A presigned GET URL downloads the bytes with the stored content type."""
    storage = _storage(client)
    client.portal.call(
        lambda: storage.upload("docs/a b/é.txt", b"hello", content_type="text/plain")
    )
    url = client.portal.call(lambda: storage.presigned_url("docs/a b/é.txt", expires_in=60))
    response = client.get(url)
    assert response.status_code == 200
    assert response.content == b"hello"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["content-length"] == "5"


def test_signed_put_uploads_the_body(client: TestClient) -> None:
    """A presigned PUT URL stores the request body under the key."""
    storage = _storage(client)
    url = client.portal.call(
        lambda: storage.presigned_url(
            "up/x.json", expires_in=60, method="PUT", content_type="application/json"
        )
    )
    response = client.put(url, content=b'{"a": 1}', headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert client.portal.call(storage.download, "up/x.json") == b'{"a": 1}'
    info = client.portal.call(storage.head, "up/x.json")
    assert info.content_type == "application/json"


def test_put_with_a_different_content_type_is_forbidden(client: TestClient) -> None:
    """A URL signed for one Content-Type refuses an upload sending another."""
    storage = _storage(client)
    url = client.portal.call(
        lambda: storage.presigned_url("x.json", expires_in=60, method="PUT", content_type="a/b")
    )
    response = client.put(url, content=b"x", headers={"content-type": "text/html"})
    assert response.status_code == 403
    assert not client.portal.call(storage.exists, "x.json")


def test_tampered_signature_is_forbidden(client: TestClient) -> None:
    """Changing the signature, key or expiry gives 403 and serves nothing."""
    storage = _storage(client)
    client.portal.call(storage.upload, "secret.txt", b"TOP-SECRET-BYTES")
    client.portal.call(storage.upload, "other.txt", b"OTHER-BYTES")
    url = client.portal.call(lambda: storage.presigned_url("secret.txt", expires_in=60))
    bad_sig = _tamper(url, signature="0" * 64)
    later = str(int(parse_qs(urlsplit(url).query)["expires"][0]) + 1000)
    for forged in (bad_sig, _tamper(url, expires=later), url.replace("secret.txt", "other.txt")):
        response = client.get(forged)
        assert response.status_code == 403, forged
        assert b"TOP-SECRET" not in response.content
        assert b"OTHER-BYTES" not in response.content


def test_get_url_cannot_be_used_to_put(client: TestClient) -> None:
    """A URL signed for GET does not allow an upload."""
    storage = _storage(client)
    client.portal.call(storage.upload, "k.txt", b"original")
    url = client.portal.call(lambda: storage.presigned_url("k.txt", expires_in=60))
    assert client.put(url, content=b"overwritten").status_code == 403
    assert client.put(_tamper(url, method="PUT"), content=b"overwritten").status_code == 403
    assert client.portal.call(storage.download, "k.txt") == b"original"


def test_expired_url_is_forbidden(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once its expiry passes, a genuine URL answers 403 saying it expired."""
    storage = _storage(client)
    client.portal.call(storage.upload, "k.txt", b"v")
    url = client.portal.call(lambda: storage.presigned_url("k.txt", expires_in=60))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    response = client.get(url)
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]


def test_missing_signature_or_expiry_is_forbidden(client: TestClient) -> None:
    """A bare object path without a signature is never served."""
    storage = _storage(client)
    client.portal.call(storage.upload, "k.txt", b"v")
    assert client.get("/files/k.txt").status_code == 403
    assert client.get("/files/k.txt?signature=abc&expires=soon").status_code == 403


def test_missing_object_with_valid_url_is_404(client: TestClient) -> None:
    """A valid URL for an object that does not exist answers 404."""
    storage = _storage(client)
    url = client.portal.call(lambda: storage.presigned_url("ghost.txt", expires_in=60))
    assert client.get(url).status_code == 404


def test_router_refuses_a_non_local_storage() -> None:
    """Mounting the router for an S3 backend is a configuration error naming it."""
    settings = CloudriftSettings(storage={"provider": "memory"})
    with pytest.raises(ConfigurationError, match="provider is 'memory'"):
        local_files_router(settings)


def test_router_needs_a_base_url_with_a_path(tmp_path: Path) -> None:
    """Without base_url, or with one that has no path, the router is refused."""
    no_url = CloudriftSettings(storage={"provider": "local", "root_dir": str(tmp_path)})
    with pytest.raises(ConfigurationError, match=r"storage\.backends\.default\.base_url"):
        local_files_router(no_url)
    root = CloudriftSettings(
        storage={"provider": "local", "root_dir": str(tmp_path), "base_url": "http://h/"}
    )
    with pytest.raises(ConfigurationError, match="has no path"):
        local_files_router(root)


def _tmp_files(settings: CloudriftSettings) -> list[Path]:
    root = Path(str(settings.backend("storage").options["root_dir"]))
    return [p for p in root.rglob("*") if p.is_file() and "meta" not in p.parts]


def _upload_url(client: TestClient, key: str, **limits: object) -> str:
    storage = _storage(client)
    url: str = client.portal.call(
        lambda: storage.presigned_upload_url(key, expires_in=60, **limits)  # type: ignore[attr-defined]
    )
    return url


def test_head_on_a_signed_get_url_answers_the_headers_without_a_body(client: TestClient) -> None:
    """HEAD on a GET URL: 200 with length, type, ETag and Last-Modified, and no body."""
    storage = _storage(client)
    client.portal.call(lambda: storage.upload("h/é.txt", b"hello", content_type="text/plain"))
    url = client.portal.call(lambda: storage.presigned_url("h/é.txt", expires_in=60))
    response = client.head(url)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "5"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["etag"] == client.get(url).headers["etag"]
    assert response.headers["last-modified"].endswith("GMT")


def test_head_checks_the_signature_like_get(client: TestClient) -> None:
    """HEAD with a tampered, PUT-signed or unsigned URL is 403; a missing object 404."""
    storage = _storage(client)
    client.portal.call(storage.upload, "k.txt", b"v")
    url = client.portal.call(lambda: storage.presigned_url("k.txt", expires_in=60))
    put_url = client.portal.call(lambda: storage.presigned_url("k.txt", method="PUT"))
    ghost = client.portal.call(lambda: storage.presigned_url("ghost.txt", expires_in=60))
    assert client.head(_tamper(url, signature="0" * 64)).status_code == 403
    assert client.head(put_url).status_code == 403
    assert client.head("/files/k.txt").status_code == 403
    missing = client.head(ghost)
    assert missing.status_code == 404
    assert missing.content == b""


def test_a_create_only_url_uploads_once_and_then_answers_412(client: TestClient) -> None:
    """if_not_exists: the first PUT stores the body; a second is 412, the bytes unchanged."""
    storage = _storage(client)
    url = _upload_url(client, "once.txt", if_not_exists=True)
    assert client.put(url, content=b"first").status_code == 200
    second = client.put(url, content=b"overwrite")
    assert second.status_code == 412
    assert "already been uploaded" in second.json()["detail"]
    assert client.portal.call(storage.download, "once.txt") == b"first"


def test_a_create_only_url_never_replaces_an_object_written_meanwhile(
    client: TestClient, settings: CloudriftSettings
) -> None:
    """An object appearing while the body streams wins: the PUT is 412, nothing replaced."""
    storage = _storage(client)
    url = _upload_url(client, "race.txt", if_not_exists=True)
    root = Path(str(settings.backend("storage").options["root_dir"]))

    def body() -> Iterator[bytes]:
        yield b"late "
        (root / "race.txt").write_bytes(b"written meanwhile")  # another writer
        yield b"bytes"

    assert client.put(url, content=body()).status_code == 412
    assert client.portal.call(storage.download, "race.txt") == b"written meanwhile"


def test_a_body_over_the_signed_size_cap_is_413_and_nothing_is_stored(
    client: TestClient, settings: CloudriftSettings
) -> None:
    """max_size: a Content-Length one byte over is refused; the cap itself is accepted."""
    storage = _storage(client)
    url = _upload_url(client, "capped.bin", max_size=1000, if_not_exists=True)
    response = client.put(url, content=b"x" * 1001)
    assert response.status_code == 413
    assert "limit of 1000 bytes" in response.json()["detail"]
    assert not client.portal.call(storage.exists, "capped.bin")
    assert _tmp_files(settings) == []
    # The refused attempt left nothing, so the create-only URL still works.
    assert client.put(url, content=b"y" * 1000).status_code == 200


async def test_a_streamed_body_over_the_cap_is_413_before_it_is_all_read(
    settings: CloudriftSettings,
) -> None:
    """Without Content-Length the cap is enforced while streaming: 413, most of the body
    never read, no object and no temp file left."""
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    app.include_router(local_files_router(settings))
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield b"x" * 100

    async with app.router.lifespan_context(app):
        storage = app.state.cloudrift.storage()
        url = await storage.presigned_upload_url("capped.bin", max_size=1000)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.put(url, content=body())
        assert not await storage.exists("capped.bin")
    assert response.status_code == 413
    assert pulled < 20
    assert _tmp_files(settings) == []


def test_upload_limits_are_signed(client: TestClient) -> None:
    """Dropping or changing max_size or if_not_exists breaks the signature (403)."""
    storage = _storage(client)
    url = _upload_url(client, "signed.bin", max_size=10, if_not_exists=True)
    for forged in (
        url.replace("&max_size=10", ""),
        url.replace("max_size=10", "max_size=99999"),
        url.replace("&if_not_exists=1", ""),
        url.replace("if_not_exists=1", "if_not_exists=0"),
    ):
        assert client.put(forged, content=b"x" * 50).status_code == 403, forged
    assert not client.portal.call(storage.exists, "signed.bin")


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
async def test_presigned_upload_url_refuses_a_bad_max_size(tmp_path: Path, bad: object) -> None:
    """max_size must be a positive int: InvalidArgumentError naming it otherwise."""
    storage = LocalStorage(root_dir=tmp_path, base_url="/files")
    async with storage:
        with pytest.raises(InvalidArgumentError, match="max_size"):
            await storage.presigned_upload_url("k", max_size=bad)  # type: ignore[arg-type]


async def test_create_from_stream_lets_exactly_one_of_two_concurrent_writers_win(
    tmp_path: Path,
) -> None:
    """Two concurrent create-only streams: one stores its bytes, the other gets
    ObjectExistsError; the stored object is one writer's, whole."""
    storage = LocalStorage(root_dir=tmp_path)

    async def parts(tag: bytes) -> AsyncIterator[bytes]:
        for _ in range(50):
            await asyncio.sleep(0)
            yield tag * 1000

    async with storage:
        results = await asyncio.gather(
            storage.create_from_stream("c.bin", parts(b"a")),
            storage.create_from_stream("c.bin", parts(b"b")),
            return_exceptions=True,
        )
        stored = await storage.download("c.bin")
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "ObjectExistsError"]
    assert stored in (b"a" * 50_000, b"b" * 50_000)
