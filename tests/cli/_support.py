"""Running the ``cloudrift`` command as a real child process (``python -m``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "cloudrift_fastapi.cli"]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without cloudrift settings meant for other tests."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLOUDRIFT_", "INTAKE_")) or k == "CLOUDRIFT_REDIS_SERVER"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``cloudrift ARGS`` to completion and return its exit code and output."""
    return subprocess.run(
        [*COMMAND, *args],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    pytest.fail(f"{what} did not happen within {timeout:.0f}s", pytrace=False)


class Child:
    """A long-running child (a worker, an API) with its output in a file."""

    def __init__(
        self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(env),
                cwd=REPO,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def output(self) -> str:
        """Everything the child printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_output(self, text: str, timeout: float = 30) -> None:
        """Wait until the child printed ``text``; fail with its output if it exits first."""

        def seen() -> bool:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                pytest.fail(
                    f"{self.name} exited ({self.proc.returncode}) before printing {text!r}:\n"
                    f"{self.output()[-4000:]}",
                    pytrace=False,
                )
            return False

        wait_for(seen, timeout, f"{self.name} printing {text!r}")

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child itself."""
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30) -> int:
        """Its exit code, once it has exited."""
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Kill it if it is still running (test cleanup)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
