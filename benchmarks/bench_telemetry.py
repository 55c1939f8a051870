"""Telemetry: what observing every operation costs, on memory backends (no I/O to hide it).

"on, sampling off": the OpenTelemetry SDK is configured (tracer provider with
``ParentBased(ALWAYS_OFF)``, a meter provider with no reader) and cloudrift's observer is
installed, so every operation still starts a (non-recording) span, carries trace context
and updates instruments. "disabled": no observer at all (``telemetry.disable()``). The
same backend serves both sides, interleaved round by round. The last rows sample every
span (``ALWAYS_ON``, exported to memory) and report the cost per recorded span.
"""

from __future__ import annotations

import statistics
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
    from opentelemetry.sdk.metrics import MeterProvider
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
    try:
        for sampled in (False, True):
            tracer_provider = TracerProvider(
                sampler=ALWAYS_ON if sampled else ParentBased(ALWAYS_OFF)
            )
            if sampled:
                tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
            telemetry.use_providers(tracer_provider, MeterProvider())
            for name, work, spans_per_op in cases:

                async def cleared(work: Callable[[], Awaitable[None]] = work) -> None:
                    exporter.clear()
                    await work()

                cmp = await compare(
                    _switched(True, cleared), _switched(False, work), ops=ops, settings=settings
                )
                if not sampled:
                    rows.append(
                        throughput_row(
                            "telemetry",
                            f"{name}: on, sampling off",
                            cmp,
                            target=TARGET,
                            baseline_name="telemetry disabled",
                            note=f"{ops} ops per round",
                        )
                    )
                    continue
                per_span = (
                    1 / statistics.median(cmp.ours) - 1 / statistics.median(cmp.baseline)
                ) / spans_per_op
                row = throughput_row(
                    "telemetry",
                    f"{name}: on, every span sampled",
                    cmp,
                    baseline_name="telemetry disabled",
                    note=f"{per_span * 1e6:.1f} µs per recorded span; {ops} ops per round",
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
