"""The browser page: upload, watch and download documents at ``/``.

Server-rendered with Jinja2 (``templates/``), one CSS file and a small vanilla-JS module
(``static/``): no build step, nothing fetched from a CDN, so the demo works offline.

- With JavaScript, files go straight to storage: ``POST /documents/upload-url``, an XHR
  ``PUT`` with upload progress, then ``complete``. Several files at once.
- Without JavaScript, the same ``<form>`` posts one file to ``POST /documents``; that
  route answers a browser's form post (``Accept`` lists ``text/html`` but not
  ``application/json``) with a 303 back to ``/`` and the outcome in a one-shot cookie
  (:func:`form_fallback`); API clients keep their JSON answers.
- The document list is polled with backoff from ``GET /ui/documents`` (an HTML fragment
  rendered by the very template the page uses, so there is one renderer).
- ``GET /ui/audit`` is the audit panel's fragment (``GET /audit`` as HTML), shown when
  the settings configure the ``audit`` subscription.
- ``GET /notifications`` (JSON) and ``GET /ui/notifications`` (its fragment) list the
  emails sent, read-only; they exist only when the email provider is ``file`` or
  ``memory``, whose messages stay on this machine.
"""

from __future__ import annotations

import asyncio
import email.policy
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Annotated, Any, ParamSpec
from urllib.parse import quote, unquote

from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from cloudrift.email.file import FileEmail
from cloudrift.email.memory import MemoryEmail
from example_app import audit, records
from example_app.services import CONFIG_ATTR, services_of

log = logging.getLogger("example_app")

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

#: The one-shot cookie carrying a no-JS form upload's outcome back to the page.
FLASH_COOKIE = "intake_flash"
#: Documents the page lists (newest first).
PAGE_DOCUMENTS = 100
#: Audit events the page lists (newest first).
PAGE_EVENTS = 20
#: Email providers whose sent messages the page may show: both stay on this machine.
NOTIFYING_PROVIDERS = frozenset({"file", "memory"})

P = ParamSpec("P")


# ----------------------------------------------------------------- no-JS form fallback


def wants_html(request: Request) -> bool:
    """True for a browser's own form post (it accepts HTML, not JSON): answer it with a
    redirect back to the page instead of JSON."""
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept and "application/json" not in accept


def _back_to_page(message: str, *, ok: bool) -> RedirectResponse:
    response = RedirectResponse("/", status_code=303)
    flash = json.dumps({"ok": ok, "message": message[:300]}, ensure_ascii=False)
    # A cookie, not a query parameter: nobody can link to the page with made-up text.
    # (300 characters stay under the 4 KB cookie limit even percent-encoded.)
    response.set_cookie(
        FLASH_COOKIE, quote(flash), max_age=120, httponly=True, samesite="lax", path="/"
    )
    return response


def _detail(response: Response) -> str:
    try:
        body = json.loads(bytes(response.body))
    except ValueError:
        return f"the upload failed ({response.status_code})"
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail) if detail else f"the upload failed ({response.status_code})"


def form_fallback(
    route: Callable[P, Awaitable[JSONResponse]],
) -> Callable[P, Awaitable[Response]]:
    """Wrap ``POST /documents``: a browser's form post gets a 303 to ``/`` with the
    outcome (accepted, or the error's detail) in a one-shot cookie; every other client
    gets the route's JSON answer unchanged. The wrapped route keeps its signature, so
    FastAPI sees the same parameters and OpenAPI schema."""

    @functools.wraps(route)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        request = kwargs.get("request")
        if not isinstance(request, Request) or not wants_html(request):
            return await route(*args, **kwargs)
        try:
            response = await route(*args, **kwargs)
        except HTTPException as exc:
            return _back_to_page(f"Not uploaded: {exc.detail}", ok=False)
        if response.status_code != 202:
            return _back_to_page(f"Not uploaded: {_detail(response)}", ok=False)
        body = json.loads(bytes(response.body))
        return _back_to_page(
            f"Uploaded \u201c{body['filename']}\u201d ({body['size']} bytes): queued for "
            "processing. Reload the page to see its progress.",
            ok=True,
        )

    return wrapper


