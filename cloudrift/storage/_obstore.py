"""The obstore engine: data-plane operations of ``s3`` / ``r2`` / ``azure_blob`` / ``gcs``
on obstore's Rust stores (``S3Store``, ``AzureStore``, ``GCSStore``).

``get_storage(provider, ..., engine="obstore")`` keeps the provider class (options, auth,
repr, errors) and sends upload, download (whole and ranged), ``download_stream``,
``upload_stream``, head, exists, delete and listing through :class:`ObstoreEngine`.
What obstore cannot do the way the contract needs (copy with SSE options, presigned
URLs, conditional writes, GCS generation preconditions and CMEK writes, aborting stale
multipart uploads, ``health_check``) stays on the provider's SDK client, which is built
only when one of those is first used.

Credentials come from the SDK engine's own auth code, never a second auth stack: S3
static keys are handed to the store as they are; every other AWS method (default chain,
profile, assumed role) is resolved by :class:`~cloudrift.core.aws.SyncAwsCredentials` in
a worker thread behind obstore's credential-provider callback, so refreshing credentials
keep refreshing. Azure tokens come from the azure-identity credential the SDK engine
builds, GCS tokens from gcloud-aio-auth's ``Token``, both behind the same callback.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from cloudrift.core.exceptions import (
    BucketNotFoundError,
    ConfigurationError,
    InvalidRangeError,
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
)
from cloudrift.core.lifecycle import LazyClient
from cloudrift.core.secrets import Secret, redact, reveal
from cloudrift.storage.base import ObjectInfo

if TYPE_CHECKING:
    from cloudrift.core.aws import AwsCredentials

#: The engines a provider accepts: its SDK or obstore (the default of s3 and r2).
ENGINES = ("sdk", "obstore")
#: Attribute names obstore uses for standard headers; any other name is user metadata.
_STANDARD_ATTRIBUTES = frozenset(
    {
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Type",
        "Cache-Control",
        "Storage-Class",
    }
)
#: Fragments of obstore's messages for "the server could not be reached".
_UNREACHABLE = (
    "error sending request",
    "connection refused",
    "connection reset",
    "timed out",
    "dns error",
    "tcp connect",
)
#: Fragments naming a missing bucket or container.
_NO_BUCKET = ("NoSuchBucket", "ContainerNotFound")


_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _ambient_env_hidden(prefix: str) -> Iterator[None]:
    """Hide ``prefix*`` environment variables while a store is built.

    obstore's store constructors read every ``AWS_*`` (``AZURE_*``, ...) variable, so an
    ambient ``AWS_ENDPOINT`` or ``AWS_SESSION_TOKEN`` would silently join the options we
    chose strictly (PITFALLS: ambient variables shadowed the real identity). The default
    chain still sees them: it is resolved by botocore, not by obstore.
    """
    with _ENV_LOCK:
        hidden = {
            name: os.environ.pop(name) for name in list(os.environ) if name.startswith(prefix)
        }
        try:
            yield
        finally:
            os.environ.update(hidden)


def check_engine(where: str, engine: object) -> str:
    """``engine`` if it is one of :data:`ENGINES`; ConfigurationError otherwise."""
    if engine not in ENGINES:
        raise ConfigurationError(
            f"{where}: engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}"
        )
    return str(engine)


def check_client_options(
    *,
    max_pool_connections: int,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
) -> None:
    """The checks ``core.aws.aio_config`` makes, without importing botocore: the same
    options are refused at construction on either engine."""
    from cloudrift.core.validation import check_int, check_number

    check_int("max_pool_connections", max_pool_connections, at_least=1)
    check_number("connect_timeout", connect_timeout, above=0, unit="seconds")
    check_number("read_timeout", read_timeout, above=0, unit="seconds")
    check_int("max_attempts", max_attempts, at_least=1, hint="1 means no retry")


#: How long the exit hook lets obstore's threads finish handing results to Python.
EXIT_GRACE = 0.05
_exit_hook_installed = False


def _let_runtime_threads_finish() -> None:
    # obstore completes each awaitable from a tokio thread that calls into the event
    # loop (``call_soon_threadsafe``); the awaiting coroutine can resume before that
    # thread has taken the GIL back from the loop's wake-up write. If the interpreter
    # starts finalising first, CPython ends that thread with pthread_exit, which Rust
    # frames cannot unwind: the process aborts (SIGABRT, exit status -6) after it has
    # finished its work. Sleeping here, before finalisation, releases the GIL so any
    # such thread returns normally.
    time.sleep(EXIT_GRACE)


def _install_exit_hook() -> None:
    global _exit_hook_installed
    if not _exit_hook_installed:
        _exit_hook_installed = True
        atexit.register(_let_runtime_threads_finish)


def require_obstore(extra: str | None = None) -> Any:
    """Import obstore, or raise ConfigurationError naming the ``pip install`` (the
    provider's extra when obstore is its default engine, e.g. ``cloudrift[aws]``)."""
    try:
        import obstore
    except ImportError:
        hint = f'pip install "cloudrift[{extra or "obstore"}]"'
        raise ConfigurationError(
            f"engine='obstore' needs the obstore package: {hint} (or pass engine='sdk')"
        ) from None
    _install_exit_hook()
    return obstore


class _UploadCancelled(Exception):
    """Raised into obstore's multipart upload when the caller was cancelled."""


class ObstoreEngine:
    """One obstore store (built on first use) and the contract's operations on it.

    ``build_store`` returns the store; it runs once, on the first operation.
    """

    #: How long a cancelled ``upload_stream`` waits for obstore to abort its multipart
    #: upload (seconds) before the cancellation propagates.
    abort_wait = 5.0

    def __init__(
        self,
        *,
        where: str,
        bucket: str,
        endpoint: str,
        build_store: Callable[[], Any],
        secrets: Sequence[Secret | None],
        upload_concurrency: int,
        list_page_size: int,
        utf16_listing: bool = False,
        etag_from_version: bool = False,
        closers: list[Callable[[], Any]] | None = None,
        extra: str | None = None,
    ) -> None:
        self._obstore = require_obstore(extra)
        self._where = where
        self._bucket = bucket
        self._endpoint = endpoint
        self._build_store = build_store
        self._secrets = list(secrets)
        self._concurrency = upload_concurrency
        self._page_size = list_page_size
        self.utf16_listing = utf16_listing
        self._version_etag = etag_from_version
        #: Awaitables to run on close (e.g. an azure-identity credential's ``close``).
        self.closers = closers if closers is not None else []
        self._store: LazyClient[Any] = LazyClient(self._open)
        #: Cancelled streams whose abort outlived ``abort_wait`` (see put_stream).
        self._tasks: set[asyncio.Task[None]] = set()

    async def _open(self, stack: AsyncExitStack) -> Any:
        return self._build_store()

    async def aclose(self) -> None:
        """Drop the store (obstore closes its connection pool with it)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._store.aclose()
        closers, self.closers = self.closers, []
        for close in closers:
            await close()

    # ---------------------------------------------------------------- errors

    def _raise(
        self,
        exc: BaseException,
        key: str | None,
        exists_key: str | None = None,
        match_key: str | None = None,
    ) -> NoReturn:
        from obstore.exceptions import (
            AlreadyExistsError,
            NotFoundError,
            PermissionDeniedError,
            PreconditionError,
            UnauthenticatedError,
        )

        full = str(exc)
        # obstore's message ends in a multi-line debug dump with the request; the first
        # line says what happened.
        text = redact(full.splitlines()[0] if full else type(exc).__name__, self._secrets)
        # object_store nests its errors, each layer adding the same "Generic <Store> error: ".
        text = _REPEATED_PREFIX.sub(r"\1", text)
        if any(marker in full for marker in _NO_BUCKET):
            raise BucketNotFoundError(
                self._bucket, f"{self._where}: {self._bucket!r} does not exist; create it first"
            ) from exc
        if exists_key is not None and isinstance(exc, AlreadyExistsError | PreconditionError):
            raise ObjectExistsError(exists_key) from exc
        if match_key is not None and isinstance(exc, PreconditionError):
            raise PreconditionFailedError(match_key) from exc
        # obstore raises the builtin FileNotFoundError for a missing object.
        if isinstance(exc, NotFoundError | FileNotFoundError) and key is not None:
            raise ObjectNotFoundError(key) from exc
        if "416 Range Not Satisfiable" in full or "InvalidRange" in full:
            raise InvalidRangeError(f"range not satisfiable for {key!r}") from exc
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or "403 Forbidden" in full:
            raise StoragePermissionError(
                f"{self._where}: access denied to {self._bucket!r}"
                + (f", key {key!r}" if key else "")
                + f" ({text}); check the credentials and the bucket policy"
            ) from exc
        lowered = full.lower()
        if any(marker in lowered for marker in _UNREACHABLE) or " 5" in _status_part(full):
            raise StorageConnectionError(
                f"{self._where} could not reach {self._endpoint}: {text}"
            ) from exc
        raise StorageError(f"{self._where} error: {text}") from exc

    # ---------------------------------------------------------------- operations

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        content_type: str,
        metadata: dict[str, str],
        if_not_exists: bool,
    ) -> None:
        store = await self._store.get()
        try:
            await self._obstore.put_async(
                store,
                key,
                data,
                attributes={"Content-Type": content_type, **metadata},
                mode="create" if if_not_exists else "overwrite",
                use_multipart=False,
            )
        except Exception as exc:
            self._raise(exc, key, key if if_not_exists else None)

    async def put_stream(
        self,
        key: str,
        parts: AsyncIterator[bytes],
        content_type: str,
        metadata: dict[str, str],
        part_size: int,
        *,
        max_parts: int | None = None,
        on_orphan: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """A streamed upload: one PUT for at most one part, else obstore's multipart
        upload (aborted when the source fails, the caller is cancelled, or the stream
        needs more than ``max_parts`` parts, the service's limit).

        obstore aborts a failed multipart upload once; when that abort fails (the link
        is down), its error is the one place naming the upload, and ``on_orphan(upload
        id)`` is awaited with it (S3: the provider retries the abort in the background).
        """
        first = await anext(parts, None)
        second = await anext(parts, None) if first is not None else None
        if first is None or second is None:
            # One part or none: a single PUT (a multipart upload needs at least one part).
            await self.put(key, first or b"", content_type, metadata, False)
            return
        head = [first, second]
        del first, second

        async def all_parts() -> AsyncIterator[bytes]:
            while head:
                yield head.pop(0)
            count = 2
            async for part in parts:
                count += 1
                if max_parts is not None and count > max_parts:
                    # Fail before the service refuses part max_parts + 1: obstore then
                    # aborts the upload, and the caller learns what to change.
                    raise StorageError(
                        f"upload_stream of {key!r} needs more than {max_parts} parts of "
                        f"{part_size} bytes (the service's limit); pass a larger part_size"
                    )
                yield part

        store = await self._store.get()
        failure: list[BaseException] = []
        stop = asyncio.Event()
        source = all_parts()

        async def watched() -> AsyncIterator[bytes]:
            # Remember the source's own error: obstore aborts the multipart upload and
            # re-raises it wrapped; the caller must see the source's error itself. When
            # the caller is cancelled, ``stop`` makes the next pull fail the same way, so
            # obstore aborts the upload (it has no abort call of its own to make).
            try:
                while True:
                    pull = asyncio.ensure_future(anext(source, None))
                    halt = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait({pull, halt}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        halt.cancel()
                    if not pull.done():
                        pull.cancel()
                        await asyncio.gather(pull, return_exceptions=True)
                        raise _UploadCancelled
                    part = pull.result()
                    if part is None:
                        return
                    yield part
            except GeneratorExit:
                # obstore closed the source because its upload failed (its own error,
                # e.g. the link died, is the one to translate) or ended: not a source
                # error to hand back.
                raise
            except BaseException as exc:
                failure.append(exc)
                raise

        upload = asyncio.ensure_future(
            self._obstore.put_async(
                store,
                key,
                watched(),
                attributes={"Content-Type": content_type, **metadata},
                use_multipart=True,
                chunk_size=part_size,
                max_concurrency=self._concurrency,
            )
        )
        try:
            await asyncio.shield(upload)
        except asyncio.CancelledError:
            stop.set()
            # Give obstore's abort of the multipart upload a bounded time to run; past
            # it, the upload runs on (never dropped mid-abort, which would lose its id)
            # and its outcome is handled in the background.
            done, _ = await asyncio.wait({upload}, timeout=self.abort_wait)
            if done:
                await self._orphaned(upload, on_orphan)
            else:
                self._background(self._orphaned(upload, on_orphan))
            raise
        except Exception as exc:
            await self._orphaned(upload, on_orphan)
            if failure:
                raise failure[0] from None
            if orphaned_upload_id(str(exc)) is not None:
                # obstore reports the failed abort in place of the failure that caused it
                # (its message is a DELETE ?uploadId=...): say what happened to the upload.
                raise StorageConnectionError(
                    f"{self._where} lost its link to {self._endpoint} while streaming "
                    f"{key!r}; the upload failed and its multipart upload could not be "
                    "aborted either: the abort is retried in the background"
                ) from exc
            self._raise(exc, key)

    async def _orphaned(
        self, upload: asyncio.Future[Any], on_orphan: Callable[[str], Awaitable[None]] | None
    ) -> None:
        """Hand the id of a multipart upload whose abort failed to ``on_orphan``."""
        with contextlib.suppress(BaseException):
            await asyncio.shield(upload)
        exc = upload.exception() if upload.done() and not upload.cancelled() else None
        upload_id = None if exc is None else orphaned_upload_id(str(exc))
        if upload_id is not None and on_orphan is not None:
            await on_orphan(upload_id)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def get(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> bytes:
        store = await self._store.get()
        try:
            if start == 0 and end is None and if_match is None:
                result = await self._obstore.get_async(store, key)
            else:
                result = await self._obstore.get_async(
                    store, key, options=_get_options(start, end, if_match)
                )
            data = await result.bytes_async()
        except Exception as exc:
            self._raise(exc, key, match_key=key if if_match else None)
        return bytes(data)

    async def get_stream(
        self, key: str, start: int, end: int | None, chunk_size: int, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        store = await self._store.get()
        try:
            options: Any = _get_options(start, end, if_match)
            result = await self._obstore.get_async(store, key, options=options or None)
        except Exception as exc:
            self._raise(exc, key, match_key=key if if_match else None)
        # Chunks of about chunk_size: memory stays at a chunk or two whatever the size.
        stream = result.stream(min_chunk_size=chunk_size)
        while True:
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                # object_store resumes a broken body with a ranged GET only if that
                # answer carries the first one's ETag; else it raises the body error.
                # Say so when the object was replaced: a stream never mixes versions.
                if await self._replaced(store, key, result.meta):
                    raise StorageError(
                        f"{key!r} changed while it was being downloaded; download it again"
                    ) from exc
                self._raise(exc, key)
            yield chunk

    async def _replaced(self, store: Any, key: str, meta: Any) -> bool:
        """True if ``key`` is gone or now has another ETag / version than ``meta``."""
        try:
            now = await self._obstore.head_async(store, key)
        except FileNotFoundError:
            return True
        except Exception:
            return False  # unreachable too: the first error tells more
        return bool(
            now.get("e_tag") != meta.get("e_tag") or now.get("version") != meta.get("version")
        )

    async def head(self, key: str) -> ObjectInfo:
        store = await self._store.get()
        try:
            result = await self._obstore.get_async(store, key, options={"head": True})
        except Exception as exc:
            self._raise(exc, key)
        meta = result.meta
        attributes = result.attributes
        return ObjectInfo(
            key=key,
            size=meta["size"],
            etag=self._etag(meta),
            content_type=attributes.get("Content-Type"),
            last_modified=meta["last_modified"],
            metadata={k: v for k, v in attributes.items() if k not in _STANDARD_ATTRIBUTES},
        )

    def _etag(self, meta: Any) -> str | None:
        if self._version_etag:
            # GCS: the generation (None in listings, which do not carry it: no etag
            # beats one that if_match would refuse).
            version = meta.get("version")
            return str(version) if version else None
        return _etag(meta.get("e_tag"))

    async def exists(self, key: str) -> bool:
        store = await self._store.get()
        try:
            # obstore's own head: the same HEAD request without building a GetResult
            # and its attributes, which existence does not need.
            await self._obstore.head_async(store, key)
        except Exception as exc:
            try:
                self._raise(exc, key)
            except ObjectNotFoundError:
                return False
        return True

    async def delete(self, key: str) -> None:
        store = await self._store.get()
        try:
            await self._obstore.delete_async(store, key)
        except Exception as exc:
            try:
                self._raise(exc, key)
            except ObjectNotFoundError:
                return  # deleting a missing key is a no-op on every provider

    async def iter(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """ObjectInfo (no content type or metadata: listings do not carry them) for the
        keys starting with ``prefix``, in the store's listing order."""
        store = await self._store.get()
        # obstore lists by path segments ("a" lists "a/..."), while the contract's prefix
        # is a plain string prefix: list the folder holding the prefix, starting just
        # before it, and stop at the first key past it.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else None
        offset = _before(prefix)
        stream = self._obstore.list(store, prefix=folder, offset=offset, chunk_size=self._page_size)
        started = False
        while True:
            try:
                page = await stream.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                self._raise(exc, None)
            for meta in page:
                name = str(meta["path"])
                if name.startswith(prefix):
                    started = True
                    yield ObjectInfo(
                        key=name,
                        size=int(meta["size"]),
                        etag=self._etag(meta),
                        last_modified=meta.get("last_modified"),
                    )
                elif started and not self.utf16_listing:
                    return


def _range(start: int, end: int | None) -> Any:
    return {"offset": start} if end is None else (start, end)


def _get_options(start: int, end: int | None, if_match: str | None) -> dict[str, Any]:
    """obstore ``GetOptions``: the range (if any) and the quoted ETag to match."""
    options: dict[str, Any] = {}
    if start != 0 or end is not None:
        options["range"] = _range(start, end)
    if if_match is not None:
        options["if_match"] = f'"{if_match}"'
    return options


def _etag(value: object) -> str | None:
    return str(value).strip('"') or None if value else None


#: "Generic MicrosoftAzure error: Generic MicrosoftAzure error: ..." -> said once.
_REPEATED_PREFIX = re.compile(r"(Generic [\w ]+? error: )(?:\1)+")
#: object_store's message for a failed request: "Error performing <METHOD> <uri> in ...".
_FAILED_ABORT = re.compile(r"Error performing DELETE (\S+)")


def orphaned_upload_id(message: str) -> str | None:
    """The multipart upload id in the message of an obstore upload whose abort failed.

    obstore aborts a failed multipart upload itself and, when the abort fails too, raises
    the abort's error (a ``DELETE <object>?uploadId=...``) instead of the first one; no
    other of its errors names a DELETE with an upload id. None for any other message.
    """
    from urllib.parse import parse_qs, urlsplit

    found = _FAILED_ABORT.search(message)
    if found is None:
        return None
    ids = parse_qs(urlsplit(found.group(1)).query).get("uploadId")
    return ids[0] if ids else None


def _status_part(message: str) -> str:
    """The ``status code: NNN`` fragment of an obstore message (empty if none)."""
    marker = "status code: "
    at = message.find(marker)
    return "" if at < 0 else " " + message[at + len(marker) : at + len(marker) + 3]


def _before(prefix: str) -> str | None:
    """A string just before every key starting with ``prefix`` (obstore's ``offset`` lists
    keys strictly after it), or None for the empty prefix."""
    if not prefix:
        return None
    last = prefix[-1]
    return prefix[:-1] + chr(ord(last) - 1) if ord(last) > 0x20 else prefix[:-1] or None


# ------------------------------------------------------------------ S3 / R2


def s3_engine(
    *,
    where: str,
    bucket: str,
    region: str | None,
    endpoint_url: str | None,
    creds: AwsCredentials,
    addressing_style: str,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    sse: str | None,
    sse_kms_key_id: str | None,
    upload_concurrency: int,
    list_page_size: int,
    max_pool_connections: int = 64,
) -> ObstoreEngine:
    """An engine on an ``S3Store`` configured from an S3 backend's own options (the
    default engine of ``s3`` / ``r2``: a missing obstore names the ``aws`` extra)."""

    def build() -> Any:
        from obstore.store import S3Store

        from cloudrift.core.aws import STATIC_KEYS, refuse_in_process_moto

        # moto's mock_aws patches botocore only: obstore would go to the real endpoint.
        refuse_in_process_moto(where)
        config: dict[str, Any] = {"region": region or "us-east-1"}
        if endpoint_url:
            config["endpoint"] = endpoint_url
        # object_store defaults to path-style requests; "auto" keeps that with an
        # endpoint (emulators, R2) and uses virtual hosts on AWS itself.
        config["virtual_hosted_style_request"] = addressing_style == "virtual" or (
            addressing_style == "auto" and not endpoint_url
        )
        if sse is not None:
            config["server_side_encryption"] = sse
        if sse_kms_key_id is not None:
            config["sse_kms_key_id"] = sse_kms_key_id
        provider: Any = None
        if creds.kind == STATIC_KEYS:
            config["access_key_id"] = creds.access_key_id
            config["secret_access_key"] = reveal(creds.secret_access_key)
            if creds.session_token is not None:
                config["token"] = reveal(creds.session_token)
        else:
            provider = _aws_credential_provider(creds, region)
        # The TypedDicts of obstore's stubs are not importable at run time; plain dicts.
        store: Any = S3Store
        options = _client_options(endpoint_url, connect_timeout, read_timeout)
        # obstore (reqwest) caps idle pooled connections, not open ones.
        options["pool_max_idle_per_host"] = str(max_pool_connections)
        with _ambient_env_hidden("AWS_"):
            return store(
                bucket,
                config=config,
                client_options=options,
                retry_config=_retry_config(max_attempts, read_timeout),
                credential_provider=provider,
            )

    return ObstoreEngine(
        where=where,
        bucket=bucket,
        endpoint=endpoint_url or "S3",
        build_store=build,
        secrets=creds.secrets,
        upload_concurrency=upload_concurrency,
        list_page_size=list_page_size,
        extra="aws",
    )


def _aws_credential_provider(creds: AwsCredentials, region: str | None) -> Any:
    """obstore's credential callback over :class:`SyncAwsCredentials` (default chain,
    profile, assumed role refreshed before expiry)."""
    from cloudrift.core.aws import SyncAwsCredentials

    resolver = SyncAwsCredentials(creds, region=region)

    async def provide() -> dict[str, Any]:
        frozen, expiry = await asyncio.to_thread(_frozen, resolver)
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": expiry,
        }

    return provide


def _frozen(resolver: Any) -> tuple[Any, datetime | None]:
    frozen = resolver.frozen()
    # Refreshable credentials (assumed role, instance role) carry their expiry; obstore
    # asks again before it, and botocore refreshes them then. Static ones never expire.
    expiry = getattr(resolver._resolved, "_expiry_time", None)
    if not isinstance(expiry, datetime):
        return frozen, None
    return frozen, expiry.astimezone(UTC) - timedelta(minutes=5)


def _client_options(
    endpoint_url: str | None, connect_timeout: float, read_timeout: float
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=connect_timeout),
        "read_timeout": timedelta(seconds=read_timeout),
        # obstore's default 30 s cap on a whole request would cut big transfers short;
        # read_timeout already bounds a stalled one.
        "timeout": timedelta(days=1),
    }
    if endpoint_url and endpoint_url.startswith("http://"):
        options["allow_http"] = True
    return options


