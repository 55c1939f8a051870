"""A misspelt name is reported with the likely intended one, wherever it was written."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import ConfigurationError


def test_typo_in_env_var_next_to_missing_option_suggests_the_env_var(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``CLOUDRIFT_STORAGE__BUCKT`` set and bucket missing: did you mean ..._BUCKET?"""
    monkeypatch.setenv("CLOUDRIFT_STORAGE__PROVIDER", "s3")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BUCKT", "uploads")
    with pytest.raises(ConfigurationError) as caught:
        CloudriftSettings().open_backend("storage")
    text = caught.value.message
    assert (
        "storage.backends.default.bucket: required option is missing "
        "(CLOUDRIFT_STORAGE__BUCKT is set: did you mean CLOUDRIFT_STORAGE__BUCKET?)"
    ) in text
    assert "set by environment variable CLOUDRIFT_STORAGE__BUCKT" in text


def test_typo_in_a_named_backend_env_var_keeps_its_full_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The suggestion for a named backend is the whole corrected variable name."""
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BACKENDS__AVATARS__PROVIDER", "local")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BACKENDS__AVATARS__ROOT_DIRR", "/srv")
    with pytest.raises(
        ConfigurationError,
        match="did you mean CLOUDRIFT_STORAGE__BACKENDS__AVATARS__ROOT_DIR\\?",
    ):
        CloudriftSettings().open_backend("storage", "avatars")


def test_typo_in_yaml_next_to_missing_option_suggests_the_key(tmp_path: Path) -> None:
    """In YAML the same mistake names the key: 'buckt' (did you mean 'bucket'?)."""
    path = tmp_path / "c.yaml"
    path.write_text("storage:\n  provider: s3\n  buckt: uploads\n")
    with pytest.raises(ConfigurationError) as caught:
        CloudriftSettings.from_yaml(path).open_backend("storage")
    text = caught.value.message
    assert "storage.backends.default.bucket: required option is missing ('buckt' is set" in text
    assert "unknown option(s) for the 's3' storage provider: 'buckt' (did you mean 'bucket'?)" in (
        text
    )


def test_typo_in_a_secret_file_name_suggests_the_file_name(tmp_path: Path) -> None:
    """A misspelt secret file is reported by its file name, with the corrected one."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "cloudrift_storage__provider").write_text("s3")
    (folder / "cloudrift_storage__bucket").write_text("b")
    (folder / "cloudrift_storage__aws_secret_acess_key").write_text("x")
    with pytest.raises(
        ConfigurationError,
        match=r"secrets file cloudrift_storage__aws_secret_acess_key; "
        r"did you mean cloudrift_storage__aws_secret_access_key\?",
    ):
        CloudriftSettings(_secrets_dir=folder).open_backend("storage")


def test_misspelt_section_in_env_suggests_the_section(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CLOUDRIFT_STORAGEE__PROVIDER`` is refused at once with the corrected name."""
    monkeypatch.setenv("CLOUDRIFT_STORAGEE__PROVIDER", "s3")
    with pytest.raises(ConfigurationError, match="did you mean CLOUDRIFT_STORAGE__PROVIDER\\?"):
        CloudriftSettings()


def test_misspelt_top_level_and_section_keys_suggest_the_valid_one(tmp_path: Path) -> None:
    """YAML ``emial:`` and ``storage.defualt`` each get their closest valid name."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "emial:\n  provider: memory\nstorage:\n  default: a\n  defualt: b\n  backends:\n"
        "    a: {provider: memory}\n    b: {provider: memory}\n"
    )
    with pytest.raises(ConfigurationError) as caught:
        CloudriftSettings.from_yaml(path)
    assert "emial: unknown setting; did you mean email?" in caught.value.message
    assert "storage.defualt: unknown setting; did you mean default?" in caught.value.message


def test_option_set_by_keyword_is_not_blamed_on_the_env_var(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When a keyword overrides an env var, an error about it does not name the env var."""
    monkeypatch.setenv("CLOUDRIFT_STORAGE__PROVIDER", "s3")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BUCKET", "b")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__MAX_POOL_CONNECTIONS", "8")
    s = CloudriftSettings(storage={"max_pool_connections": "many"})
    with pytest.raises(ConfigurationError) as caught:
        s.open_backend("storage")
    assert "storage.backends.default.max_pool_connections: Input should be" in str(caught.value)
    assert "CLOUDRIFT_STORAGE__MAX_POOL_CONNECTIONS" not in str(caught.value)
