"""A tiny real HTTP server that serves LocalStorage's signed URLs (tests only).

It does what ``cloudrift_fastapi``'s route does: parse the URL, call
``LocalStorage.verify_presigned`` and then read or write the object.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from cloudrift.core.exceptions import ObjectNotFoundError, StoragePermissionError
from cloudrift.storage.local import LocalStorage

PREFIX = "/files/"


class _Handler(BaseHTTPRequestHandler):
    storage: LocalStorage

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def _check(self) -> str | None:
        parts = urlsplit(self.path)
        key = unquote(parts.path[len(PREFIX) :])
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        try:
            if query.get("method") != self.command:
                raise StoragePermissionError("method mismatch")
            self.storage.verify_presigned(
                key,
                method=self.command,
                expires=int(query.get("expires", "0")),
                signature=query.get("signature", ""),
                content_type=query.get("content_type"),
            )
            if (
                "content_type" in query
                and self.command == "PUT"
                and self.headers.get("Content-Type") != query["content_type"]
            ):
                raise StoragePermissionError("content type differs from the signed one")
        except (StoragePermissionError, ValueError) as exc:
            self._reply(403, str(exc).encode())
            return None
        return key

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """Serve a signed download."""
        key = self._check()
        if key is None:
            return
        try:
            data = asyncio.run(self.storage.download(key))
        except ObjectNotFoundError:
            self._reply(404, b"not found")
            return
        self._reply(200, data)

    def do_PUT(self) -> None:
        """Accept a signed upload."""
        key = self._check()
        if key is None:
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ctype = self.headers.get("Content-Type")
        asyncio.run(self.storage.upload(key, body, content_type=ctype))
        self._reply(201, b"")


@contextmanager
def presign_server() -> Iterator[tuple[str, type[_Handler]]]:
    """Start the server on a free loopback port; yield (base_url, handler class to bind)."""
    handler = type("BoundHandler", (_Handler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{PREFIX}", handler
    finally:
        server.shutdown()
        server.server_close()
