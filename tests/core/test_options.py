"""Shared option groups: one declaration, read by the factory like written-out parameters."""

from __future__ import annotations

import importlib
import typing
from typing import Any

import pytest

from cloudrift.core.aws import AwsAuthOptions
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.factory import (
    ProviderSpec,
    build_provider,
    check_options,
    provider_options,
    resolve_provider,
)
from cloudrift.core.redis import RedisConnectionOptions, RedisServerOptions
from cloudrift.core.secrets import Secret

CATEGORIES = ("storage", "messaging", "document", "cache", "email", "kv")


def _tables() -> list[tuple[str, str, ProviderSpec]]:
    rows = []
    for category in CATEGORIES:
        table = importlib.import_module(f"cloudrift.{category}").PROVIDERS
        rows += [(category, name, spec) for name, spec in sorted(table.items())]
    return rows


def _string_options() -> list[tuple[str, str, str]]:
    """(category, provider, option) for every str / Secret option of every provider."""
    rows = []
    for category, name, spec in _tables():
        target = resolve_provider(category, name, {name: spec})
        options, _ = provider_options(target)
        for option, info in sorted(options.items()):
            args = set(typing.get_args(info.annotation)) or {info.annotation}
            if str in args and args <= {str, Secret, type(None)}:
                rows.append((category, name, option))
    return rows


STRING_OPTIONS = _string_options()


def test_every_provider_has_string_options_to_check() -> None:
    """The table below covers the credential options of every AWS provider (sanity)."""
    names = {(p, o) for _, p, o in STRING_OPTIONS}
    for provider in ("s3", "sqs", "ses", "elasticache"):
        assert (provider, "aws_secret_access_key") in names
    assert ("redis", "password") in {(p, o) for c, p, o in STRING_OPTIONS if c == "cache"}
    assert len(STRING_OPTIONS) > 60


@pytest.mark.parametrize(("category", "provider", "option"), STRING_OPTIONS)
def test_non_str_credential_or_name_is_a_configuration_error(
    category: str, provider: str, option: str
) -> None:
    """Every str option given a number raises ConfigurationError naming it, never TypeError."""
    table = importlib.import_module(f"cloudrift.{category}").PROVIDERS
    target = resolve_provider(category, provider, table)
    with pytest.raises(ConfigurationError, match=rf"{option} \(got int\)") as info:
        check_options(f"the {provider!r} {category} provider", target, {option: 12345})
    assert "12345" not in str(info.value)  # the value may be a secret: never shown


@pytest.mark.parametrize("provider", ["s3", "sqs", "ses"])
def test_aws_secret_access_key_as_int_fails_at_build(provider: str) -> None:
    """aws_secret_access_key=12345 raises ConfigurationError naming the option (was TypeError)."""
    category = {"s3": "storage", "sqs": "messaging", "ses": "email"}[provider]
    table = importlib.import_module(f"cloudrift.{category}").PROVIDERS
    options: dict[str, Any] = {
        "s3": {"bucket": "b"},
        "sqs": {"queue_url": "https://sqs.us-east-1.amazonaws.com/1/q"},
        "ses": {"region": "us-east-1"},
    }[provider]
    with pytest.raises(ConfigurationError, match="aws_secret_access_key"):
        build_provider(
            category,
            provider,
            table,
            {**options, "aws_access_key_id": "AKIA", "aws_secret_access_key": 12345},
        )


def test_direct_construction_checks_credential_types_too() -> None:
    """Building S3Storage directly (no factory) also names the non-str credential."""
    from cloudrift.storage.s3 import S3Storage

    with pytest.raises(ConfigurationError, match=r"aws_secret_access_key \(got int\)"):
        S3Storage(bucket="b", aws_access_key_id="AKIA", aws_secret_access_key=12345)  # type: ignore[arg-type]


def test_secret_str_from_settings_is_accepted() -> None:
    """pydantic's SecretStr (what settings hold) passes the str check."""
    from pydantic import SecretStr

    from cloudrift.storage.s3 import S3Storage

    check_options("s3", S3Storage, {"aws_secret_access_key": SecretStr("x")})


