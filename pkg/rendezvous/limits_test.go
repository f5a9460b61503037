package rendezvous

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/ratelimit"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunserver"
)

// handlerServer is a server whose handler the test calls directly, with
// chosen source addresses (one host has only ::1 and 127.0.0.0/8), on a
// clock the test sets.
type handlerServer struct {
	*Server
	mu  sync.Mutex
	now time.Time
}

func newHandlerServer(t *testing.T, cfg Config) *handlerServer {
	t.Helper()
	h := &handlerServer{now: time.Unix(1_700_000_000, 0)}
	cfg.Addrs = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	cfg.NoTCP = true
	cfg.Now = func() time.Time { h.mu.Lock(); defer h.mu.Unlock(); return h.now }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h.Server = s
	return h
}

func (h *handlerServer) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	h.mu.Unlock()
}

// join sends a JOIN for session name from src over UDP, with a valid
// cookie for src, and returns the server's first answer (nil: none).
func (h *handlerServer) join(t *testing.T, src netip.AddrPort, name string) *Message {
	t.Helper()
	sess, err := NewSession(name)
	if err != nil {
		t.Fatal(err)
	}
	ck := cookie(h.secret, epochOf(h.cfg.Now()), src)
	raw, err := sess.SealJoin(&Message{Nonce: randBytes(NonceSize), Cookie: ck, Peer: -1})
	if err != nil {
		t.Fatal(err)
	}
	return h.send(t, raw, src)
}

// send hands raw to the handler as a datagram from src and returns the
// first answer.
func (h *handlerServer) send(t *testing.T, raw []byte, src netip.AddrPort) *Message {
	t.Helper()
	var got *Message
	h.handle(raw, src, 0, func(b []byte) error {
		if got == nil {
			m, err := Unmarshal(b)
			if err != nil {
				t.Fatalf("answer does not decode: %v", err)
			}
			got = m
		}
		return nil
	}, false)
	return got
}

// outcome is what an answer says: "joined", or the ERROR code, or "none".
func outcome(m *Message) string {
	switch {
	case m == nil:
		return "none"
	case m.Type == TypeJoined:
		return "joined"
	case m.Type == TypeError:
		return m.Code
	}
	return m.Type.String()
}

// TestSessionQuotas: sessions created from one host prefix (an IPv4
// address, an IPv6 /64 whatever its interface identifiers) stop at the
// host quota, those of one network prefix (/24, /48) at the network quota,
// while other prefixes still create sessions; joining a session someone
// else created is not counted.
func TestSessionQuotas(t *testing.T) {
	type try struct {
		src  string
		want string // outcome
	}
	tests := []struct {
		name  string
		tries []try
	}{
		{name: "IPv6", tries: []try{
			{"[2001:db8:1:1::1]:4000", "joined"},
			{"[2001:db8:1:1::2]:4000", "joined"},
			{"[2001:db8:1:1:ffff:1:2:3]:4000", "joined"},
			{"[2001:db8:1:1::4]:4000", CodeQuotaExceeded}, // the /64 holds 3
			{"[2001:db8:1:1::1]:4001", CodeQuotaExceeded},
			{"[2001:db8:1:2::1]:4000", "joined"}, // another /64 of the /48
			{"[2001:db8:1:3::1]:4000", "joined"},
			{"[2001:db8:1:4::1]:4000", CodeQuotaExceeded}, // the /48 holds 5
			{"[2001:db8:2::1]:4000", "joined"},            // another /48
		}},
		{name: "IPv4", tries: []try{
			{"192.0.2.1:4000", "joined"},
			{"192.0.2.1:4001", "joined"},
			{"192.0.2.1:4002", "joined"},
			{"192.0.2.1:4003", CodeQuotaExceeded}, // the address holds 3
			{"192.0.2.2:4000", "joined"},
			{"192.0.2.3:4000", "joined"},
			{"192.0.2.4:4000", CodeQuotaExceeded}, // the /24 holds 5
			{"198.51.100.1:4000", "joined"},       // another /24
			{"[::ffff:192.0.2.5]:4000", CodeQuotaExceeded},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			h := newHandlerServer(t, Config{JoinRate: 1e6, MaxSessionsPerHost: 3, MaxSessionsPerNet: 5})
			for i, tr := range tt.tries {
				src := netip.MustParseAddrPort(tr.src)
				src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port()) // as the sockets give it
				if got := outcome(h.join(t, src, fmt.Sprintf("%s-%d", tt.name, i))); got != tr.want {
					t.Errorf("try %d from %s: %s, want %s", i, tr.src, got, tr.want)
				}
			}
			st := h.Stats()
			if st.QuotaExceeded.Load() != 3 || st.Refused.Load() != 3 {
				t.Errorf("stats: quota %d refused %d, want 3 and 3", st.QuotaExceeded.Load(), st.Refused.Load())
			}
			// The second peer of a session is not counted: an address over
			// its quota still joins a session another created.
			first := netip.MustParseAddrPort(tt.tries[0].src)
			last := len(tt.tries) - 1 // the last session another prefix created
			for tt.tries[last].want != "joined" {
				last--
			}
			if got := outcome(h.join(t, netip.AddrPortFrom(first.Addr(), 5000), fmt.Sprintf("%s-%d", tt.name, last))); got != "joined" {
				t.Errorf("second peer from a full prefix: %s, want joined", got)
			}
			// Sessions that end give their quota back, and the quota table
			// empties with the session table.
			h.advance(DefaultPairTimeout + time.Second)
			h.expire(h.cfg.Now())
			if got := outcome(h.join(t, netip.AddrPortFrom(first.Addr(), 5001), tt.name+"-again")); got != "joined" {
				t.Errorf("after expiry: %s, want joined", got)
			}
			h.advance(DefaultPairTimeout + time.Second)
			h.expire(h.cfg.Now())
			h.mu.Lock()
			n, held := len(h.sessions), len(h.held)
			h.mu.Unlock()
			if n != 0 || held != 0 {
				t.Errorf("after expiry: %d sessions, %d prefixes counted", n, held)
			}
		})
	}
}

