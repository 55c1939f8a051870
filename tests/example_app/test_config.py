"""Configuration: the service's INTAKE_* settings, the bundled settings files, startup errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import ConfigurationError
from example_app import create_app
from example_app.__main__ import banner
from example_app.config import DEMO_SETTINGS, SETTINGS_DIR, IntakeConfig, load_settings
from tests.example_app.conftest import every_backend, running
from tests.servers.tls import TLSFiles

REPO = Path(__file__).resolve().parents[2]


def test_intake_config_reads_every_variable_from_the_environment() -> None:
    """INTAKE_* variables set every field; unset ones keep their defaults."""
    config = IntakeConfig.from_env(
        {
            "INTAKE_MAX_UPLOAD_BYTES": "2048",
            "INTAKE_NOTIFY_TO": "ops@example.org",
            "INTAKE_KEY_PREFIX": "in/",
            "INTAKE_CACHE_TTL": "60",
            "INTAKE_URL_TTL": "120",
            "INTAKE_PREVIEW_CHARS": "0",
            "INTAKE_MAX_ATTEMPTS": "2",
            "INTAKE_WORKER_CONCURRENCY": "8",
        }
    )
    assert config == IntakeConfig(2048, "ops@example.org", "in/", 60, 120, 0, 2, 8)
    assert IntakeConfig.from_env({}) == IntakeConfig()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INTAKE_MAX_UPLOAD_BYTES": "ten"}, "INTAKE_MAX_UPLOAD_BYTES must be a whole number"),
        ({"INTAKE_MAX_UPLOAD_BYTES": "0"}, "INTAKE_MAX_UPLOAD_BYTES must be at least 1"),
        ({"INTAKE_NOTIFY_TO": "nobody"}, "INTAKE_NOTIFY_TO must be one email address"),
        ({"INTAKE_NOTIFY_TO": "a@b.c\r\nBcc: x@y.z"}, "INTAKE_NOTIFY_TO must be one email"),
        ({"INTAKE_KEY_PREFIX": "/abs/"}, "INTAKE_KEY_PREFIX must be empty or end with '/'"),
        ({"INTAKE_KEY_PREFIX": "noslash"}, "INTAKE_KEY_PREFIX must be empty or end with '/'"),
        ({"INTAKE_URL_TTL": "999999"}, "INTAKE_URL_TTL must be between 1 and 604800"),
        ({"INTAKE_WORKER_CONCURRENCY": "0"}, "INTAKE_WORKER_CONCURRENCY must be at least 1"),
    ],
)
def test_bad_intake_settings_raise_configuration_error_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    """Each bad INTAKE_* value is refused at startup with what to fix."""
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        IntakeConfig.from_env(env)


def test_app_refuses_settings_missing_a_category_naming_all_of_them() -> None:
    """Without queue/cache/email (or document.database) the app will not be built."""
    with pytest.raises(ConfigurationError) as info:
        create_app(CloudriftSettings(storage="memory", document="memory"), IntakeConfig())
    text = str(info.value)
    for what in ("queue (processing jobs)", "cache", "email"):
        assert what in text
    settings = CloudriftSettings(
        storage="memory", queue="memory", document="memory", cache="memory", email="memory"
    )
    with pytest.raises(ConfigurationError, match=r"document\.database"):
        create_app(settings, IntakeConfig())


def test_load_settings_uses_the_demo_file_unless_cloudrift_config_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No $CLOUDRIFT_CONFIG → demo.yaml; with it → that file."""
    monkeypatch.delenv("CLOUDRIFT_CONFIG", raising=False)
    assert load_settings().backend("storage").provider == "local"
    other = tmp_path / "other.yaml"
    other.write_text(
        "storage: memory\nqueue: memory\ncache: memory\nemail: memory\n"
        "document: {provider: memory, database: x}\n"
    )
    monkeypatch.setenv("CLOUDRIFT_CONFIG", str(other))
    assert load_settings().backend("storage").provider == "memory"


