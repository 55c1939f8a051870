"""pydantic-settings' conventions hold: ``.env`` files, ``_env_file=``, ``secrets_dir`` and
their precedence (keywords > env vars > .env > secret files > YAML)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import ConfigurationError


def _secrets(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir(exist_ok=True)
    for name, value in files.items():
        (folder / name).write_text(value + "\n")  # mounted secrets often end in a newline
    return folder


def test_env_file_keyword_reads_nested_names(tmp_path: Path) -> None:
    """``_env_file=`` reads ``CLOUDRIFT_CACHE__PORT`` lines; values are typed by the option."""
    env = tmp_path / ".env"
    env.write_text(
        "CLOUDRIFT_CACHE__PROVIDER=redis\n"
        "CLOUDRIFT_CACHE__AUTH_METHOD=from_credentials\n"
        "CLOUDRIFT_CACHE__PORT=6391\n"
        "CLOUDRIFT_CACHE__PASSWORD=12345\n"
        "CLOUDRIFT_STORAGE__BACKENDS__AVATARS__PROVIDER=local\n"
        "CLOUDRIFT_STORAGE__BACKENDS__AVATARS__ROOT_DIR=2024\n"
    )
    s = CloudriftSettings(_env_file=env)
    assert s.backend("cache").auth_method == "from_credentials"
    assert s.backend("cache").factory_options() == {"port": 6391, "password": "12345"}
    assert s.backend("storage", "avatars").factory_options() == {"root_dir": "2024"}


def test_env_file_shared_with_the_app_is_fine(tmp_path: Path) -> None:
    """Lines that are not cloudrift settings (``DATABASE_URL``, tooling vars) are ignored."""
    env = tmp_path / ".env"
    env.write_text(
        "DATABASE_URL=postgres://app@db/app\nDEBUG=1\nCLOUDRIFT_REDIS_SERVER=/usr/bin/x\n"
        "CLOUDRIFT_EMAIL__PROVIDER=memory\n"
    )
    s = CloudriftSettings(_env_file=env)
    assert s.backend("email").provider == "memory"
    assert s.storage is None


def test_env_file_in_a_subclass_model_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app's settings class may name its ``.env`` in ``model_config`` as usual."""
    (tmp_path / ".env").write_text("CLOUDRIFT_QUEUE__PROVIDER=memory\n")
    monkeypatch.chdir(tmp_path)

    class AppSettings(CloudriftSettings):
        model_config = SettingsConfigDict(env_file=".env")

    assert AppSettings().backend("queue").provider == "memory"


def test_misspelt_section_in_env_file_is_refused(tmp_path: Path) -> None:
    """A ``.env`` line ``CLOUDRIFT_STORAG__PROVIDER`` fails naming it, as in the environment."""
    env = tmp_path / ".env"
    env.write_text("CLOUDRIFT_STORAG__PROVIDER=memory\n")
    with pytest.raises(
        ConfigurationError,
        match=r"CLOUDRIFT_STORAG__PROVIDER \(\.env file entry\); "
        r"did you mean CLOUDRIFT_STORAGE__PROVIDER\?",
    ):
        CloudriftSettings(_env_file=env)


def test_secrets_dir_fills_nested_options(tmp_path: Path) -> None:
    """Docker/Kubernetes secret files (``cloudrift_storage__aws_secret_access_key``) are read."""
    folder = _secrets(
        tmp_path,
        cloudrift_storage__provider="s3",
        cloudrift_storage__bucket="2024",
        cloudrift_storage__aws_access_key_id="AKIAREAL",
        cloudrift_storage__aws_secret_access_key="s3cr3t-from-file",
        cloudrift_storage__max_pool_connections="16",
    )
    s = CloudriftSettings(_secrets_dir=folder)
    config = s.backend("storage")
    assert config.provider == "s3"
    assert isinstance(config.options["aws_secret_access_key"], SecretStr)
    assert config.factory_options() == {
        "bucket": "2024",
        "aws_access_key_id": "AKIAREAL",
        "aws_secret_access_key": "s3cr3t-from-file",
        "max_pool_connections": 16,
    }
    assert "s3cr3t-from-file" not in repr(s)


