"""The OpenTelemetry half of :mod:`cloudrift.core.telemetry`: the only module that
imports ``opentelemetry``, itself imported on the first observed operation.

Cost when nothing is sampled. An operation costs little more than with telemetry
disabled when its span would not be recorded and no metric is exported: the observer
answers None (no scope, no coroutine frame) without calling into the SDK. It knows the
span would be dropped when the tracer provider's sampler is ``ALWAYS_OFF``, or
``ParentBased(ALWAYS_OFF)`` (the SDK's default children) and the current span is not
sampled; any other sampler is asked through ``start_span`` as usual. Dropping the span
this way differs from the SDK's non-recording span in one respect only: no new
unsampled span context is made current, so a message sent outside any sampled span
carries its caller's trace context (or none) rather than a fresh unsampled one — the
consumer's ``ParentBased`` sampler drops it either way.

Metrics cannot be skipped so: once a meter provider is configured, every operation is
timed and recorded into the duration histogram: the SDK's ``Histogram.record`` costs
7 to 9 µs with our three attributes (cleaning, hashing and copying them, the exemplar
filter, the aggregation lock), several times cloudrift's own ~1.5 µs. The two messaging
counters are therefore not SDK synchronous counters: cloudrift adds to its own totals
(a dict update under a lock, ~0.3 µs) and reports them through *asynchronous*
(observable) counters, which the SDK reads at each collection. The exported data is the
same monotonic sum with the same name, unit and attributes; only an exemplar, which the
SDK would attach to a synchronous counter's points, is not there.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import propagate as otel_propagate
from opentelemetry import trace as otel_trace
from opentelemetry.metrics import _internal as otel_metrics_internal

from cloudrift.core import telemetry as facade

if TYPE_CHECKING:
    from cloudrift.core.lifecycle import AsyncBackend
    from cloudrift.messaging.base import Message

log = logging.getLogger("cloudrift")

_NULL: AbstractContextManager[object] = nullcontext()

# What a tracer's sampler lets cloudrift decide without the SDK.
_ASK, _NEVER, _PARENT = 0, 1, 2
_OFF = "AlwaysOffSampler"
_ON = "AlwaysOnSampler"
# The description of ParentBased(ALWAYS_OFF) with the SDK's default child samplers.
_PARENT_OFF = (
    f"ParentBased{{root:{_OFF},remoteParentSampled:{_ON},remoteParentNotSampled:{_OFF},"
    f"localParentSampled:{_ON},localParentNotSampled:{_OFF}}}"
)
_UNSET = object()


def _sampling(tracer: Any) -> tuple[Any, int, bool]:
    """(the tracer to use, its sampling policy, whether that answer is final).

    A global tracer made before the SDK was configured is a ``ProxyTracer``: it answers
    as the no-op tracer (nothing is recorded) until a provider is set, and the answer
    is asked again on every operation until then.
    """
    real = tracer
    proxied = isinstance(tracer, otel_trace.ProxyTracer)
    if proxied:
        # The API resolves the proxy's target here; a missing attribute (another API
        # version) leaves the proxy in place and the SDK is asked as usual.
        real = getattr(tracer, "_tracer", tracer)
    if isinstance(real, otel_trace.NoOpTracer):
        return tracer, _NEVER, not proxied
    sampler = getattr(real, "sampler", None)
    describe = getattr(sampler, "get_description", None)
    description = describe() if callable(describe) else None
    if description == _OFF:
        return real, _NEVER, True
    if description == _PARENT_OFF:
        return real, _PARENT, True
    return real, _ASK, True


class _Totals:
    """Cumulative counts per attribute set, reported by an asynchronous counter.

    ``add`` is what an operation pays (instead of the SDK's synchronous ``Counter.add``,
    which costs as much as a histogram record); the SDK calls ``observe`` when it
    collects. The lock makes increments from several threads' event loops exact and lets
    a collection (often on the exporter's thread) read a consistent copy.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: dict[tuple[tuple[str, Any], ...], list[Any]] = {}
        self._lock = threading.Lock()

    def add(self, amount: int, attributes: Mapping[str, Any]) -> None:
        key = tuple(attributes.items())
        with self._lock:
            entry = self._counts.get(key)
            if entry is None:
                self._counts[key] = [amount, dict(attributes)]
            else:
                entry[0] += amount

    def observe(self, _options: Any) -> Iterable[otel_metrics.Observation]:
        with self._lock:
            counts = [(count, attributes) for count, attributes in self._counts.values()]
        return [otel_metrics.Observation(count, attributes) for count, attributes in counts]


# The message totals of each meter provider (None: the global one). Their observable
# counters are registered once per provider: the SDK keeps a meter's first registration
# of a name and drops the callbacks of any later one, so totals made again for the same
# provider (use_providers() back and forth) would never be read.
_global_totals: list[tuple[_Totals, _Totals]] = []
_provider_totals: weakref.WeakKeyDictionary[Any, tuple[_Totals, _Totals]] = (
    weakref.WeakKeyDictionary()
)


def _message_totals(meter: Any, meter_provider: Any) -> tuple[_Totals, _Totals]:
    """(sent, consumed) totals of ``meter_provider``, registered on its ``meter`` once."""
    try:
        found = _provider_totals.get(meter_provider) if meter_provider is not None else None
    except TypeError:  # a provider that cannot be weakly referenced: register each time
        meter_provider, found = _UNSET, None
    if meter_provider is None and _global_totals:
        found = _global_totals[0]
    if found is not None:
        return found
    found = (_Totals(), _Totals())
    meter.create_observable_counter(
        "messaging.client.sent.messages",
        callbacks=[found[0].observe],
        unit="{message}",
        description="Number of messages a producer attempted to send",
    )
    meter.create_observable_counter(
        "messaging.client.consumed.messages",
        callbacks=[found[1].observe],
        unit="{message}",
        description="Number of messages delivered to the application",
    )
    if meter_provider is None:
        _global_totals.append(found)
    elif meter_provider is not _UNSET:
        _provider_totals[meter_provider] = found
    return found


class _Instruments:
    """The tracer and instruments, looked up once per meter/tracer provider."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.tracer: Any = otel_trace.get_tracer(facade.SCOPE, tracer_provider=tracer_provider)
        #: Built on the global providers: while neither is set, nothing is recorded.
        self.global_providers = tracer_provider is None and meter_provider is None
        self.policy = _ASK
        self.policy_final = False
        # The last OpenTelemetry context seen and whether an operation in it records a
        # span (contexts are immutable; consecutive operations usually share one).
        self.last_parent: tuple[Any, bool] = (_UNSET, False)
        meter = otel_metrics.get_meter(facade.SCOPE, meter_provider=meter_provider)
        self.duration: Any = meter.create_histogram(
            "cloudrift.client.operation.duration",
            unit="s",
            description="Duration of cloudrift backend operations",
        )
        # Totals kept by cloudrift, read by the SDK at collection (see the module doc).
        self.sent, self.consumed = _message_totals(meter, meter_provider)
        self.process: Any = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Duration of consume() handler runs",
        )
        self.metrics_live = False
        self.metrics_final = False
        #: Both answers are final, metrics are not exported and the sampler is one
        #: cloudrift understands: operations then skip the SDK unless the parent is
        #: sampled (see observe()).
        self.skippable = False
        self.refresh()

    def refresh(self) -> None:
        """Resolve what the providers allow to skip (again, while they are proxies)."""
        if not self.policy_final:
            self.tracer, self.policy, self.policy_final = _sampling(self.tracer)
        if not self.metrics_final:
            self._resolve_metrics()
        self.skippable = (
            self.policy_final
            and self.metrics_final
            and not self.metrics_live
            and self.policy != _ASK
        )

    def _resolve_metrics(self) -> None:
        if isinstance(self.duration, otel_metrics.NoOpHistogram):
            self.metrics_live, self.metrics_final = False, True
            return
        # A global meter made before the SDK was configured hands out proxy instruments
        # whose target appears once a provider is set: until then nothing is exported.
        real = getattr(self.duration, "_real_instrument", _UNSET)
        if real is None:
            self.metrics_live = False
        else:
            self.metrics_live, self.metrics_final = True, True

    def records_span(self) -> bool:
        """Whether an operation starting now needs a span from the SDK."""
        policy = self.policy
        if policy == _ASK:
            return True
        if policy == _NEVER:
            return False
        return self.parent_sampled(_current_context())

    def parent_sampled(self, ctx: Any) -> bool:
        """Whether an operation in ``ctx`` gets a span from a skippable sampler
        (remembered for the last context seen: contexts are immutable, and consecutive
        operations share one)."""
        last, sampled = self.last_parent
        if ctx is not last:
            span = otel_trace.get_current_span(ctx)
            sampled = self.policy == _PARENT and span.get_span_context().trace_flags.sampled
            self.last_parent = (ctx, sampled)
        return sampled


def _context_getter() -> Any:
    # The current OpenTelemetry context, read straight from the runtime context's
    # ContextVar when it is one (a third of get_current()'s cost, which shows on a ~1 µs
    # operation); any other runtime context is asked through the API.
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if isinstance(var, contextvars.ContextVar):
        return var.get
    return otel_context.get_current


_current_context = _context_getter()

#: The instruments of the providers in use (None: not looked up yet).
_active: _Instruments | None = None


def _get() -> _Instruments:
    # The global providers are proxies: instruments made before the SDK is configured
    # start recording once it is, so one lookup is enough.
    global _active
    if _active is None:
        _active = _Instruments()
    return _active


def use_providers(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """See :func:`cloudrift.core.telemetry.use_providers`."""
    global _active
    _active = None
    _quiet[0] = _UNSET
    if tracer_provider is not None or meter_provider is not None:
        _active = _Instruments(tracer_provider, meter_provider)


# ----------------------------------------------------------------------- operations


def _span_name(backend: AsyncBackend, name: str) -> str:
    destination = backend.describe().destination
    return f"{name} {destination}" if destination else name


def _metric_attributes(attrs: Mapping[str, Any], *extra: str) -> dict[str, Any]:
    keys = ("cloudrift.category", "cloudrift.provider", "cloudrift.operation", *extra)
    return {k: attrs[k] for k in keys if k in attrs}


class _Shape:
    """What every ``name`` operation of one backend shares: computed once, reused."""

    __slots__ = (
        "attrs",
        "consumed_attrs",
        "errors",
        "metric_attrs",
        "notes",
        "sends",
        "sent_attrs",
        "sent_errors",
        "span_name",
        "stream",
    )

    def __init__(self, backend: AsyncBackend, name: str) -> None:
        self.attrs = facade.base_attributes(backend, name)
        self.metric_attrs = _metric_attributes(self.attrs)
        self.sent_attrs = _metric_attributes(
            self.attrs,
            "messaging.system",
            "messaging.destination.name",
            "messaging.operation.name",
        )
        self.consumed_attrs = _metric_attributes(
            self.attrs, "messaging.system", "messaging.destination.name"
        )
        self.sends = self.attrs.get("messaging.operation.type") == "send"
        # Only messaging operations take notes (telemetry.note_*): the others need not
        # be made the task's CURRENT scope.
        self.notes = "messaging.system" in self.attrs
        self.span_name = _span_name(backend, name)
        method = getattr(type(backend), name, None)
        self.stream = method is not None and inspect.isasyncgenfunction(inspect.unwrap(method))
        # The duration (and sent count) attributes of each error type seen (few:
        # exception classes).
        self.errors: dict[str, dict[str, Any]] = {}
        self.sent_errors: dict[str, dict[str, Any]] = {}

    def error_attrs(self, error: str) -> dict[str, Any]:
        found = self.errors.get(error)
        if found is None:
            found = self.errors[error] = {**self.metric_attrs, "error.type": error}
        return found

    def sent_error_attrs(self, error: str) -> dict[str, Any]:
        found = self.sent_errors.get(error)
        if found is None:
            found = self.sent_errors[error] = {**self.sent_attrs, "error.type": error}
        return found


def _shape(backend: AsyncBackend, name: str) -> _Shape:
    shapes: dict[str, _Shape] | None = backend.__dict__.get("_telemetry_shapes")
    if shapes is None:
        shapes = backend.__dict__["_telemetry_shapes"] = {}
    found = shapes.get(name)
    if found is None:
        found = shapes[name] = _Shape(backend, name)
    return found


class _OperationScope:
    """One operation: its span (when sampled), current for its duration (not for
    streams: their steps run in the caller's code, where our span must not be the
    parent of its spans), and its duration measurement (when metrics are exported)."""

    __slots__ = ("messages", "record", "shape", "span", "start", "token", "tools", "var_token")

    def __init__(self, shape: _Shape, tools: _Instruments, record: bool) -> None:
        self.shape = shape
        self.tools = tools
        self.record = record
        self.span: Any = None
        self.messages: int | None = None
        self.token: object | None = None
        self.var_token: Any = None
        self.start = 0.0

    def __enter__(self) -> _OperationScope:
        shape = self.shape
        if self.record:
            # Started here, not when the method was called: a coroutine never awaited
            # leaves no span behind.
            self.span = span = self.tools.tracer.start_span(
                shape.span_name, kind=otel_trace.SpanKind.CLIENT, attributes=shape.attrs
            )
            if not shape.stream:
                self.token = otel_context.attach(otel_trace.set_span_in_context(span))
        if shape.notes and not shape.stream:
            self.var_token = facade.CURRENT.set(self)
        self.start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self.start
        if self.var_token is not None:
            facade.CURRENT.reset(self.var_token)
        if self.token is not None:
            otel_context.detach(self.token)  # type: ignore[arg-type]
        shape = self.shape
        metric_attrs = shape.metric_attrs
        error = None
        span = self.span
        if isinstance(exc, Exception):
            error = type(exc).__name__
            metric_attrs = shape.error_attrs(error)
            if span is not None:
                _fail(span, exc)
        if span is not None:
            span.end()
        tools = self.tools
        if tools.metrics_live:
            tools.duration.record(elapsed, metric_attrs)
            if shape.sends:
                count = 1 if self.messages is None else self.messages
                attrs = shape.sent_attrs if error is None else shape.sent_error_attrs(error)
                tools.sent.add(count, attrs)

    # The notes the base classes add (see cloudrift.core.telemetry.note_*).

    def note_message_count(self, count: int) -> None:
        self.messages = count
        if self.span is not None:
            self.span.set_attribute("messaging.batch.message_count", count)

    def note_message_id(self, message_id: str) -> None:
        if self.span is not None:
            self.span.set_attribute("messaging.message.id", message_id)

    def note_received(self, messages: Sequence[Message]) -> None:
        try:
            self._note_received(messages)
        except Exception:  # telemetry never fails an operation
            log.exception("telemetry could not record a receive")

    def _note_received(self, messages: Sequence[Message]) -> None:
        span = self.span
        if span is not None:
            if len(messages) != 1:
                span.set_attribute("messaging.batch.message_count", len(messages))
            else:
                span.set_attribute("messaging.message.id", messages[0].message_id)
            for message in messages:
                linked = _linked_context(message.transport_headers)
                if linked is not None:
                    span.add_link(linked)
        if messages and self.tools.metrics_live:
            self.tools.consumed.add(len(messages), self.shape.consumed_attrs)


def _fail(span: Any, exc: Exception) -> None:
    error = type(exc).__name__
    span.set_attribute("error.type", error)
    span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, error))
    # The exception's class only: messages may name an object key or an email address,
    # and a stack trace shows code around argument values.
    span.add_event(
        "exception",
        {
            "exception.type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "exception.escaped": True,
        },
    )


#: The last OpenTelemetry context in which operations record nothing (see observe()):
#: the common case — no sampled parent, metrics not exported — costs one comparison,
#: made by the operation wrappers themselves through the observer's quiet gate.
_quiet: list[object] = [_UNSET]


def observe(backend: AsyncBackend, name: str) -> _OperationScope | None:
    """The observer: this operation's scope, or None when it records nothing."""
    if _current_context() is _quiet[0]:
        return None
    return _observe(backend, name)


setattr(observe, "quiet_gate", (_current_context, _quiet))  # noqa: B010 - read by set_observer


def _providers_unset() -> bool:
    """Neither global provider is set yet: read where the API's proxies look."""
    return otel_trace._TRACER_PROVIDER is None and otel_metrics_internal._METER_PROVIDER is None


if not (
    hasattr(otel_trace, "_TRACER_PROVIDER") and hasattr(otel_metrics_internal, "_METER_PROVIDER")
):  # another API version: ask the proxies on every operation, as before

    def _providers_unset() -> bool:
        return False


def _observe(backend: AsyncBackend, name: str) -> _OperationScope | None:
    tools = _active or _get()
    if tools.skippable:
        # No span unless the parent is sampled, and no metrics.
        ctx = _current_context()
        if not tools.parent_sampled(ctx):
            _quiet[0] = ctx
            return None
        record = True
    else:
        if not (tools.policy_final and tools.metrics_final):
            if tools.global_providers and _providers_unset():
                # OpenTelemetry is installed but not configured (the global proxies
                # record nothing): answered without asking the proxies, on every
                # operation until a provider is set.
                return None
            tools.refresh()
        record = tools.records_span()
        if not record and not tools.metrics_live:
            return None
    if not backend.telemetry_enabled or facade.SUPPRESSED.get():
        return None
    return _OperationScope(_shape(backend, name), tools, record)


# ------------------------------------------------------------------ trace context


# The last context inject() saw and whether it holds a valid span (contexts are
# immutable; a producer sending outside any span asks once, not per message).
_last_injected: tuple[Any, bool] = (_UNSET, False)


def inject(headers: MutableMapping[str, str]) -> None:
    """See :func:`cloudrift.core.telemetry.inject`."""
    global _last_injected
    ctx = _current_context()
    last, valid = _last_injected
    if ctx is not last:
        valid = otel_trace.get_current_span(ctx).get_span_context().is_valid
        _last_injected = (ctx, valid)
    if not valid:
        return
    carrier: dict[str, str] = {}
    try:
        otel_propagate.inject(carrier)
    except Exception:  # telemetry never fails a send
        log.exception("telemetry could not inject the trace context")
        return
    # Only the W3C trace context: another propagator's keys (baggage) are not ours to
    # put on the wire, and would take SQS attribute slots.
    headers.update({k: v for k, v in carrier.items() if k in facade.TRACE_HEADERS and v})


def extract(headers: Mapping[str, str]) -> Any:
    """See :func:`cloudrift.core.telemetry.extract`."""
    if "traceparent" not in headers:
        return None
    return otel_propagate.extract(dict(headers))


def _linked_context(headers: Mapping[str, str]) -> Any:
    ctx = extract(headers)
    if ctx is None:
        return None
    span_context = otel_trace.get_current_span(ctx).get_span_context()
    return span_context if span_context.is_valid else None


class _ProcessScope:
    """One ``consume()`` handler run: a CONSUMER span and the process duration."""

    __slots__ = ("failed", "metric_attrs", "scope", "span", "start", "token", "tools")

    def __init__(self, queue: AsyncBackend, message: Message, tools: _Instruments) -> None:
        shape = _shape(queue, "process")
        attrs = {**shape.attrs, "messaging.operation.type": "process"}
        attrs["messaging.message.id"] = message.message_id
        parent = extract(message.transport_headers)
        links = []
        if parent is not None:
            span_context = otel_trace.get_current_span(parent).get_span_context()
            if span_context.is_valid:
                links.append(otel_trace.Link(span_context))
        else:
            # A message without trace context starts a new trace (never the consumer's).
            parent = otel_context.Context()
        self.tools = tools
        self.metric_attrs = shape.consumed_attrs
        self.failed: list[str] = []
        self.scope = tools.tracer.start_as_current_span(
            shape.span_name,
            context=parent,
            kind=otel_trace.SpanKind.CONSUMER,
            attributes=attrs,
            links=links,
            record_exception=False,
            set_status_on_exception=False,
        )
        self.span: Any = None
        self.token: Any = None
        self.start = 0.0

    def __enter__(self) -> _ProcessScope:
        self.span = self.scope.__enter__()
        self.token = facade.PROCESS_ERRORS.set(self.failed)
        self.start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self.start
        facade.PROCESS_ERRORS.reset(self.token)
        attrs = self.metric_attrs
        if self.failed:
            error = self.failed[0]
            attrs = {**attrs, "error.type": error}
            span = self.span
            span.set_attribute("error.type", error)
            span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, error))
        self.scope.__exit__(exc_type, exc, tb)
        if self.tools.metrics_live:
            self.tools.process.record(elapsed, attrs)


def process_scope(queue: AsyncBackend, message: Message) -> AbstractContextManager[object]:
    """See :func:`cloudrift.core.telemetry.process_scope`."""
    tools = _active or _get()
    if not (tools.policy_final and tools.metrics_final):
        tools.refresh()
    # The sampler would drop the process span (and so every span of the handler under
    # it): skip the SDK — unless the consumer itself runs in a sampled span, where the
    # handler's operations must still not join the consumer's trace.
    dropped = tools.skippable and not (
        tools.policy == _PARENT and _producer_sampled(message.transport_headers)
    )
    if dropped and not tools.parent_sampled(_current_context()):
        return _NULL
    return _ProcessScope(queue, message, tools)


def _producer_sampled(headers: Mapping[str, str]) -> bool:
    """The sampled flag of a W3C ``traceparent`` (``00-{trace}-{span}-{flags}``); a
    malformed one counts as sampled, so the SDK decides."""
    traceparent = headers.get("traceparent")
    if traceparent is None:
        return False
    try:
        return bool(int(traceparent[-2:], 16) & 1)
    except ValueError:
        return True
