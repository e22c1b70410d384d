#!/usr/bin/env bash
# SIP load benchmark: Dialtone against Kamailio 5.6, side by side in one run
# on loopback (the machine is shared and noisy, so only figures from the same
# run are compared).
#
#   scripts/bench-sip.sh            full run (about 10-15 minutes, bounded at 25)
#   DIALTONE_BENCH_SMOKE=1 scripts/bench-sip.sh   smoke run for CI (< 1 minute)
#   scripts/bench-sip.sh -h         this help
#
# What it measures, for each target (`dialtone`: the switch's external
# profile, a B2BUA running the tenant's WebAssembly dialplan; `kamailio`: a
# stateful record-routing proxy, bench/kamailio/kamailio.cfg):
#
#  1. Calls per second. A SIPp callee (bench/sipp/uas_bench.xml: 200 at once,
#     no 180, no media) registers as 1001 with digest auth, then a SIPp caller
#     (bench/sipp/uac_bench.xml: INVITE, ACK, BYE, no pause, no media,
#     Record-Route honoured) dials 1001 through the target in steps of
#     BENCH_CALLS calls at increasing rates (BENCH_RATES). A step is
#     sustained when it ends with 0 failed calls, 0 retransmissions (seen by
#     the caller) and SIPp reached at least 90 % of the rate asked for. A
#     target's ramp stops at its first step that is not sustained. A step
#     lasts at most BENCH_STEP_S seconds of calls: at low rates the step has
#     fewer calls (rate x BENCH_STEP_S). In a full run 1000 calls at
#     500 calls/s warm each target up first (reported, not part of the ramp).
#     Both targets stay up through the ramps, and the steps alternate: each
#     rate runs on Dialtone, then on Kamailio, then the next rate, so the
#     two figures of a rate come from minutes when the VM ran at about the
#     same speed (the idle target meanwhile only runs its timers).
#  2. CPU per call: utime+stime (/proc/PID/stat) of the target before and
#     after every step, divided by the calls of the step; for Kamailio the sum
#     over the main process and all its children. The summary quotes it at
#     BENCH_CPU_RATE (2000 calls/s), or at the highest rate both targets
#     sustained when that is lower (it says which).
#     A target whose ramp stopped below BENCH_CPU_RATE also runs one step
#     at that rate ("probe": true in its JSON), so CPU per call at the fixed
#     rate is reported for both whether they sustain it or not.
#  3. REGISTER, first, on the freshly started target: BENCH_REGISTERS
#     registrations, each REGISTER -> 401 -> REGISTER with Authorization ->
#     200, with up to BENCH_REG_CONCURRENCY in flight (closed loop: as fast
#     as the target answers), each pass bounded at 50 s (a slower target
#     completes fewer: the JSON says how many). Two passes: `refresh` loops
#     over 19 directory users (1000, 1002-1019: 1001 is kept for the callee)
#     so the same 19 bindings are updated again and again; `new` registers
#     distinct users 20000, 20001, ... (added with password 1234 to the
#     bench's copy of the tenant file for Dialtone; Kamailio takes any user
#     with that password). Memory per registration comes from the `new`
#     pass: Dialtone's RSS growth (VmRSS) and registrations.redb growth,
#     Kamailio's shared memory growth (kamcmd core.shmmem real_used), each
#     divided by the distinct registrations that got a 200. Memory is read
#     once the previous phase's transactions have ended (full run: 33 s for
#     Dialtone, longer than its Timer J; 6 s for Kamailio, longer than tm's
#     wait timer; smoke runs wait 1 s and report no per-binding figure).
#     Every registration is digest-authenticated on both; Dialtone also
#     writes each one to its redb file before answering, Kamailio keeps
#     them in memory only (usrloc db_mode 0).
#
# Output: one JSON line per measurement on stdout (also appended to
# $BENCH_OUT when set), a final {"bench":"sip_summary",...} line, and a
# human summary on stderr (lines starting with `#`). Exit 0 when both
# targets ran (whatever the figures), 1 when something could not start or
# the first step of a target had no successful call at all.
#
# The switch runs from a copy of conf/ in a temporary directory with:
# internal profile 127.0.0.1:5600 (digest auth), external 127.0.0.1:5601
# (TLS 5602 and 5603), event socket 5608, HTTP 5609,
# RTP 20000-39999 (10,000 port pairs: every call holds two, one per leg, and
# at 1000 calls/s a backlog of a few seconds exhausted 30000-39999),
# [limits] max_cps = 100000 and max_channels = 100000 (defaults 200 and
# 1000 would cap the benchmark, not the switch; max_guest_invocations stays
# at its default 256, the switch's own overload guard), the
# extra bench users 20000.. with password 1234, RUST_LOG=warn. State and
# component cache in the temporary directory (on the same disk as /tmp:
# every registration is written to redb there before it is answered).
# Kamailio: 127.0.0.1:5650, `-m 1024 -M 16`, children=2.
# SIPp ports: 5611-5613 (Dialtone's callee, caller, registrar client),
# 5621-5623 (Kamailio's).
#
# Environment (defaults in brackets; smoke values after the slash):
#   BENCH_CALLS [30000 / 300]            calls per step
#   BENCH_RATES ["250 500 750 1000 1500 2000 3000 4000 5000" / "250"]
#   BENCH_CPU_RATE [2000 / 250]          rate the summary quotes CPU/call at
#   BENCH_STEP_S [40 / 10]               longest stretch of calls in one step (at most 60)
#   BENCH_ESL [0 / 1]                    1: an event socket client subscribed to
#                                        ALL (bench/eslcount) listens to Dialtone
#                                        through its call steps; a
#                                        {"bench":"sip_esl",...} line reports
#                                        events/s and sequence gaps (lost events)
#   BENCH_REGISTERS [10000 / 300]        registrations per REGISTER pass
#   BENCH_REG_CONCURRENCY [50]           registrations in flight
#   BENCH_TARGETS ["dialtone kamailio"]
#   BENCH_STEP_SETTLE_S [0]              after each step, wait this long and
#                                        report memory again (rss_kb_settled)
#   BENCH_KEEP=1                         keep the work directory (logs, CSVs)
#   BENCH_NOFILE [65536]                 open file limit both targets run
#                                        with, as a deployment sets it
#                                        (systemd LimitNOFILE=): Dialtone
#                                        relays RTP, four sockets per call,
#                                        and the bench's RTP range has 20,000
#                                        ports. Raising the hard limit takes
#                                        CAP_SYS_RESOURCE; without it the bench
#                                        keeps the hard limit it was given, and
#                                        says so.
#   DIALTONE_BIN [$CARGO_TARGET_DIR/release/dialtone, CARGO_TARGET_DIR
#                 defaulting to $HOME/.cache/dialtone-target; built with
#                 `cargo build --release -p dialtone` only when missing]
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

