#!/usr/bin/env bash
# The browser the console's tests drive (tests/browser_support.py): Debian's Chromium at
# /usr/bin/chromium. Installed when missing and this runs as root with apt-get; otherwise the
# browser tests skip with the reason, or fail under CI (CI set), where they must run.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/browser_deps.sh: installing chromium (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    if apt-get install -y chromium >/dev/null \
        || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }; then
        [ -x "$CHROMIUM" ] && exit 0
    fi
fi

if [ -n "${CI:-}" ]; then
    echo "tests/browser_deps.sh: $CHROMIUM is missing and could not be installed;" \
         "the console's browser tests cannot run under CI" >&2
    exit 1
fi
echo "tests/browser_deps.sh: $CHROMIUM is missing (apt-get install chromium, as root);" \
     "the console's browser tests will be skipped" >&2
