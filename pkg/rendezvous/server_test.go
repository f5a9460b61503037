package rendezvous

import (
	"bytes"
	"context"
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
)

// startServer runs a server on 127.0.0.1 and 127.0.0.2 (any free port).
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Addrs == nil {
		cfg.Addrs = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return within 5s of cancel")
		}
		s.Close() // idempotent
	})
	return s
}

// udpClient is a client on its own socket, read by a goroutine.
type udpClient struct {
	*Client
	pc net.PacketConn
}

func newUDPClient(t *testing.T, srv netip.AddrPort, name string, card string) *udpClient {
	t.Helper()
	local := "127.0.0.1:0"
	if srv.Addr().Is6() {
		local = "[::1]:0"
	}
	pc, err := net.ListenPacket("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := NewSession(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientConfig{Server: srv, Session: sess, Card: []byte(card), PacketConn: pc, RTO: 50 * time.Millisecond,
		Addrs: []netip.AddrPort{addrPortOf(pc.LocalAddr())}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			c.Handle(buf[:n], addrPortOf(from))
		}
	}()
	t.Cleanup(func() { c.Close(); pc.Close(); wg.Wait() })
	return &udpClient{c, pc}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestPairSignalResult(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, Config{})
	ctx := ctxT(t, 10*time.Second)
	a := newUDPClient(t, s.Addr(), "Blue-Fox", "card-a")
	b := newUDPClient(t, s.Addr(), "blue-fox", "card-b")

	ja, err := a.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ja.Index != 0 || ja.Observed != addrPortOf(a.pc.LocalAddr()) {
		t.Errorf("joined %+v", ja)
	}
	jb, err := b.Join(ctx)
	if err != nil || jb.Index != 1 {
		t.Fatalf("second join: %+v %v", jb, err)
	}
	var pa, pb Pair
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pa, _ = a.WaitPair(ctx) }()
	go func() { defer wg.Done(); pb, _ = b.WaitPair(ctx) }()
	wg.Wait()
	if string(pa.Card) != "card-b" || string(pb.Card) != "card-a" || pa.Observed != addrPortOf(b.pc.LocalAddr()) ||
		!bytes.Equal(pa.PairNonce, pb.PairNonce) || len(pa.PairNonce) != NonceSize {
		t.Fatalf("pairs:\n%+v\n%+v", pa, pb)
	}
	if pa.Reverse || pa.Wait {
		t.Errorf("both peers are public: no reversal expected: %+v", pa)
	}
	wg.Add(2)
	var errA, errB error
	go func() { defer wg.Done(); _, errA = a.Ready(ctx) }()
	go func() { defer wg.Done(); _, errB = b.Ready(ctx) }()
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("ready: %v %v", errA, errB)
	}
	if err := a.Signal(ctx, []byte("hello b")); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-b.Signals():
		if string(d) != "hello b" {
			t.Errorf("signal %q", d)
		}
	case <-ctx.Done():
		t.Fatal("no signal")
	}
	ra, err := a.Result(ctx, []byte("a-ok"), 0)
	if err != nil || string(ra.Mine) != "a-ok" || ra.Theirs != nil {
		t.Fatalf("first result: %+v %v", ra, err)
	}
	rb, err := b.Result(ctx, []byte("b-ok"), time.Second)
	if err != nil || string(rb.Theirs) != "a-ok" {
		t.Fatalf("second result: %+v %v", rb, err)
	}
	a.Leave()
	b.Leave()
	deadline := time.Now().Add(2 * time.Second)
	for s.Stats().LiveSessions.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.Stats().LiveSessions.Load(); n != 0 {
		t.Errorf("%d sessions after both left", n)
	}
}

// TestPairIPv6 pairs two peers through a server on ::1: every answer
// carries an IPv6 observed address (19 bytes encoded), which once failed to
// encode and went out as an empty datagram.
func TestPairIPv6(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("[::1]:0")}})
	ctx := ctxT(t, 10*time.Second)
	a := newUDPClient(t, s.Addr(), "six", "card-a")
	b := newUDPClient(t, s.Addr(), "six", "card-b")
	ja, err := a.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ja.Observed != addrPortOf(a.pc.LocalAddr()) {
		t.Errorf("observed %v, want %v", ja.Observed, a.pc.LocalAddr())
	}
	if _, err := b.Join(ctx); err != nil {
		t.Fatal(err)
	}
	pa, err := a.WaitPair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pa.Observed != addrPortOf(b.pc.LocalAddr()) || string(pa.Card) != "card-b" {
		t.Errorf("pair %+v", pa)
	}
	if n := s.Stats().EncodeErrors.Load(); n != 0 {
		t.Errorf("%d answers did not encode", n)
	}
}

