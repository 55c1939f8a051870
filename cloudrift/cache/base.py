"""The cache contract: one ABC, its validation and value encoding, done once.

Values: every write accepts ``bytes`` (also ``bytearray``/``memoryview``) or ``str``; a
``str`` is stored as its UTF-8 encoding, so ``set(k, "é")`` and ``set(k, "é".encode())``
store the same thing. Every read returns ``bytes`` (``get``, ``mget``, ``hget``,
``hgetall`` field names and values, ``lrange`` items) on every provider. Hash field
names, like values, may be given as ``str`` or ``bytes``. Anything else (``int``,
``None``, a dict...) raises :class:`CacheArgumentError` before a command is sent; use
:mod:`cloudrift.kv` for JSON records.

Keys are non-empty ``str``. TTLs are seconds (``int`` or ``float``, > 0); sub-second
TTLs are kept to the millisecond.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from cloudrift.core.exceptions import (
    CacheArgumentError,
    CacheError,
    FeatureNotSupportedError,
    LockLostError,
    LockNotAcquiredError,
)
from cloudrift.core.lifecycle import AsyncBackend
from cloudrift.core.operation import operation
from cloudrift.core.validation import is_int, is_number

#: Cache keys of locks start with this (then the lock's name).
LOCK_PREFIX = "cloudrift:lock:"

#: What a write accepts as a value.
CacheValue = bytes | bytearray | memoryview | str


def encode_value(value: object, what: str = "value") -> bytes:
    """The bytes stored for ``value``: bytes as they are, str as UTF-8."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise CacheArgumentError(
        f"cache {what} must be bytes or str, not {type(value).__name__}; encode it "
        "first (e.g. str(n) or json.dumps(obj)) or use cloudrift.kv for JSON records"
    )


def check_key(key: object) -> str:
    """Return ``key`` if it is a non-empty str, else raise CacheArgumentError."""
    if not isinstance(key, str):
        raise CacheArgumentError(f"cache keys must be str, not {type(key).__name__}")
    if not key:
        raise CacheArgumentError("cache keys must not be empty")
    return key


def check_ttl(ttl: object, *, optional: bool = True) -> int | None:
    """The TTL in whole milliseconds (at least 1), or None for "no expiry"."""
    if ttl is None and optional:
        return None
    if not is_number(ttl):
        raise CacheArgumentError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise CacheArgumentError(
            f"ttl must be a positive number of seconds, got {ttl!r}; use delete() to "
            "remove a key, or leave ttl out for no expiry"
        )
    return max(1, math.ceil(ttl * 1000))


def check_amount(amount: object) -> int:
    """An integer increment."""
    if not is_int(amount):
        raise CacheArgumentError(f"amount must be an int, not {type(amount).__name__}")
    return amount


@dataclass(frozen=True)
class Op:
    """One queued command of a pipeline (already validated and encoded)."""

    name: str
    args: tuple[Any, ...]


class Pipeline:
    """Commands queued inside ``async with cache.pipeline() as pipe:``.

    Methods queue and return nothing; nothing is sent until the block exits without
    an error, then every command runs (as one transaction unless the pipeline was
    opened with ``transaction=False``) and ``pipe.results`` holds each command's result
    in order (same types as the corresponding :class:`Cache` method). If the block
    raises, nothing is sent.
    """

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.results: list[Any] = []

    def _add(self, name: str, *args: Any) -> Pipeline:
        self.ops.append(Op(name, args))
        return self

    def set(self, key: str, value: CacheValue, ttl: float | None = None) -> Pipeline:
        """Queue ``set(key, value, ttl)``."""
        return self._add("set", check_key(key), encode_value(value), check_ttl(ttl), False)

    def delete(self, key: str) -> Pipeline:
        """Queue ``delete(key)``."""
        return self._add("delete", check_key(key))

    def incr(self, key: str, amount: int = 1) -> Pipeline:
        """Queue ``incr(key, amount)``."""
        return self._add("incr", check_key(key), check_amount(amount))

    def decr(self, key: str, amount: int = 1) -> Pipeline:
        """Queue ``decr(key, amount)``."""
        return self._add("incr", check_key(key), -check_amount(amount))

    def expire(self, key: str, ttl: float) -> Pipeline:
        """Queue ``expire(key, ttl)``."""
        return self._add("expire", check_key(key), check_ttl(ttl, optional=False))

    def hset(self, key: str, field: str | bytes, value: CacheValue) -> Pipeline:
        """Queue ``hset(key, field, value)``."""
        return self._add("hset", check_key(key), _check_field(field), encode_value(value))

    def lpush(self, key: str, *values: CacheValue) -> Pipeline:
        """Queue ``lpush(key, *values)``."""
        return self._add("lpush", check_key(key), *_encode_many(values))

    def rpush(self, key: str, *values: CacheValue) -> Pipeline:
        """Queue ``rpush(key, *values)``."""
        return self._add("rpush", check_key(key), *_encode_many(values))


