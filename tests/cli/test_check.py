"""`cloudrift check` as a real process against a real (password-protected) redis-server."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli._support import REPO, run_cli
from tests.servers.redis import RedisServer

PASSWORD = "s3cr3t-Redis-Pass-7731"
SMTP_SECRET = "Qz9-smtp-Secret-40a1"


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server that requires a password (stopped by one test)."""
    from tests.servers.redis import _start_redis

    server = _start_redis(
        tmp_path_factory.mktemp("redis-check"), extra_args=["--requirepass", PASSWORD]
    )
    try:
        yield server
    finally:
        server.stop()


def _config(tmp_path: Path, redis: RedisServer) -> Path:
    """The demo's five categories, with the queue and cache on the real redis-server."""
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis.port}/0"
    path = tmp_path / "cloudrift.yaml"
    path.write_text(
        f"""
storage:
  provider: local
  root_dir: {tmp_path}/files
queue:
  provider: redis
  queue_name: jobs
  url: {url}
document:
  provider: memory
  database: intake
cache:
  provider: redis
  auth_method: from_url
  url: {url}
email:
  provider: file
  directory: {tmp_path}/outbox
  default_from: intake@example.test
"""
    )
    return path


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert SMTP_SECRET not in text


def test_healthy_config_exits_0_with_a_table(tmp_path: Path, protected_redis: RedisServer) -> None:
    """Every backend answers: exit 0 and one `ok` row per backend, URLs shown masked."""
    result = run_cli(["check", "--config", str(_config(tmp_path, protected_redis))])
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["BACKEND", "PROVIDER", "TARGET", "STATUS", "LATENCY", "REASON"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {
        "storage.default",
        "queue.default",
        "document.default",
        "cache.default",
        "email.default",
    }
    assert all(" ok " in row for row in rows.values())
    assert f"127.0.0.1:{protected_redis.port}" in rows["cache.default"]
    _no_secret(result.stdout, result.stderr)


def test_json_report_parses_back(tmp_path: Path, protected_redis: RedisServer) -> None:
    """`--json` prints one document: overall status and each backend's row."""
    result = run_cli(["check", "--json", "-c", str(_config(tmp_path, protected_redis))])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "ok"
    by_name = {row["backend"]: row for row in report["backends"]}
    assert by_name["queue.default"]["provider"] == "redis"
    assert by_name["queue.default"]["status"] == "ok"
    assert by_name["queue.default"]["reason"] is None
    assert by_name["queue.default"]["latency_ms"] >= 0
    _no_secret(result.stdout, result.stderr)


def test_redis_down_exits_1_and_the_redis_rows_say_why(
    tmp_path: Path, redis_server_factory: Callable[..., RedisServer]
) -> None:
    """With redis-server stopped: exit 1, the queue and cache rows are `down` with the cause."""
    server = redis_server_factory(extra_args=["--requirepass", PASSWORD])
    config = _config(tmp_path, server)
    server.stop()
    result = run_cli(["check", "--json", "--timeout", "3", "-c", str(config)])
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "unhealthy"
    by_name = {row["backend"]: row for row in report["backends"]}
    assert by_name["cache.default"]["status"] == "down"
    assert "CacheConnectionError" in by_name["cache.default"]["reason"]
    assert "MessagingConnectionError" in by_name["queue.default"]["reason"]
    assert by_name["storage.default"]["status"] == "ok"
    table = run_cli(["check", "--timeout", "3", "-c", str(config)])
    assert table.returncode == 1
    cache_row = next(line for line in table.stdout.splitlines() if line.startswith("cache."))
    assert "down" in cache_row and "unreachable" in cache_row
    _no_secret(result.stdout, result.stderr, table.stdout, table.stderr)


def test_bad_yaml_exits_2_naming_the_file(tmp_path: Path) -> None:
    """A YAML syntax error is a configuration error: exit 2, the message names the file."""
    path = tmp_path / "broken.yaml"
    path.write_text("storage:\n  provider: [local\n")
    result = run_cli(["check", "--config", str(path)])
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert "not valid YAML" in result.stderr


def test_placeholder_secrets_in_production_exit_2_listing_every_problem(
    tmp_path: Path, protected_redis: RedisServer
) -> None:
    """`--env production` refuses placeholders and dev providers, all listed, no secret shown."""
    path = tmp_path / "prod.yaml"
    path.write_text(
        f"""
storage:
  provider: memory
cache:
  provider: redis
  auth_method: from_url
  url: redis://:changeme@127.0.0.1:{protected_redis.port}/0
email:
  provider: smtp
  host: 127.0.0.1
  username: mailer
  password: {SMTP_SECRET}
  mode: plaintext
"""
    )
    development = run_cli(["check", "--json", "-c", str(path), "--timeout", "2"])
    assert development.returncode == 1  # only unhealthy: production checks are off
    result = run_cli(["check", "--env", "production", "-c", str(path)])
    assert result.returncode == 2
    problems = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert any(p.startswith("storage.backends.default.provider:") for p in problems)
    assert any(p.startswith("cache.backends.default.url:") for p in problems)
    assert any(p.startswith("email.backends.default.mode:") for p in problems)
    assert len(problems) == 3
    _no_secret(result.stdout, result.stderr, development.stdout, development.stderr)


def test_version_and_help_on_every_command() -> None:
    """`--version` prints the package version; `--help` works on the root and each command."""
    from cloudrift._version import __version__

    version = run_cli(["--version"])
    assert version.returncode == 0
    assert version.stdout.strip() == f"cloudrift {__version__}"
    for args in (["--help"], ["check", "--help"], ["worker", "--help"]):
        shown = run_cli(args)
        assert shown.returncode == 0, shown.stderr
        assert "Usage:" in shown.stdout


def test_console_script_is_declared_and_resolves_to_the_module_entry_point() -> None:
    """`[project.scripts] cloudrift` names the callable `python -m cloudrift_fastapi.cli` runs."""
    import importlib

    import cloudrift_fastapi.cli

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    target = project["scripts"]["cloudrift"]
    module, _, attr = target.partition(":")
    assert getattr(importlib.import_module(module), attr) is cloudrift_fastapi.cli.main
    main_source = (REPO / "cloudrift_fastapi" / "cli" / "__main__.py").read_text()
    assert "from cloudrift_fastapi.cli import main" in main_source
