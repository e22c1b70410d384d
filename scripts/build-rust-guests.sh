#!/usr/bin/env bash
# Build the Rust guest components (the guests/ cargo workspace) for
# wasm32-wasip2 in release and copy them to OUT_DIR:
#
#   default_dialplan.wasm    the default dialplan          (world dialplan)
#   contact_helpers.wasm     sofia_contact & co.           (world contact-helpers)
#   hostile_dialplan.wasm    test only: misbehaves on demand (world dialplan-with-outbound)
#   versioned_dialplan.wasm  test only: patchable version  (world dialplan)
#   quick_dialplan.wasm      test only: no WASI, slow on demand (world dialplan)
#
#   scripts/build-rust-guests.sh OUT_DIR
#
# Runnable from any directory. Adds the wasm32-wasip2 rustup target when it
# is missing. Honours CARGO_TARGET_DIR (default: the repository's target/).
# Cargo itself skips work that is up to date.
set -euo pipefail

die() { echo "build-rust-guests: error: $*" >&2; exit 1; }
log() { echo "build-rust-guests: $*" >&2; }

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd -- "$SCRIPT_DIR/.." && pwd)"
GUESTS="$REPO/guests"
TARGET=wasm32-wasip2
COMPONENTS=(default_dialplan contact_helpers hostile_dialplan versioned_dialplan quick_dialplan)

[ $# -eq 1 ] || die "usage: $0 OUT_DIR"
[ -f "$GUESTS/Cargo.toml" ] || die "missing $GUESTS/Cargo.toml"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup"

mkdir -p -- "$1" || die "cannot create $1"
OUT_DIR="$(cd -- "$1" && pwd)"

# A relative CARGO_TARGET_DIR would be resolved against guests/ below;
# resolve it against the caller's directory instead.
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
case "$TARGET_DIR" in
    /*) ;;
    *) TARGET_DIR="$PWD/$TARGET_DIR" ;;
esac
export CARGO_TARGET_DIR="$TARGET_DIR"

# --- toolchain ------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    # Run inside guests/ so a rust-toolchain file there (if any) applies.
    if ! (cd "$GUESTS" && rustup target list --installed) | grep -qx "$TARGET"; then
        log "rustup target add $TARGET"
        (cd "$GUESTS" && rustup target add "$TARGET") || die "rustup target add $TARGET failed"
    fi
else
    log "rustup not found: assuming the $TARGET standard library is installed"
fi

# --- build ----------------------------------------------------------------
log "cargo build --release --target $TARGET (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$GUESTS" && cargo build --release --locked --target "$TARGET" --workspace) \
    || die "cargo build failed"

# --- copy -----------------------------------------------------------------
BUILT="$CARGO_TARGET_DIR/$TARGET/release"
for name in "${COMPONENTS[@]}"; do
    src="$BUILT/$name.wasm"
    [ -f "$src" ] || die "cargo did not produce $src"
    # Copy then rename, so a reader never sees a half-written component.
    cp -f -- "$src" "$OUT_DIR/.$name.wasm.tmp"
    mv -f -- "$OUT_DIR/.$name.wasm.tmp" "$OUT_DIR/$name.wasm"
done

for name in "${COMPONENTS[@]}"; do
    printf '%9d bytes  %s\n' "$(wc -c < "$OUT_DIR/$name.wasm")" "$OUT_DIR/$name.wasm"
done
