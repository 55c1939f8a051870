"""A document-intake service built on cloudrift: the same code on a laptop, AWS or Azure.

Run it with ``make demo`` (or ``python -m example_app``); see ``example_app/README.md``.
"""

from __future__ import annotations

from example_app.app import create_app

__all__ = ["create_app"]
