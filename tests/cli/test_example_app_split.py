"""`python -m example_app api` and `python -m example_app worker` as separate processes
sharing a real redis-server queue (records stay on the embedded engine: no local
MongoDB exists, so the worker cannot see the API's records, and says so)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from tests.cli._support import Child, wait_for
from tests.servers._process import LOOPBACK, free_port
from tests.servers.redis import RedisServer


def _env(tmp_path: Path, redis: RedisServer, port: int) -> dict[str, str]:
    return {
        "HOST": LOOPBACK,
        "PORT": str(port),
        "DEMO_DATA_DIR": str(tmp_path / "data"),
        "CLOUDRIFT_QUEUE__PROVIDER": "redis",
        "CLOUDRIFT_QUEUE__QUEUE_NAME": "intake",
        "CLOUDRIFT_QUEUE__URL": redis.url,
    }


def test_api_leaves_jobs_to_a_separate_worker_process(tmp_path: Path, redis: RedisServer) -> None:
    """The `api` process queues the job without consuming it; a `worker` process takes
    it from the shared redis queue, and stops on SIGTERM with exit 0."""
    port = free_port()
    env = _env(tmp_path, redis, port)
    api = Child("api", [sys.executable, "-m", "example_app", "api"], tmp_path, env=env)
    worker: Child | None = None
    try:
        api.wait_output("jobs are left to worker processes")
        url = f"http://{LOOPBACK}:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "the API ready")
        answer = httpx.post(f"{url}/documents", files={"file": ("a.txt", b"hello\n")})
        assert answer.status_code == 202, answer.text
        with redis.client() as client:
            assert client.xlen("intake") == 1
            assert client.xinfo_groups("intake") == []  # nobody in the API consumes it
        assert "the document backend is 'memory'" in api.output()

        worker = Child("worker", [sys.executable, "-m", "example_app", "worker"], tmp_path, env=env)
        worker.wait_output("cloudrift worker started")
        with redis.client() as client:
            wait_for(lambda: client.xlen("intake") == 0, 30, "the worker taking the job")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.output()
        output = worker.output()
        assert "no record (deleted?)" in output  # records are not shared on 'memory'
        assert "handled=1 (ok=1, failed=0)" in output
    finally:
        api.stop()
        if worker is not None:
            worker.stop()


def test_unknown_mode_is_a_usage_error(tmp_path: Path) -> None:
    """`python -m example_app nonsense` prints the usage and exits 2."""
    import subprocess

    from tests.cli._support import REPO, child_env

    result = subprocess.run(
        [sys.executable, "-m", "example_app", "nonsense"],
        env=child_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "usage: python -m example_app [api|worker]" in result.stderr


def test_bundled_scale_out_settings_share_every_backend_and_pass_production_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """settings/scale-out.yaml (the README's split layout) is valid, uses no in-process
    backend and passes the production checks once its env vars are set."""
    from cloudrift.config import CloudriftSettings
    from example_app.config import SETTINGS_DIR

    for name in list(os.environ):
        if name.startswith("CLOUDRIFT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REDIS_URL", "redis://redis.internal:6379/0")
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.internal:27017")
    settings = CloudriftSettings.from_yaml(
        SETTINGS_DIR / "scale-out.yaml", environment="production"
    )
    settings.validate_production_security()
    providers = {category: config.provider for category, _, config in settings.iter_backends()}
    assert providers == {
        "storage": "s3",
        "queue": "redis",
        "document": "mongodb",
        "cache": "redis",
        "email": "ses",
        "topic": "redis",
        "subscription": "redis",
    }
