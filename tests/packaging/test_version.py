"""The version has one source: the installed metadata agrees with cloudrift.__version__."""

from __future__ import annotations

import importlib.metadata

import cloudrift


def test_installed_metadata_matches_the_package_version() -> None:
    """pip's view of the version and the module's are the same string."""
    assert importlib.metadata.version("cloudrift") == cloudrift.__version__


def test_package_ships_type_information() -> None:
    """Both packages carry py.typed so users' type checkers use our hints."""
    from pathlib import Path

    import cloudrift_fastapi

    for pkg in (cloudrift, cloudrift_fastapi):
        assert (Path(pkg.__file__).parent / "py.typed").is_file(), pkg.__name__
