"""OpenTelemetry traces and metrics for every backend operation: the one telemetry module.

Nothing else in cloudrift imports ``opentelemetry``. When ``opentelemetry-api`` is
installed (``pip install "cloudrift[otel]"``) and telemetry is not switched off, this
module installs an :data:`~cloudrift.core.operation.Observer` that wraps every public
operation of every storage, queue, cache, KV and email backend in one CLIENT span and
records its duration. It uses the *global* tracer and meter providers, so it is silent
(OpenTelemetry's no-op implementations) until the application configures the SDK.

Off switches: the env var ``CLOUDRIFT_TELEMETRY__ENABLED=false`` (read when cloudrift is
imported: no observer is installed at all), the setting ``telemetry.enabled: false``
(backends built from settings are not observed), the backend option ``telemetry=False``
(accepted by every category's factory) and :func:`disable` / :func:`enable` at runtime.

Messaging also carries the trace context: :func:`inject` writes W3C ``traceparent`` /
``tracestate`` into a message's transport headers when it is sent, :func:`process_scope`
runs a ``consume()`` handler in a CONSUMER span whose parent is the producer's context,
and :func:`note_received` links a ``receive`` span to each message's context. Without
``opentelemetry-api`` (or with telemetry off) all three do nothing.

Never recorded: payloads, object keys, key values, message ids in span names, email
addresses, credentials. ``server.address`` is the host only (URL credentials are dropped
by :class:`~cloudrift.core.operation.BackendDescription`).
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cloudrift.core.operation import set_observer

if TYPE_CHECKING:
    from cloudrift.core.lifecycle import AsyncBackend
    from cloudrift.messaging.base import Message

try:  # the [otel] extra
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import propagate as otel_propagate
    from opentelemetry import trace as otel_trace
except ImportError:  # pragma: no cover - exercised by the extras-isolation test
    AVAILABLE = False
else:
    AVAILABLE = True

log = logging.getLogger("cloudrift")

#: Instrumentation scope name of every span and instrument.
SCOPE = "cloudrift"
#: The transport headers cloudrift writes (W3C trace context); reserved attribute names.
TRACE_HEADERS = ("traceparent", "tracestate")
#: Env var that switches telemetry off before anything is installed.
ENV_SWITCH = "CLOUDRIFT_TELEMETRY__ENABLED"

_NULL: AbstractContextManager[object] = nullcontext()
_state: dict[str, bool] = {"enabled": False}

# messaging.operation.type of each queue operation (the others have none).
_MESSAGING_TYPES = {
    "send": "send",
    "send_batch": "send",
    "publish": "send",
    "publish_batch": "send",
    "receive": "receive",
    "delete": "settle",
    "nack": "settle",
    "dead_letter": "settle",
    "extend_visibility": "settle",
}

#: The running operation's scope in this task (for the notes the base classes add).
_CURRENT: contextvars.ContextVar[_OperationScope | None] = contextvars.ContextVar(
    "cloudrift_telemetry_scope", default=None
)


#: The error types of the running process span's handler (set inside process_scope).
_PROCESS_ERRORS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "cloudrift_telemetry_process", default=None
)


#: True inside :func:`suppressed`.
_SUPPRESSED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "cloudrift_telemetry_suppressed", default=False
)


def _env_enabled() -> bool:
    value = os.environ.get(ENV_SWITCH, "").strip().lower()
    return value not in ("0", "false", "no", "off")


def enabled() -> bool:
    """True when cloudrift records spans and metrics (OTel installed, not switched off)."""
    return _state["enabled"]


def enable() -> None:
    """Observe every backend operation (a no-op without ``opentelemetry-api``)."""
    if not AVAILABLE:
        return
    _state["enabled"] = True
    set_observer(_observe)


def disable() -> None:
    """Stop observing operations and carrying trace context."""
    _state["enabled"] = False
    set_observer(None)


def _install_default() -> None:
    """Called once when cloudrift is imported: on unless the env var says off."""
    if AVAILABLE and _env_enabled():
        enable()


# ---------------------------------------------------------------------- instruments


class _Instruments:
    """The tracer and instruments, looked up once per meter/tracer provider."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.tracer = otel_trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        meter = otel_metrics.get_meter(SCOPE, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "cloudrift.client.operation.duration",
            unit="s",
            description="Duration of cloudrift backend operations",
        )
        self.sent = meter.create_counter(
            "messaging.client.sent.messages",
            unit="{message}",
            description="Number of messages a producer attempted to send",
        )
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Number of messages delivered to the application",
        )
        self.process = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Duration of consume() handler runs",
        )


