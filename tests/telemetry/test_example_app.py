"""One trace from an HTTP upload through the queue to the worker, in example_app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind

from example_app import create_app
from example_app.app import trace_http
from example_app.config import IntakeConfig
from tests.example_app.conftest import demo_settings, running, upload, wait_for_status
from tests.telemetry.support import recording

ROOT = Path(__file__).resolve().parents[2]


async def test_an_upload_is_one_trace_through_the_queue_to_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /documents, its queue send, the worker's process span, its storage read and
    its email send share one trace; readiness probes add no span at all."""
    app = create_app(demo_settings(tmp_path, monkeypatch), IntakeConfig())
    with recording() as recorder:
        trace_http(app, tracer_provider=recorder.tracer_provider)
        async with running(app) as client:
            accepted = await upload(client, b"hello\nworld\n", "notes.txt")
            assert accepted.status_code == 202, accepted.text
            await wait_for_status(client, accepted.json()["id"])
            spans = recorder.spans()
            (post,) = [s for s in spans if s.kind is SpanKind.SERVER and "POST" in s.name]
            trace_id = post.context.trace_id
            in_trace = [s for s in spans if s.context.trace_id == trace_id]
            ops = {
                (s.attributes.get("cloudrift.category"), s.attributes.get("cloudrift.operation"))
                for s in in_trace
            }
            assert ("queue", "send") in ops
            assert ("queue", "process") in ops
            assert ("storage", "download_stream") in ops
            assert ("email", "send") in ops
            # The queue worker's span (the audit subscription's consumer joins the trace
            # later, through the document.processed event).
            (process,) = [
                s
                for s in in_trace
                if s.kind is SpanKind.CONSUMER and s.attributes.get("cloudrift.category") == "queue"
            ]
            (read,) = [
                s for s in in_trace if s.attributes.get("cloudrift.operation") == "download_stream"
            ]
            assert read.parent is not None and read.parent.span_id == process.context.span_id
            recorder.clear()
            ready = await client.get("/health/ready")
            assert ready.status_code == 200, ready.text
            # The upload's journey may still be finishing in the background (the audit
            # subscription records the document.processed event in the upload's trace);
            # nothing else may have made a span.
            assert [s.name for s in recorder.spans() if s.context.trace_id != trace_id] == []


def test_intake_traces_console_prints_the_spans(tmp_path: Path) -> None:
    """INTAKE_TRACES=console sets up the SDK's console exporter: cloudrift's spans print."""
    code = (
        "import asyncio\n"
        "from example_app.__main__ import print_traces\n"
        "from cloudrift.storage import get_storage\n"
        "print_traces()\n"
        "asyncio.run(get_storage('memory').upload('k', b'v'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "INTAKE_TRACES": "console"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"name": "upload"' in done.stdout
    assert '"cloudrift.category": "storage"' in done.stdout
