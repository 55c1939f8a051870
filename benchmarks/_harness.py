"""Side-by-side measurement: cloudrift vs a baseline on the same work, in one run.

These machines are shared and noisy, so absolute times are not comparable between runs;
only ratios measured *together* are. :func:`compare` therefore interleaves the two sides
(A, B, A, B, ...) for several rounds after a warm-up and reports the median throughput
of each side, the spread (min..max of the per-round ratio) and the ratio of medians.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Work = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Settings:
    """How hard to measure: ``quick`` for a smoke run, ``smoke`` for the test suite."""

    rounds: int = 7
    warmup: int = 1
    scale: float = 1.0  # multiplies operation counts and sizes
    smoke: bool = False

    def n(self, full: int, minimum: int = 1) -> int:
        """``full`` scaled down for quick/smoke runs, never below ``minimum``."""
        return max(minimum, int(full * self.scale))


FULL = Settings()
QUICK = Settings(rounds=3, warmup=1, scale=0.2)
SMOKE = Settings(rounds=1, warmup=0, scale=0.01, smoke=True)


@dataclass
class Row:
    """One line of the results table."""

    category: str
    name: str
    ours: str
    baseline: str
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    spread: str = ""
    #: Client CPU per operation of both sides, e.g. "271 vs 237 µs/op (1.14x)".
    cpu: str = ""

    def verdict(self) -> str:
        """'met' / 'NOT met' / '' (no target)."""
        if self.met is None:
            return ""
        return "met" if self.met else "NOT met"


@dataclass
class Comparison:
    """Per-round throughputs (operations per second) of both sides."""

    ours: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Median throughput of ours divided by the baseline's (higher is better for us)."""
        return statistics.median(self.ours) / statistics.median(self.baseline)

    @property
    def spread(self) -> str:
        """min..max of the per-round ratios: how much the noise moved the answer."""
        ratios = [a / b for a, b in zip(self.ours, self.baseline, strict=True)]
        return f"{min(ratios):.2f}..{max(ratios):.2f}"


async def _timed(work: Work, ops: int, clock: Callable[[], float] = time.perf_counter) -> float:
    began = clock()
    await work()
    elapsed = clock() - began
    return ops / elapsed if elapsed > 0 else float("inf")


async def compare(
    ours: Work,
    baseline: Work,
    *,
    ops: int,
    settings: Settings,
    before_each: Work | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Comparison:
    """Interleave ``ours`` and ``baseline`` (each doing ``ops`` operations per call).

    ``before_each`` (untimed) runs before every call of either side, e.g. to empty a
    queue whose stand-in slows down as it fills. ``clock=time.process_time`` times
    in-process work by this process's CPU, which a loaded machine's wall clock blurs.
    """

    async def timed(work: Work) -> float:
        if before_each is not None:
            await before_each()
        return await _timed(work, ops, clock)

    for _ in range(settings.warmup):
        for work in (ours, baseline):
            if before_each is not None:
                await before_each()
            await work()
    result = Comparison()
    for round_no in range(settings.rounds):
        # Alternate who goes first so neither side always runs on a warmer cache.
        if round_no % 2 == 0:
            result.ours.append(await timed(ours))
            result.baseline.append(await timed(baseline))
        else:
            result.baseline.append(await timed(baseline))
            result.ours.append(await timed(ours))
    return result


def throughput_row(
    category: str,
    name: str,
    cmp: Comparison,
    *,
    unit: str = "ops/s",
    target: float | None = None,
    baseline_name: str = "raw SDK",
    note: str = "",
    cpu: str = "",
) -> Row:
    """A table row for a throughput comparison, with an optional minimum ratio target."""
    ratio = cmp.ratio
    return Row(
        category=category,
        name=name,
        ours=f"{statistics.median(cmp.ours):,.0f} {unit}",
        baseline=f"{statistics.median(cmp.baseline):,.0f} {unit} ({baseline_name})",
        ratio=ratio,
        target=f">= {target:.2f}" if target is not None else "",
        met=None if target is None else ratio >= target,
        note=note,
        spread=cmp.spread,
        cpu=cpu,
    )


def gather_n(factory: Callable[[int], Awaitable[object]], count: int, concurrency: int) -> Work:
    """Work that runs ``factory(i)`` for i in range(count) with at most ``concurrency`` at once."""

    async def work() -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await factory(i)

        await asyncio.gather(*(one(i) for i in range(count)))

    return work


async def drain_deleting(
    receive: Any, delete: Any, count: int, what: str, concurrency: int
) -> None:
    """Receive ``count`` messages (``receive()`` returns a list of receipt handles) and
    delete each, ``concurrency`` deletes at a time; fail after 50 empty receives in a row."""
    got, empty = 0, 0
    while got < count:
        handles = await receive()
        if not handles:
            empty += 1
            if empty > 50:
                raise RuntimeError(f"{what}: only {got} of {count} messages came back")
            continue
        empty = 0
        got += len(handles)

        async def delete_one(i: int, batch: list[str] = handles) -> None:
            await delete(batch[i])

        await gather_n(delete_one, len(handles), concurrency)()


def cpu_tracked(work: Work) -> tuple[Work, list[float]]:
    """``work`` plus the list it appends this process's CPU seconds of each call to
    (``time.process_time``: every thread of the client; the stand-ins run in other
    processes). Less moved by a loaded machine than wall time."""
    samples: list[float] = []

    async def run() -> None:
        began = time.process_time()
        await work()
        samples.append(time.process_time() - began)

    return run, samples


def cpu_figures(
    ours: list[float], base: list[float], ops: int, warmup: int, unit: str = "op"
) -> tuple[str, float]:
    """'95 vs 90 µs/op (1.06x)' (medians after the warm-up calls) for the client CPU
    column, and that ratio, ours / baseline (lower is better for us)."""
    mine = statistics.median(ours[warmup:]) / ops * 1e6
    theirs = statistics.median(base[warmup:]) / ops * 1e6
    ratio = mine / theirs if theirs else float("inf")
    return f"{mine:,.0f} vs {theirs:,.0f} µs/{unit} ({ratio:.2f}x)", ratio


def cpu_column(
    ours: list[float], base: list[float], ops: int, warmup: int, unit: str = "op"
) -> str:
    """The client CPU column's text: '95 vs 90 µs/op (1.06x)'."""
    return cpu_figures(ours, base, ops, warmup, unit)[0]


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM) in MiB, from the kernel's accounting."""
    with open("/proc/self/status", encoding="ascii") as fh:
        match = re.search(r"^VmHWM:\s+(\d+) kB", fh.read(), re.MULTILINE)
    if not match:
        raise RuntimeError("no VmHWM in /proc/self/status")
    return int(match.group(1)) / 1024


def current_rss_mib() -> float:
    """This process's current resident set size (VmRSS) in MiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        match = re.search(r"^VmRSS:\s+(\d+) kB", fh.read(), re.MULTILINE)
    if not match:
        raise RuntimeError("no VmRSS in /proc/self/status")
    return int(match.group(1)) / 1024


def machine_facts() -> dict[str, str]:
    """What the figures were measured on."""
    import platform

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
