"""Secrets never show themselves in repr, str, f-strings or redacted SDK messages."""

from __future__ import annotations

import pickle

import pytest

from cloudrift.core.secrets import MASK, Secret, is_secret_option, redact, redact_url, secret


def test_secret_hides_value_everywhere_but_reveal() -> None:
    """repr, str and format of a Secret show only the mask."""
    s = Secret("hunter2-very-secret")
    assert "hunter2" not in repr(s)
    assert str(s) == MASK
    assert f"{s}" == MASK and f"{s!r}".count("hunter2") == 0
    assert s.reveal() == "hunter2-very-secret"


def test_secret_in_a_container_repr_stays_hidden() -> None:
    """A dict holding a Secret does not leak it in its repr."""
    assert "pw-value" not in repr({"password": Secret("pw-value")})


def test_secret_cannot_be_pickled() -> None:
    """Pickling (e.g. into a task queue) refuses rather than leaking the value."""
    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))


def test_secret_accepts_pydantic_style_values() -> None:
    """Anything with get_secret_value() is wrapped; None stays None."""

    class Fake:
        def get_secret_value(self) -> str:
            return "v"

    wrapped = secret(Fake())
    assert wrapped is not None and wrapped.reveal() == "v"
    assert secret(None) is None


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc123==;", "abc123=="),
        ("redis://default:p%40ss@host:6379/0", "p%40ss"),
        ("https://x.blob.core.windows.net/c/k?sv=2020&sig=SIGVALUE&se=1", "SIGVALUE"),
        ("Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=SAKVALUE", "SAKVALUE"),
        ("endpoint=https://x.communication.azure.com/;accesskey=ACSKEY", "ACSKEY"),
    ],
)
def test_redact_removes_credentials_from_sdk_messages(text: str, leak: str) -> None:
    """Connection strings, URL passwords and signatures are masked."""
    assert leak not in redact(text)


def test_redact_removes_known_secret_values() -> None:
    """A known secret value is masked wherever it appears."""
    assert "tok-123" not in redact("failed with token tok-123 rejected", [Secret("tok-123")])


def test_redact_url_masks_password_keeps_host() -> None:
    """The host stays readable; the password does not."""
    out = redact_url("mongodb://user:s3cr3t@db.example.com:27017/?tls=true")
    assert "s3cr3t" not in out and "db.example.com" in out and "user" in out


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("password", "x", True),
        ("aws_secret_access_key", "x", True),
        ("connection_string", "x", True),
        ("sas_token", "x", True),
        ("url", "redis://:pw@cache:6379/0", True),
        ("url", "redis://cache:6379/0", False),
        ("endpoint_url", "https://s3.example.com", False),
        ("bucket", "uploads", False),
        ("bucket", Secret("already-secret"), True),
    ],
)
def test_is_secret_option_by_name_value_or_type(name: str, value: object, expected: bool) -> None:
    """Credential names, URLs carrying a password, and secret values are secret options."""
    assert is_secret_option(name, value) is expected


def test_is_secret_option_accepts_pydantic_style_secrets() -> None:
    """Anything with get_secret_value() (pydantic's SecretStr) counts, without pydantic."""

    class Fake:
        def get_secret_value(self) -> str:
            return "v"

    assert is_secret_option("note", Fake()) is True
