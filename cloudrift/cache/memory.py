"""In-process cache with Redis semantics (types, TTLs, counters), for dev and tests."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloudrift.cache.base import Cache, Op
from cloudrift.core.exceptions import CacheError, CacheKeyNotFoundError, CacheResponseError

_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
_NOT_INT = "ERR value is not an integer or out of range"
# What Redis's string2ll accepts: ASCII digits, an optional '-', no leading zeros (but
# "0"), no spaces, '+' or '_' (Python's int() takes all of those, and other scripts' digits).
_REDIS_INT = re.compile(rb"0|-?[1-9][0-9]*")
_INT64 = range(-(2**63), 2**63)


def redis_int(value: bytes) -> int:
    """``value`` as Redis reads a stored integer, else CacheResponseError as Redis says."""
    if _REDIS_INT.fullmatch(value) is None or int(value) not in _INT64:
        raise CacheResponseError(_NOT_INT)
    return int(value)


@dataclass
class _Entry:
    value: bytes | dict[bytes, bytes] | list[bytes]
    expires_at: float | None = None


class MemoryCache(Cache):
    """A cache held in a dict of this process; ``clock`` (seconds) drives TTL expiry."""

    provider = "memory"
    backend_name = "memory cache"

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self._clock = clock or time.monotonic
        self._data: dict[str, _Entry] = {}

    def _location(self) -> str:
        return "in-process"

    async def _aclose(self) -> None:
        self._data.clear()

    # --------------------------------------------------------------- internals
    def _live(self, key: str) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and self._clock() >= entry.expires_at:
            del self._data[key]
            return None
        return entry

    def _deadline(self, ttl_ms: int | None) -> float | None:
        return None if ttl_ms is None else self._clock() + ttl_ms / 1000

    def _typed(self, key: str, kind: type) -> Any:
        entry = self._live(key)
        if entry is None:
            return None
        if not isinstance(entry.value, kind):
            raise CacheResponseError(_WRONGTYPE)
        return entry.value

    # -------------------------------------------------------------- sync ops
    def _do_set(self, key: str, value: bytes, ttl_ms: int | None, nx: bool) -> bool:
        if nx and self._live(key) is not None:
            return False
        self._data[key] = _Entry(value, self._deadline(ttl_ms))
        return True

    def _do_delete(self, key: str) -> bool:
        return self._live(key) is not None and self._data.pop(key, None) is not None

    def _do_expire(self, key: str, ttl_ms: int) -> bool:
        entry = self._live(key)
        if entry is None:
            return False
        entry.expires_at = self._deadline(ttl_ms)
        return True

    def _do_incr(self, key: str, amount: int) -> int:
        entry = self._live(key)
        current = 0
        if entry is not None:
            if not isinstance(entry.value, bytes):
                raise CacheResponseError(_WRONGTYPE)
            current = redis_int(entry.value)
        new = current + amount
        if new not in _INT64:
            raise CacheResponseError("ERR increment or decrement would overflow")
        if entry is None:
            self._data[key] = _Entry(str(new).encode())
        else:
            entry.value = str(new).encode()  # INCR keeps the key's TTL
        return new

    def _do_hset(self, key: str, field: bytes, value: bytes) -> bool:
        h = self._typed(key, dict)
        if h is None:
            h = {}
            self._data[key] = _Entry(h)
        new = field not in h
        h[field] = value
        return new

    def _do_push(self, key: str, values: list[bytes], left: bool) -> int:
        items = self._typed(key, list)
        if items is None:
            items = []
            self._data[key] = _Entry(items)
        for v in values:
            if left:
                items.insert(0, v)
            else:
                items.append(v)
        return len(items)

    # ------------------------------------------------------------------ hooks
    async def _set(self, key: str, value: bytes, ttl_ms: int | None, nx: bool) -> bool:
        return self._do_set(key, value, ttl_ms, nx)

    async def _get(self, key: str) -> bytes | None:
        value: bytes | None = self._typed(key, bytes)
        return value

    async def _delete(self, key: str) -> bool:
        return self._do_delete(key)

    async def _exists(self, key: str) -> bool:
        return self._live(key) is not None

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for key in keys:
            entry = self._live(key)
            # MGET answers nil for a key of another type rather than an error.
            out.append(entry.value if entry and isinstance(entry.value, bytes) else None)
        return out

    async def _mset(self, items: dict[str, bytes], ttl_ms: int | None) -> None:
        deadline = self._deadline(ttl_ms)
        for key, value in items.items():
            self._data[key] = _Entry(value, deadline)

    async def _expire(self, key: str, ttl_ms: int) -> bool:
        return self._do_expire(key, ttl_ms)

    async def _ttl(self, key: str) -> float | None:
        entry = self._live(key)
        if entry is None:
            raise CacheKeyNotFoundError(key)
        if entry.expires_at is None:
            return None
        return max(0.0, entry.expires_at - self._clock())

    async def _incr(self, key: str, amount: int) -> int:
        return self._do_incr(key, amount)

    async def _hset(self, key: str, field: bytes, value: bytes) -> bool:
        return self._do_hset(key, field, value)

    async def _hget(self, key: str, field: bytes) -> bytes | None:
        h = self._typed(key, dict)
        return None if h is None else h.get(field)

    async def _hgetall(self, key: str) -> dict[bytes, bytes]:
        h = self._typed(key, dict)
        return {} if h is None else dict(h)

    async def _hdel(self, key: str, field: bytes) -> bool:
        h = self._typed(key, dict)
        if h is None or field not in h:
            return False
        del h[field]
        if not h:
            del self._data[key]  # Redis removes an emptied hash
        return True

    async def _push(self, key: str, values: list[bytes], left: bool) -> int:
        return self._do_push(key, values, left)

    async def _lrange(self, key: str, start: int, stop: int) -> list[bytes]:
        items = self._typed(key, list)
        if items is None:
            return []
        n = len(items)
        if start < 0:
            start = max(0, n + start)
        if stop < 0:
            stop = n + stop
        if stop < start:
            return []
        return list(items[start : stop + 1])

    async def _execute(self, ops: list[Op], transaction: bool) -> list[Any]:
        # No await between commands: the batch is atomic for every other task, which a
        # non-transactional pipeline (transaction=False) may be too. As on
        # Redis (MULTI/EXEC has no rollback), a command that fails does not undo the
        # others; the first failure is raised after the batch.
        handlers: dict[str, Callable[..., Any]] = {
            "set": self._do_set,
            "delete": self._do_delete,
            "incr": self._do_incr,
            "expire": self._do_expire,
            "hset": self._do_hset,
            "lpush": lambda k, *v: self._do_push(k, list(v), True),
            "rpush": lambda k, *v: self._do_push(k, list(v), False),
        }
        results: list[Any] = []
        first_error: CacheError | None = None
        for op in ops:
            try:
                results.append(handlers[op.name](*op.args))
            except CacheError as exc:
                results.append(exc)
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return results

    async def _compare_and_set(
        self, key: str, expect: bytes | None, value: bytes | None, ttl_ms: int | None
    ) -> bool:
        # No await: the check and the change are one step for every task.
        entry = self._live(key)
        if expect is None:
            if entry is not None:
                return False
        else:
            if entry is None:
                return False
            if not isinstance(entry.value, bytes):
                raise CacheResponseError(_WRONGTYPE)
            if not entry.value.startswith(expect):
                return False
        if value is not None:
            self._data[key] = _Entry(value, self._deadline(ttl_ms))
        elif ttl_ms is None:
            del self._data[key]
        else:
            assert entry is not None
            entry.expires_at = self._deadline(ttl_ms)
        return True

    async def _ping(self) -> None:
        return None


__all__ = ["MemoryCache"]
