"""At-least-once under crashes: 1 API process + worker processes, one SIGKILLed mid-job.

Redis queue: 3 workers on a real redis-server with AOF on; one worker is killed while
its jobs run, a replacement starts, and redis-server itself restarts once. SQS (moto
server): 2 workers, one killed. The victim starts first and holds every job it takes
(``JOB_HOLD``) until it is killed, so it is killed mid-job on a machine of any speed;
the others start once it holds some. In the end every document is processed, exactly one
email per document went out, and nothing is left on the queue or in storage without
its record. The figures (lost, duplicate runs and emails, time to redelivery) are
written to ``at-least-once-*.json`` in the test's directory and printed (``-s``).
"""

from __future__ import annotations

import email
import hashlib
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import httpx

from tests.cli._support import COMMAND, Child, wait_for
from tests.servers._process import LOOPBACK, free_port
from tests.servers.moto import MotoEndpoint
from tests.servers.redis import RedisServer

#: Documents per run (the issue suggests 300; fewer keep the suite fast on 2 cores).
REDIS_DOCS = 120
SQS_DOCS = 40
#: The consumer renews a job's visibility every half of it while the handler runs, so a
#: live worker loses a job only if its event loop stalls for that long: 3 s of slack
#: survives a loaded 2-core machine; a killed worker's jobs come back after 6 s.
VISIBILITY = "6"
#: Ceilings (seconds) for what a loaded machine may take; never an expected duration.
STARTUP = 90
SETTLE = 180


def _content(doc: str) -> bytes:
    return f"document {doc}\n".encode() * 20


def _write_config(tmp_path: Path, queue: str, cache_url: str) -> Path:
    path = tmp_path / "cloudrift.yaml"
    path.write_text(
        f"""
storage:
  provider: local
  root_dir: {tmp_path}/files
queue:
{queue}
cache:
  provider: redis
  auth_method: from_url
  url: {cache_url}
email:
  provider: file
  directory: {tmp_path}/outbox
  default_from: worker@example.test
"""
    )
    return path


