"""The one wrapper every public backend operation runs through.

The category base classes (``Storage``, ``Queue``, ``Cache``, ``KVStore``, ``Email``)
decorate each public method with :func:`operation`. The wrapper is the single place for
what every operation of every provider shares:

* the closed-state check: after ``close()`` the call raises
  :class:`~cloudrift.core.exceptions.BackendClosedError` (when awaited, or on the first
  step of a stream), before any argument is looked at;
* the observation point: when an :data:`Observer` is installed with
  :func:`set_observer` (telemetry), it is told the backend and the operation name when
  the method is called and answers with a scope, or None when there is nothing to
  observe this time (then the call costs as little as with no observer); the scope
  encloses the whole operation — validation, provider hooks, retries — and, for
  streaming operations, every step up to exhaustion or close;
* cancellation: :class:`asyncio.CancelledError` always propagates unchanged — never
  translated, never swallowed, not even by an observer whose scope would suppress it —
  and a wrapped stream is closed (``aclose()``) so its provider resources are released.

Observers describe the backend with ``backend.category``, ``backend.provider`` and
``backend.describe()`` (a :class:`BackendDescription` that providers fill through
their ``_describe()`` hook). Nothing here imports a telemetry SDK.

Cost. With no observer, or one answering None, the wrapper adds no coroutine frame: it
is a plain function with the exact signature of the method it wraps (generated once, at
class creation, like ``dataclasses`` generates ``__init__``) that checks the closed flag
and returns the method's own coroutine or async generator. An ``async def`` wrapper with
``*args`` costs ~60% of a memory-cache ``get``; this one is within noise.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from cloudrift.core.lifecycle import AsyncBackend

log = logging.getLogger("cloudrift")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class BackendDescription:
    """How a backend describes itself to telemetry (never a credential).

    ``system`` names the service (``"s3"``, ``"redis"``...), ``destination`` the bucket,
    container, queue, or database the operations act on, ``server_address`` /
    ``server_port`` the endpoint when one is configured.
    """

    system: str
    destination: str | None = None
    server_address: str | None = None
    server_port: int | None = None

    @classmethod
    def at(cls, system: str, destination: str | None, url: str | None) -> BackendDescription:
        """A description whose server is the host and port of ``url`` (credentials in the
        URL are never kept); a bare ``host[:port]`` works too."""
        if not url:
            return cls(system, destination)
        parts = urlsplit(url if "://" in url else f"//{url}")
        try:
            port = parts.port
        except ValueError:
            port = None
        return cls(system, destination, parts.hostname, port)


#: Called when a public operation is called, with the backend and the operation name
#: (the public method's name: low-cardinality); returns the scope that will enclose it
#: (entered when the operation starts running), or None to leave this call unobserved.
#: The scope's ``__exit__`` receives the operation's error (``CancelledError``
#: included) or None; its return value is ignored, so it can never swallow an error.
#: An observer that raises is logged and the operation runs unobserved.
Observer = Callable[["AsyncBackend", str], AbstractContextManager[object] | None]

#: An observer's quiet gate: ``(key, holder)``. While ``key()`` returns the very object
#: in ``holder[0]``, the wrappers do not call the observer at all (it has said that it
#: would answer None there). Telemetry's key is the current OpenTelemetry context: in
#: one with no sampled span, and no metrics to record, a call is not observed.
QuietGate = tuple[Callable[[], object], list[object]]

_NOT_QUIET: list[object] = [object()]  # never what int() returns: no gate

# Read by the generated wrappers as globals (one dict lookup each on the hot path).
_GLOBALS: dict[str, Any] = {
    "_op_observer": None,
    "_op_quiet_key": int,
    "_op_quiet": _NOT_QUIET,
}


def set_observer(observer: Observer | None, *, quiet: QuietGate | None = None) -> Observer | None:
    """Install ``observer`` for every operation of every backend (None removes it), with
    its ``quiet`` gate if it has one (default: the observer's ``quiet_gate`` attribute,
    so re-installing a replaced observer brings its gate back); returns the observer it
    replaced."""
    previous: Observer | None = _GLOBALS["_op_observer"]
    if quiet is None:
        quiet = getattr(observer, "quiet_gate", None)
    key, holder = quiet if quiet is not None and observer is not None else (int, _NOT_QUIET)
    _GLOBALS.update(_op_observer=observer, _op_quiet_key=key, _op_quiet=holder)
    return previous


def _observer_failed(backend: AsyncBackend, name: str) -> None:
    log.exception("operation observer failed to start %s.%s", backend.backend_name, name)


def _enter(scope: AbstractContextManager[object]) -> AbstractContextManager[object] | None:
    try:
        scope.__enter__()
    except Exception:
        log.exception("operation observer failed to start an operation")
        return None
    return scope


def _exit(scope: AbstractContextManager[object] | None, error: BaseException | None) -> None:
    if scope is None:
        return
    try:
        if error is None:
            scope.__exit__(None, None, None)
        else:
            scope.__exit__(type(error), error, error.__traceback__)
    except Exception:
        log.exception("operation observer failed to finish an operation")


async def _closed_call(backend: AsyncBackend) -> Any:
    raise backend._closed_error()


async def _closed_stream(backend: AsyncBackend) -> AsyncIterator[Any]:
    if backend.closed:  # always: the test only makes this an async generator
        raise backend._closed_error()
    yield  # pragma: no cover


async def _observed_call(
    observed: AbstractContextManager[object], work: Coroutine[Any, Any, T]
) -> T:
    scope = _enter(observed)
    try:
        result = await work
    except BaseException as exc:
        _exit(scope, exc)
        raise
    _exit(scope, None)
    return result


async def _observed_stream(
    observed: AbstractContextManager[object], stream: AsyncIterator[T]
) -> AsyncIterator[T]:
    scope = _enter(observed)
    try:
        async for item in stream:
            yield item
    except GeneratorExit:
        _exit(scope, None)  # the consumer stopped early: a normal end
        raise
    except BaseException as exc:
        _exit(scope, exc)
        raise
    else:
        _exit(scope, None)
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


_GLOBALS.update(
    _op_closed_call=_closed_call,
    _op_closed_stream=_closed_stream,
    _op_observer_failed=_observer_failed,
    _op_observed_call=_observed_call,
    _op_observed_stream=_observed_stream,
)

_TEMPLATE = """\
def _op_make(_op_fn, _op_name{defaults}):
    def {fname}({params}):
        if {self}._closed:
            return _op_closed_{kind}({self})
        _op_obs = _op_observer
        if _op_obs is not None and _op_quiet_key() is not _op_quiet[0]:
            try:
                _op_scope = _op_obs({self}, _op_name)
            except Exception:
                _op_scope = _op_observer_failed({self}, _op_name)
            if _op_scope is not None:
                return _op_observed_{kind}(_op_scope, _op_fn({args}))
        return _op_fn({args})
    return {fname}
