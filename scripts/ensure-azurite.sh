#!/usr/bin/env bash
# Install the Azurite npm package into the project-local .tools folder (never globally).
set -euo pipefail
dest=".tools/azurite"
if [ -x "$dest/node_modules/.bin/azurite-blob" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is required to install Azurite (the Azure Blob stand-in used by the tests)." >&2
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
  else
    exit 1
  fi
fi
mkdir -p "$dest"
npm install --prefix "$dest" --no-audit --no-fund --loglevel=error "azurite@^3.35" >&2
