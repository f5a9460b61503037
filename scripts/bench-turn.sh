#!/usr/bin/env bash
# scripts/bench-turn.sh — coturn and `natkit serve` (TURN on its STUN port)
# side by side, on loopback, measured by the same clients:
#
#   - `natkit turn bench`: allocations/s (allocate and release, 16 at a time),
#     relayed packets/s (CLIENTS clients, 64 packets in flight each, through a
#     channel to an echo peer) and p99 relay round-trip latency at a light rate;
#   - coturn's turnutils_uclient in load mode (UC_CLIENTS clients, each a
#     pair of allocations, UC_MSGS messages each, no pacing): relayed
#     packets/s, that is twice the messages echoed back divided by the time
#     between the end of its connect phase and the end of its transmit phase;
#   - CPU per 100k relayed packets at a fixed rate: the server's user+system
#     CPU time while turnutils_uclient sends at a steady pace (PACED_CLIENTS
#     clients, one message every PACED_MS ms each), divided by the packets
#     relayed — what load costs, whatever the CPUs left to the clients;
#   - memory per allocation: the server's RSS growth while turnutils_uclient
#     clients (-h) hold HOLD allocations, divided by the relay sockets the
#     server really holds (counted with ss), on a freshly started server.
#
# These machines are noisy: the load measurements run ROUNDS times, the
# servers taking turns on fresh processes, and the medians are printed.
#
# natkit runs twice, for the before and after of SO_REUSEPORT: with one UDP
# socket (--stun-udp-sockets 1: one pion read loop) and with NATKIT_SOCKETS
# sockets (default 0: one per CPU). Each server runs alone in turn, with the
# clients sharing the machine's CPUs (no pinning).
#
#   scripts/bench-turn.sh                       # defaults: 3 s relay phase
#   DURATION=5s HOLD=1000 scripts/bench-turn.sh
#
# Needs coturn (turnserver, turnutils_uclient, turnutils_peer) and ss.
# Everything listens on 127.0.0.1 and 127.0.0.2 only.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}          # load rounds; medians are printed
DURATION=${DURATION:-3s}     # natkit turn bench: relay phase
ALLOCS=${ALLOCS:-5000}       # natkit turn bench: allocation phase
CLIENTS=${CLIENTS:-4}        # natkit turn bench: relaying clients
UC_CLIENTS=${UC_CLIENTS:-50} # turnutils_uclient load: clients × messages each
UC_MSGS=${UC_MSGS:-5000}
PACED_CLIENTS=${PACED_CLIENTS:-50} # fixed-rate CPU: clients, ms between messages, messages
PACED_MS=${PACED_MS:-5}
PACED_MSGS=${PACED_MSGS:-1000}
HOLD=${HOLD:-1000}           # allocations held for the memory measurement
HOLD_PROCS=${HOLD_PROCS:-8}  # turnutils_uclient processes holding them
NATKIT_SOCKETS=${NATKIT_SOCKETS:-0}
BASE_PORT=${BASE_PORT:-34790}
COTURN_RELAYS=20000-24999 NATKIT_RELAYS=25000-29999 # below the ephemeral range
export PATH="$PATH:/usr/sbin:/sbin"

