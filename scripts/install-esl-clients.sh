#!/usr/bin/env bash
# Installs the third-party event socket (ESL) clients that Dialtone's ESL
# end-to-end tests (runtime/switch/tests/esl.rs) drive the switch with:
#
#   npm:  modesl, pinned by tests/esl/package.json + package-lock.json,
#         into tests/esl/node_modules (npm ci)
#   PyPI: genesis, pinned by tests/esl/requirements.txt, into the venv
#         build/venv-esl
#
#   scripts/install-esl-clients.sh            install what is missing
#   scripts/install-esl-clients.sh --check    install nothing; exit 1 if anything is missing
#
# Idempotent and fast when everything is present (no registry is asked
# then). Needs node/npm and python3 (with venv; on Debian python3-venv is
# installed when missing); genesis needs Python >=3.10,<3.13, so the first
# of $PYTHON, python3, python3.12, python3.11, python3.10 in that range is
# used. Exits non-zero, naming what is missing, if a
# client is absent afterwards. Runnable from any directory.
set -euo pipefail

die() { echo "install-esl-clients: error: $*" >&2; exit 1; }
log() { echo "install-esl-clients: $*" >&2; }

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd -- "$SCRIPT_DIR/.." && pwd)"
ESL="$REPO/tests/esl"
VENV="${ESL_VENV:-$REPO/build/venv-esl}"
PYTHON="${PYTHON:-}"

CHECK_ONLY=0
case "${1:-}" in
    "") ;;
    --check) CHECK_ONLY=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "usage: $0 [--check]" ;;
esac

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "not root and sudo not found: cannot run '$*'"
    fi
}

# --- modesl (npm) ------------------------------------------------------------
want_modesl() {
    node -e 'process.stdout.write(require(process.argv[1]).dependencies.modesl)' \
        "$ESL/package.json"
}
modesl_ok() {
    command -v node >/dev/null 2>&1 || return 1
    [ -f "$ESL/node_modules/modesl/package.json" ] || return 1
    # npm ci writes node_modules/.package-lock.json: a lock file changed
    # since then means a reinstall.
    [ -f "$ESL/node_modules/.package-lock.json" ] || return 1
    [ "$ESL/package-lock.json" -ot "$ESL/node_modules/.package-lock.json" ] || return 1
    [ "$(node -e 'process.stdout.write(require(process.argv[1]).version)' "$ESL/node_modules/modesl/package.json")" = "$(want_modesl)" ]
}

if ! modesl_ok && [ "$CHECK_ONLY" = 0 ]; then
    command -v node >/dev/null 2>&1 || die "node not found (needed for modesl; on Debian: apt-get install nodejs npm)"
    command -v npm >/dev/null 2>&1 || die "npm not found (needed for modesl; on Debian: apt-get install npm)"
    log "installing modesl into $ESL/node_modules (npm ci)"
    (cd "$ESL" && npm ci --no-audit --no-fund --loglevel=error) \
        || die "npm ci in $ESL failed"
fi

# --- genesis (PyPI) in a venv ----------------------------------------------
# A Python that genesis supports.
pick_python() {
    local p
    for p in ${PYTHON:-} python3 python3.12 python3.11 python3.10; do
        command -v "$p" >/dev/null 2>&1 || continue
        "$p" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 13) else 1)' \
            >/dev/null 2>&1 && { echo "$p"; return 0; }
    done
    return 1
}
want_genesis() {
    sed -n 's/^genesis==\([^[:space:]]*\).*/\1/p' "$ESL/requirements.txt"
}
genesis_ok() {
    # Installed from this requirements.txt (a copy is kept in the venv)...
    cmp -s "$ESL/requirements.txt" "$VENV/.dialtone-requirements.txt" || return 1
    # ...and, without importing genesis (slow), its version and its package.
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$(want_genesis)" >/dev/null 2>&1 <<'PY'
import sys
from importlib import metadata, util
ok = metadata.version("genesis") == sys.argv[1] and util.find_spec("genesis") is not None
sys.exit(0 if ok else 1)
PY
}

if ! genesis_ok && [ "$CHECK_ONLY" = 0 ]; then
    mkdir -p -- "$(dirname -- "$VENV")"
    if [ -e "$VENV" ] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        log "$VENV is broken: recreating it"
        rm -rf -- "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        PYTHON="$(pick_python)" \
            || die "no Python >=3.10,<3.13 found (genesis needs one; tried ${PYTHON:-} python3 python3.12 python3.11 python3.10)"
        log "creating venv $VENV with $PYTHON"
        if ! "$PYTHON" -m venv "$VENV"; then
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
    log "installing $(grep -m1 '^genesis==' "$ESL/requirements.txt") into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$ESL/requirements.txt" \
        || die "pip install -r $ESL/requirements.txt failed"
    cp -- "$ESL/requirements.txt" "$VENV/.dialtone-requirements.txt"
fi

# --- verify -------------------------------------------------------------------
problems=()
modesl_ok || problems+=("modesl $(want_modesl 2>/dev/null || echo '?') in $ESL/node_modules (npm ci in tests/esl)")
genesis_ok || problems+=("genesis $(want_genesis) in $VENV (pip install -r tests/esl/requirements.txt)")
if [ "${#problems[@]}" -gt 0 ]; then
    for p in "${problems[@]}"; do echo "install-esl-clients: MISSING: $p" >&2; done
    if [ "$CHECK_ONLY" = 1 ]; then
        die "some ESL clients are missing; run $0 without --check to install them"
    fi
    die "some ESL clients are still missing after installing"
fi
echo "modesl:     $(node -e 'process.stdout.write(require(process.argv[1]).version)' "$ESL/node_modules/modesl/package.json") ($ESL/node_modules)"
echo "genesis:    $("$VENV/bin/python" -c 'from importlib import metadata; print(metadata.version("genesis"))') ($VENV)"
