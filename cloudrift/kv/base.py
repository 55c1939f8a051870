"""The KV contract: small string-keyed JSON records with an optional TTL.

Values are anything ``json.dumps`` accepts (dict, list, str, int, float, bool, None),
without NaN/Infinity. A value is serialised once, before anything is written, so
an unserialisable value raises :class:`KVValueError` and leaves the store unchanged.
Reads return a fresh decoded copy: tuples come back as lists, dict keys as str.

Versions. Every write gives the entry a new opaque ``version`` (a str), returned by
:meth:`KVStore.get_entry`. ``set(..., if_version=v)`` and ``delete(..., if_version=v)``
write only if the entry is still at version ``v``; ``set(..., if_absent=True)`` only if
there is no entry. Otherwise :class:`KVConflictError` is raised and nothing changes:
re-read with ``get_entry`` and retry. The check and the write are one atomic step on
every provider (across processes on ``file``; one Lua script on Redis).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from cloudrift.core.exceptions import KVConflictError, KVValueError
from cloudrift.core.lifecycle import AsyncBackend
from cloudrift.core.operation import operation
from cloudrift.core.validation import is_number


def encode_json(value: object) -> str:
    """The JSON text stored for ``value``; KVValueError if it is not JSON."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise KVValueError(
            f"KV values must be JSON-serialisable (dict, list, str, int, float, bool, None); "
            f"{exc}. Convert it first (e.g. to a dict or str); nothing was written"
        ) from None


def check_key(key: object) -> str:
    """Return ``key`` if it is a non-empty str."""
    if not isinstance(key, str) or not key:
        raise KVValueError(f"KV keys must be non-empty str, got {key!r}")
    return key


def check_ttl(ttl: object) -> float | None:
    """TTL seconds (positive, finite) or None."""
    if ttl is None:
        return None
    if not is_number(ttl):
        raise KVValueError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise KVValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return float(ttl)


@dataclass(frozen=True)
class KVEntry:
    """A stored value and its version (opaque; new on every write)."""

    value: Any
    version: str


def new_version() -> str:
    """A fresh version string: 64 random bits, so no two writes share one."""
    return secrets.token_hex(8)


def content_version(text: str) -> str:
    """The version of a record written before versions existed: from its content."""
    return "legacy-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _check_version(if_version: object) -> str | None:
    if if_version is None:
        return None
    if not isinstance(if_version, str) or not if_version:
        raise KVValueError(
            f"if_version must be a non-empty str (KVEntry.version), got {if_version!r}"
        )
    return if_version


#: Passed as the expected version of a conditional write that needs the key absent.
ABSENT = ""


class KVStore(AsyncBackend, ABC):
    """Small JSON records by key. Providers implement the ``_hooks`` on JSON text."""

    backend_name = "kv store"
    category = "kv"
    provider: str = "kv"

    def _location(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} provider={self.provider!r} location={self._location()!r}>"

    @operation
    async def set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        *,
        if_version: str | None = None,
        if_absent: bool = False,
    ) -> None:
        """Store ``value`` (JSON) under ``key``, expiring after ``ttl`` seconds if given.

        Raises KVValueError, writing nothing, if the value is not JSON-serialisable.
        With ``if_version=v`` the write happens only if the entry's version is still
        ``v``, with ``if_absent=True`` only if there is no (unexpired) entry; otherwise
        KVConflictError naming the key is raised and the stored value is untouched.
        """
        text = encode_json(value)
        check_key(key)
        seconds = check_ttl(ttl)
        expect = _check_version(if_version)
        if expect is not None and if_absent:
            raise KVValueError("give either if_version or if_absent, not both")
        if expect is None and not if_absent:
            await self._set(key, text, seconds, new_version())
            return
        if not await self._set_if(key, text, seconds, new_version(), expect or ABSENT):
            raise KVConflictError(
                key,
                f"KV entry {key!r} "
                + ("already exists" if if_absent else f"is no longer at version {expect!r}")
                + "; nothing was written: re-read it with get_entry() and retry",
            )

    @operation
    async def get_entry(self, key: str) -> KVEntry | None:
        """The value and version under ``key``, or None if absent or expired."""
        found = await self._get_entry(check_key(key))
        if found is None:
            return None
        text, version = found
        return KVEntry(json.loads(text), version)

    @operation
    async def get(self, key: str, default: Any = None) -> Any:
        """The decoded value under ``key``, or ``default`` if absent or expired."""
        text = await self._get(check_key(key))
        return default if text is None else json.loads(text)

    @operation
    async def delete(self, key: str, *, if_version: str | None = None) -> bool:
        """Remove ``key``; True if it existed. A missing key is a no-op.

        With ``if_version=v`` it is removed only if its version is still ``v``;
        otherwise (also when it is missing) KVConflictError is raised.
        """
        check_key(key)
        expect = _check_version(if_version)
        if expect is None:
            return await self._delete(key)
        if not await self._set_if(key, None, None, "", expect):
            raise KVConflictError(
                key,
                f"KV entry {key!r} is no longer at version {expect!r} (or is gone); "
                "nothing was deleted",
            )
        return True

    @operation
    async def exists(self, key: str) -> bool:
        """True if ``key`` holds an unexpired value (even a JSON null)."""
        return await self._get(check_key(key)) is not None

    @operation
    async def health_check(self) -> bool:
        """True if the store can be reached, False if not (never raises for that)."""
        return await self._health()

    @abstractmethod
    async def _set(self, key: str, text: str, ttl: float | None, version: str) -> None: ...
    @abstractmethod
    async def _set_if(
        self, key: str, text: str | None, ttl: float | None, version: str, expect: str
    ) -> bool:
        """One atomic step: if the entry's version is ``expect`` (or, with ``expect``
        ABSENT, there is no live entry), store ``text`` at ``version`` (or delete the
        entry when ``text`` is None) and return True; else change nothing, False."""

    async def _get(self, key: str) -> str | None:
        found = await self._get_entry(key)
        return None if found is None else found[0]

    @abstractmethod
    async def _get_entry(self, key: str) -> tuple[str, str] | None:
        """(JSON text, version) of the live entry, or None."""

    @abstractmethod
    async def _delete(self, key: str) -> bool: ...

    async def _health(self) -> bool:
        return True


__all__ = [
    "ABSENT",
    "KVEntry",
    "KVStore",
    "check_key",
    "check_ttl",
    "content_version",
    "encode_json",
    "new_version",
]