_instruments: list[_Instruments] = []


def _get() -> _Instruments:
    # The global providers are proxies: instruments made before the SDK is configured
    # start recording once it is, so one lookup is enough.
    if not _instruments:
        _instruments.append(_Instruments())
    return _instruments[0]


def use_providers(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Record with these SDK providers instead of the global ones (None: back to the
    global providers). For tests and applications that keep their providers local."""
    _instruments.clear()
    if AVAILABLE and (tracer_provider is not None or meter_provider is not None):
        _instruments.append(_Instruments(tracer_provider, meter_provider))


# ----------------------------------------------------------------------- operations

_STREAMS: dict[tuple[type, str], bool] = {}


def _is_stream(backend: AsyncBackend, name: str) -> bool:
    key = (type(backend), name)
    found = _STREAMS.get(key)
    if found is None:
        method = inspect.unwrap(getattr(type(backend), name, None) or (lambda: None))
        found = _STREAMS[key] = inspect.isasyncgenfunction(method)
    return found


def base_attributes(backend: AsyncBackend, name: str) -> dict[str, Any]:
    """The attributes of ``backend``'s ``name`` span (never a key, payload or secret)."""
    desc = backend.describe()
    category = backend.category
    attrs: dict[str, Any] = {
        "cloudrift.category": category,
        "cloudrift.provider": str(getattr(backend, "provider", desc.system)),
        "cloudrift.operation": name,
    }
    label = getattr(backend, "telemetry_name", None)
    if label:
        attrs["cloudrift.backend"] = label
    if category in ("queue", "topic", "subscription"):
        attrs["messaging.system"] = desc.system
        attrs["messaging.operation.name"] = name
        kind = _MESSAGING_TYPES.get(name)
        if kind is not None:
            attrs["messaging.operation.type"] = kind
        if desc.destination:
            attrs["messaging.destination.name"] = desc.destination
    elif category in ("cache", "kv") and desc.system in ("redis", "elasticache", "azure_redis"):
        attrs["db.system.name"] = "redis"
        attrs["db.operation.name"] = name
    if desc.server_address:
        attrs["server.address"] = desc.server_address
        if desc.server_port is not None:
            attrs["server.port"] = desc.server_port
    return attrs


def _span_name(backend: AsyncBackend, name: str) -> str:
    destination = backend.describe().destination
    return f"{name} {destination}" if destination else name


def _metric_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: attrs[k]
        for k in ("cloudrift.category", "cloudrift.provider", "cloudrift.operation")
        if k in attrs
    }


class _Shape:
    """What every ``name`` operation of one backend shares: computed once, reused."""

    __slots__ = ("attrs", "metric_attrs", "span_name", "stream")

    def __init__(self, backend: AsyncBackend, name: str) -> None:
        self.attrs = base_attributes(backend, name)
        self.metric_attrs = _metric_attributes(self.attrs)
        self.span_name = _span_name(backend, name)
        self.stream = _is_stream(backend, name)


def _shape(backend: AsyncBackend, name: str) -> _Shape:
    shapes: dict[str, _Shape] | None = backend.__dict__.get("_telemetry_shapes")
    if shapes is None:
        shapes = backend.__dict__["_telemetry_shapes"] = {}
    found = shapes.get(name)
    if found is None:
        found = shapes[name] = _Shape(backend, name)
    return found


