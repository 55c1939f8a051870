"""Root test configuration: registers every stand-in fixture module in tests/servers/."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import pytest

# Server modules import each other (TLS files, process helpers); register them for
# assertion rewriting before any of them is imported.
pytest.register_assert_rewrite("tests.servers", "tests.conformance")

_SERVERS = Path(__file__).parent / "servers"

# Each module in tests/servers/ holds the fixtures for one local stand-in; register
# them all as plugins so any test can ask for any server by fixture name.
pytest_plugins = [
    f"tests.servers.{info.name}"
    for info in pkgutil.iter_modules([str(_SERVERS)])
    if not info.name.startswith("_")
]
