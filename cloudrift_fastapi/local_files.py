"""Serve and accept the ``local`` storage backend's signed URLs, so presigned downloads
and uploads work with no cloud at all::

    settings = CloudriftSettings(storage={
        "provider": "local", "root_dir": "./data",
        "base_url": "http://localhost:8000/files", "signing_key": "...",
    })
    app.include_router(local_files_router(settings))

The router lives at ``base_url``'s path. GET streams the object; PUT streams the request
body into it. A bad, tampered or expired signature answers 403.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import (
    ConfigurationError,
    InvalidKeyError,
    ObjectNotFoundError,
    StoragePermissionError,
)
from cloudrift_fastapi.container import provider_for
from cloudrift_fastapi.deps import container_of


def _prefix(settings: CloudriftSettings, storage: str | None) -> str:
    config = settings.backend("storage", storage)
    where = f"storage.backends.{storage or settings.default_name('storage')}"
    if config.provider != "local":
        raise ConfigurationError(
            f"{where}: local_files_router serves the 'local' provider's signed URLs, but "
            f"this backend's provider is {config.provider!r}"
        )
    base_url = config.options.get("base_url")
    if not isinstance(base_url, str) or not base_url:
        raise ConfigurationError(
            f"{where}.base_url is not set; set it to where this router is reachable, "
            "e.g. http://localhost:8000/files"
        )
    path = urlsplit(base_url).path.rstrip("/")
    if not path:
        raise ConfigurationError(
            f"{where}.base_url {base_url!r} has no path; give it one (e.g. /files) so the "
            "signed-URL route does not shadow the whole app"
        )
    return path


def _forbidden(reason: str) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=403)


def _query(request: Request) -> tuple[int, str, str | None] | JSONResponse:
    params = request.query_params
    signature = params.get("signature")
    expires = params.get("expires")
    if not signature or not expires or not expires.isdigit():
        return _forbidden("missing or malformed signature or expiry; ask for a new URL")
    return int(expires), signature, params.get("content_type")


def local_files_router(settings: CloudriftSettings, *, storage: str | None = None) -> Any:
    """A router serving GET and PUT on the signed URLs of the local storage ``storage``
    (the default storage backend when None), mounted at its ``base_url`` path."""
    prefix = _prefix(settings, storage)
    router = APIRouter(prefix=prefix, include_in_schema=False)

    def backend(request: Request) -> Any:
        return provider_for(container_of(request), "storage", storage)()

    def check(request: Request, key: str, method: str) -> JSONResponse | str | None:
        parsed = _query(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        expires, signature, content_type = parsed
        if request.query_params.get("method", method) != method:
            return _forbidden(f"this URL is not signed for {method}")
        try:
            backend(request).verify_presigned(
                key, method=method, expires=expires, signature=signature, content_type=content_type
            )
        except (StoragePermissionError, InvalidKeyError) as exc:
            return _forbidden(exc.message)
        return content_type

    @router.get("/{key:path}")
    async def download(key: str, request: Request) -> Response:
        verdict = check(request, key, "GET")
        if isinstance(verdict, JSONResponse):
            return verdict
        store = backend(request)
        try:
            info = await store.head(key)
        except ObjectNotFoundError:
            return JSONResponse({"detail": "object not found"}, status_code=404)

        async def body() -> AsyncIterator[bytes]:
            async for chunk in store.download_stream(key):
                yield chunk

        headers = {"content-length": str(info.size)}
        return StreamingResponse(
            body(), media_type=info.content_type or "application/octet-stream", headers=headers
        )

    @router.put("/{key:path}")
    async def upload(key: str, request: Request) -> Response:
        verdict = check(request, key, "PUT")
        if isinstance(verdict, JSONResponse):
            return verdict
        sent_type = request.headers.get("content-type")
        if verdict is not None and sent_type != verdict:
            return _forbidden(f"this URL is signed for Content-Type {verdict!r}")
        await backend(request).upload_stream(
            key, request.stream(), content_type=verdict or sent_type
        )
        return Response(status_code=200)

    return router


__all__ = ["local_files_router"]
