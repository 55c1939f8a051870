"""Local filesystem storage: one file per key under ``root_dir``.

* Writes are atomic: data goes to a temporary file created (``O_EXCL``) beside the target,
  named ``.cloudrift-tmp-...``, and is renamed into place, so a reader never sees a
  half-written object (a rename within one folder also avoids the kernel's filesystem-wide
  lock on cross-folder renames). Such names are reserved: a key segment starting with
  ``.cloudrift-tmp-`` is refused, and listings never show one. A writer killed mid-write
  leaves only its temporary file; opening a store removes temporary files not modified
  for ``temp_file_max_age`` seconds (default one hour), walking the folder tree once.
* A key can never resolve outside ``root_dir``: key validation refuses ``..`` and
  absolute keys, and every operation checks the key's own path components (one
  ``lstat`` each, the root having been resolved at open) so that a symlink inside the
  root cannot lead out of it; only a path that holds a symlink is resolved with
  ``realpath`` and must stay under the root. A plain (unconditional) put checks the
  key's folders only: its rename replaces a symlink at the key's own name, never
  writing through it.
* File work runs on one process-wide pool of up to 32 threads, one hop per operation
  (see ``_file_threads``), not on the event loop's default executor.
* Conditional writes (``if_match``) compare the ETag and rename under an exclusive
  ``flock`` on one of 256 lock files in ``<root>/.cloudrift/locks`` (chosen by the key's
  hash), so of two writers, in one process or two, holding the same ETag exactly one
  wins. Unconditional writes do not take the lock (last writer wins, as on S3).
* Content type (when it differs from the one guessed from the key) and user metadata
  live in a JSON sidecar under ``<root>/.cloudrift/meta``; keys starting with
  ``.cloudrift/`` are reserved.
* With ``base_url`` set, ``presigned_url`` issues HMAC-SHA256-signed, expiring URLs
  (``{base_url}/{quoted key}?method=GET&expires=<unix>&signature=<hex>``) that an HTTP
  route (``cloudrift_fastapi``) checks with :meth:`LocalStorage.verify_presigned`;
  ``presigned_upload_url`` adds signed upload limits (a size cap, create-only).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import itertools
import json
import logging
import mimetypes
import os
import secrets
import shutil
import stat
import time
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from cloudrift.core.exceptions import (
    ConfigurationError,
    FeatureNotSupportedError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidRangeError,
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageError,
    StoragePermissionError,
)
from cloudrift.core.operation import operation
from cloudrift.core.secrets import Secret, secret
from cloudrift.core.validation import is_int, is_number
from cloudrift.storage import _file_threads
from cloudrift.storage.base import (
    DEFAULT_CONTENT_TYPE,
    ObjectInfo,
    PresignMethod,
    Storage,
    guess_content_type,
    validate_key,
)

log = logging.getLogger("cloudrift.storage.local")
_RESERVED = ".cloudrift"
_TMP_MARK = ".cloudrift-tmp-"
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_PAGE = 500
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
# Threads start only when no idle one is free, so a store doing 8 operations at once
# runs 8; the bound keeps a burst of thousands from starting thousands.
_THREADS = 32


def _etag(st: os.stat_result) -> str:
    # The inode too: every write renames a new file into place, so two writes within one
    # timestamp tick (a few ms on Linux) of the same size still get different ETags.
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _guess(key: str) -> str:
    guessed, _ = mimetypes.guess_type(key, strict=False)
    return guessed or DEFAULT_CONTENT_TYPE


class LocalStorage(Storage):
    """Objects as files under ``root_dir``; optional signed URLs served from ``base_url``."""

    provider = "local"
    backend_name = "local storage"

    def __init__(
        self,
        *,
        root_dir: str | os.PathLike[str],
        base_url: str | None = None,
        signing_key: str | Secret | None = None,
        temp_file_max_age: float = 3600.0,
    ) -> None:
        super().__init__()
        if root_dir is None or str(root_dir) == "":
            raise ConfigurationError("local storage needs root_dir: the folder to keep objects in")
        if base_url is not None and not (
            isinstance(base_url, str) and base_url.startswith(("http://", "https://", "/"))
        ):
            raise ConfigurationError(
                f"local storage base_url must be an http(s) URL or an absolute path, "
                f"got {base_url!r}"
            )
        if signing_key is not None and not secret(signing_key):
            raise ConfigurationError("local storage signing_key must not be empty")
        self.root_dir = Path(root_dir).expanduser().absolute()
        try:
            self.root_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"local storage cannot create root_dir {str(self.root_dir)!r}: {exc.strerror}"
            ) from exc
        self._root = os.path.realpath(self.root_dir)
        self._prefix = self._root + os.sep
        self._tmp = os.path.join(self._root, _RESERVED, "tmp")
        self._meta = os.path.join(self._root, _RESERVED, "meta")
        self._locks = os.path.join(self._root, _RESERVED, "locks")
        os.makedirs(self._tmp, exist_ok=True)
        os.makedirs(self._meta, exist_ok=True)
        os.makedirs(self._locks, exist_ok=True)
        if not is_number(temp_file_max_age) or temp_file_max_age < 0:
            raise ConfigurationError(
                "local storage temp_file_max_age must be a non-negative number of seconds, "
                f"got {temp_file_max_age!r}"
            )
        self._tmp_prefix = secrets.token_hex(6) + "-"
        self._tmp_count = itertools.count()
        self._remove_stale_temp_files(temp_file_max_age)
        self.base_url = base_url
        self.supports_presigned_url = base_url is not None
        self._signing_key: Secret = secret(signing_key) or Secret(secrets.token_hex(32))

    def _location(self) -> str:
        return f"root_dir={str(self.root_dir)!r}"

    def _remove_stale_temp_files(self, max_age: float) -> int:
        """Delete temporary files not modified for ``max_age`` seconds: leftovers of
        writers that crashed or were killed mid-write (a live writer touches its file
        with every write). Object temp files sit beside their targets; sidecar temp files
        in ``.cloudrift/tmp``. Returns how many were removed."""
        cutoff = time.time() - max_age
        removed = 0

        def stale(entry: os.DirEntry[str]) -> bool:
            return (
                entry.is_file(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_mtime <= cutoff
            )

        folders = [self._tmp, self._root]
        while folders:
            folder = folders.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed meanwhile
            for entry in entries:
                try:
                    if folder == self._tmp or entry.name.startswith(_TMP_MARK):
                        if stale(entry):
                            os.unlink(entry.path)
                            removed += 1
                    elif entry.is_dir(follow_symlinks=False) and not (
                        folder == self._root and entry.name == _RESERVED
                    ):
                        folders.append(entry.path)
                except FileNotFoundError:
                    continue  # another process cleaned it up first
        if removed:
            log.info(
                "local storage removed %d stale temporary file(s) under %s", removed, self._root
            )
        return removed

    # ------------------------------------------------------------------ paths

    def _path(self, key: str, *, whole: bool = True) -> str:
        """The file for ``key``; InvalidKeyError for reserved keys, StoragePermissionError
        for paths leaving the root. ``whole=False`` checks the key's folders only: enough
        for a plain put, whose rename replaces a symlink at the key's own name instead of
        following it."""
        if key == _RESERVED or key.startswith(_RESERVED + "/"):
            raise InvalidKeyError(
                key, f"keys under {_RESERVED + '/'!r} are reserved by local storage"
            )
        if os.sep != "/" and os.sep in key:
            raise InvalidKeyError(key, f"a local storage key must not contain {os.sep!r}")
        if _TMP_MARK in key and (key.startswith(_TMP_MARK) or "/" + _TMP_MARK in key):
            raise InvalidKeyError(
                key, f"local storage reserves names starting with {_TMP_MARK!r} for its temp files"
            )
        # Concatenation, not os.path.join: a validated key has no empty, '.' or '..'
        # segment and no leading '/', and this runs on every operation.
        path = self._prefix + (key if os.sep == "/" else key.replace("/", os.sep))
        self._check_inside(key, path, whole)
        return path

    def _check_inside(self, key: str, path: str, whole: bool = True) -> None:
        """StoragePermissionError if a symlink among ``key``'s components (its folders only
        unless ``whole``) leads out of the root. The root was resolved at open, so only
        the key's own components can be symlinks: an ``lstat`` of each says whether
        ``realpath`` would change the path, for a fraction of ``realpath``'s cost (it
        lstats every component from ``/``, in Python)."""
        segments = key.split("/")
        if not whole:
            segments.pop()
        current = self._root
        for segment in segments:
            current = current + os.sep + segment
            try:
                mode = os.lstat(current).st_mode
            except OSError:
                # Missing (nothing deeper exists either) or not reachable: the operation
                # itself will fail on the same component, with nothing created outside.
                return
            if stat.S_ISLNK(mode):
                real = os.path.realpath(path)
                if not real.startswith(self._prefix):
                    raise StoragePermissionError(
                        f"key {key!r} resolves outside root_dir through a symbolic link; "
                        "refusing it"
                    )
                return

    def _meta_path(self, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self._meta}{os.sep}{digest[:2]}{os.sep}{digest}.json"

    def _new_tmp(self) -> str:
        """A sidecar temp file name under ``.cloudrift/tmp``."""
        return os.path.join(self._tmp, self._tmp_name())

    def _tmp_name(self) -> str:
        # A per-store random part and a counter: unique without a getrandom per write
        # (the files are opened with O_EXCL anyway).
        return f"{_TMP_MARK}{self._tmp_prefix}{next(self._tmp_count):x}"

    def _create_beside(self, path: str, key: str) -> tuple[str, int]:
        """Create (``O_EXCL``) a temp file in ``path``'s folder and return its name and
        descriptor. The folder is created only when the open says it is missing."""
        folder = path[: path.rindex(os.sep)]
        for attempt in range(3):
            tmp = folder + os.sep + self._tmp_name()
            try:
                return tmp, os.open(tmp, _TMP_FLAGS, 0o666)
            except FileNotFoundError:
                # First key under this folder (or a concurrent delete just pruned it).
                if attempt == 2:
                    raise
                try:
                    os.makedirs(folder, exist_ok=True)
                except (FileExistsError, NotADirectoryError) as exc:
                    raise self._conflict(key) from exc
                # Re-check after creating folders: a symlinked folder must not lead out.
                self._check_inside(key, path, whole=False)
            except NotADirectoryError as exc:
                raise self._conflict(key) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_tmp(self, data: Any, path: str, key: str) -> str:
        """A new temp file beside ``path`` holding ``data`` (raw syscalls, no buffering)."""
        tmp, fd = self._create_beside(path, key)
        try:
            size = data.nbytes if isinstance(data, memoryview) else len(data)
            written = os.write(fd, data)
            if written < size:  # a short write (rare on a local file): write the rest
                with memoryview(data) as raw, raw.cast("B") as view:
                    while written < size:
                        written += os.write(fd, view[written:])
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    # ----------------------------------------------------------- sync workers

    def _write_meta(self, key: str, content_type: str, metadata: dict[str, str]) -> None:
        mpath = self._meta_path(key)
        if not metadata and content_type == _guess(key):
            try:  # noqa: SIM105 - on every plain put: cheaper than a suppress() block
                os.unlink(mpath)
            except FileNotFoundError:
                pass
            return
        os.makedirs(os.path.dirname(mpath), exist_ok=True)
        tmp = self._new_tmp()
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"key": key, "content_type": content_type, "metadata": metadata}, fh)
        os.replace(tmp, mpath)

    def _read_meta(self, key: str) -> tuple[str, dict[str, str]]:
        try:
            with open(self._meta_path(key), encoding="utf-8") as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            return _guess(key), {}
        return str(doc["content_type"]), dict(doc["metadata"])

    def _place(self, tmp: str, path: str, key: str, if_not_exists: bool) -> None:
        """Rename ``tmp`` (beside ``path``) to ``path``; a hard link for a conditional
        create (atomic, never overwrites). ``tmp`` is gone once this returns."""
        for attempt in range(2):
            try:
                if if_not_exists:
                    os.link(tmp, path)
                    os.unlink(tmp)
                else:
                    os.replace(tmp, path)
                return
            except FileExistsError as exc:
                if if_not_exists and os.path.isfile(path):
                    raise ObjectExistsError(key) from exc
                if attempt == 0 and self._remove_empty_folder(path):
                    continue
                raise self._conflict(key) from exc
            except IsADirectoryError as exc:
                if attempt == 0 and self._remove_empty_folder(path):
                    continue
                raise self._conflict(key) from exc
            except NotADirectoryError as exc:
                raise self._conflict(key) from exc

    @staticmethod
    def _remove_empty_folder(path: str) -> bool:
        """Remove ``path`` if it is an empty folder (left by a write that failed after
        creating it), so a key of that name can be stored; False if it holds anything."""
        try:
            os.rmdir(path)
        except OSError:
            return False
        return True

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Any:
        """Hold an exclusive ``flock`` for ``key`` (one of 256 lock files, so their number
        stays bounded); released when the block ends or the process dies."""
        stripe = hashlib.sha256(key.encode()).hexdigest()[:2]
        fd = os.open(os.path.join(self._locks, stripe), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _check_match(self, key: str, path: str, etag: str) -> None:
        """PreconditionFailedError unless the object at ``path`` has ETag ``etag``."""
        try:
            st = os.stat(path)
        except _MISSING:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise PreconditionFailedError(
                key, f"no object {key!r} to match (if_match needs an existing object)"
            )
        if _etag(st) != etag:
            raise PreconditionFailedError(key)

    def _place_if_match(
        self, tmp: str, path: str, key: str, etag: str, content_type: str, metadata: dict[str, str]
    ) -> None:
        """Check the ETag and rename ``tmp`` into place as one step under the key's lock."""
        with self._key_lock(key):
            self._check_match(key, path, etag)
            self._write_meta(key, content_type, metadata)
            self._place(tmp, path, key, False)

    def _delete_if_match_sync(self, key: str, etag: str) -> None:
        with self._key_lock(key):
            self._check_match(key, self._path(key), etag)
            self._delete_sync(key)

    def _conflict(self, key: str) -> StorageError:
        return StorageError(
            f"key {key!r} conflicts with an existing key in local storage: a key cannot be "
            "both an object and a prefix of other keys (e.g. 'a' and 'a/b') on a filesystem"
        )

    def _start_beside(self, key: str) -> tuple[str, str, int]:
        """``key``'s path, and a new temp file beside it (name and descriptor)."""
        path = self._path(key)
        return (path, *self._create_beside(path, key))

    def _finish(
        self, tmp: str, path: str, key: str, content_type: str, metadata: dict[str, str]
    ) -> None:
        """Write (or drop) the sidecar, then rename ``tmp`` into place."""
        self._write_meta(key, content_type, metadata)
        self._place(tmp, path, key, False)

    def _exists_sync(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def _put_sync(
        self,
        key: str,
        data: Any,
        content_type: str,
        metadata: dict[str, str],
        cond: bool,
        if_match: str | None = None,
    ) -> None:
        # A conditional write reads the current object (link/stat follow a symlink there):
        # check the whole path. A plain one only renames over the key's name.
        path = self._path(key, whole=cond or if_match is not None)
        tmp = self._write_tmp(data, path, key)
        placed = False
        try:
            if if_match is not None:
                self._place_if_match(tmp, path, key, if_match, content_type, metadata)
                placed = True
            elif cond:
                self._place(tmp, path, key, True)
                placed = True
                self._write_meta(key, content_type, metadata)
            else:
                self._finish(tmp, path, key, content_type, metadata)
                placed = True
        finally:
            if not placed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _open(self, key: str, if_match: str | None = None) -> BinaryIO:
        """The object's file, opened; with ``if_match``, only if it is that version.

        The ETag is read from the open descriptor: every write renames a new file into
        place, so the file read is the version checked, whatever replaces it meanwhile.
        """
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except _MISSING:
            raise ObjectNotFoundError(key) from None
        if if_match is not None and _etag(os.fstat(fh.fileno())) != if_match:
            fh.close()
            raise PreconditionFailedError(key)
        return fh

    def _get_sync(self, key: str, start: int, end: int | None, if_match: str | None) -> bytes:
        with self._open(key, if_match) as fh:
            size = os.fstat(fh.fileno()).st_size
            if start >= size and (start > 0 or size == 0):
                raise InvalidRangeError(f"range start {start} is past the end of {key!r}")
            if start:
                fh.seek(start)
            stop = size if end is None else min(end, size)
            return fh.read(stop - start)

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        content_type, metadata = self._read_meta(key)
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=_etag(st),
            content_type=content_type,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            metadata=metadata,
        )

    def _head_sync(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = os.stat(path)
        except _MISSING:
            raise ObjectNotFoundError(key) from None
        if not os.path.isfile(path):
            raise ObjectNotFoundError(key)
        return self._info(key, st)

    def _delete_sync(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except _MISSING:
            return
        except PermissionError as exc:
            if os.path.isdir(path):  # a prefix, not an object: nothing to delete
                return
            raise StoragePermissionError(f"not allowed to delete {key!r}: {exc.strerror}") from exc
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._meta_path(key))
        # Prune folders left empty so they do not block a later key of the same name.
        parent = os.path.dirname(path)
        while parent != self._root:
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)

    def _scan(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, sorted by UTF-8 bytes."""
        folder, _, _ = prefix.rpartition("/")
        start = os.path.join(self._root, *folder.split("/")) if folder else self._root
        real = os.path.realpath(start)
        if real != start and not real.startswith(self._root + os.sep):
            return []
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = os.path.relpath(dirpath, self._root)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            if base == "":
                dirnames[:] = [d for d in dirnames if d != _RESERVED]
            # Prune folders that cannot hold a matching key.
            dirnames[:] = [
                d
                for d in dirnames
                if (base + d + "/").startswith(prefix) or prefix.startswith(base + d + "/")
            ]
            keys.extend(
                base + f
                for f in filenames
                if (base + f).startswith(prefix) and not f.startswith(_TMP_MARK)
            )
        keys.sort(key=lambda k: k.encode("utf-8"))
        return keys

    def _stat_page(self, keys: list[str]) -> list[ObjectInfo]:
        out = []
        for key in keys:
            path = os.path.join(self._root, *key.split("/"))
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    real = os.path.realpath(path)
                    if not real.startswith(self._root + os.sep):
                        continue  # a symlink leading out of the root is not an object
                    st = os.stat(real)
            except _MISSING:
                continue  # deleted since the scan
            out.append(self._info(key, st))
        return out

    def _copy_sync(self, src: str, dst: str) -> None:
        spath = self._path(src)
        dpath = self._path(dst)
        try:
            source = open(spath, "rb")  # noqa: SIM115 - closed below
        except _MISSING:
            raise ObjectNotFoundError(src) from None
        placed = False
        with source:
            tmp, fd = self._create_beside(dpath, dst)
            try:
                with open(fd, "wb") as target:
                    shutil.copyfileobj(source, target, 1024 * 1024)
                content_type, metadata = self._read_meta(src)
                self._write_meta(dst, content_type, metadata)
                self._place(tmp, dpath, dst, False)
                placed = True
            finally:
                if not placed:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)

    # ------------------------------------------------------------------ hooks

    async def _run(self, func: Any, *args: Any) -> Any:
        try:
            # No context copy (unlike asyncio.to_thread): the workers read no contextvars.
            return await _file_threads.shared(_THREADS).submit(func, *args)
        except PermissionError as exc:
            raise StoragePermissionError(
                f"local storage is not allowed to access a file under {str(self.root_dir)!r}: "
                f"{exc.strerror}; check the folder's permissions"
            ) from exc
        except OSError as exc:
            if isinstance(exc, ObjectNotFoundError | StorageError):
                raise
            if exc.errno == errno.ENAMETOOLONG:
                raise InvalidKeyError(
                    "...", "a path segment is too long for this filesystem"
                ) from exc
            raise StorageError(f"local storage I/O error: {exc.strerror or exc}") from exc

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
        await self._run(self._put_sync, key, data, content_type, metadata, if_not_exists, if_match)

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
        path, tmp, fd = await self._run(self._start_beside, key)
        fh = os.fdopen(fd, "wb")  # wraps the descriptor: nothing blocks here
        placed = False
        try:
            try:
                async for part in parts:
                    await self._run(fh.write, part)
            finally:
                await self._run(fh.close)
            if if_match is not None:
                await self._run(
                    self._place_if_match, tmp, path, key, if_match, content_type, metadata
                )
            else:
                await self._run(self._finish, tmp, path, key, content_type, metadata)
            placed = True
        finally:
            if not placed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    async def _get(
        self, key: str, start: int, end: int | None, *, if_match: str | None = None
    ) -> bytes:
        data: bytes = await self._run(self._get_sync, key, start, end, if_match)
        return data

    async def _get_stream(
        self, key: str, start: int, end: int | None, chunk_size: int, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        fh: BinaryIO = await self._run(self._open, key, if_match)
        try:
            size = os.fstat(fh.fileno()).st_size
            if start >= size and (start > 0 or size == 0):
                raise InvalidRangeError(f"range start {start} is past the end of {key!r}")
            stop = size if end is None else min(end, size)
            if start:
                fh.seek(start)
            remaining = stop - start
            while remaining > 0:
                chunk = await self._run(fh.read, min(chunk_size, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            fh.close()

    async def _head(self, key: str) -> ObjectInfo:
        info: ObjectInfo = await self._run(self._head_sync, key)
        return info

    async def _exists(self, key: str) -> bool:
        found: bool = await self._run(self._exists_sync, key)
        return found

    async def _delete(self, key: str) -> None:
        await self._run(self._delete_sync, key)

    async def _delete_if_match(self, key: str, etag: str) -> None:
        await self._run(self._delete_if_match_sync, key, etag)

    async def _iter(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        keys: list[str] = await self._run(self._scan, prefix)
        for i in range(0, len(keys), _PAGE):
            page: list[ObjectInfo] = await self._run(self._stat_page, keys[i : i + _PAGE])
            for info in page:
                yield info

    async def _copy(self, src: str, dst: str) -> None:
        await self._run(self._copy_sync, src, dst)

    async def _health(self) -> bool:
        usable: bool = await self._run(os.access, self._root, os.W_OK | os.X_OK)
        return usable

    # ------------------------------------------------------------ signed URLs

    def _signature(
        self,
        key: str,
        method: str,
        expires: int,
        content_type: str | None,
        max_size: int | None = None,
        if_not_exists: bool = False,
    ) -> str:
        message = (
            f"{method}\n{key}\n{expires}\n{content_type or ''}\n{max_size or ''}\n"
            f"{'create-only' if if_not_exists else ''}"
        ).encode()
        return hmac.new(self._signing_key.reveal().encode(), message, hashlib.sha256).hexdigest()

    def _signed_url(
        self,
        key: str,
        method: str,
        expires: int,
        content_type: str | None,
        max_size: int | None = None,
        if_not_exists: bool = False,
    ) -> str:
        if self.base_url is None:
            raise FeatureNotSupportedError(
                "local storage issues presigned URLs only when base_url is set: pass "
                "base_url='http://host:port/files' (the route that serves them)"
            )
        self._path(key)
        sig = self._signature(key, method, expires, content_type, max_size, if_not_exists)
        url = (
            f"{self.base_url.rstrip('/')}/{quote(key, safe='/')}"
            f"?method={method}&expires={expires}&signature={sig}"
        )
        if content_type is not None:
            url += f"&content_type={quote(content_type, safe='')}"
        if max_size is not None:
            url += f"&max_size={max_size}"
        if if_not_exists:
            url += "&if_not_exists=1"
        return url

    async def _presign(
        self, key: str, expires_in: int, method: PresignMethod, content_type: str | None
    ) -> str:
        return self._signed_url(key, method, int(time.time()) + expires_in, content_type)

    @operation
    async def presigned_upload_url(
        self,
        key: str,
        *,
        expires_in: int = 3600,
        content_type: str | None = None,
        max_size: int | None = None,
        if_not_exists: bool = False,
    ) -> str:
        """A presigned PUT URL whose signature also carries upload limits, enforced by
        the route serving it (``cloudrift_fastapi.local_files_router``).

        ``max_size``: a body over this many bytes is refused (413) while it streams and
        nothing is stored. ``if_not_exists``: the URL only creates the object; once one
        exists under ``key`` the PUT is refused (412) and the object is left unchanged,
        so a URL cannot overwrite a file after it was uploaded. Raises
        InvalidArgumentError for a ``max_size`` that is not a positive int, and what
        ``presigned_url`` raises otherwise.
        """
        if max_size is not None and (not is_int(max_size) or max_size < 1):
            raise InvalidArgumentError(
                f"max_size must be a positive int (bytes) or None, got {max_size!r}"
            )
        # The contract's checks (key, expiry range, content type, closed state) first.
        await self.presigned_url(key, expires_in, "PUT", content_type)
        expires = int(time.time()) + expires_in
        return self._signed_url(key, "PUT", expires, content_type, max_size, if_not_exists)

    def verify_presigned(
        self,
        key: str,
        *,
        method: str,
        expires: int,
        signature: str,
        content_type: str | None = None,
        max_size: int | None = None,
        if_not_exists: bool = False,
    ) -> None:
        """Accept a presigned request or raise StoragePermissionError saying why not.

        The signature covers method, key, expiry, content type and the upload limits
        (``max_size``, ``if_not_exists``), so a changed method or a tampered or dropped
        parameter fails the check; a valid but past expiry raises a
        StoragePermissionError that says the URL expired.
        """
        validate_key(key)
        self._path(key)
        if not isinstance(signature, str) or not isinstance(expires, int):
            raise StoragePermissionError("malformed presigned URL: missing signature or expiry")
        expected = self._signature(
            key, method.upper(), expires, content_type, max_size, if_not_exists
        )
        if not hmac.compare_digest(expected, signature):
            raise StoragePermissionError(
                "presigned URL signature does not match (wrong key, method, expiry, content "
                "type or limits, or issued by another server); ask for a new URL"
            )
        if expires < int(time.time()):
            raise StoragePermissionError("presigned URL has expired; ask for a new one")

    @operation
    async def create_from_stream(
        self, key: str, parts: AsyncIterable[bytes], *, content_type: str | None = None
    ) -> None:
        """Store what ``parts`` yields under ``key`` only if no object exists there
        (the streaming form of ``upload(..., if_not_exists=True)``, used by the route
        serving create-only presigned PUTs).

        Raises ObjectExistsError naming the key, before reading ``parts`` when the
        object already exists, and atomically at the end if one appeared meanwhile
        (the existing object is never replaced). If ``parts`` raises, nothing is stored
        and the error propagates.
        """
        validate_key(key)
        ctype = guess_content_type(key, content_type)
        if await self._exists(key):
            raise ObjectExistsError(key)
        path, tmp, fd = await self._run(self._start_beside, key)
        fh = os.fdopen(fd, "wb")  # wraps the descriptor: nothing blocks here
        try:
            try:
                async for part in parts:
                    await self._run(fh.write, part)
            finally:
                await self._run(fh.close)
            await self._run(self._place, tmp, path, key, True)
            await self._run(self._write_meta, key, ctype, {})
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


__all__ = ["LocalStorage"]
