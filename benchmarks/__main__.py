"""`make bench`: run every benchmark module and write benchmarks/RESULTS.md.

    python -m benchmarks [--quick | --smoke] [--only CATEGORY ...] [--output PATH]

Each module in ``benchmarks/`` named ``bench_<category>.py`` defines
``async def run(settings: Settings) -> list[Row]``; it starts the stand-ins it needs
and stops them before returning. A module that fails is reported in the table as a
failure (never silently dropped) and makes the command exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import importlib.metadata
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from benchmarks._harness import FULL, QUICK, SMOKE, Row, Settings, machine_facts

HERE = Path(__file__).parent
VERSIONED = [
    "cloudrift",
    "aioboto3",
    "azure-storage-blob",
    "redis",
    "pymongo",
    "motor",
    "aiosmtplib",
    "fastapi",
    "obstore",
    "moto",
]


def discover() -> list[str]:
    """Benchmark module names, in a stable order."""
    return sorted(
        info.name.removeprefix("bench_")
        for info in pkgutil.iter_modules([str(HERE)])
        if info.name.startswith("bench_")
    )


def render(rows: list[Row], *, mode: str, seconds: float, failures: list[str]) -> str:
    """The RESULTS.md text."""
    facts = machine_facts()
    versions = []
    for dist in VERSIONED:
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    lines = [
        "# cloudrift benchmark results",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `make bench`"
        f" ({mode} mode, {seconds:.0f} s) on {facts['cpu']}, {facts['cores']} cores, "
        f"Python {facts['python']}.",
        "",
        "Versions: " + ", ".join(versions) + ".",
        "",
        "Each pair ran interleaved (A/B/A/B) in one process against the same local server;",
        "a ratio is cloudrift's median divided by the baseline's (above 1 = cloudrift is",
        "faster, or for memory/calls: see the note). Spread = min..max of per-round ratios.",
        "Client CPU = this process's CPU time (`time.process_time()`, every thread) per",
        "operation, cloudrift vs the baseline, with the stand-in in another process; lower",
        "is better for us, and it is far less moved by a loaded machine than throughput.",
        "",
        "| category | measurement | cloudrift | baseline | ratio | spread | client CPU "
        "| target | verdict | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
        lines.append(
            f"| {row.category} | {row.name} | {row.ours} | {row.baseline} | {ratio} | "
            f"{row.spread} | {row.cpu} | {row.target} | {row.verdict()} | {row.note} |"
        )
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {failure}" for failure in failures]
    return "\n".join(lines) + "\n"


async def run_all(settings: Settings, only: list[str]) -> tuple[list[Row], list[str]]:
    """Run the selected benchmark modules one after another."""
    rows: list[Row] = []
    failures: list[str] = []
    for name in discover():
        if only and name not in only:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            got = await module.run(settings)
        except Exception as exc:
            traceback.print_exc()
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        for row in got:
            print(
                f"   {row.name}: {row.ours} vs {row.baseline}"
                + (f" ratio {row.ratio:.2f}" if row.ratio is not None else "")
                + (f" [{row.verdict()}]" if row.verdict() else ""),
                file=sys.stderr,
                flush=True,
            )
        rows.extend(got)
        print(f"   ({time.monotonic() - began:.1f} s)", file=sys.stderr, flush=True)
    return rows, failures


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a smoke run under 2 minutes")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes; for the test suite")
    parser.add_argument("--only", nargs="*", default=[], help="categories to run")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    settings, label = (
        (SMOKE, "smoke") if args.smoke else (QUICK, "quick") if args.quick else (FULL, "full")
    )
    began = time.monotonic()
    rows, failures = asyncio.run(run_all(settings, args.only))
    text = render(rows, mode=label, seconds=time.monotonic() - began, failures=failures)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
