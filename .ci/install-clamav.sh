#!/usr/bin/env bash
# Install Debian's ClamAV daemon for the clamav plugin's tests (tests/peers/clamd.py starts a private clamd
# with its own config, socket and a small signature database made for the tests; freshclam is never run:
# there is no network). Idempotent: does nothing when clamd is there. Leaves the system services down.
set -euo pipefail

PACKAGES=(clamav-daemon)
CLAMD=/usr/sbin/clamd

if dpkg-query -W -f='${Status}\n' clamav-daemon 2>/dev/null | grep -q '^install ok installed$'; then
    echo "install-clamav: already installed: ${PACKAGES[*]}"
else
    echo "install-clamav: installing ${PACKAGES[*]}"
    # Keep maintainer scripts from starting clamav-daemon and clamav-freshclam: policy-rc.d exit 101.
    # Only a policy we put there ourselves is removed again.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# install-clamav.sh: start no services during this install\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    install_packages() {
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends \
            "${PACKAGES[@]}"
    }
    # Refresh the package lists only when they do not know the packages yet (or the install fails on stale lists).
    if ! apt-cache show "${PACKAGES[@]}" >/dev/null 2>&1; then
        apt-get -o DPkg::Lock::Timeout=900 update -qq
    fi
    if ! install_packages; then
        apt-get -o DPkg::Lock::Timeout=900 update -qq
        install_packages
    fi
fi

# Whatever started them (a boot with systemd, another installer), the system daemons stay down: the tests
# run their own clamd. Stopped by their pid files only, never by name.
for pidfile in /run/clamav/clamd.pid /run/clamav/freshclam.pid; do
    if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")" || true
    fi
done

[[ -x "$CLAMD" ]] || { echo "install-clamav: $CLAMD not found" >&2; exit 1; }
id clamav >/dev/null 2>&1 || { echo "install-clamav: no clamav user" >&2; exit 1; }
echo "install-clamav: ok ($("$CLAMD" --version))"
