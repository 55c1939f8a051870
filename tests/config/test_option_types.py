"""A value becomes the type of the option it lands in, never what its text looks like."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict, Unpack

import pytest
from pydantic import SecretStr

from cloudrift.config import CloudriftSettings
from cloudrift.config._convert import convert_text, provider_options
from cloudrift.core.exceptions import ConfigurationError

# The redis cache declares one option of each kind: host: str | None, port: int,
# password: str | Secret | None, ssl: bool, socket_timeout: float,
# max_connections: int | None, username: str | None.
REDIS = {"CLOUDRIFT_CACHE__PROVIDER": "redis", "CLOUDRIFT_CACHE__AUTH_METHOD": "from_credentials"}


class _PoolOptions(TypedDict, total=False):
    max_pool_connections: int
    verify: bool


def _yaml(tmp_path: Path, text: str) -> CloudriftSettings:
    path = tmp_path / "cloudrift.yaml"
    path.write_text(text)
    return CloudriftSettings.from_yaml(path)


def test_all_digit_bucket_from_env_stays_a_string(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CLOUDRIFT_STORAGE__BUCKET=123`` is the bucket "123": S3 buckets may be all digits."""
    monkeypatch.setenv("CLOUDRIFT_STORAGE__PROVIDER", "s3")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__BUCKET", "123")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__MAX_POOL_CONNECTIONS", "50")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__CONNECT_TIMEOUT", "2.5")
    options = CloudriftSettings().backend("storage").factory_options()
    assert options == {"bucket": "123", "max_pool_connections": 50, "connect_timeout": 2.5}


def test_env_text_takes_each_declared_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """str, int, float, bool and optional options each get their own type from env text."""
    for name, value in REDIS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLOUDRIFT_CACHE__HOST", "10")
    monkeypatch.setenv("CLOUDRIFT_CACHE__PORT", "6390")
    monkeypatch.setenv("CLOUDRIFT_CACHE__SSL", "false")
    monkeypatch.setenv("CLOUDRIFT_CACHE__SOCKET_TIMEOUT", "2")
    monkeypatch.setenv("CLOUDRIFT_CACHE__MAX_CONNECTIONS", "12")
    monkeypatch.setenv("CLOUDRIFT_CACHE__USERNAME", "2024")
    monkeypatch.setenv("CLOUDRIFT_CACHE__PASSWORD", "true")
    options = CloudriftSettings().backend("cache").factory_options()
    assert options == {
        "host": "10",
        "port": 6390,
        "ssl": False,
        "socket_timeout": 2.0,
        "max_connections": 12,
        "username": "2024",
        "password": "true",
    }
    assert type(options["socket_timeout"]) is float


def test_unquoted_yaml_literals_keep_their_text_for_string_options(tmp_path: Path) -> None:
    """``bucket: 2024`` / ``0123`` / ``1.10`` / ``true`` are those strings, exactly as written."""
    s = _yaml(
        tmp_path,
        "storage:\n  provider: s3\n  bucket: 0123\n  region: 1.10\n  sse: 2024-01-01\n"
        "cache:\n  provider: redis\n  auth_method: from_credentials\n"
        "  password: true\n  username: yes\n  host: 12:30\n",
    )
    assert s.backend("storage").factory_options() == {
        "bucket": "0123",
        "region": "1.10",
        "sse": "2024-01-01",
    }
    assert s.backend("cache").factory_options() == {
        "password": "true",
        "username": "yes",
        "host": "12:30",
    }
    assert isinstance(s.backend("cache").options["password"], SecretStr)


def test_unquoted_yaml_literals_become_numbers_and_booleans_where_declared(
    tmp_path: Path,
) -> None:
    """``port: 6390``, ``ssl: on``, ``socket_timeout: 2``, ``max_connections: null`` fit."""
    s = _yaml(
        tmp_path,
        "cache:\n  provider: redis\n  auth_method: from_credentials\n  port: 6390\n"
        "  ssl: on\n  socket_timeout: 2\n  max_connections: null\n  username: ~\n",
    )
    options = s.backend("cache").factory_options()
    assert options == {
        "port": 6390,
        "ssl": True,
        "socket_timeout": 2.0,
        "max_connections": None,
        "username": None,
    }
    assert type(options["socket_timeout"]) is float