for t in turnserver turnutils_uclient turnutils_peer ss python3; do
  command -v "$t" >/dev/null || { echo "bench-turn: $t not found (apt-get install coturn iproute2 python3)" >&2; exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building natkit" >&2
go build -o "$work/natkit" ./cmd/natkit

# free_port N: the first port from N up that nothing uses on UDP or TCP.
# Each port below is looked for after the one before, so all are distinct.
free_port() {
  local p=$1
  while ss -Hanu "sport = :$p" | grep -q . || ss -Hant "sport = :$p" | grep -q .; do
    p=$((p + 1))
  done
  echo "$p"
}
COTURN_PORT=$(free_port "$BASE_PORT")
NATKIT_PORT=$(free_port $((COTURN_PORT + 1)))
NATKIT_ALT_PORT=$(free_port $((NATKIT_PORT + 1)))
PEER_PORT=$(free_port $((NATKIT_ALT_PORT + 1)))
UPEER_PORT=$(free_port $((PEER_PORT + 1)))

# The echo peers, on 127.0.0.2: natkit's for natkit turn bench, coturn's for
# turnutils_uclient.
"$work/natkit" turn echo --listen 127.0.0.2:"$PEER_PORT" 2>"$work/echo.log" & pids+=($!)
turnutils_peer -L 127.0.0.2 -p "$UPEER_PORT" >/dev/null 2>&1 & pids+=($!)

server_pid=
start_coturn() {
  turnserver -n --listening-ip 127.0.0.1 --relay-ip 127.0.0.1 --listening-port "$COTURN_PORT" \
    --min-port "${COTURN_RELAYS%-*}" --max-port "${COTURN_RELAYS#*-}" --realm natkit --user alice:wonderland --lt-cred-mech \
    --no-tls --no-dtls --no-cli --allow-loopback-peers --no-stdout-log --simple-log --log-file "$work/coturn.log" \
    --pidfile "$work/coturn.pid" >/dev/null 2>&1 &
  server_pid=$!; pids+=("$server_pid")
}
# natkit serve: TURN on the STUN port, quotas and the 401 limit opened for
# load from one source address, no rendezvous or HTTP.
start_natkit() { # udp-sockets
  "$work/natkit" serve --listen 127.0.0.1 --stun-port "$NATKIT_PORT" --stun-alt-port "$NATKIT_ALT_PORT" \
    --stun-udp-sockets "$1" --http off --rendezvous-port 0 --realm natkit --user alice:wonderland \
    --allow-peer 127.0.0.0/8 --relay-ports "$NATKIT_RELAYS" --turn-user-quota 0 --turn-total-quota 100000 \
    --turn-challenge-rate -1 --sip-port 0 2>"$work/natkit.log" &
  server_pid=$!; pids+=("$server_pid")
}
stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }

wait_ready() { # port: an allocation succeeds
  for _ in $(seq 50); do
    if "$work/natkit" turn --server "127.0.0.1:$1" --user alice --password wonderland --timeout 1s >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "bench-turn: no TURN server answers on 127.0.0.1:$1" >&2; exit 1
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in clock ticks
relays() { # MIN-MAX → UDP sockets bound in that range
  ss -Hanu "( sport >= :${1%-*} and sport <= :${1#*-} )" | wc -l
}

# mem_per_alloc port pid relay-range → "bytes-per-allocation held"
mem_per_alloc() {
  local port=$1 pid=$2 range=$3 before after held last=-1 same=0 ucs=() i
  before=$(rss_kb "$pid")
  # turnutils_uclient -m N makes 2N allocations: a pair per client.
  for ((i = 0; i < HOLD_PROCS; i++)); do
    turnutils_uclient -c -h -u alice -w wonderland -e 127.0.0.2 -r "$UPEER_PORT" -p "$port" \
      -m $(((HOLD / 2 + i) / HOLD_PROCS)) -n 1 -z 100 127.0.0.1 >/dev/null 2>&1 &
    ucs+=($!); pids+=($!)
  done
  # Until every allocation is held, or none has been added for 3 s (60 s at most).
  for _ in $(seq 120); do
    sleep 0.5
    held=$(relays "$range")
    if [ "$held" -ge "$HOLD" ]; then break; fi
    if [ "$held" = "$last" ]; then same=$((same + 1)); else same=0; fi
    if [ "$same" -ge 6 ]; then break; fi
    last=$held
  done
  sleep 1 # let the last allocations settle
  held=$(relays "$range") after=$(rss_kb "$pid")
  for p in "${ucs[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${ucs[@]}"; do wait "$p" 2>/dev/null || true; done
  python3 -c "h=$held; print(round(($after-$before)*1024/h) if h else '-', h)"
}

# nk_bench port → "allocs/s relayed-pkt/s p99-ms"
nk_bench() {
  "$work/natkit" turn bench --json --server "127.0.0.1:$1" --user alice --password wonderland \
    --peer 127.0.0.2:"$PEER_PORT" --allocations "$ALLOCS" --clients "$CLIENTS" --duration "$DURATION" 2>"$work/bench.log" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["allocations_per_s"]), round(r["relayed_packets_per_s"]), r["latency_p99_ms"] or "-")' ||
    { echo "bench-turn: natkit turn bench failed:" >&2; cat "$work/bench.log" >&2; echo "- - -"; }
}