SMOKE="${DIALTONE_BENCH_SMOKE:-0}"
if [ "$SMOKE" = 1 ]; then
  CALLS="${BENCH_CALLS:-300}"
  RATES="${BENCH_RATES:-250}"
  CPU_RATE="${BENCH_CPU_RATE:-250}"
  STEP_S="${BENCH_STEP_S:-10}"
  NREG="${BENCH_REGISTERS:-300}"
  BUDGET_S=110
  RAMP_DEADLINE_S=90
else
  CALLS="${BENCH_CALLS:-30000}"
  RATES="${BENCH_RATES:-250 500 750 1000 1500 2000 3000 4000 5000}"
  CPU_RATE="${BENCH_CPU_RATE:-2000}"
  STEP_S="${BENCH_STEP_S:-40}"
  NREG="${BENCH_REGISTERS:-10000}"
  BUDGET_S=1500
  RAMP_DEADLINE_S=1200
fi
REG_CONC="${BENCH_REG_CONCURRENCY:-50}"
STEP_SETTLE_S="${BENCH_STEP_SETTLE_S:-0}"
PROBE=false
declare -A CPU_PROBE
declare -A SETTLE_S
if [ "$SMOKE" = 1 ]; then
  WARMUP=0; WARMUP_RATE=250
  SETTLE_S[dialtone]=1; SETTLE_S[kamailio]=1
else
  WARMUP=1000; WARMUP_RATE=500
  SETTLE_S[dialtone]=33; SETTLE_S[kamailio]=6
fi
TARGETS="${BENCH_TARGETS:-dialtone kamailio}"
[ "$STEP_S" -le 60 ] || { echo "BENCH_STEP_S must be at most 60" >&2; exit 2; }
ESL="${BENCH_ESL:-$SMOKE}"
ESLCOUNT="${ESLCOUNT_BIN:-$CARGO_TARGET_DIR/release/eslcount}"
if [ "$ESL" = 1 ] && [ ! -x "$ESLCOUNT" ]; then
  (cd "$REPO" && cargo build --release -p dialtone-eslcount) >&2
fi

SIPP_DIR="$REPO/bench/sipp"
KAM_CFG="$REPO/bench/kamailio/kamailio.cfg"
REG_XML="$REPO/tests/sip/sipp/uac_register.xml"
HZ=$(getconf CLK_TCK)
T_START=$(date +%s)

log() { echo "# $*" >&2; }
emit() {
  echo "$1"
  if [ -n "${BENCH_OUT:-}" ]; then echo "$1" >>"$BENCH_OUT"; fi
}
die() { log "error: $*"; exit 1; }

NOFILE="${BENCH_NOFILE:-65536}"
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$NOFILE" ]; then
  ulimit -Hn "$NOFILE" 2>/dev/null ||
    log "cannot raise the hard open file limit to $NOFILE (it takes CAP_SYS_RESOURCE): keeping $(ulimit -Hn)"
fi
ulimit -Sn "$NOFILE" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"
NOFILE=$(ulimit -Sn)
[ "$NOFILE" != unlimited ] || NOFILE='"unlimited"'

