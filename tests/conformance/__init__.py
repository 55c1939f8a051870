"""Shared conformance suites: one class per category, run against every provider.

The pattern (as in Go CDK's drivertest):

* ``tests/conformance/<category>.py`` defines ``class <Category>Conformance(Conformance)``
  whose tests take a ``backend`` fixture and check the contract's sentences.
* Each provider's test module subclasses it, provides ``backend`` against a real local
  stand-in, and lists in ``unsupported`` the capabilities the provider lacks.
* A test of a capability calls ``self.lacks("capability")``: when the provider declares
  it unsupported, the test instead checks that using it raises
  :class:`~cloudrift.core.exceptions.FeatureNotSupportedError` — a missing capability
  is part of the contract, never a silent skip.
* Suites of cloudrift's own backends (every category but document, whose client is the
  native driver) derive from :class:`BackendConformance`. There the backend itself
  declares what it has with ``supports_<capability>`` flags (False on the category base
  class), and :meth:`BackendConformance.test_unsupported_matches_the_backend_flags`
  checks that the harness's ``unsupported`` and the backend's flags say the same thing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from cloudrift.core import exceptions
from cloudrift.core.operation import BackendDescription
from tests.telemetry.support import Recorder, exported_values, recording

#: Public async methods that are not operations: lifecycle, the escape hatch, and the
#: consume loop (whose receive/delete/nack calls are operations).
NOT_OPERATIONS = frozenset({"close", "native", "consume"})


class Conformance:
    """Base of every category suite."""

    #: Capabilities this provider does not have; see each suite's CAPABILITIES.
    unsupported: ClassVar[frozenset[str]] = frozenset()
    #: Every capability name the suite knows (a typo in ``unsupported`` is an error).
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset()

    def lacks(self, capability: str) -> bool:
        """True when the provider under test declares ``capability`` unsupported."""
        assert capability in self.CAPABILITIES, f"unknown capability {capability!r}"
        return capability in self.unsupported

    def test_declared_capabilities_are_known(self) -> None:
        """The provider declares only capabilities the suite knows about."""
        assert self.unsupported <= self.CAPABILITIES, self.unsupported - self.CAPABILITIES


class BackendConformance(Conformance):
    """Base of the suites whose ``backend`` fixture is a cloudrift backend."""

    #: One operation each suite's category fails portably: (method, args, the name of
    #: the cloudrift.core.exceptions class it raises).
    failing_operation: ClassVar[tuple[str, tuple[Any, ...], str]] = ("", (), "")

    @pytest.fixture
    def recorder(self) -> Iterator[Recorder]:
        """cloudrift's spans and metrics, recorded by a private OpenTelemetry SDK."""
        with recording() as rec:
            yield rec

    async def test_an_operation_is_one_client_span(self, backend: Any, recorder: Recorder) -> None:
        """health_check() is exactly one CLIENT span named after the operation (and the
        destination), with the cloudrift and server attributes, holding no secret."""
        recorder.clear()
        await backend.health_check()
        spans = recorder.spans(backend.category)
        assert len(spans) == 1, [s.name for s in spans]
        span, description = spans[0], backend.describe()
        assert span.kind is SpanKind.CLIENT
        name = "health_check"
        assert span.name == (
            f"{name} {description.destination}" if description.destination else name
        )
        attrs = dict(span.attributes or {})
        assert attrs["cloudrift.category"] == backend.category
        assert attrs["cloudrift.provider"] == backend.provider
        assert attrs["cloudrift.operation"] == name
        if description.server_address:
            assert attrs["server.address"] == description.server_address
        if backend.category in ("queue", "topic", "subscription"):
            assert attrs["messaging.system"] == description.system
            assert attrs["messaging.operation.name"] == name
        if backend.category in ("cache", "kv") and backend.provider != "memory":
            redis = description.system in ("redis", "elasticache", "azure_redis")
            assert (attrs.get("db.system.name") == "redis") is redis
            assert (attrs.get("db.operation.name") == name) is redis
        for value in exported_values(spans):
            for secret in getattr(self, "secrets_in_use", ()):
                assert secret not in value
        points = recorder.metrics()["cloudrift.client.operation.duration"]
        assert any(p.attributes["cloudrift.operation"] == name for p in points)

    async def test_a_failed_operation_sets_error_type(
        self, backend: Any, recorder: Recorder
    ) -> None:
        """An operation that raises ends its span with status ERROR and error.type set to
        the exception class (recorded without its message)."""
        method, args, error = self.failing_operation
        recorder.clear()
        with pytest.raises(getattr(exceptions, error)) as raised:
            await getattr(backend, method)(*args)
        assert type(raised.value).__name__ == error
        spans = recorder.spans(backend.category)
        assert len(spans) == 1
        assert spans[0].status.status_code is StatusCode.ERROR
        assert (spans[0].attributes or {})["error.type"] == error
        assert all("exception.message" not in (e.attributes or {}) for e in spans[0].events)
        points = recorder.metrics()["cloudrift.client.operation.duration"]
        assert any(p.attributes.get("error.type") == error for p in points)

    async def check_one_span_per_operation(
        self, backend: Any, recorder: Recorder, calls: list[tuple[str, Callable[[], Any]]]
    ) -> None:
        """Each of ``calls`` (an operation's name and a call of it, run in order; together
        every public operation of the backend) is exactly one CLIENT span named after
        that operation; a call that raises a cloudrift error sets its error.type."""
        public = {
            name
            for name in dir(type(backend))
            if not name.startswith("_")
            and name not in NOT_OPERATIONS
            and callable(getattr(type(backend), name))
            and hasattr(getattr(type(backend), name), "__wrapped__")
        }
        named = {name for name, _ in calls}
        assert public <= named, f"no span check for {sorted(public - named)}"
        destination = backend.describe().destination
        for name, call in calls:
            recorder.clear()
            error = None
            try:
                result = call()
                if isinstance(result, AbstractAsyncContextManager):
                    async with result:
                        pass
                elif inspect.isawaitable(result):
                    await result
            except exceptions.CloudRiftError as exc:
                error = type(exc).__name__
            spans = recorder.spans(backend.category)
            assert [(s.attributes or {}).get("cloudrift.operation") for s in spans] == [name]
            (span,) = spans
            assert span.kind is SpanKind.CLIENT
            assert span.name == (f"{name} {destination}" if destination else name)
            assert (span.attributes or {}).get("error.type") == error, name
            assert (span.status.status_code is StatusCode.ERROR) is (error is not None)

    async def test_unsupported_matches_the_backend_flags(self, backend: Any) -> None:
        """The backend has a bool supports_* flag for each capability the suite knows, and
        the ones it sets False are exactly the harness's ``unsupported``."""
        flags = {name for name in dir(backend) if name.startswith("supports_")}
        assert flags == {f"supports_{cap}" for cap in self.CAPABILITIES}
        has = {cap: getattr(backend, f"supports_{cap}") for cap in self.CAPABILITIES}
        assert all(isinstance(value, bool) for value in has.values()), has
        assert {cap for cap, value in has.items() if not value} == self.unsupported

    async def test_every_public_operation_runs_through_the_wrapper(self, backend: Any) -> None:
        """No provider bypasses cloudrift.core.operation (closed check, telemetry,
        cancellation) by defining or overriding a public async method without it."""
        bypassing = []
        for name in dir(type(backend)):
            if name.startswith("_") or name in NOT_OPERATIONS:
                continue
            attr = inspect.getattr_static(type(backend), name)
            target = getattr(attr, "__wrapped__", attr)
            is_async = inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)
            if is_async and not hasattr(attr, "__wrapped__"):
                bypassing.append(name)
        assert bypassing == []

    async def test_backend_describes_itself_without_secrets(self, backend: Any) -> None:
        """describe() (what telemetry reports) names the system and holds no credential."""
        description = backend.describe()
        assert isinstance(description, BackendDescription) and description.system
        for value in getattr(self, "secrets_in_use", ()):
            assert value not in repr(description)

    async def test_backend_ran_the_base_init(self, backend: Any) -> None:
        """The provider's __init__ called super().__init__() (the base state exists)."""
        assert "_closed" in vars(backend) and "_description" in vars(backend)
