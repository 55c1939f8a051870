"""A test shim in front of fake-gcs-server: the GCS XML-API *writes* it lacks.

obstore's ``GCSStore`` speaks GCS's XML API. fake-gcs-server (an independent GCS
emulator) serves the XML reads obstore sends (GET / HEAD of an object with ranges,
``GET /bucket?list-type=2``, DELETE), but answers 400 to an XML upload
(``PUT /bucket/object``) and has no XML multipart upload. This shim forwards every
request verbatim except those writes, which it turns into fake-gcs-server JSON-API
uploads carrying the same content type, ``x-goog-meta-*`` metadata and
``x-goog-if-generation-match`` precondition:

- ``PUT /b/o`` → ``POST /upload/storage/v1/b/b/o?uploadType=multipart``; answers
  ``ETag`` and ``x-goog-generation`` like GCS;
- ``POST /b/o?uploads`` / ``PUT /b/o?partNumber=N&uploadId=U`` /
  ``POST /b/o?uploadId=U`` (CompleteMultipartUpload) / ``DELETE /b/o?uploadId=U``:
  parts are held here and the completed object is uploaded in one request.

So what a test on it proves is obstore's reads against an independent emulator and our
writes' *semantics* (content type, metadata, create-only, the bytes of a multipart
upload) through this translation, not the XML write wire format against GCS itself.

Run: ``python -m tests.servers._gcs_xml_shim PORT UPSTREAM_URL``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import ClientSession, web

#: JSON-API and emulator paths (the SDK engine's requests): always forwarded.
_JSON_API = ("/storage/v1/", "/upload/", "/download/", "/batch/", "/_internal/")
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class Shim:
    """The request router: translated writes, everything else forwarded."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.uploads: dict[str, dict[str, Any]] = {}
        self.session: ClientSession | None = None

    async def start(self, app: web.Application) -> None:
        """Open the pooled client session to fake-gcs-server."""
        self.session = ClientSession(auto_decompress=False)

    async def stop(self, app: web.Application) -> None:
        """Close the client session."""
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Route one request."""
        if request.path.startswith(_JSON_API):
            return await self.forward(request)
        query = request.rel_url.query
        raw_bucket, _, raw_name = request.rel_url.raw_path.lstrip("/").partition("/")
        bucket = unquote(raw_bucket)
        name = unquote(raw_name)
        if raw_name and request.method == "POST" and "uploads" in query:
            return self.initiate(request, bucket, name)
        if raw_name and "uploadId" in query:
            upload_id = query["uploadId"]
            if request.method == "PUT":
                return await self.put_part(request, upload_id, int(query["partNumber"]))
            if request.method == "POST":
                return await self.complete(request, bucket, name, upload_id)
            if request.method == "DELETE":
                self.uploads.pop(upload_id, None)
                return web.Response(status=204)
        if raw_name and request.method == "PUT" and "x-goog-copy-source" not in request.headers:
            data = await request.read()
            return await self.upload(bucket, name, data, self.attributes(request), request)
        return await self.forward(request)

    @staticmethod
    def attributes(request: web.Request) -> dict[str, Any]:
        """The JSON-API object resource for the request's content type and metadata."""
        meta = {
            header[len("x-goog-meta-") :]: value
            for header, value in request.headers.items()
            if header.lower().startswith("x-goog-meta-")
        }
        return {
            "contentType": request.headers.get("Content-Type", "application/octet-stream"),
            "metadata": meta,
        }

    async def upload(
        self,
        bucket: str,
        name: str,
        data: bytes,
        attributes: dict[str, Any],
        request: web.Request,
    ) -> web.Response:
        """One JSON-API multipart upload; the XML API's answer (headers, no body)."""
        assert self.session is not None
        params = {"uploadType": "multipart"}
        match = request.headers.get("x-goog-if-generation-match")
        if match is not None:
            params["ifGenerationMatch"] = match
        boundary = uuid.uuid4().hex
        resource = json.dumps({"name": name, **attributes}).encode()
        body = (
            f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode()
            + resource
            + f"\r\n--{boundary}\r\nContent-Type: {attributes['contentType']}\r\n\r\n".encode()
            + data
            + f"\r\n--{boundary}--".encode()
        )
        async with self.session.post(
            f"{self.upstream}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
            params=params,
            data=body,
            headers={"Content-Type": f"multipart/related; boundary={boundary}"},
        ) as resp:
            text = await resp.read()
            if resp.status == 404 and not await self.bucket_exists(bucket):
                # GCS's XML answer for a missing bucket (the JSON API says "Not Found").
                return web.Response(
                    status=404,
                    content_type="application/xml",
                    text="<Error><Code>NoSuchBucket</Code>"
                    "<Message>The specified bucket does not exist.</Message></Error>",
                )
            if resp.status >= 300:
                return web.Response(status=resp.status, body=text)
            item = json.loads(text)
        return web.Response(
            status=200,
            headers={
                "ETag": f'"{hashlib.md5(data).hexdigest()}"',
                "x-goog-generation": str(item["generation"]),
            },
        )

    async def bucket_exists(self, bucket: str) -> bool:
        """True if fake-gcs-server has ``bucket``."""
        assert self.session is not None
        url = f"{self.upstream}/storage/v1/b/{quote(bucket, safe='')}"
        async with self.session.get(url) as resp:
            return resp.status == 200

    def initiate(self, request: web.Request, bucket: str, name: str) -> web.Response:
        """Start a multipart upload held here."""
        upload_id = uuid.uuid4().hex
        self.uploads[upload_id] = {"attributes": self.attributes(request), "parts": {}}
        root = ET.Element("InitiateMultipartUploadResult")
        ET.SubElement(root, "Bucket").text = bucket
        ET.SubElement(root, "Key").text = name
        ET.SubElement(root, "UploadId").text = upload_id
        return web.Response(body=ET.tostring(root), content_type="application/xml")

    async def put_part(self, request: web.Request, upload_id: str, number: int) -> web.Response:
        """Keep one part; its ETag is its MD5."""
        upload = self.uploads.get(upload_id)
        if upload is None:
            return web.Response(status=404, text="NoSuchUpload")
        data = await request.read()
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        upload["parts"][number] = (etag, data)
        return web.Response(status=200, headers={"ETag": etag})

    async def complete(
        self, request: web.Request, bucket: str, name: str, upload_id: str
    ) -> web.Response:
        """Join the listed parts (their ETags must match) into one upload."""
        upload = self.uploads.pop(upload_id, None)
        if upload is None:
            return web.Response(status=404, text="NoSuchUpload")
        listed = ET.fromstring(await request.read())
        chunks = []
        for part in listed.iter("Part"):
            number = int(part.findtext("PartNumber") or 0)
            etag, data = upload["parts"].get(number, (None, b""))
            if etag is None or (part.findtext("ETag") or "").strip() != etag:
                return web.Response(status=400, text="InvalidPart")
            chunks.append(data)
        answer = await self.upload(bucket, name, b"".join(chunks), upload["attributes"], request)
        if answer.status != 200:
            return answer
        root = ET.Element("CompleteMultipartUploadResult")
        ET.SubElement(root, "Bucket").text = bucket
        ET.SubElement(root, "Key").text = name
        ET.SubElement(root, "ETag").text = answer.headers["ETag"]
        return web.Response(
            body=ET.tostring(root),
            content_type="application/xml",
            headers={"x-goog-generation": answer.headers["x-goog-generation"]},
        )

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """Send the request to fake-gcs-server unchanged and stream its answer back."""
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        async with self.session.request(
            request.method,
            self.upstream + request.raw_path,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as resp:
            out = web.StreamResponse(status=resp.status)
            for header, value in resp.headers.items():
                if header.lower() not in _HOP:
                    out.headers.add(header, value)
            if request.method == "HEAD":
                # A HEAD answer has no body, but its Content-Length is the object's size.
                out.headers["Content-Length"] = resp.headers.get("Content-Length", "0")
                await out.prepare(request)
                return out
            out.content_length = resp.content_length
            await out.prepare(request)
            async for chunk in resp.content.iter_chunked(256 * 1024):
                await out.write(chunk)
            await out.write_eof()
            return out


def main() -> None:
    """Serve the shim on 127.0.0.1:PORT in front of UPSTREAM_URL."""
    port, upstream = int(sys.argv[1]), sys.argv[2]
    shim = Shim(upstream)
    app = web.Application(client_max_size=1 << 30)
    app.on_startup.append(shim.start)
    app.on_cleanup.append(shim.stop)
    app.router.add_route("*", "/{tail:.*}", shim.handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