func TestThirdPeerRefusedAndCannotInject(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, Config{})
	ctx := ctxT(t, 10*time.Second)
	a := newUDPClient(t, s.Addr(), "secret", "a")
	b := newUDPClient(t, s.Addr(), "secret", "b")
	if _, err := a.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(ctx); err != nil {
		t.Fatal(err)
	}
	c := newUDPClient(t, s.Addr(), "secret", "c")
	if _, err := c.Join(ctx); !errors.Is(err, ErrSessionFull) {
		t.Fatalf("third join = %v, want ErrSessionFull", err)
	}
	// The third host knows the name, but not b's token: a READY or SIGNAL
	// in b's name is dropped, and a's pairing is untouched.
	before := s.Stats().BadAuth.Load()
	forged, _ := Seal(&Message{Type: TypeSignal, Session: a.cfg.Session.ID, Peer: 1, Seq: 99, Data: []byte("evil")}, randBytes(TokenSize))
	if _, err := c.pc.WriteTo(forged, net.UDPAddrFromAddrPort(s.Addr())); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Stats().BadAuth.Load() == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s.Stats().BadAuth.Load() == before {
		t.Error("forged SIGNAL not counted as bad authentication")
	}
	select {
	case d := <-a.Signals():
		t.Errorf("forged signal delivered: %q", d)
	case <-time.After(100 * time.Millisecond):
	}
	// A JOIN signed for another session name cannot claim this one.
	evil, _ := NewSession("guess")
	ck, _, _, err := c.Hello(ctx)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := evil.SealJoin(&Message{Nonce: randBytes(NonceSize), Cookie: ck, Peer: -1})
	copy(j[9:9+SessionIDSize], a.cfg.Session.ID)
	before = s.Stats().BadAuth.Load()
	c.pc.WriteTo(j, net.UDPAddrFromAddrPort(s.Addr()))
	deadline = time.Now().Add(2 * time.Second)
	for s.Stats().BadAuth.Load() == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s.Stats().BadAuth.Load() == before {
		t.Error("JOIN with a wrong signature not rejected")
	}
}

func TestJoinNeedsCookieFromSameAddress(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, Config{})
	ctx := ctxT(t, 5*time.Second)
	a := newUDPClient(t, s.Addr(), "cookie", "a")
	ck, _, _, err := a.Hello(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Replay a's cookie from another socket: the server refuses with
	// bad-cookie and creates no session.
	other, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	defer other.Close()
	j, _ := a.cfg.Session.SealJoin(&Message{Nonce: randBytes(NonceSize), Cookie: ck, Peer: -1})
	other.WriteTo(j, net.UDPAddrFromAddrPort(s.Addr()))
	other.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := other.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Unmarshal(buf[:n])
	if err != nil || m.Type != TypeError || m.Code != CodeBadCookie {
		t.Fatalf("answer %+v %v, want ERROR bad-cookie", m, err)
	}
	if s.Stats().Sessions.Load() != 0 {
		t.Error("a session was created without a valid cookie")
	}
}

