#!/usr/bin/env bash
# scripts/bench-anchor.sh — the media anchor (pkg/pbx/anchor) under the load
# of issue 11: CALLS concurrent G.711 calls (default 500), each phone sending
# 50 packets a second of 172 bytes (20 ms frames) through the relay for
# DURATION (default 10s), both ways: 50k packets a second relayed. Phones
# send from other ports than their SDP names, so every leg latches first.
#
#   scripts/bench-anchor.sh
#   CALLS=250 DURATION=30s RUNS=3 scripts/bench-anchor.sh
#   SPLIT=1 scripts/bench-anchor.sh   # relay and phones in two processes, pinned to CPU 0 and 1
#
# Each run prints the phones talking directly (the baseline: what the
# generator and the loopback cost) and then through the relay; the relay's
# added latency is the difference of the two at p50 and p99. Everything
# runs in one process on 127.0.0.1 (scripts/anchorload): generator and
# relay share the CPUs, so on a small machine the generator's own tail
# shows in both lines. Targets (issue 11): loss < 0.1 %, p99 added
# latency ≤ 1 ms, memory per call reported (heap_per_call, stack_per_call).
#
# Measured on 2026-12-05 (2 vCPUs shared with other work, load 3-4), two
# runs each, added p99 / p90 of the phones at 500 calls: the pollers
# (relay_linux.go) 16.3 ms / 1.2 ms and 4.2 ms / 0.8 ms; a goroutine per
# socket before them 18.6 ms / ≥20 ms and 19.3 ms / 13 ms. The machine's
# own stalls in those runs reached 6-7 ms (the 'anchorload stalls' line),
# and the generator shares the CPUs: the 1 ms target is not met here. At
# 100 calls both stay under 0.25 ms added at p99.
#
# 2026-12-06, pollers reading with recvmmsg and sending with a raw sendto
# (relay_linux.go), SPLIT=1 (relay alone on CPU 0), three runs taking
# turns with the build before, relay process p99 (kernel receive stamp to
# sent) and its CPU: before 16.2, 20, 10.2 ms at 86-87 %; after 6.3, 4.7,
# 1.8 ms at 56-75 % (and 1.3, 2.2, 2.4 ms at 61-70 % in quieter runs). The
# phones' own p99 without any relay ('direct, phones alone') was 4-8 ms in
# the same hour: the target is not met on this VM, and cannot be told
# from its noise. Left in the relay's profile: sendto with the loopback
# delivery to the phone (36 %), recvmmsg (16 %), and Go parking and waking
# the poller through its netpoller (20 %).
#
# 2026-12-06, later, on a quiet machine (load 0.4): where the tail comes
# from. Instrumenting the poller (not kept) showed that every packet held
# over 1 ms was read in the first turn after the poller had parked: the
# time went in waking it, not in relaying (a turn reads 1 socket at p50, 8
# at p99). At 250 calls (relay CPU 39 %) the relay p99 was 2.9 ms, as at
# 500: it is not the load. perf sched showed no other task taking the
# relay's CPU (no scheduling delay), and 31 % of the relay's CPU in
# pvm_irq_enable, the return from each system call on this guest. Three
# ways to wait, taking turns, relay p99 / max in ms:
#   Go's poller (as shipped)                1.73 / 13.8   2.10 / 18.1   0.96 / 8.9
#   a locked thread blocked in epoll_wait   3.51 / 16.5   1.88 / 7.1    3.71 / 10.0
#   spinning 200 µs before parking          1.07, 3.32 (p99) against 1.15, 3.95, at 80-88 % CPU
# None is better beyond the noise: the relay is kept as it was. The line
# 'anchorload wakes' measures the floor: a thread asleep in recvmsg(2) on
# CPU 0, woken by one packet a millisecond from CPU 1, kernel stamp to
# wake-up. In three runs: p99 0.57, 1.76 and 0.35 ms; p99.9 2.4, 5.7 and
# 2.0 ms; max 3.0, 6.9 and 2.4 ms. That is the host waking an idle vCPU (a
# Firecracker guest). The relay parks and is woken about 6000 times a
# second (perf stat: 49k context switches in 8 s), and a late wake-up
# holds every packet that arrives meanwhile (50 a millisecond): the
# 0.1 % of wake-ups that take 2-6 ms hold 1-2 % of the packets, which is
# the relay's p99. The 1 ms p99 target needs a machine whose wake-up
# floor is well under it (dedicated cores, or bare metal); it is not
# verifiable here.
# Today's SPLIT=1 runs: relay p99 3.86 and 1.74 ms at 65-78 % CPU, loss 0.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-500}
DURATION=${DURATION:-10s}
RUNS=${RUNS:-1}
bin=$(mktemp -d)/anchorload
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./scripts/anchorload
# The machine first: on a VM whose host takes vCPUs away for milliseconds,
# that is the floor of any relay's p99; so is the time the host takes to
# wake an idle vCPU for a packet (a relay idles between packets).
"$bin" -stalls 3s
"$bin" -wakes 3s
for ((i = 1; i <= RUNS; i++)); do
	direct=$("$bin" -calls "$CALLS" -duration "$DURATION" -direct -label direct)
	relay=$("$bin" -calls "$CALLS" -duration "$DURATION" -label relay)
	echo "$direct"
	echo "$relay"
	get() { sed -E "s/.* $1=([0-9.]+).*/\1/" <<<"$2"; }
	added99=$(( $(get p99_us "$relay") - $(get p99_us "$direct") ))
	echo "added latency: p50 $(( $(get p50_us "$relay") - $(get p50_us "$direct") )) µs, p99 $added99 µs (20000 means 20 ms or more)"
	echo "target: p99 added latency <= 1000 µs at $CALLS calls: $( [ "$added99" -le 1000 ] && echo met || echo "not met ($added99 µs; the machine's own stalls are the line 'anchorload stalls' above)")"
	if [ "${SPLIT:-0}" = 1 ]; then
		ports=$(dirname "$bin")/ports
		rm -f "$ports"
		taskset -c 0 "$bin" -calls "$CALLS" -serve "$ports" >"$ports.out" 2>&1 &
		pid=$!
		while [ ! -f "$ports" ]; do sleep 0.1; done
		taskset -c 1 "$bin" -use "$ports" -duration "$DURATION" -label "phones (CPU 1) through the relay process (CPU 0)" -direct=false
		kill -TERM "$pid"
		wait "$pid" || true
		cat "$ports.out"
		taskset -c 1 "$bin" -calls "$CALLS" -duration "$DURATION" -direct -label "direct, phones alone on CPU 1"
	fi
done
