"""The KV contract: small string-keyed JSON records with an optional TTL.

Values are anything ``json.dumps`` accepts (dict, list, str, int, float, bool, None),
without NaN/Infinity. A value is serialised once, before anything is written, so
an unserialisable value raises :class:`KVValueError` and leaves the store unchanged.
Reads return a fresh decoded copy: tuples come back as lists, dict keys as str.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from typing import Any

from cloudrift.core.exceptions import KVValueError
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
    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` (JSON) under ``key``, expiring after ``ttl`` seconds if given.

        Raises KVValueError, writing nothing, if the value is not JSON-serialisable.
        """
        text = encode_json(value)
        await self._set(check_key(key), text, check_ttl(ttl))

    @operation
    async def get(self, key: str, default: Any = None) -> Any:
        """The decoded value under ``key``, or ``default`` if absent or expired."""
        text = await self._get(check_key(key))
        return default if text is None else json.loads(text)

    @operation
    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed. A missing key is a no-op."""
        return await self._delete(check_key(key))

    @operation
    async def exists(self, key: str) -> bool:
        """True if ``key`` holds an unexpired value (even a JSON null)."""
        return await self._get(check_key(key)) is not None

    @operation
    async def health_check(self) -> bool:
        """True if the store can be reached, False if not (never raises for that)."""
        return await self._health()

    @abstractmethod
    async def _set(self, key: str, text: str, ttl: float | None) -> None: ...
    @abstractmethod
    async def _get(self, key: str) -> str | None: ...
    @abstractmethod
    async def _delete(self, key: str) -> bool: ...

    async def _health(self) -> bool:
        return True


__all__ = ["KVStore", "check_key", "check_ttl", "encode_json"]