def _flash(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(unquote(raw))
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return None
    return {"ok": bool(data.get("ok")), "message": data["message"]}


# ------------------------------------------------------------------------ the data


async def _documents(request: Request) -> list[dict[str, Any]]:
    """The newest documents, newest first, as the API shows them."""
    documents = services_of(request.app).documents
    found = documents.find({}).sort("_id", -1).limit(PAGE_DOCUMENTS)
    return [records.view(doc) async for doc in found]


class Notification(BaseModel):
    """One email the service sent."""

    subject: str
    to: list[str]
    date: str | None
    attachments: list[str]


class NotificationList(BaseModel):
    """The newest emails sent, newest first."""

    provider: str
    items: list[Notification]


def _summarize(message: EmailMessage) -> Notification:
    return Notification(
        subject=str(message.get("subject", "")),
        to=[a.strip() for a in str(message.get("to", "")).split(",") if a.strip()],
        date=str(message["date"]) if message.get("date") else None,
        attachments=[
            str(part.get_filename())
            for part in message.walk()
            if part.get_content_disposition() == "attachment" and part.get_filename()
        ],
    )


def _parse(raw: bytes) -> EmailMessage:
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _read_outbox(directory: Path, limit: int) -> list[Notification]:
    # Newest first by modification time (names start with the send time, but only to
    # the second); files starting with '.' are still being written.
    def age(path: Path) -> tuple[int, str]:
        try:
            return path.stat().st_mtime_ns, path.name
        except OSError:
            return 0, path.name

    try:
        names = sorted(
            (p for p in directory.glob("*.eml") if not p.name.startswith(".")),
            key=age,
            reverse=True,
        )
    except OSError:
        return []
    out = []
    for path in names[:limit]:
        try:
            out.append(_summarize(_parse(path.read_bytes())))
        except OSError:
            continue  # removed meanwhile
    return out


async def _notifications(request: Request, limit: int) -> NotificationList:
    mailer = services_of(request.app).email
    if isinstance(mailer, FileEmail):
        items = await asyncio.to_thread(_read_outbox, mailer.directory, limit)
    elif isinstance(mailer, MemoryEmail):
        items = [_summarize(_parse(sent.raw)) for sent in reversed(mailer.outbox[-limit:])]
    else:
        items = []
    return NotificationList(provider=mailer.provider, items=items)


# --------------------------------------------------------------------------- routes


def _providers(settings: Any) -> dict[str, str]:
    return {
        category: str(settings.backend(category).provider)
        for category in ("storage", "queue", "document", "cache", "email")
    }


def page_router(settings: Any) -> APIRouter:
    """The page, its fragments and, for the ``file``/``memory`` email providers, the
    notifications endpoints."""
    router = APIRouter(tags=["page"])
    providers = _providers(settings)
    notifying = providers["email"] in NOTIFYING_PROVIDERS
    subscriptions = settings.section("subscription")
    auditing = subscriptions is not None and audit.AUDIT_SUBSCRIPTION in subscriptions.backends
    topic_provider = (
        str(settings.backend("topic").provider) if settings.section("topic") else "(none)"
    )

    async def audit_events(request: Request) -> list[dict[str, Any]]:
        return await audit.recent(services_of(request.app).database, PAGE_EVENTS)

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> Response:
        config = getattr(request.app.state, CONFIG_ATTR)
        context = {
            "providers": providers,
            "max_upload_bytes": config.max_upload_bytes,
            "documents": await _documents(request),
            "notifications": (await _notifications(request, 20)).items if notifying else None,
            "audit_events": await audit_events(request) if auditing else None,
            "topic_provider": topic_provider,
            "flash": _flash(request),
        }
        response = templates.TemplateResponse(request, "index.html", context)
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="lax")
        response.headers["Cache-Control"] = "no-store"
        return response

    @router.get("/ui/documents", response_class=HTMLResponse, include_in_schema=False)
    async def documents_fragment(request: Request) -> Response:
        return templates.TemplateResponse(
            request,
            "_documents.html",
            {"documents": await _documents(request)},
            headers={"Cache-Control": "no-store"},
        )

    if auditing:

        @router.get("/ui/audit", response_class=HTMLResponse, include_in_schema=False)
        async def audit_fragment(request: Request) -> Response:
            return templates.TemplateResponse(
                request,
                "_audit.html",
                {"events": await audit_events(request)},
                headers={"Cache-Control": "no-store"},
            )

    if notifying:

        @router.get(
            "/notifications",
            response_model=NotificationList,
            summary="The newest notification emails (only for the file and memory providers)",
        )
        async def notifications(
            request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 20
        ) -> NotificationList:
            """Subject, recipients, date and attachment names; read-only."""
            return await _notifications(request, limit)

        @router.get("/ui/notifications", response_class=HTMLResponse, include_in_schema=False)
        async def notifications_fragment(request: Request) -> Response:
            listed = await _notifications(request, 20)
            return templates.TemplateResponse(
                request,
                "_notifications.html",
                {"notifications": listed.items},
                headers={"Cache-Control": "no-store"},
            )

    return router


def mount_page(app: FastAPI, settings: Any) -> None:
    """Serve the page at ``/`` and its assets at ``/static``."""
    app.include_router(page_router(settings))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


__all__ = [
    "FLASH_COOKIE",
    "NOTIFYING_PROVIDERS",
    "Notification",
    "NotificationList",
    "form_fallback",
    "mount_page",
    "page_router",
    "wants_html",
]
