#!/usr/bin/env bash
# Install what the DANE/MTA-STS tests (tests/tls_policy/, tests/peers/dnssec.py) run: NSD as the
# authoritative server for signed test zones, unbound as the validating resolver in front of it, and
# ldnsutils (ldns-keygen, ldns-signzone) to sign the zones at test time. Idempotent: does nothing when
# all are there. The system-wide nsd and unbound services are not started (the tests run private
# instances on free loopback ports), and nothing is left bound to port 53.
set -euo pipefail

. "$(dirname "$0")/apt.sh"

ensure_packages install-dnssec --no-recommends --no-services nsd unbound ldnsutils

# Whatever started them (a boot with systemd, another installer), the system-wide services stay down.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now nsd.service unbound.service >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
    for name in nsd unbound; do
        service "$name" status >/dev/null 2>&1 && service "$name" stop >/dev/null 2>&1 || true
    done
fi

require_commands install-dnssec nsd nsd-checkconf unbound unbound-checkconf ldns-keygen ldns-signzone
echo "install-dnssec: ok (nsd $(nsd -v 2>&1 | head -1 | awk '{print $3}'), $(unbound -V 2>/dev/null | head -1))"
