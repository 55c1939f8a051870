"""One table of edge cases run against the memory cache and a real redis-server side by
side: the memory cache must answer every one exactly as Redis does (same result, or the
same cloudrift error class)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from cloudrift.cache import Cache, get_cache
from cloudrift.cache.memory import MemoryCache
from tests.servers.redis import RedisServer

Case = Callable[[Cache], Awaitable[Any]]

# Stored values INCR must refuse or accept, as Redis's string2ll does: no spaces, no
# sign but '-', no leading zeros, no '_', ASCII digits only, within a signed 64-bit int.
INCR_VALUES = [
    b"7",
    b"-7",
    b"0",
    b"-0",
    b" 7",
    b"7 ",
    b"\t7",
    b"7\n",
    b"+7",
    b"07",
    b"00",
    b"-07",
    b"1_000",
    b"1e3",
    b"7.0",
    b"0x10",
    b"",
    b"-",
    b"\xff",
    "\u0663".encode(),  # an Arabic-Indic digit three: Python's int() takes it, Redis does not
    "\uff17".encode(),  # a full-width digit seven
    b"9223372036854775806",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"123456789012345678901",
]


def _incr(value: bytes, amount: int = 1) -> Case:
    async def case(cache: Cache) -> Any:
        await cache.set("n", value)
        result = await cache.incr("n", amount)
        return result, await cache.get("n")

    return case


async def _incr_overflow_down(cache: Cache) -> Any:
    await cache.set("n", b"-9223372036854775808")
    return await cache.decr("n")


async def _incr_amount_too_big(cache: Cache) -> Any:
    return await cache.incr("n", 2**63)


async def _incr_on_hash(cache: Cache) -> Any:
    await cache.hset("h", "f", "v")
    return await cache.incr("h")


async def _incr_keeps_value_on_error(cache: Cache) -> Any:
    await cache.set("n", b" 7")
    try:
        await cache.incr("n")
    except Exception as exc:
        return type(exc).__name__, await cache.get("n")
    return None


async def _get_on_list(cache: Cache) -> Any:
    await cache.lpush("l", "a")
    return await cache.get("l")


async def _lpush_on_string(cache: Cache) -> Any:
    await cache.set("s", "v")
    return await cache.lpush("s", "a")


async def _hset_on_list(cache: Cache) -> Any:
    await cache.rpush("l", "a")
    return await cache.hset("l", "f", "v")


async def _mget_mixed_types(cache: Cache) -> Any:
    await cache.set("s", "v")
    await cache.hset("h", "f", "v")
    await cache.rpush("l", "a")
    return await cache.mget(["s", "h", "l", "missing"])


def _lrange(start: int, stop: int) -> Case:
    async def case(cache: Cache) -> Any:
        await cache.rpush("l", "a", "b", "c", "d")
        return await cache.lrange("l", start, stop)

    return case


async def _lpush_order(cache: Cache) -> Any:
    await cache.lpush("l", "a", "b", "c")
    return await cache.lrange("l", 0, -1)


async def _hdel_last_field_removes_key(cache: Cache) -> Any:
    await cache.hset("h", "f", "v")
    return await cache.hdel("h", "f"), await cache.exists("h"), await cache.hgetall("h")


async def _hset_existing_field(cache: Cache) -> Any:
    return await cache.hset("h", "f", "1"), await cache.hset("h", "f", "2")


async def _ttl_missing(cache: Cache) -> Any:
    return await cache.ttl("missing")


async def _ttl_without_expiry(cache: Cache) -> Any:
    await cache.set("k", "v")
    return await cache.ttl("k")


async def _expire_missing(cache: Cache) -> Any:
    return await cache.expire("missing", 10)


async def _set_nx_existing(cache: Cache) -> Any:
    await cache.set("k", "v")
    return await cache.set_if_absent("k", "w"), await cache.get("k")


async def _incr_keeps_ttl(cache: Cache) -> Any:
    await cache.set("n", "1", ttl=100)
    await cache.incr("n")
    ttl = await cache.ttl("n")
    return ttl is not None and 0 < ttl <= 100


async def _set_drops_ttl(cache: Cache) -> Any:
    await cache.set("k", "1", ttl=100)
    await cache.set("k", "2")
    return await cache.ttl("k")


async def _delete_missing(cache: Cache) -> Any:
    return await cache.delete("missing")


async def _delete_any_type(cache: Cache) -> Any:
    await cache.rpush("l", "a")
    return await cache.delete("l"), await cache.exists("l")


async def _pipeline_error_keeps_others(cache: Cache) -> Any:
    await cache.set("bad", b"x")
    try:
        async with cache.pipeline() as pipe:
            pipe.set("a", "1")
            pipe.incr("bad")
            pipe.set("b", "2")
    except Exception as exc:
        return type(exc).__name__, await cache.get("a"), await cache.get("b")
    return None


def _on_string(op: Callable[[Cache], Awaitable[Any]]) -> Case:
    async def case(cache: Cache) -> Any:
        await cache.set("s", "v")
        return await op(cache)

    return case


async def _decr_missing(cache: Cache) -> Any:
    return await cache.decr("n", 5), await cache.get("n")


async def _hget_missing(cache: Cache) -> Any:
    await cache.hset("h", "f", "v")
    return await cache.hget("h", "other"), await cache.hget("missing", "f")


async def _mset_then_mget(cache: Cache) -> Any:
    await cache.mset({"a": "1", "b": b"\x00\xff"})
    return await cache.mget(["a", "b", "c"])


async def _mset_overwrites_types(cache: Cache) -> Any:
    await cache.rpush("l", "x")
    await cache.mset({"l": "now a string"})
    return await cache.get("l")


async def _expire_on_list(cache: Cache) -> Any:
    await cache.rpush("l", "x")
    return await cache.expire("l", 100), (await cache.ttl("l") or 0) > 0


async def _set_overwrites_other_type(cache: Cache) -> Any:
    await cache.hset("h", "f", "v")
    await cache.set("h", "plain")
    return await cache.get("h")


async def _empty_value_roundtrip(cache: Cache) -> Any:
    await cache.set("e", b"")
    return await cache.get("e"), await cache.exists("e")


async def _binary_hash_fields(cache: Cache) -> Any:
    await cache.hset("h", b"\xff", b"\x00")
    await cache.hset("h", "é", "ü")
    return await cache.hgetall("h")


CASES: dict[str, Case] = {
    **{f"incr stored {v!r}": _incr(v) for v in INCR_VALUES},
    "decr below the int64 minimum": _incr_overflow_down,
    "incr by 2**63": _incr_amount_too_big,
    "incr on a hash": _incr_on_hash,
    "failed incr leaves the value": _incr_keeps_value_on_error,
    "incr keeps the ttl": _incr_keeps_ttl,
    "set drops the ttl": _set_drops_ttl,
    "get on a list": _get_on_list,
    "lpush on a string": _lpush_on_string,
    "hset on a list": _hset_on_list,
    "mget over mixed types": _mget_mixed_types,
    "lpush order": _lpush_order,
    **{
        f"lrange {start} {stop}": _lrange(start, stop)
        for start, stop in [
            (0, -1),
            (1, 2),
            (2, 1),
            (-2, -1),
            (-100, 1),
            (-100, -50),
            (3, 100),
            (4, 5),
            (-1, -2),
            (0, 0),
        ]
    },
    "hdel of the last field removes the key": _hdel_last_field_removes_key,
    "hset of an existing field": _hset_existing_field,
    "ttl of a missing key": _ttl_missing,
    "ttl without expiry": _ttl_without_expiry,
    "expire of a missing key": _expire_missing,
    "set_if_absent on an existing key": _set_nx_existing,
    "delete of a missing key": _delete_missing,
    "delete of a list": _delete_any_type,
    "pipeline with a failing command": _pipeline_error_keeps_others,
    "hgetall on a string": _on_string(lambda c: c.hgetall("s")),
    "hget on a string": _on_string(lambda c: c.hget("s", "f")),
    "hdel on a string": _on_string(lambda c: c.hdel("s", "f")),
    "lrange on a string": _on_string(lambda c: c.lrange("s", 0, -1)),
    "rpush on a string": _on_string(lambda c: c.rpush("s", "x")),
    "ttl of a string without expiry": _on_string(lambda c: c.ttl("s")),
    "decr of a missing key": _decr_missing,
    "hget of a missing field or key": _hget_missing,
    "mset then mget": _mset_then_mget,
    "mset overwrites another type": _mset_overwrites_types,
    "expire on a list": _expire_on_list,
    "set overwrites another type": _set_overwrites_other_type,
    "empty value": _empty_value_roundtrip,
    "binary hash fields": _binary_hash_fields,
}


async def _outcome(case: Case, cache: Cache) -> tuple[str, Any]:
    try:
        return "ok", await case(cache)
    except Exception as exc:
        return "error", type(exc).__name__


@pytest.fixture
async def real(redis: RedisServer) -> AsyncIterator[Cache]:
    """A redis cache on the session's (flushed) redis-server."""
    cache = get_cache("redis", "from_url", url=redis.url)
    yield cache
    await cache.close()


@pytest.mark.parametrize("name", list(CASES))
async def test_memory_cache_answers_like_redis(name: str, real: Cache) -> None:
    """The memory cache gives the same result (or error class) as a real redis-server."""
    memory = MemoryCache()
    try:
        expected = await _outcome(CASES[name], real)
        assert await _outcome(CASES[name], memory) == expected
    finally:
        await memory.close()
