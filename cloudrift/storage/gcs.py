"""Google Cloud Storage through ``gcloud-aio-storage`` (JSON API), also the GCS emulator.

One ``gcloud.aio.storage.Storage`` per backend over one pooled aiohttp session. Auth:
a service-account JSON file (``credentials_path``) or application default credentials
/ workload identity (no option). ``emulator_host`` points the backend at an emulator
explicitly (``STORAGE_EMULATOR_HOST`` in the process environment is ignored, so a stray
variable cannot redirect production traffic). ``kms_key_name`` writes objects with a
customer-managed encryption key (CMEK).

Streamed uploads use a resumable upload session (sequential chunks, a multiple of
256 KiB each); a failed stream cancels the session, so no object is created.
Presigned URLs are V4 signed URLs: signed locally with the service account's private
key, or through the IAM signBlob API under ADC when ``service_account_email`` is set.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

from cloudrift.core.auth import auth_method, select_auth
from cloudrift.core.exceptions import (
    BucketNotFoundError,
    ConfigurationError,
    FeatureNotSupportedError,
    InvalidArgumentError,
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
from cloudrift.core.secrets import redact
from cloudrift.core.validation import check_int
from cloudrift.storage._obstore import (
    ObstoreEngine,
    check_client_options,
    check_engine,
    gcs_engine,
)
from cloudrift.storage.base import ObjectInfo, PresignMethod, Storage, range_header

if TYPE_CHECKING:
    # gcloud-aio and aiohttp are imported when the SDK client is first built, so that
    # engine="obstore" runs its data plane without them (as s3 / azure_blob do).
    import aiohttp
    from gcloud.aio.storage import Storage as _GCSClient

_AUTH = [
    auth_method("application default credentials"),
    auth_method("service account file", ["credentials_path"]),
]
_PUBLIC_ROOT = "https://storage.googleapis.com"
#: Attempts per request on the obstore engine (gcloud-aio retries on its own).
_OBSTORE_ATTEMPTS = 3
_RESUMABLE_UNIT = 256 * 1024
# The emulator answers "bytes 1--1/0" for a range on an empty object (GCS answers 416).
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(-?\d+)/(\d+|\*)")


def _private(obj: object, name: str) -> Any:
    """``obj.<name>``, a private gcloud-aio-storage detail; a clear error if it is gone."""
    try:
        return getattr(obj, name)
    except AttributeError:
        from gcloud.aio.storage import __version__

        raise StorageError(
            f"gcloud-aio-storage {__version__} no longer has {type(obj).__name__}.{name}, "
            "which the gcs provider relies on; install a gcloud-aio-storage version "
            "cloudrift supports (see the gcp extra in pyproject.toml)"
        ) from None


class _SDK:
    """Every private part of gcloud-aio-storage the provider uses, in this one place.

    gcloud-aio has no public API for a raw resumable upload session (we stream parts of
    our own size and cancel the session on failure), nor for the raw response of a ranged
    download (we check its Content-Range), nor for query parameters on a download
    (``ifGenerationMatch``). ``tests/storage/test_gcs.py`` checks each of
    these against the installed version, so an upgrade that changes them fails loudly.
    """

    @staticmethod
    async def auth_headers(client: _GCSClient) -> dict[str, str]:
        """The Authorization header for a request (empty against an emulator)."""
        headers: dict[str, str] = await _private(client, "_headers")()
        return headers

    @staticmethod
    def upload_root(client: _GCSClient) -> str:
        """``<api root>/upload/storage/v1/b``: where uploads of a bucket are started."""
        return str(_private(client, "_api_root_write"))

    @staticmethod
    def http_session(client: _GCSClient) -> aiohttp.ClientSession:
        """The pooled aiohttp session under the client."""
        session: aiohttp.ClientSession = _private(client.session, "session")
        return session

    @staticmethod
    def download_stream(
        client: _GCSClient,
        bucket: str,
        key: str,
        *,
        headers: dict[str, str],
        params: dict[str, str],
        timeout: int,
    ) -> Awaitable[Any]:
        """``download_stream`` with query parameters too (``ifGenerationMatch``), which
        the public method does not pass on."""
        download: Callable[..., Awaitable[Any]] = _private(client, "_download_stream")
        return download(
            bucket, key, headers=headers, params={**params, "alt": "media"}, timeout=timeout
        )

    @staticmethod
    def response(stream: Any) -> aiohttp.ClientResponse:
        """The raw aiohttp response of ``download_stream`` (for its headers)."""
        resp: aiohttp.ClientResponse = _private(stream, "_response")
        return resp


class GCSStorage(Storage):
    """Objects in one GCS bucket."""

    provider = "gcs"
    supports_presigned_url = True
    backend_name = "gcs storage"

    def __init__(
        self,
        *,
        bucket: str,
        credentials_path: str | None = None,
        emulator_host: str | None = None,
        kms_key_name: str | None = None,
        service_account_email: str | None = None,
        max_pool_connections: int = 64,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        list_page_size: int = 1000,
        engine: str = "sdk",
    ) -> None:
        super().__init__()
        if not isinstance(bucket, str) or not bucket:
            raise ConfigurationError("gcs storage needs bucket: the bucket name")
        self.auth_method = select_auth("gcs storage", {"credentials_path": credentials_path}, _AUTH)
        if emulator_host is not None and not emulator_host.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"gcs emulator_host must include the scheme, e.g. 'http://127.0.0.1:9023', "
                f"got {emulator_host!r}"
            )
        check_client_options(
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=_OBSTORE_ATTEMPTS,
        )
        check_int("list_page_size", list_page_size, at_least=1)
        self.bucket = bucket
        self.emulator_host = emulator_host.rstrip("/") if emulator_host else None
        self._credentials_path = credentials_path
        self._kms = kms_key_name
        self._signer_email = service_account_email
        self._pool = max_pool_connections
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._page_size = list_page_size
        self._client: LazyClient[Any] = LazyClient(self._build_client)
        # engine="obstore": the data plane on obstore's GCSStore (GCS's XML API); the SDK
        # client above is then built only for what stays on it (copy, presign, CMEK
        # writes, conditional replaces, health).
        self.engine = check_engine("gcs storage", engine)
        self._obstore: ObstoreEngine | None = None
        if self.engine == "obstore":
            self._obstore = gcs_engine(
                where="gcs storage",
                bucket=bucket,
                endpoint=self.emulator_host or _PUBLIC_ROOT,
                emulator=self.emulator_host is not None,
                credentials_path=credentials_path,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=_OBSTORE_ATTEMPTS,
                list_page_size=list_page_size,
            )

    def _location(self) -> str:
        where = f" emulator={self.emulator_host!r}" if self.emulator_host else ""
        return f"bucket={self.bucket!r}{where}"

    def _describe(self) -> BackendDescription:
        return BackendDescription.at("gcs", self.bucket, self.emulator_host)

    # ---------------------------------------------------------------- client

    async def _build_client(self, stack: AsyncExitStack) -> Any:
        import aiohttp
        from gcloud.aio.storage import Storage as _GCSClient

        timeout = aiohttp.ClientTimeout(
            sock_connect=self._connect_timeout, sock_read=self._read_timeout
        )
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._pool), timeout=timeout
        )
        stack.push_async_callback(session.close)
        sdk_session: Any = session  # gcloud-aio types it as its own alias of ClientSession
        return _GCSClient(
            service_file=self._credentials_path,
            session=sdk_session,
            api_root=self.emulator_host or _PUBLIC_ROOT,
            api_is_dev=self.emulator_host is not None,
        )

    async def _native_client(self) -> Any:
        """``await storage.native()``: the gcloud-aio ``Storage`` client."""
        return await self._client.get()

    async def _aclose(self) -> None:
        if self._obstore is not None:
            await self._obstore.aclose()
        await self._client.aclose()

    @property
    def _timeout(self) -> int:
        return max(1, int(self._read_timeout))

    # ---------------------------------------------------------------- errors

    @contextlib.contextmanager
    def _errors(
        self, key: str | None = None, *, exists_key: str | None = None, match_key: str | None = None
    ) -> Iterator[None]:
        """Translate aiohttp / gcloud-aio errors into cloudrift errors (``match_key``: the
        request carried ``ifGenerationMatch`` for ``if_match``)."""
        import aiohttp

        try:
            yield
        except aiohttp.ClientResponseError as exc:
            if match_key is not None:
                self._raise_if_match_status(exc.status, str(exc.message), match_key, exc)
            self._raise_status(exc.status, str(exc.message), key, exists_key, exc)
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise StorageConnectionError(
                f"gcs storage could not reach {self.emulator_host or _PUBLIC_ROOT}: "
                f"{redact(str(exc)) or type(exc).__name__}"
            ) from exc
        except aiohttp.ClientError as exc:
            raise StorageError(f"gcs storage error: {redact(str(exc))}") from exc

    @staticmethod
    def _raise_if_match_status(status: int, text: str, key: str, exc: BaseException) -> None:
        """PreconditionFailedError for a failed ``ifGenerationMatch``: 412, or 404 when
        there is no object to match."""
        if status == 412:
            raise PreconditionFailedError(key) from exc
        if status == 404 and "bucket does not exist" not in text.lower():
            raise PreconditionFailedError(
                key, f"no object {key!r} to match (if_match needs an existing object)"
            ) from exc

    def _raise_status(
        self,
        status: int,
        text: str,
        key: str | None,
        exists_key: str | None,
        exc: BaseException,
    ) -> NoReturn:
        text = redact(text)
        if status == 412 and exists_key:
            raise ObjectExistsError(exists_key) from exc
        if status == 404:
            # GCS says "The specified bucket does not exist." for a missing bucket; any
            # other 404 on an object operation is a missing object.
            if key is not None and "bucket does not exist" not in text.lower():
                raise ObjectNotFoundError(key) from exc
            raise BucketNotFoundError(
                self.bucket, f"bucket {self.bucket!r} does not exist; create it first"
            ) from exc
        if status == 416:
            raise InvalidRangeError(f"range not satisfiable for {key!r}") from exc
        if status in (401, 403):
            raise StoragePermissionError(
                f"gcs storage: access denied to bucket {self.bucket!r}"
                + (f", object {key!r}" if key else "")
                + f" ({status}: {text}); check the service account's roles"
            ) from exc
        if status >= 500 or status == 429:
            raise StorageConnectionError(f"gcs storage is unavailable ({status}): {text}") from exc
        raise StorageError(f"gcs storage error {status}: {text}") from exc

    def _write_params(self) -> dict[str, str]:
        return {"kmsKeyName": self._kms} if self._kms else {}

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
        # CMEK writes and conditional replaces go through the SDK client on either engine
        # (obstore cannot send a KMS key name nor a generation precondition).
        if self._obstore is not None and if_match is None and not self._kms:
            await self._obstore.put(key, data, content_type, metadata, if_not_exists)
            return
        client = await self._client.get()
        params = self._write_params()
        if if_not_exists:
            params["ifGenerationMatch"] = "0"
        if if_match is not None:
            params["ifGenerationMatch"] = self._generation(key, if_match)
        with self._errors(
            key, exists_key=key if if_not_exists else None, match_key=key if if_match else None
        ):
            await client.upload(
                self.bucket,
                key,
                bytes(data),
                content_type=content_type,
                parameters=params,
                # Always a multipart upload (one request, like a simple upload) so content
                # type and metadata land atomically with the data.
                metadata={"contentType": content_type, "metadata": metadata},
                force_resumable_upload=False,
                timeout=self._timeout,
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
        if self._obstore is not None and if_match is None and not self._kms:
            # The XML API's multipart upload takes at most 10,000 parts, like S3.
            await self._obstore.put_stream(
                key, parts, content_type, metadata, part_size, max_parts=10_000
            )
            return
        if part_size % _RESUMABLE_UNIT:
            raise InvalidArgumentError(
                f"gcs streamed uploads need part_size to be a multiple of 256 KiB; "
                f"{part_size} is not"
            )
        client = await self._client.get()
        session = _SDK.http_session(client)
        headers = await _SDK.auth_headers(client)
        url = f"{_SDK.upload_root(client)}/{self.bucket}/o"
        params = {"uploadType": "resumable", "name": key, **self._write_params()}
        if if_match is not None:
            # Checked when the session is opened and again when the object is finalised.
            params["ifGenerationMatch"] = self._generation(key, if_match)
        body = {"name": key, "contentType": content_type, "metadata": metadata}
        with self._errors(key, match_key=key if if_match else None):
            async with session.post(
                url,
                params=params,
                json=body,
                headers={**headers, "X-Upload-Content-Type": content_type},
                raise_for_status=True,
            ) as resp:
                session_url = resp.headers["Location"]
        offset = 0
        try:
            pending = await anext(parts, None)
            while True:
                following = await anext(parts, None) if pending is not None else None
                chunk = pending or b""
                last = following is None
                total = str(offset + len(chunk)) if last else "*"
                span = f"{offset}-{offset + len(chunk) - 1}" if chunk else "*"
                with self._errors(key):
                    async with session.put(
                        session_url,
                        data=chunk,
                        headers={**headers, "Content-Range": f"bytes {span}/{total}"},
                    ) as resp:
                        if resp.status not in (200, 201, 308):
                            if if_match is not None:
                                self._raise_if_match_status(
                                    resp.status, await resp.text(), key, Exception()
                                )
                            self._raise_status(
                                resp.status, await resp.text(), key, None, Exception()
                            )
                offset += len(chunk)
                if last:
                    return
                pending = following
        except BaseException:
            # Cancel the resumable session so no object appears and nothing lingers.
            with contextlib.suppress(Exception):
                async with session.delete(session_url, headers=headers):
                    pass
            raise

    def _check_content_range(self, key: str, start: int, headers: Any) -> None:
        """Raise InvalidRangeError when the server answered a range past the object's end."""
        match = _CONTENT_RANGE.fullmatch(headers.get("Content-Range", ""))
        if match and match.group(3) != "*":
            total = int(match.group(3))
            if start >= total and (start > 0 or total == 0):
                raise InvalidRangeError(f"range start {start} is past the end of {key!r}")

    async def _open_download(
        self, client: _GCSClient, key: str, headers: dict[str, str], if_match: str | None
    ) -> Any:
        """The download stream of ``key``; with ``if_match``, of that generation only."""
        if if_match is None:
            return await client.download_stream(
                self.bucket, key, headers=headers, timeout=self._timeout
            )
        params = {"ifGenerationMatch": self._generation(key, if_match)}
        return await _SDK.download_stream(
            client, self.bucket, key, headers=headers, params=params, timeout=self._timeout
        )

    async def _get(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> bytes:
        # if_match (ifGenerationMatch) runs on the SDK client on either engine: obstore
        # can send If-Match (the MD5 ETag) or ?generation= (which would serve an older
        # generation still kept by versioning), not a generation precondition.
        if self._obstore is not None and if_match is None:
            return await self._obstore.get(key, start, end)
        client = await self._client.get()
        headers = range_header(start, end)
        with self._errors(key, match_key=key if if_match else None):
            if not headers and if_match is None:
                data: bytes = await client.download(self.bucket, key, timeout=self._timeout)
                return data
            stream = await self._open_download(client, key, headers, if_match)
            resp = _SDK.response(stream)
            try:
                self._check_content_range(key, start, resp.headers)
                body: bytes = await resp.read()
            finally:
                resp.release()
        return body

    async def _get_stream(
        self, key: str, start: int, end: int | None, chunk_size: int, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        if self._obstore is not None and if_match is None:
            async for chunk in self._obstore.get_stream(key, start, end, chunk_size):
                yield chunk
            return
        client = await self._client.get()
        with self._errors(key, match_key=key if if_match else None):
            stream = await self._open_download(client, key, range_header(start, end), if_match)
        resp = _SDK.response(stream)
        try:
            self._check_content_range(key, start, resp.headers)
            while True:
                with self._errors(key):
                    chunk = await resp.content.read(chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            resp.release()

    @staticmethod
    def _info(item: dict[str, Any]) -> ObjectInfo:
        updated = item.get("updated")
        return ObjectInfo(
            key=item["name"],
            size=int(item.get("size", 0)),
            # The generation: what ifGenerationMatch compares (GCS's own etag also
            # changes with metadata-only updates, which a content precondition ignores).
            etag=str(item.get("generation") or item.get("etag") or item.get("md5Hash") or "")
            or None,
            content_type=item.get("contentType"),
            last_modified=datetime.fromisoformat(updated.replace("Z", "+00:00"))
            if updated
            else None,
            metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
        )

    async def _head(self, key: str) -> ObjectInfo:
        if self._obstore is not None:
            return await self._obstore.head(key)
        client = await self._client.get()
        with self._errors(key):
            item = await client.download_metadata(self.bucket, key, timeout=self._timeout)
        return self._info(item)

    @staticmethod
    def _generation(key: str, etag: str) -> str:
        if not etag.isdigit():
            raise PreconditionFailedError(
                key,
                f"if_match={etag!r} is not a GCS object generation (the etag head() returns "
                f"for {key!r}); nothing was sent",
            )
        return etag

    async def _delete_if_match(self, key: str, etag: str) -> None:
        client = await self._client.get()
        params = {"ifGenerationMatch": self._generation(key, etag)}
        with self._errors(key, match_key=key):
            await client.delete(self.bucket, key, params=params, timeout=self._timeout)

    async def _exists(self, key: str) -> bool:
        if self._obstore is not None:
            return await self._obstore.exists(key)
        return await super()._exists(key)

    async def _delete(self, key: str) -> None:
        if self._obstore is not None:
            await self._obstore.delete(key)
            return
        client = await self._client.get()
        # GCS answers 404 for a missing object; delete is a no-op on every provider.
        with contextlib.suppress(ObjectNotFoundError), self._errors(key):
            await client.delete(self.bucket, key, timeout=self._timeout)

    async def _iter(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        if self._obstore is not None:
            async for info in self._obstore.iter(prefix):
                yield info
            return
        client = await self._client.get()
        params: dict[str, str] = {"maxResults": str(self._page_size)}
        if prefix:
            params["prefix"] = prefix
        while True:
            with self._errors():
                page = await client.list_objects(
                    self.bucket, params=dict(params), timeout=self._timeout
                )
            for item in page.get("items") or []:
                yield self._info(item)
            token = page.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = token

    async def _copy(self, src: str, dst: str) -> None:
        client = await self._client.get()
        # rewriteTo loops until the server reports the copy done, for any size.
        with self._errors(src):
            await client.copy(
                self.bucket,
                src,
                self.bucket,
                new_name=dst,
                params=self._write_params() or None,
                timeout=self._timeout,
            )

    @operation
    async def abort_incomplete_uploads(self, *, older_than: timedelta) -> int:
        """Not available on GCS: raises FeatureNotSupportedError.

        A failed ``upload_stream`` cancels its resumable session; when even that fails,
        the session's data never becomes an object and GCS expires the session a week
        after it was started. There is no call to list open sessions."""
        raise FeatureNotSupportedError(
            "gcs storage has no incomplete uploads to abort: a failed upload_stream's "
            "resumable session never becomes an object and GCS expires it after a week"
        )

    async def _presign(
        self, key: str, expires_in: int, method: PresignMethod, content_type: str | None
    ) -> str:
        client = await self._client.get()
        token = client.token
        service_data = getattr(token, "service_data", None) or {}
        iam: Any = None
        if not service_data.get("private_key"):
            if not self._signer_email:
                raise FeatureNotSupportedError(
                    "gcs storage can sign URLs only with a service account key "
                    "(credentials_path) or, under application default credentials, "
                    "through IAM signBlob: pass service_account_email"
                )
            from gcloud.aio.auth import IamClient

            session: Any = _SDK.http_session(client)  # gcloud-aio's alias of ClientSession
            iam = IamClient(token=token, session=session)
        from gcloud.aio.storage import Blob, Bucket

        blob = Blob(Bucket(client, self.bucket), key, {"size": 0})
        headers = {"content-type": content_type} if method == "PUT" and content_type else None
        query = (
            {"response-content-type": content_type} if method == "GET" and content_type else None
        )
        with self._errors(key):
            url: str = await blob.get_signed_url(
                expires_in,
                headers=headers,
                query_params=query,
                http_method=method,
                iam_client=iam,
                service_account_email=self._signer_email,
            )
        if self.emulator_host:
            # The emulator serves the same /bucket/object paths as storage.googleapis.com.
            url = self.emulator_host + url[len(_PUBLIC_ROOT) :]
        return url

    async def _health(self) -> bool:
        client = await self._client.get()
        with self._errors():
            await client.get_bucket_metadata(self.bucket, timeout=self._timeout)
        return True

    def public_url_for(self, key: str) -> str:
        """The unsigned public URL of ``key`` (works only for publicly readable objects)."""
        root = self.emulator_host or _PUBLIC_ROOT
        return f"{root}/{self.bucket}/{quote(key, safe='/~')}"


__all__ = ["GCSStorage"]
