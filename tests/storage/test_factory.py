"""get_storage dispatches from its table, imports no SDK up front, and rejects mistakes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.storage import PROVIDERS, get_storage

ROOT = Path(__file__).resolve().parents[2]


def _run_without_site_packages(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python with no third-party packages at all (-S: no site-packages)."""
    return subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_and_memory_work_without_any_sdk() -> None:
    """import cloudrift.storage and the memory/local providers work with no extra installed."""
    result = _run_without_site_packages(
        "import asyncio, cloudrift.storage as s;"
        "m = s.get_storage('memory');"
        "asyncio.run(m.upload('k', b'v'));"
        "print(asyncio.run(m.download('k')));"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in "
        "('aioboto3', 'botocore', 'azure', 'gcloud', 'aiohttp')))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["b'v'", "[]"]


@pytest.mark.parametrize(
    ("provider", "extra"), [("s3", "aws"), ("r2", "aws"), ("azure_blob", "azure"), ("gcs", "gcp")]
)
def test_missing_sdk_names_the_extra(provider: str, extra: str) -> None:
    """Choosing a provider whose SDK is absent raises ConfigurationError with the pip command."""
    result = _run_without_site_packages(
        "import cloudrift.storage as s\n"
        "try:\n"
        f"    s.get_storage({provider!r}, bucket='b')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ConfigurationError")
    assert f'pip install "cloudrift[{extra}]"' in result.stdout


def test_unknown_provider_lists_the_valid_ones() -> None:
    """An unknown provider name fails, listing every valid provider and the closest one."""
    with pytest.raises(ConfigurationError) as info:
        get_storage("azure")
    for name in PROVIDERS:
        assert name in str(info.value)
    assert "Did you mean 'azure_blob'" in str(info.value)


def test_every_provider_module_is_importable_here() -> None:
    """Each table entry points at a class that exists (with every extra installed)."""
    import importlib

    for spec in PROVIDERS.values():
        assert isinstance(getattr(importlib.import_module(spec.module), spec.attr), type)