func TestGarbageAndFloodStayBounded(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, Config{MaxSessions: 20, JoinRate: 1000})
	ctx := ctxT(t, 20*time.Second)
	pc, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	defer pc.Close()
	to := net.UDPAddrFromAddrPort(s.Addr())
	// In rounds of 100 datagrams, each sent once the server has read the
	// last: a busy machine must not lose them in the socket buffer.
	dropped := func(n int64) {
		deadline := time.Now().Add(5 * time.Second)
		for s.Stats().Dropped.Load() < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 500 {
		junk := append([]byte("NKRV\x01"), byte(i), 0xff, 0xff)
		pc.WriteTo(junk, to)
		pc.WriteTo([]byte{0xde, 0xad, byte(i)}, to)
		if i%50 == 49 {
			dropped(int64(2 * (i + 1)))
		}
	}
	// Many sessions from one host: at most MaxSessions exist, the rest are
	// refused with busy.
	busy := 0
	for i := range 30 {
		c := newUDPClient(t, s.Addr(), "flood-"+string(rune('a'+i)), "x")
		_, err := c.Join(ctx)
		var re *RefusedError
		if errors.As(err, &re) && re.Code == CodeBusy {
			busy++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if busy != 10 {
		t.Errorf("%d joins refused busy, want 10", busy)
	}
	s.mu.Lock()
	n := len(s.sessions)
	s.mu.Unlock()
	if n != 20 {
		t.Errorf("%d sessions held, want MaxSessions 20", n)
	}
	if d := s.Stats().Dropped.Load(); d < 1000 {
		t.Errorf("%d datagrams dropped, want the 1000 junk ones", d)
	}
}

func TestRateLimit(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, Config{JoinRate: 2})
	ctx := ctxT(t, 10*time.Second)
	limited := 0
	for i := range 8 {
		c := newUDPClient(t, s.Addr(), "rate-"+string(rune('a'+i)), "x")
		_, err := c.Join(ctx)
		var re *RefusedError
		if errors.As(err, &re) && re.Code == CodeRateLimited {
			limited++
		}
	}
	if limited == 0 {
		t.Error("8 quick JOINs with JoinRate 2 (burst 4): none rate limited")
	}
}

func TestExpiry(t *testing.T) {
	leaktest.Check(t)
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := startServer(t, Config{PairTimeout: time.Minute, Now: clock})
	ctx := ctxT(t, 5*time.Second)
	a := newUDPClient(t, s.Addr(), "lonely", "a")
	if _, err := a.Join(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	s.expire(clock())
	if s.Stats().LiveSessions.Load() != 0 || s.Stats().Expired.Load() != 1 {
		t.Errorf("live %d expired %d, want 0 and 1", s.Stats().LiveSessions.Load(), s.Stats().Expired.Load())
	}
}

func TestPeerNeverJoinedResult(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, Config{})
	ctx := ctxT(t, 5*time.Second)
	a := newUDPClient(t, s.Addr(), "alone", "a")
	if _, err := a.Join(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := a.WaitPair(wctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitPair = %v", err)
	}
	r, err := a.Result(ctx, []byte("x"), 0)
	if err != nil || r.Code != "peer-never-joined" {
		t.Errorf("result %+v %v", r, err)
	}
}

func TestTCPClient(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, Config{})
	ctx := ctxT(t, 10*time.Second)
	conn, err := net.Dial("tcp", s.TCPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := NewSession("tcp")
	tc, err := NewClient(ClientConfig{Session: sess, Conn: conn, Card: []byte("t")})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	u := newUDPClient(t, s.Addr(), "tcp", "u")
	if _, err := tc.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Join(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := u.WaitPair(ctx)
	if err != nil || !p.PeerTCP || string(p.Card) != "t" {
		t.Fatalf("pair over tcp: %+v %v", p, err)
	}
	if _, err := tc.WaitPair(ctx); err != nil {
		t.Fatal(err)
	}
	go u.Signal(ctx, []byte("to tcp"))
	select {
	case d := <-tc.Signals():
		if string(d) != "to tcp" {
			t.Errorf("signal %q", d)
		}
	case <-ctx.Done():
		t.Fatal("no signal over tcp")
	}
}

func TestSTUNWithChangeRequest(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("127.0.0.2:0")},
		Software: "natkit test"})
	pc, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	defer pc.Close()
	c := stunclient.NewPacketConn(pc, stunclient.Config{RTO: 50 * time.Millisecond, Timeout: time.Second})
	defer c.Close()
	ctx := ctxT(t, 5*time.Second)
	for _, tt := range []struct {
		name     string
		flags    uint32
		fromIP   string
		samePort bool
	}{
		{"plain", 0, "127.0.0.1", true},
		{"change ip", stun.ChangeIP, "127.0.0.2", true},
		{"change port", stun.ChangePort, "127.0.0.1", false},
		{"change both", stun.ChangeIP | stun.ChangePort, "127.0.0.2", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var req stunclient.Request
			if tt.flags != 0 {
				v := []byte{0, 0, 0, byte(tt.flags)}
				req.Attrs = []stun.Attr{{Type: stun.AttrChangeRequest, Value: v}}
			}
			r, err := c.Do(ctx, net.UDPAddrFromAddrPort(s.Addr()), req)
			if err != nil {
				t.Fatal(err)
			}
			if r.Mapped != addrPortOf(pc.LocalAddr()) {
				t.Errorf("mapped %v, want %v", r.Mapped, pc.LocalAddr())
			}
			main := s.Addrs()[0]
			if tt.fromIP != "127.0.0.1" {
				main = s.Addrs()[1]
			}
			if r.From.Addr().String() != tt.fromIP || (r.From.Port() == main.Port()) != tt.samePort {
				t.Errorf("answer from %v", r.From)
			}
			if !r.OtherAddress.IsValid() || !strings.HasPrefix(r.Software, "natkit test") {
				t.Fatalf("other %v software %q", r.OtherAddress, r.Software)
			}
			// OTHER-ADDRESS answers too (mapping tests send there).
			o, err := c.Do(ctx, net.UDPAddrFromAddrPort(r.OtherAddress), stunclient.Request{})
			if err != nil || o.From != r.OtherAddress || o.Mapped != r.Mapped {
				t.Errorf("at OTHER-ADDRESS %v: %+v, %v", r.OtherAddress, o, err)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("127.0.0.1:1")}},
		{MaxSessions: -1},
	} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestSTUNOverTCP(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	conn, err := net.Dial("tcp", s.TCPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	tid := [12]byte{1, 2, 3}
	if _, err := conn.Write(Frame(stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, tid).Bytes())); err != nil {
		t.Fatal(err)
	}
	b, err := ReadFrame(conn, make([]byte, MaxMessageSize+2))
	if err != nil {
		t.Fatal(err)
	}
	var m stun.Message
	if err := m.Decode(b); err != nil || m.Type != stun.BindingSuccess || m.TID != tid {
		t.Fatalf("answer %x: %v", b, err)
	}
	got, attr, err := m.MappedAddress()
	if err != nil || attr != stun.AttrXORMappedAddress || got != addrPortOf(conn.LocalAddr()) {
		t.Errorf("XOR-MAPPED-ADDRESS %v (%v), want %v", got, err, conn.LocalAddr())
	}
}
