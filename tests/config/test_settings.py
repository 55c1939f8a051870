"""CloudriftSettings: keywords, env vars, named backends, secrets and path-named errors."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import ConfigurationError


def test_one_backend_section_is_named_default() -> None:
    """``storage={"provider": ...}`` is one backend called ``default`` with its options."""
    s = CloudriftSettings(storage={"provider": "s3", "bucket": "b", "region": "eu-west-1"})
    assert s.default_name("storage") == "default"
    config = s.backend("storage")
    assert config.provider == "s3"
    assert config.factory_options() == {"bucket": "b", "region": "eu-west-1"}


def test_bare_provider_name_is_shorthand_for_one_backend() -> None:
    """``email="memory"`` reads as ``{"provider": "memory"}``."""
    s = CloudriftSettings(email="memory")
    assert s.backend("email").provider == "memory"


def test_named_backends_with_explicit_default() -> None:
    """Several named backends keep their own options and the named default wins."""
    s = CloudriftSettings(
        storage={
            "default": "primary",
            "backends": {
                "primary": {"provider": "memory"},
                "avatars": {"provider": "local", "root_dir": "/tmp/a"},
            },
        }
    )
    assert s.default_name("storage") == "primary"
    assert s.backend("storage", "avatars").factory_options() == {"root_dir": "/tmp/a"}
    assert [(c, n) for c, n, _ in s.iter_backends()] == [
        ("storage", "primary"),
        ("storage", "avatars"),
    ]


def test_single_named_backend_is_the_default() -> None:
    """With one named backend and no ``default``, that backend is the default."""
    s = CloudriftSettings(cache={"backends": {"sessions": {"provider": "memory"}}})
    assert s.default_name("cache") == "sessions"


def test_several_backends_without_default_fail_naming_the_section() -> None:
    """Two backends and no ``default`` is ambiguous and says how to fix it."""
    with pytest.raises(ConfigurationError, match=r"storage: several backends \(a, b\)"):
        CloudriftSettings(
            storage={"backends": {"a": {"provider": "memory"}, "b": {"provider": "memory"}}}
        )


def test_default_must_name_a_configured_backend() -> None:
    """A ``default`` that names no backend fails naming the valid ones."""
    with pytest.raises(ConfigurationError, match="storage: default 'x' is not one of"):
        CloudriftSettings(storage={"default": "x", "backends": {"a": {"provider": "memory"}}})


def test_provider_and_backends_together_are_refused() -> None:
    """A section cannot be one backend and several at once."""
    with pytest.raises(ConfigurationError, match=r"either provider .* or backends"):
        CloudriftSettings(queue={"provider": "memory", "backends": {}})


def test_missing_provider_fails_naming_the_full_path() -> None:
    """An invalid value names its path (``storage.backends.avatars.provider``)."""
    with pytest.raises(ConfigurationError, match=r"storage\.backends\.avatars\.provider"):
        CloudriftSettings(
            storage={"default": "a", "backends": {"a": {"provider": "memory"}, "avatars": {}}}
        )


def test_unknown_top_level_key_fails_naming_it() -> None:
    """A misspelt section name is refused rather than silently ignored."""
    with pytest.raises(ConfigurationError, match="storag: unknown setting"):
        CloudriftSettings(storag={"provider": "memory"})


def test_every_problem_is_listed_at_once() -> None:
    """Several mistakes produce one error listing each path."""
    with pytest.raises(ConfigurationError) as caught:
        CloudriftSettings(queu={}, cache={"provider": ""})
    assert "queu: unknown setting" in caught.value.message
    assert "cache.backends.default.provider" in caught.value.message


def test_backend_names_must_be_lowercase_identifiers() -> None:
    """Names that env vars could not spell (case-insensitive) are refused up front."""
    with pytest.raises(ConfigurationError, match="backend name 'Avatars'"):
        CloudriftSettings(storage={"backends": {"Avatars": {"provider": "memory"}}})


def test_auth_method_only_on_cache_backends() -> None:
    """``auth_method`` belongs to cache backends; elsewhere it is a mistake."""
    ok = CloudriftSettings(
        cache={"provider": "redis", "auth_method": "from_url", "url": "redis://h"}
    )
    assert ok.backend("cache").auth_method == "from_url"
    with pytest.raises(ConfigurationError, match=r"storage\.backends\.default\.auth_method"):
        CloudriftSettings(storage={"provider": "memory", "auth_method": "x"})


def test_database_only_on_document_backends() -> None:
    """``database`` is the document section's default database, nowhere else."""
    assert (
        CloudriftSettings(document={"provider": "memory", "database": "app"})
        .backend("document")
        .database
        == "app"
    )
    with pytest.raises(ConfigurationError, match=r"queue\.backends\.default\.database"):
        CloudriftSettings(queue={"provider": "memory", "database": "x"})


def test_unconfigured_category_raises_a_helpful_error() -> None:
    """Asking for a category that has no section says how to configure it."""
    with pytest.raises(ConfigurationError, match="CLOUDRIFT_QUEUE__PROVIDER=memory"):
        CloudriftSettings().backend("queue")


def test_unknown_named_backend_lists_the_configured_ones() -> None:
    """Asking for a missing name lists the names that exist."""
    s = CloudriftSettings(storage={"provider": "memory"})
    with pytest.raises(ConfigurationError, match="no storage backend named 'nope'; configured"):
        s.backend("storage", "nope")


# ------------------------------------------------------------------------ secrets

