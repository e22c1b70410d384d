#!/usr/bin/env bash
# Writes a baresip config folder from the templates beside this script.
#
#   tests/sip/baresip/render.sh DIR SIP_PORT RTP_MIN RTP_MAX CTRL_PORT AUDIO_SOURCE ACCOUNT
#
# DIR gets config, accounts and an empty contacts file; sndfile's dumps go
# to DIR/snd. Then: baresip -f DIR -t SECONDS </dev/null
set -euo pipefail
[ $# -eq 7 ] || { echo "usage: $0 DIR SIP_PORT RTP_MIN RTP_MAX CTRL_PORT AUDIO_SOURCE ACCOUNT" >&2; exit 2; }
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
dir="$1"; mkdir -p -- "$dir/snd"
dir="$(cd -- "$dir" && pwd)"
src="$(cd -- "$(dirname -- "$6")" && pwd)/$(basename -- "$6")"
[ -f "$src" ] || { echo "$0: no audio source file $6" >&2; exit 1; }
# `|` is the sed delimiter: it must not occur in the values.
for v in "$dir" "$src" "$7"; do
    case "$v" in *'|'*) echo "$0: '|' is not allowed in $v" >&2; exit 2;; esac
done
sed -e "s|@SIP_PORT@|$2|g" -e "s|@RTP_MIN@|$3|g" -e "s|@RTP_MAX@|$4|g" \
    -e "s|@CTRL_PORT@|$5|g" -e "s|@AUDIO_SOURCE@|$src|g" -e "s|@SND_PATH@|$dir/snd|g" \
    "$HERE/config.in" >"$dir/config"
acct="${7//&/\\&}"
sed -e "s|@ACCOUNT@|$acct|g" "$HERE/accounts.in" >"$dir/accounts"
: >"$dir/contacts"
