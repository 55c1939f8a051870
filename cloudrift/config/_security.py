"""Checks that refuse settings unsafe for production (placeholders, plaintext, no TLS)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import SecretStr

from cloudrift.core.secrets import is_secret_option

if TYPE_CHECKING:
    from cloudrift.config._settings import CloudriftSettings

#: Providers that keep data in the process or on one disk: for dev and tests only.
DEV_PROVIDERS = frozenset({"memory", "file"})

_PLACEHOLDER = re.compile(
    r"(?i)(changeme|change[-_ ]me|example|xxx|placeholder|your[-_]|replace[-_]?me|"
    r"^<.*>$|^\.\.\.$|^\*+$|^todo$|^dummy$|^secret$|^password$)"
)
# Options that switch TLS certificate verification off when false.
_VERIFY_FLAGS = re.compile(
    r"(?i)(^|_)(verify|verify_tls|tls_verify|ssl_verify|verify_ssl|check_hostname)$"
)
# Options (or URL query keys) that switch verification off when true.
_INSECURE_FLAGS = re.compile(
    r"(?i)^(tls_?insecure|tls_?allow_?invalid_?(certificates|hostnames)|insecure|"
    r"ssl_?allow_?invalid_?certificates)$"
)
_CERT_REQS = re.compile(r"(?i)^ssl_?cert_?reqs$")


def _is_placeholder(text: str) -> bool:
    return text.strip() == "" or bool(_PLACEHOLDER.search(text.strip()))


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _falsy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("0", "false", "no", "off", "none")
    return value is False or value is None or value == 0


def _url_problems(where: str, url: str) -> list[str]:
    problems: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return problems
    if parts.password is not None and _is_placeholder(parts.password):
        problems.append(f"{where}: the URL's password is a placeholder; set the real one")
    for key, value in parse_qsl(parts.query):
        if _INSECURE_FLAGS.match(key) and _truthy(value):
            problems.append(f"{where}: {key}={value} turns TLS verification off")
        if _CERT_REQS.match(key) and value.lower() in ("none", "cert_none"):
            problems.append(f"{where}: {key}={value} turns TLS verification off")
    return problems


def production_problems(settings: CloudriftSettings) -> list[str]:
    """Every reason ``settings`` must not run in production (empty when it may)."""
    problems: list[str] = []
    for category, name, config in settings.iter_backends():
        where = f"{category}.backends.{name}"
        if config.provider in DEV_PROVIDERS:
            problems.append(
                f"{where}.provider: {config.provider!r} keeps data in this process or on "
                "this disk; choose a real service for production"
            )
        for option, value in config.options.items():
            path = f"{where}.{option}"
            secret = isinstance(value, SecretStr)
            raw = value.get_secret_value() if secret else value
            if (secret or is_secret_option(option, raw)) and isinstance(raw, str):
                if _is_placeholder(raw):
                    problems.append(f"{path}: empty or placeholder credential; set the real one")
                elif "://" in raw:
                    problems.extend(_url_problems(path, raw))
            elif option.endswith("_id") and isinstance(raw, str) and _is_placeholder(raw):
                problems.append(f"{path}: placeholder value; set the real one")
            elif isinstance(raw, str) and "://" in raw:
                problems.extend(_url_problems(path, raw))
            if _VERIFY_FLAGS.search(option) and _falsy(raw):
                problems.append(f"{path}: TLS certificate verification is turned off")
            if _INSECURE_FLAGS.match(option) and _truthy(raw):
                problems.append(f"{path}: TLS certificate verification is turned off")
            if _CERT_REQS.match(option) and (
                raw is None or (isinstance(raw, str) and raw.lower() in ("none", "cert_none"))
            ):
                problems.append(f"{path}: TLS certificate verification is turned off")
        mode = config.options.get("mode")
        if category == "email" and config.provider == "smtp" and mode == "plaintext":
            problems.append(
                f"{where}.mode: plaintext SMTP sends credentials and mail unencrypted; "
                "use starttls or tls"
            )
    return problems


__all__ = ["DEV_PROVIDERS", "production_problems"]