def test_quoted_yaml_values_stay_strings(tmp_path: Path) -> None:
    """A quoted value is text: a str option keeps it; an int option still reads the number."""
    s = _yaml(
        tmp_path,
        'storage:\n  provider: s3\n  bucket: "2024"\n  max_pool_connections: "8"\n'
        "cache:\n  provider: redis\n  auth_method: from_credentials\n  password: 'false'\n",
    )
    assert s.backend("storage").factory_options() == {"bucket": "2024", "max_pool_connections": 8}
    assert s.backend("cache").factory_options() == {"password": "false"}


@pytest.mark.parametrize("quote", ['"', ""], ids=["quoted", "unquoted"])
def test_interpolated_values_take_the_option_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quote: str
) -> None:
    """``bucket: "${B}"`` with B=2024 is "2024"; ``port: ${P}`` with P=6390 is 6390."""
    monkeypatch.setenv("B", "2024")
    monkeypatch.setenv("P", "6390")
    monkeypatch.setenv("S", "true")
    monkeypatch.setenv("PW", "12345")
    q = quote
    s = _yaml(
        tmp_path,
        f"storage:\n  provider: s3\n  bucket: {q}${{B}}{q}\n"
        f"cache:\n  provider: redis\n  auth_method: from_credentials\n"
        f"  port: {q}${{P}}{q}\n  ssl: {q}${{S}}{q}\n  password: {q}${{PW}}{q}\n"
        f"  socket_timeout: {q}${{T:-1.5}}{q}\n",
    )
    assert s.backend("storage").factory_options() == {"bucket": "2024"}
    assert s.backend("cache").factory_options() == {
        "port": 6390,
        "ssl": True,
        "password": "12345",
        "socket_timeout": 1.5,
    }


async def test_an_all_digit_value_reaches_the_backend_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: ``CLOUDRIFT_STORAGE__ROOT_DIR=2024`` builds a local store rooted at "2024"."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLOUDRIFT_STORAGE__PROVIDER", "local")
    monkeypatch.setenv("CLOUDRIFT_STORAGE__ROOT_DIR", "2024")
    storage = CloudriftSettings().open_backend("storage")
    try:
        await storage.upload("a.txt", b"x")
        assert (tmp_path / "2024" / "a.txt").read_bytes() == b"x"
    finally:
        await storage.close()


def test_text_that_cannot_convert_names_its_path_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``max_pool_connections: lots`` fails naming the option (and the env var that set it)."""
    s = _yaml(tmp_path, "storage:\n  provider: s3\n  bucket: b\n  max_pool_connections: lots\n")
    with pytest.raises(
        ConfigurationError,
        match=r"storage\.backends\.default\.max_pool_connections: Input should be a valid integer",
    ):
        s.open_backend("storage")
    monkeypatch.setenv("CLOUDRIFT_CACHE__PROVIDER", "redis")
    monkeypatch.setenv("CLOUDRIFT_CACHE__SSL", "maybe")
    with pytest.raises(
        ConfigurationError,
        match=r"cache\.backends\.default\.ssl: Input should be a valid boolean.*"
        r"set by environment variable CLOUDRIFT_CACHE__SSL",
    ):
        CloudriftSettings().open_backend("cache")


def test_python_values_are_not_converted() -> None:
    """Keywords from Python keep their type: ``bucket=123`` is refused, not turned into text."""
    s = CloudriftSettings(storage={"provider": "s3", "bucket": 123})
    assert s.backend("storage").factory_options() == {"bucket": 123}
    with pytest.raises(ConfigurationError, match=r"bucket: Input should be a valid string"):
        s.open_backend("storage")


def test_mapping_option_from_env_is_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mapping option (``driver_options``) given as env text is read as JSON."""
    monkeypatch.setenv("CLOUDRIFT_DOCUMENT__PROVIDER", "mongodb")
    monkeypatch.setenv("CLOUDRIFT_DOCUMENT__URI", "mongodb://db:27017/")
    monkeypatch.setenv("CLOUDRIFT_DOCUMENT__DRIVER_OPTIONS", '{"appname": "x", "maxPoolSize": 5}')
    options = CloudriftSettings().backend("document").factory_options()
    assert options["driver_options"] == {"appname": "x", "maxPoolSize": 5}


