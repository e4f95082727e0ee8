#!/usr/bin/env bash
# Makes sure the tools the suite drives are installed, with apt-get when missing:
# Debian's chromium (the browser tests drive it with Playwright's
# executable_path; nothing ever downloads a browser) and kubectl (the manifest
# tests render deploy/ with `kubectl kustomize`, offline, no cluster).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v kubectl >/dev/null 2>&1 || missing+=(kubectl)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "ensure-test-tools: missing ${missing[*]}; install them or run as root" >&2
    exit 1
fi
echo "ensure-test-tools: apt-get install ${missing[*]}" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
