#!/usr/bin/env bash
# Build the Python default dialplan (guests/python) into a WebAssembly
# component: OUT_DIR/default_dialplan_py.wasm.
#
#   scripts/build-python-guest.sh [OUT_DIR]     (default: build/components)
#
# Installs the toolchain pinned in guests/python/requirements.txt into a venv
# at build/venv-py (skipped when the pinned versions are already there), and
# skips the build when the output is newer than every source. Set FORCE=1 to
# rebuild anyway. Runnable from any directory.
set -euo pipefail

die() { echo "build-python-guest: error: $*" >&2; exit 1; }
log() { echo "build-python-guest: $*" >&2; }

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd -- "$SCRIPT_DIR/.." && pwd)"
GUEST="$REPO/guests/python"
WIT="$REPO/wit"
VENV="$REPO/build/venv-py"
REQS="$GUEST/requirements.txt"
PYTHON="${PYTHON:-python3}"

[ $# -le 1 ] || die "usage: $0 [OUT_DIR]"
OUT_DIR="${1:-$REPO/build/components}"
mkdir -p -- "$OUT_DIR" || die "cannot create $OUT_DIR"
OUT_DIR="$(cd -- "$OUT_DIR" && pwd)"
OUT="$OUT_DIR/default_dialplan_py.wasm"

[ -f "$GUEST/app.py" ] || die "missing $GUEST/app.py"
[ -f "$REQS" ] || die "missing $REQS"
[ -d "$WIT" ] || die "missing WIT package $WIT"

mkdir -p -- "$REPO/build"
# One build at a time per checkout (the venv and the output are shared).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$REPO/build/.build-python-guest.lock"
    flock 9
fi

# --- toolchain ------------------------------------------------------------
# Exit 0 when every `name==version` line of requirements.txt is installed.
reqs_satisfied() {
    "$VENV/bin/python" - "$REQS" <<'EOF'
import re, sys
from importlib import metadata
ok = True
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)", line)
    if not m:
        print(f"unpinned requirement: {line}", file=sys.stderr)
        ok = False
        continue
    try:
        have = metadata.version(m.group(1))
    except metadata.PackageNotFoundError:
        have = None
    if have != m.group(2):
        ok = False
sys.exit(0 if ok else 1)
EOF
}

if [ -e "$VENV" ] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    log "$VENV is broken (its Python is gone?): recreating it"
    rm -rf -- "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    command -v "$PYTHON" >/dev/null 2>&1 \
        || die "$PYTHON not found: install Python 3 (3.10 or later), or set PYTHON=/path/to/python3"
    log "creating venv $VENV"
    "$PYTHON" -m venv "$VENV" \
        || die "'$PYTHON -m venv' failed (on Debian: apt-get install python3-venv)"
fi
if ! reqs_satisfied; then
    log "installing $(grep -Ev '^\s*(#|$)' "$REQS" | tr '\n' ' ')into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" \
        || die "pip install -r $REQS failed"
    reqs_satisfied || die "pinned versions of $REQS still not installed in $VENV"
fi
COMPONENTIZE_PY="$VENV/bin/componentize-py"
[ -x "$COMPONENTIZE_PY" ] || die "componentize-py missing from $VENV (pip install -r $REQS)"

# --- up to date? ----------------------------------------------------------
if [ "${FORCE:-0}" != 1 ] && [ -f "$OUT" ]; then
    newer="$(find "$GUEST" "$WIT" "${BASH_SOURCE[0]}" -type f \
        \( -name '*.py' -o -name '*.wit' -o -name '*.txt' -o -name '*.sh' \) \
        -not -path '*/__pycache__/*' -newer "$OUT" -print -quit)"
    if [ -z "$newer" ]; then
        log "up to date: $OUT"
        exit 0
    fi
fi

# --- build ----------------------------------------------------------------
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/dialtone-py-guest.XXXXXX")"
TMP_OUT="$OUT.tmp.$$"
trap 'rm -rf -- "$STAGE" "$TMP_OUT"' EXIT
mkdir -p "$STAGE/wit" "$STAGE/src"

cp -- "$WIT"/*.wit "$STAGE/wit/"

# Only the guest's own modules go into the component (no caches, no tests).
find "$GUEST" -maxdepth 1 -type f -name '*.py' -not -name 'test_*' -exec cp -- {} "$STAGE/src/" \;

log "componentize-py $("$COMPONENTIZE_PY" --version | awk '{print $NF}') -> $OUT"
start=$(date +%s.%N)
(cd "$STAGE" && "$COMPONENTIZE_PY" -d "$STAGE/wit" -w dialplan componentize app -p "$STAGE/src" -o "$TMP_OUT") \
    || die "componentize-py failed"
end=$(date +%s.%N)

# Check the world the component really has: host imports only what the
# switch provides (no wasi:http), and it exports the router.
if [ -x "$VENV/bin/wasm-tools" ]; then
    world="$("$VENV/bin/wasm-tools" component wit "$TMP_OUT")" || die "wasm-tools cannot read the component"
    if grep -Eq '^[[:space:]]*import wasi:http/' <<<"$world"; then
        die "component imports wasi:http, which the switch refuses"
    fi
    grep -Eq '^[[:space:]]*export dialtone:switch/router@' <<<"$world" \
        || die "component does not export dialtone:switch/router"
    log "imports: $(grep -Eo '^[[:space:]]*import [^;]+' <<<"$world" | awk '{print $2}' | paste -sd' ')"
fi

mv -f -- "$TMP_OUT" "$OUT"
size=$(stat -c %s "$OUT")
log "wrote $OUT ($(awk -v s="$size" 'BEGIN{printf "%.1f MB", s/1e6}'), $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f s", b-a}'))"
