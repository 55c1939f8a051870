"""Background queue consumers run by the lifespan: started after the backends, stopped
before they close."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cloudrift.messaging import Message

log = logging.getLogger("cloudrift.fastapi")


@dataclass(frozen=True)
class QueueWorker:
    """A ``consume()`` loop over one configured queue (``queue=None``: the default)."""

    handler: Callable[[Message], Awaitable[Any]]
    queue: str | None = None
    concurrency: int = 1
    options: dict[str, Any] = field(default_factory=dict)


def queue_worker(
    handler: Callable[[Message], Awaitable[Any]],
    *,
    queue: str | None = None,
    concurrency: int = 1,
    **consume_options: Any,
) -> QueueWorker:
    """Run ``handler`` on every message of the named queue for the app's whole life.

    Pass the result to ``cloudrift_lifespan(settings, workers=[...])``. Extra keywords go
    to ``Queue.consume`` (``max_messages``, ``wait_time``, ``visibility_timeout``,
    ``max_receives``). At shutdown polling stops and in-flight handlers finish (acked or
    nacked) before the queue is closed.
    """
    if not callable(handler):
        raise TypeError("queue_worker needs an async handler taking a Message")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    return QueueWorker(handler, queue, concurrency, dict(consume_options))


class RunningWorkers:
    """The tasks of the started workers."""

    def __init__(self) -> None:
        self._tasks: list[tuple[QueueWorker, asyncio.Task[int]]] = []

    def start(self, worker: QueueWorker, queue: Any) -> None:
        """Start ``worker`` on ``queue`` (a backend object)."""
        task = asyncio.create_task(
            queue.consume(worker.handler, concurrency=worker.concurrency, **worker.options),
            name=f"cloudrift-worker-{worker.queue or 'default'}",
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


__all__ = ["QueueWorker", "RunningWorkers", "queue_worker"]
