#!/usr/bin/env bash
# Make sure headless Chromium (Debian's `chromium` package) is there for the report rendering test.
# Installs it only when we are root and apt-get exists; otherwise says what to do and exits 0, so
# `make test` still runs (the Chromium test then skips with the same reason).
set -u
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is missing: install it with 'sudo apt-get install -y chromium' (the HTML report test will be skipped)"
    exit 0
fi
echo "installing chromium (Debian package) for the HTML report test..."
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    echo "chromium could not be installed (is the Debian mirror reachable?); the HTML report test will be skipped"
fi
exit 0
