#!/usr/bin/env bash
# Benchmarks. DIALTONE_BENCH_SMOKE=1 runs a short smoke pass (CI); otherwise
# the full runs whose results docs/BENCHMARKS.md records, plus instruction
# counts per route under valgrind's callgrind when valgrind is installed.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dialtone-target}"
export DIALTONE_COMPONENTS="${DIALTONE_COMPONENTS:-$REPO/build/components}"

cargo bench -q -p dialtone-dialplan --bench route -- --bench
cargo bench -q -p dialtone-media --bench relay
# The CDR journal's writer thread alone: CPU per CDR at 2000 calls/s
# (smoke: 2000 calls).
if [ "${DIALTONE_BENCH_SMOKE:-0}" = 1 ]; then cdr_calls=2000; else cdr_calls=30000; fi
cargo run -q --release -p dialtone-cdr --example journal_load -- "$cdr_calls" 2000
# SIP load against Kamailio (smoke: one low rate, a few hundred REGISTERs).
scripts/bench-sip.sh
# RTP: concurrent calls with media both ways against Kamailio + rtpengine
# (smoke: 50 calls, 5 s window).
scripts/bench-rtp.sh

if [ "${DIALTONE_BENCH_SMOKE:-0}" != 1 ] && command -v valgrind >/dev/null; then
  bin=$(ls -t "$CARGO_TARGET_DIR"/release/deps/route-* | grep -v '\.d$' | head -n1)
  out=$(mktemp -d)
  for n in 200 1200; do
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.$n" "$bin" --callgrind "$n" >/dev/null 2>"$out/log.$n"
  done
  a=$(grep -E '^summary:|^totals:' "$out/cg.200" | head -n1 | awk '{print $2}')
  b=$(grep -E '^summary:|^totals:' "$out/cg.1200" | head -n1 | awk '{print $2}')
  echo "{\"bench\":\"rust_route_fresh_callgrind\",\"instructions_per_route\":$(( (b - a) / 1000 ))}"
  rm -rf "$out"
fi
