#!/usr/bin/env bash
# Install the real programs the test peers run (tests/peers/): Postfix, Dovecot
# (core + pop3d), dnsmasq, swaks and dig. Idempotent: does nothing when all are
# there. The system-wide Postfix and Dovecot services are not started (the
# tests run private instances on loopback ports), and nothing is left bound to
# port 25 or 110.
set -euo pipefail

PACKAGES=(postfix dovecot-core dovecot-pop3d dnsmasq-base swaks dnsutils nmap)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-peers: already installed: ${PACKAGES[*]}"
else
    echo "install-peers: installing (missing: ${missing[*]})"
    # Postfix must ask nothing and write no /etc/postfix/main.cf of its own.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

    # Keep maintainer scripts from starting services: policy-rc.d exit 101.
    # Only a policy we put there ourselves is removed again.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# install-peers.sh: start no services during this install\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi

    install_packages() {
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q "${PACKAGES[@]}"
    }
    # Refresh the package lists only when they do not know the packages yet
    # (or the install fails on stale lists).
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        apt-get -o DPkg::Lock::Timeout=900 update -qq
    fi
    if ! install_packages; then
        apt-get -o DPkg::Lock::Timeout=900 update -qq
        install_packages
    fi
fi

# Whatever happened before (another installer, a boot with systemd), the
# system-wide instances must not run: stop them through their own tools.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now postfix.service dovecot.service >/dev/null 2>&1 || true
fi
if [[ -f /etc/postfix/main.cf ]] && postfix status >/dev/null 2>&1; then
    postfix stop || true
fi
if [[ -s /run/dovecot/master.pid ]] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
    doveadm stop || true
fi

if command -v ss >/dev/null 2>&1; then
    if ss -Hltn '( sport = :25 or sport = :110 )' | grep -q .; then
        echo "install-peers: something listens on port 25 or 110:" >&2
        ss -ltnp '( sport = :25 or sport = :110 )' >&2
        exit 1
    fi
fi

for cmd in postfix postqueue dovecot doveadm dnsmasq swaks dig script; do
    command -v "$cmd" >/dev/null || { echo "install-peers: $cmd not found" >&2; exit 1; }
done
echo "install-peers: ok ($(postconf -d -h mail_version 2>/dev/null | sed 's/^/postfix /'), dovecot $(dovecot --version | cut -d' ' -f1), $(dnsmasq --version | head -1 | cut -d' ' -f1-3))"
