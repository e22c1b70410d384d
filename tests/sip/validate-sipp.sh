#!/usr/bin/env bash
# Runs every SIPp scenario of tests/sip/sipp against another SIPp (or
# sipsak) on 127.0.0.1, without the switch: a syntax and behaviour check of
# the test peers themselves. Each pairing is one check: the server is
# started first in the background, the client runs, and both exit codes
# must be the ones expected. Every sipp runs under coreutils `timeout`.
#
#   tests/sip/validate-sipp.sh            (ports 5150-5199, RTP 17500-17999)
#   KEEP=1 tests/sip/validate-sipp.sh     keep the work folder (traces, logs)
#
# Prints one line per check and "sipp: N passed, N failed"; exits 1 if any
# check failed.
set -uo pipefail
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
S="$HERE/sipp"
command -v sipp >/dev/null || { echo "validate-sipp: sipp not found (scripts/install-peers.sh)" >&2; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dialtone-sipp.XXXXXX")"
cd "$WORK" || exit 1
SRV=5150   # server port
CLI=5151   # client port
COMMON=(-i 127.0.0.1 -nostdin -recv_timeout 10000 -timeout 20s -timeout_error -trace_err -trace_msg -trace_logs -trace_stat)
pass=0; fail=0

# check NAME SERVER_RC CLIENT_RC "server args" -- client args...
# The server runs -m 1 unless its args say otherwise.
check() {
    local name="$1" want_srv="$2" want_cli="$3"; shift 3
    local srv_args=() cli_args=()
    while [ "$1" != -- ]; do srv_args+=("$1"); shift; done; shift
    cli_args=("$@")
    mkdir -p "$name"
    # Scenarios that play audio open pcap/g711a.pcap.
    [ -e "$name/pcap" ] || ln -s /usr/share/sip-tester "$name/pcap"
    ( cd "$name" && exec timeout 30 sipp -p "$SRV" -mi 127.0.0.1 -mp 17500 "${COMMON[@]}" "${srv_args[@]}" >srv.out 2>&1 ) &
    local spid=$!
    sleep 0.3
    ( cd "$name" && exec timeout 30 sipp 127.0.0.1:"$SRV" -p "$CLI" -mi 127.0.0.1 -mp 17600 "${COMMON[@]}" "${cli_args[@]}" >cli.out 2>&1 )
    local crc=$?
    wait "$spid"; local src=$?
    if [ "$crc" = "$want_cli" ] && [ "$src" = "$want_srv" ]; then
        echo "ok   $name (client rc $crc, server rc $src)"; pass=$((pass + 1))
    else
        echo "FAIL $name: client rc $crc (want $want_cli), server rc $src (want $want_srv); see $WORK/$name"
        fail=$((fail + 1)); KEEP=1
    fi
}

check call_answer 0 0 -sf "$S/uas_answer.xml" -m 1 -- \
    -sf "$S/uac_call.xml" -s 1001 -key caller 2000 -d 300 -m 1
check call_ring_answer 0 0 -sf "$S/uas_ring_answer.xml" -d 300 -m 1 -- \
    -sf "$S/uac_call.xml" -s 1001 -key caller 2000 -d 300 -m 1
check hold_unhold 0 0 -sf "$S/uas_answer.xml" -m 1 -- \
    -sf "$S/uac_hold.xml" -s 1001 -key caller 2000 -d 200 -m 1
check cancel_ring_forever 0 0 -sf "$S/uas_ring_forever.xml" -m 1 -- \
    -sf "$S/uac_cancel.xml" -s 1001 -key caller 2000 -d 300 -m 1
check cancel_after_trying 0 0 -sf "$S/selftest/uas_trying_until_cancel.xml" -m 1 -- \
    -sf "$S/uac_cancel_trying.xml" -s 1001 -key caller 2000 -d 300 -m 1
check cancel_during_ring_pause 0 0 -sf "$S/uas_ring_answer.xml" -d 5000 -m 1 -- \
    -sf "$S/uac_cancel.xml" -s 1001 -key caller 2000 -d 200 -m 1
check busy_486 0 0 -sf "$S/uas_busy.xml" -m 1 -- \
    -sf "$S/uac_busy_expect_486.xml" -s 1001 -key caller 2000 -m 1
check expect_503 0 0 -sf "$S/uas_503.xml" -m 1 -- \
    -sf "$S/uac_expect_final.xml" -s 1001 -key caller 2000 -key expect 503 -m 1
check expect_603 0 0 -sf "$S/uas_decline.xml" -m 1 -- \
    -sf "$S/uac_expect_final.xml" -s 1001 -key caller 2000 -key expect 603 -m 1
check expect_486_gets_503 0 1 -sf "$S/uas_503.xml" -m 1 -- \
    -sf "$S/uac_expect_final.xml" -s 1001 -key caller 2000 -key expect 486 -m 1
check call_late_180 0 0 -sf "$S/selftest/uas_late180.xml" -m 1 -- \
    -sf "$S/uac_call.xml" -s 1001 -key caller 2000 -d 300 -m 1
check hold_late_180 0 0 -sf "$S/selftest/uas_late180.xml" -m 1 -- \
    -sf "$S/uac_hold.xml" -s 1001 -key caller 2000 -d 300 -m 1
check call_gets_486 0 1 -sf "$S/uas_busy.xml" -m 1 -- \
    -sf "$S/uac_call.xml" -s 1001 -key caller 2000 -m 1
check info_options_refresh 0 0 -sf "$S/selftest/uas_info_peer.xml" -m 1 -- \
    -sf "$S/uac_info.xml" -s 1001 -key caller 2000 -m 1
check early_media_answer 0 0 -sf "$S/uas_early_media.xml" -d 500 -m 1 -- \
    -sf "$S/uac_early_media.xml" -s 1001 -key caller 2000 -key rtp_port 17700 -d 200 -m 1
check early_media_busy 0 0 -sf "$S/uas_early_media_busy.xml" -d 500 -m 1 -- \
    -sf "$S/uac_early_media.xml" -s 1001 -key caller 2000 -key rtp_port 17700 -m 1
check early_media_unwanted 1 1 -sf "$S/uas_early_media.xml" -d 500 -m 1 -- \
    -sf "$S/uac_expect_no_early_media.xml" -s 1001 -key caller 2000 -key rtp_port 17700 -d 200 -m 1
check options 0 0 -sf "$S/uas_options.xml" -m 1 -- \
    -sf "$S/uac_options.xml" -s ping -m 1

# The carriers as registrar and authenticating callee (-m 2: challenge and
# answer share one Call-ID, so one SIPp call each).
CARRIER=(-key auth_user 1000 -key auth_pass 1234)
check register 0 0 -sf "$S/uas_register_auth_carrier.xml" "${CARRIER[@]}" -m 1 -- \
    -sf "$S/uac_register.xml" -s 1000 -key domain dialtone.local -key expires 3600 -au 1000 -ap 1234 -m 1
check register_bad_password 1 1 -sf "$S/uas_register_auth_carrier.xml" "${CARRIER[@]}" -m 1 -- \
    -sf "$S/uac_register.xml" -s 1000 -key domain dialtone.local -key expires 3600 -au 1000 -ap wrong -m 1
check unregister 0 0 -sf "$S/uas_register_auth_carrier.xml" "${CARRIER[@]}" -m 1 -- \
    -sf "$S/uac_unregister.xml" -s 1000 -key domain dialtone.local -au 1000 -ap 1234 -m 1
check auth_call_407 0 0 -sf "$S/uas_register_auth_carrier.xml" "${CARRIER[@]}" -m 1 -- \
    -sf "$S/uac_auth_call.xml" -s 1001 -key caller 1000 -key domain dialtone.local -au 1000 -ap 1234 -d 200 -m 1
check auth_call_407_bad_user 1 1 -sf "$S/uas_register_auth_carrier.xml" "${CARRIER[@]}" -m 1 -- \
    -sf "$S/uac_auth_call.xml" -s 1001 -key caller 1000 -key domain dialtone.local -au 999 -ap 1234 -m 1
check auth_call_401 0 0 -sf "$S/uas_invite401_carrier.xml" "${CARRIER[@]}" -m 1 -- \
    -sf "$S/uac_auth_call.xml" -s 1001 -key caller 1000 -key domain dialtone.local -au 1000 -ap 1234 -d 200 -m 1
check auth_call_401_bad_password 1 1 -sf "$S/uas_invite401_carrier.xml" "${CARRIER[@]}" -m 1 -- \
    -sf "$S/uac_auth_call.xml" -s 1001 -key caller 1000 -key domain dialtone.local -au 1000 -ap wrong -m 1
check carrier_options 0 0 -sf "$S/uas_register_auth_carrier.xml" "${CARRIER[@]}" -m 1 -- \
    -sf "$S/uac_options.xml" -s ping -m 1

# sipsak's OPTIONS ping against uas_options.xml.
if command -v sipsak >/dev/null; then
    mkdir -p sipsak
    ( cd sipsak && exec timeout 20 sipp -sf "$S/uas_options.xml" -p "$SRV" -i 127.0.0.1 -nostdin -m 1 -timeout 10s -timeout_error >srv.out 2>&1 ) &
    spid=$!; sleep 0.3
    timeout 10 sipsak -s "sip:ping@127.0.0.1:$SRV" -l "$CLI" -H 127.0.0.1 >sipsak/cli.out 2>&1; crc=$?
    wait "$spid"; src=$?
    if [ "$crc" = 0 ] && [ "$src" = 0 ]; then echo "ok   sipsak_options"; pass=$((pass + 1))
    else echo "FAIL sipsak_options: sipsak rc $crc, sipp rc $src"; fail=$((fail + 1)); KEEP=1; fi
fi

if [ "${KEEP:-0}" = 1 ]; then echo "work folder: $WORK"; else rm -rf -- "$WORK"; fi
echo "sipp: $pass passed, $fail failed"
[ "$fail" = 0 ]
