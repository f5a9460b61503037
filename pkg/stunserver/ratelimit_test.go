package stunserver

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// distinct returns n IPv4 addresses in distinct buckets of l.
func distinct(t *testing.T, l *limiter, n int) []netip.Addr {
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

func TestLimiter(t *testing.T) {
	const sec = int64(time.Second)
	tests := []struct {
		name        string
		rate, burst int
		// steps: at time (ns), from source i, how many tries, how many pass
		steps []struct {
			at         int64
			src, tries int
			pass       int
		}
	}{
		{name: "burst then refused", rate: 10, burst: 5, steps: []struct {
			at         int64
			src, tries int
			pass       int
		}{{0, 0, 8, 5}, {sec / 20, 0, 3, 0}}},
		{name: "refills at the rate", rate: 10, burst: 5, steps: []struct {
			at         int64
			src, tries int
			pass       int
		}{{0, 0, 5, 5}, {sec / 10, 0, 3, 1}, {sec/10 + sec/2, 0, 10, 5}, {10 * sec, 0, 10, 5}}},
		{name: "sources are independent", rate: 1, burst: 2, steps: []struct {
			at         int64
			src, tries int
			pass       int
		}{{0, 0, 3, 2}, {0, 1, 3, 2}, {0, 2, 1, 1}, {sec / 2, 0, 1, 0}}},
		{name: "default", rate: DefaultRateLimit, burst: DefaultRateBurst, steps: []struct {
			at         int64
			src, tries int
			pass       int
		}{{5 * sec, 0, 5000, DefaultRateBurst}, {6 * sec, 0, 5000, DefaultRateLimit}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(tt.rate, tt.burst)
			srcs := distinct(t, l, 3)
			for i, st := range tt.steps {
				pass := 0
				for j := 0; j < st.tries; j++ {
					if l.allow(srcs[st.src], st.at) {
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
	l := newLimiter(1, 3)
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
		if l.allow(ip, 0) {
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
	l := newLimiter(1, 1000)
	ip := netip.MustParseAddr("192.0.2.1")
	var passed atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 1000; i++ {
				if l.allow(ip, 1) {
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
	l := newLimiter(DefaultRateLimit, DefaultRateBurst)
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(1000, func() { l.allow(v4, 1); l.allow(v6, 1) }); n != 0 {
		t.Errorf("allow allocates %.1f times", n)
	}
}

func BenchmarkLimiter(b *testing.B) {
	l := newLimiter(1e9, 1e9)
	ip := netip.MustParseAddr("192.0.2.1")
	for b.Loop() {
		l.allow(ip, 1)
	}
}

// TestUDPRateLimit: a source past its burst gets no more answers, and the
// drops are counted; another source still does.
func TestUDPRateLimit(t *testing.T) {
	s := start(t, Config{RateLimit: 1, RateBurst: 5})
	if r, b := s.RateLimit(); r != 1 || b != 5 {
		t.Fatalf("RateLimit() = %d, %d", r, b)
	}
	c := dialUDP(t)
	answered := 0
	for i := 0; i < 12; i++ {
		if udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 100*time.Millisecond) != nil {
			answered++
		}
	}
	// 5 of the burst, perhaps one more refilled during the test.
	if answered < 5 || answered > 6 {
		t.Errorf("%d of 12 answered, want the burst of 5", answered)
	}
	if st := s.Stats(); st.UDP[DropRateLimit] != uint64(12-answered) || st.UDP[Answered] != uint64(answered) {
		t.Errorf("stats: %d answered, %d rate-limited; want %d and %d", st.UDP[Answered], st.UDP[DropRateLimit], answered, 12-answered)
	}
	// Errors count too; junk that gets no answer does not.
	if out := udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, changeReq(cIP)), 100*time.Millisecond); out != nil {
		t.Errorf("error answer past the limit: %x", out)
	}
	// Another source (127.0.0.2) has its own bucket.
	if runtimeNoLoopbackAlt(t) {
		return
	}
	c2 := dialFrom(t, loopbackAlt)
	if udpExchange(t, c2, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 2*time.Second) == nil {
		t.Error("a second source is limited too")
	}
}

func TestUDPNoRateLimit(t *testing.T) {
	s := start(t, Config{NoRateLimit: true})
	if r, b := s.RateLimit(); r != 0 || b != 0 {
		t.Fatalf("RateLimit() = %d, %d, want off", r, b)
	}
	c := dialUDP(t)
	for i := 0; i < 50; i++ {
		if udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 2*time.Second) == nil {
			t.Fatalf("request %d unanswered", i)
		}
	}
}
