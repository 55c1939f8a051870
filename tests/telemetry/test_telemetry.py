"""cloudrift.core.telemetry: the switches, the attribute rules and what is never recorded."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudrift.cache import get_cache
from cloudrift.config import CloudriftSettings
from cloudrift.core import operation, telemetry
from cloudrift.core.exceptions import ConfigurationError, InvalidMessageError
from cloudrift.email import get_email
from cloudrift.messaging import Message, Queue, get_queue
from cloudrift.messaging.base import SendLimits
from cloudrift.storage import get_storage
from tests.telemetry.support import Recorder, exported_values, recording

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """cloudrift's spans and metrics, recorded by a private OpenTelemetry SDK."""
    with recording() as rec:
        yield rec


def _run_python(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


async def test_telemetry_false_option_records_nothing_for_that_backend(recorder: Recorder) -> None:
    """A backend built with telemetry=False emits no span; its siblings still do."""
    quiet = get_storage("memory", telemetry=False)
    loud = get_storage("memory")
    await quiet.upload("a", b"1")
    await loud.upload("a", b"1")
    assert [s.attributes["cloudrift.operation"] for s in recorder.spans()] == ["upload"]
    assert quiet.telemetry_enabled is False


def test_telemetry_option_must_be_a_bool() -> None:
    """telemetry="no" is refused with a ConfigurationError, not taken as truthy."""
    with pytest.raises(ConfigurationError, match="telemetry must be True or False"):
        get_storage("memory", telemetry="no")


async def test_settings_can_switch_telemetry_off_and_name_the_backend(
    recorder: Recorder,
) -> None:
    """telemetry.enabled=false in settings: backends built from them are silent; when on,
    spans carry the configured backend name as cloudrift.backend."""
    on = CloudriftSettings(storage={"backends": {"avatars": {"provider": "memory"}}})
    off = CloudriftSettings(
        storage={"backends": {"avatars": {"provider": "memory"}}}, telemetry={"enabled": False}
    )
    await off.open_backend("storage", "avatars").upload("k", b"v")
    assert recorder.spans() == []
    await on.open_backend("storage", "avatars").upload("k", b"v")
    (span,) = recorder.spans()
    assert span.attributes["cloudrift.backend"] == "avatars"


async def test_one_backend_can_switch_telemetry_off_in_settings_env_or_yaml(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`telemetry: false` on one backend (keywords, YAML or CLOUDRIFT_..._TELEMETRY=false)
    silences that backend only; its siblings are still observed."""
    (tmp_path / "cloudrift.yaml").write_text(
        "storage:\n  default: loud\n  backends:\n"
        "    quiet: {provider: memory, telemetry: false}\n    loud: {provider: memory}\n"
    )
    monkeypatch.setenv("CLOUDRIFT_QUEUE__BACKENDS__JOBS__PROVIDER", "memory")
    monkeypatch.setenv("CLOUDRIFT_QUEUE__BACKENDS__JOBS__TELEMETRY", "false")
    built = [
        CloudriftSettings(
            cache={"backends": {"sessions": {"provider": "memory", "telemetry": False}}}
        ).open_backend("cache", "sessions"),
        CloudriftSettings.from_yaml(tmp_path / "cloudrift.yaml").open_backend("storage", "quiet"),
        CloudriftSettings().open_backend("queue", "jobs"),
    ]
    assert [backend.telemetry_enabled for backend in built] == [False, False, False]
    await built[0].set("k", b"v")
    await built[1].upload("k", b"v")
    await built[2].send({"n": 1})
    loud = CloudriftSettings.from_yaml(tmp_path / "cloudrift.yaml").open_backend("storage")
    await loud.upload("k", b"v")
    assert [s.attributes["cloudrift.backend"] for s in recorder.spans()] == ["loud"]


def test_the_env_var_reaches_the_settings_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLOUDRIFT_TELEMETRY__ENABLED=false sets telemetry.enabled."""
    monkeypatch.setenv("CLOUDRIFT_TELEMETRY__ENABLED", "false")
    assert CloudriftSettings().telemetry.enabled is False


def test_the_env_var_keeps_the_observer_out_from_import() -> None:
    """With CLOUDRIFT_TELEMETRY__ENABLED=false no observer is ever installed."""
    code = (
        "import cloudrift.storage; from cloudrift.core import operation, telemetry; "
        "print(telemetry.enabled(), operation._GLOBALS['_op_observer'])"
    )
    assert _run_python(code, CLOUDRIFT_TELEMETRY__ENABLED="false") == "False None"
    assert _run_python(code, CLOUDRIFT_TELEMETRY__ENABLED="true").startswith("True <function")


def test_importing_a_category_loads_no_opentelemetry_until_the_first_operation() -> None:
    """`import cloudrift.storage` leaves opentelemetry unimported (imports stay light);
    the first operation loads it and is recorded by the SDK configured meanwhile."""
    code = (
        "import sys, asyncio\n"
        "import cloudrift.storage, cloudrift.messaging, cloudrift.cache, cloudrift.kv\n"
        "import cloudrift.email, cloudrift.config\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'opentelemetry'}))\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import "
        "InMemorySpanExporter\n"
        "exporter = InMemorySpanExporter(); provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "asyncio.run(cloudrift.storage.get_storage('memory').upload('k', b'v'))\n"
        "print([s.name for s in exporter.get_finished_spans()])\n"
    )
    assert _run_python(code).splitlines() == ["[]", "['upload']"]


def test_without_opentelemetry_nothing_is_installed_and_queues_work() -> None:
    """Where opentelemetry-api cannot be imported: after the first operation no observer
    is left, no opentelemetry module is loaded, and a memory queue sends and receives
    without trace headers."""
    code = (
        "import sys, asyncio; sys.modules['opentelemetry'] = None\n"
        "from cloudrift.core import operation, telemetry\n"
        "from cloudrift.messaging import get_queue\n"
        "async def main():\n"
        "    q = get_queue('memory'); await q.send({'n': 1}); (m,) = await q.receive()\n"
        "    return m.transport_headers\n"
        "headers = asyncio.run(main())\n"
        "loaded = sorted(n for n in sys.modules if n.startswith('opentelemetry.'))\n"
        "print(telemetry.available(), operation._GLOBALS['_op_observer'], headers, loaded)"
    )
    assert _run_python(code) == "False None {} []"


async def test_no_exported_value_holds_a_key_a_payload_an_address_or_a_secret(
    recorder: Recorder,
) -> None:
    """Object keys, cache keys and values, payloads, attributes and email addresses never
    reach a span name, attribute or event, not even when the operation fails."""
    secrets = ["secret-key-7f3a", "payload-91bd", "ops@example.com", "attr-value-c0de"]
    storage = get_storage("memory")
    await storage.upload("secret-key-7f3a", b"payload-91bd")
    await storage.download("secret-key-7f3a")
    with pytest.raises(Exception, match="secret-key"):
        await storage.download("secret-key-7f3a-missing")
    cache = get_cache("memory")
    await cache.set("secret-key-7f3a", b"payload-91bd")
    await cache.get("secret-key-7f3a")
    queue = get_queue("memory")
    with recorder.tracer.start_as_current_span("request"):
        await queue.send({"p": "payload-91bd"}, attributes={"k": "attr-value-c0de"})
    await queue.consume(lambda message: None, wait_time=0.1, limit=1)
    email = get_email("memory", default_from="ops@example.com")
    await email.send("ops@example.com", "payload-91bd", body_text="payload-91bd")
    values = exported_values(recorder.spans())
    assert len(recorder.spans()) >= 10
    leaked = [(v, s) for v in values for s in secrets if s in v]
    assert leaked == []


async def test_operation_attributes_follow_the_semantic_conventions(recorder: Recorder) -> None:
    """Queue spans carry messaging.*; send records the message id as an attribute and
    counts the message; cache spans on redis name db.system.name and db.operation.name."""
    queue = get_queue("memory")
    message_id = await queue.send({"n": 1})
    (send,) = recorder.spans("queue")
    assert send.name == "send" or send.name.startswith("send ")
    assert send.attributes["messaging.system"] == queue.describe().system
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.operation.name"] == "send"
    assert send.attributes["messaging.message.id"] == message_id
    (received,) = await queue.receive()
    await queue.delete(received.receipt_handle)
    settle = recorder.spans("queue")[-1]
    assert settle.attributes["messaging.operation.type"] == "settle"
    sent = recorder.metrics()["messaging.client.sent.messages"]
    assert sum(p.value for p in sent) == 1


class _TightQueue(Queue):
    """A queue allowing three attributes per message (as SQS allows ten)."""

    provider = "tight"

    async def _limits(self) -> SendLimits:
        return SendLimits(max_attributes=3)

    async def _send_one(self, msg: Any) -> str:
        return "id"

    async def _receive(self, *args: Any) -> list[Message]:
        return []

    async def _delete(self, handle: str) -> None: ...
    async def _nack(self, handle: str) -> None: ...
    async def _extend_visibility(self, handle: str, seconds: float) -> None: ...
    async def _purge(self) -> None: ...
    async def _health(self) -> bool:
        return True


async def test_attribute_limit_counts_the_trace_context(recorder: Recorder) -> None:
    """Where the provider limits attributes, the trace context counts: attributes that
    leave no room for it are refused naming both the limit and the way out
    (telemetry=False, which carries no context)."""
    queue, quiet = _TightQueue(), _TightQueue()
    quiet.telemetry_enabled = False
    with recorder.tracer.start_as_current_span("request"):
        await quiet.send({}, attributes={"a": "1", "b": "2", "c": "3"})
        await queue.send({}, attributes={"a": "1", "b": "2"})
        with pytest.raises(
            InvalidMessageError, match=r"at most 3 .*trace context.*telemetry=False"
        ):
            await queue.send({}, attributes={"a": "1", "b": "2", "c": "3"})
    with pytest.raises(InvalidMessageError, match=r"at most 3 attributes per message, got 4$"):
        await queue.send({}, attributes={"a": "1", "b": "2", "c": "3", "d": "4"})


async def test_sqs_refuses_attributes_that_leave_no_room_for_the_trace_context(
    cloudrift_sqs_queue: Queue, recorder: Recorder
) -> None:
    """On SQS (moto) ten user attributes leave no room for the trace context: refused
    clearly; nine travel with it; telemetry off, ten travel without it."""
    ten = {f"a{i}": "v" for i in range(10)}
    with pytest.raises(InvalidMessageError, match="allows at most 10"):
        await cloudrift_sqs_queue.send({}, attributes=ten)
    await cloudrift_sqs_queue.send({}, attributes={f"a{i}": "v" for i in range(9)})
    cloudrift_sqs_queue.telemetry_enabled = False
    await cloudrift_sqs_queue.send({}, attributes=ten)
    got = await cloudrift_sqs_queue.receive(max_messages=10, wait_time=1)
    got += await cloudrift_sqs_queue.receive(max_messages=10, wait_time=1)
    by_size = sorted(got, key=lambda m: len(m.attributes))
    assert [len(m.attributes) for m in by_size] == [9, 10]
    assert [bool(m.transport_headers) for m in by_size] == [True, False]


def test_disable_removes_the_observer() -> None:
    """telemetry.disable() uninstalls the observer; enable() puts it back."""
    assert telemetry.enabled()
    telemetry.disable()
    try:
        assert operation._GLOBALS["_op_observer"] is None
        headers: dict[str, str] = {}
        telemetry.inject(headers)
        assert headers == {}
    finally:
        telemetry.enable()
    assert operation._GLOBALS["_op_observer"] is not None


async def test_every_storage_operation_is_exactly_one_span(recorder: Recorder) -> None:
    """Each public storage call — streams included, ended when exhausted — is one span
    named after its operation, and nested calls do not add spans of their own."""
    storage = get_storage("memory")
    calls: list[tuple[str, Any]] = [
        ("upload", lambda: storage.upload("a", b"1")),
        ("download", lambda: storage.download("a")),
        ("head", lambda: storage.head("a")),
        ("exists", lambda: storage.exists("a")),
        ("list", lambda: storage.list()),
        ("copy", lambda: storage.copy("a", "b")),
        ("move", lambda: storage.move("b", "c")),
        ("delete", lambda: storage.delete("c")),
        ("health_check", lambda: storage.health_check()),
    ]
    for name, call in calls:
        recorder.clear()
        await call()
        assert [s.name for s in recorder.spans()] == [name]
    for name, stream in (
        ("download_stream", lambda: storage.download_stream("a")),
        ("iter", lambda: storage.iter()),
    ):
        recorder.clear()
        async for _ in stream():
            assert recorder.spans() == []  # still open while the stream runs
        assert [s.name for s in recorder.spans()] == [name]


def _unsampled_provider() -> tuple[Any, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_sampling_off_skips_the_sdk_unless_the_parent_span_is_sampled() -> None:
    """With ParentBased(ALWAYS_OFF) and no metrics, an operation outside a sampled span
    is not observed at all (no SDK call); inside a sampled parent it is one span."""
    from opentelemetry import trace
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from cloudrift.core import _otel

    provider, exporter = _unsampled_provider()
    telemetry.enable()
    telemetry.use_providers(provider, NoOpMeterProvider())
    storage = get_storage("memory")
    try:
        await storage.upload("k", b"v")
        assert _otel.observe(storage, "download") is None
        with TracerProvider().get_tracer("app").start_as_current_span("request"):
            assert _otel.observe(storage, "download") is not None
            await storage.download("k")
        unsampled = trace.NonRecordingSpan(
            trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(0))
        )
        with trace.use_span(unsampled):
            assert _otel.observe(storage, "download") is None
            await storage.download("k")
    finally:
        telemetry.use_providers()
    assert [s.name for s in exporter.get_finished_spans()] == ["download"]


async def test_metrics_count_every_operation_exactly_when_no_span_is_sampled() -> None:
    """Spans dropped by the sampler, metrics still exact: a metric reader collects one
    duration per operation (failures under their error.type) and every message sent."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider, exporter = _unsampled_provider()
    reader = InMemoryMetricReader()
    telemetry.enable()
    telemetry.use_providers(provider, MeterProvider(metric_readers=[reader]))
    storage, queue = get_storage("memory"), get_queue("memory")
    try:
        await storage.upload("k", b"v")
        for _ in range(7):
            await storage.download("k")
        with pytest.raises(Exception, match="missing"):
            await storage.download("missing")
        await queue.send_batch([{"n": i} for i in range(3)])
        data = reader.get_metrics_data()
    finally:
        telemetry.use_providers()
    assert exporter.get_finished_spans() == ()
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    durations = {
        (p.attributes["cloudrift.operation"], p.attributes.get("error.type")): p
        for p in points["cloudrift.client.operation.duration"]
    }
    assert durations[("download", None)].count == 7
    assert durations[("download", "ObjectNotFoundError")].count == 1
    assert durations[("upload", None)].count == 1
    assert 0 < durations[("download", None)].sum < 1
    assert [p.value for p in points["messaging.client.sent.messages"]] == [3]


class _UnhealthyQueue(_TightQueue):
    """A queue whose service never answers a health check."""

    async def _health(self) -> bool:
        raise ConnectionError("down")


async def test_a_log_record_inside_an_operation_carries_its_trace_and_span_ids(
    recorder: Recorder,
) -> None:
    """A warning cloudrift logs during an operation (a failed health check), handed to
    OpenTelemetry's logging handler, carries that operation's trace and span ids."""
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import (
        InMemoryLogRecordExporter,
        SimpleLogRecordProcessor,
    )

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        # Deprecated in the SDK in favour of opentelemetry-instrumentation-logging's copy.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger("cloudrift")
    logger.addHandler(handler)
    try:
        assert await _UnhealthyQueue().health_check() is False
    finally:
        logger.removeHandler(handler)
    (span,) = recorder.spans("queue")
    (record,) = [
        r.log_record
        for r in exporter.get_finished_logs()
        if "health check failed" in str(r.log_record.body)
    ]
    assert (record.trace_id, record.span_id) == (span.context.trace_id, span.context.span_id)


async def test_sampling_off_consume_skips_the_sdk_unless_the_producer_was_sampled() -> None:
    """With ParentBased(ALWAYS_OFF) and no metrics, consume() handles a message sent
    outside any sampled span with no process span at all (nor spans under it); a message
    sent inside a sampled span is processed in a span of that trace, as usual."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from cloudrift.core import _otel

    provider, exporter = _unsampled_provider()
    telemetry.enable()
    telemetry.use_providers(provider, NoOpMeterProvider())
    queue, storage = get_queue("memory"), get_storage("memory")
    await storage.upload("k", b"v")

    async def handler(message: Message) -> None:
        await storage.download("k")

    try:
        await queue.send({"n": 1})
        (quiet,) = await queue.receive()
        assert _otel.process_scope(queue, quiet) is _otel._NULL
        await queue.nack(quiet.receipt_handle)
        await queue.consume(handler, wait_time=0.1, limit=1)
        assert exporter.get_finished_spans() == ()
        with TracerProvider().get_tracer("app").start_as_current_span("request") as request:
            await queue.send({"n": 2})
        await queue.consume(handler, wait_time=0.1, limit=1)
    finally:
        telemetry.use_providers()
    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans} == {request.get_span_context().trace_id}
    assert sorted(s.name for s in spans) == ["delete", "download", "process", "send"]


async def test_a_queue_operation_makes_one_sdk_measurement(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """send, receive and delete each record one SDK measurement (their duration); the
    sent and consumed message counts are still exported, read by the SDK at collection."""
    from opentelemetry.sdk.metrics._internal.measurement_consumer import (
        SynchronousMeasurementConsumer,
    )

    measured: list[tuple[str, str]] = []
    original = SynchronousMeasurementConsumer.consume_measurement

    def counting(self: Any, measurement: Any) -> None:
        attributes = measurement.attributes or {}
        if attributes.get("cloudrift.category") == "queue":
            measured.append((measurement.instrument.name, attributes["cloudrift.operation"]))
        original(self, measurement)

    monkeypatch.setattr(SynchronousMeasurementConsumer, "consume_measurement", counting)
    queue = get_queue("memory")
    await queue.send_batch([{"n": 1}, {"n": 2}])
    for message in await queue.receive(max_messages=10):
        await queue.delete(message.receipt_handle)
    duration = "cloudrift.client.operation.duration"
    assert measured == [
        (duration, "send_batch"),
        (duration, "receive"),
        (duration, "delete"),
        (duration, "delete"),
    ]
    metrics = recorder.metrics()
    assert [p.value for p in metrics["messaging.client.sent.messages"]] == [2]
    assert [p.value for p in metrics["messaging.client.consumed.messages"]] == [2]


async def test_failed_sends_are_counted_under_one_error_type_point(recorder: Recorder) -> None:
    """Refused sends add to one sent-messages point carrying error.type (one per error
    class, however many sends fail), beside the successful sends' point."""
    queue = _TightQueue()
    too_many = {"a": "1", "b": "2", "c": "3", "d": "4"}
    for _ in range(3):
        with pytest.raises(InvalidMessageError):
            await queue.send({}, attributes=too_many)
    await queue.send({})
    sent = recorder.metrics()["messaging.client.sent.messages"]
    values = {p.attributes.get("error.type"): p.value for p in sent}
    assert values == {"InvalidMessageError": 3, None: 1}
    assert len(sent) == 2


def test_message_counters_reach_a_global_meter_provider_set_after_the_first_operation() -> None:
    """With the global providers (the API's proxies), messages sent once an SDK meter
    provider is set are exported by the sent-messages counter; those sent before are not."""
    code = (
        "import asyncio\n"
        "from opentelemetry import metrics\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.metrics.export import InMemoryMetricReader\n"
        "from cloudrift.messaging import get_queue\n"
        "async def main():\n"
        "    q = get_queue('memory'); await q.send({'n': 1})\n"
        "    reader = InMemoryMetricReader()\n"
        "    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))\n"
        "    await q.send_batch([{'n': 2}, {'n': 3}])\n"
        "    data = reader.get_metrics_data()\n"
        "    return [p.value for r in data.resource_metrics for s in r.scope_metrics\n"
        "            for m in s.metrics if m.name == 'messaging.client.sent.messages'\n"
        "            for p in m.data.data_points]\n"
        "print(asyncio.run(main()))\n"
    )
    assert _run_python(code) == "[2]"


async def test_message_counts_survive_switching_providers_back_and_forth(
    recorder: Recorder,
) -> None:
    """Switching to other providers and back to the same meter provider keeps counting
    into the same exported counter (the SDK registers a counter's name once per meter)."""
    queue = get_queue("memory")
    await queue.send({"n": 1})
    telemetry.use_providers()
    telemetry.use_providers(recorder.tracer_provider, recorder.meter_provider)
    await queue.send_batch([{"n": 2}, {"n": 3}])
    sent = recorder.metrics()["messaging.client.sent.messages"]
    assert sum(p.value for p in sent if p.attributes.get("error.type") is None) == 3
