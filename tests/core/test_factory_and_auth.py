"""Factories dispatch from a table, reject unknown names, and pick auth methods strictly."""

from __future__ import annotations

import pytest

from cloudrift.core.auth import auth_method, select_auth
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.factory import ProviderSpec, build_provider
from cloudrift.core.retry import RetryPolicy, retry_async


class Dummy:
    def __init__(self, *, bucket: str, region: str | None = None) -> None:
        self.bucket, self.region = bucket, region


TABLE = {
    "dummy": ProviderSpec(module=__name__, attr="Dummy"),
    "needs_sdk": ProviderSpec(
        module="nope", attr="X", extra="aws", requires=("cloudrift_no_such_sdk",)
    ),
}


def test_unknown_provider_lists_valid_ones() -> None:
    """An unknown provider names the valid choices and the nearest match."""
    with pytest.raises(ConfigurationError, match=r"valid providers: dummy, needs_sdk.*'dummy'"):
        build_provider("storage", "dumy", TABLE, {})


def test_misspelled_option_is_rejected_with_a_suggestion() -> None:
    """A typo in an option name fails instead of being swallowed."""
    with pytest.raises(ConfigurationError, match=r"'regoin' \(did you mean 'region'\?\)"):
        build_provider("storage", "dummy", TABLE, {"bucket": "b", "regoin": "x"})


def test_missing_sdk_names_the_extra_to_install() -> None:
    """A provider whose SDK is absent tells the user the exact pip command."""
    with pytest.raises(ConfigurationError, match=r'pip install "cloudrift\[aws\]"'):
        build_provider("storage", "needs_sdk", TABLE, {})


def test_missing_parent_package_of_a_dotted_requirement_names_the_extra() -> None:
    """A dotted requirement whose parent package is absent is reported, not a crash."""
    table = {
        "nested": ProviderSpec(
            module="nope", attr="X", extra="azure", requires=("cloudrift_no_such_pkg.identity",)
        )
    }
    with pytest.raises(ConfigurationError, match=r'pip install "cloudrift\[azure\]"'):
        build_provider("cache", "nested", table, {})


def test_build_passes_options_through() -> None:
    """Valid options reach the backend constructor."""
    built = build_provider("storage", "dummy", TABLE, {"bucket": "b", "region": "r"})
    assert (built.bucket, built.region) == ("b", "r")


METHODS = [
    auth_method("default chain"),
    auth_method("static keys", ["aws_access_key_id", "aws_secret_access_key"], ["session_token"]),
    auth_method("profile", ["profile_name"]),
    auth_method("assume role", ["role_arn"], ["external_id"]),
]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, "default chain"),
        ({"aws_access_key_id": "a", "aws_secret_access_key": "b"}, "static keys"),
        ({"profile_name": "dev", "bucket": "ignored"}, "profile"),
        ({"role_arn": "arn:x", "external_id": "e"}, "assume role"),
        ({"profile_name": None}, "default chain"),
    ],
)
def test_select_auth_picks_the_exact_method(given: dict[str, object], expected: str) -> None:
    """The method whose options match exactly is chosen."""
    assert select_auth("s3", given, METHODS) == expected


def test_select_auth_reports_missing_half_of_a_pair() -> None:
    """An access key without its secret says which option is missing."""
    with pytest.raises(ConfigurationError, match="missing aws_secret_access_key"):
        select_auth("s3", {"aws_access_key_id": "a"}, METHODS)


def test_select_auth_refuses_conflicting_methods() -> None:
    """Keys and a profile together are a conflict, not a silent choice."""
    with pytest.raises(ConfigurationError, match="conflicting"):
        select_auth(
            "s3",
            {"aws_access_key_id": "a", "aws_secret_access_key": "b", "profile_name": "p"},
            METHODS,
        )


def test_select_auth_refuses_empty_strings() -> None:
    """An empty env var is a mistake, never a silent switch to another method."""
    with pytest.raises(ConfigurationError, match="empty string"):
        select_auth("s3", {"aws_access_key_id": "", "aws_secret_access_key": ""}, METHODS)


async def test_retry_retries_only_what_it_is_told_to() -> None:
    """Transient errors are retried up to the limit; others propagate at once."""
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("blip")
        return "done"

    async def no_sleep(_: float) -> None:
        return None

    policy = RetryPolicy(attempts=3)
    is_conn = lambda e: isinstance(e, ConnectionError)  # noqa: E731
    assert await retry_async(flaky, policy=policy, retry_on=is_conn, sleep=no_sleep) == "done"
    calls = 0
    with pytest.raises(ConnectionError):
        await retry_async(flaky, policy=RetryPolicy(attempts=2), retry_on=is_conn, sleep=no_sleep)

    async def bad() -> None:
        raise ValueError("not transient")

    with pytest.raises(ValueError, match="not transient"):
        await retry_async(bad, policy=policy, retry_on=is_conn, sleep=no_sleep)
