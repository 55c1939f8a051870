"""The threads that run the local provider's blocking file calls off the event loop.

One process-wide pool shared by every ``LocalStorage`` and every event loop: a queue and
up to ``size`` daemon threads, started only when a call finds none idle. It replaces
``asyncio.to_thread`` for two measured reasons: the default executor has CPU count + 4
threads (6 on a 2-core machine), too few for 8 writes waiting on the disk at once; and
``ThreadPoolExecutor`` + ``wrap_future`` spend ~20 µs of Python per call (a
``concurrent.futures.Future`` with its ``Condition``, an idle semaphore, future chaining)
where this needs a queue put and one ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _settle(fut: asyncio.Future[Any], failed: bool, outcome: Any) -> None:
    if fut.cancelled():  # the caller stopped waiting; the call still ran to its end
        return
    if failed:
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)


class FileThreads:
    """Run blocking calls on at most ``size`` threads; await their results on any loop."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        # One token per thread free for a new job: a thread adds one when it finishes a
        # job, a submit takes one (or starts a thread), so a burst of submits sees the
        # free threads go, even before they wake. list.append/pop are atomic under the
        # GIL: no lock on this path. (A job queued while all ``size`` threads are busy
        # leaves one token too many once done; that only matters below ``size``, where
        # no job is ever queued without a thread for it.)
        self._idle: list[None] = []
        self._lock = threading.Lock()
        self._threads = 0

    @property
    def threads(self) -> int:
        """How many threads have been started (never more than ``size``)."""
        return self._threads

    def submit(self, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """A future of the running loop that gets ``func(*args)``'s result or error."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._jobs.put((loop, fut, func, args))
        try:
            self._idle.pop()
        except IndexError:
            self._start()  # no thread free: start one, unless there are ``size`` already
        return fut

    def _start(self) -> None:
        with self._lock:
            if self._threads >= self._size:
                return
            self._threads += 1
            name = f"cloudrift-file-{self._threads}"
        # Daemon: an interpreter exiting with a write still running (its caller gone)
        # cuts it, leaving at most a temporary file, never a torn object.
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        jobs, idle = self._jobs, self._idle
        while True:
            loop, fut, func, args = jobs.get()
            try:
                outcome, failed = func(*args), False
            except BaseException as exc:  # the awaiting task gets it, whatever it is
                outcome, failed = exc, True
            try:  # noqa: SIM105 - per call: a suppress() context manager costs more
                loop.call_soon_threadsafe(_settle, fut, failed, outcome)
            except RuntimeError:
                pass  # that loop is closed: nobody is waiting for this result
            # Hold no payload (or error) while idle.
            del loop, fut, func, args, outcome
            idle.append(None)


_shared: FileThreads | None = None
_shared_lock = threading.Lock()


def shared(size: int = 32) -> FileThreads:
    """The process's pool (created on first use, with ``size`` threads at most)."""
    global _shared
    pool = _shared
    if pool is None:
        with _shared_lock:
            if _shared is None:
                _shared = FileThreads(size)
            pool = _shared
    return pool


def _forget_after_fork() -> None:
    # A forked child has none of the parent's threads, but the copied pool would count
    # them as started and wait for them forever: the child starts its own.
    global _shared, _shared_lock
    _shared = None
    _shared_lock = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