def _retry_config(max_attempts: int, read_timeout: float) -> dict[str, Any]:
    # Like botocore's standard mode: about 1 s, then 2 s between attempts.
    return {
        "max_retries": max_attempts - 1,
        "backoff": {
            "init_backoff": timedelta(milliseconds=500),
            "max_backoff": timedelta(seconds=20),
            "base": 2,
        },
        "retry_timeout": timedelta(seconds=max_attempts * (read_timeout + 20)),
    }


# ------------------------------------------------------------------ Azure Blob

#: The scope of a bearer token for Azure Storage.
_AZURE_SCOPE = "https://storage.azure.com/.default"


def azure_engine(
    *,
    where: str,
    container: str,
    endpoint: str,
    auth_method: str,
    connection_string: Secret | None,
    account_key: Secret | None,
    sas_token: Secret | None,
    credential: Callable[[], Any],
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    ca_bundle: str | None,
    upload_concurrency: int,
    list_page_size: int,
    secrets: Sequence[Secret | None],
) -> ObstoreEngine:
    """An engine on an ``AzureStore`` configured from an azure_blob backend's options.

    ``endpoint`` is the blob endpoint the SDK engine uses (account URL, the connection
    string's ``BlobEndpoint``, or the public one); ``credential`` builds the
    azure-identity credential for managed identity / service principal auth.
    """
    closers: list[Callable[[], Any]] = []

    def build() -> Any:
        from obstore.store import AzureStore

        parts = dict(
            item.split("=", 1)
            for item in (reveal(connection_string) or "").split(";")
            if "=" in item
        )
        config: dict[str, Any] = {
            "account_name": parts.get("AccountName") or _azure_account(endpoint),
            "endpoint": endpoint,
        }
        provider: Any = None
        key = parts.get("AccountKey") or reveal(account_key)
        sas = parts.get("SharedAccessSignature") or reveal(sas_token)
        if key:
            config["access_key"] = key
        elif sas:
            config["sas_key"] = sas.lstrip("?")
        elif auth_method in ("managed identity", "service principal"):
            cred = credential()
            closers.append(cred.close)

            async def provide() -> dict[str, Any]:
                token = await cred.get_token(_AZURE_SCOPE)
                return {
                    "token": token.token,
                    "expires_at": datetime.fromtimestamp(token.expires_on, UTC),
                }

            provider = provide
        options = _client_options(endpoint, connect_timeout, read_timeout)
        if ca_bundle is not None:
            with open(ca_bundle, encoding="ascii") as pem:
                options["root_certificate"] = pem.read()
        store: Any = AzureStore
        with _ambient_env_hidden("AZURE_"):
            return store(
                container,
                config=config,
                client_options=options,
                retry_config=_retry_config(max_attempts, read_timeout),
                credential_provider=provider,
            )

    return ObstoreEngine(
        where=where,
        bucket=container,
        endpoint=endpoint,
        build_store=build,
        secrets=secrets,
        upload_concurrency=upload_concurrency,
        list_page_size=list_page_size,
        utf16_listing=True,
        closers=closers,
        extra="azure",
    )


