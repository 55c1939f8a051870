"""The embedded engine behind ``get_mongodb("memory")``: for dev and tests only.

It is mongomock (an in-process imitation of MongoDB's query engine) behind
mongomock-motor's Motor-style async API, in one process and one memory space: each
client starts empty and its data disappears with it. It covers CRUD, indexes
(unique → ``DuplicateKeyError``), sort/skip/limit, aggregation and bulk writes
(without ``sort=`` inside bulk updates). It has no sessions, transactions, change
streams or network, and is not a database to run in production.

Two small adjustments make code written for PyMongo Async run on it unchanged:
``close()`` works both called plainly (Motor) and awaited (PyMongo Async), and the
cursor returned by ``aggregate()`` may be awaited (PyMongo Async) or used directly
(Motor).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from typing import Any

import mongomock
import mongomock.collection
import mongomock_motor

from cloudrift.core.exceptions import FeatureNotSupportedError

HOSTS = "memory (embedded engine)"


class _Done:
    """An awaitable that is already finished: lets ``await client.close()`` work."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()  # a generator that finishes at once


def _await_self(cursor: Any) -> Generator[Any, None, Any]:
    yield from ()  # a generator that finishes at once, returning the cursor
    return cursor


# PyMongo Async's aggregate() is a coroutine returning the cursor; Motor's returns the
# cursor at once. Letting the mock's cursor be awaited serves both spellings.
_LatentCursor: Any = mongomock_motor.AsyncLatentCommandCursor
if not hasattr(_LatentCursor, "__await__"):
    _LatentCursor.__await__ = _await_self


def _accept_sort(method: Callable[..., Any]) -> Callable[..., Any]:
    """Let a mongomock bulk builder method take PyMongo 4.11+'s ``sort`` keyword."""
    if getattr(method, "_cloudrift_sort", False):
        return method

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        if sort is not None:
            raise FeatureNotSupportedError(
                "the embedded document engine cannot sort inside bulk_write updates"
            )
        return method(self, *args, **kwargs)

    wrapper._cloudrift_sort = True  # type: ignore[attr-defined]
    return wrapper


# PyMongo 4.11+ passes sort= to the bulk builder for UpdateOne/ReplaceOne; mongomock
# 4.3 predates it, so bulk_write with an update failed with a TypeError.
_Builder: Any = mongomock.collection.BulkOperationBuilder
_Builder.add_update = _accept_sort(_Builder.add_update)
_Builder.add_replace = _accept_sort(_Builder.add_replace)

# mongomock-motor's stubs present its classes as Motor's; typed Any here on purpose.
_MockClient: Any = mongomock_motor.AsyncMongoMockClient


class EmbeddedAsyncClient(_MockClient):  # type: ignore[misc]
    """mongomock-motor's client whose ``close()`` may also be awaited."""

    def close(self) -> _Done:
        """Release the engine; returns an already-finished awaitable."""
        return _Done()

    def __repr__(self) -> str:
        return "EmbeddedAsyncClient(memory)"


def build_async() -> Any:
    """A fresh, empty embedded async client."""
    return EmbeddedAsyncClient()


def build_sync() -> Any:
    """A fresh, empty embedded blocking client (mongomock's MongoClient)."""
    return mongomock.MongoClient()
