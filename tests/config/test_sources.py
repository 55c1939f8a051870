"""Env vars and YAML files (with ${VAR} interpolation) feed the same settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudrift.config import CloudriftSettings, interpolate, load_yaml
from cloudrift.core.exceptions import ConfigurationError


def test_env_vars_build_one_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CLOUDRIFT_STORAGE__PROVIDER`` and friends configure the default storage."""
    monkeypatch.setenv("CLOUDRIFT_STORAGE__PROVIDER", "s3")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BUCKET", "uploads")
    s = CloudriftSettings()
    assert s.backend("storage").provider == "s3"
    assert s.backend("storage").factory_options() == {"bucket": "uploads"}


def test_env_vars_build_named_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CLOUDRIFT_STORAGE__BACKENDS__AVATARS__PROVIDER`` defines a named backend."""
    monkeypatch.setenv("CLOUDRIFT_STORAGE__DEFAULT", "primary")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BACKENDS__PRIMARY__PROVIDER", "memory")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BACKENDS__AVATARS__PROVIDER", "local")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BACKENDS__AVATARS__ROOT_DIR", "/srv/avatars")
    s = CloudriftSettings()
    assert s.default_name("storage") == "primary"
    assert s.backend("storage", "avatars").factory_options() == {"root_dir": "/srv/avatars"}


def test_env_numbers_and_booleans_are_typed_but_secrets_stay_strings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An env value spelling an int/bool reaches the factory typed; a password stays text."""
    monkeypatch.setenv("CLOUDRIFT_CACHE__PROVIDER", "redis")
    monkeypatch.setenv("CLOUDRIFT_CACHE__PORT", "6380")
    monkeypatch.setenv("CLOUDRIFT_CACHE__SSL", "true")
    monkeypatch.setenv("CLOUDRIFT_CACHE__PASSWORD", "12345")
    monkeypatch.setenv("CLOUDRIFT_VERIFY_ON_STARTUP", "1")
    s = CloudriftSettings()
    options = s.backend("cache").factory_options()
    assert options == {"port": 6380, "ssl": True, "password": "12345"}
    assert s.verify_on_startup is True


def test_misspelt_env_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CLOUDRIFT_STORAG__PROVIDER`` is an error, not a silently ignored variable."""
    monkeypatch.setenv("CLOUDRIFT_STORAG__PROVIDER", "s3")
    with pytest.raises(ConfigurationError, match="CLOUDRIFT_STORAG__PROVIDER"):
        CloudriftSettings()


def test_tooling_env_vars_without_nesting_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat CLOUDRIFT_* variable used by tooling (CLOUDRIFT_REDIS_SERVER) is not a setting."""
    monkeypatch.setenv("CLOUDRIFT_REDIS_SERVER", "/usr/bin/redis-server")
    assert CloudriftSettings().storage is None


def test_keywords_beat_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit keywords win over the environment."""
    monkeypatch.setenv("CLOUDRIFT_ENVIRONMENT", "staging")
    assert CloudriftSettings(environment="test").environment == "test"
    assert CloudriftSettings().environment == "staging"


YAML = """
environment: ${APP_ENV:-development}
storage:
  default: primary
  backends:
    primary:
      provider: s3
      bucket: ${BUCKET}
      aws_secret_access_key: ${AWS_SECRET}
    avatars:
      provider: local
      root_dir: ${AVATAR_DIR:-/var/avatars}
cache:
  provider: redis
  auth_method: from_credentials
  host: ${REDIS_HOST:-localhost}
  port: ${REDIS_PORT:-6379}
"""


def test_yaml_with_interpolation_and_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``${VAR}`` reads the environment; ``${VAR:-default}`` falls back; numbers are typed."""
    path = tmp_path / "cloudrift.yaml"
    path.write_text(YAML)
    monkeypatch.setenv("BUCKET", "prod-bucket")
    monkeypatch.setenv("AWS_SECRET", "from-env-secret")
    s = CloudriftSettings.from_yaml(path)
    assert s.environment == "development"
    primary = s.backend("storage", "primary").factory_options()
    assert primary == {"bucket": "prod-bucket", "aws_secret_access_key": "from-env-secret"}
    assert s.backend("storage", "avatars").factory_options() == {"root_dir": "/var/avatars"}
    assert s.backend("cache").factory_options() == {"host": "localhost", "port": 6379}
    assert "from-env-secret" not in repr(s)


