"""validate_production_security refuses what must never reach production."""

from __future__ import annotations

from typing import Any

import pytest

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import ConfigurationError


def _problems(**sections: Any) -> str:
    with pytest.raises(ConfigurationError) as caught:
        CloudriftSettings(environment="production", **sections).validate_production_security()
    return caught.value.message


def test_sound_production_settings_pass() -> None:
    """Real-looking credentials, TLS on, cloud providers: no complaint."""
    CloudriftSettings(
        environment="production",
        storage={"provider": "s3", "bucket": "b", "aws_secret_access_key": "k8s7d6f5g4h3j2"},
        email={"provider": "smtp", "host": "smtp.x.io", "mode": "starttls", "password": "Zq9!t"},
        cache={"provider": "redis", "url": "rediss://:Zx8vB2nM@cache.internal:6380/0"},
    ).validate_production_security()


@pytest.mark.parametrize(
    "value", ["changeme", "CHANGE_ME", "AKIAIOSFODNN7EXAMPLE", "xxx", "<your-key>", "...", ""]
)
def test_placeholder_credentials_are_refused(value: str) -> None:
    """Each placeholder spelling is caught and the path is named."""
    text = _problems(storage={"provider": "s3", "aws_secret_access_key": value})
    assert "storage.backends.default.aws_secret_access_key" in text


def test_placeholder_password_inside_url_is_refused() -> None:
    """A URL whose password is a placeholder is caught too."""
    text = _problems(cache={"provider": "redis", "url": "redis://:changeme@h:6379/0"})
    assert "cache.backends.default.url" in text


def test_dev_providers_are_refused() -> None:
    """memory and file keep data in one process or disk: not for production."""
    text = _problems(storage="memory", email={"provider": "file", "directory": "/tmp/m"})
    assert "storage.backends.default.provider: 'memory'" in text
    assert "email.backends.default.provider: 'file'" in text


def test_plaintext_smtp_is_refused() -> None:
    """SMTP without TLS would send credentials in clear."""
    text = _problems(email={"provider": "smtp", "host": "h", "mode": "plaintext"})
    assert "email.backends.default.mode: plaintext SMTP" in text


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("verify_tls", False),
        ("ssl_cert_reqs", "none"),
        ("ssl_cert_reqs", None),
        ("tls_allow_invalid_certificates", True),
        ("ssl_check_hostname", False),
        ("tls_insecure", True),
        ("tlsInsecure", "true"),
    ],
)
def test_disabled_tls_verification_is_refused(option: str, value: object) -> None:
    """Every spelling of "do not verify certificates" is caught."""
    text = _problems(cache={"provider": "redis", option: value})
    assert f"cache.backends.default.{option}: TLS certificate verification is turned off" in text


def test_insecure_flag_in_a_uri_query_is_refused() -> None:
    """``tlsInsecure=true`` inside a connection URI is caught as well."""
    text = _problems(
        document={"provider": "mongodb", "uri": "mongodb://u:Rt5x9@db:27017/?tlsInsecure=true"}
    )
    assert "tlsInsecure=true turns TLS verification off" in text


def test_every_problem_is_listed_at_once_and_no_secret_is_shown() -> None:
    """All problems come in one error, and no credential value is quoted."""
    text = _problems(
        storage="memory",
        cache={"provider": "redis", "password": "changeme-but-secret-ish"},
        email={"provider": "smtp", "mode": "plaintext"},
    )
    assert text.count("\n") == 3
    assert "changeme-but-secret-ish" not in text


def test_production_is_recognised_in_any_case() -> None:
    """``environment="Production"`` counts as production; ``staging`` does not."""
    assert CloudriftSettings(environment=" Production ").is_production
    assert not CloudriftSettings(environment="staging").is_production


def test_security_checks_do_not_import_the_settings_module() -> None:
    """``_security`` gets ``is_secret_option`` from core.secrets: no cycle with _settings."""
    import ast
    from pathlib import Path

    import cloudrift.config._security as security

    tree = ast.parse(Path(security.__file__).read_text())
    runtime_imports = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        # imports under ``if TYPE_CHECKING:`` are for annotations only
        and not any(
            isinstance(parent, ast.If)
            and isinstance(parent.test, ast.Name)
            and parent.test.id == "TYPE_CHECKING"
            and node in ast.walk(parent)
            for parent in ast.walk(tree)
        )
    ]
    assert "cloudrift.config._settings" not in runtime_imports
    assert "cloudrift.core.secrets" in runtime_imports
