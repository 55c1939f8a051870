"""The shared AWS plumbing: strict auth choice, one session per backend, refreshed roles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cloudrift.core.aws import (
    ASSUME_ROLE,
    AUTH_ERROR_CODES,
    DEFAULT_CHAIN,
    NOT_FOUND_ERROR_CODES,
    PROFILE,
    SNAKE_NAMES,
    STATIC_KEYS,
    THROTTLING_ERROR_CODES,
    WORD_NAMES,
    SyncAwsCredentials,
    aio_config,
    aws_auth_methods,
    aws_credentials,
    aws_session,
    client_error_details,
    connection_errors,
    credential_errors,
    data_loader,
)
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.secrets import MASK, Secret
from tests.servers.moto import MotoEndpoint

ROLE = "arn:aws:iam::123456789012:role/app"
SECRET = "very-secret-aws-key-value"


def _creds(**options: Any) -> Any:
    return aws_credentials("test", aws_auth_methods(), **options)


@pytest.fixture
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere: env, files, instance metadata."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


BOTO = ("aioboto3", "aiobotocore", "botocore", "boto3")
AWS_PROVIDERS = (
    "cloudrift.storage.s3",
    "cloudrift.messaging.sqs",
    "cloudrift.email.ses",
    "cloudrift.cache.elasticache",
)
AZURE_PROVIDERS = (
    "cloudrift.storage.azure_blob",
    "cloudrift.messaging.azure_bus",
    "cloudrift.email.azure_acs",
    "cloudrift.cache.azure_redis",
)


@pytest.mark.parametrize(
    ("modules", "blocked"),
    [
        (("cloudrift.core.aws",), BOTO),
        (("cloudrift.core.azure",), ("azure",)),
        (AWS_PROVIDERS, ("azure",)),
        (AZURE_PROVIDERS, BOTO),
    ],
    ids=["core.aws-without-boto", "core.azure-without-azure", "aws-without-azure", "azure-no-boto"],
)
def test_modules_import_without_sdks_they_do_not_need(
    modules: tuple[str, ...], blocked: tuple[str, ...]
) -> None:
    """Core helpers need no SDK; AWS providers never load azure, Azure providers never boto."""
    code = (
        "import sys\n"
        f"BLOCKED = {blocked!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in BLOCKED]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("options", "kind"),
    [
        ({"aws_access_key_id": "AKIA", "aws_secret_access_key": SECRET}, STATIC_KEYS),
        ({"profile_name": "dev"}, PROFILE),
        ({"role_arn": ROLE}, ASSUME_ROLE),
        ({"role_arn": ROLE, "profile_name": "dev", "external_id": "x"}, ASSUME_ROLE),
        ({}, DEFAULT_CHAIN),
    ],
)
def test_the_one_fitting_method_is_chosen(options: dict[str, str], kind: str) -> None:
    """Each set of credential options selects exactly one auth method."""
    assert _creds(**options).kind == kind


def test_provider_names_are_kept_in_errors() -> None:
    """A provider's own method names show in the incomplete-credentials error."""
    methods = aws_auth_methods(WORD_NAMES, default_first=True)
    with pytest.raises(ConfigurationError, match="incomplete credentials for static keys"):
        aws_credentials("s3 storage", methods, WORD_NAMES, aws_access_key_id="AKIA")
    chosen = aws_credentials("s3 storage", methods, WORD_NAMES, role_arn=ROLE)
    assert (chosen.method, chosen.kind) == ("assume role", ASSUME_ROLE)
    assert methods[0].name.startswith("default credential chain")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"profile_name": ""}, "empty string"),
        ({"role_arn": ""}, "empty string"),
        ({"aws_access_key_id": "AKIA"}, "missing aws_secret_access_key"),
        (
            {"aws_access_key_id": "A", "aws_secret_access_key": "s", "profile_name": "p"},
            "credentials",
        ),
        ({"role_session_name": "job"}, "role_arn"),
        ({"external_id": "x"}, "role_arn"),
    ],
)
def test_bad_credential_options_are_refused(options: dict[str, str], match: str) -> None:
    """Empty strings, half key pairs, conflicts and orphan role options fail at construction."""
    with pytest.raises(ConfigurationError, match=match):
        _creds(**options)


def test_without_assume_role_role_arn_is_refused() -> None:
    """A provider offering no role refuses role_arn rather than ignoring it."""
    methods = aws_auth_methods(assume_role=False)
    assert all("role_arn" not in m.keys for m in methods)
    with pytest.raises(ConfigurationError, match="role_arn are not supported"):
        aws_credentials("ses", methods, role_arn=ROLE)


