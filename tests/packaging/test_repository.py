"""The repository stands alone: its license, changelog and docs need nothing outside it."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "*.md", "*.py", "*.toml", "*.sh", "Makefile", ".ci/*"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [ROOT / line for line in out.splitlines() if line]


def test_license_file_matches_the_declared_license() -> None:
    """pyproject.toml says MIT and the LICENSE file carries the MIT text."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_changelog_has_an_unreleased_or_current_section() -> None:
    """CHANGELOG.md exists and records the version being built (or an Unreleased section)."""
    from cloudrift import __version__

    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## (Unreleased|{re.escape(__version__)})\b", text, re.MULTILINE)


def test_no_file_sends_a_reader_outside_the_repository() -> None:
    """No tracked doc, script or source points at a sibling folder such as ../shared."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in _tracked_text_files()
        if path.is_file()
        and path.name != "test_repository.py"
        and re.search(r"\.\./shared|/work/shared", path.read_text(errors="replace"))
    ]
    assert offenders == []
