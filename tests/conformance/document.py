"""The document contract: operations every async document client must support.

Written once against the seed's API. A harness subclasses :class:`DocumentConformance`,
provides an async ``client`` fixture (a fresh, empty database engine per test) and
declares in ``unsupported`` the capabilities its engine lacks. It runs on the embedded
engine (``tests/document/test_memory.py``) and, through PyMongo Async and Motor over
the real wire protocol, on the mockupdb test server with a data engine behind it
(``tests/document/test_wire.py``). It uses the spellings that work on PyMongo Async
*and* Motor: the cursor of ``find()`` used directly; ``aggregate()`` through
:func:`aggregate`, since PyMongo Async's must be awaited and Motor's must not.

Capabilities (:data:`CAPABILITIES`):

* ``sorted_bulk_update``: ``UpdateOne(..., sort=...)`` inside ``bulk_write`` (MongoDB
  8.0+). An engine that lacks it must refuse it (an error, nothing changed), never
  update an arbitrary document.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import pytest
from pymongo import ASCENDING, DESCENDING, InsertOne, UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError

from cloudrift.core.exceptions import FeatureNotSupportedError
from tests.conformance import Conformance

CAPABILITIES: frozenset[str] = frozenset({"sorted_bulk_update"})


async def aggregate(collection: Any, pipeline: list[dict[str, Any]]) -> list[Any]:
    """The pipeline's results on either driver: PyMongo Async returns a coroutine."""
    cursor = collection.aggregate(pipeline)
    if inspect.isawaitable(cursor):
        cursor = await cursor
    return list(await cursor.to_list(None))


class DocumentConformance(Conformance):
    """The seed's document operations, checked against one engine."""

    CAPABILITIES: ClassVar[frozenset[str]] = CAPABILITIES

    async def test_insert_then_find_one_returns_the_document(self, client: Any) -> None:
        """insert_one returns an id under which find_one finds the same document."""
        users = client["app"]["users"]
        result = await users.insert_one({"name": "Alice", "age": 30})
        doc = await users.find_one({"_id": result.inserted_id})
        assert doc is not None and doc["name"] == "Alice" and doc["age"] == 30

    async def test_update_one_changes_only_the_matched_document(self, client: Any) -> None:
        """update_one with $set changes the matched document and leaves the others alone."""
        users = client["app"]["users"]
        await users.insert_many([{"name": "Alice", "age": 30}, {"name": "Bob", "age": 40}])
        result = await users.update_one({"name": "Alice"}, {"$set": {"age": 31}})
        assert result.modified_count == 1
        assert (await users.find_one({"name": "Alice"}))["age"] == 31
        assert (await users.find_one({"name": "Bob"}))["age"] == 40

    async def test_delete_many_removes_every_match(self, client: Any) -> None:
        """delete_many removes all matching documents and reports how many."""
        events = client["app"]["events"]
        await events.insert_many([{"v": 1}, {"v": 1}, {"v": 2}])
        result = await events.delete_many({"v": 1})
        assert result.deleted_count == 2
        assert await events.count_documents({}) == 1

    async def test_count_documents_applies_the_filter(self, client: Any) -> None:
        """count_documents counts only documents matching the filter."""
        users = client["app"]["users"]
        await users.insert_many([{"age": a} for a in (10, 18, 25, 70)])
        assert await users.count_documents({"age": {"$gte": 18}}) == 3

    async def test_unique_index_rejects_a_duplicate_with_duplicate_key_error(
        self, client: Any
    ) -> None:
        """A unique index makes a second insert of the same key raise DuplicateKeyError."""
        users = client["app"]["users"]
        await users.create_index("email", unique=True)
        await users.insert_one({"email": "a@example.com"})
        with pytest.raises(DuplicateKeyError):
            await users.insert_one({"email": "a@example.com"})
        assert await users.count_documents({}) == 1

    async def test_find_sorts_skips_and_limits(self, client: Any) -> None:
        """find().sort().skip().limit() returns the requested page in order."""
        items = client["app"]["items"]
        await items.insert_many([{"n": n} for n in (5, 3, 9, 1, 7)])
        cursor = items.find({}, {"_id": 0}).sort("n", DESCENDING).skip(1).limit(2)
        assert [d["n"] async for d in cursor] == [7, 5]
        ascending = items.find({"n": {"$gte": 3}}).sort("n", ASCENDING)
        assert [d["n"] for d in await ascending.to_list(None)] == [3, 5, 7, 9]

    async def test_aggregate_groups_and_sums(self, client: Any) -> None:
        """An aggregation pipeline with $match, $group and $sort computes per-group totals."""
        orders = client["app"]["orders"]
        await orders.insert_many(
            [
                {"customer": "a", "total": 5},
                {"customer": "b", "total": 7},
                {"customer": "a", "total": 10},
                {"customer": "c", "total": 1, "void": True},
            ]
        )
        pipeline = [
            {"$match": {"void": {"$ne": True}}},
            {"$group": {"_id": "$customer", "sum": {"$sum": "$total"}}},
            {"$sort": {"_id": 1}},
        ]
        assert await aggregate(orders, pipeline) == [
            {"_id": "a", "sum": 15},
            {"_id": "b", "sum": 7},
        ]

    async def test_bulk_write_applies_every_operation(self, client: Any) -> None:
        """bulk_write runs inserts and updates together and reports the counts."""
        coll = client["app"]["bulk"]
        result = await coll.bulk_write(
            [InsertOne({"k": 1}), InsertOne({"k": 2}), UpdateOne({"k": 1}, {"$set": {"k": 3}})]
        )
        assert result.inserted_count == 2 and result.modified_count == 1
        assert sorted([d["k"] async for d in coll.find()]) == [2, 3]

    async def test_find_returns_every_document_across_several_batches(self, client: Any) -> None:
        """A cursor larger than its batch size yields every document once, in order."""
        items = client["app"]["paged"]
        await items.insert_many([{"n": n} for n in range(7)])
        cursor = items.find({}, {"_id": 0}).sort("n", ASCENDING).batch_size(2)
        assert [d["n"] async for d in cursor] == list(range(7))

    async def test_upsert_and_replace_report_what_they_did(self, client: Any) -> None:
        """update_one(upsert=True) inserts once and reports the id; replace_one swaps the body."""
        coll = client["app"]["settings"]
        first = await coll.update_one({"key": "theme"}, {"$set": {"v": "dark"}}, upsert=True)
        assert first.upserted_id is not None and first.matched_count == 0
        again = await coll.update_one({"key": "theme"}, {"$set": {"v": "light"}}, upsert=True)
        assert again.upserted_id is None and again.modified_count == 1
        replaced = await coll.replace_one({"key": "theme"}, {"key": "theme", "w": 1})
        assert replaced.modified_count == 1
        assert await coll.find_one({}, {"_id": 0}) == {"key": "theme", "w": 1}

    async def test_bulk_update_with_sort_updates_the_first_in_that_order(self, client: Any) -> None:
        """UpdateOne(sort=...) in bulk_write updates the first match in order, or is refused."""
        coll = client["app"]["ranked"]
        await coll.insert_many([{"k": 1}, {"k": 3}, {"k": 2}])
        bulk = [UpdateOne({}, {"$set": {"top": True}}, sort={"k": -1})]
        if self.lacks("sorted_bulk_update"):
            with pytest.raises((FeatureNotSupportedError, PyMongoError)):
                await coll.bulk_write(bulk)
            assert await coll.count_documents({"top": True}) == 0
            return
        await coll.bulk_write(bulk)
        assert [d["k"] async for d in coll.find({"top": True})] == [3]
