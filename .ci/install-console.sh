#!/usr/bin/env bash
# Install what the console's browser test drives: Debian's chromium and its chromedriver
# (tests/console/test_console_browser.py, through Selenium). Idempotent.
set -euo pipefail

PACKAGES=(chromium chromium-driver)
missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]} == 0)); then
    echo "install-console: already installed: ${PACKAGES[*]}"
else
    echo "install-console: installing ${missing[*]}"
    install_packages() {
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends \
            "${PACKAGES[@]}"
    }
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        apt-get -o DPkg::Lock::Timeout=900 update -qq
    fi
    if ! install_packages; then
        apt-get -o DPkg::Lock::Timeout=900 update -qq
        install_packages
    fi
fi
for cmd in chromium chromedriver; do
    command -v "$cmd" >/dev/null || { echo "install-console: $cmd not found" >&2; exit 1; }
done
echo "install-console: ok ($(chromium --version 2>/dev/null | head -1))"