"""


def _wrap(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):
        kind = "call"
    elif inspect.isasyncgenfunction(fn):
        kind = "stream"
    else:
        raise TypeError(f"@operation needs an async def or async generator, not {fn!r}")
    params: list[str] = []
    args: list[str] = []
    defaults: list[Any] = []
    default_names: list[str] = []
    star = False
    for index, p in enumerate(inspect.signature(fn).parameters.values()):
        if p.name.startswith("_op_"):
            raise TypeError(f"@operation: parameter name {p.name!r} is reserved")
        default = ""
        if p.default is not p.empty:
            defaults.append(p.default)
            default_names.append(f"_op_d{index}")
            default = f"=_op_d{index}"
        if p.kind is p.POSITIONAL_OR_KEYWORD:
            params.append(p.name + default)
            args.append(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            params.append(f"*{p.name}")
            args.append(f"*{p.name}")
            star = True
        elif p.kind is p.KEYWORD_ONLY:
            if not star:
                params.append("*")
                star = True
            params.append(p.name + default)
            args.append(f"{p.name}={p.name}")
        elif p.kind is p.VAR_KEYWORD:
            params.append(f"**{p.name}")
            args.append(f"**{p.name}")
        else:
            raise TypeError("@operation does not support positional-only parameters")
    source = _TEMPLATE.format(
        defaults="".join(f", {n}" for n in default_names),
        fname=fn.__name__,
        params=", ".join(params),
        self=args[0],
        kind=kind,
        args=", ".join(args),
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<operation {fn.__qualname__}>", "exec"), _GLOBALS, namespace)
    wrapper: Callable[..., Any] = namespace["_op_make"](fn, name, *defaults)
    functools.update_wrapper(wrapper, fn)
    if kind == "call":
        # Still "a coroutine function" to inspect, asyncio and unittest.mock's autospec.
        mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
        if mark is not None:
            mark(wrapper)
        wrapper._is_coroutine = getattr(asyncio.coroutines, "_is_coroutine", None)  # type: ignore[attr-defined]  # 3.11's marker
    return wrapper


@overload
def operation(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def operation(*, name: str) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def operation(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Route a public backend method (``async def`` or async generator) through the
    operation wrapper; ``name`` defaults to the method's name."""
    if fn is None:

        def decorate(inner: Callable[P, R]) -> Callable[P, R]:
            return _wrap(inner, name or inner.__name__)

        return decorate
    return _wrap(fn, name or fn.__name__)


# Telemetry installs its bootstrap observer now (unless the env var switches it off);
# OpenTelemetry itself is imported by the first operation, never by this import.
from cloudrift.core import telemetry as _telemetry  # noqa: E402, F401

__all__ = ["BackendDescription", "Observer", "QuietGate", "operation", "set_observer"]
