#!/usr/bin/env bash
# RTP load benchmark: concurrent bridged calls with media both ways, through
# Dialtone and through Kamailio + rtpengine (user-space forwarding), one
# after the other in the same run, with the same load and the same meter.
#
#   scripts/bench-rtp.sh                          full run (1,000 calls, ~3 min)
#   DIALTONE_BENCH_SMOKE=1 scripts/bench-rtp.sh   smoke run for CI (~30 s)
#   scripts/bench-rtp.sh -h                       this help
#
# The load and the meter are bench/rtpload (`rtpload`, built from this
# repository): one process plays every caller and every callee. It places
# BENCH_RTP_CALLS calls at BENCH_RTP_RATE calls/s to user 1001 through the
# target; the callee side answers each with an SDP of its own and echoes
# every RTP packet back to where it came from; each caller sends 20 ms
# PCMU packets (172 bytes, 50 a second, its own SSRC) and counts what comes
# back per SSRC (duplicates, reordering, loss by sequence number). Once
# every call is up, a window of BENCH_RTP_HOLD_S seconds is measured: CPU
# time (utime+stime from /proc) of the target's processes, packets relayed
# (each packet crosses the relay twice: caller to callee, echo back), loss
# inside the window; then every call is hung up and the whole-call loss is
# counted. Per call the target relays 100 packets a second.
#
# Targets:
#   dialtone: the switch on a copy of conf/ (external profile 127.0.0.1:5741
#     takes the calls, no auth; the default WebAssembly dialplan bridges
#     1001 to its registration, made first with SIPp's uac_register.xml on
#     the internal profile 127.0.0.1:5740 with digest auth; B2BUA with both
#     legs' media anchored on the relay, same codec so no transcoding; RTP
#     40000-49999; max_channels and max_cps raised so the caps do not bite;
#     media workers = one per core).
#   kamailio: bench/kamailio/kamailio-rtpengine.cfg on 127.0.0.1:5750
#     (record-routing proxy to the fixed callee, rtpengine_offer/answer/
#     delete) with rtpengine (--table=-1: no kernel module, user-space
#     forwarding; ports 50000-59999; one thread per core); CPU is Kamailio's
#     processes plus rtpengine's.
#
# rtpload's ports: SIP caller 5731, callee 5732, caller RTP 5734, echo
# 5736. It runs on the same two cores as the target: its own CPU is in the
# JSON (rtpload_cpu_s), as is the whole machine's (machine_busy_pct).
#
# Output: rtpload's JSON line per target ({"bench":"rtpload",...}), then
# {"bench":"rtp_summary",...}: per target calls established, packets lost
# (window and whole calls), CPU µs per relayed packet and CPU per call
# (ms of CPU per second of call, i.e. per 100 relayed packets), and the
# ratio Dialtone/baseline of CPU per call. Human lines on stderr start with
# `#`. Exit 0 when every target ran and Dialtone set up every call and
# lost no packet (the baseline's loss is reported, not judged); 1
# otherwise.
#
# Environment (defaults; smoke values after the slash):
#   BENCH_RTP_CALLS [1000 / 50]    concurrent calls
#   BENCH_RTP_RATE [100 / 50]      calls set up (and hung up) per second
#   BENCH_RTP_HOLD_S [30 / 5]      measured window once all calls are up
#   BENCH_TARGETS ["dialtone kamailio"]
#   BENCH_KEEP=1                   keep the work directory (logs)
#   DIALTONE_BIN [$CARGO_TARGET_DIR/release/dialtone], RTPLOAD_BIN
#     [$CARGO_TARGET_DIR/release/rtpload]: built with cargo when missing
#   DIALTONE_COMPONENTS [$REPO/build/components]
set -euo pipefail

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dialtone-target}"
COMPS="${DIALTONE_COMPONENTS:-$REPO/build/components}"
BIN="${DIALTONE_BIN:-$CARGO_TARGET_DIR/release/dialtone}"
LOAD="${RTPLOAD_BIN:-$CARGO_TARGET_DIR/release/rtpload}"

if [ "${DIALTONE_BENCH_SMOKE:-0}" = 1 ]; then
  CALLS="${BENCH_RTP_CALLS:-50}"; RATE="${BENCH_RTP_RATE:-50}"; HOLD="${BENCH_RTP_HOLD_S:-5}"
else
  CALLS="${BENCH_RTP_CALLS:-1000}"; RATE="${BENCH_RTP_RATE:-100}"; HOLD="${BENCH_RTP_HOLD_S:-30}"
fi
TARGETS="${BENCH_TARGETS:-dialtone kamailio}"
[ "$CALLS" -le 5000 ] || { echo "BENCH_RTP_CALLS must be at most 5000" >&2; exit 2; }
[ "$HOLD" -le 300 ] || { echo "BENCH_RTP_HOLD_S must be at most 300" >&2; exit 2; }
# Bound on one rtpload run: setup, window, hang-up and slack.
RUN_S=$(( CALLS / RATE * 2 + HOLD + 60 ))

