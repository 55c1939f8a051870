"""Every ```python block in README.md and docs/*.md runs, so the docs cannot drift.

Each block runs on its own, with top-level ``await`` allowed, in a fresh temporary
working directory. Blocks fenced as ```python no-run are shown but not executed (they
need real cloud accounts); everything else must run offline.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if "no-run" in match.group(1):
                continue
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{doc.relative_to(ROOT)}:{line}", match.group(2)))
    return found


BLOCKS = _blocks()


def test_the_readme_has_runnable_examples() -> None:
    """The README itself carries examples that this module executes."""
    assert any(name.startswith("README.md:") for name, _ in BLOCKS)


@pytest.mark.parametrize(("where", "source"), BLOCKS, ids=[name for name, _ in BLOCKS])
async def test_docs_example_runs(
    where: str, source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example at this place in the docs runs without error."""
    monkeypatch.chdir(tmp_path)
    code = compile(source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, object] = {"__name__": "__docs_example__"}
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        await result
