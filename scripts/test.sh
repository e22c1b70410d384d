#!/usr/bin/env bash
# The whole test suite: guest components, host-side guest logic, the Rust
# workspace (unit, integration and end-to-end tests), then the benchmarks in
# smoke mode. Ends with one summary line of every test counted.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dialtone-target}"
export DIALTONE_COMPONENTS="$REPO/build/components"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

echo "== guest components"
scripts/build-guests.sh "$DIALTONE_COMPONENTS"

echo "== guest SDK (native)"
(cd guests && cargo test -p dialtone-sdk 2>&1) | tee -a "$LOG"

if [ -d guests/js/test ]; then
  echo "== JavaScript guest (node --test)"
  (cd guests/js && node --test test/ 2>&1) | tee -a "$LOG"
fi

echo "== SIP test peers (SIPp, sipsak, baresip, tshark, sox, kamailio, rtpengine, sipvicious)"
scripts/install-peers.sh

echo "== workspace"
cargo test --release --workspace 2>&1 | tee -a "$LOG"

echo "== benchmarks (smoke)"
DIALTONE_BENCH_SMOKE=1 scripts/bench.sh

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$LOG" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$LOG" | awk '{s+=$1} END {print s+0}')
node_pass=$(grep -Eo '^# pass [0-9]+' "$LOG" | awk '{s+=$3} END {print s+0}')
node_fail=$(grep -Eo '^# fail [0-9]+' "$LOG" | awk '{s+=$3} END {print s+0}')
echo
echo "tests: $((passed + node_pass)) passed, $((failed + node_fail)) failed"
[ "$((failed + node_fail))" -eq 0 ]
