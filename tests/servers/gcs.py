"""gcp-storage-emulator: the GCS JSON API (pure Python) on a free loopback port, in memory.

Run as a child process so its HTTP server does not share the test process's GIL. The
emulator serves one request at a time on an ``http.server.HTTPServer`` whose listen
backlog is 5: 50 concurrent connections overflowed it, and the dropped SYNs were
retried by the kernel after 1, 3, 7... s (the 50-concurrent-uploads test took 14-60 s).
The launcher below raises the backlog to 1024 before the emulator starts (the test
then takes well under a second); requests are still served one at a time, as before.

``gcs_server`` starts once per session; ``gcs`` (function scope) wipes
every object and bucket, creates an empty test bucket (``POST /storage/v1/b``), and
hands out the endpoint to pass as ``emulator_host`` (never via the process env).

Known emulator gaps (real GCS has these): it ignores ``ifGenerationMatch``
preconditions and ``maxResults`` paging, and does not verify signed-URL signatures.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme  # noqa: F401 - cryptography comes with it; used to mint a throwaway key
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.servers._process import LOOPBACK, ManagedProcess, free_port

BUCKET = "cloudrift-gcs-test"


@dataclass(frozen=True)
class GCSEmulator:
    """Where the emulator listens and the bucket created for the test."""

    endpoint: str
    process: ManagedProcess
    bucket: str = BUCKET

    @property
    def started_in(self) -> float:
        """Seconds the emulator took to start answering."""
        return self.process.started_in or 0.0

    def request(self, method: str, path: str, body: object | None = None) -> bytes:
        """A raw JSON API call to the emulator (test setup and inspection)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.endpoint}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return bytes(resp.read())

    def reset(self) -> None:
        """Drop every bucket and object, then create the empty test bucket."""
        self.request("GET", "/wipe")
        self.request("POST", "/storage/v1/b?project=test", {"name": self.bucket})


# Runs the emulator's own CLI after raising http.server's listen backlog (see above).
_LAUNCHER = (
    "import http.server, runpy, sys\n"
    "http.server.HTTPServer.request_queue_size = 1024\n"
    "sys.argv[0] = 'gcp_storage_emulator'\n"
    "runpy.run_module('gcp_storage_emulator', run_name='__main__', alter_sys=True)\n"
)


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSEmulator]:
    """gcp-storage-emulator in memory on a free 127.0.0.1 port for the whole session."""
    port = free_port()
    endpoint = f"http://{LOOPBACK}:{port}"
    argv = [
        sys.executable,
        "-c",
        _LAUNCHER,
        "start",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--in-memory",
        "--quiet",
    ]
    process = ManagedProcess(
        "gcs-emulator",
        argv,
        port=port,
        log_dir=tmp_path_factory.mktemp("gcs"),
        ready=lambda: _answers(endpoint),
        timeout=30,
    )
    process.start()
    try:
        yield GCSEmulator(endpoint=endpoint, process=process)
    finally:
        process.stop()


@pytest.fixture
def gcs(gcs_server: GCSEmulator) -> GCSEmulator:
    """The session's emulator, wiped, with an empty test bucket."""
    gcs_server.reset()
    return gcs_server


@pytest.fixture(scope="session")
def service_account_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service-account JSON with a freshly generated RSA key (signs URLs locally)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path_factory.mktemp("gcp") / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "test",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "cloudrift@test.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "http://127.0.0.1:9/token",
            }
        )
    )
    return path
