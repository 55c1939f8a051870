"""Import cost: `import cloudrift.<category>` must import no SDK until a provider is chosen.

Each import runs in a fresh interpreter with ``-X importtime``; the cumulative time of
the top-level module is read from CPython's own report. The baseline is importing the
SDK a user would otherwise import directly.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys

from benchmarks._harness import Row, Settings

SDK_ROOTS = (
    "azure",
    "aioboto3",
    "aiobotocore",
    "boto3",
    "botocore",
    "redis",
    "pymongo",
    "motor",
    "aiosmtplib",
    "gcloud",
    "fastapi",
    "pydantic",
    "dependency_injector",
    "opentelemetry",
)

PAIRS = [
    ("cloudrift", None),
    ("cloudrift.storage", "aioboto3"),
    ("cloudrift.messaging", "aioboto3"),
    ("cloudrift.cache", "redis.asyncio"),
    ("cloudrift.document", "pymongo"),
    ("cloudrift.email", "aiosmtplib"),
    ("cloudrift.kv", None),
]


def _import_once(module: str) -> tuple[float, list[str]]:
    """Cumulative import time (ms) of ``module`` in a fresh interpreter, and SDKs it pulled in."""
    code = (
        f"import {module}, sys; "
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({SDK_ROOTS!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    target = module.split(".")[0] if module.count(".") == 0 else module
    micros = None
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and match.group(2) == target:
            micros = int(match.group(1))
    if micros is None:
        raise RuntimeError(f"no importtime line for {module}")
    sdks = [s for s in done.stdout.strip().split(",") if s]
    return micros / 1000, sdks


def _median_import(module: str, repeats: int) -> tuple[float, list[str]]:
    runs = [_import_once(module) for _ in range(repeats)]
    return statistics.median(ms for ms, _ in runs), runs[0][1]


async def run(settings: Settings) -> list[Row]:
    """Import times of cloudrift and each category vs the SDK it stands in front of."""
    repeats = 1 if settings.smoke else max(3, settings.rounds)
    rows = []
    for module, sdk in PAIRS:
        ours, pulled = _median_import(module, repeats)
        # Importing cloudrift.<category> pulls in nothing but the standard library.
        allowed: set[str] = set()
        met = not (set(pulled) - allowed)
        if sdk:
            base, _ = _median_import(sdk, repeats)
            baseline, ratio = f"{base:.1f} ms (import {sdk})", base / ours if ours else None
        else:
            baseline, ratio = "", None
        rows.append(
            Row(
                category="import",
                name=f"import {module}",
                ours=f"{ours:.1f} ms",
                baseline=baseline,
                ratio=ratio,
                target="no SDK imported",
                met=met,
                note="SDKs imported: "
                + (", ".join(pulled) if pulled else "none")
                + ("; ratio = SDK import time / ours" if sdk else ""),
            )
        )
    return rows
