# Shared by the .ci/install-*.sh scripts (sourced, not run): install Debian packages only when missing.
#
#   ensure_packages TAG [--no-recommends] [--no-services] [--before FUNCTION] PACKAGE...
#
# Does nothing but say so when every PACKAGE is installed. Otherwise: runs FUNCTION
# (e.g. debconf answers), keeps maintainer scripts from starting services
# (--no-services: a policy-rc.d that exits 101, removed again when the calling
# script exits, and only if we put it there), refreshes the package lists only
# when they do not know the packages yet, and installs; an install that fails
# (stale lists) is retried once after `apt-get update`. TAG prefixes every message.
#
#   require_commands TAG COMMAND...
#
# Fails, naming it, when a COMMAND is not on PATH.

APT=(apt-get -o DPkg::Lock::Timeout=900)

ensure_packages() {
    local tag=$1 recommends=() services=yes before=""
    shift
    while [[ $# -gt 0 && $1 == --* ]]; do
        case $1 in
            --no-recommends) recommends=(--no-install-recommends) ;;
            --no-services) services=no ;;
            --before) before=$2; shift ;;
            *) echo "$tag: ensure_packages: unknown option $1" >&2; return 2 ;;
        esac
        shift
    done
    local packages=("$@") missing=() pkg
    for pkg in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        echo "$tag: already installed: ${packages[*]}"
        return 0
    fi
    echo "$tag: installing (missing: ${missing[*]})"
    [[ -z $before ]] || "$before"
    if [[ $services == no && ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# %s: start no services during this install\nexit 101\n' "$tag" >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        "${APT[@]}" update -qq
    fi
    if ! DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -q "${recommends[@]}" "${packages[@]}"; then
        "${APT[@]}" update -qq
        DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -q "${recommends[@]}" "${packages[@]}"
    fi
}

require_commands() {
    local tag=$1 cmd
    shift
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null || { echo "$tag: $cmd not found" >&2; exit 1; }
    done
}
