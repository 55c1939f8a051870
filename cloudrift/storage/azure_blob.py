"""Azure Blob Storage, also Azurite and sovereign clouds.

The data plane runs on obstore's ``AzureStore`` by default (``engine="obstore"``,
cloudrift/storage/_obstore.py); ``engine="sdk"`` runs everything on ``azure-storage-blob``
aio. Either way one ``BlobServiceClient`` per backend, over one pooled aiohttp session, is
built when first needed (with obstore: copy, presign, conditional replaces, health). Auth is chosen
strictly: connection string; account URL + account key; account URL + SAS token;
account URL alone (workload identity when ``AZURE_FEDERATED_TOKEN_FILE`` is set, else
managed identity); account URL + tenant/client id + client secret (service principal).

Presigned URLs are SAS URLs built from the client's own blob URL (so they work against
Azurite, sovereign clouds and custom domains, with the key quoted properly): signed
with the account key, or with a user-delegation key under managed identity / service
principal. Under SAS-token auth no new SAS can be signed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, unquote

from cloudrift.core.auth import auth_method, select_auth
from cloudrift.core.azure import (
    BLOB_CONNECTION_STRING,
    WORD_NAMES,
    azure_identity,
    identity_auth_methods,
    identity_credential,
    parse_connection_string,
    trusting_context,
)
from cloudrift.core.exceptions import (
    BucketNotFoundError,
    ConfigurationError,
    FeatureNotSupportedError,
    InvalidRangeError,
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
)
from cloudrift.core.lifecycle import LazyClient
from cloudrift.core.operation import BackendDescription, operation
from cloudrift.core.secrets import Secret, redact, reveal, secret
from cloudrift.core.validation import check_int, check_number
from cloudrift.storage._obstore import ObstoreEngine, azure_engine, check_engine
from cloudrift.storage.base import (
    ObjectInfo,
    PresignMethod,
    Storage,
    in_code_point_order,
    send_parts,
)

# The Azure SDK is imported where the SDK engine uses it: engine="obstore" imports none
# of it until an SDK-side operation (copy, presign, health) runs.
if TYPE_CHECKING:
    from azure.core.exceptions import AzureError

_IDENTITY = identity_auth_methods("account_url", WORD_NAMES)
_AUTH = [
    auth_method("connection string", ["connection_string"]),
    auth_method("account key", ["account_url", "account_key"]),
    auth_method("sas token", ["account_url", "sas_token"]),
    _IDENTITY.managed_identity,
    _IDENTITY.service_principal,
]
_CONTAINER_MISSING = {"ContainerNotFound"}
_SOURCE_MISSING = {"BlobNotFound", "CannotVerifyCopySource"}


# Retry backoff (seconds): the first retry after 0-1 s, the next after 1.5-2.5 s, ...
_RETRY_BACKOFF = 0.5
_RETRY_BASE = 1.5

#: Size of each ranged GET of a streamed download (and the SDK's first-GET size).
_GET_RANGE = 4 * 1024 * 1024
#: Read size of response bodies. azure-core's transport reads 4 KiB at a time unless
#: told otherwise, which cost 1.6-1.8x the CPU of the blob SDK's own clients (256 KiB)
#: on a streamed download.
_READ_BLOCK = 256 * 1024


# A List Blobs answer as the service writes it: each <Blob> opens with its <Name>
# (percent-encoded, with Encoded="true", when the name has characters XML cannot carry).
_BLOB_NAME = re.compile(rb'<Blob><Name( Encoded="true")?>([^<]*)</Name>')
_NEXT_MARKER = re.compile(rb"<NextMarker>([^<]*)</NextMarker>|<NextMarker\s*/>")
_XML_ENTITY = re.compile(r"&(?:#x([0-9A-Fa-f]+)|#([0-9]+)|(amp|lt|gt|quot|apos));")
_XML_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _xml_char(match: re.Match[str]) -> str:
    hexa, decimal, named = match.groups()
    if named:
        return _XML_NAMED[named]
    return chr(int(hexa, 16) if hexa else int(decimal))


def _xml_text(raw: bytes) -> str | None:
    """The text of an XML element's content, or None when it is not plain enough to read
    without a parser (a carriage return, which parsers normalise, or an unknown entity)."""
    text = raw.decode()
    if "\r" in text:
        return None
    if "&" not in text:
        return text
    if "&" in _XML_ENTITY.sub("", text):
        return None
    try:
        return _XML_ENTITY.sub(_xml_char, text)
    except (ValueError, OverflowError):  # a character reference past U+10FFFF
        return None


def names_page(body: bytes) -> tuple[list[str], str | None]:
    """The blob names and the next marker of one List Blobs answer.

    Reads only the names (``<Blob><Name>``) and ``<NextMarker>`` out of the body, which
    also carries every blob's properties; an answer laid out any other way is parsed
    with ElementTree, as the SDK does."""
    names: list[str] = []
    blobs = _BLOB_NAME.findall(body)
    following = _NEXT_MARKER.search(body)
    if following is not None and len(blobs) == body.count(b"<Blob>"):
        for encoded, raw in blobs:
            name = _xml_text(raw)
            if name is None:
                break
            names.append(unquote(name) if encoded else name)
        else:
            marker = _xml_text(following.group(1) or b"")
            if marker is not None:
                return names, marker or None
    from xml.etree import ElementTree

    root = ElementTree.fromstring(body)
    names = []
    for node in root.iterfind("Blobs/Blob/Name"):
        name = node.text or ""
        names.append(unquote(name) if node.get("Encoded") == "true" else name)
    return names, root.findtext("NextMarker") or None


class AzureBlobStorage(Storage):
    """Objects as block blobs in one container."""

    provider = "azure_blob"
    supports_presigned_url = True
    backend_name = "azure_blob storage"

    def __init__(
        self,
        *,
        container: str,
        connection_string: str | Secret | None = None,
        account_url: str | None = None,
        account_key: str | Secret | None = None,
        sas_token: str | Secret | None = None,
        managed_identity_client_id: str | None = None,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | Secret | None = None,
        max_pool_connections: int = 64,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        upload_concurrency: int = 2,
        list_page_size: int = 1000,
        ca_bundle: str | None = None,
        engine: str = "obstore",
    ) -> None:
        super().__init__()
        if not isinstance(container, str) or not container:
            raise ConfigurationError("azure_blob storage needs container: the container name")
        given = {
            "connection_string": connection_string,
            "account_url": account_url,
            "account_key": account_key,
            "sas_token": sas_token,
            "managed_identity_client_id": managed_identity_client_id,
            "tenant_id": tenant_id,
            "client_id": client_id,
            "client_secret": client_secret,
        }
        self.auth_method = select_auth("azure_blob storage", given, _AUTH)
        self._identity = azure_identity(
            "azure_blob storage",
            self.auth_method,
            WORD_NAMES,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            managed_identity_client_id=managed_identity_client_id,
        )
        if account_url is not None and not account_url.startswith(("https://", "http://")):
            raise ConfigurationError(
                f"azure_blob account_url must be an http(s) URL, got {account_url!r}"
            )
        for name, value in (
            ("max_pool_connections", max_pool_connections),
            ("upload_concurrency", upload_concurrency),
            ("list_page_size", list_page_size),
            ("max_attempts", max_attempts),
        ):
            check_int(name, value, at_least=1)
        for name, timeout in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            check_number(name, timeout, above=0, unit="seconds")
        self.container = container
        self.account_url = account_url
        self._conn = secret(connection_string)
        if self._conn is not None:
            parse_connection_string("azure_blob storage", self._conn, BLOB_CONNECTION_STRING)
        self._key = secret(account_key)
        self._sas = secret(sas_token)
        self._pool = max_pool_connections
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._retries = max_attempts - 1
        self._concurrency = upload_concurrency
        self._page_size = list_page_size
        if ca_bundle is not None and not os.path.isfile(ca_bundle):
            raise ConfigurationError(f"azure_blob ca_bundle {ca_bundle!r} is not a file")
        # TLS is always verified; ca_bundle only adds trust (private CA, HTTPS emulator).
        self._ca_bundle = ca_bundle
        self._delegation: tuple[Any, datetime] | None = None
        self._client: LazyClient[Any] = LazyClient(self._build_client)
        # engine="obstore": the data plane on obstore (cloudrift/storage/_obstore.py); the
        # SDK client is then built only for what stays on it (copy, presign, health).
        self.engine = check_engine("azure_blob storage", engine)
        self._obstore: ObstoreEngine | None = None
        if self.engine == "obstore":
            self._obstore = azure_engine(
                where="azure_blob storage",
                container=container,
                endpoint=self._endpoint(),
                auth_method=self.auth_method,
                connection_string=self._conn,
                account_key=self._key,
                sas_token=self._sas,
                # Looked up when the store is built, like the SDK client's credential:
                # storage.credential() alone decides the credential of either engine.
                credential=lambda: self.credential(),
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
                ca_bundle=ca_bundle,
                upload_concurrency=upload_concurrency,
                list_page_size=list_page_size,
                secrets=self._secrets,
            )

    def _location(self) -> str:
        return f"container={self.container!r} account_url={self._endpoint()!r}"

    def _describe(self) -> BackendDescription:
        return BackendDescription.at("azure_blob", self.container, self._endpoint())

    def _endpoint(self) -> str:
        """The blob endpoint, from account_url or the connection string's public parts."""
        if self.account_url:
            return self.account_url
        parts = dict(
            item.split("=", 1) for item in (reveal(self._conn) or "").split(";") if "=" in item
        )
        if parts.get("BlobEndpoint"):
            return parts["BlobEndpoint"].rstrip("/")
        suffix = parts.get("EndpointSuffix", "core.windows.net")
        return f"https://{parts.get('AccountName', '?')}.blob.{suffix}"

    @property
    def _secrets(self) -> list[Secret | None]:
        identity = self._identity.secrets if self._identity else ()
        return [self._conn, self._key, self._sas, *identity]

    # ---------------------------------------------------------------- client

    def credential(self) -> Any:
        """A new azure-identity credential for token auth (None for key / SAS auth):
        the named managed identity (workload identity when ``AZURE_FEDERATED_TOKEN_FILE``
        is set), never a chain that ambient ``AZURE_CLIENT_*`` variables could redirect.
        Its token requests trust ``ca_bundle`` too (then it is built in the running loop).
        Both engines build theirs with this."""
        if self._identity is None:
            return None
        return identity_credential(self._identity, ca_bundle=self._ca_bundle)

    async def _build_client(self, stack: AsyncExitStack) -> Any:
        import aiohttp
        from azure.core.pipeline.transport import AioHttpTransport
        from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry

        # ca_bundle adds trust beside the system's CAs (the connector's context; azure-core's
        # connection_verify=<file> would trust that file alone).
        tls: Any = True if self._ca_bundle is None else trusting_context(self._ca_bundle)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._pool, ssl=tls))
        stack.push_async_callback(session.close)
        options: dict[str, Any] = {
            "transport": AioHttpTransport(
                session=session, session_owner=False, connection_data_block_size=_READ_BLOCK
            ),
            "connection_timeout": self._connect_timeout,
            "read_timeout": self._read_timeout,
            # The SDK's default policy waits 15 s, then 18 s between attempts: a server
            # that was down took 43 s to report. Backoff like botocore's standard mode
            # instead (about 1 s, then 2 s), so a dead endpoint fails within
            # attempts x connect_timeout plus a few seconds, as on S3.
            "retry_policy": ExponentialRetry(
                initial_backoff=_RETRY_BACKOFF,  # type: ignore[arg-type]
                increment_base=_RETRY_BASE,  # type: ignore[arg-type]
                random_jitter_range=_RETRY_BACKOFF,  # type: ignore[arg-type]
                retry_total=self._retries,
            ),
            # Bounded memory for streamed downloads: first GET and every later chunk 4 MiB.
            "max_single_get_size": _GET_RANGE,
            "max_chunk_get_size": _GET_RANGE,
            # The storage pipeline passes its own connection settings with each request
            # (connection_verify stays True there: the connector's context decides trust).
            "connection_data_block_size": _READ_BLOCK,
        }
        if self.auth_method == "connection string":
            service = BlobServiceClient.from_connection_string(reveal(self._conn) or "", **options)
        else:
            cred: Any
            if self.auth_method == "account key":
                cred = reveal(self._key)
            elif self.auth_method == "sas token":
                from azure.core.credentials import AzureSasCredential

                cred = AzureSasCredential((reveal(self._sas) or "").lstrip("?"))
            else:
                cred = self.credential()
                stack.push_async_callback(cred.close)
            service = BlobServiceClient(self.account_url or "", credential=cred, **options)
        await stack.enter_async_context(service)
        return service, service.get_container_client(self.container)

    async def _container(self) -> Any:
        return (await self._client.get())[1]

    async def _native_client(self) -> Any:
        """``await storage.native()``: the ``ContainerClient`` of the configured container."""
        return (await self._client.get())[1]

    async def _aclose(self) -> None:
        if self._obstore is not None:
            await self._obstore.aclose()
        await self._client.aclose()

    # ---------------------------------------------------------------- errors

    @contextlib.contextmanager
    def _errors(
        self,
        key: str | None = None,
        *,
        exists_key: str | None = None,
        source: str | None = None,
        match_key: str | None = None,
    ) -> Iterator[None]:
        """Translate azure-core errors for an operation on ``key`` into cloudrift errors
        (``match_key``: the operation carried an ``If-Match`` etag)."""
        from azure.core.exceptions import AzureError

        try:
            yield
        except AzureError as exc:
            if match_key is not None:
                self._raise_if_match_error(exc, match_key)
            self._raise(exc, key, exists_key, source)

    def _raise_if_match_error(self, exc: AzureError, key: str) -> None:
        """PreconditionFailedError for a failed ``If-Match``: 412 ``ConditionNotMet``, or
        404 when there is no blob to match."""
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        code = str(getattr(exc, "error_code", None) or "")
        if code in _CONTAINER_MISSING:
            return
        if isinstance(exc, ResourceModifiedError) or code == "ConditionNotMet":
            raise PreconditionFailedError(key) from exc
        if isinstance(exc, ResourceNotFoundError):
            raise PreconditionFailedError(
                key, f"no object {key!r} to match (if_match needs an existing object)"
            ) from exc

    def _raise(
        self, exc: AzureError, key: str | None, exists_key: str | None, source: str | None
    ) -> NoReturn:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        code = str(getattr(exc, "error_code", None) or "")
        status = getattr(exc, "status_code", None)
        text = redact(str(getattr(exc, "reason", None) or exc).splitlines()[0], self._secrets)
        if code in _CONTAINER_MISSING:
            raise BucketNotFoundError(
                self.container, f"container {self.container!r} does not exist; create it first"
            ) from exc
        if exists_key and (
            isinstance(exc, ResourceExistsError | ResourceModifiedError)
            or code in ("BlobAlreadyExists", "ConditionNotMet")
        ):
            raise ObjectExistsError(exists_key) from exc
        if isinstance(exc, ResourceModifiedError) and key is not None:
            raise StorageError(
                f"blob {key!r} changed while it was being downloaded; download it again"
            ) from exc
        if source and code in _SOURCE_MISSING:
            raise ObjectNotFoundError(source) from exc
        if isinstance(exc, ResourceNotFoundError) and key is not None:
            raise ObjectNotFoundError(key) from exc
        if code == "InvalidRange" or status == 416:
            raise InvalidRangeError(f"range not satisfiable for {key!r}") from exc
        if isinstance(exc, ClientAuthenticationError) or status == 403:
            raise StoragePermissionError(
                f"azure_blob storage: access denied to container {self.container!r}"
                + (f", blob {key!r}" if key else "")
                + f" ({code or status}: {text}); check the credentials and role assignments"
            ) from exc
        if isinstance(exc, ServiceRequestError | ServiceResponseError) or (
            status is not None and status >= 500
        ):
            raise StorageConnectionError(
                f"azure_blob storage could not reach {self._endpoint()}: {text}"
            ) from exc
        if isinstance(exc, HttpResponseError):
            raise StorageError(f"azure_blob storage error {code or status}: {text}") from exc
        raise StorageError(f"azure_blob storage error: {text}") from exc

    # ---------------------------------------------------------------- hooks

    async def _put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        content_type: str,
        metadata: dict[str, str],
        if_not_exists: bool,
        *,
        if_match: str | None = None,
    ) -> None:
        condition = self._match(if_match)
        # Conditional replaces go through the SDK client on either engine.
        if self._obstore is not None and if_match is None:
            await self._obstore.put(key, data, content_type, metadata, if_not_exists)
            return
        from azure.storage.blob import ContentSettings

        container = await self._container()
        with (
            self._no_object_to_match(key),
            self._errors(
                key, exists_key=key if if_not_exists else None, match_key=key if if_match else None
            ),
        ):
            await container.upload_blob(
                key,
                bytes(data) if not isinstance(data, bytes) else data,
                overwrite=not if_not_exists,
                **condition,
                content_settings=ContentSettings(content_type=content_type),
                metadata=metadata,
                max_concurrency=self._concurrency,
            )

    async def _put_stream(
        self,
        key: str,
        parts: AsyncIterator[bytes],
        content_type: str,
        metadata: dict[str, str],
        part_size: int,
        *,
        if_match: str | None = None,
    ) -> None:
        condition = self._match(if_match)
        if self._obstore is not None and if_match is None:
            await self._obstore.put_stream(key, parts, content_type, metadata, part_size)
            return
        from azure.storage.blob import ContentSettings

        container = await self._container()
        blob = container.get_blob_client(key)
        # Unique block ids per upload, so concurrent uploads of one key cannot mix blocks.
        # Blocks of an aborted upload stay uncommitted: never visible, and Azure discards
        # them (there is no abort call for block blobs).
        tag = secrets.token_hex(8)

        def block_id(number: int) -> str:
            return base64.b64encode(f"{tag}-{number:08d}".encode()).decode()

        async def stage(number: int, body: bytes) -> None:
            with self._errors(key):
                await blob.stage_block(block_id(number), body)

        count = await send_parts(parts, stage, self._concurrency)
        ids = [block_id(n) for n in range(1, count + 1)]
        # The condition is checked when the blocks become the blob.
        with self._no_object_to_match(key), self._errors(key, match_key=key if if_match else None):
            await blob.commit_block_list(
                ids,
                **condition,
                content_settings=ContentSettings(content_type=content_type),
                metadata=metadata,
            )

    async def _download(self, key: str, start: int, end: int | None, if_match: str | None) -> Any:
        container = await self._container()
        condition = self._match(if_match)
        if start == 0 and end is None:
            return await container.download_blob(key, **condition)
        length = None if end is None else end - start
        return await container.download_blob(key, offset=start, length=length, **condition)

    async def _raise_if_no_blob(self, key: str, exc: PreconditionFailedError) -> None:
        """Azure answers a conditional read with 412 alike for a stale ETag and for no
        blob at all; only on that failure, one HEAD tells them apart."""
        if not await self._exists(key):
            raise ObjectNotFoundError(key) from exc

    async def _get(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> bytes:
        try:
            if self._obstore is not None:
                return await self._obstore.get(key, start, end, if_match=if_match)
            with self._errors(key, match_key=key if if_match else None):
                downloader = await self._download(key, start, end, if_match)
                data: bytes = await downloader.readall()
        except PreconditionFailedError as exc:
            await self._raise_if_no_blob(key, exc)
            raise
        return data

    async def _get_stream(
        self, key: str, start: int, end: int | None, chunk_size: int, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        if self._obstore is not None:
            stream = self._obstore.get_stream(key, start, end, chunk_size, if_match=if_match)
            try:
                first_piece = await anext(stream, None)
            except PreconditionFailedError as exc:
                await self._raise_if_no_blob(key, exc)
                raise
            if first_piece is not None:
                yield first_piece
                async for piece in stream:
                    yield piece
            return
        from azure.core import MatchConditions

        # The SDK's chunks() fetches one range at a time; its parallel readinto() needs a
        # sink that cannot push back. So: the first GET (which also tells the size), then
        # the remaining 4 MiB ranges fetched ``upload_concurrency`` at a time and yielded
        # in order — memory stays at about (window + 1) ranges whatever the object size.
        container = await self._container()
        try:
            with self._errors(key, match_key=key if if_match else None):
                downloader = await self._download(key, start, end, if_match)
                total = int(downloader.size)
                first = await downloader.chunks().__anext__() if total else b""
        except PreconditionFailedError as exc:
            await self._raise_if_no_blob(key, exc)
            raise
        offset, stop = start + len(first), start + total
        if offset >= stop:
            if first:
                yield first
            return
        blob = container.get_blob_client(key)
        etag = downloader.properties.etag

        async def fetch(at: int, size: int) -> list[bytes]:
            blocks = await self._range_blocks(key, blob, at, size, etag)
            if blocks is not None:
                return blocks
            with self._errors(key):
                # Pinned to the first response's ETag: a blob replaced mid-stream fails
                # (412) instead of yielding a mix of two versions.
                part = await blob.download_blob(
                    offset=at,
                    length=size,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
                # chunks() hands over the one GET's body as it is; readall() copies it
                # through a BytesIO.
                data: bytes = await part.chunks().__anext__()
            return [data]

        ranges = iter([(at, min(_GET_RANGE, stop - at)) for at in range(offset, stop, _GET_RANGE)])
        window: deque[asyncio.Task[list[bytes]]] = deque(
            asyncio.create_task(fetch(at, size))
            for at, size in itertools.islice(ranges, max(1, self._concurrency))
        )
        # The ranges' body blocks are joined into chunks of exactly ``cut`` bytes (the
        # last may be shorter): one copy of every byte, where joining each range into one
        # bytes object and cutting chunks out of it took two.
        cut = min(chunk_size, _GET_RANGE)
        held: list[memoryview] = []
        size_held = 0
        blocks = [first]
        try:
            while True:
                for block in blocks:
                    view = memoryview(block)
                    while view:
                        take = min(len(view), cut - size_held)
                        held.append(view[:take])
                        size_held += take
                        view = view[take:]
                        if size_held == cut:
                            yield b"".join(held)
                            held.clear()
                            size_held = 0
                if not window:
                    break
                blocks = await window.popleft()
                following = next(ranges, None)
                if following is not None:
                    window.append(asyncio.create_task(fetch(*following)))
            if held:
                yield b"".join(held)
        finally:
            for task in window:
                task.cancel()
            await asyncio.gather(*window, return_exceptions=True)

    async def _range_blocks(
        self, key: str, blob: Any, at: int, size: int, etag: str
    ) -> list[bytes] | None:
        """The body blocks of the ranged GET of ``size`` bytes at ``at`` of the version
        ``etag``, read as they arrive (256 KiB each) — or None when the answer is not a
        complete 206 for the fetch's SDK call to repeat (which retries a body cut short
        and raises the SDK's errors: 412 for a replaced blob, ...).

        The SDK's ``download_blob`` builds a downloader, deserialises every header into
        blob properties and joins the body into one bytes object for each range; this
        sends the same GET through the client's own pipeline (auth, retries, version)."""
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        pipeline = getattr(blob, "_pipeline", None)
        if pipeline is None:
            return None
        request = HttpRequest(
            "GET",
            blob.url,
            headers={
                "x-ms-version": blob.api_version,
                "x-ms-range": f"bytes={at}-{at + size - 1}",
                "If-Match": etag,
            },
        )
        with self._errors(key):
            response = (await pipeline.run(request, stream=True)).http_response
        try:
            if response.status_code != 206 or not str(
                response.headers.get("Content-Range", "")
            ).startswith(f"bytes {at}-"):
                return None
            blocks: list[bytes] = []
            got = 0
            async for block in response.iter_bytes():
                blocks.append(block)
                got += len(block)
        except AzureError:
            return None
        finally:
            await response.close()
        return blocks if got == size else None

    async def _head(self, key: str) -> ObjectInfo:
        if self._obstore is not None:
            return await self._obstore.head(key)
        container = await self._container()
        with self._errors(key):
            props = await container.get_blob_client(key).get_blob_properties()
        return ObjectInfo(
            key=key,
            size=int(props.size),
            etag=str(props.etag).strip('"') or None,
            content_type=props.content_settings.content_type,
            last_modified=props.last_modified,
            metadata=dict(props.metadata or {}),
        )

    async def _exists(self, key: str) -> bool:
        if self._obstore is not None:
            return await self._obstore.exists(key)
        return await super()._exists(key)

    @contextlib.contextmanager
    def _no_object_to_match(self, key: str) -> Iterator[None]:
        """Mark the PreconditionFailedError of a blob that does not exist: Azure answers
        412 alike for a stale etag and for no blob at all."""
        try:
            yield
        except PreconditionFailedError as exc:
            exc.message = f"{exc.message} (or there is no object {key!r} to match)"
            raise

    @staticmethod
    def _match(if_match: str | None) -> dict[str, Any]:
        if if_match is None:
            return {}
        from azure.core import MatchConditions

        return {"etag": f'"{if_match}"', "match_condition": MatchConditions.IfNotModified}

    async def _delete_if_match(self, key: str, etag: str) -> None:
        condition = self._match(etag)
        container = await self._container()
        with self._errors(key, match_key=key):
            await container.delete_blob(key, delete_snapshots="include", **condition)

    async def _delete(self, key: str) -> None:
        if self._obstore is not None:
            await self._obstore.delete(key)
            return
        container = await self._container()
        # Azure answers 404 for a missing blob; delete is a no-op on every provider.
        with contextlib.suppress(ObjectNotFoundError), self._errors(key):
            await container.delete_blob(key, delete_snapshots="include")

    async def _iter(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        # Azure lists in UTF-16 order; every provider yields code point order.
        async for info in in_code_point_order(self._iter_utf16(prefix), lambda i: i.key):
            yield info

    async def _iter_keys(self, prefix: str) -> AsyncIterator[str]:
        async for name in in_code_point_order(self._names_utf16(prefix), str):
            yield name

    async def _iter_utf16(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        if self._obstore is not None:
            async for info in self._obstore.iter(prefix):
                yield info
            return
        container = await self._container()
        with self._errors():
            pages = container.list_blobs(
                name_starts_with=prefix or None,
                include=["metadata"],
                results_per_page=self._page_size,
            ).by_page()
            async for page in pages:
                async for item in page:
                    yield ObjectInfo(
                        key=item.name,
                        size=int(item.size),
                        etag=str(item.etag).strip('"') or None,
                        content_type=item.content_settings.content_type,
                        last_modified=item.last_modified,
                        metadata=dict(item.metadata or {}),
                    )

    async def _names_utf16(self, prefix: str) -> AsyncIterator[str]:
        if self._obstore is not None:
            async for info in self._obstore.iter(prefix):
                yield info.key
            return
        container = await self._container()
        marker: str | None = None
        while True:
            names, marker = await self._names_page(container, prefix, marker)
            for name in names:
                yield name
            if not marker:
                return

    async def _names_page(
        self, container: Any, prefix: str, marker: str | None
    ) -> tuple[list[str], str | None]:
        """One page of blob names and the next marker.

        The SDK's ``list_blob_names`` builds a new generated client for every page and
        parses the whole answer — every blob's properties included — into an XML tree,
        then reads one field of it: that cost more client CPU than the request itself
        (profiled on Azurite). Here the same GET runs through the client's own pipeline
        (auth, retries, version header), unparsed, and the names are read from the body;
        any answer that is not a plain 200 page goes to the SDK's own call, which raises
        its usual errors."""
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        pipeline = getattr(container, "_pipeline", None)
        params = {"restype": "container", "comp": "list", "maxresults": str(self._page_size)}
        # azure-core puts query values in as they are: quote them as the SDK's serializer
        # does, or a '%', '&' or '+' in a prefix or an opaque marker would change meaning.
        if prefix:
            params["prefix"] = quote(prefix, safe="")
        if marker:
            params["marker"] = quote(marker, safe="")
        body: bytes | None = None
        if pipeline is not None:
            request = HttpRequest(
                "GET",
                container.url,
                params=params,
                headers={"x-ms-version": container.api_version, "Accept": "application/xml"},
            )
            with self._errors():
                # stream=True: azure-core's decode policy would parse the XML otherwise.
                response = (await pipeline.run(request, stream=True)).http_response
            try:
                if response.status_code == 200:
                    body = await response.read()
            except AzureError:
                body = None  # a body cut short: the SDK's call below retries it
            finally:
                await response.close()
        if body is not None:
            return names_page(body)
        with self._errors():
            pages = container.list_blob_names(
                name_starts_with=prefix or None, results_per_page=self._page_size
            ).by_page(continuation_token=marker)
            page = await anext(pages)
            return [name async for name in page], pages.continuation_token

    async def _copy(self, src: str, dst: str) -> None:
        container = await self._container()
        source = container.get_blob_client(src)
        target = container.get_blob_client(dst)
        with self._errors(dst, source=src):
            started = await target.start_copy_from_url(source.url, requires_sync=False)
            status = started.get("copy_status")
            delay = 0.05
            # Wait until the server-side copy has finished: move() deletes the source only
            # after this returns.
            while status == "pending":
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                props = await target.get_blob_properties()
                status = props.copy.status
        if status not in ("success", None):
            raise StorageError(f"azure_blob copy of {src!r} to {dst!r} ended as {status!r}")

    @operation
    async def abort_incomplete_uploads(self, *, older_than: timedelta) -> int:
        """Not available on Azure: raises FeatureNotSupportedError.

        A failed ``upload_stream`` leaves only uncommitted blocks, which are never
        visible and which Azure itself discards 7 days after they were staged; there is
        no call to list or remove them earlier."""
        raise FeatureNotSupportedError(
            "azure_blob storage has no incomplete uploads to abort: uncommitted blocks of "
            "a failed upload_stream are invisible and Azure discards them after 7 days"
        )

    async def _user_delegation_key(self, service: Any, expiry: datetime) -> Any:
        """A user-delegation key valid past ``expiry``, cached and renewed when too short."""
        cached = self._delegation
        if cached is not None and cached[1] >= expiry:
            return cached[0]
        now = datetime.now(UTC)
        key_expiry = now + timedelta(days=7) - timedelta(minutes=5)
        with self._errors():
            key = await service.get_user_delegation_key(now - timedelta(minutes=5), key_expiry)
        self._delegation = (key, key_expiry)
        return key

    async def _presign(
        self, key: str, expires_in: int, method: PresignMethod, content_type: str | None
    ) -> str:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        container = await self._container()
        blob = container.get_blob_client(key)
        expiry = datetime.now(UTC) + timedelta(seconds=expires_in)
        permission = (
            BlobSasPermissions(read=True)
            if method == "GET"
            else BlobSasPermissions(create=True, write=True)
        )
        signing: dict[str, Any] = {}
        cred = container.credential
        if self.auth_method in ("managed identity", "service principal"):
            service = (await self._client.get())[0]
            signing["user_delegation_key"] = await self._user_delegation_key(service, expiry)
        elif getattr(cred, "account_key", None):
            signing["account_key"] = cred.account_key
        else:
            raise FeatureNotSupportedError(
                "azure_blob storage cannot sign presigned URLs under SAS-token auth (no key "
                "to sign with); use account_key, a connection string with AccountKey, "
                "managed identity or a service principal"
            )
        sas = generate_blob_sas(
            account_name=container.account_name,
            container_name=self.container,
            blob_name=key,
            permission=permission,
            expiry=expiry,
            content_type=content_type if method == "GET" else None,
            **signing,
        )
        return f"{blob.url}?{sas}"

    async def _health(self) -> bool:
        container = await self._container()
        with self._errors():
            await container.get_container_properties()
        return True


__all__ = ["AzureBlobStorage"]
