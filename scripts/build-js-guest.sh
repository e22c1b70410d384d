#!/usr/bin/env bash
# Build the JavaScript default dialplan (guests/js) into a WebAssembly
# component: OUT_DIR/default_dialplan_js.wasm.
#
#   scripts/build-js-guest.sh [OUT_DIR]     (default: build/components)
#
# Installs the toolchain pinned in guests/js/package.json and
# package-lock.json (npm ci; skipped when node_modules already holds the
# pinned versions), and skips the build when the output is newer than every
# source. Set FORCE=1 to rebuild anyway. Runnable from any directory.
set -euo pipefail

die() { echo "build-js-guest: error: $*" >&2; exit 1; }
log() { echo "build-js-guest: $*" >&2; }

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd -- "$SCRIPT_DIR/.." && pwd)"
GUEST="$REPO/guests/js"
WIT="$REPO/wit"
NODE_MAJOR_MIN=20

[ $# -le 1 ] || die "usage: $0 [OUT_DIR]"
OUT_DIR="${1:-$REPO/build/components}"
mkdir -p -- "$OUT_DIR" || die "cannot create $OUT_DIR"
OUT_DIR="$(cd -- "$OUT_DIR" && pwd)"
OUT="$OUT_DIR/default_dialplan_js.wasm"

for f in dialplan.js build.mjs package.json; do
    [ -f "$GUEST/$f" ] || die "missing $GUEST/$f"
done
[ -d "$WIT" ] || die "missing WIT package $WIT"

command -v node >/dev/null 2>&1 || die "node not found: install Node.js $NODE_MAJOR_MIN or later"
command -v npm >/dev/null 2>&1 || die "npm not found: install npm (Node.js $NODE_MAJOR_MIN or later)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge "$NODE_MAJOR_MIN" ] \
    || die "node $(node --version) is too old: componentize-js needs Node.js $NODE_MAJOR_MIN or later"

mkdir -p -- "$REPO/build"
# One build at a time per checkout (node_modules and the output are shared).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$REPO/build/.build-js-guest.lock"
    flock 9
fi

# --- toolchain ------------------------------------------------------------
# Exit 0 when every devDependency/dependency of package.json is installed in
# node_modules at exactly the pinned version.
deps_satisfied() {
    (cd "$GUEST" && node --input-type=module -e '
        import { readFileSync } from "node:fs";
        const pkg = JSON.parse(readFileSync("package.json", "utf8"));
        const want = { ...(pkg.dependencies || {}), ...(pkg.devDependencies || {}) };
        let ok = true;
        for (const [name, version] of Object.entries(want)) {
          let have;
          try {
            have = JSON.parse(readFileSync(`node_modules/${name}/package.json`, "utf8")).version;
          } catch { have = undefined; }
          if (have !== version) ok = false;
        }
        process.exit(ok ? 0 : 1);
    ') 2>/dev/null
}

# node_modules/.package-lock.json is npm's record of the last install; a
# package.json or lockfile edited since then means: install again.
installed_stamp="$GUEST/node_modules/.package-lock.json"
if ! deps_satisfied \
    || [ ! -f "$installed_stamp" ] \
    || [ "$GUEST/package.json" -nt "$installed_stamp" ] \
    || { [ -f "$GUEST/package-lock.json" ] && [ "$GUEST/package-lock.json" -nt "$installed_stamp" ]; }; then
    if [ -f "$GUEST/package-lock.json" ]; then
        log "npm ci in $GUEST"
        (cd "$GUEST" && npm ci --prefer-offline --no-audit --no-fund) || die "npm ci failed in $GUEST"
    else
        log "no package-lock.json: npm install in $GUEST (commit the lockfile it writes)"
        (cd "$GUEST" && npm install --prefer-offline --no-audit --no-fund) || die "npm install failed in $GUEST"
    fi
    deps_satisfied || die "the versions pinned in $GUEST/package.json are not what npm installed"
fi

# --- up to date? ----------------------------------------------------------
if [ "${FORCE:-0}" != 1 ] && [ -f "$OUT" ]; then
    newer="$(find "$GUEST" "$WIT" "${BASH_SOURCE[0]}" \
        \( -path "$GUEST/node_modules" -o -path "$GUEST/test" \) -prune -o -type f \
        \( -name '*.js' -o -name '*.mjs' -o -name '*.json' -o -name '*.wit' -o -name '*.sh' \) \
        -newer "$OUT" -print -quit)"
    if [ -z "$newer" ]; then
        log "up to date: $OUT"
        exit 0
    fi
fi

# --- build ----------------------------------------------------------------
# build.mjs escapes the WIT keywords used as case names in wit/types.wit,
# disables the http and fetch-event features (no wasi:http import), checks
# the component's imports and exports, and writes the output atomically.
log "componentize-js $(node -p 'require(process.argv[1]).version' "$GUEST/node_modules/@bytecodealliance/componentize-js/package.json") -> $OUT"
node "$GUEST/build.mjs" --wit "$WIT" --out "$OUT" >&2 || die "node build.mjs failed"
