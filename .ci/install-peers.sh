#!/usr/bin/env bash
# Install the real programs the test peers run (tests/peers/): Postfix, Dovecot
# (core + pop3d), dnsmasq, swaks, dig and nmap. Idempotent: does nothing when all are
# there. The system-wide Postfix and Dovecot services are not started (the
# tests run private instances on loopback ports), and nothing is left bound to
# port 25 or 110.
set -euo pipefail

. "$(dirname "$0")/apt.sh"

# Postfix must ask nothing and write no /etc/postfix/main.cf of its own.
postfix_answers() {
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
}
ensure_packages install-peers --no-services --before postfix_answers \
    postfix dovecot-core dovecot-pop3d dnsmasq-base swaks dnsutils nmap

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

require_commands install-peers postfix postqueue dovecot doveadm dnsmasq swaks dig script nmap
echo "install-peers: ok ($(postconf -d -h mail_version 2>/dev/null | sed 's/^/postfix /'), dovecot $(dovecot --version | cut -d' ' -f1), $(dnsmasq --version | head -1 | cut -d' ' -f1-3))"
