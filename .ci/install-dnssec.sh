#!/usr/bin/env bash
# Install what the DANE/MTA-STS tests (tests/tls_policy/, tests/peers/dnssec.py) run: NSD as the
# authoritative server for signed test zones, unbound as the validating resolver in front of it, and
# ldnsutils (ldns-keygen, ldns-signzone) to sign the zones at test time. Idempotent: does nothing when
# all are there. The system-wide nsd and unbound services are not started (the tests run private
# instances on free loopback ports), and nothing is left bound to port 53.
set -euo pipefail

PACKAGES=(nsd unbound ldnsutils)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-dnssec: already installed: ${PACKAGES[*]}"
else
    echo "install-dnssec: installing (missing: ${missing[*]})"
    # Keep maintainer scripts from starting nsd/unbound: policy-rc.d exit 101.
    # Only a policy we put there ourselves is removed again.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# install-dnssec.sh: start no services during this install\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    install_packages() {
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends \
            "${PACKAGES[@]}"
    }
    # Refresh the package lists only when they do not know the packages yet (or the install fails on stale lists).
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        apt-get -o DPkg::Lock::Timeout=900 update -qq
    fi
    if ! install_packages; then
        apt-get -o DPkg::Lock::Timeout=900 update -qq
        install_packages
    fi
fi

# Whatever started them (a boot with systemd, another installer), the system-wide services stay down.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now nsd.service unbound.service >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
    for name in nsd unbound; do
        service "$name" status >/dev/null 2>&1 && service "$name" stop >/dev/null 2>&1 || true
    done
fi

for cmd in nsd nsd-checkconf unbound unbound-checkconf ldns-keygen ldns-signzone; do
    command -v "$cmd" >/dev/null || { echo "install-dnssec: $cmd not found" >&2; exit 1; }
done
echo "install-dnssec: ok (nsd $(nsd -v 2>&1 | head -1 | awk '{print $3}'), $(unbound -V 2>/dev/null | head -1))"
