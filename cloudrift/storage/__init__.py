"""Object storage: one async API over S3, R2, Azure Blob, GCS, the local disk and memory.

``get_storage(provider, **options)`` builds a backend; no SDK is imported until a
provider that needs it is chosen. See ``docs/storage.md``.
"""

from __future__ import annotations

from typing import Any

from cloudrift.core.factory import ProviderSpec, build_provider
from cloudrift.storage.base import ObjectInfo, PresignMethod, Storage, validate_key

#: name → where the provider lives and what it needs installed. ``requires`` names only
#: top-level modules: ``require_modules`` uses ``find_spec``, which raises (instead of
#: answering None) for a dotted name whose parent package is missing; a missing
#: sub-package is still reported with the extra by the import fallback.
PROVIDERS: dict[str, ProviderSpec] = {
    "memory": ProviderSpec("cloudrift.storage.memory", "MemoryStorage"),
    "local": ProviderSpec("cloudrift.storage.local", "LocalStorage"),
    "s3": ProviderSpec("cloudrift.storage.s3", "S3Storage", extra="aws", requires=("aioboto3",)),
    "r2": ProviderSpec("cloudrift.storage.s3", "R2Storage", extra="aws", requires=("aioboto3",)),
    "azure_blob": ProviderSpec(
        "cloudrift.storage.azure_blob",
        "AzureBlobStorage",
        extra="azure",
        requires=("azure", "aiohttp"),
    ),
    "gcs": ProviderSpec(
        "cloudrift.storage.gcs", "GCSStorage", extra="gcp", requires=("gcloud", "aiohttp")
    ),
}


def get_storage(provider: str, **options: Any) -> Storage:
    """Build the storage backend ``provider`` with ``options``.

    Raises ConfigurationError for an unknown provider or option, missing or
    conflicting credentials, or an SDK extra that is not installed.
    """
    backend: Storage = build_provider("storage", provider, PROVIDERS, options)
    return backend


__all__ = ["PROVIDERS", "ObjectInfo", "PresignMethod", "Storage", "get_storage", "validate_key"]
