"""`make bench` code cannot rot: the suite runs it once at tiny sizes (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_benchmarks_run_end_to_end_in_smoke_mode(tmp_path: Path) -> None:
    """Every benchmark module runs and the results table lists each of its rows."""
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    table = out.read_text()
    assert "| import | import cloudrift.storage |" in table
    assert "## Failures" not in table