// TestSessionQuotaLeave: a session ended by LEAVE gives its quota back.
func TestSessionQuotaLeave(t *testing.T) {
	leaktest.Check(t)
	h := newHandlerServer(t, Config{JoinRate: 1e6, MaxSessionsPerHost: 1})
	src := netip.MustParseAddrPort("[2001:db8::1]:4000")
	j := h.join(t, src, "leave-a")
	if outcome(j) != "joined" {
		t.Fatalf("first join: %s", outcome(j))
	}
	if got := outcome(h.join(t, src, "leave-b")); got != CodeQuotaExceeded {
		t.Fatalf("second session: %s, want %s", got, CodeQuotaExceeded)
	}
	leave, err := Seal(&Message{Type: TypeLeave, Session: j.Session, Peer: j.Peer}, j.Token)
	if err != nil {
		t.Fatal(err)
	}
	h.send(t, leave, src)
	if got := outcome(h.join(t, src, "leave-b")); got != "joined" {
		t.Errorf("after LEAVE: %s, want joined", got)
	}
}

// TestSessionQuotaDefaults: a /64 cannot fill the table with default
// settings, and small tables keep quotas no larger than themselves.
func TestSessionQuotaDefaults(t *testing.T) {
	for _, tt := range []struct {
		cfg        Config
		host, netw int
	}{
		{Config{}, DefaultMaxSessionsPerHost, DefaultMaxSessionsPerNet},
		{Config{MaxSessions: 20}, 20, 20},
		{Config{MaxSessionsPerHost: 7, MaxSessionsPerNet: 9}, 7, 9},
	} {
		h := newHandlerServer(t, tt.cfg)
		if h.cfg.MaxSessionsPerHost != tt.host || h.cfg.MaxSessionsPerNet != tt.netw {
			t.Errorf("%+v: quotas %d and %d, want %d and %d", tt.cfg, h.cfg.MaxSessionsPerHost, h.cfg.MaxSessionsPerNet, tt.host, tt.netw)
		}
	}
	if DefaultMaxSessionsPerNet*10 > DefaultMaxSessions {
		t.Errorf("ten networks fill the table (%d × 10 > %d)", DefaultMaxSessionsPerNet, DefaultMaxSessions)
	}
	for _, cfg := range []Config{{MaxSessionsPerHost: -1}, {MaxSessionsPerNet: -1}, {JoinRate: math.NaN()}, {JoinRate: math.Inf(1)}} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// TestJoinRateSurvivesSpray: a source that spent its JOIN burst stays
// limited while thousands of other sources JOIN; the old per-IP table
// forgot everyone once 4096 sources had come.
func TestJoinRateSurvivesSpray(t *testing.T) {
	leaktest.Check(t)
	h := newHandlerServer(t, Config{JoinRate: 1})
	victim := netip.MustParseAddrPort("192.0.2.1:4000")
	for i, want := range []string{"joined", "joined", CodeRateLimited} { // burst 2
		if got := outcome(h.join(t, victim, fmt.Sprintf("v%d", i))); got != want {
			t.Fatalf("victim's JOIN %d: %s, want %s", i, got, want)
		}
	}
	// The spray's JOINs have valid cookies and a MAC-sized tag for a
	// signature: they reach the rate limit, then fail verification at
	// once (no Ed25519 work, so that the test stays quick).
	sess, _ := NewSession("spray")
	for i := range 5000 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 4000)
		b, err := Marshal(&Message{Type: TypeJoin, Session: sess.ID, Nonce: randBytes(NonceSize), Cookie: cookie(h.secret, epochOf(h.cfg.Now()), src), Peer: -1})
		if err != nil {
			t.Fatal(err)
		}
		h.send(t, appendTag(b, make([]byte, MACSize)), src)
	}
	// All but the few whose bucket they share with another (one table of
	// 64 Ki buckets) pass the limit.
	if n := h.Stats().BadAuth.Load(); n < 4900 {
		t.Fatalf("%d of the spray's 5000 JOINs reached verification", n)
	}
	if got := outcome(h.join(t, victim, "v3")); got != CodeRateLimited {
		t.Errorf("victim's JOIN after a spray of 5000 sources: %s, want %s", got, CodeRateLimited)
	}
	// The bucket refills with time.
	h.advance(time.Second)
	if got := outcome(h.join(t, victim, "v4")); got != "joined" {
		t.Errorf("victim's JOIN a second later: %s, want joined", got)
	}
}

