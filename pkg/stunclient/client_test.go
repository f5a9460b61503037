package stunclient_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunclient"
	"github.com/natkit/natkit/pkg/stunclient/stunclienttest"
)

func TestSchedule(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name   string
		cfg    stunclient.Config
		sends  []time.Duration
		giveUp time.Duration
	}{
		{name: "RFC 8489 defaults uncut", cfg: stunclient.Config{Timeout: time.Minute},
			sends:  []time.Duration{0, 500 * ms, 1500 * ms, 3500 * ms, 7500 * ms, 15500 * ms, 31500 * ms},
			giveUp: 39500 * ms},
		{name: "defaults cut at 5s", cfg: stunclient.Config{},
			sends: []time.Duration{0, 500 * ms, 1500 * ms, 3500 * ms}, giveUp: 5 * time.Second},
		{name: "Rc 2", cfg: stunclient.Config{RTO: 100 * ms, Rc: 2, Rm: 4},
			sends: []time.Duration{0, 100 * ms}, giveUp: 500 * ms},
		{name: "one request", cfg: stunclient.Config{RTO: 100 * ms, Rc: 1, Rm: 3},
			sends: []time.Duration{0}, giveUp: 300 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sends, giveUp := tt.cfg.Schedule()
			if len(sends) != len(tt.sends) || giveUp != tt.giveUp {
				t.Fatalf("got %v give up %v, want %v give up %v", sends, giveUp, tt.sends, tt.giveUp)
			}
			for i := range sends {
				if sends[i] != tt.sends[i] {
					t.Fatalf("got %v, want %v", sends, tt.sends)
				}
			}
		})
	}
}

// fast is a schedule that keeps tests short: 40 ms RTO, 2 s cap.
var fast = stunclient.Config{RTO: 40 * time.Millisecond, Timeout: 2 * time.Second, Software: "natkit-test"}

