"""The `cloudrift` command: worker throughput scaling across processes, `check` wall time.

- Worker scaling: 1, 2 and 4 `cloudrift worker` processes (each ``--concurrency 10``)
  on one redis-server queue, with a handler that sleeps 10 ms. The workers start idle;
  the clock runs from the first message sent until the stream is empty (acked entries are
  deleted), so process start-up is not counted. Target (issue 19): 2 processes >= 1.6x
  one process on this 2-core machine.
- `cloudrift check` on the 5-backend demo settings, as a fresh process each time (what
  a deploy step pays), against a bare ``python -c pass``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _servers
from benchmarks._harness import Row, Settings

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.6
STREAM = "bench-jobs"


async def sleep_10ms(message: Any) -> None:
    """The benchmark's handler: 10 ms of (non-CPU) work per message."""
    await asyncio.sleep(0.01)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDRIFT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.01)


async def _send(url: str, count: int) -> None:
    from cloudrift.messaging import get_queue

    async with get_queue("redis", queue_name=STREAM, url=url) as queue:
        for start in range(0, count, 500):
            await queue.send_batch([{"n": i} for i in range(start, min(count, start + 500))])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: CPU milliseconds per message spent in the workers and in redis-server, by process count.
CPU_MS: dict[int, list[tuple[float, float]]] = {}


def _throughput(server: Any, config: Path, processes: int, messages: int, folder: Path) -> float:
    """Messages per second handled by ``processes`` workers (start-up excluded)."""
    server.flush()
    logs = [(folder / f"w{processes}-{i}.log").open("w+b") for i in range(processes)]
    argv = [sys.executable, "-m", "cloudrift_fastapi.cli", "worker"]
    argv += ["benchmarks.bench_cli:sleep_10ms", "--concurrency", "10", "-c", str(config)]
    workers = [
        subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
        for log in logs
    ]
    try:
        for log in logs:
            _wait(lambda log=log: b"worker started" in Path(log.name).read_bytes(), 60, "start")
        redis_pid = server.process.proc.pid
        with server.client() as client:
            cpu_before = [_cpu_seconds(p.pid) for p in workers] + [_cpu_seconds(redis_pid)]
            began = time.perf_counter()
            asyncio.run(_send(server.url, messages))
            _wait(lambda: client.xlen(STREAM) == 0, 600, "the queue draining")
            elapsed = time.perf_counter() - began
            cpu_after = [_cpu_seconds(p.pid) for p in workers] + [_cpu_seconds(redis_pid)]
        used = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
        per = 1000 / messages
        CPU_MS.setdefault(processes, []).append((sum(used[:-1]) * per, used[-1] * per))
        return messages / elapsed
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=60)
        for log in logs:
            log.close()


def _cpu_note(count: int) -> str:
    """Median CPU ms per message in the workers, then in redis-server."""
    workers = statistics.median(w for w, _ in CPU_MS[count])
    redis = statistics.median(r for _, r in CPU_MS[count])
    return f"{workers:.2f} ms + redis-server {redis:.2f} ms"


def _scaling_rows(settings: Settings, folder: Path) -> list[Row]:
    messages = settings.n(3000, minimum=40)
    # The target assumes two free cores: a busy machine caps the speed-up, so say how busy.
    load = f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    CPU_MS.clear()
    rounds = max(1, min(3, settings.rounds))
    with _servers.redis_server() as server:
        config = folder / "worker.yaml"
        config.write_text(
            f"queue:\n  provider: redis\n  queue_name: {STREAM}\n  url: {server.url}\n"
        )
        # The smoke run (the test suite) only proves the code runs: 1 and 2 processes.
        counts = (1, 2) if settings.smoke else (1, 2, 4)
        rates: dict[int, list[float]] = {count: [] for count in counts}
        for _ in range(rounds):  # interleaved, so drift hits every count alike
            for count in rates:
                rates[count].append(_throughput(server, config, count, messages, folder))
    one = statistics.median(rates[1])
    rows = []
    for count in counts[1:]:
        many = statistics.median(rates[count])
        ratios = [m / o for m, o in zip(rates[count], rates[1], strict=True)]
        rows.append(
            Row(
                category="cli",
                name=f"cloudrift worker, {count} processes vs 1 ({messages} msgs, 10 ms handler)",
                ours=f"{many:.0f} msg/s",
                baseline=f"{one:.0f} msg/s (1 process)",
                ratio=many / one,
                spread=f"{min(ratios):.2f}..{max(ratios):.2f}",
                target=f">= {TARGET}x" if count == 2 else "",
                met=(many / one >= TARGET) if count == 2 else None,
                note=f"each --concurrency 10, redis queue; median of {rounds} round(s); CPU per "
                f"message: workers {_cpu_note(count)} (1 process: {_cpu_note(1)}); "
                f"load average before: {load}; " + _servers.started_note("redis-server"),
            )
        )
    return rows


def _check_row(settings: Settings, folder: Path) -> Row:
    demo = ROOT / "example_app" / "settings" / "demo.yaml"
    env = _env({"DEMO_DATA_DIR": str(folder / "demo")})
    check = [sys.executable, "-m", "cloudrift_fastapi.cli", "check", "-c", str(demo)]
    bare = [sys.executable, "-c", "pass"]
    runs = max(1, min(5, settings.rounds))
    times: dict[str, list[float]] = {"check": [], "bare": []}
    for _ in range(runs):
        for name, argv in (("check", check), ("bare", bare)):
            began = time.perf_counter()
            done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, check=False)
            times[name].append(time.perf_counter() - began)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr!r}")
    ours, base = statistics.median(times["check"]), statistics.median(times["bare"])
    return Row(
        category="cli",
        name="cloudrift check, 5-backend demo settings (fresh process)",
        ours=f"{ours * 1000:.0f} ms",
        baseline=f"{base * 1000:.0f} ms (python -c pass)",
        note=f"median of {runs} run(s); wall time of the whole command, interpreter included",
    )


async def run(settings: Settings) -> list[Row]:
    """Every row of this module."""
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        folder = Path(tmp)
        rows = await asyncio.to_thread(_scaling_rows, settings, folder)
        rows.append(await asyncio.to_thread(_check_row, settings, folder))
    return rows
