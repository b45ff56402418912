#!/usr/bin/env bash
# Install what the console's browser test drives: Debian's chromium and its chromedriver
# (tests/console/test_console_browser.py, through Selenium). Idempotent.
set -euo pipefail
. "$(dirname "$0")/apt.sh"

ensure_packages install-console --no-recommends chromium chromium-driver
require_commands install-console chromium chromedriver
echo "install-console: ok ($(chromium --version 2>/dev/null | head -1))"