def _check_field(field: object) -> bytes:
    if isinstance(field, str | bytes | bytearray | memoryview):
        encoded = encode_value(field, "hash field name")
        if encoded:
            return encoded
    raise CacheArgumentError("hash field names must be non-empty str or bytes")


def _encode_many(values: Sequence[object]) -> list[bytes]:
    if not values:
        raise CacheArgumentError("give at least one value to push")
    return [encode_value(v) for v in values]


class Cache(AsyncBackend, ABC):
    """A key-value cache with hashes, lists and counters; see the module doc for values.

    Provider modules implement the ``_hooks``; every public method validates its
    input here and calls one hook, through :func:`~cloudrift.core.operation.operation`
    (closed check, observation, cancellation).
    """

    backend_name = "cache"
    category = "cache"
    #: Short provider name shown in repr() and health output.
    provider: str = "cache"

    def _location(self) -> str:
        """Where the cache lives (host:port/db); never a credential."""
        return ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} provider={self.provider!r} location={self._location()!r}>"

    # ------------------------------------------------------------------ strings
    @operation
    async def set(
        self, key: str, value: CacheValue, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        """Store ``value`` under ``key``, expiring after ``ttl`` seconds when given.

        With ``nx=True`` the value is written only if the key is absent. Returns True
        when the value was written, False when ``nx`` found the key present. A plain
        ``set`` replaces any previous value (and type) and clears its old TTL.
        """
        return await self._set(check_key(key), encode_value(value), check_ttl(ttl), bool(nx))

    @operation
    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key`` as bytes, or None if it is absent or expired."""
        return await self._get(check_key(key))

    @operation
    async def delete(self, key: str) -> bool:
        """Remove ``key`` (of any type); True if it existed. A missing key is a no-op."""
        return await self._delete(check_key(key))

    @operation
    async def exists(self, key: str) -> bool:
        """True if ``key`` holds a value of any type that has not expired."""
        return await self._exists(check_key(key))

    @operation
    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys``, in order, None for each absent key."""
        if isinstance(keys, str | bytes):
            raise CacheArgumentError("mget takes a sequence of keys, not a single key")
        checked = [check_key(k) for k in keys]
        if not checked:
            return []
        return await self._mget(checked)

    @operation
    async def mset(self, items: Mapping[str, CacheValue], ttl: float | None = None) -> None:
        """Store every item at once (all or nothing), each expiring after ``ttl`` if given."""
        if not isinstance(items, Mapping):
            raise CacheArgumentError("mset takes a mapping of key to value")
        encoded = {check_key(k): encode_value(v) for k, v in items.items()}
        ms = check_ttl(ttl)
        if encoded:
            await self._mset(encoded, ms)

    @operation
    async def expire(self, key: str, ttl: float) -> bool:
        """Make ``key`` expire after ``ttl`` seconds; False if the key does not exist."""
        return await self._expire(check_key(key), check_ttl(ttl, optional=False) or 1)

    @operation
    async def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires, None if it never expires.

        Raises CacheKeyNotFoundError naming the key if it does not exist.
        """
        return await self._ttl(check_key(key))

    @operation
    async def incr(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the integer at ``key`` (a missing key counts as 0); the new value.

        Raises CacheResponseError if the value is not an integer.
        """
        return await self._incr(check_key(key), check_amount(amount))

    @operation
    async def decr(self, key: str, amount: int = 1) -> int:
        """Subtract ``amount`` from the integer at ``key``; the new value."""
        return await self._incr(check_key(key), -check_amount(amount))

    # ------------------------------------------------------------------- hashes
    @operation
    async def hset(self, key: str, field: str | bytes, value: CacheValue) -> bool:
        """Set one field of the hash at ``key``; True if the field is new.

        Raises CacheResponseError if ``key`` holds another type.
        """
        return await self._hset(check_key(key), _check_field(field), encode_value(value))

    @operation
    async def hget(self, key: str, field: str | bytes) -> bytes | None:
        """One field of the hash at ``key`` as bytes, None if the hash or field is absent."""
        return await self._hget(check_key(key), _check_field(field))

    @operation
    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        """Every field of the hash at ``key``, names and values as bytes; {} if absent."""
        return await self._hgetall(check_key(key))

    @operation
    async def hdel(self, key: str, field: str | bytes) -> bool:
        """Remove one field of the hash; True if it existed."""
        return await self._hdel(check_key(key), _check_field(field))

    # -------------------------------------------------------------------- lists
    @operation
    async def lpush(self, key: str, *values: CacheValue) -> int:
        """Push ``values`` one by one onto the head of the list; the list's new length.

        So ``lpush(k, "a", "b")`` leaves ``[b"b", b"a"]``, as in Redis.
        """
        return await self._push(check_key(key), _encode_many(values), left=True)

    @operation
    async def rpush(self, key: str, *values: CacheValue) -> int:
        """Append ``values`` to the tail of the list; the list's new length."""
        return await self._push(check_key(key), _encode_many(values), left=False)

    @operation
    async def lrange(self, key: str, start: int, stop: int) -> list[bytes]:
        """Items ``start``..``stop`` of the list, both inclusive, negatives from the end."""
        if not is_int(start) or not is_int(stop):
            raise CacheArgumentError("lrange start and stop must be int")
        return await self._lrange(check_key(key), start, stop)

    # ------------------------------------------------------------------ control
    @asynccontextmanager
    async def pipeline(self, *, transaction: bool = True) -> AsyncIterator[Pipeline]:
        """Queue commands and run them together on exit; results are in ``pipe.results``.

        ``transaction=True`` (the default): one transaction, so no other client sees
        part of it (on a Redis Cluster its keys must then share a slot). With
        ``transaction=False`` the commands are only batched (one round trip per server):
        others may see some applied before the rest, and on a cluster the keys may be
        in any slots. Either way a command the server refuses does not undo the
        others; the first such error is raised after the batch. Nothing is sent if the
        block raises.
        """
        if not isinstance(transaction, bool):
            raise CacheArgumentError(
                f"transaction must be True or False, not {type(transaction).__name__}"
            )
        self._ensure_open()
        pipe = Pipeline()
        yield pipe
        if pipe.ops:
            pipe.results = await self._run_pipeline(pipe.ops, transaction)
        else:
            self._ensure_open()

    @operation(name="pipeline")
    async def _run_pipeline(self, ops: list[Op], transaction: bool) -> list[Any]:
        return await self._execute(ops, transaction)

    # -------------------------------------------------------------------- locks
    def lock(self, name: str, *, ttl: float, wait: float | None = None) -> Lock:
        """A distributed lock named ``name``: ``async with cache.lock("job", ttl=30):``.

        Only one owner (task, process or replica sharing this cache) holds it at a time.
        It expires ``ttl`` seconds after it was taken (or last extended), so a crashed
        owner frees it; ``extend()`` keeps a long job's lock. ``wait``: seconds to keep
        trying when it is held (None: fail at once) before LockNotAcquiredError. Leaving
        the block after the ttl passed raises LockLostError. The lock lives under the
        cache key ``"cloudrift:lock:" + name``.
        """
        check_key(name)
        ttl_ms = check_ttl(ttl, optional=False)
        assert ttl_ms is not None
        return Lock(self, name, ttl_ms, _check_wait(wait))

    @operation(name="compare_and_set")
    async def _cas(
        self, key: str, expect: bytes | None, value: bytes | None, ttl_ms: int | None
    ) -> bool:
        return await self._compare_and_set(key, expect, value, ttl_ms)

    async def _compare_and_set(
        self, key: str, expect: bytes | None, value: bytes | None, ttl_ms: int | None
    ) -> bool:
        """Hook, one atomic step: if ``key`` is absent (``expect`` None) or holds a string
        starting with ``expect``, then store ``value`` (expiring after ``ttl_ms`` if given),
        or with ``value`` None delete the key (``ttl_ms`` None) or set its expiry to
        ``ttl_ms``; True if the condition held. Redis runs it as one Lua script."""
        raise FeatureNotSupportedError(
            f"the {self.provider!r} cache provider has no atomic compare-and-set"
        )

    @operation
    async def ping(self) -> bool:
        """True when the server answers; raises CacheConnectionError when it cannot."""
        await self._ping()
        return True

    @operation
    async def health_check(self) -> bool:
        """Contact the server: True if it answers PING, False if not (never raises for that).

        Raises BackendClosedError after close().
        """
        try:
            await self._ping()
        except CacheError:  # unreachable, timed out, or refused (LOADING, NOPERM...)
            return False
        return True

    # -------------------------------------------------------------------- hooks
    @abstractmethod
    async def _set(self, key: str, value: bytes, ttl_ms: int | None, nx: bool) -> bool: ...
    @abstractmethod
    async def _get(self, key: str) -> bytes | None: ...
    @abstractmethod
    async def _delete(self, key: str) -> bool: ...
    @abstractmethod
    async def _exists(self, key: str) -> bool: ...
    @abstractmethod
    async def _mget(self, keys: list[str]) -> list[bytes | None]: ...
    @abstractmethod
    async def _mset(self, items: dict[str, bytes], ttl_ms: int | None) -> None: ...
    @abstractmethod
    async def _expire(self, key: str, ttl_ms: int) -> bool: ...
    @abstractmethod
    async def _ttl(self, key: str) -> float | None: ...
    @abstractmethod
    async def _incr(self, key: str, amount: int) -> int: ...
    @abstractmethod
    async def _hset(self, key: str, field: bytes, value: bytes) -> bool: ...
    @abstractmethod
    async def _hget(self, key: str, field: bytes) -> bytes | None: ...
    @abstractmethod
    async def _hgetall(self, key: str) -> dict[bytes, bytes]: ...
    @abstractmethod
    async def _hdel(self, key: str, field: bytes) -> bool: ...
    @abstractmethod
    async def _push(self, key: str, values: list[bytes], left: bool) -> int: ...
    @abstractmethod
    async def _lrange(self, key: str, start: int, stop: int) -> list[bytes]: ...
    @abstractmethod
    async def _execute(self, ops: list[Op], transaction: bool) -> list[Any]: ...
    @abstractmethod
    async def _ping(self) -> None: ...


class Lock:
    """A lock named ``name`` on a cache, shared by every process using that cache.

    Built by :meth:`Cache.lock`. Taking it stores a random token under the lock's key
    only if the key is absent (``SET NX PX`` on Redis), expiring after ``ttl`` seconds so
    a crashed owner cannot hold it forever; releasing and extending compare the token
    first (one atomic step), so only the owner can. Use it as ``async with`` or call
    :meth:`acquire` / :meth:`release` / :meth:`extend`.
    """

    def __init__(self, cache: Cache, name: str, ttl_ms: int, wait: float | None) -> None:
        self.cache = cache
        self.name = name
        self.key = LOCK_PREFIX + name
        self._ttl_ms = ttl_ms
        self._wait = wait
        self._token: bytes | None = None

    def __repr__(self) -> str:
        state = "held" if self._token is not None else "not held"
        return f"<Lock {self.name!r} ttl={self._ttl_ms / 1000:g}s {state}>"

    @property
    def held(self) -> bool:
        """True between a successful acquire() and release() (the ttl may have passed)."""
        return self._token is not None

    async def acquire(self, *, wait: float | None = None) -> None:
        """Take the lock; raise LockNotAcquiredError if another owner holds it after
        ``wait`` seconds (default: the lock's ``wait``; None or 0: one attempt), polling
        with a growing, jittered backoff (10 ms up to 200 ms)."""
        if self._token is not None:
            raise CacheArgumentError(f"lock {self.name!r} is already held by this object")
        limit = self._wait if wait is None else _check_wait(wait)
        token = secrets.token_hex(16).encode()
        deadline = time.monotonic() + (limit or 0)
        delay = 0.01
        while True:
            # SET NX PX: the same single command redis-py's Lock sends.
            if await self.cache.set(self.key, token, self._ttl_ms / 1000, nx=True):
                self._token = token
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockNotAcquiredError(
                    self.name,
                    f"lock {self.name!r} is held by another owner"
                    + (f" (waited {limit:g}s)" if limit else "")
                    + "; retry later or pass a longer wait=",
                )
            await asyncio.sleep(min(remaining, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, 0.2)

    async def release(self) -> None:
        """Give the lock up. Raises LockLostError (deleting nothing) if it expired and
        may be held by someone else; CacheArgumentError if this object does not hold it."""
        token = self._require()
        self._token = None
        if not await self.cache._cas(self.key, token, None, None):
            raise LockLostError(self.name)

    async def extend(self, ttl: float | None = None) -> None:
        """Reset the lock's expiry to ``ttl`` seconds from now (default: its ttl).
        Raises LockLostError if it already expired (this object no longer holds it)."""
        token = self._require()
        ttl_ms = self._ttl_ms if ttl is None else check_ttl(ttl, optional=False)
        assert ttl_ms is not None
        if not await self.cache._cas(self.key, token, None, ttl_ms):
            self._token = None
            raise LockLostError(self.name)

    def _require(self) -> bytes:
        if self._token is None:
            raise CacheArgumentError(f"lock {self.name!r} is not held by this object")
        return self._token

    async def __aenter__(self) -> Lock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()


def _check_wait(wait: object) -> float | None:
    if wait is None:
        return None
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not math.isfinite(wait):
        raise CacheArgumentError(f"wait must be a number of seconds or None, got {wait!r}")
    if wait < 0:
        raise CacheArgumentError(f"wait must not be negative, got {wait!r}")
    return float(wait)


__all__ = [
    "LOCK_PREFIX",
    "Cache",
    "CacheValue",
    "Lock",
    "Pipeline",
    "check_key",
    "check_ttl",
    "encode_value",
]
