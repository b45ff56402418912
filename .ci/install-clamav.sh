#!/usr/bin/env bash
# Install Debian's ClamAV daemon for the clamav plugin's tests (tests/peers/clamd.py starts a private clamd
# with its own config, socket and a small signature database made for the tests; freshclam is never run:
# there is no network). Idempotent: does nothing when clamd is there. Leaves the system services down.
set -euo pipefail

. "$(dirname "$0")/apt.sh"

CLAMD=/usr/sbin/clamd
ensure_packages install-clamav --no-recommends --no-services clamav-daemon

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