def _azure_account(endpoint: str) -> str:
    """The account name in a blob endpoint: the first label of the host, or for an
    emulator's IP-and-port URL (``http://127.0.0.1:10000/devstoreaccount1``) the path."""
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    host = url.hostname or ""
    if host.replace(".", "").isdigit() or host == "localhost" or ":" in host:
        return url.path.strip("/").split("/")[0]
    return host.split(".")[0]


# ------------------------------------------------------------------ GCS

#: The OAuth scope of a GCS data-plane token.
_GCS_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"


def gcs_engine(
    *,
    where: str,
    bucket: str,
    endpoint: str,
    emulator: bool,
    credentials_path: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    list_page_size: int,
) -> ObstoreEngine:
    """An engine on a ``GCSStore`` (GCS's XML API at ``endpoint``) configured from a gcs
    backend's options.

    Tokens come from gcloud-aio-auth's ``Token`` (the SDK engine's auth: a service-account
    file or application default credentials, refreshed before expiry) behind obstore's
    credential callback. An emulator gets a placeholder token, as gcloud-aio sends none.
    """
    closers: list[Callable[[], Any]] = []

    def build() -> Any:
        from obstore.store import GCSStore

        config: dict[str, Any] = {"base_url": endpoint}
        provider: Any = None
        if emulator:
            config["bearer_token"] = "emulator"
        else:
            from gcloud.aio.auth import Token

            # Built before the GOOGLE_* variables are hidden: application default
            # credentials read GOOGLE_APPLICATION_CREDENTIALS.
            token = Token(service_file=credentials_path, scopes=[_GCS_SCOPE])
            closers.append(token.close)

            async def provide() -> dict[str, Any]:
                value = await token.get()
                return {
                    "token": value,
                    "expires_at": datetime.fromtimestamp(token.access_token_refresh_after, UTC),
                }

            provider = provide
        store: Any = GCSStore
        with _ambient_env_hidden("GOOGLE_"):
            return store(
                bucket,
                config=config,
                client_options=_client_options(endpoint, connect_timeout, read_timeout),
                retry_config=_retry_config(max_attempts, read_timeout),
                credential_provider=provider,
            )

    return ObstoreEngine(
        where=where,
        bucket=bucket,
        endpoint=endpoint,
        build_store=build,
        secrets=(),
        # Like the SDK engine: parts of a streamed upload in flight at once.
        upload_concurrency=2,
        list_page_size=list_page_size,
        # The generation is the gcs ETag on either engine: if_match compares it.
        etag_from_version=True,
        closers=closers,
    )


__all__ = [
    "ENGINES",
    "ObstoreEngine",
    "azure_engine",
    "check_client_options",
    "check_engine",
    "gcs_engine",
    "orphaned_upload_id",
    "require_obstore",
    "s3_engine",
]
