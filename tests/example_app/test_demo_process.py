"""`make demo`'s command (`HOST=... PORT=... python -m example_app`) as a real process."""

from __future__ import annotations

import email
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers._process import LOOPBACK, ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[2]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/health/ready", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def demo_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ManagedProcess, Path]]:
    """The demo command on a free port with its data in a temp dir; stopped afterwards."""
    # The child must run on the demo settings, not on settings meant for other tests.
    for name in list(os.environ):
        if name.startswith(("CLOUDRIFT_", "INTAKE_")) and name != "CLOUDRIFT_REDIS_SERVER":
            monkeypatch.delenv(name)
    port = free_port()
    data = tmp_path / "demo-data"
    env = {
        "HOST": LOOPBACK,
        "PORT": str(port),
        "DEMO_DATA_DIR": str(data),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    process = ManagedProcess(
        "example-app-demo",
        [sys.executable, "-m", "example_app"],
        port=port,
        log_dir=tmp_path,
        env=env,
        ready=lambda: _ready(port),
        timeout=30,
    )
    process.start()
    try:
        yield process, data
    finally:
        process.stop()


def test_demo_command_serves_uploads_and_prints_url_outbox_and_curl_line(
    demo_process: tuple[ManagedProcess, Path],
) -> None:
    """The demo starts, is ready, accepts an upload, processes it, writes the .eml, and
    printed its URL, outbox folder and a curl upload line."""
    process, data = demo_process
    base = f"http://{LOOPBACK}:{process.port}"
    content = b"from a real process\n"
    with httpx.Client(base_url=base, timeout=10) as client:
        accepted = client.post("/documents", files={"file": ("hello.txt", content, "text/plain")})
        assert accepted.status_code == 202, accepted.text
        doc_id = accepted.json()["id"]
        deadline = time.monotonic() + 20
        body = {}
        while time.monotonic() < deadline:
            body = client.get(f"/documents/{doc_id}").json()
            if body["status"] == "processed":
                break
            time.sleep(0.05)
        assert body["status"] == "processed", body
        downloaded = client.get(f"/documents/{doc_id}/download", follow_redirects=True)
        assert downloaded.content == content
        assert client.get("/docs").status_code == 200

    mails = list((data / "outbox").glob("*.eml"))
    assert len(mails) == 1
    mail = email.message_from_bytes(mails[0].read_bytes())
    assert "hello.txt" in mail["Subject"]
    assert (data / "files" / "documents" / doc_id).read_bytes() == content

    printed = process.output()
    assert base in printed
    assert str((data / "outbox").resolve()) in printed
    assert f"curl -F file=@README.md {base}/documents" in printed
