"""The cache contract, checked against every provider.

A provider's test module subclasses :class:`CacheConformance` and provides the
``backend`` fixture (a fresh, empty cache; closed afterwards). It may override the
``advance`` fixture: an async callable that lets ``seconds`` pass for TTL purposes
(real sleep by default; the memory harness moves a fake clock instead).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import ClassVar

import pytest

from cloudrift.cache import Cache
from cloudrift.core.exceptions import (
    BackendClosedError,
    CacheArgumentError,
    CacheKeyNotFoundError,
    CacheResponseError,
    LockLostError,
    LockNotAcquiredError,
)
from tests.conformance import BackendConformance
from tests.telemetry.support import Recorder

Advance = Callable[[float], Awaitable[None]]


class CacheConformance(BackendConformance):
    """Every sentence of cloudrift.cache.base.Cache's docstrings, as a test."""

    failing_operation = ("get", ("",), "CacheArgumentError")

    CAPABILITIES: ClassVar[frozenset[str]] = frozenset()
    #: Prefix of every key a pipeline test uses. A Redis Cluster runs a pipeline as one
    #: transaction on one node, so its harness sets a hash tag (e.g. ``"{p}:"``).
    PIPELINE_TAG: ClassVar[str] = ""

    @pytest.fixture
    def advance(self) -> Advance:
        """Let time pass for TTLs: a real sleep (plus margin) by default."""

        async def sleep(seconds: float) -> None:
            await asyncio.sleep(seconds + 0.05)

        return sleep

    # --------------------------------------------------------------- telemetry
    async def test_every_operation_is_one_span(self, backend: Cache, recorder: Recorder) -> None:
        """Every public cache operation — the pipeline and the lock's compare-and-set
        included — is exactly one CLIENT span named after it; errors set error.type."""
        tag = self.PIPELINE_TAG
        key, num, hsh, lst = f"{tag}s", f"{tag}n", f"{tag}h", f"{tag}l"
        lock = backend.lock(f"{tag}span", ttl=30)
        await lock.acquire()

        async def pipeline() -> None:
            async with backend.pipeline() as pipe:
                pipe.set(key, b"p")

        await self.check_one_span_per_operation(
            backend,
            recorder,
            [
                ("set", lambda: backend.set(key, b"v")),
                ("get", lambda: backend.get(key)),
                ("exists", lambda: backend.exists(key)),
                ("expire", lambda: backend.expire(key, 60)),
                ("ttl", lambda: backend.ttl(key)),
                ("mset", lambda: backend.mset({key: b"v", num: b"1"})),
                ("mget", lambda: backend.mget([key, num])),
                ("incr", lambda: backend.incr(num)),
                ("decr", lambda: backend.decr(num)),
                ("hset", lambda: backend.hset(hsh, "f", b"v")),
                ("hget", lambda: backend.hget(hsh, "f")),
                ("hgetall", lambda: backend.hgetall(hsh)),
                ("hdel", lambda: backend.hdel(hsh, "f")),
                ("lpush", lambda: backend.lpush(lst, b"a")),
                ("rpush", lambda: backend.rpush(lst, b"b")),
                ("lrange", lambda: backend.lrange(lst, 0, -1)),
                ("pipeline", pipeline),
                ("compare_and_set", lock.release),
                ("ping", backend.ping),
                ("health_check", backend.health_check),
                ("delete", lambda: backend.delete(key)),
                ("get", lambda: backend.get("")),  # CacheArgumentError
            ],
        )

    # ------------------------------------------------------------ values
    async def test_get_returns_the_bytes_that_were_set(self, backend: Cache) -> None:
        """A bytes value comes back byte for byte, NUL and high bytes included."""
        data = bytes(range(256)) + b"\x00end"
        assert await backend.set("k", data) is True
        assert await backend.get("k") == data

    async def test_str_and_bytes_values_are_stored_identically(self, backend: Cache) -> None:
        """A str is stored as its UTF-8 bytes, and get returns bytes either way."""
        await backend.set("s", "héllo ✓")
        await backend.set("b", "héllo ✓".encode())
        got_s, got_b = await backend.get("s"), await backend.get("b")
        assert isinstance(got_s, bytes) and got_s == got_b == "héllo ✓".encode()

    async def test_get_missing_key_returns_none(self, backend: Cache) -> None:
        """get of a key never set answers None, not an error."""
        assert await backend.get("nope") is None

    @pytest.mark.parametrize("bad", [1, 1.5, None, {"a": 1}, ["x"], True])
    async def test_non_bytes_value_is_rejected_before_sending(
        self, backend: Cache, bad: object
    ) -> None:
        """A value that is not bytes or str raises CacheArgumentError and writes nothing."""
        with pytest.raises(CacheArgumentError, match="bytes or str"):
            await backend.set("k", bad)  # type: ignore[arg-type]
        assert await backend.exists("k") is False

    @pytest.mark.parametrize("bad", ["", 5, b"bytes-key", None])
    async def test_invalid_key_is_rejected(self, backend: Cache, bad: object) -> None:
        """Keys must be non-empty str; anything else raises CacheArgumentError."""
        with pytest.raises(CacheArgumentError, match="key"):
            await backend.get(bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "10"])
    async def test_invalid_ttl_is_rejected(self, backend: Cache, bad: object) -> None:
        """A ttl that is not a positive finite number raises CacheArgumentError."""
        with pytest.raises(CacheArgumentError, match="ttl"):
            await backend.set("k", b"v", ttl=bad)  # type: ignore[arg-type]
        assert await backend.exists("k") is False

    # --------------------------------------------------------------- ttl
    async def test_value_with_ttl_expires(self, backend: Cache, advance: Advance) -> None:
        """A value set with a ttl is gone once the ttl has passed."""
        await backend.set("t", b"v", ttl=0.1)
        assert await backend.get("t") == b"v"
        await advance(0.15)
        assert await backend.get("t") is None
        assert await backend.exists("t") is False

    async def test_ttl_reports_remaining_seconds(self, backend: Cache) -> None:
        """ttl() is positive and at most the ttl that was set."""
        await backend.set("t", b"v", ttl=100)
        remaining = await backend.ttl("t")
        assert remaining is not None and 0 < remaining <= 100

    async def test_ttl_of_key_without_expiry_is_none(self, backend: Cache) -> None:
        """ttl() is None for a key that never expires."""
        await backend.set("t", b"v")
        assert await backend.ttl("t") is None

    async def test_ttl_of_missing_key_raises_key_not_found(self, backend: Cache) -> None:
        """ttl() of a missing key raises CacheKeyNotFoundError naming the key."""
        with pytest.raises(CacheKeyNotFoundError, match="ghost") as info:
            await backend.ttl("ghost")
        assert info.value.key == "ghost"

    async def test_plain_set_clears_a_previous_ttl(self, backend: Cache) -> None:
        """Overwriting without ttl makes the key permanent again."""
        await backend.set("t", b"v", ttl=100)
        await backend.set("t", b"w")
        assert await backend.ttl("t") is None

    async def test_expire_sets_a_ttl_and_reports_missing_keys(
        self, backend: Cache, advance: Advance
    ) -> None:
        """expire() is True for an existing key (which then expires), False for a missing one."""
        assert await backend.expire("missing", 10) is False
        await backend.set("e", b"v")
        assert await backend.expire("e", 0.1) is True
        await advance(0.15)
        assert await backend.exists("e") is False

    # ---------------------------------------------------------------- nx
    async def test_set_nx_writes_only_when_absent(self, backend: Cache) -> None:
        """set(nx=True) returns True and writes once, then False and keeps the first value."""
        assert await backend.set("lock", b"a", nx=True) is True
        assert await backend.set("lock", b"b", nx=True) is False
        assert await backend.get("lock") == b"a"

    async def test_set_nx_succeeds_after_the_holder_expired(
        self, backend: Cache, advance: Advance
    ) -> None:
        """A lock taken with nx and a ttl can be taken again after it expires."""
        assert await backend.set("lock", b"a", ttl=0.1, nx=True) is True
        await advance(0.15)
        assert await backend.set("lock", b"b", nx=True) is True
        assert await backend.get("lock") == b"b"

    async def test_only_one_concurrent_nx_set_wins(self, backend: Cache) -> None:
        """Of 10 concurrent set(nx=True) calls on one key exactly one returns True."""
        results = await asyncio.gather(*(backend.set("once", str(i), nx=True) for i in range(10)))
        assert results.count(True) == 1

    # ------------------------------------------------------ delete/exists
    async def test_delete_reports_whether_the_key_existed(self, backend: Cache) -> None:
        """delete() is True for an existing key, False (a no-op) for a missing one."""
        await backend.set("d", b"v")
        assert await backend.delete("d") is True
        assert await backend.get("d") is None
        assert await backend.delete("d") is False

    async def test_delete_removes_keys_of_any_type(self, backend: Cache) -> None:
        """delete() removes hashes and lists too."""
        await backend.hset("h", "f", b"v")
        await backend.lpush("l", b"x")
        assert await backend.delete("h") and await backend.delete("l")
        assert not await backend.exists("h") and not await backend.exists("l")

    async def test_exists_sees_every_type(self, backend: Cache) -> None:
        """exists() is True for strings, hashes and lists, False for missing keys."""
        await backend.set("s", b"v")
        await backend.hset("h", "f", b"v")
        await backend.rpush("l", b"v")
        assert [await backend.exists(k) for k in ("s", "h", "l", "x")] == [
            True,
            True,
            True,
            False,
        ]

    # -------------------------------------------------------- mget / mset
    async def test_mset_then_mget_in_order_with_none_for_missing(self, backend: Cache) -> None:
        """mget answers in the order asked, None where a key is absent."""
        await backend.mset({"a": b"1", "b": "2"})
        assert await backend.mget(["b", "missing", "a"]) == [b"2", None, b"1"]

    async def test_mset_with_ttl_expires_every_item(self, backend: Cache, advance: Advance) -> None:
        """mset(ttl=) gives every item that ttl."""
        await backend.mset({"a": b"1", "b": b"2"}, ttl=0.1)
        await advance(0.15)
        assert await backend.mget(["a", "b"]) == [None, None]

    async def test_mget_answers_none_for_keys_of_another_type(self, backend: Cache) -> None:
        """mget does not fail on a hash key: it answers None there, as Redis does."""
        await backend.hset("h", "f", b"v")
        await backend.set("s", b"v")
        assert await backend.mget(["h", "s"]) == [None, b"v"]

    async def test_set_replaces_a_key_of_another_type(self, backend: Cache) -> None:
        """A plain set over a hash replaces it; set(nx=True) over it writes nothing."""
        await backend.hset("h", "f", b"v")
        assert await backend.set("h", b"x", nx=True) is False
        await backend.set("h", b"x")
        assert await backend.get("h") == b"x"

    async def test_mget_of_a_single_string_is_rejected(self, backend: Cache) -> None:
        """mget("abc") is a mistake (it would read keys a, b, c) and raises."""
        with pytest.raises(CacheArgumentError, match="sequence"):
            await backend.mget("abc")

    async def test_mget_and_mset_of_nothing_are_no_ops(self, backend: Cache) -> None:
        """Empty inputs send nothing and answer empty."""
        assert await backend.mget([]) == []
        await backend.mset({})

    # --------------------------------------------------------- counters
    async def test_incr_and_decr_start_from_zero(self, backend: Cache) -> None:
        """incr of a missing key gives 1; amounts add and subtract."""
        assert await backend.incr("n") == 1
        assert await backend.incr("n", 10) == 11
        assert await backend.decr("n") == 10
        assert await backend.decr("n", 15) == -5
        assert await backend.get("n") == b"-5"

    async def test_incr_of_a_non_integer_raises_response_error(self, backend: Cache) -> None:
        """incr of a value that is not an integer raises CacheResponseError."""
        await backend.set("n", b"abc")
        with pytest.raises(CacheResponseError, match="not an integer"):
            await backend.incr("n")

    async def test_incr_keeps_the_ttl(self, backend: Cache) -> None:
        """A rate-limit counter keeps its window: incr does not clear the ttl."""
        await backend.set("n", b"1", ttl=100)
        await backend.incr("n")
        assert await backend.ttl("n") is not None

    async def test_concurrent_increments_are_not_lost(self, backend: Cache) -> None:
        """20 concurrent incr calls give exactly 20."""
        await asyncio.gather(*(backend.incr("hits") for _ in range(20)))
        assert await backend.get("hits") == b"20"

    # ----------------------------------------------------------- hashes
    async def test_hash_fields_round_trip(self, backend: Cache) -> None:
        """hset/hget/hgetall: str or bytes in; field names and values come back as bytes."""
        assert await backend.hset("user:1", "name", "Alice") is True
        assert await backend.hset("user:1", "name", "Bob") is False
        await backend.hset("user:1", b"age", b"42")
        assert await backend.hget("user:1", "name") == b"Bob"
        assert await backend.hget("user:1", "nope") is None
        assert await backend.hget("user:1", b"name") == b"Bob"
        assert await backend.hgetall("user:1") == {b"name": b"Bob", b"age": b"42"}

    async def test_hgetall_of_missing_key_is_empty(self, backend: Cache) -> None:
        """hgetall of a missing key is {}."""
        assert await backend.hgetall("none") == {}

    async def test_hdel_removes_a_field(self, backend: Cache) -> None:
        """hdel is True when the field existed; the last field's removal removes the key."""
        await backend.hset("h", "f", b"v")
        assert await backend.hdel("h", "f") is True
        assert await backend.hdel("h", "f") is False
        assert await backend.exists("h") is False

    async def test_wrong_type_raises_response_error(self, backend: Cache) -> None:
        """Using a string as a hash (or a hash as a string) raises CacheResponseError."""
        await backend.set("s", b"v")
        await backend.hset("h", "f", b"v")
        with pytest.raises(CacheResponseError, match="WRONGTYPE"):
            await backend.hset("s", "f", b"v")
        with pytest.raises(CacheResponseError, match="WRONGTYPE"):
            await backend.get("h")
        with pytest.raises(CacheResponseError, match="WRONGTYPE"):
            await backend.lpush("h", b"x")

    # ------------------------------------------------------------- lists
    async def test_lpush_prepends_one_by_one_like_redis(self, backend: Cache) -> None:
        """lpush("jobs", "job-1", "job-2") leaves job-2 first; it returns the new length."""
        assert await backend.lpush("jobs", "job-1", "job-2") == 2
        assert await backend.lrange("jobs", 0, 99) == [b"job-2", b"job-1"]

    async def test_rpush_appends(self, backend: Cache) -> None:
        """rpush keeps insertion order at the tail."""
        await backend.rpush("q", b"a", b"b")
        assert await backend.rpush("q", "c") == 3
        assert await backend.lrange("q", 0, -1) == [b"a", b"b", b"c"]

    async def test_lrange_bounds_are_inclusive_and_may_be_negative(self, backend: Cache) -> None:
        """lrange(1, -2) drops the first and last items; out of range answers []."""
        await backend.rpush("q", *[str(i) for i in range(5)])
        assert await backend.lrange("q", 1, -2) == [b"1", b"2", b"3"]
        assert await backend.lrange("q", -2, -1) == [b"3", b"4"]
        assert await backend.lrange("q", 10, 20) == []
        assert await backend.lrange("q", 0, -10) == []
        assert await backend.lrange("q", -10, 0) == [b"0"]
        assert await backend.lrange("missing", 0, -1) == []

    async def test_push_of_nothing_is_rejected(self, backend: Cache) -> None:
        """lpush with no values raises CacheArgumentError."""
        with pytest.raises(CacheArgumentError, match="at least one"):
            await backend.lpush("q")

    # ---------------------------------------------------------- pipeline
    async def test_pipeline_applies_every_command_and_returns_results(self, backend: Cache) -> None:
        """Queued commands run together on exit; pipe.results holds each result in order."""
        t = self.PIPELINE_TAG
        async with backend.pipeline() as pipe:
            pipe.set(f"{t}a", b"1").incr(f"{t}n", 5).hset(f"{t}h", "f", "v")
            pipe.rpush(f"{t}l", b"x", b"y")
            pipe.expire(f"{t}a", 100)
            pipe.delete(f"{t}missing")
            pipe.decr(f"{t}n")
            assert await backend.get(f"{t}a") is None  # nothing sent inside the block
        assert pipe.results == [True, 5, True, 2, True, False, 4]
        assert await backend.get(f"{t}a") == b"1"
        assert await backend.get(f"{t}n") == b"4"
        assert await backend.hgetall(f"{t}h") == {b"f": b"v"}

    async def test_pipeline_sends_nothing_when_the_block_raises(self, backend: Cache) -> None:
        """If the block raises, no queued command reaches the cache."""
        t = self.PIPELINE_TAG

        async def queue_then_fail() -> None:
            async with backend.pipeline() as pipe:
                pipe.set(f"{t}a", b"1")
                pipe.incr(f"{t}n")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await queue_then_fail()
        assert await backend.mget([f"{t}a", f"{t}n"]) == [None, None]

    async def test_pipeline_is_atomic_for_other_clients(self, backend: Cache) -> None:
        """Concurrent readers never see half a pipeline: both keys or neither."""
        t = self.PIPELINE_TAG
        seen: list[tuple[bytes | None, bytes | None]] = []

        async def reader() -> None:
            for _ in range(20):
                a, b = await backend.mget([f"{t}x", f"{t}y"])
                seen.append((a, b))
                await asyncio.sleep(0)

        async def writer() -> None:
            for i in range(20):
                async with backend.pipeline() as pipe:
                    pipe.set(f"{t}x", str(i)).set(f"{t}y", str(i))
                await asyncio.sleep(0)

        await asyncio.gather(reader(), writer())
        assert all(a == b for a, b in seen)

    async def test_pipeline_command_error_is_raised_after_the_batch(self, backend: Cache) -> None:
        """A command the server refuses raises CacheResponseError; as on Redis, the rest ran."""
        t = self.PIPELINE_TAG
        await backend.set(f"{t}s", b"not-a-number")
        with pytest.raises(CacheResponseError):
            async with backend.pipeline() as pipe:
                pipe.set(f"{t}before", b"1").incr(f"{t}s").set(f"{t}after", b"2")
        assert await backend.mget([f"{t}before", f"{t}after"]) == [b"1", b"2"]

    async def test_non_transactional_pipeline_runs_every_command_in_order(
        self, backend: Cache
    ) -> None:
        """pipeline(transaction=False) runs every queued command, keys in any slot, and
        pipe.results holds each result in order."""
        async with backend.pipeline(transaction=False) as pipe:
            pipe.set("a", b"1").incr("n", 5).rpush("l", b"x", b"y").delete("missing")
            pipe.decr("n").set("b", "2", ttl=60)
            assert await backend.get("a") is None  # nothing sent inside the block
        assert pipe.results == [True, 5, 2, False, 4, True]
        assert await backend.mget(["a", "n", "b"]) == [b"1", b"4", b"2"]
        assert await backend.lrange("l", 0, -1) == [b"x", b"y"]

    async def test_non_transactional_pipeline_error_is_raised_after_the_batch(
        self, backend: Cache
    ) -> None:
        """A refused command in pipeline(transaction=False) raises CacheResponseError after
        the others ran."""
        await backend.set("s", b"not-a-number")
        with pytest.raises(CacheResponseError):
            async with backend.pipeline(transaction=False) as pipe:
                pipe.set("before", b"1").incr("s").set("after", b"2")
        assert await backend.mget(["before", "after"]) == [b"1", b"2"]

    async def test_pipeline_transaction_must_be_a_bool(self, backend: Cache) -> None:
        """pipeline(transaction="no") raises CacheArgumentError before anything is queued."""
        with pytest.raises(CacheArgumentError, match="transaction must be True or False"):
            async with backend.pipeline(transaction="no"):  # type: ignore[arg-type]
                pass

    async def test_pipeline_validates_while_queueing(self, backend: Cache) -> None:
        """A bad value raises when queued, so the block fails and nothing is sent."""
        t = self.PIPELINE_TAG

        async def queue_bad_value() -> None:
            async with backend.pipeline() as pipe:
                pipe.set(f"{t}ok", b"1")
                pipe.set(f"{t}bad", 42)  # type: ignore[arg-type]

        with pytest.raises(CacheArgumentError, match="bytes or str"):
            await queue_bad_value()
        assert await backend.exists(f"{t}ok") is False

    # ----------------------------------------------------------- control
    async def test_ping_and_health_check_answer_true(self, backend: Cache) -> None:
        """A reachable cache answers ping() and health_check() with True."""
        assert await backend.ping() is True
        assert await backend.health_check() is True

    async def test_use_after_close_raises_backend_closed(self, backend: Cache) -> None:
        """Every operation and health_check raise BackendClosedError after close()."""
        await backend.close()
        await backend.close()  # idempotent
        with pytest.raises(BackendClosedError):
            await backend.get("k")
        with pytest.raises(BackendClosedError):
            await backend.set("k", b"v")
        with pytest.raises(BackendClosedError):
            await backend.health_check()
        with pytest.raises(BackendClosedError):
            async with backend.pipeline():
                pass

    async def test_async_with_closes_the_backend(self, backend: Cache) -> None:
        """Leaving ``async with`` closes the cache."""
        async with backend as cache:
            await cache.set("k", b"v")
        assert backend.closed

    # ------------------------------------------------------------ locks
    async def test_lock_gives_mutual_exclusion(self, backend: Cache) -> None:
        """10 tasks incrementing a counter under one lock (with wait) end exact, and
        never two are inside at once."""
        await backend.set("n", b"0")
        inside = 0
        most = 0

        async def work() -> None:
            nonlocal inside, most
            async with backend.lock("m", ttl=10, wait=10):
                inside += 1
                most = max(most, inside)
                value = int(await backend.get("n") or b"0")
                await asyncio.sleep(0.001)
                await backend.set("n", str(value + 1))
                inside -= 1

        await asyncio.gather(*(work() for _ in range(10)))
        assert await backend.get("n") == b"10"
        assert most == 1

    async def test_a_held_lock_is_refused_at_once_or_after_wait(self, backend: Cache) -> None:
        """While held, acquiring raises LockNotAcquiredError (at once without wait, after
        polling with wait); once released it can be taken."""
        first = backend.lock("busy", ttl=10)
        await first.acquire()
        with pytest.raises(LockNotAcquiredError) as info:
            await backend.lock("busy", ttl=10).acquire()
        assert info.value.name == "busy"
        with pytest.raises(LockNotAcquiredError, match="waited"):
            await backend.lock("busy", ttl=10, wait=0.05).acquire()
        await first.release()
        async with backend.lock("busy", ttl=10) as second:
            assert second.held

    async def test_waiting_acquire_gets_the_lock_once_released(self, backend: Cache) -> None:
        """acquire(wait=) keeps polling and takes the lock as soon as the owner releases."""
        owner = backend.lock("handoff", ttl=10)
        await owner.acquire()
        waiter = asyncio.create_task(backend.lock("handoff", ttl=10, wait=10).acquire())
        await asyncio.sleep(0.03)
        assert not waiter.done()
        await owner.release()
        await asyncio.wait_for(waiter, 5)

    async def test_an_expired_lock_is_free_and_its_late_release_raises(
        self, backend: Cache, advance: Advance
    ) -> None:
        """After its ttl another owner can take the lock; the first owner's release then
        raises LockLostError and leaves the new owner's lock in place."""
        first = backend.lock("exp", ttl=0.2)
        await first.acquire()
        await advance(0.2)
        second = backend.lock("exp", ttl=10)
        await second.acquire()
        with pytest.raises(LockLostError):
            await first.release()
        with pytest.raises(LockNotAcquiredError):
            await backend.lock("exp", ttl=10).acquire()
        await second.release()

    async def test_only_the_owner_can_release(self, backend: Cache) -> None:
        """A lock object that does not hold the lock cannot release it (the owner's lock
        stays), and releasing twice is refused."""
        owner = backend.lock("own", ttl=10)
        await owner.acquire()
        other = backend.lock("own", ttl=10)
        with pytest.raises(CacheArgumentError, match="not held"):
            await other.release()
        assert await backend.exists("cloudrift:lock:own")
        await owner.release()
        with pytest.raises(CacheArgumentError, match="not held"):
            await owner.release()

    async def test_extend_keeps_the_lock(self, backend: Cache, advance: Advance) -> None:
        """extend(ttl) pushes the expiry out, so the lock is still held after the first
        ttl; extending an expired lock raises LockLostError."""
        lock = backend.lock("ext", ttl=0.2)
        await lock.acquire()
        await lock.extend(10)
        await advance(0.2)
        with pytest.raises(LockNotAcquiredError):
            await backend.lock("ext", ttl=10).acquire()
        await lock.release()
        short = backend.lock("ext", ttl=0.2)
        await short.acquire()
        await advance(0.2)
        with pytest.raises(LockLostError):
            await short.extend()
        assert not short.held

    async def test_lock_arguments_are_checked(self, backend: Cache) -> None:
        """A missing or non-positive ttl, a negative wait or an empty name is refused."""
        for bad in (0, -1, None):
            with pytest.raises(CacheArgumentError):
                backend.lock("x", ttl=bad)  # type: ignore[arg-type]
        with pytest.raises(CacheArgumentError):
            backend.lock("x", ttl=1, wait=-1)
        with pytest.raises(CacheArgumentError):
            backend.lock("", ttl=1)
