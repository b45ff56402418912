#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (as root) and run it all.
# Debian packages: Postfix, Dovecot, dnsmasq, swaks (the real peers); Python packages: in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-peers.sh
bash .ci/install-console.sh
bash .ci/install-postgres.sh
bash .ci/install-dnssec.sh
bash .ci/install-dkim.sh
bash .ci/install-clamav.sh
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q python3 python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