log() { echo "# $*" >&2; }
die() { log "error: $*"; exit 1; }
emit() {
  echo "$1"
  if [ -n "${BENCH_OUT:-}" ]; then echo "$1" >>"$BENCH_OUT"; fi
}

for tool in sipp timeout awk python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-peers.sh installs the peers)"
done
case " $TARGETS " in
  *" kamailio "*)
    command -v kamailio >/dev/null || die "kamailio is missing (scripts/install-peers.sh)"
    command -v rtpengine >/dev/null || die "rtpengine is missing (scripts/install-peers.sh)" ;;
esac
if [ ! -x "$LOAD" ]; then
  log "no $LOAD: cargo build --release -p dialtone-rtpload"
  (cd "$REPO" && cargo build --release -p dialtone-rtpload) >&2
fi
[ -x "$LOAD" ] || die "no rtpload binary at $LOAD"
case " $TARGETS " in
  *" dialtone "*)
    if [ ! -x "$BIN" ]; then
      log "no $BIN: cargo build --release -p dialtone"
      (cd "$REPO" && cargo build --release -p dialtone) >&2
    fi
    [ -x "$BIN" ] || die "no dialtone binary at $BIN"
    [ -f "$COMPS/default_dialplan.wasm" ] || die "no components in $COMPS (scripts/build-guests.sh)" ;;
esac

WORK="$(mktemp -d "${TMPDIR:-/tmp}/dialtone-bench-rtp.XXXXXX")"
PIDS=()   # every process this script started, ended by PID at exit

cleanup() {
  local rc=$? p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

UAC=5731 UAS=5732 RTP=5734 ECHO=5736

run_load() {
  local label=$1 target=$2 cpu=$3 out="$WORK/$1.json" rc=0
  log "$label: $CALLS calls at $RATE/s, window $HOLD s"
  timeout $((RUN_S + 10)) "$LOAD" --target "$target" --dest-user 1001 --calls "$CALLS" \
    --rate "$RATE" --max-pending 200 --hold-s "$HOLD" --max-run-s "$RUN_S" \
    --uac-port $UAC --uas-port $UAS --rtp-port $RTP --echo-port $ECHO \
    --label "$label" --cpu-pids "$cpu" >"$out" 2>"$WORK/$1.rtpload.log" || rc=$?
  [ -s "$out" ] || { tail -20 "$WORK/$1.rtpload.log" >&2; die "$label: rtpload printed nothing (rc=$rc)"; }
  emit "$(cat "$out")"
  log "$label: rtpload exit $rc"
  return 0
}

# ---------------------------------------------------------------- dialtone
bench_dialtone() {
  local d="$WORK/dialtone" main pid rc=0
  mkdir -p "$d/conf/tenants" "$d/var" "$d/cache"
  main=$(sed -e "s|\.\./build/components/|$COMPS/|g" \
    -e "s|^state_dir = \"\.\./var\"|state_dir = \"$d/var\"|" \
    -e "s|^cache_dir = \"\.\./var/cache/components\"|cache_dir = \"$d/cache\"|" \
    -e 's|"127\.0\.0\.1:5060"|"127.0.0.1:5740"|' \
    -e 's|"127\.0\.0\.1:5080"|"127.0.0.1:5741"|' \
    -e 's|"127\.0\.0\.1:5061"|"127.0.0.1:5742"|' \
    -e 's|"127\.0\.0\.1:5081"|"127.0.0.1:5743"|' \
    -e 's|^rtp_port_min = .*|rtp_port_min = 40000|' \
    -e 's|^rtp_port_max = .*|rtp_port_max = 49999|' \
    -e 's|^max_channels = .*|max_channels = 100000|' \
    -e 's|^max_cps = .*|max_cps = 100000|' \
    -e 's|^esl_listen = .*|esl_listen = "127.0.0.1:5746"|' \
    -e 's|^http_listen = .*|http_listen = "127.0.0.1:5747"|' \
    "$REPO/conf/dialtone.toml")
  for want in "state_dir = \"$d/var\"" '127.0.0.1:5740' '127.0.0.1:5741' \
    'rtp_port_min = 40000' 'max_channels = 100000' 'max_cps = 100000'; do
    grep -qF "$want" <<<"$main" || die "conf/dialtone.toml changed: could not set $want"
  done
  echo "$main" >"$d/conf/dialtone.toml"
  sed -e "s|\.\./\.\./build/components/|$COMPS/|g" "$REPO/conf/tenants/dialtone.local.toml" \
    >"$d/conf/tenants/dialtone.local.toml"
  RUST_LOG=warn NO_COLOR=1 "$BIN" --conf "$d/conf" run >"$d/stdout.log" 2>"$d/switch.log" &
  pid=$!
  PIDS+=("$pid")
  wait_udp 5740 90 && wait_udp 5741 30 || { tail -20 "$d/switch.log" >&2; die "dialtone did not start"; }
  # The callee (rtpload's UAS port) registers as 1001 first.
  timeout 20 sipp -sf "$REPO/tests/sip/sipp/uac_register.xml" 127.0.0.1:5740 -i 127.0.0.1 \
    -p $UAS -nostdin -s 1001 -key domain dialtone.local -key expires 3600 -au 1001 -ap 1234 \
    -m 1 -timeout 15s -timeout_error -trace_err -error_file "$d/reg.err" >"$d/reg.out" 2>&1 || rc=$?
  [ "$rc" = 0 ] || die "dialtone: REGISTER of the callee 1001 failed (sipp rc=$rc)"
  run_load dialtone 127.0.0.1:5741 "dialtone=$pid"
  stop_pid "$pid"
}

# ---------------------------------------------------------------- kamailio
bench_kamailio() {
  local d="$WORK/kamailio" kam rtpe pids
  mkdir -p "$d"
  rtpengine --config-file=none --foreground --log-stderr --log-level=4 --table=-1 \
    --interface=127.0.0.1 --listen-ng=127.0.0.1:22250 --port-min=50000 --port-max=59999 \
    --num-threads="$(nproc)" --pidfile="$d/rtpengine.pid" >"$d/rtpengine.log" 2>&1 &
  rtpe=$!
  PIDS+=("$rtpe")
  wait_udp 22250 20 || { tail -20 "$d/rtpengine.log" >&2; die "rtpengine did not start"; }
  kamailio -f "$REPO/bench/kamailio/kamailio-rtpengine.cfg" -DD -E -m 256 -M 16 \
    -l udp:127.0.0.1:5750 -Y "$d" -A "BENCH_CALLEE=\"sip:127.0.0.1:$UAS\"" \
    -A 'BENCH_NG="udp:127.0.0.1:22250"' >"$d/stdout.log" 2>"$d/kamailio.log" &
  kam=$!
  PIDS+=("$kam")
  wait_udp 5750 30 || { tail -20 "$d/kamailio.log" >&2; die "kamailio did not start"; }
  sleep 1
  kill -0 "$kam" 2>/dev/null || die "kamailio exited at start"
  pids="$kam $(descendants "$kam" | tr '\n' ' ')"
  run_load kamailio+rtpengine 127.0.0.1:5750 "kamailio=$(echo $pids | tr ' ' ',');rtpengine=$rtpe"
  stop_pid "$kam"
  stop_pid "$rtpe"
}

for t in $TARGETS; do
  case $t in
    dialtone) bench_dialtone ;;
    kamailio) bench_kamailio ;;
    *) die "unknown target $t" ;;
  esac
