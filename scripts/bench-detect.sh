#!/usr/bin/env bash
# scripts/bench-detect.sh — how long `natkit detect` takes behind each emulated
# NAT of the lab, next to coturn's `turnutils_natdiscovery -m -f` on the same
# NAT against the same server (coturn with two addresses). Root only (it builds
# a natlab lab in network namespaces); everything it makes is removed on exit.
#
#   sudo scripts/bench-detect.sh                 # every NAT, 9 runs each
#   sudo RUNS=21 scripts/bench-detect.sh full-cone port-restricted-cone
#
# Environment: RUNS (runs per tool and NAT, default 9), GAP (seconds between
# runs, default 1.2: routers send at most one ICMP error per second to a host
# once a burst of six is spent, and detect's path trace waits for one),
# NATKIT_BIN (a natkit binary to use instead of building one).
#
# Targets (issue 3): full detection (mapping, filtering, hairpinning, port
# allocation, path) has a median ≤ 1.0 s on the cone NATs and ≤ 3.5 s when UDP
# is blocked. natdiscovery runs mapping and filtering only.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-9}
GAP=${GAP:-1.2}
NATS=("$@")
[ ${#NATS[@]} -gt 0 ] || NATS=(open-internet full-cone restricted-cone port-restricted-cone
  symmetric-random symmetric-sequential symmetric-udp-firewall udp-blocked double-nat)

[ "$(id -u)" = 0 ] || { echo "bench-detect: run as root (it builds network namespaces)" >&2; exit 2; }
export PATH="$PATH:/usr/sbin:/sbin"
for tool in ip nft turnserver turnutils_natdiscovery; do
  command -v "$tool" >/dev/null || { echo "bench-detect: $tool is missing (Debian: apt-get install iproute2 nftables coturn)" >&2; exit 2; }
done

work=$(mktemp -d)
lab=""
coturn_pid=""
cleanup() {
  [ -n "$coturn_pid" ] && kill "$coturn_pid" 2>/dev/null || true
  if [ -n "$lab" ]; then
    # Only this lab's namespaces: other labs on the machine are left alone.
    for ns in $(ip netns list | awk '{print $1}' | grep "^natkit-$lab-" || true); do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

bin=${NATKIT_BIN:-}
if [ -z "$bin" ]; then
  bin=$work/natkit
  go build -o "$bin" ./cmd/natkit
fi

nat_args=()
for n in "${NATS[@]}"; do nat_args+=(--nat "$n"); done
echo "== building the lab (${NATS[*]})" >&2
"$bin" lab --keep --json --punch=false "${nat_args[@]}" >"$work/lab.json" || true
lab=$(sed -n 's/.*"lab_id": "\([a-z0-9]*\)".*/\1/p' "$work/lab.json" | head -1)
[ -n "$lab" ] || { echo "bench-detect: natkit lab did not report a lab id" >&2; cat "$work/lab.json" >&2; exit 1; }
ns() { echo "natkit-$lab-$1"; }

# coturn on both server addresses, on ports natkit lab's own server leaves free.
ip netns exec "$(ns server)" turnserver -L 203.0.113.10 -L 203.0.113.11 -p 3490 --alt-listening-port 3491 \
  --stun-only --no-auth --no-cli --no-tls --no-dtls -n --no-stdout-log --simple-log \
  --log-file "$work/turn.log" --pidfile "$work/turn.pid" >/dev/null 2>&1 &
coturn_pid=$!
sleep 1
server=203.0.113.10

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

printf '%-24s %10s  %-22s %14s  %-40s %7s\n' NAT "natkit ms" "natkit verdict" "natdisc. ms" "natdiscovery verdict" ratio
for n in "${NATS[@]}"; do
  h=$(ns "$n-h1")
  : >"$work/nk" ; : >"$work/nd"
  verdict="" ; ndverdict=""
  for _ in $(seq "$RUNS"); do
    t0=$(now_ms)
    out=$(ip netns exec "$h" "$bin" detect --json --server "$server:3490" 2>/dev/null || true)
    echo $(( $(now_ms) - t0 )) >>"$work/nk"
    verdict=$(echo "$out" | sed -n 's/^  "nat_type": "\(.*\)",/\1/p')
    sleep "$GAP"
  done
  for _ in $(seq "$RUNS"); do
    t0=$(now_ms)
    out=$(ip netns exec "$h" timeout 60 turnutils_natdiscovery -m -f -p 3490 "$server" 2>&1 || true)
    echo $(( $(now_ms) - t0 )) >>"$work/nd"
    ndverdict=$(echo "$out" | sed -n 's/^NAT with \(.*\)!$/\1/p' | sed 's/Endpoint Independent/EI/; s/Address and Port Dependent/APD/; s/Address Dependent/AD/' | paste -sd/ -)
    sleep "$GAP"
  done
  a=$(median <"$work/nk")
  b=$(median <"$work/nd")
  ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%.1fx", b / a; else print "-" }')
  printf '%-24s %10s  %-22s %14s  %-40s %7s\n' "$n" "$a" "${verdict:-?}" "$b" "${ndverdict:-no verdict}" "$ratio"
done
echo "(medians of $RUNS runs each, wall time including process start; ratio = natdiscovery / natkit)"
