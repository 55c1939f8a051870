"""``python -m example_app [api|worker]``: run the service, all in one or split.

* no argument (what ``make demo`` runs): the API and its worker in one process;
* ``api``: HTTP only; jobs are left on the queue for worker processes;
* ``worker``: a standalone worker process (``cloudrift worker example_app.worker:job``
  with the service's own settings); stop it with SIGTERM / Ctrl-C (warm shutdown).

``HOST`` and ``PORT`` choose where the API listens (default 127.0.0.1:8000). Backends
come from ``$CLOUDRIFT_CONFIG`` or, by default, the bundled demo settings, which need no
account and no network. Split processes need backends they can share: a ``redis``,
``sqs`` or ``azure_bus`` queue and a real document database, not ``memory``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from cloudrift.core.exceptions import ConfigurationError


def _port(raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigurationError(f"PORT must be a TCP port number (1-65535), got {raw!r}")
    return int(raw)


def banner(settings: Any, host: str, port: int) -> str:
    """What the demo prints before serving: the URL, the outbox, a curl upload line."""
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"
    url = f"http://{shown}:{port}"
    lines = [
        "",
        "cloudrift document intake",
        f"  page:        {url}/   (upload, watch and download in a browser)",
        f"  API:         {url}   (interactive docs: {url}/docs)",
        f"  readiness:   {url}/health/ready",
    ]
    email = settings.backend("email")
    if email.provider == "file":
        outbox = Path(str(email.options.get("directory", "./outbox"))).resolve()
        lines.append(f"  outbox:      {outbox}   (one .eml file per notification)")
    else:
        lines.append(f"  email:       sent with the {email.provider!r} provider")
    storage = settings.backend("storage")
    if storage.provider == "local":
        root = Path(str(storage.options.get("root_dir"))).resolve()
        lines.append(f"  files:       {root}")
    lines += [
        "",
        "  upload a file:",
        f"    curl -F file=@README.md {url}/documents",
        "  then read it back (use the id from the answer):",
        f"    curl {url}/documents/<id>",
        f"    curl -L {url}/documents/<id>/download",
        "",
    ]
    return "\n".join(lines)


#: What each argument runs.
MODES = ("all", "api", "worker")
_USAGE = "usage: python -m example_app [api|worker]"


def _shared_warnings(settings: Any) -> list[str]:
    """Why split processes would not see each other's work on these settings."""
    notes = []
    for category, what in (("queue", "jobs"), ("document", "records")):
        if settings.backend(category).provider == "memory":
            notes.append(
                f"warning: the {category} backend is 'memory': its {what} live inside one "
                "process, so the API and worker processes do not share them; configure a "
                "shared one (see example_app/README.md, 'Scale out')"
            )
    return notes


def run_worker_process() -> int:
    """``python -m example_app worker``: process jobs until SIGTERM / SIGINT."""
    import asyncio
    import logging

    from cloudrift_fastapi.workers import run_worker
    from example_app.config import IntakeConfig, load_settings
    from example_app.worker import job

    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
        config = IntakeConfig.from_env()
        for note in _shared_warnings(settings):
            print(note, file=sys.stderr)
        return asyncio.run(
            run_worker(
                job,
                settings=settings,
                concurrency=config.worker_concurrency,
                name="example_app.worker:job",
            )
        )
    except ConfigurationError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Run the mode named by ``argv`` (default: all in one) until interrupted."""
    args = sys.argv[1:] if argv is None else argv
    if args in ([], ["all"]):
        mode = "all"
    elif len(args) == 1 and args[0] in MODES:
        mode = args[0]
    elif len(args) == 1 and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    else:
        print(_USAGE, file=sys.stderr)
        return 2
    if mode == "worker":
        return run_worker_process()
    return serve(run_worker=mode == "all")


def print_traces() -> None:
    """``INTAKE_TRACES=console``: print every finished span (the OpenTelemetry SDK's
    console exporter), so an upload's whole journey shows in the terminal."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def serve(*, run_worker: bool = True) -> int:
    """Build the app from the environment and serve it until interrupted."""
    if os.environ.get("INTAKE_TRACES") == "console":
        print_traces()
    host = os.environ.get("HOST", "127.0.0.1") or "127.0.0.1"
    try:
        port = _port(os.environ.get("PORT", "8000") or "8000")
    except ConfigurationError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        import uvicorn
    except ImportError:
        print('the demo needs uvicorn: pip install "cloudrift[all,dev]" (or run make demo)')
        return 2
    from example_app.app import create_app
    from example_app.config import IntakeConfig, load_settings

    try:
        settings = load_settings()
        app = create_app(settings, IntakeConfig.from_env(), run_worker=run_worker)
    except ConfigurationError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    print(banner(settings, host, port), flush=True)
    if not run_worker:
        print("  jobs are left to worker processes: python -m example_app worker\n", flush=True)
        for note in _shared_warnings(settings):
            print(note, file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level=os.environ.get("LOG_LEVEL", "info"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