func listen(t *testing.T) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func TestPacketBehaviors(t *testing.T) {
	tests := []struct {
		name     string
		b        stunclienttest.Behavior
		cfg      stunclient.Config
		req      stunclient.Request
		attempts int
		check    func(t *testing.T, s *stunclienttest.Server, local netip.AddrPort, r *stunclient.Response, err error)
	}{
		{name: "plain", attempts: 1, check: func(t *testing.T, s *stunclienttest.Server, local netip.AddrPort, r *stunclient.Response, err error) {
			if err != nil {
				t.Fatal(err)
			}
			if r.Mapped != local || r.MappedAttr != stun.AttrXORMappedAddress || r.RFC3489 {
				t.Errorf("mapped %v via %s rfc3489=%v, want %v via XOR-MAPPED-ADDRESS", r.Mapped, stun.AttrName(r.MappedAttr), r.RFC3489, local)
			}
			if r.ResponseOrigin != s.Addr || r.OtherAddress != s.Alt || r.From != s.Addr || r.Software != "stunclienttest" {
				t.Errorf("origin %v other %v from %v software %q", r.ResponseOrigin, r.OtherAddress, r.From, r.Software)
			}
			if r.Local != local || r.RTT <= 0 || r.RTT > time.Second {
				t.Errorf("local %v rtt %v", r.Local, r.RTT)
			}
		}},
		{name: "drops two then answers", b: stunclienttest.Behavior{Drop: 2}, attempts: 3,
			check: func(t *testing.T, s *stunclienttest.Server, local netip.AddrPort, r *stunclient.Response, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Retransmissions() != 2 || s.Requests() != 3 {
					t.Errorf("retransmissions %d, server saw %d", r.Retransmissions(), s.Requests())
				}
				// Sent at 0, 40, 120 ms: the answer is to the third copy.
				if r.Elapsed < 120*time.Millisecond || r.RTT > r.Elapsed-100*time.Millisecond {
					t.Errorf("elapsed %v rtt %v", r.Elapsed, r.RTT)
				}
			}},
		{name: "RFC 3489 answer", b: stunclienttest.Behavior{Classic: true}, attempts: 1,
			check: func(t *testing.T, s *stunclienttest.Server, local netip.AddrPort, r *stunclient.Response, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Mapped != local || r.MappedAttr != stun.AttrMappedAddress || !r.RFC3489 {
					t.Errorf("mapped %v via %s rfc3489=%v", r.Mapped, stun.AttrName(r.MappedAttr), r.RFC3489)
				}
				if r.ResponseOrigin != s.Addr || r.OtherAddress != s.Alt {
					t.Errorf("SOURCE-ADDRESS %v CHANGED-ADDRESS %v", r.ResponseOrigin, r.OtherAddress)
				}
			}},
		{name: "classic request", req: stunclient.Request{Classic: true}, attempts: 1,
			check: func(t *testing.T, s *stunclienttest.Server, local netip.AddrPort, r *stunclient.Response, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Mapped != local || !r.Message.Classic() || !r.RFC3489 {
					t.Errorf("mapped %v classic %v", r.Mapped, r.Message.Classic())
				}
			}},
		{name: "answer from another port", b: stunclienttest.Behavior{FromAlt: true}, attempts: 1,
			check: func(t *testing.T, s *stunclienttest.Server, local netip.AddrPort, r *stunclient.Response, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if r.From != s.Alt || r.ResponseOrigin != s.Alt {
					t.Errorf("from %v origin %v, want %v", r.From, r.ResponseOrigin, s.Alt)
				}
			}},
		{name: "error response", b: stunclienttest.Behavior{ErrorCode: 420, Reason: "Unknown Attribute"}, attempts: 1,
			check: func(t *testing.T, s *stunclienttest.Server, local netip.AddrPort, r *stunclient.Response, err error) {
				var er *stunclient.ErrorResponse
				if !errors.As(err, &er) || er.Code != 420 || er.Reason != "Unknown Attribute" || er.Response.Software != "stunclienttest" {
					t.Fatalf("err %v, want a 420 error response", err)
				}
				if err.Error() != "server answered error 420 Unknown Attribute" {
					t.Errorf("message %q", err)
				}
			}},
		{name: "garbage is ignored", b: stunclienttest.Behavior{Garbage: true},
			cfg: stunclient.Config{RTO: 40 * time.Millisecond, Rc: 2, Rm: 2}, attempts: 2,
			check: func(t *testing.T, s *stunclienttest.Server, local netip.AddrPort, r *stunclient.Response, err error) {
				if !errors.Is(err, stunclient.ErrTimeout) {
					t.Fatalf("err %v, want ErrTimeout", err)
				}
				if s.Requests() != 2 {
					t.Errorf("server saw %d requests, want 2 (Rc)", s.Requests())
				}
			}},
		{name: "silent server times out", b: stunclienttest.Behavior{Silent: true},
			cfg: stunclient.Config{RTO: 30 * time.Millisecond, Timeout: 200 * time.Millisecond}, attempts: 3,
			check: func(t *testing.T, s *stunclienttest.Server, local netip.AddrPort, r *stunclient.Response, err error) {
				if !errors.Is(err, stunclient.ErrTimeout) || s.Requests() != 3 {
					t.Fatalf("err %v after %d requests, want ErrTimeout after 3 (0, 30, 90 ms)", err, s.Requests())
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			s := stunclienttest.New(t, tt.b)
			pc := listen(t)
			cfg := fast
			if tt.cfg.RTO != 0 {
				cfg = tt.cfg
			}
			start := time.Now()
			r, err := stunclient.Binding(context.Background(), pc, s.UDPAddr(), cfg, tt.req)
			if time.Since(start) > 3*time.Second {
				t.Errorf("transaction took %v", time.Since(start))
			}
			if r != nil && r.Attempts != tt.attempts {
				t.Errorf("attempts %d, want %d", r.Attempts, tt.attempts)
			}
			tt.check(t, s, pc.LocalAddr().(*net.UDPAddr).AddrPort(), r, err)
		})
	}
}

// TestConcurrentTransactions runs many transactions on one socket to two
// servers at once: each answer must reach its own transaction.
func TestConcurrentTransactions(t *testing.T) {
	leaktest.Check(t)
	a := stunclienttest.New(t, stunclienttest.Behavior{Software: "a"})
	b := stunclienttest.New(t, stunclienttest.Behavior{Software: "b", Delay: 5 * time.Millisecond})
	pc := listen(t)
	c := stunclient.NewPacketConn(pc, fast)
	defer c.Close()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, want := a, "a"
			if i%2 == 1 {
				s, want = b, "b"
			}
			r, err := c.Do(context.Background(), s.UDPAddr(), stunclient.Request{})
			if err != nil || r.Software != want || r.From != s.Addr {
				t.Errorf("transaction %d: %v %+v", i, err, r)
			}
		}()
	}
	wg.Wait()
	// The socket stays usable after Close.
	c.Close()
	if _, err := stunclient.Binding(context.Background(), pc, a.UDPAddr(), fast, stunclient.Request{}); err != nil {
		t.Errorf("socket not reusable after Close: %v", err)
	}
}

func TestCancel(t *testing.T) {
	leaktest.Check(t)
	s := stunclienttest.New(t, stunclienttest.Behavior{Silent: true})
	pc := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := stunclient.Binding(ctx, pc, s.UDPAddr(), stunclient.Config{}, stunclient.Request{})
	if !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %v, want context.Canceled at once", err, time.Since(start))
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = stunclient.Binding(ctx, pc, s.UDPAddr(), stunclient.Config{}, stunclient.Request{})
	if !errors.Is(err, stunclient.ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout at the context deadline", err)
	}
}

