#!/usr/bin/env bash
# Install Debian's PostgreSQL 15 server for the postgres queue tests (tests/peers/postgres.py starts
# a private cluster with initdb + pg_ctl in a temp dir; the system cluster is never started).
# Idempotent: does nothing when the server is there. Leaves the system cluster `main` down.
set -euo pipefail

PACKAGES=(postgresql-15 postgresql-client-15)
BIN=/usr/lib/postgresql/15/bin

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-postgres: already installed: ${PACKAGES[*]}"
else
    echo "install-postgres: installing (missing: ${missing[*]})"
    # Keep maintainer scripts from starting the system cluster: policy-rc.d exit 101.
    # Only a policy we put there ourselves is removed again.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# install-postgres.sh: start no services during this install\nexit 101\n' \
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
command -v runuser >/dev/null || { echo "install-postgres: runuser not found" >&2; exit 1; }
echo "install-postgres: ok ($("$BIN/postgres" --version))"
