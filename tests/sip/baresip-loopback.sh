#!/usr/bin/env bash
# Two baresip softphones call each other directly on 127.0.0.1, without the
# switch: a check of the baresip templates and of the audio measurement.
#
#   tests/sip/baresip-loopback.sh [SECONDS]     (default 4 s of talk)
#
# A (sip:alice@127.0.0.1:5120, ctrl_tcp 4441, RTP 10000-10010) sends a
# 440 Hz tone, B (sip:bob@127.0.0.1:5130, ctrl_tcp 4442, RTP 10020-10030,
# answermode=auto) sends 1000 Hz. A dials B over ctrl_tcp, both talk, A hangs
# up. The frequencies each side decoded (sndfile's dump-*-dec.wav) must be
# the other side's tone within 1 %. As root with tshark present, the RTP is
# also captured on lo and both streams must hold packets.
# Prints "baresip: N passed, N failed"; exits 1 if a check failed.
set -uo pipefail
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
TALK="${1:-4}"
for t in baresip sox python3; do
    command -v "$t" >/dev/null || { echo "baresip-loopback: $t not found (scripts/install-peers.sh)" >&2; exit 1; }
done
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dialtone-baresip.XXXXXX")"
cd "$WORK" || exit 1
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT
pass=0; fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1"; fail=$((fail + 1)); KEEP=1; }

sox -n -r 8000 -c 1 -b 16 tone440.wav synth 30 sine 440 vol 0.5
sox -n -r 8000 -c 1 -b 16 tone1000.wav synth 30 sine 1000 vol 0.5
"$HERE/baresip/render.sh" a 5120 10000 10010 4441 tone440.wav \
    '<sip:alice@127.0.0.1:5120>;regint=0;audio_codecs=PCMU'
"$HERE/baresip/render.sh" b 5130 10020 10030 4442 tone1000.wav \
    '<sip:bob@127.0.0.1:5130>;regint=0;audio_codecs=PCMU;answermode=auto'

cap=""
if [ "$(id -u)" = 0 ] && command -v tshark >/dev/null; then
    cap="$WORK/rtp.pcapng"
    timeout $((TALK + 30)) tshark -i lo -f 'udp portrange 10000-10030' -a duration:$((TALK + 20)) -w "$cap" -q >tshark.log 2>&1 &
    tpid=$!; pids+=("$tpid")
    for _ in $(seq 50); do grep -q "Capturing on" tshark.log 2>/dev/null && break; sleep 0.1; done
fi

life=$((TALK + 20))
timeout $((life + 5)) baresip -f "$WORK/b" -t "$life" </dev/null >b.log 2>&1 & bpid=$!; pids+=("$bpid")
timeout $((life + 5)) baresip -f "$WORK/a" -t "$life" </dev/null >a.log 2>&1 & apid=$!; pids+=("$apid")
# Wait for both ctrl_tcp ports.
for port in 4441 4442; do
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

if timeout 15 "$HERE/baresip_ctrl.py" 4441 dial sip:bob@127.0.0.1:5130 --wait CALL_ESTABLISHED >ctrl.log; then
    ok "A dialled B and the call was established"
else
    ko "call not established (see $WORK/ctrl.log, a.log, b.log)"
fi
sleep "$TALK"
timeout 15 "$HERE/baresip_ctrl.py" 4441 hangup --wait CALL_CLOSED >>ctrl.log || ko "hangup"
timeout 5 "$HERE/baresip_ctrl.py" 4441 quit >>ctrl.log 2>&1
timeout 5 "$HERE/baresip_ctrl.py" 4442 quit >>ctrl.log 2>&1
wait "$apid" "$bpid" 2>/dev/null   # both quit (or -t ends them)

check_tone() {  # SIDE EXPECTED_HZ
    local f
    f="$(ls "$WORK/$1/snd/"dump-*-dec.wav 2>/dev/null | head -n1)"
    if [ -z "$f" ]; then ko "$1: no decoded audio file in $WORK/$1/snd"; return; fi
    local hz
    if hz="$(python3 "$HERE/tone_freq.py" "$f" --expect "$2" --tolerance 0.01)"; then
        ok "$1 received $hz Hz (want $2)"
    else
        ko "$1 received ${hz:-no tone} (want $2 Hz) in $f"
    fi
}
check_tone b 440
check_tone a 1000

if [ -n "$cap" ]; then
    kill -INT "$tpid" 2>/dev/null; wait "$tpid" 2>/dev/null
    pids=()
    streams="$("$HERE/rtp_streams.sh" "$cap")"
    echo "$streams" | sed 's/^/     /'
    n="$(echo "$streams" | awk -F'packets=' 'NF > 1 { split($2, a, " "); if (a[1] + 0 >= 50 * '"$TALK"' * 0.8) n++ } END { print n + 0 }')"
    if [ "$n" -ge 2 ]; then ok "tshark saw 2 RTP streams of >= 80 % of 50 packets/s"; else ko "tshark RTP streams: $n full streams"; fi
fi

if [ "${KEEP:-0}" = 1 ]; then echo "work folder: $WORK"; else rm -rf -- "$WORK"; fi
echo "baresip: $pass passed, $fail failed"
[ "$fail" = 0 ]
