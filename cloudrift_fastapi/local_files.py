"""Serve and accept the ``local`` storage backend's signed URLs, so presigned downloads
and uploads work with no cloud at all::

    settings = CloudriftSettings(storage={
        "provider": "local", "root_dir": "./data",
        "base_url": "http://localhost:8000/files", "signing_key": "...",
    })
    app.include_router(local_files_router(settings))

The router lives at ``base_url``'s path. GET streams the object and HEAD answers its
headers (both on a URL signed for GET); PUT streams the request body into it. A bad,
tampered or expired signature answers 403. A URL from ``presigned_upload_url`` also
carries signed limits: a body over its ``max_size`` answers 413 (refused from
Content-Length, or while streaming; nothing is stored) and a create-only
(``if_not_exists``) URL answers 412 once an object exists, so it cannot overwrite one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import (
    ConfigurationError,
    InvalidKeyError,
    ObjectExistsError,
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


class _TooLarge(Exception):
    """The PUT body passed the URL's signed size cap."""


@dataclass(frozen=True)
class _Signed:
    """The signed parameters of a request's URL."""

    expires: int
    signature: str
    content_type: str | None
    max_size: int | None
    if_not_exists: bool


def _query(request: Request) -> _Signed | JSONResponse:
    params = request.query_params
    signature = params.get("signature")
    expires = params.get("expires")
    max_size = params.get("max_size")
    create_only = params.get("if_not_exists")
    if (
        not signature
        or not expires
        or not expires.isdigit()
        or (max_size is not None and not max_size.isdigit())
        or create_only not in (None, "1")
    ):
        return _forbidden("missing or malformed signature, expiry or limits; ask for a new URL")
    return _Signed(
        int(expires),
        signature,
        params.get("content_type"),
        int(max_size) if max_size is not None else None,
        create_only == "1",
    )


def _headers(info: Any) -> dict[str, str]:
    return {
        "content-length": str(info.size),
        "etag": f'"{info.etag}"',
        "last-modified": format_datetime(info.last_modified, usegmt=True),
    }


def local_files_router(settings: CloudriftSettings, *, storage: str | None = None) -> Any:
    """A router serving GET, HEAD and PUT on the signed URLs of the local storage
    ``storage`` (the default storage backend when None), mounted at its ``base_url`` path."""
    prefix = _prefix(settings, storage)
    router = APIRouter(prefix=prefix, include_in_schema=False)

    def backend(request: Request) -> Any:
        return provider_for(container_of(request), "storage", storage)()

    def check(request: Request, key: str, method: str) -> _Signed | JSONResponse:
        signed = _query(request)
        if isinstance(signed, JSONResponse):
            return signed
        if request.query_params.get("method", method) != method:
            return _forbidden(f"this URL is not signed for {method}")
        try:
            backend(request).verify_presigned(
                key,
                method=method,
                expires=signed.expires,
                signature=signed.signature,
                content_type=signed.content_type,
                max_size=signed.max_size,
                if_not_exists=signed.if_not_exists,
            )
        except (StoragePermissionError, InvalidKeyError) as exc:
            return _forbidden(exc.message)
        return signed

    async def head_or_404(request: Request, key: str) -> Any:
        verdict = check(request, key, "GET")
        if isinstance(verdict, JSONResponse):
            return verdict
        try:
            return await backend(request).head(key)
        except ObjectNotFoundError:
            return JSONResponse({"detail": "object not found"}, status_code=404)

    @router.head("/{key:path}")
    async def head(key: str, request: Request) -> Response:
        info = await head_or_404(request, key)
        if isinstance(info, Response):
            return Response(status_code=info.status_code, headers={"content-length": "0"})
        return Response(
            status_code=200,
            media_type=info.content_type or "application/octet-stream",
            headers=_headers(info),
        )

    @router.get("/{key:path}")
    async def download(key: str, request: Request) -> Response:
        info = await head_or_404(request, key)
        if isinstance(info, Response):
            return info
        store = backend(request)

        async def body() -> AsyncIterator[bytes]:
            async for chunk in store.download_stream(key):
                yield chunk

        return StreamingResponse(
            body(),
            media_type=info.content_type or "application/octet-stream",
            headers=_headers(info),
        )

    @router.put("/{key:path}")
    async def upload(key: str, request: Request) -> Response:
        signed = check(request, key, "PUT")
        if isinstance(signed, JSONResponse):
            return signed
        sent_type = request.headers.get("content-type")
        if signed.content_type is not None and sent_type != signed.content_type:
            return _forbidden(f"this URL is signed for Content-Type {signed.content_type!r}")
        cap = signed.max_size
        too_large = JSONResponse(
            {"detail": f"the body is larger than this URL's limit of {cap} bytes"},
            status_code=413,
        )
        length = request.headers.get("content-length", "")
        if cap is not None and length.isdigit() and int(length) > cap:
            return too_large

        async def capped() -> AsyncIterator[bytes]:
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if cap is not None and received > cap:
                    raise _TooLarge
                yield chunk

        store = backend(request)
        content_type = signed.content_type or sent_type
        try:
            if signed.if_not_exists:
                await store.create_from_stream(key, capped(), content_type=content_type)
            else:
                await store.upload_stream(key, capped(), content_type=content_type)
        except _TooLarge:
            return too_large
        except ObjectExistsError:
            return JSONResponse(
                {
                    "detail": "this URL only creates the object and it has already been "
                    "uploaded; ask for a new URL to upload again"
                },
                status_code=412,
            )
        return Response(status_code=200)

    return router


__all__ = ["local_files_router"]
