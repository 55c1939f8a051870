"""`cloudrift worker` as a real process on a real redis-server: warm shutdown on signals."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from cloudrift.messaging import get_queue
from tests.cli._support import Child, wait_for
from tests.servers.redis import RedisServer

STREAM = "drain"


def _config(tmp_path: Path, redis: RedisServer) -> Path:
    path = tmp_path / "worker.yaml"
    path.write_text(
        f"queue:\n  provider: redis\n  queue_name: {STREAM}\n  url: {redis.url}\n"
        "cache:\n  provider: memory\n"
    )
    return path


def _send(redis: RedisServer, *bodies: dict[str, object]) -> None:
    async def send() -> None:
        async with get_queue("redis", queue_name=STREAM, url=redis.url) as queue:
            for body in bodies:
                await queue.send(body)

    asyncio.run(send())


def _worker(tmp_path: Path, redis: RedisServer, *extra: str) -> Child:
    jobs = tmp_path / "jobs"
    jobs.mkdir(exist_ok=True)
    argv = [sys.executable, "-W", "always::ResourceWarning", "-m", "cloudrift_fastapi.cli"]
    argv += ["worker", "tests.cli.jobs:drain", "--config", str(_config(tmp_path, redis))]
    child = Child("worker", [*argv, *extra], tmp_path, env={"JOBS_DIR": str(jobs)})
    child.wait_output("cloudrift worker started")
    return child


def _files(tmp_path: Path, prefix: str) -> set[str]:
    return {p.name.removeprefix(prefix) for p in (tmp_path / "jobs").glob(f"{prefix}*")}


def test_sigterm_lets_in_flight_jobs_finish_takes_nothing_new_and_exits_0(
    tmp_path: Path, redis: RedisServer
) -> None:
    """4 slow jobs in flight at SIGTERM all finish and are acked, later messages stay
    queued, every backend is closed (no "Unclosed" warning) and the exit code is 0."""
    worker = _worker(tmp_path, redis, "--concurrency", "8", "--grace", "30")
    try:
        _send(redis, *({"id": i, "slow": True} for i in range(1, 5)))
        wait_for(lambda: len(_files(tmp_path, "started-")) == 4, 20, "4 jobs starting")
        worker.signal(signal.SIGTERM)
        worker.wait_output("stopping on SIGTERM")
        _send(redis, *({"id": i} for i in range(5, 9)))
        (tmp_path / "jobs" / "release").touch()
        assert worker.wait(timeout=30) == 0, worker.output()
    finally:
        worker.stop()
    output = worker.output()
    assert _files(tmp_path, "done-") == {"1", "2", "3", "4"}
    assert _files(tmp_path, "started-") == {"1", "2", "3", "4"}
    with redis.client() as client:
        assert client.xlen(STREAM) == 4  # acked entries are deleted: only 5-8 remain
        assert client.xpending(STREAM, "cloudrift")["pending"] == 0  # never delivered
    assert "handled=4 (ok=4, failed=0)" in output
    assert "Unclosed" not in output and "ResourceWarning" not in output


def test_second_signal_exits_at_once_and_the_job_comes_back(
    tmp_path: Path, redis: RedisServer
) -> None:
    """A second SIGTERM exits at once (128 + 15) without waiting; the unacked job stays
    pending on the stream, to be redelivered after its visibility timeout."""
    worker = _worker(tmp_path, redis, "--grace", "60")
    try:
        _send(redis, {"id": 1, "slow": True})
        wait_for(lambda: _files(tmp_path, "started-") == {"1"}, 20, "the job starting")
        worker.signal(signal.SIGTERM)
        worker.wait_output("stopping on SIGTERM")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        worker.stop()
    assert _files(tmp_path, "done-") == set()
    with redis.client() as client:
        assert client.xpending(STREAM, "cloudrift")["pending"] == 1


def test_grace_period_running_out_exits_1(tmp_path: Path, redis: RedisServer) -> None:
    """A handler still running when --grace runs out: exit 1, saying what was abandoned."""
    worker = _worker(tmp_path, redis, "--grace", "0.3")
    try:
        _send(redis, {"id": 1, "slow": True})
        wait_for(lambda: _files(tmp_path, "started-") == {"1"}, 20, "the job starting")
        worker.signal(signal.SIGINT)
        assert worker.wait(timeout=10) == 1
    finally:
        worker.stop()
    assert "1 handler(s) still running after the 0.3s grace period" in worker.output()


def test_bad_handler_is_a_configuration_error(tmp_path: Path, redis: RedisServer) -> None:
    """MODULE:HANDLER that does not exist: exit 2 naming it, before any backend is built."""
    from tests.cli._support import run_cli

    result = run_cli(["worker", "tests.cli.jobs:nope", "-c", str(_config(tmp_path, redis))])
    assert result.returncode == 2
    assert "has no attribute 'nope'" in result.stderr


def test_json_logs_are_one_json_object_per_line(tmp_path: Path, redis: RedisServer) -> None:
    """`--json-logs`: the start and stop lines (and every other record) are JSON objects."""
    import json

    worker = _worker(tmp_path, redis, "--json-logs")
    try:
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.stop()
    records = [json.loads(line) for line in worker.output().splitlines() if line.strip()]
    messages = [r["message"] for r in records]
    assert any(m.startswith("cloudrift worker started: queue=default (redis)") for m in messages)
    assert any(m.startswith("cloudrift worker stopped:") for m in messages)
    unexpected = [r for r in records if r["level"] not in {"info", "warning"}]
    assert {r["level"] for r in records} <= {"info", "warning"}, unexpected


def test_handler_receives_backends_through_inject_and_provide(
    tmp_path: Path, redis: RedisServer
) -> None:
    """`@inject` + `Provide[Container.storage]` in the handler's module gets the worker's
    own configured storage, as in routes wired through the lifespan."""
    config = tmp_path / "inject.yaml"
    config.write_text(
        f"queue:\n  provider: redis\n  queue_name: {STREAM}\n  url: {redis.url}\n"
        f"storage:\n  provider: local\n  root_dir: {tmp_path}/files\n"
    )
    argv = [sys.executable, "-m", "cloudrift_fastapi.cli", "worker", "tests.cli.jobs:injected"]
    worker = Child("worker", [*argv, "-c", str(config)], tmp_path)
    try:
        worker.wait_output("cloudrift worker started")
        _send(redis, {"id": 7})
        wait_for(lambda: (tmp_path / "files" / "seen-7").exists(), 20, "the handler's upload")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.output()
    finally:
        worker.stop()


def test_worker_consumes_a_topic_subscription(tmp_path: Path, redis: RedisServer) -> None:
    """`--subscription NAME` consumes a configured topic subscription: every event
    published to the topic is handled and acked, then SIGTERM exits 0."""
    from cloudrift.messaging import get_topic

    config = tmp_path / "sub.yaml"
    config.write_text(
        f"topic:\n  provider: redis\n  stream: events\n  url: {redis.url}\n"
        "subscription:\n  default: audit\n  backends:\n    audit:\n      provider: redis\n"
        f"      stream: events\n      group: audit\n      start: earliest\n"
        f"      url: {redis.url}\n"
    )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    argv = [sys.executable, "-m", "cloudrift_fastapi.cli", "worker", "tests.cli.jobs:drain"]
    argv += ["--config", str(config), "--subscription", "audit"]
    worker = Child("worker", argv, tmp_path, env={"JOBS_DIR": str(jobs)})
    try:
        worker.wait_output("cloudrift worker started: subscription=audit (redis)")

        async def publish() -> None:
            async with get_topic("redis", stream="events", url=redis.url) as topic:
                for i in (1, 2, 3):
                    await topic.publish({"id": i})

        asyncio.run(publish())
        wait_for(lambda: _files(tmp_path, "done-") == {"1", "2", "3"}, 20, "3 events handled")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.output()
    finally:
        worker.stop()
    assert "handled=3 (ok=3, failed=0)" in worker.output()


def test_queue_and_subscription_together_is_a_configuration_error(
    tmp_path: Path, redis: RedisServer
) -> None:
    """A worker consumes one source: --queue with --subscription exits 2 saying so."""
    from tests.cli._support import run_cli

    argv = ["worker", "tests.cli.jobs:drain", "-c", str(_config(tmp_path, redis))]
    result = run_cli([*argv, "--queue", "default", "--subscription", "audit"])
    assert result.returncode == 2
    assert "queue or subscription, not both" in result.stderr
