#!/usr/bin/env bash
# Install Debian's PostgreSQL 15 server for the postgres queue tests (tests/peers/postgres.py starts
# a private cluster with initdb + pg_ctl in a temp dir; the system cluster is never started).
# Idempotent: does nothing when the server is there. Leaves the system cluster `main` down.
set -euo pipefail

. "$(dirname "$0")/apt.sh"

BIN=/usr/lib/postgresql/15/bin
ensure_packages install-postgres --no-recommends --no-services postgresql-15 postgresql-client-15

# Whatever started it (a boot with systemd, another installer), the system cluster stays down:
# the tests run their own clusters on free loopback ports.
if command -v pg_lsclusters >/dev/null 2>&1 && pg_lsclusters -h 2>/dev/null | awk '$4 == "online"' | grep -q .; then
    pg_lsclusters -h | awk '$4 == "online" {print $1, $2}' | while read -r version cluster; do
        pg_ctlcluster "$version" "$cluster" stop || true
    done
fi

for cmd in initdb pg_ctl postgres; do
    [[ -x "$BIN/$cmd" ]] || { echo "install-postgres: $BIN/$cmd not found" >&2; exit 1; }
done
id postgres >/dev/null 2>&1 || { echo "install-postgres: no postgres user" >&2; exit 1; }
require_commands install-postgres runuser
echo "install-postgres: ok ($("$BIN/postgres" --version))"