for tool in sipp timeout awk; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-peers.sh installs the SIP peers)"
done
case " $TARGETS " in
  *" kamailio "*)
    command -v kamailio >/dev/null || die "kamailio is missing (scripts/install-peers.sh)" ;;
esac
case " $TARGETS " in
  *" dialtone "*)
    if [ ! -x "$BIN" ]; then
      log "no $BIN: cargo build --release -p dialtone"
      (cd "$REPO" && cargo build --release -p dialtone) >&2
    fi
    [ -x "$BIN" ] || die "no dialtone binary at $BIN"
    [ -f "$COMPS/default_dialplan.wasm" ] || die "no components in $COMPS (scripts/build-guests.sh)" ;;
esac

WORK="$(mktemp -d "${TMPDIR:-/tmp}/dialtone-bench-sip.XXXXXX")"
PIDS=()   # every process this script started, killed by PID at exit

cleanup() {
  local rc=$? p
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers

# utime+stime of the PIDs given, in clock ticks (0 for a PID gone).
cpu_ticks() {
  local sum=0 p f
  for p in "$@"; do
    f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    f=${f##*) }
    set -- $f
    # After the comm field: state is $1, utime is field 14 of the line = $12.
    sum=$((sum + ${12} + ${13}))
  done
  echo "$sum"
}

# Busy and total jiffies of the whole machine, "busy total".
machine_ticks() {
  awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print t-$5-$6, t}' /proc/stat
}

rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Field NAME of the last row of a SIPp -trace_stat file (0 when absent).
stat_field() {
  local file=$1 name=$2
  [ -f "$file" ] || { echo 0; return; }
  awk -F';' -v n="$name" 'NR==1{for(i=1;i<=NF;i++) if($i==n) c=i; next} {last=$0}
    END{ if(!c || last==""){print 0; exit} split(last,a,";"); v=a[c]; gsub(/[^0-9]/,"",v); print (v==""?0:v)}' "$file"
}

now_s() { date +%s.%N; }
fdiv() { awk -v a="$1" -v b="$2" -v p="${3:-1}" 'BEGIN{ if(b==0){print "null"} else printf("%.*f\n", p, a/b) }'; }

SIPP_COMMON=(-i 127.0.0.1 -nostdin -buff_size 4194304 -recv_timeout 8000)

# ---------------------------------------------------------------- targets

DT_PID=""
DT_STATE=""
start_dialtone() {
  local d="$WORK/dialtone" main tenant
  mkdir -p "$d/conf/tenants" "$d/var" "$d/cache"
  main=$(sed -e "s|\.\./build/components/|$COMPS/|g" \
    -e "s|^state_dir = \"\.\./var\"|state_dir = \"$d/var\"|" \
    -e "s|^cache_dir = \"\.\./var/cache/components\"|cache_dir = \"$d/cache\"|" \
    -e 's|"127\.0\.0\.1:5060"|"127.0.0.1:5600"|' \
    -e 's|"127\.0\.0\.1:5080"|"127.0.0.1:5601"|' \
    -e 's|"127\.0\.0\.1:5061"|"127.0.0.1:5602"|' \
    -e 's|"127\.0\.0\.1:5081"|"127.0.0.1:5603"|' \
    -e 's|^rtp_port_min = .*|rtp_port_min = 20000|' \
    -e 's|^rtp_port_max = .*|rtp_port_max = 39999|' \
    -e 's|^max_channels = .*|max_channels = 100000|' \
    -e 's|^max_cps = .*|max_cps = 100000|' \
    -e 's|^esl_listen = .*|esl_listen = "127.0.0.1:5608"|' \
    -e 's|^http_listen = .*|http_listen = "127.0.0.1:5609"|' \
    "$REPO/conf/dialtone.toml")
  for want in "state_dir = \"$d/var\"" "cache_dir = \"$d/cache\"" '127.0.0.1:5600' '127.0.0.1:5601' \
    'rtp_port_min = 20000' 'max_channels = 100000' 'max_cps = 100000' '127.0.0.1:5608' '127.0.0.1:5609'; do
    grep -qF "$want" <<<"$main" || die "conf/dialtone.toml changed: could not set $want"
  done
  echo "$main" >"$d/conf/dialtone.toml"
  tenant=$(sed -e "s|\.\./\.\./build/components/|$COMPS/|g" "$REPO/conf/tenants/dialtone.local.toml")
  {
    echo "$tenant"
    echo
    echo "# Bench users (scripts/bench-sip.sh): distinct registrations."
    awk -v n="$NREG" 'BEGIN{for(i=0;i<n;i++) printf("[users.%d]\npassword = \"1234\"\n\n", 20000+i)}'
  } >"$d/conf/tenants/dialtone.local.toml"
  RUST_LOG=warn NO_COLOR=1 "$BIN" --conf "$d/conf" run >"$d/stdout.log" 2>"$d/switch.log" &
  DT_PID=$!
  PIDS+=("$DT_PID")
  DT_STATE="$d/var"
  # RUST_LOG=warn hides the "listening" lines: wait for both UDP ports.
  wait_udp 5600 90 && wait_udp 5601 30 || {
    tail -20 "$d/switch.log" >&2
    die "dialtone did not start (log: $d/switch.log)"
  }
  kill -0 "$DT_PID" 2>/dev/null || die "dialtone exited at start"
  log "dialtone $DT_PID up in $(( $(date +%s) - T_START )) s since start of bench"
}

KAM_PID=""
KAM_PIDS=""
KAM_CTL=""
start_kamailio() {
  local d="$WORK/kamailio"
  mkdir -p "$d"
  KAM_CTL="unix:$d/ctl.sock"
  kamailio -f "$KAM_CFG" -DD -E -m 1024 -M 16 -l udp:127.0.0.1:5650 -Y "$d" \
    -A "BENCH_CTL=\"$KAM_CTL\"" >"$d/stdout.log" 2>"$d/kamailio.log" &
  KAM_PID=$!
  PIDS+=("$KAM_PID")
  wait_udp 5650 30 || { tail -20 "$d/kamailio.log" >&2; die "kamailio did not start"; }
  sleep 1
  kill -0 "$KAM_PID" 2>/dev/null || die "kamailio exited at start"
  # Kamailio forks its workers at start and keeps them: list them once.
  KAM_PIDS="$KAM_PID $(descendants "$KAM_PID" | tr '\n' ' ')"
  log "kamailio up: processes $KAM_PIDS"
}

# The PIDs whose CPU counts for a target.
target_pids() {
  case $1 in
    dialtone) echo "$DT_PID" ;;
    kamailio) echo "$KAM_PIDS" ;;
  esac
}

