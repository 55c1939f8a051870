"""Secret values that never print themselves, and redaction of text that may hold one.

Every credential a provider accepts (keys, passwords, tokens, connection strings) is
wrapped in :class:`Secret` as soon as the factory receives it, so it cannot leak
through ``repr()``, logs, or an f-string in an error message. SDK error texts are
passed through :func:`redact` before they become part of a cloudrift message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit, urlunsplit

MASK: Final = "**********"


class Secret:
    """A string that shows as ``**********`` everywhere except ``reveal()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        raw: object = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(raw, str):
            raise TypeError(f"a secret must be a str, not {type(raw).__name__}")
        self._value = raw

    def reveal(self) -> str:
        """The real value: pass it to the SDK and nowhere else."""
        return self._value

    # pydantic's SecretStr spells it this way; accept both so settings objects and
    # our own secrets can be handed to the same code.
    get_secret_value = reveal

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("cloudrift.Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("cloudrift secrets cannot be pickled")


def secret(value: object | None) -> Secret | None:
    """Wrap ``value`` (a str, a Secret, or pydantic's SecretStr) as a Secret; None stays None."""
    if value is None:
        return None
    if isinstance(value, Secret):
        return value
    getter = getattr(value, "get_secret_value", None)
    if callable(getter):
        raw = getter()
        if isinstance(raw, str):
            return Secret(raw)
    if isinstance(value, str):
        return Secret(value)
    raise TypeError(f"expected a secret string, got {type(value).__name__}")


def reveal(value: Secret | None) -> str | None:
    """The real value of an optional secret."""
    return None if value is None else value.reveal()


# key=value pairs in Azure-style connection strings and query strings whose value is
# a credential.
_SENSITIVE_PAIR = re.compile(
    r"(?i)\b(accountkey|sharedaccesskey|accesskey|password|pwd|secret|token|sig|"
    r"signature|x-amz-signature|x-amz-security-token|x-amz-credential|credential)"
    r"=([^;&\s'\"]+)"
)
# user:password@ in URLs (redis://, mongodb://, amqp://, https://...).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^:/@\s]*):([^@\s]+)@")


def redact(text: str, secrets: Iterable[Secret | str | None] = ()) -> str:
    """Remove every known secret value, URL password and credential pair from ``text``."""
    for item in secrets:
        value = item.reveal() if isinstance(item, Secret) else item
        if value and len(value) >= 3:
            text = text.replace(value, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
    return _SENSITIVE_PAIR.sub(lambda m: f"{m.group(1)}={MASK}", text)


def redact_url(url: str) -> str:
    """The URL with any password and signature-like query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{parts.username or ''}:{MASK}@{host}"
    cleaned = SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment)
    return redact(urlunsplit(cleaned))


# Option names whose values are credentials: held as secrets, never shown.
SECRET_OPTION_NAME: Final = re.compile(
    r"(?i)(password|passwd|secret|token|access_key|account_key|api_key|private_key|"
    r"signing_key|connection_string|sas|credential)"
)
# URL-like options are secret only when they carry a password.
URL_OPTION_NAME: Final = re.compile(r"(?i)(^|_)(url|uri|dsn)$")


def is_secret_option(name: str, value: Any) -> bool:
    """True when option ``name`` (with this value) holds a credential.

    A value that is already a secret (ours, or anything with ``get_secret_value`` such
    as pydantic's SecretStr) is one whatever its name; a URL-like option is one when
    its URL carries a password or a signature.
    """
    if isinstance(value, Secret) or callable(getattr(value, "get_secret_value", None)):
        return True
    if SECRET_OPTION_NAME.search(name):
        return True
    return bool(
        URL_OPTION_NAME.search(name) and isinstance(value, str) and redact_url(value) != value
    )


__all__ = [
    "MASK",
    "SECRET_OPTION_NAME",
    "URL_OPTION_NAME",
    "Secret",
    "is_secret_option",
    "redact",
    "redact_url",
    "reveal",
    "secret",
]
