//go:build unix

package services

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRooms runs the conference service at the scale issue 12 asks
// for — one room of 50 callers, and 50 rooms of 3 — through real SIP and
// RTP on loopback: each caller a sipgo UA and an RTP session saying its
// own tone, the PBX's rooms mixing at 8 kHz. One iteration is one second of
// the rooms running, so run it with -benchtime=10x or so. It reports:
//
//   - cpu-µs/participant-s: the process's CPU (user + system) per
//     participant-second. The callers' own RTP sessions run in the same
//     process, so this bounds the service's cost from above (a second RTP
//     endpoint per participant is included).
//   - missing-%: frames the callers did not receive of the 50 a second the
//     rooms send each (drops anywhere: the mixer's ticker falling behind,
//     sockets, the callers' sessions).
//   - rtp-lost: packets the callers' sessions counted lost (RFC 3550).
//
// scripts/bench-rooms.sh runs it.
func BenchmarkRooms(b *testing.B) {
	for _, tc := range []struct {
		name        string
		rooms, size int
	}{{"1x50", 1, 50}, {"50x3", 50, 3}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			s := start(b, Config{})
			var ts []*talker
			for r := 0; r < tc.rooms; r++ {
				for p := 0; p < tc.size; p++ {
					ts = append(ts, joinRoom(ctx, b, s, strconv.Itoa(3000+r), 300+50*float64(p%60)))
				}
			}
			for s.Stats().ConfJoins < uint64(len(ts)) {
				if ctx.Err() != nil {
					b.Fatal("callers did not join")
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(time.Second) // every stream past RTP probation
			recv := func() (n, lost int64) {
				for _, tk := range ts {
					st := tk.m.sess.Stats()
					n += int64(st.Receive.Received)
					lost += max(0, st.Receive.Lost)
				}
				return n, lost
			}
			n0, lost0 := recv()
			cpu0 := cpuTime(b)
			t0 := time.Now()
			b.ResetTimer()
			for range b.N {
				time.Sleep(time.Second)
			}
			b.StopTimer()
			elapsed := time.Since(t0)
			cpu := cpuTime(b) - cpu0
			n1, lost1 := recv()
			partSec := float64(len(ts)) * elapsed.Seconds()
			want := 50 * partSec
			b.ReportMetric(float64(cpu.Microseconds())/partSec, "cpu-µs/participant-s")
			b.ReportMetric(100*max(0, want-float64(n1-n0))/want, "missing-%")
			b.ReportMetric(float64(lost1-lost0), "rtp-lost")
			b.ReportMetric(0, "ns/op") // one op is a second of wall time: meaningless
		})
	}
}

// cpuTime is the process's user + system CPU so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
