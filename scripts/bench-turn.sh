#!/usr/bin/env bash
# scripts/bench-turn.sh — coturn and natkit's TURN server side by side, on
# loopback, measured by the same clients: `natkit turn bench` (allocations/s,
# relayed packets/s, p99 relay latency) and coturn's turnutils_uclient in load
# mode (relayed packets/s), plus memory per allocation (RSS growth while
# turnutils_uclient holds N allocations). natkit runs twice: with one UDP
# socket (pion's single read loop) and with SO_REUSEPORT sockets, one per CPU.
#
#   scripts/bench-turn.sh                 # defaults: 3 s phases
#   DURATION=5s HOLD=2000 scripts/bench-turn.sh
#
# Needs coturn (turnserver, turnutils_uclient, turnutils_peer). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-3s}
ALLOCS=${ALLOCS:-1000}
CLIENTS=${CLIENTS:-4}
HOLD=${HOLD:-1000}          # allocations held for the memory measurement
UC_CLIENTS=${UC_CLIENTS:-20} # turnutils_uclient load: clients, messages each
UC_MSGS=${UC_MSGS:-2000}

for t in turnserver turnutils_uclient turnutils_peer; do
  command -v "$t" >/dev/null || { echo "bench-turn: $t not found (apt-get install coturn)" >&2; exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/natkit" ./cmd/natkit
go build -o "$work/turnserve" ./pkg/turnserver/internal/turnserve

COTURN_PORT=34790 NATKIT1_PORT=34791 NATKIT_PORT=34792 PEER_PORT=34793 UPEER_PORT=34794
"$work/natkit" turn echo --listen 127.0.0.2:$PEER_PORT 2>/dev/null & pids+=($!)
turnutils_peer -L 127.0.0.2 -p $UPEER_PORT >/dev/null 2>&1 & pids+=($!)

turnserver -n --listening-ip 127.0.0.1 --relay-ip 127.0.0.1 --listening-port $COTURN_PORT \
  --min-port 40000 --max-port 44999 --realm natkit --user alice:wonderland --lt-cred-mech \
  --no-tls --no-dtls --no-cli --allow-loopback-peers --no-stdout-log --log-file "$work/coturn.log" \
  --pidfile "$work/coturn.pid" >/dev/null 2>&1 & pids+=($!); coturn_pid=$!
# natkit: quotas and the 401 limit opened for load from one source address.
natkit_args=(--user alice:wonderland --realm natkit --allow-peer 127.0.0.0/8 --user-quota 100000
  --total-quota 100000 --challenge-rate -1)
"$work/turnserve" --listen 127.0.0.1:$NATKIT1_PORT --relay-ports 45000-49999 --udp-sockets 1 "${natkit_args[@]}" 2>/dev/null & pids+=($!); natkit1_pid=$!
"$work/turnserve" --listen 127.0.0.1:$NATKIT_PORT --relay-ports 50000-54999 "${natkit_args[@]}" 2>/dev/null & pids+=($!); natkit_pid=$!
sleep 1

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# natkit turn bench → "allocs pps p99"
nk_bench() {
  "$work/natkit" turn bench --json --server "127.0.0.1:$1" --user alice --password wonderland \
    --peer 127.0.0.2:$PEER_PORT --allocations "$ALLOCS" --clients "$CLIENTS" --duration "$DURATION" 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["allocations_per_s"], r["relayed_packets_per_s"], r["latency_p99_ms"] or 0)'
}

# turnutils_uclient load mode → relayed packets/s (2 × echoed messages / wall time)
uc_load() {
  local t0 t1 out recv
  t0=$(date +%s.%N)
  out=$(timeout 120 turnutils_uclient -c -u alice -w wonderland -e 127.0.0.2 -r $UPEER_PORT -p "$1" \
    -m "$UC_CLIENTS" -n "$UC_MSGS" -l 100 -z 1 127.0.0.1 2>&1 || true)
  t1=$(date +%s.%N)
  recv=$(printf '%s\n' "$out" | sed -n 's/.*tot_recv_msgs=\([0-9]*\)$/\1/p' | tail -1)
  python3 -c "print(round(2*${recv:-0}/($t1-$t0)))"
}

# RSS growth per allocation while turnutils_uclient holds $HOLD of them.
mem_per_alloc() {
  local pid=$2 before after uc
  before=$(rss_kb "$pid")
  timeout 60 turnutils_uclient -c -h -u alice -w wonderland -e 127.0.0.2 -r $UPEER_PORT -p "$1" \
    -m "$HOLD" -n 1 -z 100 127.0.0.1 >/dev/null 2>&1 & uc=$!
  sleep 6
  after=$(rss_kb "$pid")
  kill $uc 2>/dev/null || true; wait $uc 2>/dev/null || true
  python3 -c "print(round(($after-$before)*1024/$HOLD))"
}

declare -A R
for s in coturn:$COTURN_PORT:$coturn_pid natkit-1socket:$NATKIT1_PORT:$natkit1_pid natkit:$NATKIT_PORT:$natkit_pid; do
  IFS=: read -r name port pid <<<"$s"
  echo "== $name (127.0.0.1:$port)" >&2
  read -r a p l <<<"$(nk_bench "$port")"
  R[$name.allocs]=$a R[$name.pps]=$p R[$name.p99]=$l
  R[$name.ucpps]=$(uc_load "$port")
  R[$name.mem]=$(mem_per_alloc "$port" "$pid")
done

ratio() { python3 -c "a,b=float('$1'),float('$2'); print(f'{a/b:.2f}' if b else '-')"; }
printf '\n%-16s %12s %16s %14s %18s %14s\n' SERVER "ALLOCS/S" "RELAYED PKT/S" "P99 (ms)" "UCLIENT PKT/S" "BYTES/ALLOC"
for n in coturn natkit-1socket natkit; do
  printf '%-16s %12s %16s %14s %18s %14s\n' "$n" "${R[$n.allocs]}" "${R[$n.pps]}" "${R[$n.p99]}" "${R[$n.ucpps]}" "${R[$n.mem]}"
done
printf '%-16s %12s %16s %14s %18s %14s\n' "natkit/coturn" "$(ratio "${R[natkit.allocs]}" "${R[coturn.allocs]}")" \
  "$(ratio "${R[natkit.pps]}" "${R[coturn.pps]}")" "$(ratio "${R[natkit.p99]}" "${R[coturn.p99]}")" \
  "$(ratio "${R[natkit.ucpps]}" "${R[coturn.ucpps]}")" "$(ratio "${R[natkit.mem]}" "${R[coturn.mem]}")"
echo "(clients: natkit turn bench, $CLIENTS relaying clients × window 64, $DURATION; turnutils_uclient -m $UC_CLIENTS -n $UC_MSGS -z 1;" \
  "memory: RSS growth over $HOLD held allocations; $(nproc) CPUs shared by servers and clients)"