# uc_load port → relayed packets/s: 2 × messages echoed back, over the
# transmit phase (from the end of the connect phase, by line timestamps).
uc_load() {
  stdbuf -oL -eL timeout 300 turnutils_uclient -c -u alice -w wonderland -e 127.0.0.2 -r "$UPEER_PORT" -p "$1" \
    -m "$UC_CLIENTS" -n "$UC_MSGS" -l 100 -z 0 127.0.0.1 2>&1 |
    while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$work/uclient.log" || true
  python3 - "$work/uclient.log" <<'EOF'
import re, sys
t0 = t1 = recv = None
for line in open(sys.argv[1]):
    ts, _, rest = line.partition(" ")
    if "Total connect time" in rest and t0 is None:
        t0 = float(ts)
    m = re.search(r"start_mclient: tot_send_msgs=\d+, tot_recv_msgs=(\d+)$", rest.strip())
    if m:
        t1, recv = float(ts), int(m.group(1))
print(round(2 * recv / (t1 - t0)) if t0 and t1 and t1 > t0 else "-")
EOF
}

# uc_paced port pid → server CPU ms per 100k relayed packets at a fixed
# rate (2 × messages echoed back; the connect phase's few allocations count too).
uc_paced() {
  local t0 t1 recv
  t0=$(cpu_ticks "$2")
  recv=$(timeout 300 turnutils_uclient -c -u alice -w wonderland -e 127.0.0.2 -r "$UPEER_PORT" -p "$1" \
    -m "$PACED_CLIENTS" -n "$PACED_MSGS" -l 100 -z "$PACED_MS" 127.0.0.1 2>&1 |
    sed -n 's/.*start_mclient: tot_send_msgs=[0-9]*, tot_recv_msgs=\([0-9]*\)$/\1/p' | tail -1)
  t1=$(cpu_ticks "$2")
  python3 -c "
r = int('${recv:-0}' or 0)
print(round(($t1 - $t0) * 1000 / $(getconf CLK_TCK) * 100000 / (2 * r)) if r else '-')"
}

# median of the arguments ('-' when none is a number).
median() { python3 -c "
import statistics, sys
v = [float(x) for x in sys.argv[1:] if x not in ('-', '')]
print(('%.3f' if v and statistics.median(v) < 10 else '%.0f') % statistics.median(v) if v else '-')" "$@"; }

declare -A R
names=(coturn natkit-1socket natkit)
start() { # name → a fresh server, ready; sets port and range
  case $1 in
    coturn) start_coturn; port=$COTURN_PORT range=$COTURN_RELAYS ;;
    natkit-1socket) start_natkit 1; port=$NATKIT_PORT range=$NATKIT_RELAYS ;;
    natkit) start_natkit "$NATKIT_SOCKETS"; port=$NATKIT_PORT range=$NATKIT_RELAYS ;;
  esac
  wait_ready "$port"
}
for name in "${names[@]}"; do
  # Memory on a fresh server (the held allocations outlive their clients
  # until they expire).
  start "$name"
  echo "== $name on 127.0.0.1:$port: memory" >&2
  read -r "R[$name.mem]" "R[$name.held]" <<<"$(mem_per_alloc "$port" "$server_pid" "$range")"
  stop_server