def test_yaml_named_by_cloudrift_config_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CLOUDRIFT_CONFIG=path`` loads the file; env vars still override its values."""
    path = tmp_path / "c.yaml"
    path.write_text("storage:\n  provider: s3\n  bucket: from-yaml\n  region: eu-west-1\n")
    monkeypatch.setenv("CLOUDRIFT_CONFIG", str(path))
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BUCKET", "from-env")
    options = CloudriftSettings().backend("storage").factory_options()
    assert options == {"bucket": "from-env", "region": "eu-west-1"}


def test_yaml_missing_variable_names_path_and_variable(tmp_path: Path) -> None:
    """An unset ``${VAR}`` without default names the YAML path and the variable."""
    path = tmp_path / "c.yaml"
    path.write_text("storage:\n  provider: s3\n  bucket: ${NO_SUCH_BUCKET_VAR}\n")
    with pytest.raises(ConfigurationError, match=r"storage\.bucket: environment variable "):
        CloudriftSettings.from_yaml(path)


def test_yaml_unknown_key_names_the_path(tmp_path: Path) -> None:
    """Unknown keys in the file fail naming their path."""
    path = tmp_path / "c.yaml"
    path.write_text("storage:\n  provider: memory\nemial:\n  provider: memory\n")
    with pytest.raises(ConfigurationError, match="emial: unknown setting"):
        CloudriftSettings.from_yaml(path)


def test_yaml_syntax_error_does_not_quote_the_line(tmp_path: Path) -> None:
    """A YAML syntax error gives the position, never the line (it may hold a secret)."""
    path = tmp_path / "c.yaml"
    path.write_text("storage:\n  password: 'hunter2-secret\n  provider: [\n")
    with pytest.raises(ConfigurationError, match="not valid YAML") as caught:
        CloudriftSettings.from_yaml(path)
    assert "hunter2" not in str(caught.value)


def test_yaml_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    """The file's root must be a mapping of sections."""
    path = tmp_path / "c.yaml"
    path.write_text("- storage\n")
    with pytest.raises(ConfigurationError, match="root of a cloudrift settings file"):
        load_yaml(path)


def test_missing_yaml_file_is_a_configuration_error(tmp_path: Path) -> None:
    """A path that does not exist says which file could not be read."""
    with pytest.raises(ConfigurationError, match="cannot read the cloudrift settings file"):
        CloudriftSettings.from_yaml(tmp_path / "absent.yaml")


def test_interpolation_rules() -> None:
    """Shell-like rules: default on unset or empty, ``$${`` escapes, bad syntax refused."""
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("x${A}y", env) == "x1y"
    assert interpolate("${B:-two}", env) == "two"
    assert interpolate("${EMPTY:-d}", env) == "d"
    assert interpolate("${EMPTY}", env) == ""
    assert interpolate("$${A}", env) == "${A}"
    with pytest.raises(ConfigurationError, match="malformed"):
        interpolate("${not valid}", env)


def test_interpolated_value_cannot_inject_yaml(tmp_path: Path) -> None:
    """A variable's text stays one string even if it looks like YAML structure."""
    path = tmp_path / "c.yaml"
    path.write_text("storage:\n  provider: memory\n  note: ${INJECT}\n")
    data = load_yaml(path, {"INJECT": "x\n  provider: s3"})
    assert data["storage"] == {"provider": "memory", "note": "x\n  provider: s3"}


def test_ambient_cloud_env_vars_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_* / AZURE_* variables never leak into cloudrift's settings."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAAMBIENT")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "ambient-secret")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__PROVIDER", "s3")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BUCKET", "b")
    assert CloudriftSettings().backend("storage").factory_options() == {"bucket": "b"}


def test_empty_env_credential_is_refused_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exported-but-empty credential fails loudly instead of selecting another auth path."""
    monkeypatch.setenv("CLOUDRIFT_STORAGE__PROVIDER", "s3")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BUCKET", "b")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__AWS_ACCESS_KEY_ID", "")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__AWS_SECRET_ACCESS_KEY", "")
    settings = CloudriftSettings()
    with pytest.raises(ConfigurationError, match=r"storage\.backends\.default: .*empty"):
        settings.open_backend("storage")
