"""``python -m example_app`` (what ``make demo`` runs): serve the app with uvicorn.

``HOST`` and ``PORT`` choose where it listens (default 127.0.0.1:8000). Backends come
from ``$CLOUDRIFT_CONFIG`` or, by default, the bundled demo settings, which need no
account and no network.
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


def main() -> int:
    """Build the app from the environment and serve it until interrupted."""
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
        app = create_app(settings, IntakeConfig.from_env())
    except ConfigurationError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    print(banner(settings, host, port), flush=True)
    uvicorn.run(app, host=host, port=port, log_level=os.environ.get("LOG_LEVEL", "info"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
