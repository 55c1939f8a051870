"""The ``cloudrift`` command: ``check`` the configured backends, run a queue ``worker``.

Both commands read settings exactly as the web app's lifespan does (``CLOUDRIFT_*`` env
vars, ``$CLOUDRIFT_CONFIG`` or ``--config FILE``, an optional ``--env-file``) and build
backends with the same container code. Exit codes: 0 success, 1 a backend or the
worker failed, 2 a configuration or usage error. Run ``python -m cloudrift_fastapi.cli``
where the console script is not installed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cloudrift._version import __version__
from cloudrift.core.exceptions import CloudRiftError, ConfigurationError

app = typer.Typer(
    name="cloudrift",
    help="Check cloudrift backends and run queue workers with the app's own settings.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Markdown: docstring paragraphs are reflowed to the terminal, not cut at source lines.
    rich_markup_mode="markdown",
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML settings file (default: $CLOUDRIFT_CONFIG); CLOUDRIFT_* env vars still win.",
        dir_okay=False,
    ),
]
EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        help="Run as this environment (e.g. production: refuses placeholder secrets).",
    ),
]
EnvFileOption = Annotated[
    Path | None,
    typer.Option(
        "--env-file", help="A .env file to read CLOUDRIFT_* settings from.", dir_okay=False
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cloudrift {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Check cloudrift backends and run queue workers with the app's own settings."""


def load_settings(
    config: Path | None = None, environment: str | None = None, env_file: Path | None = None
) -> Any:
    """The settings as the lifespan reads them (``CloudriftSettings()``), from ``config``
    instead of ``$CLOUDRIFT_CONFIG`` when given; ``environment`` overrides the setting."""
    from cloudrift.config import CloudriftSettings

    overrides: dict[str, Any] = {}
    if environment is not None:
        overrides["environment"] = environment
    if env_file is not None:
        if not env_file.is_file():
            raise ConfigurationError(f"cannot read the .env file {env_file}: no such file")
        overrides["_env_file"] = env_file
    if config is not None:
        if not config.is_file():
            raise ConfigurationError(
                f"cannot read the cloudrift settings file {config}: no such file"
            )
        return CloudriftSettings.from_yaml(config, **overrides)
    return CloudriftSettings(**overrides)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


@app.command()
def check(
    config: ConfigOption = None,
    env: EnvOption = None,
    env_file: EnvFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Seconds each backend has to answer.")
    ] = 5.0,
) -> None:
    """Build every configured backend and health-check it; exit 0 only if all answer.

    Exit 1 when a backend fails its check, 2 on a configuration error.
    """
    from cloudrift_fastapi.cli.check import check_backends, render_json, render_table

    # The report says why each backend failed; the library's own warnings would repeat it.
    _configure_logging(False, "error")
    try:
        settings = load_settings(config, env, env_file)
        if not any(True for _ in settings.iter_backends()):
            raise ConfigurationError(
                "no backend is configured: pass --config FILE, set CLOUDRIFT_CONFIG or "
                "CLOUDRIFT_<CATEGORY>__PROVIDER variables"
            )
        rows = asyncio.run(check_backends(settings, limit=timeout))
    except ConfigurationError as exc:
        if as_json:
            typer.echo(json.dumps({"status": "invalid", "error": exc.message}, indent=2))
        raise _fail(f"configuration error: {exc.message}", 2) from None
    typer.echo(render_json(rows) if as_json else render_table(rows))
    if any(row.status != "ok" for row in rows):
        raise typer.Exit(1)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _configure_logging(json_logs: bool, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@app.command()
def worker(
    handler: Annotated[
        str, typer.Argument(help="MODULE:HANDLER, an async callable taking a Message.")
    ],
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue", "-q", help="Name of the configured queue backend (default: the default one)."
        ),
    ] = None,
    subscription: Annotated[
        str | None,
        typer.Option(
            "--subscription",
            "-s",
            help="Name of a configured topic subscription to consume instead of a queue.",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-n", min=1, help="Handlers run at once.")
    ] = 1,
    max_receives: Annotated[
        int | None,
        typer.Option(
            "--max-receives", min=1, help="Dead-letter a message after this many deliveries."
        ),
    ] = None,
    visibility_timeout: Annotated[
        float | None,
        typer.Option(
            "--visibility-timeout",
            min=0.001,
            help="Seconds a message stays hidden; extended while its handler runs.",
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace", min=0, help="Seconds in-flight handlers get to finish after SIGTERM/SIGINT."
        ),
    ] = 30.0,
    config: ConfigOption = None,
    env: EnvOption = None,
    env_file: EnvFileOption = None,
    json_logs: Annotated[
        bool, typer.Option("--json-logs", help="Log one JSON object per line.")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="Logging level.")] = "info",
) -> None:
    """Run HANDLER on every message of a queue (or --subscription) until SIGTERM/SIGINT.

    The first signal stops receiving at once and lets in-flight handlers finish within
    --grace seconds (then every backend is closed, exit 0); a second signal exits at once
    (unacked messages come back after their visibility timeout).
    """
    from cloudrift_fastapi.workers import EXIT_CONFIG, load_handler, run_worker

    _configure_logging(json_logs, log_level)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # MODULE may live in the working directory, as with uvicorn
    options: dict[str, Any] = {}
    if max_receives is not None:
        options["max_receives"] = max_receives
    if visibility_timeout is not None:
        options["visibility_timeout"] = visibility_timeout
    try:
        settings = load_settings(config, env, env_file)
        target = load_handler(handler)
        code = asyncio.run(
            run_worker(
                target,
                settings=settings,
                queue=queue,
                subscription=subscription,
                concurrency=concurrency,
                grace=grace,
                name=handler,
                # ``@inject`` + ``Provide[Container.storage]`` in the handler's module
                # work as they do in routes wired through the lifespan.
                wire=[handler.partition(":")[0]],
                **options,
            )
        )
    except ConfigurationError as exc:
        raise _fail(f"configuration error: {exc.message}", EXIT_CONFIG) from None
    except CloudRiftError as exc:
        raise _fail(f"cannot start the worker: {type(exc).__name__}: {exc.message}", 1) from None
    raise typer.Exit(code)


def main() -> None:
    """The console script's entry point."""
    app()


__all__ = ["app", "load_settings", "main"]
