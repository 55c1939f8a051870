"""An OpenTelemetry SDK recorder for tests: in-memory spans and metrics, never global."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cloudrift.core import telemetry


class Recorder:
    """What cloudrift emitted while the recorder was installed."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("tests")

    def spans(self, category: str | None = None) -> list[ReadableSpan]:
        """Finished spans, oldest first (only ``category``'s operations when given)."""
        found = list(self.exporter.get_finished_spans())
        if category is not None:
            found = [s for s in found if (s.attributes or {}).get("cloudrift.category") == category]
        return found

    def clear(self) -> None:
        """Forget the spans recorded so far."""
        self.exporter.clear()

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name → its data points, from every scope."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


@contextmanager
def recording() -> Iterator[Recorder]:
    """Record cloudrift's spans and metrics with a private SDK (telemetry on)."""
    recorder = Recorder()
    was_on = telemetry.enabled()
    telemetry.enable()
    telemetry.use_providers(recorder.tracer_provider, recorder.meter_provider)
    try:
        yield recorder
    finally:
        telemetry.use_providers(None, None)
        if not was_on:
            telemetry.disable()


def exported_values(spans: Iterable[ReadableSpan]) -> list[str]:
    """Every name, attribute value and event attribute value the spans would export."""
    values: list[str] = []
    for span in spans:
        values.append(span.name)
        values += [str(v) for v in (span.attributes or {}).values()]
        for event in span.events:
            values += [str(v) for v in (event.attributes or {}).values()]
    return values
