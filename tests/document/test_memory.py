"""The embedded engine (provider ``memory``): dev and test use only, no options, isolated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import UpdateOne

from cloudrift.core.exceptions import ConfigurationError, FeatureNotSupportedError
from cloudrift.document import (
    aclose_client,
    connect_mongodb,
    get_mongodb,
    get_mongodb_sync,
    ping,
    verify,
)
from tests.conformance.document import DocumentConformance


class TestMemoryEngine(DocumentConformance):
    """The document conformance suite on the embedded engine."""

    unsupported = frozenset({"sorted_bulk_update"})

    @pytest.fixture
    async def client(self) -> AsyncIterator[Any]:
        """A fresh embedded client, closed after the test."""
        client = get_mongodb("memory")
        yield client
        await aclose_client(client)


async def test_each_memory_client_starts_empty() -> None:
    """Two memory clients never share data: each is a fresh engine."""
    first, second = get_mongodb("memory"), get_mongodb("memory")
    await first["db"]["c"].insert_one({"x": 1})
    assert await second["db"]["c"].count_documents({}) == 0
    assert await first["db"]["c"].count_documents({}) == 1


async def test_memory_close_works_called_or_awaited() -> None:
    """close() on the embedded client works Motor-style (called) and PyMongo-style (awaited)."""
    client = get_mongodb("memory")
    assert client.close() is not None  # a plain call is enough
    await client.close()
    await aclose_client(client)


async def test_memory_aggregate_works_awaited_or_not() -> None:
    """aggregate() gives a cursor both as PyMongo Async (awaited) and as Motor (direct)."""
    coll = get_mongodb("memory")["db"]["c"]
    await coll.insert_one({"x": 1})
    awaited = await (await coll.aggregate([{"$project": {"_id": 0}}])).to_list(None)
    direct = await coll.aggregate([{"$project": {"_id": 0}}]).to_list(None)
    assert awaited == direct == [{"x": 1}]


async def test_ping_verify_and_connect_work_on_the_memory_engine() -> None:
    """ping is True, verify passes and connect_mongodb returns a usable embedded client."""
    client = await connect_mongodb("memory")
    assert await ping(client) is True
    await verify(client)
    await client["db"]["c"].insert_one({"ok": True})
    assert await client["db"]["c"].count_documents({"ok": True}) == 1
    await aclose_client(client)


@pytest.mark.parametrize("driver", ["pymongo", "motor"])
async def test_memory_ignores_the_driver_choice(driver: str) -> None:
    """The memory provider returns the embedded engine for either driver name."""
    client = get_mongodb("memory", driver=driver)
    await client["db"]["c"].insert_one({"d": driver})
    assert (await client["db"]["c"].find_one({}, {"_id": 0})) == {"d": driver}


async def test_memory_rejects_an_unknown_driver() -> None:
    """A driver name that does not exist fails even for memory, listing the valid ones."""
    with pytest.raises(ConfigurationError, match="valid drivers: motor, pymongo"):
        get_mongodb("memory", driver="pymongo-async")


@pytest.mark.parametrize("factory", [get_mongodb, get_mongodb_sync])
def test_memory_takes_no_options(factory: Any) -> None:
    """Options given to the memory provider are refused rather than silently ignored."""
    with pytest.raises(ConfigurationError, match="takes no options, got uri"):
        factory("memory", uri="mongodb://localhost")


async def test_sync_memory_client_runs_the_seed_example() -> None:
    """get_mongodb_sync('memory') gives a blocking client with the seed's sync API."""
    client = get_mongodb_sync("memory")
    users = client["lyzr"]["users"]
    users.insert_one({"name": "Alice"})
    assert users.find_one({"name": "Alice"}, {"_id": 0}) == {"name": "Alice"}
    assert await ping(client) is True
    await aclose_client(client)


async def test_memory_bulk_update_with_sort_is_refused_clearly() -> None:
    """A bulk update with sort= (which the engine cannot do) fails with FeatureNotSupportedError."""
    coll = get_mongodb("memory")["db"]["c"]
    await coll.insert_many([{"k": 1}, {"k": 2}])
    with pytest.raises(FeatureNotSupportedError, match="cannot sort inside bulk_write"):
        await coll.bulk_write([UpdateOne({}, {"$set": {"k": 0}}, sort={"k": -1})])
    assert sorted([d["k"] async for d in coll.find()]) == [1, 2]