kam_shm_used() {
  command -v kamcmd >/dev/null || { echo null; return; }
  local out
  out=$(timeout 5 kamcmd -s "$KAM_CTL" core.shmmem 2>/dev/null) || true
  awk '$1 == "real_used:" {gsub(/[^0-9]/,"",$2); print $2; f=1} END{if(!f) print "null"}' <<<"$out"
}

# ---------------------------------------------------------------- steps

# register_callee TARGET REGISTRAR_PORT CALLEE_PORT: 1001 at CALLEE_PORT.
register_callee() {
  local t=$1 rport=$2 port=$3 rc=0
  timeout 20 sipp -sf "$REG_XML" "127.0.0.1:$rport" "${SIPP_COMMON[@]}" -p "$port" \
    -s 1001 -key domain dialtone.local -key expires 3600 -au 1001 -ap 1234 \
    -m 1 -timeout 15s -timeout_error -trace_err -error_file "$WORK/$t.reg1001.err" \
    >"$WORK/$t.reg1001.out" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { cat "$WORK/$t.reg1001.err" >&2 2>/dev/null || true; die "$t: REGISTER of the callee 1001 failed (sipp rc=$rc)"; }
}

UAS_PID=""
start_callee() {
  local t=$1 port=$2
  timeout "$BUDGET_S" sipp -sf "$SIPP_DIR/uas_bench.xml" "${SIPP_COMMON[@]}" -p "$port" \
    -trace_stat -stf "$WORK/$t.uas.csv" -fd 1 -trace_err -error_file "$WORK/$t.uas.err" \
    >"$WORK/$t.uas.out" 2>&1 &
  UAS_PID=$!
  PIDS+=("$UAS_PID")
  wait_udp "$port" 10 || die "$t: the SIPp callee did not bind $port"
}