def test_literals_inside_a_mapping_keep_yaml_types(tmp_path: Path) -> None:
    """Inside an option that is itself a mapping, YAML's own reading of a literal is kept."""
    s = _yaml(
        tmp_path,
        "document:\n  provider: mongodb\n  uri: mongodb://db/\n"
        "  driver_options:\n    maxPoolSize: 5\n    retryReads: false\n",
    )
    options = s.backend("document").factory_options()
    assert options["driver_options"] == {"maxPoolSize": 5, "retryReads": False}


def test_top_level_settings_read_yaml_text_by_their_type(tmp_path: Path) -> None:
    """``environment: 2024`` is the string "2024"; ``verify_on_startup: yes`` is True."""
    s = _yaml(tmp_path, "environment: 2024\nverify_on_startup: yes\n")
    assert s.environment == "2024" and type(s.environment) is str
    assert s.verify_on_startup is True


def test_unresolvable_provider_keeps_yaml_reading_and_env_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the provider is unknown no type is known: YAML literals keep YAML's value."""
    monkeypatch.setenv("CLOUDRIFT_QUEUE__RETRIES", "3")
    s = _yaml(tmp_path, "queue:\n  provider: kafka\n  partitions: 3\n  secret_token: 123\n")
    assert s.backend("queue").factory_options() == {
        "partitions": 3,
        "secret_token": "123",
        "retries": "3",
    }


def test_yaml_boolean_never_becomes_a_number(tmp_path: Path) -> None:
    """``max_pool_connections: yes`` is refused, not read as 1."""
    s = _yaml(tmp_path, "storage:\n  provider: s3\n  bucket: b\n  max_pool_connections: yes\n")
    with pytest.raises(ConfigurationError, match=r"max_pool_connections: Input should be"):
        s.open_backend("storage")


def test_options_a_managed_cache_forwards_are_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    """ElastiCache hands its ``**options`` to the Redis builder; they are typed by it."""
    monkeypatch.setenv("CLOUDRIFT_CACHE__PROVIDER", "elasticache")
    monkeypatch.setenv("CLOUDRIFT_CACHE__HOST", "2024")
    monkeypatch.setenv("CLOUDRIFT_CACHE__PORT", "6380")
    monkeypatch.setenv("CLOUDRIFT_CACHE__SSL", "false")
    monkeypatch.setenv("CLOUDRIFT_CACHE__SOCKET_TIMEOUT", "3")
    options = CloudriftSettings().backend("cache").factory_options()
    assert options == {"host": "2024", "port": 6380, "ssl": False, "socket_timeout": 3.0}
    assert type(options["socket_timeout"]) is float


def test_unpacked_typed_dict_options_are_read() -> None:
    """A provider declaring ``**options: Unpack[SomeOptions]`` has those options typed."""

    def build(*, bucket: str, **options: Unpack[_PoolOptions]) -> None:
        """A provider whose pool options come from a shared TypedDict."""

    spec = provider_options("storage", "fake", build, frozenset())
    assert spec.types == {"bucket": str, "max_pool_connections": int, "verify": bool}
    assert spec.required == {"bucket"} and not spec.takes_any
    assert convert_text("max_pool_connections", "7", int, declared=True) == 7
