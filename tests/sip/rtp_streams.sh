#!/usr/bin/env bash
# Lists the RTP streams in a capture, one line each:
#
#   tests/sip/rtp_streams.sh FILE.pcapng
#   127.0.0.1:10006 127.0.0.1:10026 ssrc=0x70B1F85B payload=g711U packets=177 lost=0 max_jitter_ms=2.200
#
# RTP is found heuristically (no SIP needed in the capture), so capture just
# the RTP port range on loopback, e.g. (as root, bounded by -a duration):
#   timeout 60 tshark -i lo -f 'udp portrange 10000-20000' -a duration:30 -w FILE.pcapng -q
# and stop it early with SIGINT to its PID. Exits 1 when tshark fails.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 FILE.pcapng" >&2; exit 2; }
out="$(tshark -r "$1" -o rtp.heuristic_rtp:TRUE -q -z rtp,streams 2>/dev/null)" \
    || { echo "$0: tshark could not read $1" >&2; exit 1; }
# Data lines: start end src sport dst dport ssrc payload... pkts lost (pct%) mindelta meandelta maxdelta minjit meanjit maxjit [problem]
printf '%s\n' "$out" | awk '
  $3 ~ /^[0-9a-fA-F.:]+$/ && $7 ~ /^0x/ {
    pct = 0
    for (i = 8; i <= NF; i++) if ($i ~ /^\(.*%\)$/) { pct = i; break }
    if (!pct) next
    payload = $8
    for (j = 9; j <= pct - 3; j++) payload = payload "_" $j
    printf "%s:%s %s:%s ssrc=%s payload=%s packets=%s lost=%s max_jitter_ms=%s\n",
      $3, $4, $5, $6, $7, payload, $(pct - 2), $(pct - 1), $(pct + 6)
  }'
