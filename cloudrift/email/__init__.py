"""Email: one interface over SES, Azure Communication Services, SMTP, memory and files.

``get_email(provider, **options)`` builds a backend; importing this package imports
no SDK (each provider imports its own when chosen)::

    email = get_email("memory", default_from="noreply@example.com")
    msg_id = await email.send("alice@example.com", "Welcome", body_text="Hello")
"""

from __future__ import annotations

from typing import Any

from cloudrift.core.factory import ProviderSpec, build_provider
from cloudrift.email.base import Attachment, Email, EmailMessage

#: Provider name → where it lives and what it needs installed.
PROVIDERS: dict[str, ProviderSpec] = {
    "memory": ProviderSpec("cloudrift.email.memory", "MemoryEmail"),
    "file": ProviderSpec("cloudrift.email.file", "FileEmail"),
    "smtp": ProviderSpec("cloudrift.email.smtp", "SMTPEmail", "email", ("aiosmtplib",)),
    "ses": ProviderSpec("cloudrift.email.ses", "SESEmail", "aws", ("aioboto3",)),
    "azure_acs": ProviderSpec(
        "cloudrift.email.azure_acs",
        "AzureACSEmail",
        "azure",
        ("azure.communication.email", "azure.identity", "aiohttp"),
    ),
}


def get_email(provider: str, **options: Any) -> Email:
    """Build the email backend ``provider`` (memory, file, smtp, ses, azure_acs).

    Raises ConfigurationError for an unknown provider or option, missing or
    conflicting credentials, or a missing extra (naming the pip install that fixes it).
    """
    backend = build_provider("email", provider, PROVIDERS, options)
    assert isinstance(backend, Email)
    return backend


__all__ = ["PROVIDERS", "Attachment", "Email", "EmailMessage", "get_email"]
