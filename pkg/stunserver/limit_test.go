package stunserver

import (
	"io"
	"net"
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

// TestTCPPerIPCap: one source's idle connections cannot take every slot.
// 32 idle connections from 127.0.0.1 against MaxConns 32: beyond
// MaxConnsPerIP (default 16) they are closed at once and counted, and a
// Binding over TCP from 127.0.0.2 is still answered. Without the cap the
// table was full and 127.0.0.2 got EOF.
func TestTCPPerIPCap(t *testing.T) {
	if runtimeNoLoopbackAlt(t) {
		return
	}
	const maxConns = 32
	s := start(t, Config{NoUDP: true, MaxConns: maxConns})
	for range maxConns {
		c, err := net.DialTimeout("tcp", s.Addr().String(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().ConnsAccepted < maxConns {
		if time.Now().After(deadline) {
			t.Fatalf("server accepted %d of %d connections", s.Stats().ConnsAccepted, maxConns)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(loopbackAlt, 0)), Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tid := stun.TransactionID{7, 7, 7}
	if _, err := c.Write(stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, tid).Bytes()); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, stun.HeaderSize)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("Binding over TCP from %v with 127.0.0.1's idle connections open: %v", loopbackAlt, err)
	}
	st := s.Stats()
	if st.ConnsRejectedPerIP != maxConns-DefaultMaxConnsPerIP || st.ConnsRejected != 0 {
		t.Errorf("rejected per IP %d, rejected (table full) %d; want %d and 0", st.ConnsRejectedPerIP, st.ConnsRejected, maxConns-DefaultMaxConnsPerIP)
	}
}

// TestTCPPerIPCapConfig: MaxConnsPerIP as given, and negative for no cap.
func TestTCPPerIPCapConfig(t *testing.T) {
	for _, tc := range []struct {
		name         string
		perIP, conns int
		wantRejected uint64
	}{
		{"cap of 2", 2, 5, 3},
		{"negative: no cap", -1, 20, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, Config{NoUDP: true, MaxConnsPerIP: tc.perIP})
			for range tc.conns {
				c, err := net.DialTimeout("tcp", s.Addr().String(), 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
			}
			deadline := time.Now().Add(5 * time.Second)
			for st := s.Stats(); st.ConnsOpen+st.ConnsRejectedPerIP < uint64(tc.conns) && time.Now().Before(deadline); st = s.Stats() {
				time.Sleep(5 * time.Millisecond)
			}
			st := s.Stats()
			if st.ConnsRejectedPerIP != tc.wantRejected || st.ConnsOpen != uint64(tc.conns)-tc.wantRejected {
				t.Errorf("rejected per IP %d, open %d; want %d and %d", st.ConnsRejectedPerIP, st.ConnsOpen, tc.wantRejected, uint64(tc.conns)-tc.wantRejected)
			}
		})
	}
}