# cps_step TARGET DEST_PORT CALLER_PORT RATE: sets STEP_OK, STEP_CALLS,
# STEP_OKCALLS, STEP_CPU_US (per call).
cps_step() {
  local t=$1 dport=$2 port=$3 rate=$4 warm=${5:-0} calls csv pids c0 c1 m0 m1 t0 t1 rc=0
  calls=$CALLS
  if [ $((rate * STEP_S)) -lt "$calls" ]; then calls=$((rate * STEP_S)); fi
  if [ "$warm" -gt 0 ]; then calls=$warm; fi
  csv="$WORK/$t.uac.$rate.csv"
  if [ "$warm" -gt 0 ]; then csv="$WORK/$t.uac.$rate.warmup.csv"; fi
  pids=$(target_pids "$t")
  c0=$(cpu_ticks $pids); m0=$(machine_ticks); t0=$(now_s)
  # Calls take calls/rate seconds; 15 s more for stragglers, then SIPp gives
  # up (-timeout) and coreutils timeout kills it 5 s later.
  local secs=$(( (calls + rate - 1) / rate + 15 ))
  timeout $((secs + 5)) sipp -sf "$SIPP_DIR/uac_bench.xml" "127.0.0.1:$dport" "${SIPP_COMMON[@]}" \
    -p "$port" -s 1001 -m "$calls" -r "$rate" -rp 1000 -l $((rate * 10)) \
    -timeout "${secs}s" -timeout_error -trace_stat -stf "$csv" \
    -trace_err -error_file "${csv%.csv}.err" >"${csv%.csv}.out" 2>&1 || rc=$?
  t1=$(now_s); c1=$(cpu_ticks $pids); m1=$(machine_ticks)
  local ok failed retr elapsed achieved cpu_ms cpu_us busy
  ok=$(stat_field "$csv" "SuccessfulCall(C)")
  failed=$(stat_field "$csv" "FailedCall(C)")
  retr=$(stat_field "$csv" "Retransmissions(C)")
  # Calls that never ended count as failed.
  if [ $((ok + failed)) -lt "$calls" ]; then failed=$((calls - ok)); fi
  elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  achieved=$(fdiv "$ok" "$elapsed" 1)
  cpu_ms=$(( (c1 - c0) * 1000 / HZ ))
  cpu_us=$(fdiv "$(( (c1 - c0) * 1000000 / HZ ))" "$calls" 1)
  busy=$(echo "$m0 $m1" | awk '{ if ($4-$2 > 0) printf "%.0f", 100*($3-$1)/($4-$2); else print "null"}')
  STEP_OK=0
  if [ "$failed" = 0 ] && [ "$retr" = 0 ] && [ "$ok" = "$calls" ] && \
    awk -v a="$achieved" -v r="$rate" 'BEGIN{exit !(a >= 0.9 * r)}'; then
    STEP_OK=1
  fi
  STEP_CALLS=$calls; STEP_OKCALLS=$ok; STEP_CPU_US=$cpu_us
  local mem
  case $t in
    dialtone) mem="\"rss_kb_after\":$(rss_kb "$DT_PID")" ;;
    kamailio) mem="\"shm_used_after\":$(kam_shm_used)" ;;
  esac
  # Let the target finish its timers (dead calls, transaction linger);
  # with BENCH_STEP_SETTLE_S, wait that long and report memory again, once
  # the step's transactions have ended (tells retained state from growth).
  if [ "$STEP_SETTLE_S" -gt 0 ] && [ "$warm" = 0 ]; then
    sleep "$STEP_SETTLE_S"
    case $t in
      dialtone) mem="$mem,\"rss_kb_settled\":$(rss_kb "$DT_PID"),\"settled_s\":$STEP_SETTLE_S" ;;
      kamailio) mem="$mem,\"shm_used_settled\":$(kam_shm_used),\"settled_s\":$STEP_SETTLE_S" ;;
    esac
  else
    sleep 2
  fi
  emit "{\"bench\":\"sip_cps_step\",\"target\":\"$t\",\"warmup\":$([ "$warm" -gt 0 ] && echo true || echo false),\"probe\":$PROBE,\"rate\":$rate,\"calls\":$calls,\"successful\":$ok,\"failed\":$failed,\"retransmissions\":$retr,\"sipp_rc\":$rc,\"elapsed_s\":$elapsed,\"achieved_cps\":$achieved,\"sustained\":$([ $STEP_OK = 1 ] && echo true || echo false),\"cpu_ms\":$cpu_ms,\"cpu_us_per_call\":$cpu_us,\"machine_busy_pct\":$busy,\"cpu_pids\":$(echo $pids | wc -w),$mem}"
}

