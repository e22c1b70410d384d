#!/usr/bin/env bash
# Installs the real SIP peers and tools that Dialtone's end-to-end tests run
# against (see tests/sip/README.md):
#
#   Debian packages: sip-tester (sipp), sipsak, baresip, tshark, sox, kamailio,
#                    openssl (the TLS audio test makes its certificates with it),
#                    rtpengine-daemon (the RTP benchmark's baseline relay),
#                    prometheus (its promtool checks /metrics)
#   PyPI:            sipvicious, in a venv at build/venv-sipvicious
#                    (entry points sipvicious_svwar, sipvicious_svmap, ...)
#
#   scripts/install-peers.sh            install what is missing, print versions
#   scripts/install-peers.sh --check    install nothing; exit 1 if anything is missing
#
# Idempotent and fast when everything is present: each tool is looked up with
# `command -v` first, and apt-get update/install only run when something is
# missing. Runs as root; as another user it uses sudo when sudo exists.
# Exits non-zero, naming what is missing, if any tool is absent afterwards.
# Runnable from any directory.
set -euo pipefail

die() { echo "install-peers: error: $*" >&2; exit 1; }
log() { echo "install-peers: $*" >&2; }

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd -- "$SCRIPT_DIR/.." && pwd)"
VENV="${SIPVICIOUS_VENV:-$REPO/build/venv-sipvicious}"
PYTHON="${PYTHON:-python3}"
SIPVICIOUS_VERSION="${SIPVICIOUS_VERSION:-0.3.8}"

CHECK_ONLY=0
case "${1:-}" in
    "") ;;
    --check) CHECK_ONLY=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "usage: $0 [--check]" ;;
esac

# command -> Debian package that provides it
DEB_TOOLS=(
    "sipp:sip-tester"
    "sipsak:sipsak"
    "baresip:baresip"
    "tshark:tshark"
    "sox:sox"
    "kamailio:kamailio"
    "openssl:openssl"
    "rtpengine:rtpengine-daemon"
    "promtool:prometheus"
)

missing_debs() {
    local entry cmd pkg out=()
    for entry in "${DEB_TOOLS[@]}"; do
        cmd="${entry%%:*}"; pkg="${entry#*:}"
        command -v "$cmd" >/dev/null 2>&1 || out+=("$pkg")
    done
    echo "${out[*]:-}"
}

SVWAR="$VENV/bin/sipvicious_svwar"
sipvicious_ok() {
    [ -x "$SVWAR" ] && "$VENV/bin/python" - "$SIPVICIOUS_VERSION" >/dev/null 2>&1 <<'EOF'
import sys
from importlib import metadata
import sipvicious  # noqa: F401
sys.exit(0 if metadata.version("sipvicious") == sys.argv[1] else 1)
EOF
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "not root and sudo not found: cannot run '$*'"
    fi
}

# --- Debian packages --------------------------------------------------------
need="$(missing_debs)"
if [ -n "$need" ] && [ "$CHECK_ONLY" = 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing $need and apt-get is not available"
    log "installing Debian packages: $need"
    # tshark's dumpcap would otherwise ask whether non-root users may capture.
    echo "wireshark-common wireshark-common/install-setuid boolean false" \
        | as_root debconf-set-selections
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        || die "apt-get update failed"
    # shellcheck disable=SC2086
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends $need \
        || die "apt-get install $need failed"
fi

# --- sipvicious (PyPI) in a venv -----------------------------------------
if ! sipvicious_ok && [ "$CHECK_ONLY" = 0 ]; then
    mkdir -p -- "$(dirname -- "$VENV")"
    if [ -e "$VENV" ] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        log "$VENV is broken: recreating it"
        rm -rf -- "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (needed for the sipvicious venv)"
        log "creating venv $VENV"
        if ! "$PYTHON" -m venv "$VENV"; then
            # Debian's own python3 needs python3-venv for this.
            rm -rf -- "$VENV"
            command -v apt-get >/dev/null 2>&1 \
                || die "'$PYTHON -m venv' failed (on Debian: apt-get install python3-venv)"
            log "'$PYTHON -m venv' failed: installing python3-venv"
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv \
                || { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
                     && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv; } \
                || die "apt-get install python3-venv failed"
            "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv' failed even with python3-venv"
        fi
    fi
    log "installing sipvicious==$SIPVICIOUS_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "sipvicious==$SIPVICIOUS_VERSION" \
        || die "pip install sipvicious==$SIPVICIOUS_VERSION failed"
fi

# --- verify -------------------------------------------------------------------
still="$(missing_debs)"
problems=()
[ -z "$still" ] || problems+=("Debian packages: $still")
sipvicious_ok || problems+=("sipvicious (expected $SVWAR)")
if [ "${#problems[@]}" -gt 0 ]; then
    for p in "${problems[@]}"; do echo "install-peers: MISSING: $p" >&2; done
    if [ "$CHECK_ONLY" = 1 ]; then
        die "some peers are missing; run $0 without --check to install them"
    fi
    die "some peers are still missing after installing"
fi

"$SCRIPT_DIR/install-esl-clients.sh" $([ "$CHECK_ONLY" = 1 ] && echo --check)  # ESL clients modesl + genesis (tests/esl)
first_line() { "$@" 2>&1 | grep -m1 -Ev '^[[:space:]]*$|^Running as user' || true; }
echo "sipp:       $(first_line sipp -v | sed 's/^[[:space:]]*//')"
echo "sipsak:     $(first_line sipsak -V)"
echo "baresip:    $(dpkg-query -W -f='${Version}' baresip-core 2>/dev/null || dpkg-query -W -f='${Version}' baresip 2>/dev/null || echo '?') ($(command -v baresip))"
echo "tshark:     $(first_line tshark -v)"
echo "sox:        $(first_line sox --version)"
echo "kamailio:   $(first_line kamailio -v)"
echo "sipvicious: $("$VENV/bin/python" -c 'from importlib import metadata; print(metadata.version("sipvicious"))') ($SVWAR)"
