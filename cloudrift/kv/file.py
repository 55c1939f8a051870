"""A KV store in one local JSON file: atomic writes, survives restarts, TTLs included.

Expiry times are wall-clock epoch seconds, so a TTL keeps counting while the process
is down. Every write goes to a temporary file in the same folder, is flushed and
fsynced, then renamed over the store (``os.replace``), so a crash leaves either the
old or the new file, never a torn one. Meant for one process (dev, CLIs, small
services); use the ``cache`` provider for shared state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudrift.core.exceptions import ConfigurationError, KVError
from cloudrift.kv.base import KVStore

_Record = dict[str, Any]  # {"v": json text, "exp": epoch seconds | None}


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
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    async def _state(self) -> dict[str, _Record]:
        if self._data is None:
            self._data = await asyncio.to_thread(self._read)
        return self._data

    def _alive(self, record: _Record) -> bool:
        exp = record.get("exp")
        return exp is None or self._clock() < float(exp)

    async def _mutate(self, change: Callable[[dict[str, _Record]], bool]) -> bool:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            current = await self._state()
            data = dict(current)
            result = change(data)
            # Drop expired records while we are writing anyway.
            data = {k: r for k, r in data.items() if self._alive(r)}
            if data != current:
                try:
                    await asyncio.to_thread(self._write, data)
                except OSError as exc:
                    raise KVError(f"could not write KV file {str(self.path)!r}: {exc}") from exc
                self._data = data
            return result

    async def _set(self, key: str, text: str, ttl: float | None) -> None:
        record: _Record = {"v": text, "exp": None if ttl is None else self._clock() + ttl}

        def change(data: dict[str, _Record]) -> bool:
            data[key] = record
            return True

        await self._mutate(change)

    async def _get(self, key: str) -> str | None:
        record = (await self._state()).get(key)
        if record is None or not self._alive(record):
            return None
        text: str = record["v"]
        return text

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


__all__ = ["FileKV"]