// TestJoinRateByPrefix: the addresses of one /64 share a JOIN budget.
func TestJoinRateByPrefix(t *testing.T) {
	leaktest.Check(t)
	h := newHandlerServer(t, Config{JoinRate: 1})
	got := []string{
		outcome(h.join(t, netip.MustParseAddrPort("[2001:db8:0:1::1]:4000"), "p1")),
		outcome(h.join(t, netip.MustParseAddrPort("[2001:db8:0:1::2]:4000"), "p2")),
		outcome(h.join(t, netip.MustParseAddrPort("[2001:db8:0:1::3]:4000"), "p3")),
	}
	if got[2] != CodeRateLimited {
		t.Errorf("three JOINs from one /64 with burst 2: %v", got)
	}
}

// collect reads pc until it has been quiet for quiet, and returns how many
// datagrams came.
func collect(pc net.PacketConn, quiet time.Duration) int {
	n := 0
	buf := make([]byte, 1500)
	for {
		pc.SetReadDeadline(time.Now().Add(quiet))
		if _, _, err := pc.ReadFrom(buf); err != nil {
			return n
		}
		n++
	}
}

// TestAnswerBudget: a flood of STUN Binding requests and HELLOs from one
// source, to the rendezvous port and its auxiliary port, gets at most
// burst + rate × t answers in all; refusals are counted; another source
// still gets answers. Before the budget every request was answered.
func TestAnswerBudget(t *testing.T) {
	leaktest.Check(t)
	const rate, burst = 1, 5
	s := startServer(t, Config{AnswerLimiter: ratelimit.New(rate, burst)})
	aux := s.quad()[stunserver.AltPort]
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	start := time.Now()
	const each = 20
	for i := range each {
		bind := stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, stun.TransactionID{byte(i)}).Bytes()
		hello, _ := Seal(&Message{Type: TypeHello, Nonce: randBytes(NonceSize), Peer: -1}, nil)
		pc.WriteTo(bind, net.UDPAddrFromAddrPort(s.Addr()))
		pc.WriteTo(bind, net.UDPAddrFromAddrPort(aux))
		pc.WriteTo(hello, net.UDPAddrFromAddrPort(s.Addr()))
	}
	// Wait until the server has read every request (the bound only stops
	// a lost datagram from hanging the test), then count the answers.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if s.Stats().Received.Load() == 3*each {
			break
		}
	}
	got := collect(pc, 200*time.Millisecond)
	limit := burst + int(math.Ceil(rate*time.Since(start).Seconds()))
	if got > limit {
		t.Errorf("%d of %d requests answered, want at most %d (burst %d + %d/s)", got, 3*each, limit, burst, rate)
	}
	if got < burst {
		t.Errorf("%d answered, want at least the burst of %d", got, burst)
	}
	if n := s.Stats().AnswersLimited.Load(); n < int64(3*each-limit) {
		t.Errorf("%d answers counted as withheld, want at least %d", n, 3*each-limit)
	}
	// Another source has its own budget.
	other, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Skip("no 127.0.0.2:", err)
	}
	defer other.Close()
	other.WriteTo(stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, stun.TransactionID{99}).Bytes(), net.UDPAddrFromAddrPort(s.Addr()))
	other.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := other.ReadFrom(make([]byte, 1500)); err != nil {
		t.Errorf("a second source got no answer: %v", err)
	}
}

