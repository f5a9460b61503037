package stunserver

import (
	"net/netip"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/ratelimit"
	"github.com/natkit/natkit/pkg/stun"
)

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

// TestUDPSharedLimiter: with Config.Limiter the server's answers draw from
// that budget: tokens another server took from it are gone for this one.
func TestUDPSharedLimiter(t *testing.T) {
	lim := ratelimit.New(1, 3)
	s := start(t, Config{Limiter: lim, RateLimit: 1000})
	if r, b := s.RateLimit(); r != 1 || b != 3 {
		t.Fatalf("RateLimit() = %d, %d, want the shared limiter's 1, 3", r, b)
	}
	c := dialUDP(t)
	// Another user of the budget spends two of the three tokens of
	// 127.0.0.1.
	lim.Allow(netip.MustParseAddr("127.0.0.1"))
	lim.Allow(netip.MustParseAddr("127.0.0.1"))
	answered := 0
	for range 5 {
		if udpExchange(t, c, s.Addr(), request(t, stun.BindingRequest, stun.MagicCookie, nil), 100*time.Millisecond) != nil {
			answered++
		}
	}
	// One token left, perhaps one more refilled during the test.
	if answered < 1 || answered > 2 {
		t.Errorf("%d of 5 answered, want the 1 token the budget had left", answered)
	}
	if st := s.Stats(); st.UDP[DropRateLimit] != uint64(5-answered) {
		t.Errorf("%d rate-limited, want %d", st.UDP[DropRateLimit], 5-answered)
	}
}
