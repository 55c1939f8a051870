"""The local provider's file threads: enough of them, bounded, and robust to callers leaving."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from pathlib import Path

import pytest

from cloudrift.storage import _file_threads
from cloudrift.storage.local import LocalStorage


async def test_eight_concurrent_uploads_run_at_once_whatever_the_default_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 concurrent uploads are all inside the filesystem at the same moment, even when the
    loop's default executor has 2 threads (it has CPU count + 4: 6 on 2 cores)."""
    loop = asyncio.get_running_loop()
    small = concurrent.futures.ThreadPoolExecutor(2)
    loop.set_default_executor(small)
    storage = LocalStorage(root_dir=tmp_path)
    together = threading.Barrier(8, timeout=10)
    place = storage._place

    def place_once_all_arrived(*args: object) -> None:
        together.wait()  # BrokenBarrierError unless 8 writes are in their threads at once
        place(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "_place", place_once_all_arrived)
    try:
        await asyncio.gather(*(storage.upload(f"k{i}", b"x" * 1024) for i in range(8)))
    finally:
        small.shutdown(wait=False, cancel_futures=True)
    assert sorted(await storage.list()) == [f"k{i}" for i in range(8)]


async def test_a_pool_never_starts_more_threads_than_its_size() -> None:
    """20 calls blocked at once on a pool of 3 run 3 at a time and all complete."""
    pool = _file_threads.FileThreads(3)
    release, three = threading.Event(), threading.Event()
    running: list[int] = []

    def blocked(i: int) -> int:
        running.append(i)
        if len(running) >= 3:
            three.set()
        release.wait(10)
        return i

    calls = [pool.submit(blocked, i) for i in range(20)]
    assert await asyncio.to_thread(three.wait, 10)
    assert pool.threads == 3 and len(running) == 3
    release.set()
    assert await asyncio.gather(*calls) == list(range(20))
    assert pool.threads == 3


async def test_a_burst_after_quiet_calls_gets_a_thread_per_call() -> None:
    """8 calls submitted at once, after 3 one-at-a-time calls left 3 idle threads, all run
    at the same moment (the idle threads count once, not once per submit)."""
    pool = _file_threads.FileThreads(32)
    for _ in range(3):
        await asyncio.gather(*(pool.submit(int, "1") for _ in range(3)))
    together = threading.Barrier(8, timeout=10)
    assert await asyncio.gather(*(pool.submit(together.wait) for _ in range(8)))
    assert pool.threads == 8


async def test_a_call_error_reaches_the_caller_and_the_thread_keeps_serving() -> None:
    """The call's own exception is raised to the awaiting task; the next call still runs."""
    pool = _file_threads.FileThreads(1)
    with pytest.raises(FileNotFoundError):
        await pool.submit(os.stat, "/nonexistent/cloudrift/path")
    assert await pool.submit(sum, [1, 2, 3]) == 6
    assert pool.threads == 1


async def test_a_cancelled_caller_does_not_stop_the_call_or_the_thread() -> None:
    """Cancelling the awaiting task leaves the call to finish; the thread serves the next."""
    pool = _file_threads.FileThreads(1)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(10)
        finished.set()

    waiter = asyncio.ensure_future(pool.submit(slow))
    assert await asyncio.to_thread(started.wait, 10)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    assert await pool.submit(int, "7") == 7
    assert finished.is_set()


def test_a_result_for_a_closed_loop_is_dropped_and_the_thread_keeps_serving() -> None:
    """A call finishing after its loop closed is discarded; another loop is then served."""
    pool = _file_threads.FileThreads(1)
    release = threading.Event()
    done = threading.Event()

    def slow() -> None:
        release.wait(10)
        done.set()

    async def leave_early() -> None:
        pool.submit(slow)  # never awaited: the loop closes first

    asyncio.run(leave_early())
    release.set()
    assert done.wait(10)

    async def again() -> int:
        result: int = await pool.submit(int, "5")
        return result

    assert asyncio.run(again()) == 5
    assert pool.threads == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_gets_its_own_threads(tmp_path: Path) -> None:
    """After a fork the child's uploads run on threads of its own (the parent's do not
    exist there), instead of waiting forever."""
    storage = LocalStorage(root_dir=tmp_path)
    asyncio.run(storage.upload("parent", b"p"))  # the parent's pool has started a thread
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            asyncio.run(asyncio.wait_for(storage.upload("child", b"c"), 10))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "child").read_bytes() == b"c"