// TestExtraAttributes checks that caller attributes reach the server.
func TestExtraAttributes(t *testing.T) {
	leaktest.Check(t)
	srv := listen(t)
	got := make(chan *stun.Message, 1)
	go func() {
		buf := make([]byte, 1500)
		n, from, err := srv.ReadFrom(buf)
		if err != nil {
			return
		}
		m, _ := stun.Parse(append([]byte(nil), buf[:n]...))
		got <- m
		b := stun.NewBuilder(nil, stun.BindingSuccess, m.Cookie, m.TID)
		b.AddXORAddress(stun.AttrXORMappedAddress, from.(*net.UDPAddr).AddrPort())
		srv.WriteTo(b.Bytes(), from)
	}()
	pc := listen(t)
	req := stunclient.Request{Attrs: []stun.Attr{{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 6}}}}
	if _, err := stunclient.Binding(context.Background(), pc, srv.LocalAddr(), fast, req); err != nil {
		t.Fatal(err)
	}
	m := <-got
	if f, ok, _ := m.ChangeRequest(); !ok || f != stun.ChangeIP|stun.ChangePort || strings.TrimRight(m.Software(), " ") != "natkit-test" {
		t.Errorf("request carried CHANGE-REQUEST %v %v, SOFTWARE %q", f, ok, m.Software())
	}
}

// TestPion runs transactions against pion/turn, an independent
// implementation, over UDP, TCP and TLS.
func TestPion(t *testing.T) {
	leaktest.Check(t)
	p := stunclienttest.NewPion(t)
	ctx := context.Background()
	t.Run("udp", func(t *testing.T) {
		pc := listen(t)
		r, err := stunclient.Binding(ctx, pc, net.UDPAddrFromAddrPort(p.UDP), fast, stunclient.Request{})
		if err != nil {
			t.Fatal(err)
		}
		if want := pc.LocalAddr().(*net.UDPAddr).AddrPort(); r.Mapped != want || r.From != p.UDP {
			t.Errorf("mapped %v from %v, want %v from %v", r.Mapped, r.From, want, p.UDP)
		}
	})
	var d net.Dialer
	for _, tr := range []string{"tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			addr := p.TCP
			if tr == "tls" {
				addr = p.TLS
			}
			c, err := stunclient.DialStream(ctx, d.DialContext, tr, "tcp4", addr.String(), &tls.Config{RootCAs: p.Roots, ServerName: "127.0.0.1"}, fast)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i := range 3 { // several transactions on one connection
				r, err := c.Do(ctx, stunclient.Request{})
				if err != nil {
					t.Fatalf("transaction %d: %v", i, err)
				}
				if want := c.LocalAddr().(*net.TCPAddr).AddrPort(); r.Mapped != want || r.From != addr {
					t.Errorf("mapped %v from %v, want %v from %v", r.Mapped, r.From, want, addr)
				}
			}
		})
	}
	t.Run("tls untrusted", func(t *testing.T) {
		_, err := stunclient.DialStream(ctx, d.DialContext, "tls", "tcp4", p.TLS.String(), &tls.Config{ServerName: "127.0.0.1"}, fast)
		if err == nil {
			t.Fatal("handshake with an untrusted certificate succeeded")
		}
	})
}

// TestStreamFraming serves a stray message and then the answer split
// across writes.
func TestStreamFraming(t *testing.T) {
	leaktest.Check(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1500)
		n, _ := c.Read(buf)
		m, err := stun.Parse(buf[:n])
		if err != nil {
			return
		}
		other := m.TID
		other[0] ^= 1
		stray := stun.NewBuilder(nil, stun.BindingSuccess, m.Cookie, other)
		stray.AddXORAddress(stun.AttrXORMappedAddress, netip.MustParseAddrPort("192.0.2.1:1"))
		c.Write(stray.Bytes())
		b := stun.NewBuilder(nil, stun.BindingSuccess, m.Cookie, m.TID)
		b.AddXORAddress(stun.AttrXORMappedAddress, netip.MustParseAddrPort("198.51.100.9:999"))
		raw := b.Bytes()
		c.Write(raw[:7])
		time.Sleep(20 * time.Millisecond)
		c.Write(raw[7:])
		c.Read(buf) // wait for the client to hang up
	}()
	c, err := stunclient.DialStream(context.Background(), (&net.Dialer{}).DialContext, "tcp", "tcp4", ln.Addr().String(), nil, fast)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Do(context.Background(), stunclient.Request{})
	c.Close()
	<-done
	if err != nil || r.Mapped.String() != "198.51.100.9:999" {
		t.Fatalf("got %v %v", r, err)
	}
}

func TestAttributes(t *testing.T) {
	b := stun.NewBuilder(nil, stun.BindingSuccess, stun.MagicCookie, stun.TransactionID{1})
	b.AddXORAddress(stun.AttrXORMappedAddress, netip.MustParseAddrPort("198.51.100.2:40000"))
	b.AddAddress(stun.AttrOtherAddress, netip.MustParseAddrPort("[2001:db8::1]:3479"))
	b.AddString(stun.AttrSoftware, "x")
	b.AddErrorCode(438, "Stale Nonce")
	b.AddUint32(stun.AttrLifetime, 600)
	m, err := stun.Parse(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := []stunclient.Attribute{
		{"XOR-MAPPED-ADDRESS", "198.51.100.2:40000"}, {"OTHER-ADDRESS", "[2001:db8::1]:3479"},
		{"SOFTWARE", "x"}, {"ERROR-CODE", "438 Stale Nonce"}, {"LIFETIME", "00000258"},
	}
	got := stunclient.Attributes(m)
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("attribute %d: %v, want %v", i, got[i], want[i])
		}
	}
}