@pytest.mark.parametrize(
    ("category", "provider", "typo", "right"),
    [
        ("storage", "s3", "aws_secret_acces_key", "aws_secret_access_key"),
        ("messaging", "sqs", "role_arm", "role_arn"),
        ("email", "ses", "profile_nme", "profile_name"),
        ("cache", "elasticache", "aws_access_key", "aws_access_key_id"),
        ("cache", "elasticache", "socket_timout", "socket_timeout"),
        ("cache", "azure_redis", "ssl_ca_cert", "ssl_ca_certs"),
        ("messaging", "redis", "max_atempts", "max_attempts"),
    ],
)
def test_misspelled_group_option_is_refused_with_a_suggestion(
    category: str, provider: str, typo: str, right: str
) -> None:
    """An option of a shared group, misspelled, is refused naming the right one."""
    table = importlib.import_module(f"cloudrift.{category}").PROVIDERS
    with pytest.raises(ConfigurationError, match=f"did you mean '{right}'"):
        build_provider(category, provider, table, {typo: "x"})


def test_group_options_are_introspectable_with_their_types() -> None:
    """provider_options() expands **options: Unpack[...] into names and resolved types."""
    from cloudrift.cache.elasticache import ElastiCache
    from cloudrift.messaging.redis_streams import RedisStreamQueue

    options, takes_any = provider_options(ElastiCache)
    assert not takes_any
    assert options["socket_timeout"].annotation is float
    assert options["port"].annotation == int | None
    assert options["aws_secret_access_key"].annotation == str | Secret | None
    assert not options["max_attempts"].required
    queue_options, _ = provider_options(RedisStreamQueue)
    assert set(typing.get_type_hints(RedisConnectionOptions)) <= set(queue_options)
    assert queue_options["queue_name"].required


def test_groups_are_declared_once() -> None:
    """The server group extends the connection group; the AWS group lists every key option."""
    assert set(typing.get_type_hints(RedisConnectionOptions)) < set(
        typing.get_type_hints(RedisServerOptions)
    )
    assert {"aws_access_key_id", "role_arn", "sts_endpoint_url"} <= set(
        typing.get_type_hints(AwsAuthOptions)
    )


@pytest.mark.parametrize(
    ("category", "provider", "options", "old"),
    [
        ("messaging", "azure_bus", {"queue_name": "q", "retry_total": 0}, "retry_total"),
        ("messaging", "redis", {"queue_name": "q", "retry_attempts": 0}, "retry_attempts"),
        ("cache", "redis", {"host": "h", "retry_attempts": 1}, "retry_attempts"),
        ("cache", "elasticache", {"host": "h", "retry_attempts": 1}, "retry_attempts"),
    ],
)
def test_old_retry_names_are_refused_naming_max_attempts(
    category: str, provider: str, options: dict[str, Any], old: str
) -> None:
    """retry_total / retry_attempts raise ConfigurationError saying they are now max_attempts."""
    table = importlib.import_module(f"cloudrift.{category}").PROVIDERS
    with pytest.raises(ConfigurationError, match=f"'{old}' is now 'max_attempts'"):
        build_provider(category, provider, table, options)


def test_max_attempts_is_the_one_retry_option_name() -> None:
    """Every provider with a retry option calls it max_attempts; none keeps an old name."""
    with_retry = []
    for category, name, spec in _tables():
        options, _ = provider_options(resolve_provider(category, name, {name: spec}))
        assert not {"retry_attempts", "retry_total"} & set(options), name
        if "max_attempts" in options:
            with_retry.append(name)
    assert {"s3", "sqs", "ses", "azure_bus", "redis", "elasticache", "azure_redis"} <= set(
        with_retry
    )


AWS_REQUIRED: dict[str, tuple[str, dict[str, Any]]] = {
    "s3": ("storage", {"bucket": "b"}),
    "sqs": ("messaging", {"queue_url": "https://sqs.us-east-1.amazonaws.com/1/q"}),
    "ses": ("email", {"region": "us-east-1"}),
}


@pytest.mark.parametrize("provider", sorted(AWS_REQUIRED))
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", True),
        ("max_attempts", "3"),
        ("max_pool_connections", 0),
        ("connect_timeout", 0),
        ("read_timeout", -1.0),
    ],
)
def test_aws_client_options_are_checked_alike(provider: str, option: str, value: object) -> None:
    """s3, sqs and ses refuse the same bad pool, timeout and max_attempts values at build,
    naming the option (sqs and s3 took max_attempts=0 until the first call)."""
    category, required = AWS_REQUIRED[provider]
    table = importlib.import_module(f"cloudrift.{category}").PROVIDERS
    with pytest.raises(ConfigurationError, match=option):
        build_provider(category, provider, table, {**required, option: value})
