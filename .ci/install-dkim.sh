#!/usr/bin/env bash
# Install the DKIM verifiers the tests check mailpipe's signatures with (tests/dkim/verifiers.py):
# OpenDKIM's filter in test mode (Debian opendkim, opendkim-tools; RSA and Ed25519, keys from a file) and
# Perl's Mail::DKIM (libmail-dkim-perl; keys from a test dnsmasq). The opendkim service is never started.
# Idempotent: does nothing when they are there.
set -euo pipefail

. "$(dirname "$0")/apt.sh"

ensure_packages install-dkim --no-recommends --no-services opendkim opendkim-tools libmail-dkim-perl

require_commands install-dkim opendkim
perl -MMail::DKIM::Verifier -e 1 || { echo "install-dkim: Mail::DKIM not usable" >&2; exit 1; }
echo "install-dkim: ok ($(opendkim -V 2>&1 | head -1); Mail::DKIM $(perl -MMail::DKIM -e 'print $Mail::DKIM::VERSION'))"