# register_pass TARGET REGISTRAR_PORT CLIENT_PORT KIND(refresh|new)
register_pass() {
  local t=$1 rport=$2 port=$3 kind=$4 settle_after=${5:-0} inf="$WORK/users.$4.csv" csv="$WORK/$t.reg.$4.csv"
  local rc=0 t0 t1 ok failed retr elapsed rate rss0 rss1 db0 db1 shm0 shm1 c0 c1 pids
  {
    echo SEQUENTIAL
    if [ "$kind" = refresh ]; then
      # 1001 is the callee of the calls: its only binding must be the callee's.
      for u in 1000 $(seq 1002 1019); do echo "$u;[authentication username=$u password=1234]"; done
    else
      awk -v n="$NREG" 'BEGIN{for(i=0;i<n;i++) printf("%d;[authentication username=%d password=1234]\n", 20000+i, 20000+i)}'
    fi
  } >"$inf"
  pids=$(target_pids "$t")
  case $t in
    dialtone)
      rss0=$(rss_kb "$DT_PID"); db0=$(stat -c %s "$DT_STATE/registrations.redb" 2>/dev/null || echo 0) ;;
    kamailio)
      shm0=$(kam_shm_used) ;;
  esac
  c0=$(cpu_ticks $pids); t0=$(now_s)
  timeout 60 sipp -sf "$SIPP_DIR/uac_register_bench.xml" "127.0.0.1:$rport" "${SIPP_COMMON[@]}" \
    -p "$port" -inf "$inf" -key domain dialtone.local -key expires 3600 \
    -m "$NREG" -r 100000 -rp 1000 -l "$REG_CONC" -timeout 50s -timeout_error \
    -trace_stat -stf "$csv" -trace_err -error_file "$WORK/$t.reg.$kind.err" \
    >"$WORK/$t.reg.$kind.out" 2>&1 || rc=$?
  t1=$(now_s); c1=$(cpu_ticks $pids)
  sleep "$settle_after"
  ok=$(stat_field "$csv" "SuccessfulCall(C)")
  failed=$(stat_field "$csv" "FailedCall(C)")
  retr=$(stat_field "$csv" "Retransmissions(C)")
  elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  rate=$(fdiv "$ok" "$elapsed" 0)
  local cpu_us distinct mem
  cpu_us=$(fdiv "$(( (c1 - c0) * 1000000 / HZ ))" "$ok" 1)
  if [ "$kind" = refresh ]; then distinct=19; else distinct=$ok; fi
  case $t in
    dialtone)
      rss1=$(rss_kb "$DT_PID"); db1=$(stat -c %s "$DT_STATE/registrations.redb" 2>/dev/null || echo 0)
      mem="\"rss_kb_before\":$rss0,\"rss_kb_after\":$rss1,\"redb_bytes_before\":$db0,\"redb_bytes_after\":$db1"
      if [ "$kind" = new ]; then
        mem="$mem,\"rss_bytes_per_new_binding\":$(fdiv "$(( (rss1 - rss0) * 1024 ))" "$ok" 0),\"redb_bytes_per_new_binding\":$(fdiv "$((db1 - db0))" "$ok" 0)"
      fi ;;
    kamailio)
      shm1=$(kam_shm_used)
      if [ "$shm0" != null ] && [ "$shm1" != null ]; then
        mem="\"shm_used_before\":$shm0,\"shm_used_after\":$shm1"
        if [ "$kind" = new ]; then
          mem="$mem,\"shm_bytes_per_new_binding\":$(fdiv "$((shm1 - shm0))" "$ok" 0)"
        fi
      else
        mem="\"shm_used_before\":null,\"shm_used_after\":null"
      fi ;;
  esac
  REG_RATE=$rate
  # Short settles (smoke) leave the previous phase's transactions in the
  # figures: no per-binding memory then.
  local settled=true
  if [ "${SETTLE_S[$t]}" -lt 5 ]; then
    settled=false
    mem=$(sed -E 's/"(rss|redb|shm)_bytes_per_new_binding":[-0-9.]+/"\1_bytes_per_new_binding":null/g' <<<"$mem")
  fi
  mem="$mem,\"memory_settled\":$settled"
  emit "{\"bench\":\"sip_register\",\"target\":\"$t\",\"pass\":\"$kind\",\"registrations\":$NREG,\"distinct_users\":$distinct,\"successful\":$ok,\"failed\":$failed,\"retransmissions\":$retr,\"sipp_rc\":$rc,\"in_flight\":$REG_CONC,\"elapsed_s\":$elapsed,\"registrations_per_s\":$rate,\"cpu_us_per_registration\":$cpu_us,$mem}"
}

# ---------------------------------------------------------------- run

declare -A MAXRATE CPU_AT REG_REFRESH REG_NEW FIRST_OK
FAIL=0

declare -A UAS_PIDS ESL_PIDS RAMP_ON DPORT BASE

# prepare_target TARGET: starts it, runs its REGISTER passes, registers and
# starts its callee, warms it up and (Dialtone) starts the event subscriber.
prepare_target() {
  local t=$1 rport
  case $t in
    dialtone) start_dialtone; rport=5600; DPORT[$t]=5601; BASE[$t]=5610 ;;
    kamailio) start_kamailio; rport=5650; DPORT[$t]=5650; BASE[$t]=5620 ;;
    *) die "unknown target $t" ;;
  esac
  local base=${BASE[$t]}
  # REGISTER first, on a fresh process: its memory figures are not blurred
  # by calls still being torn down. SETTLE_S is longer than Dialtone's
  # Timer J (32 s) and Kamailio's tm wait timer (5 s): memory is read once
  # the previous phase's transactions are gone.
  local settle=${SETTLE_S[$t]}
  log "$t: REGISTER passes (waiting ${settle} s between phases for transactions to end)"
  sleep 1
  register_pass "$t" "$rport" $((base + 3)) refresh
  REG_REFRESH[$t]=$REG_RATE
  sleep "$settle"
  register_pass "$t" "$rport" $((base + 3)) new "$settle"
  REG_NEW[$t]=$REG_RATE

  register_callee "$t" "$rport" $((base + 1))
  start_callee "$t" $((base + 1))
  UAS_PIDS[$t]=$UAS_PID
  MAXRATE[$t]=0
  RAMP_ON[$t]=1
  if [ "$WARMUP" -gt 0 ]; then
    # Not part of the ramp: first calls pay for page faults, caches, pools.
    cps_step "$t" "${DPORT[$t]}" $((base + 2)) "$WARMUP_RATE" "$WARMUP"
  fi
  # The event subscriber listens through the ramp (and the probe), not the
  # warm-up.
  ESL_PIDS[$t]=""
  if [ "$ESL" = 1 ] && [ "$t" = dialtone ]; then
    "$ESLCOUNT" 127.0.0.1:5608 ClueCon 3600 >"$WORK/$t.eslcount.json" 2>"$WORK/$t.eslcount.err" &
    ESL_PIDS[$t]=$!
    PIDS+=("${ESL_PIDS[$t]}")
    sleep 1
  fi
}

