#!/usr/bin/env bash
# scripts/bench-stun.sh — STUN Binding throughput of `natkit serve` against
# coturn (`turnserver --stun-only`), both on loopback, driven by the same
# load generator (scripts/stunload: batched UDP, per-request latency).
#
#   scripts/bench-stun.sh                 # 5 s per run
#   DURATION=10s SENDERS=2 WINDOW=128 scripts/bench-stun.sh
#
# On a machine with two or more CPUs the servers run pinned to CPU 0 and the
# generator to CPU 1 (PIN=0 turns that off), so that each server gets the
# same one core and the generator never competes with it. coturn runs with
# its best settings for one core (measured: -m 0, one relay thread shared
# with the listener), no TCP/TLS/DTLS listeners, no CLI, no config file, logs
# in a temporary directory. natkit runs twice: as built (recvmmsg/sendmmsg,
# 64 datagrams per call) and without batching (recvfrom/sendto) — the
# before/after of batching. natkit runs with one IP (RFC 5780 port-only:
# its alternate port is NATKIT_PORT+1) and its per-source rate limit on but
# set far above what the generator's single source IP sends, so that the
# limiter's cost is in the figures but no answer is withheld. Traffic goes
# to 127.0.0.1 only.
#
# A second measure, fairer to a server that is not built for batches: the
# server's CPU time (utime+stime from /proc/PID/stat) per 100k responses
# while the generator sends a fixed CPU_RATE requests a second (default
# 50000) for CPU_DURATION (default DURATION); CPU_RATE=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
SENDERS=${SENDERS:-2}
WINDOW=${WINDOW:-128}
PIN=${PIN:-1}
COTURN_THREADS=${COTURN_THREADS:-}
NATKIT_PORT=${NATKIT_PORT:-35478}
NATKIT_ALT_PORT=${NATKIT_ALT_PORT:-$((NATKIT_PORT + 1))}
COTURN_PORT=${COTURN_PORT:-35488}
CPU_RATE=${CPU_RATE:-50000}
CPU_DURATION=${CPU_DURATION:-$DURATION}
export PATH="$PATH:/usr/sbin:/sbin"

command -v turnserver >/dev/null || { echo "bench-stun: turnserver not found (apt-get install coturn)" >&2; exit 2; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

srv_cpu=() gen_cpu=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  srv_cpu=(taskset -c 0) gen_cpu=(taskset -c 1)
  : "${COTURN_THREADS:=0}"
  pinning="servers on CPU 0, generator on CPU 1"
else
  : "${COTURN_THREADS:=$(nproc)}"
  pinning="no pinning"
fi

echo "== building natkit and stunload" >&2
go build -o "$tmp/natkit" ./cmd/natkit
go build -o "$tmp/stunload" ./scripts/stunload

for port in "$NATKIT_PORT" "$NATKIT_ALT_PORT" "$COTURN_PORT"; do
  if ss -Hlun "sport = :$port" | grep -q .; then
    echo "bench-stun: UDP port $port is in use (set NATKIT_PORT / NATKIT_ALT_PORT / COTURN_PORT)" >&2; exit 2
  fi
done

load() { # label port → one result line
  "${gen_cpu[@]}" "$tmp/stunload" -target "127.0.0.1:$2" -senders "$SENDERS" -window "$WINDOW" -duration "$DURATION" -label "$1"
}
wait_ready() { # port
  for _ in $(seq 50); do
    if "$tmp/stunload" -target "127.0.0.1:$1" -senders 1 -window 1 -duration 50ms -timeout 50ms | grep -q 'responses=[1-9]'; then return 0; fi
    sleep 0.1
  done
  echo "bench-stun: nothing answers on 127.0.0.1:$1" >&2; exit 1
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }
ticks() { # pid → utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat)
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
hz=$(getconf CLK_TCK)
cpu_results=()
cpu_load() { # label port pid → one line: label, responses, CPU ms per 100k responses
  [ "$CPU_RATE" != 0 ] || return 0
  local before after line resp
  before=$(ticks "$3")
  line=$("${gen_cpu[@]}" "$tmp/stunload" -target "127.0.0.1:$2" -senders "$SENDERS" -window "$WINDOW" -duration "$CPU_DURATION" -rate "$CPU_RATE" -label "$1")
  after=$(ticks "$3")
  resp=$(sed -n 's/.* responses=\([0-9]*\).*/\1/p' <<<"$line")
  cpu_results+=("$1 $resp $(awk -v t=$((after - before)) -v hz="$hz" -v r="$resp" 'BEGIN { if (r > 0) printf "%.1f", t * 1000 / hz / r * 100000; else print "n/a" }')")
}

results=()
# The rate limit stays on, far above one source's rate: its cost is measured.
limit=(--stun-rate 1000000000 --stun-burst 1000000000)
run_natkit() { # label extra-flags...
  local label=$1; shift
  "${srv_cpu[@]}" "$tmp/natkit" serve --listen 127.0.0.1 --alt-ip none --stun-port "$NATKIT_PORT" --stun-alt-port "$NATKIT_ALT_PORT" \
    --http off "${limit[@]}" "$@" 2>"$tmp/natkit.log" &
  local pid=$!; pids+=("$pid")
  wait_ready "$NATKIT_PORT"
  results+=("$(load "$label" "$NATKIT_PORT")")
  cpu_load "$label" "$NATKIT_PORT" "$pid"
  stop "$pid"
}

echo "== natkit serve ($pinning)" >&2
run_natkit natkit
run_natkit natkit-nobatch --stun-udp-batch 1 --stun-udp-sockets 1

echo "== coturn $(turnserver --version 2>/dev/null | head -1) -m $COTURN_THREADS" >&2
"${srv_cpu[@]}" turnserver -n --stun-only --no-cli --no-tls --no-dtls --no-tcp \
  --listening-ip 127.0.0.1 --listening-port "$COTURN_PORT" -m "$COTURN_THREADS" \
  --log-file "$tmp/coturn.log" --simple-log --pidfile "$tmp/coturn.pid" >/dev/null 2>&1 &
cpid=$!; pids+=("$cpid")
wait_ready "$COTURN_PORT"
results+=("$(load coturn "$COTURN_PORT")")
cpu_load coturn "$COTURN_PORT" "$cpid"
stop "$cpid"

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
echo
echo "STUN Binding over UDP on loopback, $DURATION per run, $SENDERS senders x $WINDOW outstanding, $pinning"
printf '%-16s %12s %9s %9s %8s %10s\n' server responses/s p50_us p99_us lost vs_coturn
coturn_rps=$(field "${results[2]}" rps)
for r in "${results[@]}"; do
  label=$(sed -n 's/^label=\([^ ]*\).*/\1/p' <<<"$r")
  rps=$(field "$r" rps)
  printf '%-16s %12s %9s %9s %8s %9sx\n' "$label" "$rps" "$(field "$r" p50_us)" "$(field "$r" p99_us)" "$(field "$r" lost)" \
    "$(awk -v a="$rps" -v b="$coturn_rps" 'BEGIN { printf "%.2f", a / b }')"
done
if [ ${#cpu_results[@]} -gt 0 ]; then
  echo
  echo "Server CPU time at a fixed $CPU_RATE requests/s, $CPU_DURATION per run"
  printf '%-16s %12s %16s\n' server responses cpu_ms_per_100k
  for r in "${cpu_results[@]}"; do
    # shellcheck disable=SC2086
    printf '%-16s %12s %16s\n' $r
  done
fi
