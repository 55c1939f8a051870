"""Every settings test starts from an environment without CLOUDRIFT_* settings."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_cloudrift_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove CLOUDRIFT_* variables so the developer's shell cannot change a result."""
    for name in list(os.environ):
        if name.upper().startswith("CLOUDRIFT_"):
            monkeypatch.delenv(name)
