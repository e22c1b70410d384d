#!/usr/bin/env bash
# Builds every guest component into OUT_DIR (default build/components):
# the Rust ones (SDK, default dialplan, contact helpers, test guests), the
# JavaScript and the Python default dialplans. Each step installs its own
# toolchain (rustup target, npm packages, a Python venv) when missing and
# skips work whose output is newer than its sources.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/build/components}"
mkdir -p "$OUT"
"$REPO/scripts/build-rust-guests.sh" "$OUT"
"$REPO/scripts/build-js-guest.sh" "$OUT"
"$REPO/scripts/build-python-guest.sh" "$OUT"