# ramp_step TARGET RATE: one step of the target's ramp; a step that is not
# sustained ends the ramp.
ramp_step() {
  local t=$1 r=$2
  if [ $(( $(date +%s) - T_START )) -gt "$RAMP_DEADLINE_S" ]; then
    log "$t: time budget reached, ramp stopped before $r calls/s"
    RAMP_ON[$t]=0
    return
  fi
  cps_step "$t" "${DPORT[$t]}" $((BASE[$t] + 2)) "$r"
  CPU_AT[$t:$r]=$STEP_CPU_US
  if [ -z "${FIRST_OK[$t]:-}" ]; then
    FIRST_OK[$t]=$STEP_OKCALLS
  fi
  if [ "$STEP_OK" = 1 ]; then
    MAXRATE[$t]=$r
  else
    log "$t: $r calls/s not sustained ($STEP_OKCALLS/$STEP_CALLS calls, see JSON); ramp stopped"
    RAMP_ON[$t]=0
  fi
}

# finish_target TARGET: the fixed-rate probe if the ramp did not run it,
# then the memory after calls, and the target is stopped.
finish_target() {
  local t=$1
  local settle=${SETTLE_S[$t]}
  # CPU per call at the fixed CPU_RATE even when the ramp stopped below it:
  # one more step at that rate (failures and all; its JSON line says
  # "probe":true), unless the ramp already ran it.
  if [ -z "${CPU_AT[$t:$CPU_RATE]:-}" ] && \
    [ $(( $(date +%s) - T_START )) -le "$RAMP_DEADLINE_S" ]; then
    sleep 5
    PROBE=true
    cps_step "$t" "${DPORT[$t]}" $((BASE[$t] + 2)) "$CPU_RATE"
    PROBE=false
    CPU_PROBE[$t]=$STEP_CPU_US
    log "$t: CPU per call at a fixed $CPU_RATE calls/s: $STEP_CPU_US us ($STEP_OKCALLS/$STEP_CALLS calls completed)"
  else
    CPU_PROBE[$t]=${CPU_AT[$t:$CPU_RATE]:-null}
  fi
  stop_pid "${UAS_PIDS[$t]}"
  if [ -n "${ESL_PIDS[$t]}" ]; then
    # The last events (hangups) arrive within the step's settle time.
    sleep 2
    kill -TERM "${ESL_PIDS[$t]}" 2>/dev/null || true
    wait "${ESL_PIDS[$t]}" 2>/dev/null || true
    emit "{\"bench\":\"sip_esl\",\"target\":\"$t\",\"eslcount\":$(cat "$WORK/$t.eslcount.json" 2>/dev/null || echo null)}"
  fi
  # Memory once the calls' transactions have ended (after the last step,
  # memory still holds up to Timer J / tm wait worth of them).
  sleep "$settle"
  case $t in
    dialtone) emit "{\"bench\":\"sip_memory_after_calls\",\"target\":\"$t\",\"settled_s\":$settle,\"rss_kb\":$(rss_kb "$DT_PID")}" ;;
    kamailio) emit "{\"bench\":\"sip_memory_after_calls\",\"target\":\"$t\",\"settled_s\":$settle,\"shm_used\":$(kam_shm_used)}" ;;
  esac
  if [ "$t" = dialtone ]; then
    # Where the dialplan ran: after their first 32 quick invocations the
    # default dialplan and the contact helpers (no WASI) run on the
    # signalling thread that asked, without a hand-off to the guest pool.
    local m inv inl
    m=$(curl -s --max-time 5 http://127.0.0.1:5609/metrics || true)
    inv=$(awk '/^dialtone_dialplan_invocations_total[{]/ {s += $2} END {print s + 0}' <<<"$m")
    inl=$(awk '/^dialtone_dialplan_inline_invocations_total[{]/ {s += $2} END {print s + 0}' <<<"$m")
    emit "{\"bench\":\"sip_dialplan_invocations\",\"target\":\"$t\",\"invocations\":$inv,\"inline\":$inl}"
    if grep -qx 'inline = true' "$REPO/conf/dialtone.toml" && [ "$inv" -ge 200 ] && [ "$inl" -eq 0 ]; then
      log "dialtone: $inv dialplan invocations, none on the asking thread ([dialplan] inline = true)"
      FAIL=1
    fi
  fi
  case $t in
    dialtone) stop_pid "$DT_PID" ;;
    kamailio) stop_pid "$KAM_PID" ;;
  esac
  if [ "${FIRST_OK[$t]:-0}" = 0 ]; then FAIL=1; fi
}

