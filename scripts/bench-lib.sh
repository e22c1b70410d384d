# Shell helpers shared by the benchmark scripts (sourced, not run).

# Waits up to $2 seconds for UDP port $1 on 127.0.0.1 to be bound.
wait_udp() {
  local port=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    if awk -v p="$(printf '%04X' "$port")" 'NR>1 && $2 == "0100007F:" p {f=1} END{exit !f}' /proc/net/udp; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# Children (recursively) of a PID, from /proc.
descendants() {
  local parent=$1 p pp
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    pp=$(awk '{s=$0; sub(/.*\) /,"",s); split(s,a," "); print a[2]}' "/proc/$p/stat" 2>/dev/null) || continue
    if [ "$pp" = "$parent" ]; then
      echo "$p"
      descendants "$p"
    fi
  done
}

# Ends a process this script started: TERM, up to 5 s, then KILL.
stop_pid() {
  local p=$1
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 25); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
