"""A pytest plugin that makes ``engine="obstore"`` the default of chosen providers, as if
their default had changed: ``CLOUDRIFT_TEST_OBSTORE_DEFAULT=s3,r2,azure_blob,gcs python -m
pytest -p tests.storage.force_engine tests/storage``. Tests that name an engine keep it.
This is how the default of each provider is decided (docs/storage.md, "Engines")."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Wrap each chosen provider's ``__init__`` so a missing ``engine`` means obstore."""
    from cloudrift.storage.azure_blob import AzureBlobStorage
    from cloudrift.storage.gcs import GCSStorage
    from cloudrift.storage.s3 import R2Storage, S3Storage

    chosen = set(filter(None, os.environ.get("CLOUDRIFT_TEST_OBSTORE_DEFAULT", "").split(",")))
    providers: dict[str, Any] = {
        "s3": S3Storage,
        "r2": R2Storage,
        "azure_blob": AzureBlobStorage,
        "gcs": GCSStorage,
    }
    unknown = chosen - set(providers)
    if unknown:
        raise pytest.UsageError(f"CLOUDRIFT_TEST_OBSTORE_DEFAULT: unknown {sorted(unknown)}")
    for name in chosen:
        cls = providers[name]
        cls.__init__ = defaulting_engine(cls.__init__, "obstore")


def defaulting_engine(init: Callable[..., None], engine: str) -> Callable[..., None]:
    """``init`` (a storage provider's ``__init__``) with ``engine`` as the default of its
    ``engine`` option; a caller that names an engine keeps it."""

    @functools.wraps(init)
    def wrapped(self: Any, *args: Any, **options: Any) -> None:
        options.setdefault("engine", engine)
        init(self, *args, **options)

    return wrapped
