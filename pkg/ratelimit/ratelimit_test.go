package ratelimit

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// distinct returns n IPv4 addresses in distinct buckets of l.
func distinct(t *testing.T, l *Limiter, n int) []netip.Addr {
	t.Helper()
	seen := map[uint32]bool{}
	var out []netip.Addr
	for i := 1; len(out) < n; i++ {
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		if !seen[l.index(a)] {
			seen[l.index(a)] = true
			out = append(out, a)
		}
	}
	return out
}

// step: at time (ns), from source src, how many tries, how many pass.
type step struct {
	at         int64
	src, tries int
	pass       int
}

func TestLimiter(t *testing.T) {
	const sec = int64(time.Second)
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{name: "burst then refused", rate: 10, burst: 5, steps: []step{{0, 0, 8, 5}, {sec / 20, 0, 3, 0}}},
		{name: "refills at the rate", rate: 10, burst: 5, steps: []step{{0, 0, 5, 5}, {sec / 10, 0, 3, 1}, {sec/10 + sec/2, 0, 10, 5}, {10 * sec, 0, 10, 5}}},
		{name: "sources are independent", rate: 1, burst: 2, steps: []step{{0, 0, 3, 2}, {0, 1, 3, 2}, {0, 2, 1, 1}, {sec / 2, 0, 1, 0}}},
		{name: "large", rate: 2000, burst: 4000, steps: []step{{5 * sec, 0, 5000, 4000}, {6 * sec, 0, 5000, 2000}}},
		{name: "fractional rate", rate: 0.5, burst: 1, steps: []step{{0, 0, 3, 1}, {sec, 0, 3, 0}, {2 * sec, 0, 3, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(tt.rate, tt.burst)
			srcs := distinct(t, l, 3)
			for i, st := range tt.steps {
				pass := 0
				for j := 0; j < st.tries; j++ {
					if l.AllowAt(srcs[st.src], st.at) {
						pass++
					}
				}
				if pass != st.pass {
					t.Errorf("step %d (t=%v, source %d): %d of %d passed, want %d", i, time.Duration(st.at), st.src, pass, st.tries, st.pass)
				}
			}
		})
	}
}

// TestLimiterIPv6Prefix: an IPv6 source is limited by its /64.
func TestLimiterIPv6Prefix(t *testing.T) {
	l := New(1, 3)
	a := netip.MustParseAddr("2001:db8:1:2::1")
	b := netip.MustParseAddr("2001:db8:1:2:ffff::9") // same /64
	if l.index(a) != l.index(b) {
		t.Fatal("one /64, two buckets")
	}
	other := netip.MustParseAddr("2001:db8:1:3::1")
	for i := 4; l.index(other) == l.index(a); i++ {
		other = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, byte(i)})
	}
	n := 0
	for _, ip := range []netip.Addr{a, b, a, b, other} {
		if l.AllowAt(ip, 0) {
			n++
		}
	}
	if n != 4 {
		t.Errorf("%d passed, want 3 for the /64 and 1 for another", n)
	}
}

// TestLimiterConcurrent: goroutines racing on one bucket get exactly the
// burst between them (run with -race too).
func TestLimiterConcurrent(t *testing.T) {
	l := New(1, 1000)
	ip := netip.MustParseAddr("192.0.2.1")
	var passed atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 1000; i++ {
				if l.AllowAt(ip, 1) {
					passed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if passed.Load() != 1000 {
		t.Errorf("%d passed, want exactly the burst of 1000", passed.Load())
	}
}

func TestLimiterAllocations(t *testing.T) {
	l := New(2000, 4000)
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(1000, func() { l.AllowAt(v4, 1); l.AllowAt(v6, 1) }); n != 0 {
		t.Errorf("allow allocates %.1f times", n)
	}
}

func BenchmarkLimiter(b *testing.B) {
	l := New(1e9, 1e9)
	ip := netip.MustParseAddr("192.0.2.1")
	for b.Loop() {
		l.AllowAt(ip, 1)
	}
}

func TestLimiterIPv4Mapped(t *testing.T) {
	l := New(1, 1)
	if l.index(netip.MustParseAddr("192.0.2.1")) != l.index(netip.MustParseAddr("::ffff:192.0.2.1")) {
		t.Error("an IPv4-mapped address has another bucket than its IPv4 address")
	}
}

// TestLimiterSpray: a source that spent its burst stays refused however
// many other sources come (the table is never cleared), and a bucket that
// collides with none of them is unaffected.
func TestLimiterSpray(t *testing.T) {
	l := New(1, 3)
	srcs := distinct(t, l, 2)
	victim, other := srcs[0], srcs[1]
	for range 3 {
		l.AllowAt(victim, 0)
	}
	for i := range 1 << 20 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if l.index(a) != l.index(other) {
			l.AllowAt(a, 0)
		}
	}
	if l.AllowAt(victim, 0) {
		t.Error("a spray of a million sources gave a spent source a new burst")
	}
	if !l.AllowAt(other, 0) {
		t.Error("the spray took another source's token")
	}
}

func TestLimiterNil(t *testing.T) {
	var l *Limiter
	if !l.Allow(netip.MustParseAddr("192.0.2.1")) || !l.AllowAt(netip.MustParseAddr("192.0.2.1"), 0) {
		t.Error("a nil Limiter refuses")
	}
	if r, b := l.Rate(); r != 0 || b != 0 {
		t.Errorf("nil Rate() = %v, %v", r, b)
	}
}

func TestNewPanics(t *testing.T) {
	for _, tt := range []struct {
		name  string
		rate  float64
		burst int
	}{{"zero rate", 0, 1}, {"negative rate", -1, 1}, {"zero burst", 1, 0}} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("New did not panic")
				}
			}()
			New(tt.rate, tt.burst)
		})
	}
}

// TestAllowUsesNow: Allow reads the Limiter's own clock, which starts at
// zero (a new bucket has its whole burst).
func TestAllowUsesNow(t *testing.T) {
	l := New(1e-3, 2)
	ip := netip.MustParseAddr("2001:db8::1")
	if !l.Allow(ip) || !l.Allow(ip) || l.Allow(ip) {
		t.Error("want exactly the burst of 2")
	}
	if n := l.Now(); n < 0 || n > int64(time.Hour) {
		t.Errorf("Now() = %d", n)
	}
}
