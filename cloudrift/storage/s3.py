"""Amazon S3 (and S3-compatible servers: MinIO, moto, DigitalOcean Spaces) and Cloudflare R2.

One aioboto3 client per backend, built on first use and reused by every call (pooled by
``max_pool_connections``). Auth is chosen strictly from the options given: static keys,
the default chain (IAM role, env, instance profile), ``profile_name``, or ``role_arn``
(assumed with STS; the temporary credentials are refreshed before they expire).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Unpack
from urllib.parse import quote

from cloudrift.core.aws import (
    AUTH_ERROR_CODES,
    NOT_FOUND_ERROR_CODES,
    WORD_NAMES,
    AwsAuthOptions,
    aio_config,
    aws_auth_methods,
    aws_credentials,
    client_error_details,
    connection_errors,
    credential_errors,
    lazy_client,
)
from cloudrift.core.exceptions import (
    BucketNotFoundError,
    ConfigurationError,
    InvalidArgumentError,
    InvalidRangeError,
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
)
from cloudrift.core.operation import BackendDescription, operation
from cloudrift.core.secrets import Secret, redact
from cloudrift.core.validation import check_int
from cloudrift.storage._obstore import (
    ObstoreEngine,
    check_client_options,
    check_engine,
    s3_engine,
)
from cloudrift.storage.base import ObjectInfo, PresignMethod, Storage, range_header, send_parts

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

# The role's source credentials come from the default chain (keys or a profile
# beside role_arn are a conflict).
_AUTH = aws_auth_methods(WORD_NAMES, role_source_credentials=False, default_first=True)
_SSE = ("AES256", "aws:kms")
GiB = 1024**3
log = logging.getLogger("cloudrift.storage.s3")


class S3Storage(Storage):
    """Objects in one S3 bucket."""

    provider = "s3"
    backend_name = "s3 storage"
    supports_presigned_url = True

    #: Objects larger than this are copied with a multipart copy (S3's CopyObject limit).
    copy_multipart_threshold = 5 * GiB
    #: Part size of a multipart copy.
    copy_part_size = 512 * 1024 * 1024
    #: Most parts one multipart upload may have (S3's limit).
    max_parts = 10_000
    #: How long a failed stream or copy waits for its first abort attempt (seconds)
    #: before raising its own error; the attempt goes on in the background.
    abort_wait = 5.0
    #: Pauses (seconds) between background retries of an abort that failed because the
    #: server could not be reached: about 2 minutes in all, then a warning is logged.
    abort_retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

    def __init__(
        self,
        *,
        bucket: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_pool_connections: int = 64,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        upload_concurrency: int = 2,
        list_page_size: int = 1000,
        addressing_style: str = "auto",
        engine: str = "obstore",
        **auth: Unpack[AwsAuthOptions],
    ) -> None:
        super().__init__()
        if not isinstance(bucket, str) or not bucket:
            raise ConfigurationError(f"{self.provider} storage needs bucket: the bucket name")
        self._creds = aws_credentials(
            f"{self.provider} storage",
            _AUTH,
            WORD_NAMES,
            **auth,
        )
        self.auth_method = self._creds.method
        if sse is not None and sse not in _SSE:
            raise ConfigurationError(f"sse must be one of {', '.join(_SSE)} (or None), got {sse!r}")
        if sse_kms_key_id is not None:
            if sse is None:
                sse = "aws:kms"
            elif sse != "aws:kms":
                raise ConfigurationError("sse_kms_key_id needs sse='aws:kms'")
        if addressing_style not in ("auto", "path", "virtual"):
            raise ConfigurationError("addressing_style must be 'auto', 'path' or 'virtual'")
        # Pool size, timeouts and max_attempts are checked by aio_config (as it builds the
        # SDK's config) or, for engine="obstore", by the same checks without building it.
        check_client_options(
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )
        for name, value in (
            ("upload_concurrency", upload_concurrency),
            ("list_page_size", list_page_size),
        ):
            check_int(name, value, at_least=1)
        self.bucket = bucket
        self.region = region
        self.endpoint_url = endpoint_url
        self._sse = sse
        self._kms_key = sse_kms_key_id
        self._concurrency = upload_concurrency
        self._page_size = list_page_size
        # Built with the SDK client: engine="obstore" imports no botocore until needed.
        self._config = functools.partial(
            aio_config,
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            s3={"addressing_style": addressing_style},
        )
        # Own session and credentials (role_arn: STS AssumeRole, refreshed before expiry).
        self._client = lazy_client(
            self._creds,
            "s3",
            region=region,
            endpoint_url=endpoint_url,
            config=self._config,
        )
        # engine="obstore": the data plane on obstore (cloudrift/storage/_obstore.py); the
        # SDK client above is then built only for what stays on it (copy, presign, ...).
        self.engine = check_engine(f"{self.provider} storage", engine)
        self._obstore: ObstoreEngine | None = None
        if self.engine == "obstore":
            self._obstore = s3_engine(
                where=f"{self.provider} storage",
                bucket=bucket,
                region=region,
                endpoint_url=endpoint_url,
                creds=self._creds,
                addressing_style=addressing_style,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
                sse=sse,
                sse_kms_key_id=sse_kms_key_id,
                upload_concurrency=upload_concurrency,
                list_page_size=list_page_size,
                max_pool_connections=max_pool_connections,
            )
        # Aborts of failed multipart uploads still being retried (see _abort).
        self._aborts: set[asyncio.Task[None]] = set()

    def _location(self) -> str:
        where = f" endpoint={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"bucket={self.bucket!r}{where}"

    def _describe(self) -> BackendDescription:
        return BackendDescription.at("s3", self.bucket, self.endpoint_url)

    @property
    def _secrets(self) -> list[Secret | None]:
        return list(self._creds.secrets)

    # ---------------------------------------------------------------- client

    async def _native_client(self) -> Any:
        """``await storage.native()``: the aioboto3 S3 client."""
        return await self._client.get()

    async def _aclose(self) -> None:
        for task in list(self._aborts):
            task.cancel()
        await asyncio.gather(*self._aborts, return_exceptions=True)
        if self._obstore is not None:
            await self._obstore.aclose()
        await self._client.aclose()

    # ---------------------------------------------------------------- errors

    @contextlib.contextmanager
    def _errors(
        self, key: str | None = None, *, exists_key: str | None = None, match_key: str | None = None
    ) -> Iterator[None]:
        """Translate botocore errors for an operation on ``key`` into cloudrift errors
        (``match_key``: the operation carried ``IfMatch``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            if match_key is not None:
                self._raise_if_match_error(exc, match_key)
            self._raise_client_error(exc, key, exists_key)
        except connection_errors() as exc:
            raise StorageConnectionError(
                f"{self.provider} storage could not reach {self.endpoint_url or 'S3'}: "
                f"{redact(str(exc), self._secrets)}"
            ) from exc
        except credential_errors() as exc:
            raise ConfigurationError(
                f"{self.provider} storage has no usable credentials: "
                f"{redact(str(exc), self._secrets)}"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(
                f"{self.provider} storage error: {redact(str(exc), self._secrets)}"
            ) from exc
        except Exception as exc:
            # A body that breaks mid-read (download, download_stream) raises aiohttp's own
            # errors (ClientPayloadError...) through aiobotocore, not botocore's.
            if not type(exc).__module__.startswith("aiohttp"):
                raise
            raise StorageConnectionError(
                f"{self.provider} storage lost its connection to "
                f"{self.endpoint_url or 'S3'}: {redact(str(exc), self._secrets)}"
            ) from exc

    def _raise_if_match_error(self, exc: ClientError, key: str) -> None:
        """PreconditionFailedError for a failed ``IfMatch``: 412, 409
        ``ConditionalRequestConflict`` (a concurrent conditional write won), or 404
        ``NoSuchKey`` (S3's answer when there is no object to match)."""
        code = client_error_details(exc, self._secrets).code
        if code == "PreconditionFailed":
            raise PreconditionFailedError(key) from exc
        if code == "ConditionalRequestConflict":
            raise PreconditionFailedError(
                key,
                f"object {key!r} was written concurrently (409 ConditionalRequestConflict); "
                "nothing was written: re-read it and retry",
            ) from exc
        if code in NOT_FOUND_ERROR_CODES and code != "NoSuchBucket":
            raise PreconditionFailedError(
                key, f"no object {key!r} to match (if_match needs an existing object)"
            ) from exc

    def _raise_client_error(
        self, exc: ClientError, key: str | None, exists_key: str | None
    ) -> NoReturn:
        details = client_error_details(exc, self._secrets)
        code, status, text = details.code, details.status, details.message
        if code == "NoSuchBucket":
            raise BucketNotFoundError(
                self.bucket, f"bucket {self.bucket!r} does not exist; create it first"
            ) from exc
        if code in ("PreconditionFailed", "ConditionalRequestConflict") and exists_key:
            raise ObjectExistsError(exists_key) from exc
        if code in NOT_FOUND_ERROR_CODES and key is not None:
            raise ObjectNotFoundError(key) from exc
        if code == "InvalidRange" or status == 416:
            raise InvalidRangeError(f"range not satisfiable for {key!r}") from exc
        if code in AUTH_ERROR_CODES or status == 403:
            raise StoragePermissionError(
                f"{self.provider} storage: access denied to bucket {self.bucket!r}"
                + (f", key {key!r}" if key else "")
                + f" ({code}: {text}); check the credentials and the bucket policy"
            ) from exc
        if (status is not None and status >= 500) or code in ("SlowDown", "ServiceUnavailable"):
            raise StorageConnectionError(
                f"{self.provider} storage is unavailable ({code}): {text}"
            ) from exc
        raise StorageError(f"{self.provider} storage error {code or status}: {text}") from exc

    def _sse_args(self) -> dict[str, str]:
        args: dict[str, str] = {}
        if self._sse:
            args["ServerSideEncryption"] = self._sse
        if self._kms_key:
            args["SSEKMSKeyId"] = self._kms_key
        return args

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
        # Conditional replaces go through the SDK client on either engine.
        if self._obstore is not None and if_match is None:
            await self._obstore.put(key, data, content_type, metadata, if_not_exists)
            return
        client = await self._client.get()
        extra = self._sse_args()
        if if_not_exists:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = f'"{if_match}"'
        with self._errors(
            key, exists_key=key if if_not_exists else None, match_key=key if if_match else None
        ):
            await client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=bytes(data) if not isinstance(data, bytes) else data,
                ContentType=content_type,
                Metadata=metadata,
                **extra,
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
        if self._obstore is not None and if_match is None:
            await self._obstore.put_stream(
                key,
                parts,
                content_type,
                metadata,
                part_size,
                max_parts=self.max_parts,
                on_orphan=functools.partial(self._abort_orphan, key),
            )
            return
        first = await anext(parts, None)
        second = await anext(parts, None) if first is not None else None
        if first is None or second is None:
            # One part or none: a single PUT is cheaper than a multipart upload.
            await self._put(key, first or b"", content_type, metadata, False, if_match=if_match)
            return
        client = await self._client.get()
        with self._errors(key):
            created = await client.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ContentType=content_type,
                Metadata=metadata,
                **self._sse_args(),
            )
        upload_id = created["UploadId"]
        etags: dict[int, str] = {}

        async def send(number: int, body: bytes) -> None:
            if number > self.max_parts:
                raise StorageError(
                    f"upload_stream of {key!r} needs more than {self.max_parts} parts of "
                    f"{part_size} bytes (S3's limit); pass a larger part_size"
                )
            with self._errors(key):
                resp = await client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                )
            etags[number] = resp["ETag"]

        # Hand the two parts already read over to the sender and drop our references, so
        # they are freed once sent (memory stays bounded by the parts in flight).
        head = [first, second]
        del first, second

        async def all_parts() -> AsyncIterator[bytes]:
            while head:
                yield head.pop(0)
            async for part in parts:
                yield part

        try:
            # At most `upload_concurrency` parts in flight: memory stays bounded.
            await send_parts(all_parts(), send, self._concurrency)
            # The condition is checked when the parts become the object.
            condition = {} if if_match is None else {"IfMatch": f'"{if_match}"'}
            with self._errors(key, match_key=key if if_match else None):
                await client.complete_multipart_upload(
                    **condition,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={
                        "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
                    },
                )
        except BaseException:
            await self._abort(client, key, upload_id)
            raise

    def _get_args(self, key: str, start: int, end: int | None, if_match: str | None) -> Any:
        args: dict[str, str] = {"Bucket": self.bucket, "Key": key, **range_header(start, end)}
        if if_match is not None:
            args["IfMatch"] = f'"{if_match}"'
        return args

    async def _get(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> bytes:
        if self._obstore is not None:
            return await self._obstore.get(key, start, end, if_match=if_match)
        client = await self._client.get()
        with self._errors(key, match_key=key if if_match else None):
            resp = await client.get_object(**self._get_args(key, start, end, if_match))
            async with resp["Body"] as body:
                data: bytes = await body.read()
        return data

    async def _get_stream(
        self, key: str, start: int, end: int | None, chunk_size: int, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        if self._obstore is not None:
            stream = self._obstore.get_stream(key, start, end, chunk_size, if_match=if_match)
            async for chunk in stream:
                yield chunk
            return
        client = await self._client.get()
        with self._errors(key, match_key=key if if_match else None):
            resp = await client.get_object(**self._get_args(key, start, end, if_match))
        body = resp["Body"]
        try:
            with self._errors(key):
                async for chunk in body.iter_chunks(chunk_size):
                    yield chunk
        finally:
            body.close()

    def _info(self, key: str, resp: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=int(resp.get("ContentLength", resp.get("Size", 0))),
            etag=str(resp.get("ETag", "")).strip('"') or None,
            content_type=resp.get("ContentType"),
            last_modified=resp.get("LastModified"),
            metadata=dict(resp.get("Metadata") or {}),
        )

    async def _head(self, key: str) -> ObjectInfo:
        if self._obstore is not None:
            return await self._obstore.head(key)
        client = await self._client.get()
        with self._errors(key):
            resp = await client.head_object(Bucket=self.bucket, Key=key)
        return self._info(key, resp)

    async def _delete(self, key: str) -> None:
        if self._obstore is not None:
            await self._obstore.delete(key)
            return
        # S3 answers 204 for a missing key already; other S3-compatible servers may 404.
        client = await self._client.get()
        with contextlib.suppress(ObjectNotFoundError), self._errors(key):
            await client.delete_object(Bucket=self.bucket, Key=key)

    async def _exists(self, key: str) -> bool:
        if self._obstore is not None:
            return await self._obstore.exists(key)
        return await super()._exists(key)

    async def _delete_if_match(self, key: str, etag: str) -> None:
        client = await self._client.get()
        with self._errors(key, match_key=key):
            await client.delete_object(Bucket=self.bucket, Key=key, IfMatch=f'"{etag}"')

    async def _iter(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        if self._obstore is not None:
            async for info in self._obstore.iter(prefix):
                yield info
            return
        client = await self._client.get()
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": self._page_size}
        while True:
            with self._errors():
                page = await client.list_objects_v2(**args)
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"],
                    size=int(item["Size"]),
                    etag=str(item.get("ETag", "")).strip('"') or None,
                    last_modified=item.get("LastModified"),
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            args["ContinuationToken"] = token

    async def _copy(self, src: str, dst: str) -> None:
        client = await self._client.get()
        source = {"Bucket": self.bucket, "Key": src}
        info = await self._head(src)
        if info.size <= self.copy_multipart_threshold:
            with self._errors(src):
                await client.copy_object(
                    Bucket=self.bucket,
                    Key=dst,
                    CopySource=source,
                    MetadataDirective="COPY",
                    **self._sse_args(),
                )
            return
        await self._multipart_copy(client, source, dst, info)

    async def _multipart_copy(
        self, client: Any, source: dict[str, str], dst: str, info: ObjectInfo
    ) -> None:
        """Copy an object past S3's 5 GiB CopyObject limit part by part, server-side."""
        with self._errors(dst):
            created = await client.create_multipart_upload(
                Bucket=self.bucket,
                Key=dst,
                ContentType=info.content_type or "application/octet-stream",
                Metadata=dict(info.metadata),
                **self._sse_args(),
            )
        upload_id = created["UploadId"]
        etags: dict[int, str] = {}

        async def ranges() -> AsyncIterator[int]:
            for first in range(0, info.size, self.copy_part_size):
                yield first

        async def part(number: int, first: int) -> None:
            last = min(first + self.copy_part_size, info.size) - 1
            with self._errors(source["Key"]):
                resp = await client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=dst,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={first}-{last}",
                )
            etags[number] = resp["CopyPartResult"]["ETag"]

        try:
            # Bounded concurrency; a failing part cancels the parts still in flight.
            await send_parts(ranges(), part, self._concurrency)
            with self._errors(dst):
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=dst,
                    UploadId=upload_id,
                    MultipartUpload={
                        "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
                    },
                )
        except BaseException:
            await self._abort(client, dst, upload_id)
            raise

    # ---------------------------------------------------------------- aborts

    async def _abort(self, client: Any, key: str, upload_id: str) -> None:
        """Abort a failed multipart upload so its parts are not left behind (and billed).

        The abort runs in its own task, so a cancelled caller cannot interrupt it. The
        caller waits for the first attempt at most ``abort_wait`` seconds and then raises
        its own error; when the server could not be reached (the usual reason a stream
        failed), the task keeps retrying after ``abort_retry_delays`` and logs a warning
        if the upload is still open at the end. Raises nothing of its own (only
        CancelledError if the caller is cancelled while it waits).
        """
        first_done = asyncio.Event()
        task = asyncio.create_task(self._abort_with_retries(client, key, upload_id, first_done))
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(first_done.wait()), self.abort_wait)

    async def _abort_orphan(self, key: str, upload_id: str) -> None:
        """engine="obstore": retry the abort obstore could not make, on the SDK client
        (built now if it was not yet), exactly as for the SDK engine's own uploads."""
        try:
            client = await self._client.get()
        except Exception as exc:
            log.warning(
                "%s could not abort multipart upload %s of %r (%s); its parts stay until "
                "a lifecycle rule or abort_incomplete_uploads() removes them",
                self.backend_name,
                upload_id,
                key,
                redact(str(exc), self._secrets),
            )
            return
        await self._abort(client, key, upload_id)

    async def _abort_with_retries(
        self, client: Any, key: str, upload_id: str, first_done: asyncio.Event
    ) -> None:
        delays = iter(self.abort_retry_delays)
        attempt = 0
        error: StorageError | None = None
        try:
            while True:
                attempt += 1
                try:
                    await self._abort_once(client, key, upload_id)
                    if attempt > 1:
                        log.info(
                            "%s: aborted multipart upload %s of %r on attempt %d",
                            self.backend_name,
                            upload_id,
                            key,
                            attempt,
                        )
                    return
                except StorageConnectionError as exc:
                    delay, error = next(delays, None), exc
                except StorageError as exc:
                    delay, error = None, exc  # e.g. access denied: retrying cannot help
                finally:
                    first_done.set()
                if delay is None:
                    log.warning(
                        "%s could not abort multipart upload %s of %r after %d attempts "
                        "(%s); its parts stay (and are billed) until an "
                        "AbortIncompleteMultipartUpload lifecycle rule or "
                        "abort_incomplete_uploads() removes them",
                        self.backend_name,
                        upload_id,
                        key,
                        attempt,
                        error,
                    )
                    return
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            log.warning(
                "%s closed before multipart upload %s of %r could be aborted; its parts "
                "stay until a lifecycle rule or abort_incomplete_uploads() removes them",
                self.backend_name,
                upload_id,
                key,
            )
            raise

    async def _abort_once(self, client: Any, key: str, upload_id: str) -> None:
        """One AbortMultipartUpload; an upload that is already gone counts as aborted."""
        from botocore.exceptions import ClientError

        try:
            await client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if client_error_details(exc, self._secrets).code == "NoSuchUpload":
                return
            with self._errors():
                raise
        except Exception:
            with self._errors():
                raise

    @operation
    async def abort_incomplete_uploads(self, *, older_than: timedelta) -> int:
        """Abort every multipart upload in the bucket started more than ``older_than`` ago
        (parts left by crashed writers or failed aborts); returns how many were aborted.

        Uploads still in progress are younger than any sensible ``older_than`` (an hour
        or a day); ``timedelta(0)`` aborts every open upload, including running ones.
        """
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidArgumentError(
                f"older_than must be a non-negative datetime.timedelta, got {older_than!r}"
            )
        client = await self._client.get()
        cutoff = datetime.now(UTC) - older_than
        args: dict[str, Any] = {"Bucket": self.bucket, "MaxUploads": self._page_size}
        aborted = 0
        while True:
            with self._errors():
                page = await client.list_multipart_uploads(**args)
            for upload in page.get("Uploads") or []:
                if upload["Initiated"] > cutoff:
                    continue
                await self._abort_once(client, upload["Key"], upload["UploadId"])
                aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            args["KeyMarker"] = page.get("NextKeyMarker", "")
            args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    async def _presign(
        self, key: str, expires_in: int, method: PresignMethod, content_type: str | None
    ) -> str:
        client = await self._client.get()
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if content_type is not None:
            params["ContentType"] = content_type
        if method == "PUT":
            params.update(self._sse_args())
        with self._errors(key):
            url: str = await client.generate_presigned_url(
                "get_object" if method == "GET" else "put_object",
                Params=params,
                ExpiresIn=expires_in,
            )
        return url

    async def _health(self) -> bool:
        client = await self._client.get()
        with self._errors():
            await client.head_bucket(Bucket=self.bucket)
        return True