SECRET = "wJalrXUtnFEMI-very-secret-value"


def test_credentials_are_secret_strings_hidden_in_repr() -> None:
    """Keys, passwords, tokens and connection strings never appear in repr or str."""
    s = CloudriftSettings(
        storage={"provider": "s3", "bucket": "b", "aws_secret_access_key": SECRET},
        cache={"provider": "redis", "auth_method": "from_credentials", "password": SECRET},
        queue={"provider": "azure_bus", "connection_string": f"Endpoint=sb://x;Key={SECRET}"},
        email={"provider": "smtp", "host": "h", "api_token": SECRET},
    )
    for category in ("storage", "cache", "queue", "email"):
        values = s.backend(category).options.values()
        assert any(isinstance(v, SecretStr) for v in values), category
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert SECRET not in repr(s.model_dump())


def test_url_with_password_is_secret_but_plain_url_is_not() -> None:
    """A URL option is hidden when it carries a password, shown when it does not."""
    s = CloudriftSettings(
        cache={
            "backends": {
                "a": {"provider": "redis", "url": f"redis://:{SECRET}@h:6379/0"},
                "b": {"provider": "redis", "url": "redis://h:6379/0"},
            },
            "default": "a",
        }
    )
    assert isinstance(s.backend("cache", "a").options["url"], SecretStr)
    assert s.backend("cache", "b").options["url"] == "redis://h:6379/0"
    assert SECRET not in repr(s)


def test_factory_options_reveal_secrets_for_the_factory_only() -> None:
    """The factory receives the real value; the settings object keeps it wrapped."""
    s = CloudriftSettings(email={"provider": "smtp", "password": SECRET})
    assert s.backend("email").factory_options()["password"] == SECRET


def test_validation_error_never_quotes_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    """A settings error names the path but not the (possibly secret) value."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigurationError) as caught:
        CloudriftSettings(storage={"backends": {"a": {"password": SECRET}}})
    assert "storage.backends.a.provider" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None  # pydantic's text would quote the input
    assert SECRET not in caplog.text


def test_open_backend_builds_with_the_category_factory() -> None:
    """``open_backend`` calls the category's factory with the configured options."""
    s = CloudriftSettings(cache={"provider": "memory"})
    backend = s.open_backend("cache")
    assert type(backend).__name__ == "MemoryCache"


def test_open_backend_names_the_path_of_a_bad_option() -> None:
    """A factory's refusal is re-raised naming the backend's path in the settings."""
    s = CloudriftSettings(storage={"backends": {"avatars": {"provider": "memory", "buckt": "x"}}})
    with pytest.raises(ConfigurationError, match=r"storage\.backends\.avatars: unknown option"):
        s.open_backend("storage", "avatars")


def test_open_backend_unknown_provider_lists_valid_ones() -> None:
    """An unknown provider fails at build time listing the valid providers."""
    s = CloudriftSettings(queue={"provider": "kafka"})
    with pytest.raises(
        ConfigurationError,
        match=r"queue\.backends\.default: unknown messaging provider .kafka.; valid providers",
    ):
        s.open_backend("queue")


def test_provider_must_look_like_a_provider_name() -> None:
    """A garbled provider (e.g. broken JSON in an env var) fails at once, naming the path."""
    with pytest.raises(ConfigurationError, match=r"storage\.backends\.default\.provider: provider"):
        CloudriftSettings(storage='{"provider": "s3"')


def test_option_of_the_wrong_type_names_its_full_path() -> None:
    """A value the provider cannot take names ``storage.backends.avatars.bucket``."""
    s = CloudriftSettings(
        storage={"backends": {"avatars": {"provider": "s3", "bucket": 123, "region": "x"}}}
    )
    with pytest.raises(ConfigurationError, match=r"storage\.backends\.avatars\.bucket: Input"):
        s.open_backend("storage", "avatars")


def test_missing_required_option_names_its_path() -> None:
    """Leaving out an option the provider requires names it before any SDK call."""
    s = CloudriftSettings(storage={"provider": "s3", "region": "x"})
    with pytest.raises(
        ConfigurationError, match=r"storage\.backends\.default\.bucket: required option is missing"
    ):
        s.open_backend("storage")


def test_every_bad_option_is_listed_and_no_value_is_quoted() -> None:
    """Several wrong options come in one error; a wrong secret value is never echoed."""
    s = CloudriftSettings(
        email={
            "provider": "smtp",
            "host": "h",
            "port": "twenty-five",
            "timeout": "slow",
            "password": 12345678901,
        }
    )
    with pytest.raises(ConfigurationError) as caught:
        s.open_backend("email")
    text = caught.value.message
    assert "email.backends.default.port:" in text
    assert "email.backends.default.timeout:" in text
    assert "email.backends.default.password:" in text
    assert "twenty-five" not in text and "12345678901" not in text


async def test_numeric_strings_from_env_fit_numeric_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Env text like ``6380`` reaches an int option as an int and builds fine."""
    monkeypatch.setenv("CLOUDRIFT_CACHE__PROVIDER", "redis")
    monkeypatch.setenv("CLOUDRIFT_CACHE__AUTH_METHOD", "from_credentials")
    monkeypatch.setenv("CLOUDRIFT_CACHE__HOST", "127.0.0.1")
    monkeypatch.setenv("CLOUDRIFT_CACHE__PORT", "6380")
    backend = CloudriftSettings().open_backend("cache")
    assert type(backend).__name__ == "RedisCache"
    await backend.close()