done
for ((round = 1; round <= ROUNDS; round++)); do
  for name in "${names[@]}"; do
    start "$name"
    echo "== round $round/$ROUNDS: $name on 127.0.0.1:$port: natkit turn bench, turnutils_uclient (load, paced)" >&2
    read -r allocs pps p99 <<<"$(nk_bench "$port")"
    R[$name.allocs]+=" $allocs" R[$name.pps]+=" $pps" R[$name.p99]+=" $p99"
    R[$name.ucpps]+=" $(uc_load "$port")"
    R[$name.cpu]+=" $(uc_paced "$port" "$server_pid")"
    stop_server
  done
done
for name in "${names[@]}"; do
  for k in allocs pps p99 ucpps cpu; do
    echo "$name $k:${R[$name.$k]}" >&2
    R[$name.$k]=$(median ${R[$name.$k]})
  done
done

ratio() { python3 -c "
try: print(f'{float(\"$1\")/float(\"$2\"):.2f}')
except Exception: print('-')"; }
row() { printf '%-22s %10s %14s %10s %14s %14s %12s\n' "$@"; }
sockets=$NATKIT_SOCKETS; [ "$sockets" != 0 ] || sockets="$(nproc) (one per CPU)"
echo
echo "TURN over UDP on loopback: coturn $(turnserver --version 2>/dev/null | head -1) and natkit serve; $(nproc) CPUs shared by servers and clients"
row SERVER "ALLOCS/S" "RELAYED PKT/S" "P99 MS" "UCLIENT PKT/S" "CPU MS/100K" "BYTES/ALLOC"
for n in "${names[@]}"; do
  row "$n" "${R[$n.allocs]}" "${R[$n.pps]}" "${R[$n.p99]}" "${R[$n.ucpps]}" "${R[$n.cpu]}" "${R[$n.mem]}"
done
for pair in natkit:coturn natkit-1socket:coturn natkit:natkit-1socket; do
  a=${pair%:*} b=${pair#*:}
  row "$a/$b" "$(ratio "${R[$a.allocs]}" "${R[$b.allocs]}")" "$(ratio "${R[$a.pps]}" "${R[$b.pps]}")" \
    "$(ratio "${R[$a.p99]}" "${R[$b.p99]}")" "$(ratio "${R[$a.ucpps]}" "${R[$b.ucpps]}")" "$(ratio "${R[$a.cpu]}" "${R[$b.cpu]}")" \
    "$(ratio "${R[$a.mem]}" "${R[$b.mem]}")"
done
echo "natkit: --stun-udp-sockets $sockets; natkit-1socket: --stun-udp-sockets 1 (one pion read loop)."
echo "ALLOCS/S, RELAYED PKT/S, P99: natkit turn bench, $ALLOCS allocations 16 at a time, $CLIENTS clients x 64 in flight for $DURATION."
echo "UCLIENT PKT/S: turnutils_uclient -m $UC_CLIENTS -n $UC_MSGS -z 0, 2 x echoed / transmit time (bound by turnutils_uclient;" \
  "a run where its own sockets overflow waits for the lost echoes, hence the median)."
echo "CPU MS/100K: server CPU per 100k relayed packets, turnutils_uclient -m $PACED_CLIENTS -n $PACED_MSGS -z $PACED_MS" \
  "(~$((PACED_CLIENTS * 2000 / PACED_MS)) relayed pkt/s; lower is better)."
echo "Load columns: medians of $ROUNDS rounds (each round's figures are on stderr)."
echo "BYTES/ALLOC: RSS growth of a fresh server holding turnutils_uclient allocations" \
  "(held: coturn ${R[coturn.held]}, natkit-1socket ${R[natkit-1socket.held]}, natkit ${R[natkit.held]} of $HOLD)."
