"""A document-intake service built on cloudrift: the same code on a laptop, AWS or Azure.

Run it with ``make demo`` (or ``python -m example_app``); see ``example_app/README.md``.
``create_app`` is imported on first use, so ``python -m example_app`` can check its
arguments before loading the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from example_app.app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from example_app.app import create_app

        return create_app
    raise AttributeError(f"module 'example_app' has no attribute {name!r}")


__all__ = ["create_app"]
