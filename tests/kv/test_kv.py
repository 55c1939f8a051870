"""Every KV provider passes the KV contract: memory, local file, and cache-backed
(over the memory cache and over the Redis provider on a real redis-server)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudrift.cache import get_cache
from cloudrift.core.exceptions import ConfigurationError, KVConflictError, KVError
from cloudrift.kv import CacheKV, FileKV, KVStore, MemoryKV, get_kv
from tests.clock import FakeClock
from tests.conformance.kv import Advance, KVConformance
from tests.servers.redis import RedisServer


class TestMemoryKV(KVConformance):
    """Conformance of get_kv("memory") on a fake clock."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        """The fake clock of this store."""
        return FakeClock()

    @pytest.fixture
    def advance(self, clock: FakeClock) -> Advance:
        """Time passes by moving the fake clock."""
        return clock.advance

    @pytest.fixture
    async def backend(self, clock: FakeClock) -> AsyncIterator[KVStore]:
        """A fresh memory store."""
        store = MemoryKV(clock=clock)
        yield store
        await store.close()


class TestFileKV(KVConformance):
    """Conformance of get_kv("file") on a fake wall clock."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        """The fake wall clock of this store."""
        return FakeClock()

    @pytest.fixture
    def advance(self, clock: FakeClock) -> Advance:
        """Time passes by moving the fake clock."""
        return clock.advance

    @pytest.fixture
    async def backend(self, tmp_path: Path, clock: FakeClock) -> AsyncIterator[KVStore]:
        """A store in a fresh temporary file."""
        store = FileKV(path=tmp_path / "kv.json", clock=clock)
        yield store
        await store.close()


class TestCacheKVOnMemoryCache(KVConformance):
    """Conformance of get_kv("cache") over the memory cache."""

    @pytest.fixture
    async def backend(self) -> AsyncIterator[KVStore]:
        """A KV store over a fresh memory cache it owns."""
        store = get_kv("cache", cache=get_cache("memory"), close_cache=True)
        yield store
        await store.close()


class TestCacheKVOnRedis(KVConformance):
    """Conformance of get_kv("cache") over the Redis provider on a real redis-server."""

    @pytest.fixture
    async def backend(self, redis: RedisServer) -> AsyncIterator[KVStore]:
        """A KV store over a Redis cache it owns."""
        store = get_kv(
            "cache", cache=get_cache("redis", "from_url", url=redis.url), close_cache=True
        )
        yield store
        await store.close()


# ------------------------------------------------------------------- file store


async def test_file_store_survives_a_restart(tmp_path: Path) -> None:
    """A second store on the same file (a restarted process) reads what the first wrote."""
    path = tmp_path / "kv.json"
    async with get_kv("file", path=path) as first:
        await first.set("session:abc", {"user": "42"}, ttl=3600)
        await first.set("config", [1, 2])
    async with get_kv("file", path=path) as second:
        assert await second.get("session:abc") == {"user": "42"}
        assert await second.get("config") == [1, 2]


async def test_file_ttl_keeps_counting_across_restarts(tmp_path: Path) -> None:
    """A record that expires while the process is down is gone after the restart."""
    path = tmp_path / "kv.json"
    clock = FakeClock()
    async with FileKV(path=path, clock=clock) as first:
        await first.set("short", 1, ttl=60)
        await first.set("long", 2, ttl=3600)
    clock.now += 120  # the process was down for two minutes
    async with FileKV(path=path, clock=clock) as second:
        assert await second.get("short") is None
        assert await second.get("long") == 2


async def test_file_writes_are_atomic_and_leave_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails before the rename leaves the previous file intact and no temp file."""
    path = tmp_path / "kv.json"
    store = FileKV(path=path)
    await store.set("a", 1)
    before = path.read_text()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KVError, match="disk full"):
        await store.set("b", 2)
    monkeypatch.undo()
    assert path.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["kv.json", "kv.json.lock"]
    assert await store.get("b") is None  # memory state not changed either
    assert json.loads(before)["a"]["v"] == "1"