class R2Storage(S3Storage):
    """Cloudflare R2 through the S3 API: explicit keys and endpoint, optional public URL.

    Streamed uploads use equal-size parts (R2 requires it; ``upload_stream`` always cuts
    the source into parts of exactly ``part_size`` bytes, the last one excepted).
    """

    provider = "r2"
    backend_name = "r2 storage"

    def __init__(
        self,
        *,
        bucket: str,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | Secret | None = None,
        account_id: str | None = None,
        endpoint_url: str | None = None,
        public_url: str | None = None,
        max_pool_connections: int = 64,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        upload_concurrency: int = 2,
        list_page_size: int = 1000,
        engine: str = "obstore",
    ) -> None:
        if not aws_access_key_id or not aws_secret_access_key:
            raise ConfigurationError(
                "r2 storage needs explicit aws_access_key_id and aws_secret_access_key "
                "(an R2 API token's key pair); IAM roles and profiles do not exist on R2"
            )
        if (account_id is None) == (endpoint_url is None):
            raise ConfigurationError(
                "r2 storage needs exactly one of account_id (endpoint "
                "https://<account_id>.r2.cloudflarestorage.com) or endpoint_url"
            )
        if account_id is not None:
            if not account_id.isalnum():
                raise ConfigurationError(f"r2 account_id must be alphanumeric, got {account_id!r}")
            endpoint_url = f"https://{account_id}.r2.cloudflarestorage.com"
        if public_url is not None and not public_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"r2 public_url must be an http(s) URL, got {public_url!r}")
        super().__init__(
            bucket=bucket,
            region="auto",
            endpoint_url=endpoint_url,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            upload_concurrency=upload_concurrency,
            list_page_size=list_page_size,
            addressing_style="path",
            engine=engine,
        )
        self.public_url = public_url

    def public_url_for(self, key: str) -> str:
        """The CDN URL of ``key`` under ``public_url`` (for public buckets; never signed)."""
        from cloudrift.storage.base import validate_key

        validate_key(key)
        if self.public_url is None:
            raise ConfigurationError("r2 storage: set public_url to build public links")
        return f"{self.public_url.rstrip('/')}/{quote(key, safe='/')}"


__all__ = ["R2Storage", "S3Storage"]
