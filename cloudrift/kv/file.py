"""A KV store in one local JSON file: atomic writes, survives restarts, TTLs included.

Expiry times are wall-clock epoch seconds, so a TTL keeps counting while the process
is down. Every write goes to a temporary file in the same folder, is flushed and
fsynced, then renamed over the store (``os.replace``), so a crash leaves either the
old or the new file, never a torn one.

Several processes may share the file: every write re-reads it and rewrites it under an
exclusive ``flock`` on ``<path>.lock``, and a read reloads the file when it changed on
disk, so a conditional write (``if_version``) is atomic across processes. Each write
rewrites the whole file: keep it to small data sets; use the ``cache`` provider for
shared state at scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudrift.core.exceptions import ConfigurationError, KVError
from cloudrift.kv.base import ABSENT, KVStore, content_version

_Record = dict[str, Any]  # {"v": json text, "exp": epoch seconds | None, "ver": version}


class FileKV(KVStore):
    """A KV store persisted in the JSON file at ``path`` (created on first write)."""

    provider = "file"
    backend_name = "file kv store"

    def __init__(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        if path is None or not str(path):
            raise ConfigurationError(
                'the \'file\' KV provider needs path=, e.g. get_kv("file", path="data/kv.json")'
            )
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigurationError(f"KV file path {str(self.path)!r} is a directory")
        self._clock = clock or time.time
        self._data: dict[str, _Record] | None = None
        # (inode, mtime, size) of the file self._data was read from or written as.
        self._seen: tuple[int, int, int] | None = None
        self._lock: asyncio.Lock | None = None

    def _location(self) -> str:
        return str(self.path)

    def _read(self) -> dict[str, _Record]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise KVError(
                f"KV file {str(self.path)!r} is not valid JSON ({exc}); restore it from a "
                "backup or delete it to start empty"
            ) from None
        if not isinstance(data, dict) or not all(
            isinstance(r, dict) and isinstance(r.get("v"), str) for r in data.values()
        ):
            raise KVError(f"KV file {str(self.path)!r} is not a cloudrift KV file")
        return data

    def _write(self, data: dict[str, _Record]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
                # Taken before the rename: after it another process may replace it.
                self._seen = _signature(os.fstat(fh.fileno()))
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _on_disk(self) -> tuple[int, int, int] | None:
        try:
            return _signature(os.stat(self.path))
        except FileNotFoundError:
            return None

    def _load(self) -> dict[str, _Record]:
        seen = self._on_disk()
        data = self._read()
        self._data, self._seen = data, seen
        return data

    async def _state(self) -> dict[str, _Record]:
        # One stat per read: another process may have rewritten the file.
        if self._data is None or self._on_disk() != self._seen:
            return await asyncio.to_thread(self._load)
        return self._data

    @contextlib.contextmanager
    def _file_lock(self) -> Any:
        """Hold an exclusive flock on ``<path>.lock`` (released with the descriptor,
        also when the process dies)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _mutate_sync(self, change: Callable[[dict[str, _Record]], bool]) -> bool:
        with self._file_lock():
            # Always re-read under the lock: the write below must build on the latest.
            current = self._load()
            data = dict(current)
            result = change(data)
            # Drop expired records while we are writing anyway.
            data = {k: r for k, r in data.items() if self._alive(r)}
            if data != current:
                try:
                    self._write(data)
                except OSError as exc:
                    raise KVError(f"could not write KV file {str(self.path)!r}: {exc}") from exc
                self._data = data
            return result

    def _alive(self, record: _Record) -> bool:
        exp = record.get("exp")
        return exp is None or self._clock() < float(exp)

    async def _mutate(self, change: Callable[[dict[str, _Record]], bool]) -> bool:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            result: bool = await asyncio.to_thread(self._mutate_sync, change)
            return result

    def _record(self, text: str, ttl: float | None, version: str) -> _Record:
        return {"v": text, "exp": None if ttl is None else self._clock() + ttl, "ver": version}

    async def _set(self, key: str, text: str, ttl: float | None, version: str) -> None:
        record = self._record(text, ttl, version)

        def change(data: dict[str, _Record]) -> bool:
            data[key] = record
            return True

        await self._mutate(change)

    async def _set_if(
        self, key: str, text: str | None, ttl: float | None, version: str, expect: str
    ) -> bool:
        def change(data: dict[str, _Record]) -> bool:
            record = data.get(key)
            live = record is not None and self._alive(record)
            current = _version(record) if record is not None and live else ABSENT
            if current != expect:
                return False
            if text is None:
                del data[key]
            else:
                data[key] = self._record(text, ttl, version)
            return True

        return await self._mutate(change)

    async def _get_entry(self, key: str) -> tuple[str, str] | None:
        record = (await self._state()).get(key)
        if record is None or not self._alive(record):
            return None
        return str(record["v"]), _version(record)

    async def _delete(self, key: str) -> bool:
        def change(data: dict[str, _Record]) -> bool:
            record = data.pop(key, None)
            return record is not None and self._alive(record)

        return await self._mutate(change)

    async def _health(self) -> bool:
        try:
            await self._state()
        except KVError:
            return False
        return os.access(self.path.parent if not self.path.exists() else self.path, os.W_OK)


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _version(record: _Record) -> str:
    version = record.get("ver")
    # A record written before versions existed gets one from its content.
    return str(version) if version else content_version(str(record["v"]))


__all__ = ["FileKV"]