def test_env_vars_override_the_demo_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLOUDRIFT_* env vars win over demo.yaml (e.g. a redis queue when one is running)."""
    monkeypatch.delenv("CLOUDRIFT_CONFIG", raising=False)
    monkeypatch.setenv("CLOUDRIFT_CACHE__PROVIDER", "redis")
    monkeypatch.setenv("CLOUDRIFT_CACHE__AUTH_METHOD", "from_url")
    monkeypatch.setenv("CLOUDRIFT_CACHE__URL", "redis://127.0.0.1:6399/0")
    settings = load_settings()
    assert settings.backend("cache").provider == "redis"
    assert settings.backend("storage").provider == "local"


AWS_ENV = {
    "INTAKE_BUCKET": "intake-prod",
    "AWS_REGION": "eu-west-1",
    "INTAKE_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/intake-jobs",
    "INTAKE_DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/intake-dlq",
    "INTAKE_EVENTS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:intake-events",
    "INTAKE_AUDIT_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/intake-audit",
    "DOCDB_HOST": "intake.cluster-abc.eu-west-1.docdb.amazonaws.com",
    "DOCDB_USERNAME": "intake",
    "DOCDB_PASSWORD": "Zq8!vR2#kLw9pT4m",
    "CACHE_HOST": "master.intake-cache.abc123.euw1.cache.amazonaws.com",
    "CACHE_USERNAME": "intake-app",
    "INTAKE_MAIL_FROM": "intake@example.org",
}


@pytest.mark.filterwarnings("ignore:You appear to be connected to a DocumentDB cluster")
async def test_aws_settings_build_every_backend_without_network(
    monkeypatch: pytest.MonkeyPatch, tls_files: TLSFiles
) -> None:
    """aws.yaml passes the production checks and every provider accepts its options (the
    backends are built lazily, so nothing is contacted)."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DOCDB_CA_FILE", str(tls_files.ca_cert))
    settings = CloudriftSettings.from_yaml(SETTINGS_DIR / "aws.yaml")
    settings.validate_production_security()
    async with every_backend(settings) as (built, _):
        assert {c: b.provider for c, b in built.items()} == {
            "storage": "s3",
            "queue": "sqs",
            "cache": "elasticache",
            "email": "ses",
            "topic": "sns",
            "subscription": "sqs",
        }
        assert AWS_ENV["DOCDB_PASSWORD"] not in repr(settings)
        app = create_app(settings, IntakeConfig())
        assert app.title == "cloudrift document intake"


def test_banner_shows_url_outbox_and_curl_line_never_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The demo banner names the page, the URL, the outbox folder and a working curl line."""
    monkeypatch.setenv("DEMO_DATA_DIR", str(tmp_path))
    text = banner(CloudriftSettings.from_yaml(DEMO_SETTINGS), "0.0.0.0", 9000)
    assert "page:        http://127.0.0.1:9000/ " in text
    assert "http://127.0.0.1:9000/docs" in text
    assert str(tmp_path / "outbox") in text
    assert "curl -F file=@README.md http://127.0.0.1:9000/documents" in text
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    aws = banner(CloudriftSettings.from_yaml(SETTINGS_DIR / "aws.yaml"), "127.0.0.1", 80)
    assert AWS_ENV["DOCDB_PASSWORD"] not in aws
    assert "'ses' provider" in aws


def test_demo_command_refuses_a_bad_port_with_a_message_and_exit_code_2() -> None:
    """PORT=abc: the demo exits at once with code 2 saying what PORT must be."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDRIFT_", "INTAKE_"))}
    env.update({"PORT": "abc", "PYTHONPATH": str(REPO)})
    done = subprocess.run(
        [sys.executable, "-m", "example_app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert "PORT must be a TCP port number" in done.stderr


def _readme_yaml_blocks() -> list[object]:
    text = (REPO / "example_app" / "README.md").read_text()
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def test_readme_shows_exactly_the_aws_azure_and_gcp_settings_files() -> None:
    """The README's AWS, Azure and GCP YAML equal the bundled files (they cannot drift)."""
    blocks = _readme_yaml_blocks()
    names = ("aws.yaml", "azure.yaml", "gcp.yaml")
    files = [yaml.safe_load((SETTINGS_DIR / n).read_text()) for n in names]
    assert blocks == files


async def test_create_app_with_no_arguments_uses_the_demo_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``uvicorn --factory example_app:create_app`` works: defaults come from the env."""
    monkeypatch.delenv("CLOUDRIFT_CONFIG", raising=False)
    monkeypatch.setenv("DEMO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("INTAKE_MAX_UPLOAD_BYTES", "123")
    app = create_app()
    assert app.state.intake_config.max_upload_bytes == 123
    async with running(app) as client:
        ready = await client.get("/health/ready")
        unsigned = await client.get("/files/documents/x")
    assert ready.json()["backends"]["storage.default"]["provider"] == "local"
    # The local signed-URL route is mounted: an unsigned request is refused, not unknown.
    assert unsigned.status_code == 403