def test_role_without_source_options_refuses_keys_beside_it() -> None:
    """role_source_credentials=False: role_arn with a profile is a conflict."""
    methods = aws_auth_methods(role_source_credentials=False)
    with pytest.raises(ConfigurationError, match="conflicting"):
        aws_credentials("s3", methods, role_arn=ROLE, profile_name="p")


def test_secrets_are_wrapped_and_hidden_from_repr() -> None:
    """Secret key and session token become Secrets; repr shows neither."""
    creds = _creds(
        aws_access_key_id="AKIA", aws_secret_access_key=SECRET, aws_session_token="tok-value"
    )
    assert isinstance(creds.secret_access_key, Secret) and isinstance(creds.session_token, Secret)
    assert SECRET not in repr(creds) and "tok-value" not in repr(creds)
    assert SECRET not in str(creds) and "AKIA" in repr(creds)
    assert SyncAwsCredentials(creds, region="us-east-1").__repr__().count(SECRET) == 0


def test_assume_role_arguments_carry_session_name_and_external_id() -> None:
    """STS gets the given session name and external id (default name 'cloudrift')."""
    assert _creds(role_arn=ROLE).assume_role_args() == {"RoleSessionName": "cloudrift"}
    given = _creds(role_arn=ROLE, role_session_name="job", external_id="e-1")
    assert given.assume_role_args() == {"RoleSessionName": "job", "ExternalId": "e-1"}


async def test_each_backend_gets_its_own_session_sharing_only_the_data_loader() -> None:
    """Two sessions from the same options are distinct objects with distinct credentials."""
    creds = _creds(aws_access_key_id="AKIA", aws_secret_access_key=SECRET)
    paths = list(data_loader().search_paths)
    one = await aws_session(creds, region="us-east-1")
    two = await aws_session(creds, region="us-east-1")
    assert data_loader().search_paths == paths  # sessions never append to the shared loader
    assert one is not two and one._session is not two._session
    assert one._session.get_component("data_loader") is data_loader()
    assert two._session.get_component("data_loader") is data_loader()
    first = await one._session.get_credentials()
    second = await two._session.get_credentials()
    assert first is not second and first.access_key == second.access_key == "AKIA"


async def test_closing_one_backends_client_leaves_another_working(moto: MotoEndpoint) -> None:
    """Credentials are not shared: closing one client never breaks a second one."""
    creds = _creds(aws_access_key_id=moto.access_key, aws_secret_access_key=moto.secret_key)
    first = await aws_session(creds, region=moto.region)
    second = await aws_session(creds, region=moto.region)
    async with first.client("s3", endpoint_url=moto.endpoint_url) as client:
        await client.create_bucket(Bucket="shared-test")
    async with second.client("s3", endpoint_url=moto.endpoint_url) as client:
        await client.put_object(Bucket="shared-test", Key="k", Body=b"v")
        answer = await client.get_object(Bucket="shared-test", Key="k")
        assert await answer["Body"].read() == b"v"