done

# ---------------------------------------------------------------- summary
python3 - "$WORK" "$CALLS" $TARGETS <<'PY'
import json, os, sys
work, calls, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
files = {"dialtone": "dialtone.json", "kamailio": "kamailio+rtpengine.json"}
out, ok = {"bench": "rtp_summary", "calls": calls}, True
per_call = {}
for t in targets:
    r = json.load(open(os.path.join(work, files[t])))
    cpu, win = r.get("cpu_s"), r.get("window_s")
    est = r.get("established", 0)
    ms_per_call_s = (1000.0 * cpu / win / est) if cpu is not None and win and est else None
    per_call[t] = ms_per_call_s
    out[t] = {
        "established": est, "failed": r.get("failed"),
        "window_lost": r.get("window_lost"), "lost": r.get("lost"),
        "streams_with_loss": r.get("streams_with_loss"),
        "window_relayed_pps": round(r["window_relayed_packets"] / win) if win else None,
        "cpu_us_per_relayed_packet": r.get("cpu_us_per_relayed_packet"),
        "cpu_ms_per_call_second": round(ms_per_call_s, 3) if ms_per_call_s else None,
        "groups": {g["label"]: g["cpu_us_per_relayed_packet"] for g in r.get("cpu_groups", [])},
        "machine_busy_pct": r.get("machine_busy_pct"),
        "rtpload_cpu_s": r.get("rtpload_cpu_s"),
    }
    # The baseline's figures are reported, not judged.
    if t == "dialtone" and (not r.get("ok") or est != calls):
        ok = False
    print("# %-9s %d/%d calls up, lost %s in the window and %s over the calls; %s us CPU per relayed packet, %s ms CPU per call-second"
          % (t, est, calls, r.get("window_lost"), r.get("lost"), r.get("cpu_us_per_relayed_packet"),
             out[t]["cpu_ms_per_call_second"]), file=sys.stderr)
if per_call.get("dialtone") and per_call.get("kamailio"):
    out["cpu_per_call_ratio_dialtone_over_kamailio_rtpengine"] = round(per_call["dialtone"] / per_call["kamailio"], 3)
out["ok"] = ok
print(json.dumps(out))
sys.exit(0 if ok else 1)
PY
