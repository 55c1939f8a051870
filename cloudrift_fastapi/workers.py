"""Queue consumers: run by the lifespan inside the web app (started after the backends,
stopped before they close), or standalone by :func:`run_worker` (``cloudrift worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.validation import is_int, is_number
from cloudrift.messaging import Message

if TYPE_CHECKING:
    from cloudrift.config import CloudriftSettings
    from cloudrift_fastapi.container import Container

log = logging.getLogger("cloudrift.fastapi")


@dataclass(frozen=True)
class QueueWorker:
    """A ``consume()`` loop over one configured queue (``queue=None``: the default), or
    over a topic subscription when ``category`` is ``"subscription"``."""

    handler: Callable[[Message], Awaitable[Any]]
    queue: str | None = None
    concurrency: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    #: The settings category the consumed backend comes from: ``queue`` or ``subscription``.
    category: str = "queue"


def queue_worker(
    handler: Callable[[Message], Awaitable[Any]],
    *,
    queue: str | None = None,
    subscription: str | None = None,
    concurrency: int = 1,
    **consume_options: Any,
) -> QueueWorker:
    """Run ``handler`` on every message of the named queue for the app's whole life.

    ``subscription="audit"`` consumes the configured topic subscription ``audit``
    instead (a subscription is a queue); give ``queue`` or ``subscription``, not both.
    Pass the result to ``cloudrift_lifespan(settings, workers=[...])``. Extra keywords go
    to ``Queue.consume`` (``max_messages``, ``wait_time``, ``visibility_timeout``,
    ``max_receives``). At shutdown polling stops and in-flight handlers finish (acked or
    nacked) before the queue is closed.
    """
    if not callable(handler):
        raise TypeError("queue_worker needs an async handler taking a Message")
    if not is_int(concurrency) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    if queue is not None and subscription is not None:
        raise ConfigurationError(
            f"queue_worker consumes one backend: got queue={queue!r} and "
            f"subscription={subscription!r}; pass only one"
        )
    if subscription is not None:
        return QueueWorker(
            handler, subscription, concurrency, dict(consume_options), category="subscription"
        )
    return QueueWorker(handler, queue, concurrency, dict(consume_options))


class RunningWorkers:
    """The tasks of the started workers."""

    def __init__(self) -> None:
        self._tasks: list[tuple[QueueWorker, asyncio.Task[int]]] = []

    def start(self, worker: QueueWorker, queue: Any) -> None:
        """Start ``worker`` on ``queue`` (a backend object)."""
        task = asyncio.create_task(
            queue.consume(worker.handler, concurrency=worker.concurrency, **worker.options),
            name=f"cloudrift-worker-{worker.category}-{worker.queue or 'default'}",
        )
        task.add_done_callback(_report)
        self._tasks.append((worker, task))

    async def stop(self) -> None:
        """Cancel every loop and wait until its in-flight handlers are done."""
        tasks, self._tasks = self._tasks, []
        for _, task in tasks:
            task.cancel()
        for worker, task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await task
                except Exception as exc:
                    log.error("queue worker on %r stopped with %s", worker.queue or "default", exc)


def _report(task: asyncio.Task[int]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error(
            "queue worker %s stopped unexpectedly: %s: %s", task.get_name(), type(exc).__name__, exc
        )


# ---------------------------------------------------------------- standalone workers

_current: contextvars.ContextVar[Container | None] = contextvars.ContextVar(
    "cloudrift_worker_container", default=None
)

#: Exit codes of a standalone worker (``cloudrift worker``).
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2


def current_container() -> Container:
    """The container of the standalone worker running this handler (``cloudrift worker``).

    Handlers read their backends from it the way the dependencies of routes do::

        box = current_container()
        storage, database = box.storage(), box.database()
        avatars = provider_for(box, "storage", "avatars")()

    Raises ConfigurationError outside a worker started by :func:`run_worker`.
    """
    box = _current.get()
    if box is None:
        raise ConfigurationError(
            "current_container() works only inside a handler run by `cloudrift worker` "
            "(run_worker); in the web app, read backends from the app's dependencies"
        )
    return box


def load_handler(target: str) -> Callable[[Message], Awaitable[Any]]:
    """Import ``"package.module:handler"`` (the attribute may be dotted: ``jobs:Cls.run``).

    Raises ConfigurationError naming what is missing or not callable.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            f"handler {target!r} must be written MODULE:HANDLER (e.g. myapp.jobs:handle)"
        )
    import importlib

    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import the handler's module {module_name!r}: {exc}"
        ) from exc
    for part in attr.split("."):
        if not hasattr(found, part):
            raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}")
        found = getattr(found, part)
    if not callable(found):
        raise ConfigurationError(f"{target} is not callable; it must take a Message")
    handler: Callable[[Message], Awaitable[Any]] = found
    return handler


@dataclass
class WorkerStats:
    """What a standalone worker did: messages handled, and how many are running now."""

    ok: int = 0
    failed: int = 0
    in_flight: int = 0

    @property
    def handled(self) -> int:
        """Messages whose handler has finished (acked or nacked)."""
        return self.ok + self.failed


def _counted(
    handler: Callable[[Message], Awaitable[Any]], stats: WorkerStats
) -> Callable[[Message], Awaitable[None]]:
    async def run(message: Message) -> None:
        stats.in_flight += 1
        try:
            outcome = handler(message)
            if inspect.isawaitable(outcome):
                await outcome
        except BaseException:
            stats.failed += 1
            raise
        else:
            stats.ok += 1
        finally:
            stats.in_flight -= 1

    return run