class _OperationScope:
    """One operation's span, current for its duration (not for streams: their steps
    run in the caller's code, where our span must not be the parent of its spans)."""

    __slots__ = ("attrs", "messages", "shape", "span", "start", "stream", "token", "var_token")

    def __init__(self, backend: AsyncBackend, name: str) -> None:
        self.shape = shape = _shape(backend, name)
        self.attrs = shape.attrs  # shared: never mutated
        self.stream = shape.stream
        self.messages: int | None = None
        tools = _get()
        self.span = tools.tracer.start_span(
            shape.span_name, kind=otel_trace.SpanKind.CLIENT, attributes=self.attrs
        )
        self.token: object | None = None
        self.var_token: contextvars.Token[_OperationScope | None] | None = None
        self.start = 0.0

    def __enter__(self) -> _OperationScope:
        self.start = time.perf_counter()
        if not self.stream:
            self.token = otel_context.attach(otel_trace.set_span_in_context(self.span))
            self.var_token = _CURRENT.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self.start
        if self.var_token is not None:
            _CURRENT.reset(self.var_token)
        if self.token is not None:
            otel_context.detach(self.token)  # type: ignore[arg-type]
        tools = _get()
        metric_attrs = self.shape.metric_attrs
        span = self.span
        if exc is not None and isinstance(exc, Exception):
            error = type(exc).__name__
            metric_attrs = {**metric_attrs, "error.type": error}
            span.set_attribute("error.type", error)
            span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, error))
            # The exception's class only: messages may name an object key or an email
            # address, and a stack trace shows code around argument values.
            span.add_event(
                "exception",
                {
                    "exception.type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                    "exception.escaped": True,
                },
            )
        span.end()
        tools.duration.record(elapsed, metric_attrs)
        if self.attrs.get("messaging.operation.type") == "send":
            count = 1 if self.messages is None else self.messages
            sent_attrs = dict(metric_attrs)
            for key in (
                "messaging.system",
                "messaging.destination.name",
                "messaging.operation.name",
            ):
                if key in self.attrs:
                    sent_attrs[key] = self.attrs[key]
            tools.sent.add(count, sent_attrs)


def _observe(backend: AsyncBackend, name: str) -> AbstractContextManager[object]:
    if not backend.telemetry_enabled or _SUPPRESSED.get():
        return _NULL
    return _OperationScope(backend, name)


@contextmanager
def suppressed() -> Iterator[None]:
    """Record nothing for the operations run inside (tasks started inside included):
    health checks polled every few seconds would drown the traces that matter."""
    token = _SUPPRESSED.set(True)
    try:
        yield
    finally:
        _SUPPRESSED.reset(token)


# ------------------------------------------------------------------- the base's notes


def note_message_count(count: int) -> None:
    """The running send_batch / receive handles ``count`` messages."""
    scope = _CURRENT.get()
    if scope is None:
        return
    scope.messages = count
    scope.span.set_attribute("messaging.batch.message_count", count)


def note_message_id(message_id: str) -> None:
    """The running single-message operation's message id (an attribute, never the name)."""
    scope = _CURRENT.get()
    if scope is not None:
        scope.span.set_attribute("messaging.message.id", message_id)


def note_received(messages: Sequence[Message]) -> None:
    """The running ``receive`` got ``messages``: count them and link each one's context."""
    scope = _CURRENT.get()
    if scope is None:
        return
    try:
        _note_received(scope, messages)
    except Exception:  # telemetry never fails an operation
        log.exception("telemetry could not record a receive")


