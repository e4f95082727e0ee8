#!/usr/bin/env bash
# Makes sure Debian's chromium is installed: the browser tests drive it with
# Playwright (executable_path), and nothing ever downloads a browser.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
    echo "ensure-chromium: chromium is missing; install Debian's chromium package or run as root" >&2
    exit 1
fi
echo "ensure-chromium: apt-get install chromium" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