def _hard_exit(code: int) -> None:
    # Skips every cleanup on purpose: messages not acked come back after their
    # visibility timeout, which is the whole point of exiting "at once".
    logging.shutdown()
    os._exit(code)


async def run_worker(
    handler: Callable[[Message], Awaitable[Any]],
    *,
    settings: CloudriftSettings,
    queue: str | None = None,
    subscription: str | None = None,
    concurrency: int = 1,
    grace: float = 30.0,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    name: str | None = None,
    wire: Iterable[ModuleType | str] = (),
    **consume_options: Any,
) -> int:
    """Run ``handler`` on queue ``queue`` (None: the default) — or on topic subscription
    ``subscription`` — in this process, with every configured backend built as the web
    app's lifespan builds them; returns an exit code.

    Settings are checked as at app startup (production checks), every backend is built
    concurrently into a :class:`~cloudrift_fastapi.container.Container` (handlers reach
    it through :func:`current_container`, or through ``@inject`` + ``Provide[Container.x]``
    in the ``wire`` modules, as the lifespan's ``wire=`` does for routes), then
    ``Queue.consume`` runs until a signal.
    The first of ``signals`` stops receiving at once; in-flight handlers finish (acked or
    nacked) within ``grace`` seconds, every backend is closed and 0 is returned. A second
    signal, or the grace period running out, exits the process at once (``128 +
    signal`` / 1): unacked messages come back after their visibility timeout. Extra
    keywords go to ``Queue.consume`` (``max_receives``, ``visibility_timeout``...).
    """
    from cloudrift_fastapi.container import BackendSet, Container, provider_for
    from cloudrift_fastapi.lifespan import check_startup_settings

    if not is_int(concurrency) or concurrency < 1:
        raise ConfigurationError(
            f"concurrency must be a positive whole number, got {concurrency!r}"
        )
    if not is_number(grace) or not grace >= 0:
        raise ConfigurationError(f"grace must be a number of seconds >= 0, got {grace!r}")
    if queue is not None and subscription is not None:
        raise ConfigurationError(
            "a worker consumes one queue or one subscription: give queue or subscription, not both"
        )
    category, source_name = (
        ("queue", queue)
        if subscription is None
        else (
            "subscription",
            subscription,
        )
    )
    check_startup_settings(settings)
    # Names the queue / subscription when it is not configured.
    queue_config = settings.backend(category, source_name)
    if queue_config.provider == "memory":
        log.warning(
            "cloudrift worker: the 'memory' queue lives inside this process, so no other "
            "process can send to it; configure a shared queue (redis, sqs, azure_bus)"
        )
    box = Container()
    backends = BackendSet(settings, box, verify=settings.verify_on_startup)
    await backends.start()
    stats = WorkerStats()
    began = time.monotonic()
    label = f"{category}={source_name or settings.default_name(category)} ({queue_config.provider})"
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    timers: list[asyncio.TimerHandle] = []
    wire_list = list(wire)
    try:
        if wire_list:
            box.wire(modules=wire_list)
        source = provider_for(box, category, source_name)()
        token = _current.set(box)
        try:
            task = asyncio.create_task(
                source.consume(
                    _counted(handler, stats), concurrency=concurrency, **consume_options
                ),
                name="cloudrift-worker",
            )
        finally:
            _current.reset(token)
        stopping: list[str] = []

        def on_signal(sig: signal.Signals) -> None:
            if stopping:
                log.warning("cloudrift worker: second %s, exiting now", sig.name)
                _hard_exit(128 + int(sig))
                return
            stopping.append(sig.name)
            log.info(
                "cloudrift worker stopping on %s: no new messages; %d in flight, grace %gs",
                sig.name,
                stats.in_flight,
                grace,
            )
            task.cancel()
            timers.append(loop.call_later(grace, on_grace_over))

        def on_grace_over() -> None:
            if task.done():
                return
            log.error(
                "cloudrift worker: %d handler(s) still running after the %gs grace period; "
                "exiting (their messages come back after the visibility timeout)",
                stats.in_flight,
                grace,
            )
            _hard_exit(EXIT_FAILED)

        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        log.info(
            "cloudrift worker started: %s, handler=%s, concurrency=%d, pid=%d",
            label,
            name or getattr(handler, "__qualname__", repr(handler)),
            concurrency,
            os.getpid(),
        )
        code = EXIT_OK
        try:
            await task
        except asyncio.CancelledError:
            if not stopping:
                raise  # this coroutine itself was cancelled
        except Exception as exc:
            log.error("cloudrift worker: consume() failed: %s: %s", type(exc).__name__, exc)
            code = EXIT_FAILED
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        if wire_list:
            box.unwire()
        await backends.stop()
        for timer in timers:
            timer.cancel()
    log.info(
        "cloudrift worker stopped: %s, handled=%d (ok=%d, failed=%d) in %.1fs",
        label,
        stats.handled,
        stats.ok,
        stats.failed,
        time.monotonic() - began,
    )
    return code


__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "QueueWorker",
    "RunningWorkers",
    "WorkerStats",
    "current_container",
    "load_handler",
    "queue_worker",
    "run_worker",
]