async def test_corrupt_file_raises_kv_error_naming_the_file(tmp_path: Path) -> None:
    """A file that is not JSON gives KVError with its path; health_check is False."""
    path = tmp_path / "kv.json"
    path.write_text("{not json")
    store = get_kv("file", path=path)
    with pytest.raises(KVError, match=r"kv\.json"):
        await store.get("k")
    assert await store.health_check() is False


def test_file_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    """path= pointing at a folder raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="directory"):
        get_kv("file", path=tmp_path)


# ------------------------------------------------------------------ cache store


async def test_cache_store_uses_the_prefix_and_ttl_in_the_cache(redis: RedisServer) -> None:
    """Records live under prefix+key as "\x01<version>\x01<JSON text>", with the TTL
    set in Redis."""
    cache = get_cache("redis", "from_url", url=redis.url)
    store = CacheKV(cache=cache, prefix="app:")
    await store.set("session:abc", {"user": "42"}, ttl=3600)
    entry = await store.get_entry("session:abc")
    assert entry is not None
    with redis.client() as admin:
        expected = f"\x01{entry.version}\x01" + '{"user":"42"}'
        assert admin.get("app:session:abc") == expected.encode()
        assert 0 < admin.ttl("app:session:abc") <= 3600
    await store.close()
    assert not cache.closed  # handed in, so left open
    await cache.close()


def test_cache_store_needs_a_cache() -> None:
    """get_kv("cache") without a cloudrift cache raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="cache="):
        get_kv("cache", cache="redis://localhost")


def test_unknown_kv_provider_lists_valid_ones() -> None:
    """A typo in the provider name lists memory, file and cache."""
    with pytest.raises(ConfigurationError, match="cache, file, memory"):
        get_kv("memroy")


def test_repr_shows_provider_and_location(tmp_path: Path) -> None:
    """repr() names the provider and where the data lives."""
    assert repr(MemoryKV()) == "<MemoryKV provider='memory' location='in-process'>"
    assert str(tmp_path) in repr(get_kv("file", path=tmp_path / "x.json"))


@pytest.mark.parametrize(("provider", "needs"), [("file", "path="), ("cache", "cache=")])
def test_missing_required_option_raises_configuration_error(provider: str, needs: str) -> None:
    """get_kv("file") without path, or get_kv("cache") without cache, says what to pass."""
    with pytest.raises(ConfigurationError, match=needs):
        get_kv(provider)


async def test_cache_store_reads_and_replaces_a_record_written_before_versions(
    redis: RedisServer,
) -> None:
    """A plain JSON record (the format before versions) reads, has a version, and a
    set(if_version=) on it works; a changed record refuses the old version."""
    store = get_kv("cache", cache=get_cache("redis", "from_url", url=redis.url), prefix="p:")
    with redis.client() as admin:
        admin.set("p:old", b'{"n":1}')
    entry = await store.get_entry("old")
    assert entry is not None and entry.value == {"n": 1}
    await store.set("old", {"n": 2}, if_version=entry.version)
    assert await store.get("old") == {"n": 2}
    with pytest.raises(KVConflictError):
        await store.set("old", {"n": 3}, if_version=entry.version)
    await store.close()


_FILE_INCREMENTER = """
import asyncio, sys
from cloudrift.kv import get_kv
from tests.conformance.kv import increment

async def main() -> None:
    store = get_kv("file", path=sys.argv[1])
    await asyncio.gather(*(increment(store, "counter") for _ in range(10)))

asyncio.run(main())
"""


def _run_file_incrementers(path: Path, count: int) -> list[int]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _FILE_INCREMENTER, str(path)],
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(count)
    ]
    return [child.wait(timeout=60) for child in children]


async def test_file_store_compare_and_set_from_two_processes_loses_no_update(
    tmp_path: Path,
) -> None:
    """Two OS processes each doing 10 concurrent if_version increments on one file end
    at exactly 20 (the compare and the write run under an flock, on a fresh read)."""
    path = tmp_path / "kv.json"
    store = FileKV(path=path)
    await store.set("counter", 0)
    assert await asyncio.to_thread(_run_file_incrementers, path, 2) == [0, 0]
    assert await store.get("counter") == 20
