"""Telemetry: what observing every operation costs, on memory backends (no I/O to hide it).

"on, sampling off": the OpenTelemetry SDK's tracer provider is configured with
``ParentBased(ALWAYS_OFF)`` and cloudrift's observer is installed; "disabled": no observer
at all (``telemetry.disable()``). The same backend serves both sides, interleaved round by
round, timed by this process's CPU time. Two metrics set-ups: "metrics not configured"
(no meter provider: the API's no-op, what an application that only exports traces has)
and "metrics exported" (an SDK meter provider with a reader: every operation's duration
is recorded). The last rows sample every span (``ALWAYS_ON``, exported to memory) and
report the cost per recorded span.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

from benchmarks._harness import Row, Settings, compare, throughput_row

TARGET = 0.95
PAYLOAD = b"x" * 1024


def _switched(on: bool, work: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    from cloudrift.core import telemetry

    async def run() -> None:
        if on:
            telemetry.enable()
        else:
            telemetry.disable()
        await work()

    return run


async def run(settings: Settings) -> list[Row]:
    """Memory storage download 1 KiB and memory queue send+receive, on vs disabled."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

    from cloudrift.core import telemetry
    from cloudrift.messaging import get_queue
    from cloudrift.storage import get_storage

    storage = get_storage("memory")
    queue = get_queue("memory")
    await storage.upload("bench/1k", PAYLOAD)
    ops = settings.n(5000, minimum=20)

    async def downloads() -> None:
        for _ in range(ops):
            await storage.download("bench/1k")

    async def round_trips() -> None:
        for _ in range(ops):
            await queue.send({"n": 1})
            (message,) = await queue.receive()
            await queue.delete(message.receipt_handle)

    cases = (
        ("memory storage download 1 KiB", downloads, 1),
        ("memory queue send + receive + delete", round_trips, 3),
    )
    rows: list[Row] = []
    was_on = telemetry.enabled()
    exporter = InMemorySpanExporter()
    setups = (
        ("sampling off, metrics not configured", False, NoOpMeterProvider()),
        ("sampling off, metrics exported", False, MeterProvider([InMemoryMetricReader()])),
        ("every span sampled", True, MeterProvider([InMemoryMetricReader()])),
    )
    try:
        for label, sampled, meter_provider in setups:
            tracer_provider = TracerProvider(
                sampler=ALWAYS_ON if sampled else ParentBased(ALWAYS_OFF)
            )
            if sampled:
                tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
            telemetry.use_providers(tracer_provider, meter_provider)
            for name, work, spans_per_op in cases:

                async def cleared(work: Callable[[], Awaitable[None]] = work) -> None:
                    exporter.clear()
                    await work()

                # CPU time: the work is in-process, and the shared machine's wall clock
                # moved the per-round ratios by more than the effect measured.
                cmp = await compare(
                    _switched(True, cleared),
                    _switched(False, work),
                    ops=ops,
                    settings=settings,
                    clock=time.process_time,
                )
                # What telemetry adds to each operation, in µs (medians of both sides).
                ours, base = statistics.median(cmp.ours), statistics.median(cmp.baseline)
                added = (1 / ours - 1 / base) * 1e6
                if not sampled:
                    rows.append(
                        throughput_row(
                            "telemetry",
                            f"{name}: on, {label}",
                            cmp,
                            target=TARGET,
                            baseline_name="telemetry disabled",
                            note=f"+{added / spans_per_op:.2f} µs per operation; "
                            f"{ops} ops per round",
                        )
                    )
                    continue
                row = throughput_row(
                    "telemetry",
                    f"{name}: on, {label}",
                    cmp,
                    baseline_name="telemetry disabled",
                    note=f"{added / spans_per_op:.1f} µs per recorded span (and its metrics); "
                    f"{ops} ops per round",
                )
                rows.append(row)
    finally:
        telemetry.use_providers()
        if was_on:
            telemetry.enable()
        else:
            telemetry.disable()
        await storage.close()
        await queue.close()
    return rows
