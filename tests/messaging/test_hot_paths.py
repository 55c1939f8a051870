"""The per-message fast paths build exactly what the plain constructors build.

``Message``, ``PreparedMessage`` and ``OutgoingMessage`` are frozen dataclasses; on the
send / receive paths they are built without their generated ``__init__`` (one
``object.__setattr__`` per field made it a third of receiving a message). These tests
fail when a field is added to one of them but not to its fast path.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cloudrift.messaging import Message, OutgoingMessage, get_queue
from cloudrift.messaging.base import PreparedMessage, SendLimits
from cloudrift.messaging.memory import MemoryQueue

ROOT = Path(__file__).resolve().parents[2]


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_from_raw_builds_the_message_its_init_would() -> None:
    """Message.from_raw sets every field, equal to Message(...) with the same values."""
    msg = Message.from_raw(
        b'{"n": 1}',
        receipt_handle="h-1",
        message_id="m-1",
        group_id="g",
        dedup_id="d",
        receive_count=3,
        attributes={"k": "v", "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
    )
    assert set(vars(msg)) == _field_names(Message)
    assert msg == Message(
        body={"n": 1},
        receipt_handle="h-1",
        message_id="m-1",
        raw=b'{"n": 1}',
        group_id="g",
        dedup_id="d",
        receive_count=3,
        attributes={"k": "v"},
    )
    assert msg.transport_headers == {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.body = None  # type: ignore[misc]
    not_json = Message.from_raw(b"\xff", receipt_handle="h", message_id="m")
    assert (not_json.is_json, not_json.body, not_json.attributes) == (False, None, {})


def test_prepare_builds_the_prepared_message_its_init_would() -> None:
    """_prepare sets every PreparedMessage field, equal to PreparedMessage(...)."""
    queue = MemoryQueue()
    out = OutgoingMessage({"n": 1}, 0, None, None, {"k": "v"})
    prepared = queue._prepare(4, out, SendLimits())
    assert set(vars(prepared)) == _field_names(PreparedMessage)
    assert prepared == PreparedMessage(
        index=4, body=b'{"n":1}', delay=0.0, attributes={"k": "v"}, transport_headers={}
    )


async def test_send_hands_on_the_outgoing_message_its_init_would() -> None:
    """send() passes an OutgoingMessage with every field set, equal to OutgoingMessage(...)."""
    queue = get_queue("memory")
    seen: list[OutgoingMessage] = []
    original = queue._send_validated

    async def spy(out: OutgoingMessage) -> str:
        seen.append(out)
        return await original(out)

    queue._send_validated = spy  # type: ignore[method-assign]
    await queue.send({"n": 1}, 0, attributes={"k": "v"})
    assert set(vars(seen[0])) == _field_names(OutgoingMessage)
    assert seen[0] == OutgoingMessage({"n": 1}, 0, None, None, {"k": "v"})
    (received,) = await queue.receive()
    assert (received.body, received.attributes) == ({"n": 1}, {"k": "v"})
    await queue.close()


def _run_python(code: str) -> str:
    env: dict[str, Any] = {**os.environ, "CLOUDRIFT_TELEMETRY__ENABLED": "true"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_operations_before_a_provider_is_set_do_not_stop_recording_after() -> None:
    """Operations while OpenTelemetry is not configured record nothing (answered without
    asking its proxies); once a tracer provider is set, the next operation is recorded."""
    code = (
        "import asyncio\n"
        "from cloudrift.messaging import get_queue\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import "
        "InMemorySpanExporter\n"
        "q = get_queue('memory')\n"
        "async def main():\n"
        "    for n in range(3):\n"
        "        await q.send({'n': n})\n"
        "    exporter = InMemorySpanExporter(); provider = TracerProvider()\n"
        "    provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "    trace.set_tracer_provider(provider)\n"
        "    await q.send({'n': 3})\n"
        "    return [s.name.split(' ')[0] for s in exporter.get_finished_spans()]\n"
        "print(asyncio.run(main()))\n"
    )
    assert _run_python(code) == "['send']"
