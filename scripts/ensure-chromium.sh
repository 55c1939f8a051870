#!/usr/bin/env bash
# Make a headless Chromium available to the browser tests (tests/example_app/test_browser.py)
# and print its path. Playwright drives it through executable_path: Playwright's own
# browser download is not used.
# Order: $CLOUDRIFT_CHROMIUM if it is executable; `chromium` (or `chromium-browser`) on
# PATH; Debian's `chromium` package when we are root; otherwise a clear message, exit 1.
set -euo pipefail
if [ -n "${CLOUDRIFT_CHROMIUM:-}" ] && [ -x "${CLOUDRIFT_CHROMIUM}" ]; then
  echo "${CLOUDRIFT_CHROMIUM}"
  exit 0
fi
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    exit 0
  fi
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium package (for the browser tests)" >&2
  (apt-get update -qq || true) >&2
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2 \
      && command -v chromium >/dev/null 2>&1; then
    command -v chromium
    exit 0
  fi
  echo "apt-get could not install chromium" >&2
fi
cat >&2 <<'MSG'
The browser tests need a headless Chromium, and none was found.
Install it, then run `make test` again:
  Debian/Ubuntu:  sudo apt-get install chromium
  other systems:  install Chromium or Google Chrome and set CLOUDRIFT_CHROMIUM=/path/to/it
MSG
exit 1
