#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/browser/, driven by Playwright with this system binary:
# Playwright's own browser download is never used). Does nothing when the binary is already there.
#
#   bash scripts/install-chromium.sh          # installs the `chromium` package with apt-get (sudo when not root)
#   PRECIMED_CHROMIUM=/path/to/chromium ...   # another binary: checked, never installed
#
# Exit codes: 0 the binary is there (already or now); 1 it could not be installed (the message says why);
# the browser tests are then skipped with the reason.
set -uo pipefail

bin="${PRECIMED_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$bin" ]; then
    echo "chromium: $bin is there ($("$bin" --version 2>/dev/null | head -n 1))"
    exit 0
fi
if [ "$bin" != "/usr/bin/chromium" ]; then
    echo "chromium: PRECIMED_CHROMIUM=$bin is not an executable file; unset it to install Debian's chromium" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: /usr/bin/chromium is missing and apt-get is not available (not Debian/Ubuntu?);" \
         "install Chromium by hand and set PRECIMED_CHROMIUM to its path" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "chromium: /usr/bin/chromium is missing, and installing it needs root (sudo without a password is" \
         "not available); run: sudo apt-get install chromium" >&2
    exit 1
fi

echo "chromium: installing Debian's chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -qq >/dev/null; then
    echo "chromium: apt-get update failed (no network or no package source?)" >&2
    exit 1
fi
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    echo "chromium: apt-get install chromium failed (see apt's messages above)" >&2
    exit 1
fi
if [ ! -x "$bin" ]; then
    echo "chromium: apt-get installed the package but $bin is not there" >&2
    exit 1
fi
echo "chromium: installed $("$bin" --version 2>/dev/null | head -n 1)"