async def test_assumed_role_credentials_come_from_sts_and_refresh(
    moto: MotoEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """role_arn calls STS AssumeRole with the source keys; expiry fetches new credentials."""
    from aiobotocore.credentials import AioRefreshableCredentials

    creds = _creds(
        role_arn=ROLE,
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
        external_id="ext-1",
    )
    session = await aws_session(creds, region=moto.region, sts_endpoint_url=moto.endpoint_url)
    live = await session._session.get_credentials()
    assert isinstance(live, AioRefreshableCredentials)
    frozen = await live.get_frozen_credentials()
    assert frozen.access_key != moto.access_key and frozen.token
    live._expiry_time = live._expiry_time.replace(year=2000)
    live._refresh_using.__self__._cache.clear()
    refreshed = await live.get_frozen_credentials()
    assert refreshed.access_key != frozen.access_key
    async with session.client("s3", endpoint_url=moto.endpoint_url) as client:
        await client.create_bucket(Bucket="role-test")
        listed = await client.list_buckets()
    assert [b["Name"] for b in listed["Buckets"]] == ["role-test"]


async def test_assumed_role_without_source_credentials_says_so(no_ambient_aws: None) -> None:
    """role_arn with no keys, profile or ambient credentials raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="role_arn needs source credentials"):
        await aws_session(_creds(role_arn=ROLE), region="us-east-1")


def test_sync_credentials_resolve_static_keys_without_network() -> None:
    """Static keys resolve to the same key pair and token."""
    creds = _creds(aws_access_key_id="AKIA", aws_secret_access_key=SECRET, aws_session_token="tok")
    frozen = SyncAwsCredentials(creds, region="us-east-1").frozen()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == ("AKIA", SECRET, "tok")


def test_sync_credentials_use_the_named_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """profile_name reads that profile from the shared credentials file."""
    path = tmp_path / "credentials"
    path.write_text("[dev]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = p-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    frozen = SyncAwsCredentials(_creds(profile_name="dev"), region="us-east-1").frozen()
    assert frozen.access_key == "AKIAPROFILE"


def test_sync_assumed_role_uses_sts(moto: MotoEndpoint) -> None:
    """The synchronous path assumes the role through STS too and refreshes when due."""
    creds = _creds(
        role_arn=ROLE, aws_access_key_id=moto.access_key, aws_secret_access_key=moto.secret_key
    )
    source = SyncAwsCredentials(creds, region=moto.region, sts_endpoint_url=moto.endpoint_url)
    frozen = source.frozen()
    assert frozen.access_key != moto.access_key and frozen.token
    live = source._resolved
    live._expiry_time = live._expiry_time.replace(year=2000)
    live._refresh_using.__self__._cache.clear()
    assert source.frozen().access_key != frozen.access_key


def test_sync_credentials_without_any_source_say_so(no_ambient_aws: None) -> None:
    """No keys, profile or ambient credentials: a ConfigurationError naming the fix."""
    with pytest.raises(ConfigurationError, match="no AWS credentials found"):
        SyncAwsCredentials(_creds(), region="us-east-1").frozen()
    with pytest.raises(ConfigurationError, match="role_arn needs source credentials"):
        SyncAwsCredentials(_creds(role_arn=ROLE), region="us-east-1").frozen()


def test_aio_config_sets_pool_timeouts_and_standard_retries() -> None:
    """The config carries the pool size, both timeouts and standard-mode retries."""
    config = aio_config(
        max_pool_connections=7,
        connect_timeout=2.0,
        read_timeout=9.0,
        max_attempts=4,
        s3={"addressing_style": "path"},
    )
    assert (config.max_pool_connections, config.connect_timeout, config.read_timeout) == (
        7,
        2.0,
        9.0,
    )
    assert config.retries == {"mode": "standard", "max_attempts": 4}
    assert config.s3 == {"addressing_style": "path"}


def test_client_error_details_are_redacted() -> None:
    """Code, status and message come out of a ClientError with secrets masked."""
    from botocore.exceptions import ClientError

    exc = ClientError(
        {
            "Error": {"Code": "AccessDenied", "Message": f"key {SECRET} refused"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        },
        "GetObject",
    )
    details = client_error_details(exc, [Secret(SECRET)])
    assert (details.code, details.status) == ("AccessDenied", 403)
    assert SECRET not in details.message and MASK in details.message
    assert details.code in AUTH_ERROR_CODES


def test_client_error_without_message_falls_back_to_the_exception_text() -> None:
    """An empty error message never yields an empty description."""
    from botocore.exceptions import ClientError

    exc = ClientError({"Error": {"Code": "404"}}, "HeadObject")
    details = client_error_details(exc)
    assert details.message and "HeadObject" in details.message and details.status is None


def test_error_code_sets_classify_known_codes() -> None:
    """Known auth, throttling and not-found codes land in exactly their own set."""
    assert {"InvalidClientTokenId", "SignatureDoesNotMatch"} <= AUTH_ERROR_CODES
    assert {"ThrottlingException", "TooManyRequestsException"} <= THROTTLING_ERROR_CODES
    assert {"NoSuchKey", "AWS.SimpleQueueService.NonExistentQueue"} <= NOT_FOUND_ERROR_CODES
    assert not AUTH_ERROR_CODES & THROTTLING_ERROR_CODES
    assert not AUTH_ERROR_CODES & NOT_FOUND_ERROR_CODES


def test_botocore_exception_families() -> None:
    """Connection and credential exception types are botocore's, caught as tuples."""
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    assert EndpointConnectionError in connection_errors()
    assert NoCredentialsError in credential_errors()
    assert SNAKE_NAMES.kind("default_chain") == DEFAULT_CHAIN


# ------------------------------------------------- every AWS provider, the same way


async def test_ses_assumes_a_role_through_sts(
    moto: MotoEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SES takes role_arn like S3: STS credentials from the default chain, then sends."""
    from aiobotocore.credentials import AioRefreshableCredentials

    from cloudrift.email import get_email

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.secret_key)
    async with get_email(
        "ses",
        region=moto.region,
        endpoint_url=moto.endpoint_url,
        role_arn=ROLE,
        role_session_name="mailer",
        sts_endpoint_url=moto.endpoint_url,
        default_from="sender@example.com",
    ) as email:
        client = await email.native()  # type: ignore[attr-defined]
        await client.create_email_identity(EmailIdentity="sender@example.com")
        assert await email.send("to@example.com", "hi", body_text="hello")
        creds = client._request_signer._credentials
        assert isinstance(creds, AioRefreshableCredentials)
        assert (await creds.get_frozen_credentials()).access_key != moto.access_key


async def test_elasticache_iam_token_is_signed_with_the_assumed_role(
    moto: MotoEndpoint,
) -> None:
    """ElastiCache IAM auth takes role_arn too: the token is signed with STS credentials."""
    from cloudrift.cache import get_cache

    cache = get_cache(
        "elasticache",
        "from_iam_auth",
        host="my-cluster.abc.cache.amazonaws.com",
        username="app",
        region=moto.region,
        role_arn=ROLE,
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
        sts_endpoint_url=moto.endpoint_url,
    )
    provider = cache.token_provider  # type: ignore[attr-defined]
    token = (await provider.token()).reveal()
    assert token.startswith("my-cluster/?Action=connect&User=app&")
    assert "X-Amz-Security-Token=" in token
    assert f"X-Amz-Credential={moto.access_key}" not in token
    await cache.close()


@pytest.mark.parametrize(
    ("category", "options"),
    [
        ("email", {"region": "us-east-1", "sts_endpoint_url": "http://127.0.0.1:1"}),
        (
            "queue",
            {"queue_url": "https://sqs.us-east-1.amazonaws.com/1/q", "role_session_name": "x"},
        ),
        (
            "cache",
            {
                "host": "h",
                "username": "u",
                "region": "us-east-1",
                "sts_endpoint_url": "http://127.0.0.1:1",
            },
        ),
    ],
)
def test_role_options_without_role_arn_are_refused(category: str, options: dict[str, str]) -> None:
    """A role option given without role_arn is an error on every AWS provider, never ignored."""
    from cloudrift.cache import get_cache
    from cloudrift.email import get_email
    from cloudrift.messaging import get_queue

    build: dict[str, Any] = {
        "email": lambda: get_email("ses", **options),
        "queue": lambda: get_queue("sqs", **options),
        "cache": lambda: get_cache("elasticache", "from_iam_auth", **options),
    }
    with pytest.raises(ConfigurationError, match="role_arn"):
        build[category]()


async def test_open_client_uses_the_config_and_region_given(moto: MotoEndpoint) -> None:
    """open_client builds the service client with our config, region and endpoint."""
    from contextlib import AsyncExitStack

    from cloudrift.core.aws import open_client

    creds = _creds(aws_access_key_id=moto.access_key, aws_secret_access_key=moto.secret_key)
    config = aio_config(max_pool_connections=7, connect_timeout=2, read_timeout=3, max_attempts=2)
    async with AsyncExitStack() as stack:
        client = await open_client(
            stack, creds, "sqs", region=moto.region, endpoint_url=moto.endpoint_url, config=config
        )
        assert client.meta.region_name == moto.region
        assert client.meta.config.max_pool_connections == 7
        created = await client.create_queue(QueueName="open-client")
        assert created["QueueUrl"].endswith("/open-client")


@pytest.mark.parametrize(
    ("category", "provider", "options"),
    [
        ("storage", "s3", {"bucket": "b"}),
        ("messaging", "sqs", {"queue_url": "https://sqs.us-east-1.amazonaws.com/1/q"}),
        ("email", "ses", {}),
    ],
)
async def test_in_process_moto_is_refused_with_the_way_out(
    category: str, provider: str, options: dict[str, Any]
) -> None:
    """Under moto's mock_aws, the first call raises ConfigurationError pointing to moto as a
    server (not aiobotocore's raw "'coroutine' object has no attribute 'items'")."""
    import importlib

    from moto import mock_aws

    factory = {"storage": "get_storage", "messaging": "get_queue", "email": "get_email"}[category]
    build = getattr(importlib.import_module(f"cloudrift.{category}"), factory)
    keys = {"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "secret"}
    with mock_aws():
        backend = build(provider, region="us-east-1", **keys, **options)
        try:
            with pytest.raises(ConfigurationError, match=r"mock_aws.*cloudrift_moto"):
                await _first_call(provider, backend)
        finally:
            await backend.close()


async def _first_call(provider: str, backend: Any) -> Any:
    if provider == "s3":
        return await backend.exists("k")
    if provider == "sqs":
        return await backend.send({"n": 1})
    return await backend.send("to@example.com", "s", body_text="x", from_="me@example.com")