def _note_received(scope: _OperationScope, messages: Sequence[Message]) -> None:
    span = scope.span
    if len(messages) != 1:
        span.set_attribute("messaging.batch.message_count", len(messages))
    elif messages:
        span.set_attribute("messaging.message.id", messages[0].message_id)
    for message in messages:
        linked = _linked_context(message.transport_headers)
        if linked is not None:
            span.add_link(linked)
    if messages:
        attrs = _metric_attributes(scope.attrs)
        for key in ("messaging.system", "messaging.destination.name"):
            if key in scope.attrs:
                attrs[key] = scope.attrs[key]
        _get().consumed.add(len(messages), attrs)


# ------------------------------------------------------------------ trace context


def inject(headers: MutableMapping[str, str]) -> None:
    """Write the current trace context (W3C ``traceparent`` / ``tracestate``) into
    ``headers``; nothing when telemetry is off or there is no recording span."""
    if not _state["enabled"]:
        return
    if not otel_trace.get_current_span().get_span_context().is_valid:
        return
    carrier: dict[str, str] = {}
    try:
        otel_propagate.inject(carrier)
    except Exception:  # telemetry never fails a send
        log.exception("telemetry could not inject the trace context")
        return
    # Only the W3C trace context: another propagator's keys (baggage) are not ours to
    # put on the wire, and would take SQS attribute slots.
    headers.update({k: v for k, v in carrier.items() if k in TRACE_HEADERS and v})


def extract(headers: Mapping[str, str]) -> Any:
    """The OpenTelemetry context carried by ``headers`` (None when off or absent)."""
    if not _state["enabled"] or "traceparent" not in headers:
        return None
    return otel_propagate.extract(dict(headers))


def _linked_context(headers: Mapping[str, str]) -> Any:
    ctx = extract(headers)
    if ctx is None:
        return None
    span_context = otel_trace.get_current_span(ctx).get_span_context()
    return span_context if span_context.is_valid else None


@contextmanager
def _process(queue: AsyncBackend, message: Message) -> Iterator[None]:
    attrs = base_attributes(queue, "process")
    attrs["messaging.operation.type"] = "process"
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
    destination = queue.describe().destination
    tools = _get()
    failed: list[str] = []
    token = _PROCESS_ERRORS.set(failed)
    start = time.perf_counter()
    with tools.tracer.start_as_current_span(
        f"process {destination}" if destination else "process",
        context=parent,
        kind=otel_trace.SpanKind.CONSUMER,
        attributes=attrs,
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        metric_attrs = _metric_attributes(attrs)
        for key in ("messaging.system", "messaging.destination.name"):
            if key in attrs:
                metric_attrs[key] = attrs[key]
        try:
            yield
        finally:
            _PROCESS_ERRORS.reset(token)
            if failed:
                metric_attrs["error.type"] = failed[0]
                span.set_attribute("error.type", failed[0])
                span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, failed[0]))
            tools.process.record(time.perf_counter() - start, metric_attrs)


def note_process_error(exc: Exception) -> None:
    """The running ``consume()`` handler raised ``exc`` (its process span fails)."""
    failed = _PROCESS_ERRORS.get()
    if failed is not None:
        failed.append(type(exc).__name__)


def process_scope(queue: AsyncBackend, message: Message) -> AbstractContextManager[object]:
    """The scope ``consume()`` runs one handler in: a CONSUMER ``process`` span child of
    (and linked to) the producer's context, or a no-op when telemetry is off."""
    if not _state["enabled"] or not getattr(queue, "telemetry_enabled", True):
        return _NULL
    return _process(queue, message)


# On by default when cloudrift is imported (the observer is installed once, here).
_install_default()

__all__ = [
    "AVAILABLE",
    "ENV_SWITCH",
    "SCOPE",
    "TRACE_HEADERS",
    "base_attributes",
    "disable",
    "enable",
    "enabled",
    "extract",
    "inject",
    "note_message_count",
    "note_message_id",
    "note_process_error",
    "note_received",
    "process_scope",
    "suppressed",
    "use_providers",
]
