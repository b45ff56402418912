#!/usr/bin/env bash
# Install the DKIM verifiers the tests check mailpipe's signatures with (tests/dkim/verifiers.py):
# OpenDKIM's filter in test mode (Debian opendkim, opendkim-tools; RSA and Ed25519, keys from a file) and
# Perl's Mail::DKIM (libmail-dkim-perl; keys from a test dnsmasq). The opendkim service is never started.
# Idempotent: does nothing when they are there.
set -euo pipefail

PACKAGES=(opendkim opendkim-tools libmail-dkim-perl)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-dkim: already installed: ${PACKAGES[*]}"
else
    echo "install-dkim: installing (missing: ${missing[*]})"
    # Keep maintainer scripts from starting the opendkim service: policy-rc.d exit 101.
    # Only a policy we put there ourselves is removed again.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# install-dkim.sh: start no services during this install\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
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

command -v opendkim >/dev/null || { echo "install-dkim: opendkim not found" >&2; exit 1; }
perl -MMail::DKIM::Verifier -e 1 || { echo "install-dkim: Mail::DKIM not usable" >&2; exit 1; }
echo "install-dkim: ok ($(opendkim -V 2>&1 | head -1); Mail::DKIM $(perl -MMail::DKIM -e 'print $Mail::DKIM::VERSION'))"