def test_secrets_dir_in_model_config_and_named_backends(tmp_path: Path) -> None:
    """``secrets_dir`` in ``model_config`` works, down to a named backend's option."""
    folder = _secrets(tmp_path, CLOUDRIFT_CACHE__BACKENDS__SESSIONS__PASSWORD="pw-from-file")

    class AppSettings(CloudriftSettings):
        model_config = SettingsConfigDict(secrets_dir=str(folder))

    s = AppSettings(cache={"backends": {"sessions": {"provider": "redis", "host": "h"}}})
    assert s.backend("cache", "sessions").factory_options() == {
        "host": "h",
        "password": "pw-from-file",
    }


def test_misspelt_secret_file_is_refused(tmp_path: Path) -> None:
    """A secret file whose section is misspelt fails naming the file."""
    folder = _secrets(tmp_path, cloudrift_cahce__password="x")
    with pytest.raises(
        ConfigurationError,
        match=r"cloudrift_cahce__password \(secrets file\); did you mean cloudrift_cache__password",
    ):
        CloudriftSettings(_secrets_dir=folder)


def test_precedence_keywords_env_dotenv_secrets_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each source wins over every source below it, option by option."""
    options = ["bucket", "region", "endpoint_url", "profile_name", "role_arn"]
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("storage:\n  provider: s3\n" + "".join(f"  {o}: yaml\n" for o in options))
    folder = _secrets(tmp_path, **{f"cloudrift_storage__{o}": "secrets" for o in options[:4]})
    env = tmp_path / ".env"
    env.write_text("".join(f"CLOUDRIFT_STORAGE__{o.upper()}=dotenv\n" for o in options[:3]))
    for o in options[:2]:
        monkeypatch.setenv(f"CLOUDRIFT_STORAGE__{o.upper()}", "env")
    s = CloudriftSettings.from_yaml(
        yaml_file,
        storage={"bucket": "keyword"},
        _env_file=env,
        _secrets_dir=folder,
    )
    assert s.backend("storage").provider == "s3"
    assert s.backend("storage").factory_options() == {
        "bucket": "keyword",
        "region": "env",
        "endpoint_url": "dotenv",
        "profile_name": "secrets",
        "role_arn": "yaml",
    }


def test_yaml_file_in_model_config_is_interpolated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydantic-settings' ``yaml_file`` setting works too, with ``${VAR}`` interpolation."""
    path = tmp_path / "app.yaml"
    path.write_text("storage:\n  provider: local\n  root_dir: ${DATA_DIR:-./data}\n")
    monkeypatch.setenv("DATA_DIR", "/srv/data")

    class AppSettings(CloudriftSettings):
        model_config = SettingsConfigDict(yaml_file=str(path))

    assert AppSettings().backend("storage").factory_options() == {"root_dir": "/srv/data"}


def test_unreadable_secrets_dir_is_a_configuration_error(tmp_path: Path) -> None:
    """A ``secrets_dir`` that is a file, not a folder, fails as a ConfigurationError."""
    not_a_dir = tmp_path / "secrets"
    not_a_dir.write_text("x")
    with pytest.raises(ConfigurationError, match="secrets_dir must reference a directory"):
        CloudriftSettings(_secrets_dir=not_a_dir)


def test_cloudrift_config_in_env_file_names_the_yaml(tmp_path: Path) -> None:
    """``CLOUDRIFT_CONFIG=cloudrift.yaml`` in the ``.env`` file loads that YAML file."""
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("queue:\n  provider: memory\n")
    env = tmp_path / ".env"
    env.write_text(f"CLOUDRIFT_CONFIG={yaml_file}\n")
    assert CloudriftSettings(_env_file=env).backend("queue").provider == "memory"
