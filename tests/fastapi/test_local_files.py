"""The local storage's signed URLs served by local_files_router: GET, PUT, and 403s."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.storage import Storage
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
