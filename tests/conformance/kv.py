"""The KV store contract, checked against every provider.

A provider's test module subclasses :class:`KVConformance` and provides ``backend``
(a fresh, empty store, closed afterwards) and may override ``advance`` (let time pass
for TTLs; a real sleep by default).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest

from cloudrift.core.exceptions import BackendClosedError, KVConflictError, KVValueError
from cloudrift.kv import KVStore
from tests.conformance import BackendConformance
from tests.telemetry.support import Recorder

Advance = Callable[[float], Awaitable[None]]


async def increment(store: KVStore, key: str) -> int:
    """Add one to the int under ``key`` with get_entry + set(if_version=), retrying on
    KVConflictError; the new value."""
    while True:
        entry = await store.get_entry(key)
        assert entry is not None
        try:
            await store.set(key, entry.value + 1, if_version=entry.version)
        except KVConflictError:
            await asyncio.sleep(random.uniform(0, 0.002))
            continue
        return int(entry.value) + 1


class KVConformance(BackendConformance):
    """Every sentence of cloudrift.kv.base.KVStore's docstrings, as a test."""

    failing_operation = ("get", ("",), "KVValueError")

    CAPABILITIES: ClassVar[frozenset[str]] = frozenset()

    @pytest.fixture
    def advance(self) -> Advance:
        """Let time pass for TTLs: a real sleep (plus margin) by default."""

        async def sleep(seconds: float) -> None:
            await asyncio.sleep(seconds + 0.05)

        return sleep

    async def test_every_operation_is_one_span(self, backend: KVStore, recorder: Recorder) -> None:
        """Every public KV operation is exactly one CLIENT span named after it (a
        conditional write that loses sets error.type to the conflict)."""
        await self.check_one_span_per_operation(
            backend,
            recorder,
            [
                ("set", lambda: backend.set("span", {"n": 1})),
                ("get", lambda: backend.get("span")),
                ("get_entry", lambda: backend.get_entry("span")),
                ("exists", lambda: backend.exists("span")),
                ("set", lambda: backend.set("span", 2, if_absent=True)),  # KVConflictError
                ("health_check", backend.health_check),
                ("delete", lambda: backend.delete("span")),
            ],
        )

    @pytest.mark.parametrize(
        "value",
        [
            {"user": "42", "roles": ["a", "b"], "n": 1.5, "ok": True, "none": None},
            [1, "two", {"three": 3}],
            "plain text ✓",
            0,
            -7,
            3.25,
            False,
        ],
    )
    async def test_json_values_round_trip(self, backend: KVStore, value: Any) -> None:
        """Any JSON value comes back equal to what was set."""
        await backend.set("k", value)
        assert await backend.get("k") == value

    async def test_get_missing_key_returns_default(self, backend: KVStore) -> None:
        """A missing key answers None, or the default given."""
        assert await backend.get("nope") is None
        assert await backend.get("nope", {"fallback": 1}) == {"fallback": 1}

    async def test_stored_null_exists_and_is_not_the_default(self, backend: KVStore) -> None:
        """A JSON null is a value: exists() is True and get() returns None, not the default."""
        await backend.set("n", None)
        assert await backend.exists("n") is True
        assert await backend.get("n", "default") is None

    async def test_reads_are_copies(self, backend: KVStore) -> None:
        """Mutating a value after set (or after get) does not change what is stored."""
        value = {"items": [1]}
        await backend.set("k", value)
        value["items"].append(2)
        got = await backend.get("k")
        got["items"].append(3)
        assert await backend.get("k") == {"items": [1]}

    async def test_tuples_come_back_as_lists(self, backend: KVStore) -> None:
        """JSON has no tuples: a tuple is stored as a list."""
        await backend.set("t", (1, 2))
        assert await backend.get("t") == [1, 2]

    @pytest.mark.parametrize("bad", [{1, 2}, object(), b"bytes", math.nan, {"x": math.inf}])
    async def test_non_json_value_raises_type_error_and_writes_nothing(
        self, backend: KVStore, bad: object
    ) -> None:
        """A value json cannot encode raises KVValueError (a TypeError); the old value stays."""
        await backend.set("k", {"old": True})
        with pytest.raises(TypeError, match="JSON") as info:
            await backend.set("k", bad)
        assert isinstance(info.value, KVValueError)
        assert await backend.get("k") == {"old": True}

    @pytest.mark.parametrize("bad", ["", 3, None])
    async def test_invalid_key_is_rejected(self, backend: KVStore, bad: object) -> None:
        """Keys must be non-empty str."""
        with pytest.raises(KVValueError, match="keys"):
            await backend.set(bad, 1)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", [0, -3, math.nan, "60"])
    async def test_invalid_ttl_is_rejected(self, backend: KVStore, bad: object) -> None:
        """A ttl that is not a positive number raises KVValueError and writes nothing."""
        with pytest.raises(KVValueError, match="ttl"):
            await backend.set("k", 1, ttl=bad)  # type: ignore[arg-type]
        assert await backend.exists("k") is False

    async def test_value_with_ttl_expires(self, backend: KVStore, advance: Advance) -> None:
        """A record set with a ttl is gone after it."""
        await backend.set("session:abc", {"user": "42"}, ttl=0.1)
        assert await backend.get("session:abc") == {"user": "42"}
        await advance(0.15)
        assert await backend.get("session:abc") is None
        assert await backend.exists("session:abc") is False

    async def test_set_without_ttl_replaces_an_expiring_value(
        self, backend: KVStore, advance: Advance
    ) -> None:
        """Overwriting without ttl makes the record permanent."""
        await backend.set("k", 1, ttl=0.1)
        await backend.set("k", 2)
        await advance(0.15)
        assert await backend.get("k") == 2

    async def test_delete_reports_whether_the_key_existed(self, backend: KVStore) -> None:
        """delete() is True once, then False (a no-op)."""
        await backend.set("k", 1)
        assert await backend.delete("k") is True
        assert await backend.delete("k") is False
        assert await backend.get("k") is None

    async def test_health_check_is_true(self, backend: KVStore) -> None:
        """A working store answers health_check() with True."""
        assert await backend.health_check() is True

    async def test_use_after_close_raises_backend_closed(self, backend: KVStore) -> None:
        """Operations raise BackendClosedError after close(); close is idempotent."""
        await backend.close()
        await backend.close()
        with pytest.raises(BackendClosedError):
            await backend.get("k")
        with pytest.raises(BackendClosedError):
            await backend.set("k", 1)

    # ------------------------------------------------------------ versions
    async def test_get_entry_returns_value_and_a_version_that_changes_on_every_write(
        self, backend: KVStore
    ) -> None:
        """get_entry gives the value and an opaque str version; every write (even of the
        same value) gives a new version; a missing key gives None."""
        assert await backend.get_entry("v") is None
        await backend.set("v", {"a": 1})
        first = await backend.get_entry("v")
        assert first is not None and first.value == {"a": 1}
        assert isinstance(first.version, str) and first.version
        await backend.set("v", {"a": 1})
        second = await backend.get_entry("v")
        assert second is not None and second.version != first.version

    async def test_set_if_version_writes_only_at_that_version(self, backend: KVStore) -> None:
        """set(if_version=current) writes; a stale version raises KVConflictError naming
        the key and leaves the value and version untouched."""
        await backend.set("c", 1)
        stale = await backend.get_entry("c")
        assert stale is not None
        await backend.set("c", 2, if_version=stale.version)
        current = await backend.get_entry("c")
        assert current is not None and current.value == 2
        with pytest.raises(KVConflictError) as info:
            await backend.set("c", 3, if_version=stale.version)
        assert info.value.key == "c"
        assert await backend.get_entry("c") == current

    async def test_set_if_absent_creates_only(self, backend: KVStore) -> None:
        """set(if_absent=True) creates a missing key and refuses an existing one."""
        await backend.set("new", "first", if_absent=True)
        with pytest.raises(KVConflictError, match="already exists"):
            await backend.set("new", "second", if_absent=True)
        assert await backend.get("new") == "first"

    async def test_if_absent_treats_an_expired_entry_as_absent(
        self, backend: KVStore, advance: Advance
    ) -> None:
        """An expired entry does not block set(if_absent=True)."""
        await backend.set("gone", 1, ttl=0.1)
        await advance(0.1)
        await backend.set("gone", 2, if_absent=True)
        assert await backend.get("gone") == 2

    async def test_if_version_on_a_missing_key_conflicts(self, backend: KVStore) -> None:
        """set/delete with if_version on a key that is not there raise KVConflictError
        and create nothing."""
        await backend.set("x", 1)
        entry = await backend.get_entry("x")
        assert entry is not None
        with pytest.raises(KVConflictError):
            await backend.set("missing", 1, if_version=entry.version)
        with pytest.raises(KVConflictError):
            await backend.delete("missing", if_version=entry.version)
        assert not await backend.exists("missing")

    async def test_delete_if_version(self, backend: KVStore) -> None:
        """delete(if_version=stale) raises KVConflictError and keeps the entry;
        delete(if_version=current) removes it."""
        await backend.set("d", 1)
        stale = await backend.get_entry("d")
        await backend.set("d", 2)
        current = await backend.get_entry("d")
        assert stale is not None and current is not None
        with pytest.raises(KVConflictError):
            await backend.delete("d", if_version=stale.version)
        assert await backend.get("d") == 2
        assert await backend.delete("d", if_version=current.version) is True
        assert await backend.get_entry("d") is None

    async def test_conditional_set_keeps_the_ttl_given(
        self, backend: KVStore, advance: Advance
    ) -> None:
        """A conditional set with ttl expires like a plain one."""
        await backend.set("t", 1)
        entry = await backend.get_entry("t")
        assert entry is not None
        await backend.set("t", 2, ttl=0.1, if_version=entry.version)
        await advance(0.1)
        assert await backend.get_entry("t") is None

    async def test_version_arguments_are_checked(self, backend: KVStore) -> None:
        """An empty or non-str if_version, or if_version with if_absent, is refused."""
        for bad in ("", 3):
            with pytest.raises(KVValueError):
                await backend.set("k", 1, if_version=bad)  # type: ignore[arg-type]
        with pytest.raises(KVValueError, match="not both"):
            await backend.set("k", 1, if_version="v", if_absent=True)
        assert not await backend.exists("k")

    async def test_concurrent_compare_and_set_increments_lose_no_update(
        self, backend: KVStore
    ) -> None:
        """20 concurrent get_entry + set(if_version=) increments, retrying on conflict,
        end at exactly 20."""
        await backend.set("counter", 0)
        results = await asyncio.gather(*(increment(backend, "counter") for _ in range(20)))
        assert sorted(results) == list(range(1, 21))
        assert await backend.get("counter") == 20
