"""OpenTelemetry traces and metrics for every backend operation: the switches and hooks.

When ``opentelemetry-api`` is installed (``pip install "cloudrift[otel]"``) and telemetry
is not switched off, every public operation of every storage, queue, cache, KV and email
backend runs in one CLIENT span and records its duration. cloudrift uses the *global*
tracer and meter providers, so it is silent (OpenTelemetry's no-op implementations)
until the application configures the SDK.

Import cost. This module never imports ``opentelemetry``: importing a cloudrift category
stays as light without the extra as with it. At import it installs a *bootstrap*
:data:`~cloudrift.core.operation.Observer`; the first observed operation (or the first
call to :func:`enabled`, :func:`enable`, :func:`use_providers`, :func:`available`)
imports :mod:`cloudrift.core._otel` — the only module importing OpenTelemetry — which
replaces it with the real observer, or removes it when the API is not installed.

Off switches: the env var ``CLOUDRIFT_TELEMETRY__ENABLED=false`` (read when cloudrift is
imported: no observer is installed at all), the setting ``telemetry.enabled: false``
(backends built from settings are not observed), the backend option ``telemetry=False``
(accepted by every category's factory; ``telemetry: false`` in one backend's settings)
and :func:`disable` / :func:`enable` at runtime.

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
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from cloudrift.core.operation import set_observer

if TYPE_CHECKING:
    from cloudrift.core.lifecycle import AsyncBackend
    from cloudrift.messaging.base import Message

#: Instrumentation scope name of every span and instrument.
SCOPE = "cloudrift"
#: The transport headers cloudrift writes (W3C trace context); reserved attribute names.
TRACE_HEADERS = ("traceparent", "tracestate")
#: Env var that switches telemetry off before anything is installed.
ENV_SWITCH = "CLOUDRIFT_TELEMETRY__ENABLED"

_NULL: AbstractContextManager[object] = nullcontext()

# "pending": the bootstrap observer waits for the first operation; "on"; "off".
# "otel" is the loaded cloudrift.core._otel module; "missing" when the API is absent.
_state: dict[str, Any] = {"mode": "off", "otel": None, "missing": False}

# messaging.operation.type of each queue operation (the others have none).
MESSAGING_TYPES = {
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


class _Notes(Protocol):
    """What the running operation's scope accepts from the base classes."""

    def note_message_count(self, count: int) -> None: ...
    def note_message_id(self, message_id: str) -> None: ...
    def note_received(self, messages: Sequence[Message]) -> None: ...


#: The running operation's scope in this task (for the notes the base classes add).
CURRENT: contextvars.ContextVar[_Notes | None] = contextvars.ContextVar(
    "cloudrift_telemetry_scope", default=None
)

#: The error types of the running process span's handler (set inside process_scope).
PROCESS_ERRORS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "cloudrift_telemetry_process", default=None
)

#: True inside :func:`suppressed`.
SUPPRESSED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "cloudrift_telemetry_suppressed", default=False
)


def _env_enabled() -> bool:
    value = os.environ.get(ENV_SWITCH, "").strip().lower()
    return value not in ("0", "false", "no", "off")


def _load() -> ModuleType | None:
    """The OpenTelemetry half (imported once), or None without ``opentelemetry-api``."""
    otel: ModuleType | None = _state["otel"]
    if otel is None and not _state["missing"]:
        try:
            from cloudrift.core import _otel as otel
        except ImportError:  # the [otel] extra is not installed
            _state["missing"] = True
            return None
        _state["otel"] = otel
    return otel


def available() -> bool:
    """True when ``opentelemetry-api`` can be imported (imports it on the first call)."""
    return _load() is not None


def enabled() -> bool:
    """True when cloudrift records spans and metrics (OTel installed, not switched off)."""
    if _state["mode"] == "pending":
        enable()
    return bool(_state["mode"] == "on")


def enable() -> None:
    """Observe every backend operation (a no-op without ``opentelemetry-api``)."""
    otel = _load()
    if otel is None:
        disable()
        return
    _state["mode"] = "on"
    set_observer(otel.observe)


def disable() -> None:
    """Stop observing operations and carrying trace context."""
    _state["mode"] = "off"
    set_observer(None)


def _bootstrap(backend: AsyncBackend, name: str) -> AbstractContextManager[object] | None:
    """The first operation's observer: load OpenTelemetry, then observe as usual."""
    enable()
    if _state["mode"] != "on":
        return None
    scope: AbstractContextManager[object] | None = _state["otel"].observe(backend, name)
    return scope


def _live() -> ModuleType | None:
    """The loaded OpenTelemetry half when telemetry is on (loading it if still pending)."""
    mode = _state["mode"]
    if mode == "pending":
        enable()
        mode = _state["mode"]
    return _state["otel"] if mode == "on" else None


def use_providers(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Record with these SDK providers instead of the global ones (None: back to the
    global providers). For tests and applications that keep their providers local."""
    otel = _load()
    if otel is not None:
        otel.use_providers(tracer_provider, meter_provider)


@contextmanager
def suppressed() -> Iterator[None]:
    """Record nothing for the operations run inside (tasks started inside included):
    health checks polled every few seconds would drown the traces that matter."""
    token = SUPPRESSED.set(True)
    try:
        yield
    finally:
        SUPPRESSED.reset(token)


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
        kind = MESSAGING_TYPES.get(name)
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


# ------------------------------------------------------------------- the base's notes


def note_message_count(count: int) -> None:
    """The running send_batch / receive handles ``count`` messages."""
    scope = CURRENT.get()
    if scope is not None:
        scope.note_message_count(count)


def note_message_id(message_id: str) -> None:
    """The running single-message operation's message id (an attribute, never the name)."""
    scope = CURRENT.get()
    if scope is not None:
        scope.note_message_id(message_id)


def note_received(messages: Sequence[Message]) -> None:
    """The running ``receive`` got ``messages``: count them and link each one's context."""
    scope = CURRENT.get()
    if scope is not None:
        scope.note_received(messages)


def note_process_error(exc: Exception) -> None:
    """The running ``consume()`` handler raised ``exc`` (its process span fails)."""
    failed = PROCESS_ERRORS.get()
    if failed is not None:
        failed.append(type(exc).__name__)


# ------------------------------------------------------------------ trace context


def inject(headers: MutableMapping[str, str]) -> None:
    """Write the current trace context (W3C ``traceparent`` / ``tracestate``) into
    ``headers``; nothing when telemetry is off or there is no valid current span."""
    otel = _live()
    if otel is not None:
        otel.inject(headers)


def extract(headers: Mapping[str, str]) -> Any:
    """The OpenTelemetry context carried by ``headers`` (None when off or absent)."""
    if "traceparent" not in headers:
        return None
    otel = _live()
    return None if otel is None else otel.extract(headers)


def process_scope(queue: AsyncBackend, message: Message) -> AbstractContextManager[object]:
    """The scope ``consume()`` runs one handler in: a CONSUMER ``process`` span child of
    (and linked to) the producer's context, or a no-op when telemetry is off."""
    if _state["mode"] == "off" or not getattr(queue, "telemetry_enabled", True):
        return _NULL
    otel = _live()
    if otel is None:
        return _NULL
    scope: AbstractContextManager[object] = otel.process_scope(queue, message)
    return scope


def _install_default() -> None:
    """Called once when cloudrift is imported: on (lazily) unless the env var says off."""
    if _env_enabled():
        _state["mode"] = "pending"
        set_observer(_bootstrap)


_install_default()

__all__ = [
    "ENV_SWITCH",
    "SCOPE",
    "TRACE_HEADERS",
    "available",
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