log "mode=$([ "$SMOKE" = 1 ] && echo smoke || echo full) calls/step=$CALLS rates=[$RATES] registrations=$NREG targets=[$TARGETS] work=$WORK"
emit "{\"bench\":\"sip_config\",\"mode\":\"$([ "$SMOKE" = 1 ] && echo smoke || echo full)\",\"calls_per_step\":$CALLS,\"step_max_s\":$STEP_S,\"rates\":[$(echo $RATES | tr ' ' ',')],\"registrations\":$NREG,\"register_in_flight\":$REG_CONC,\"cpus\":$(nproc),\"nofile\":$NOFILE,\"dialtone_limits\":{\"max_cps\":100000,\"max_channels\":100000},\"kamailio\":\"$(kamailio -v 2>/dev/null | awk 'NR==1{print $3}')\",\"sipp\":\"$(sipp -v 2>/dev/null | awk '/SIPp v/{print $2; exit}' | tr -d ',\r')\"}"

# Both targets are up through the ramps, and each rate is run for one
# target and then the other: the VM's speed drifts over minutes, and
# adjacent steps see about the same machine. An idle target between its
# steps costs next to nothing (timers only).
for t in $TARGETS; do
  prepare_target "$t"
done
for r in $RATES; do
  for t in $TARGETS; do
    if [ "${RAMP_ON[$t]}" = 1 ]; then ramp_step "$t" "$r"; fi
  done
done
for t in $TARGETS; do
  finish_target "$t"
done

# ---------------------------------------------------------------- summary

d_max=${MAXRATE[dialtone]:-null}; k_max=${MAXRATE[kamailio]:-null}
ratio=null
if [ "$d_max" != null ] && [ "$k_max" != null ]; then ratio=$(fdiv "$d_max" "$k_max" 2); fi
# CPU per call at CPU_RATE when both sustained it, else at the highest rate
# both sustained.
cpu_rate=$CPU_RATE; cpu_note="fixed"
lowest=$CPU_RATE
for t in $TARGETS; do
  if [ "${MAXRATE[$t]:-0}" -lt "$lowest" ]; then lowest=${MAXRATE[$t]:-0}; fi
done
if [ "$lowest" -lt "$CPU_RATE" ]; then cpu_rate=$lowest; cpu_note="highest_rate_both_sustained"; fi
d_cpu=${CPU_AT[dialtone:$cpu_rate]:-null}; k_cpu=${CPU_AT[kamailio:$cpu_rate]:-null}
cpu_ratio=null
if [ "$d_cpu" != null ] && [ "$k_cpu" != null ]; then cpu_ratio=$(fdiv "$d_cpu" "$k_cpu" 2); fi
emit "{\"bench\":\"sip_summary\",\"mode\":\"$([ "$SMOKE" = 1 ] && echo smoke || echo full)\",\"dialtone_max_sustained_cps\":$d_max,\"kamailio_max_sustained_cps\":$k_max,\"cps_ratio_dialtone_over_kamailio\":$ratio,\"cpu_rate\":$cpu_rate,\"cpu_rate_choice\":\"$cpu_note\",\"dialtone_cpu_us_per_call\":$d_cpu,\"kamailio_cpu_us_per_call\":$k_cpu,\"cpu_ratio_dialtone_over_kamailio\":$cpu_ratio,\"cpu_fixed_rate\":$CPU_RATE,\"dialtone_cpu_us_per_call_at_fixed_rate\":${CPU_PROBE[dialtone]:-null},\"kamailio_cpu_us_per_call_at_fixed_rate\":${CPU_PROBE[kamailio]:-null},\"dialtone_register_refresh_per_s\":${REG_REFRESH[dialtone]:-null},\"kamailio_register_refresh_per_s\":${REG_REFRESH[kamailio]:-null},\"dialtone_register_new_per_s\":${REG_NEW[dialtone]:-null},\"kamailio_register_new_per_s\":${REG_NEW[kamailio]:-null},\"wall_s\":$(( $(date +%s) - T_START ))}"
log "highest sustained calls/s: dialtone=$d_max kamailio=$k_max ratio=$ratio (rates tried: $RATES)"
log "CPU per call at $cpu_rate calls/s ($cpu_note): dialtone=${d_cpu} us kamailio=${k_cpu} us"
log "CPU per call at a fixed $CPU_RATE calls/s (sustained or not): dialtone=${CPU_PROBE[dialtone]:-null} us kamailio=${CPU_PROBE[kamailio]:-null} us"
log "REGISTER/s (refresh of 19 users; up to $NREG new users): dialtone=${REG_REFRESH[dialtone]:-null}; ${REG_NEW[dialtone]:-null} kamailio=${REG_REFRESH[kamailio]:-null}; ${REG_NEW[kamailio]:-null}"
log "wall time $(( $(date +%s) - T_START )) s"
exit "$FAIL"