// TestAnswerBudgetScope: the bad-cookie ERROR draws from the budget; the
// answers to a JOIN with a valid cookie (its address is proven) and over
// TCP do not; with NoAnswerLimit nothing does; a zero Config has a budget
// of its own with the STUN server's defaults.
func TestAnswerBudgetScope(t *testing.T) {
	leaktest.Check(t)
	h := newHandlerServer(t, Config{AnswerLimiter: ratelimit.New(1e-6, 1), JoinRate: 1e6})
	src := netip.MustParseAddrPort("192.0.2.1:4000")
	sess, _ := NewSession("scope")
	badCookie, _ := sess.SealJoin(&Message{Nonce: randBytes(NonceSize), Cookie: make([]byte, 20), Peer: -1})
	if got := outcome(h.send(t, badCookie, src)); got != CodeBadCookie {
		t.Fatalf("first bad cookie: %s", got)
	}
	if got := outcome(h.send(t, badCookie, src)); got != "none" {
		t.Errorf("bad cookie past the budget: %s, want no answer", got)
	}
	if got := outcome(h.join(t, src, "scope")); got != "joined" {
		t.Errorf("valid cookie past the budget: %s, want joined", got)
	}
	var tcpAnswer bool
	h.handle(badCookie, src, 0, func([]byte) error { tcpAnswer = true; return nil }, true)
	if !tcpAnswer {
		t.Error("no answer over TCP past the budget")
	}
	if n := h.Stats().AnswersLimited.Load(); n != 1 {
		t.Errorf("%d answers withheld, want 1", n)
	}

	own := newHandlerServer(t, Config{})
	if r, b := own.answers.Rate(); r != stunserver.DefaultRateLimit || b != stunserver.DefaultRateBurst {
		t.Errorf("default budget %v/s burst %d", r, b)
	}
	if off := newHandlerServer(t, Config{NoAnswerLimit: true, AnswerLimiter: ratelimit.New(1, 1)}); off.answers != nil {
		t.Error("NoAnswerLimit kept a budget")
	}
}

// TestFollowedAddressDrawsFromBudget: a joined peer may speak from a new
// address (its NAT rebound), and the server follows it; but it can claim any
// source address, so answers to an address no valid cookie proved draw from
// the answer budget: a peer cannot aim the other peer's SIGNALs at a
// spoofed victim beyond it.
func TestFollowedAddressDrawsFromBudget(t *testing.T) {
	leaktest.Check(t)
	const burst = 5
	h := newHandlerServer(t, Config{JoinRate: 1e6, AnswerLimiter: ratelimit.New(1, burst)})
	sess, err := NewSession("follow")
	if err != nil {
		t.Fatal(err)
	}
	delivered := map[netip.AddrPort]int{}
	var tokens [2][]byte
	sender := func(to netip.AddrPort) func([]byte) error {
		return func(b []byte) error {
			m, err := Unmarshal(b)
			if err != nil {
				t.Fatalf("answer does not decode: %v", err)
			}
			if m.Type == TypeJoined {
				tokens[m.Peer] = m.Token
			}
			delivered[to]++
			return nil
		}
	}
	a, b := netip.MustParseAddrPort("192.0.2.1:4000"), netip.MustParseAddrPort("198.51.100.1:4000")
	victim := netip.MustParseAddrPort("203.0.113.9:5000")
	for _, src := range []netip.AddrPort{a, b} {
		ck := cookie(h.secret, epochOf(h.cfg.Now()), src)
		raw, err := sess.SealJoin(&Message{Nonce: randBytes(NonceSize), Cookie: ck, Peer: -1})
		if err != nil {
			t.Fatal(err)
		}
		h.handle(raw, src, 0, sender(src), false)
	}
	if tokens[0] == nil || tokens[1] == nil {
		t.Fatal("both peers should have joined")
	}
	// Peer 0 "moves" to the victim's address with one authenticated READY.
	ready, _ := Seal(&Message{Type: TypeReady, Session: sess.ID, Peer: 0}, tokens[0])
	h.handle(ready, victim, 0, sender(victim), false)
	// Peer 1 signals 50 times: each SIGNAL goes to peer 0, now at the victim.
	for i := range 50 {
		sig, _ := Seal(&Message{Type: TypeSignal, Session: sess.ID, Peer: 1, Seq: uint32(i + 1), Data: make([]byte, MaxData)}, tokens[1])
		h.handle(sig, b, 0, sender(b), false)
	}
	if n := delivered[victim]; n == 0 || n > burst+1 {
		t.Errorf("%d datagrams went to the unproven address, want 1..%d (the answer budget)", n, burst+1)
	}
	// Back at its proven address, peer 0 gets everything again.
	h.handle(ready, a, 0, sender(a), false)
	before := delivered[a]
	for i := range 20 {
		sig, _ := Seal(&Message{Type: TypeSignal, Session: sess.ID, Peer: 1, Seq: uint32(100 + i), Data: []byte("x")}, tokens[1])
		h.handle(sig, b, 0, sender(b), false)
	}
	if got := delivered[a] - before; got != 20 {
		t.Errorf("%d of 20 SIGNALs reached the proven address", got)
	}
}