class Deployment:
    """One API process and its worker processes, all on the same settings file."""

    def __init__(self, tmp_path: Path, config: Path, redis: RedisServer) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.redis = redis
        self.children: list[Child] = []
        self.port = free_port()
        self.api = self._start(
            "api",
            [
                *(sys.executable, "-m", "uvicorn", "tests.cli.jobs:app"),
                *("--host", LOOPBACK, "--port", str(self.port), "--log-level", "warning"),
            ],
        )
        wait_for(self._api_ready, STARTUP, "the API answering")
        self.http = httpx.Client(base_url=f"http://{LOOPBACK}:{self.port}", timeout=30)

    def _start(self, name: str, argv: list[str], hold: bool = False) -> Child:
        env = {"CLOUDRIFT_CONFIG": str(self.config), "JOB_SECONDS": "0.05"}
        if hold:
            env["JOB_HOLD"] = "1"
        child = Child(name, argv, self.tmp_path, env=env)
        self.children.append(child)
        return child

    def _api_ready(self) -> bool:
        try:
            return httpx.get(f"http://{LOOPBACK}:{self.port}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def worker(self, name: str, *, victim: bool = False) -> Child:
        """Start a worker; a ``victim`` holds every job it takes until it is killed."""
        argv = [*COMMAND, "worker", "tests.cli.jobs:process", "--concurrency", "4"]
        child = self._start(name, [*argv, "--visibility-timeout", VISIBILITY], hold=victim)
        child.wait_output("cloudrift worker started", timeout=STARTUP)
        return child

    def upload(self, docs: range) -> None:
        for i in docs:
            doc = f"d{i:04d}"
            self.http.post(f"/documents/{doc}", content=_content(doc)).raise_for_status()

    def keys(self, pattern: str) -> list[str]:
        with self.redis.client() as client:
            return sorted(k.decode() for k in client.keys(pattern))

    def processed(self) -> set[str]:
        return {k.removeprefix("processed:") for k in self.keys("processed:*")}

    def wait_holding(self, victim: Child) -> None:
        """Wait until ``victim`` (started with ``victim=True``) is stuck mid-job."""
        prefix = f"inflight:{victim.pid}:"
        wait_for(lambda: bool(self.keys(prefix + "*")), SETTLE, f"{victim.name} running a job")

    def kill_mid_job(self, victim: Child) -> tuple[float, set[str]]:
        """SIGKILL ``victim`` while it holds jobs; (when, the documents it was running)."""
        prefix = f"inflight:{victim.pid}:"
        self.wait_holding(victim)
        victim.signal(signal.SIGKILL)
        victim.wait(timeout=10)
        return time.monotonic(), {k.removeprefix(prefix) for k in self.keys(prefix + "*")}

    def redelivered(self, killed_at: float, killed_docs: set[str]) -> float:
        """Seconds from the kill until another worker has processed every job the
        killed one held (they come back after the visibility timeout)."""
        wait_for(lambda: killed_docs <= self.processed(), SETTLE, "the killed jobs redelivered")
        return time.monotonic() - killed_at

    def stop(self) -> None:
        self.http.close()
        for child in self.children:
            child.stop()

    def stop_workers_gracefully(self, workers: list[Child]) -> None:
        for child in workers:
            child.signal(signal.SIGTERM)
        for child in workers:
            assert child.wait(timeout=SETTLE) == 0, child.output()[-3000:]

    def verify(
        self, total: int, killed_pid: int, killed_docs: set[str], redelivery: float, label: str
    ) -> None:
        """Everything processed once-visibly; write and print the figures."""
        docs = {f"d{i:04d}" for i in range(total)}
        wait_for(lambda: self.processed() == docs, SETTLE, f"all {total} documents processed")
        with self.redis.client() as client:
            runs = {d: int(client.get(f"runs:{d}") or 0) for d in docs}
            digests = {d: (client.get(f"processed:{d}") or b"").decode() for d in docs}
        assert digests == {d: hashlib.sha256(_content(d)).hexdigest() for d in docs}
        subjects = [
            email.message_from_bytes(p.read_bytes())["Subject"]
            for p in (self.tmp_path / "outbox").glob("*.eml")
        ]
        per_doc = {d: subjects.count(f"processed {d}") for d in docs}
        stored = {p.name for p in (self.tmp_path / "files" / "docs").iterdir()}
        figures = {
            "documents": total,
            "lost": total - len(self.processed()),
            "duplicate_handler_runs": sum(runs.values()) - total,
            "duplicate_emails": len(subjects) - total,
            "killed_mid_job": sorted(killed_docs),
            "seconds_from_kill_to_redelivered_and_done": round(redelivery, 2),
        }
        (self.tmp_path.parent / f"at-least-once-{label}.json").write_text(json.dumps(figures))
        print(f"\nat-least-once {label}: {json.dumps(figures)}")
        assert killed_docs, "the killed worker was running no job"
        assert all(runs[d] >= 2 for d in killed_docs)  # redelivered, and done by another
        assert per_doc == dict.fromkeys(docs, 1)  # exactly one email per document
        assert stored == docs  # no object without its record, none missing
        # Only the killed worker died holding jobs; every other run finished.
        assert {k.split(":")[1] for k in self.keys("inflight:*")} <= {str(killed_pid)}


def test_redis_queue_survives_a_killed_worker_and_a_redis_restart(
    tmp_path: Path, redis_server_factory: Callable[..., RedisServer]
) -> None:
    """1 API + 3 workers on redis (AOF on): SIGKILL one mid-job, start a replacement,
    restart redis-server; every document processed, one email each, nothing orphaned."""
    data = tmp_path / "redis-data"
    data.mkdir()
    aof = ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(data)]
    redis = redis_server_factory(extra_args=aof)
    queue = f"  provider: redis\n  queue_name: docs\n  url: {redis.url}\n"
    config = _write_config(tmp_path, queue, redis.url)
    app = Deployment(tmp_path, config, redis)
    try:
        workers = [app.worker("worker-0", victim=True)]
        third = REDIS_DOCS // 3
        app.upload(range(third))
        app.wait_holding(workers[0])
        workers += [app.worker(f"worker-{i}") for i in (1, 2)]
        killed_at, killed_docs = app.kill_mid_job(workers[0])
        killed_pid = workers[0].pid
        workers[0] = app.worker("worker-replacement")
        redelivery = app.redelivered(killed_at, killed_docs)
        app.upload(range(third, 2 * third))
        redis.stop()
        redis.start()
        app.upload(range(2 * third, REDIS_DOCS))
        app.verify(REDIS_DOCS, killed_pid, killed_docs, redelivery, "redis")
        with redis.client() as client:
            assert client.xlen("docs") == 0  # every job acked (and deleted)
            assert client.xpending("docs", "cloudrift")["pending"] == 0
            assert client.exists("docs:dead") == 0
        app.stop_workers_gracefully(workers)
    finally:
        app.stop()


def test_sqs_queue_survives_a_killed_worker(
    tmp_path: Path, moto: MotoEndpoint, redis: RedisServer
) -> None:
    """1 API + 2 workers on SQS (moto server): SIGKILL one mid-job; every document
    processed, one email each, nothing left on the queue."""
    sqs = boto3.client(
        "sqs",
        endpoint_url=moto.endpoint_url,
        region_name=moto.region,
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
    )
    url = sqs.create_queue(QueueName="docs")["QueueUrl"]
    queue = (
        f"  provider: sqs\n  queue_url: {url}\n  region: {moto.region}\n"
        f"  endpoint_url: {moto.endpoint_url}\n  aws_access_key_id: {moto.access_key}\n"
        f"  aws_secret_access_key: {moto.secret_key}\n"
    )
    config = _write_config(tmp_path, queue, redis.url)
    app = Deployment(tmp_path, config, redis)
    try:
        workers = [app.worker("worker-0", victim=True)]
        app.upload(range(SQS_DOCS // 2))
        app.wait_holding(workers[0])
        workers.append(app.worker("worker-1"))
        killed_at, killed_docs = app.kill_mid_job(workers[0])
        killed_pid = workers[0].pid
        redelivery = app.redelivered(killed_at, killed_docs)
        app.upload(range(SQS_DOCS // 2, SQS_DOCS))
        app.verify(SQS_DOCS, killed_pid, killed_docs, redelivery, "sqs")
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        assert attrs == {
            "ApproximateNumberOfMessages": "0",
            "ApproximateNumberOfMessagesNotVisible": "0",
        }
        app.stop_workers_gracefully(workers[1:])
    finally:
        app.stop()
