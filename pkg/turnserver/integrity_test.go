package turnserver

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunclient"
)

// TestIntegrityCheckedOnce: each authenticated request costs one
// MESSAGE-INTEGRITY check, pion's or the guard's, never both — on the
// success path, on natkit's own refusals and on a stale nonce. A wrong
// one is the exception: pion's check fails, the guard's confirms it
// before the 401 goes.
func TestIntegrityCheckedOnce(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	ctx := ctxT(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	tc := stunclient.NewPacketConn(pc, stunclient.Config{Timeout: 2 * time.Second})
	defer tc.Close()
	server := net.UDPAddrFromAddrPort(s.addr("udp"))
	_, err = tc.Do(ctx, server, stunclient.Request{Method: stun.MethodAllocate})
	var er *stunclient.ErrorResponse
	if !errors.As(err, &er) || er.Code != 401 {
		t.Fatalf("challenge: %v", err)
	}
	nonce, _ := er.Response.Message.Get(stun.AttrNonce)
	if s.stats.integrityChecks.Load() != 0 {
		t.Fatalf("%d checks for a request without credentials", s.stats.integrityChecks.Load())
	}
	peer := netip.MustParseAddrPort("127.0.0.2:9")
	key := stun.LongTermKey("alice", DefaultRealm, "wonderland")
	for _, tc2 := range []struct {
		name   string
		method uint16
		attrs  func(stun.TransactionID) []stun.Attr
		nonce  string // "" : the server's
		key    []byte // nil: alice's
		code   int
		checks int64
	}{
		{"refused by the guard: 442", stun.MethodAllocate, transport(6), "", nil, 442, 1},
		{"Allocate", stun.MethodAllocate, transport(17), "", nil, 0, 1},
		{"Allocate again: 437", stun.MethodAllocate, transport(17), "", nil, 437, 1},
		{"Allocate", stun.MethodAllocate, transport(17), "", nil, 0, 1}, // a retransmission (same name, same TID): pion answers again
		{"CreatePermission", stun.MethodCreatePermission, peerAttrs(peer), "", nil, 0, 1},
		{"ChannelBind", stun.MethodChannelBind, channelAttrs(0x4001, peer), "", nil, 0, 1},
		{"Refresh", stun.MethodRefresh, lifetime(600), "", nil, 0, 1},
		{"refused by the guard: 403", stun.MethodCreatePermission, peerAttrs(netip.MustParseAddrPort("10.1.2.3:9")), "", nil, 403, 1},
		{"stale nonce: 438", stun.MethodRefresh, lifetime(600), strings.Repeat("0", 80), nil, 438, 1},
		{"wrong password: 401", stun.MethodRefresh, lifetime(600), "", stun.LongTermKey("alice", DefaultRealm, "nope"), 401, 2},
		{"wrong password, refused: 401", stun.MethodCreatePermission, peerAttrs(netip.MustParseAddrPort("10.1.2.3:9")), "", stun.LongTermKey("alice", DefaultRealm, "nope"), 401, 1},
	} {
		t.Run(tc2.name, func(t *testing.T) {
			var tid stun.TransactionID
			tid[0], tid[1] = 7, byte(tc2.checks)
			copy(tid[2:], tc2.name)
			n := string(nonce)
			if tc2.nonce != "" {
				n = tc2.nonce
			}
			k := key
			if tc2.key != nil {
				k = tc2.key
			}
			attrs := append(tc2.attrs(tid), stun.Attr{Type: stun.AttrUsername, Value: []byte("alice")},
				stun.Attr{Type: stun.AttrRealm, Value: []byte(DefaultRealm)}, stun.Attr{Type: stun.AttrNonce, Value: []byte(n)})
			before := s.stats.integrityChecks.Load()
			_, err := tc.Do(ctx, server, stunclient.Request{Method: tc2.method, Attrs: attrs, Key: k, TID: &tid})
			code := 0
			if errors.As(err, &er) {
				code = er.Code
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc2.code {
				t.Errorf("answer %d (%v), want %d", code, err, tc2.code)
			}
			if got := s.stats.integrityChecks.Load() - before; got != tc2.checks {
				t.Errorf("%d MESSAGE-INTEGRITY checks, want %d", got, tc2.checks)
			}
		})
	}
}

func transport(proto byte) func(stun.TransactionID) []stun.Attr {
	return func(stun.TransactionID) []stun.Attr {
		return []stun.Attr{{Type: stun.AttrRequestedTransport, Value: []byte{proto, 0, 0, 0}}}
	}
}

func lifetime(sec uint32) func(stun.TransactionID) []stun.Attr {
	return func(stun.TransactionID) []stun.Attr {
		return []stun.Attr{{Type: stun.AttrLifetime, Value: []byte{byte(sec >> 24), byte(sec >> 16), byte(sec >> 8), byte(sec)}}}
	}
}

func peerAttrs(peer netip.AddrPort) func(stun.TransactionID) []stun.Attr {
	return func(tid stun.TransactionID) []stun.Attr {
		return []stun.Attr{{Type: stun.AttrXORPeerAddress, Value: xorPeer(peer, tid)}}
	}
}

func channelAttrs(ch uint16, peer netip.AddrPort) func(stun.TransactionID) []stun.Attr {
	return func(tid stun.TransactionID) []stun.Attr {
		return []stun.Attr{{Type: stun.AttrChannelNumber, Value: []byte{byte(ch >> 8), byte(ch), 0, 0}},
			{Type: stun.AttrXORPeerAddress, Value: xorPeer(peer, tid)}}
	}
}

// xorPeer encodes an IPv4 XOR-PEER-ADDRESS (RFC 8489 §14.2).
func xorPeer(ap netip.AddrPort, _ stun.TransactionID) []byte {
	a := ap.Addr().As4()
	c := []byte{0x21, 0x12, 0xA4, 0x42}
	return []byte{0, 1, byte(ap.Port()>>8) ^ c[0], byte(ap.Port()) ^ c[1], a[0] ^ c[0], a[1] ^ c[1], a[2] ^ c[2], a[3] ^ c[3]}
}

// TestBadIntegrityChangesNothing: requests that pion gets to check and
// that fail leave no trace: an Allocate holds no quota and makes no
// relay, a ChannelBind binds nothing in natkit's mirror; each gets a 401.
func TestBadIntegrityChangesNothing(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) { c.UserQuota = 1 })
	ctx := ctxT(t)
	c, _ := allocated(t, s, "udp")
	nonce := []byte(c.Nonce())
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	tc := stunclient.NewPacketConn(pc, stunclient.Config{Timeout: 2 * time.Second})
	defer tc.Close()
	server := net.UDPAddrFromAddrPort(s.addr("udp"))
	bad := stun.LongTermKey("bob", DefaultRealm, "nope")
	do := func(method uint16, attrs []stun.Attr, key []byte) int {
		attrs = append(attrs, stun.Attr{Type: stun.AttrUsername, Value: []byte("bob")},
			stun.Attr{Type: stun.AttrRealm, Value: []byte(DefaultRealm)}, stun.Attr{Type: stun.AttrNonce, Value: nonce})
		_, err := tc.Do(ctx, server, stunclient.Request{Method: method, Attrs: attrs, Key: key})
		var er *stunclient.ErrorResponse
		if errors.As(err, &er) {
			return er.Code
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	for i := 0; i < 3; i++ {
		if code := do(stun.MethodAllocate, transport(17)(stun.TransactionID{}), bad); code != 401 {
			t.Fatalf("Allocate with a bad MESSAGE-INTEGRITY: %d, want 401", code)
		}
	}
	if st := s.Stats(); st.Allocations != 1 || st.AuthFailures != 3 {
		t.Errorf("after 3 bad Allocates: %+v", st)
	}
	// bob's quota of 1 is whole.
	good := stun.LongTermKey("bob", DefaultRealm, "builder")
	if code := do(stun.MethodAllocate, transport(17)(stun.TransactionID{}), good); code != 0 {
		t.Fatalf("bob's Allocate: %d", code)
	}
	var tid stun.TransactionID
	tid[0] = 9
	attrs := append(channelAttrs(0x4002, netip.MustParseAddrPort("127.0.0.2:9"))(tid), stun.Attr{Type: stun.AttrUsername, Value: []byte("bob")},
		stun.Attr{Type: stun.AttrRealm, Value: []byte(DefaultRealm)}, stun.Attr{Type: stun.AttrNonce, Value: nonce})
	_, err = tc.Do(ctx, server, stunclient.Request{Method: stun.MethodChannelBind, Attrs: attrs, Key: bad, TID: &tid})
	var er *stunclient.ErrorResponse
	if !errors.As(err, &er) || er.Code != 401 {
		t.Fatalf("ChannelBind with a bad MESSAGE-INTEGRITY: %v, want 401", err)
	}
	a := s.allocs.get(allocKey{network: "udp", local: s.addr("udp"), remote: netip.MustParseAddrPort(pc.LocalAddr().String())})
	if a == nil {
		t.Fatal("bob's allocation is not in the registry")
	}
	if _, ok := a.chans.peerOf(0x4002, time.Now()); ok {
		t.Error("a ChannelBind with a bad MESSAGE-INTEGRITY was mirrored")
	}
}

// feedConn is a client-facing PacketConn fed by a benchmark: ReadFrom
// returns what is sent on in, WriteTo hands a copy of each answer to out.
type feedConn struct {
	in     chan []byte
	out    chan []byte
	from   *net.UDPAddr
	local  *net.UDPAddr
	closed chan struct{}
	once   sync.Once
}

func newFeedConn() *feedConn {
	return &feedConn{in: make(chan []byte), out: make(chan []byte, 1), closed: make(chan struct{}),
		from:  net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:40000")),
		local: net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:3478"))}
}

func (f *feedConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case b := <-f.in:
		return copy(p, b), f.from, nil
	case <-f.closed:
		return 0, nil, net.ErrClosed
	}
}

func (f *feedConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case f.out <- append([]byte(nil), b...):
	case <-f.closed:
	}
	return len(b), nil
}

func (f *feedConn) Close() error                     { f.once.Do(func() { close(f.closed) }); return nil }
func (f *feedConn) LocalAddr() net.Addr              { return f.local }
func (f *feedConn) SetDeadline(time.Time) error      { return nil }
func (f *feedConn) SetReadDeadline(time.Time) error  { return nil }
func (f *feedConn) SetWriteDeadline(time.Time) error { return nil }

// ask feeds req to the server and returns its answer.
func (f *feedConn) ask(tb testing.TB, req []byte) *stun.Message {
	f.in <- req
	select {
	case b := <-f.out:
		m, err := stun.Parse(b)
		if err != nil {
			tb.Fatal(err)
		}
		return m
	case <-time.After(5 * time.Second):
		tb.Fatal("no answer")
	}
	return nil
}

// BenchmarkAuthenticatedRequest: the server's cost of one authenticated
// request (a Refresh on an allocation), socket-free: the request is fed
// to the guard and pion as a datagram, the answer taken from WriteTo.
func BenchmarkAuthenticatedRequest(b *testing.B) {
	f := newFeedConn()
	s := startServer(b, func(c *Config) { c.PacketConns = []net.PacketConn{f} })
	_ = s
	build := func(method uint16, tid byte, nonce []byte, attrs ...stun.Attr) []byte {
		bl := stun.NewBuilder(nil, stun.NewType(method, stun.ClassRequest), stun.MagicCookie, stun.TransactionID{tid})
		for _, a := range attrs {
			bl.Add(a.Type, a.Value)
		}
		if nonce != nil {
			bl.AddString(stun.AttrUsername, "alice")
			bl.AddString(stun.AttrRealm, DefaultRealm)
			bl.Add(stun.AttrNonce, nonce)
			bl.AddIntegrity(stun.LongTermKey("alice", DefaultRealm, "wonderland"))
			bl.AddFingerprint()
		}
		return bl.Bytes()
	}
	rt := stun.Attr{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	nonce, _ := f.ask(b, build(stun.MethodAllocate, 1, nil, rt)).Get(stun.AttrNonce)
	if m := f.ask(b, build(stun.MethodAllocate, 2, nonce, rt)); m.Type.Class() != stun.ClassSuccess {
		b.Fatalf("Allocate: %v", m.Type)
	}
	refresh := build(stun.MethodRefresh, 3, nonce, lifetime(600)(stun.TransactionID{})...)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if m := f.ask(b, refresh); m.Type.Class() != stun.ClassSuccess {
			b.Fatalf("Refresh: %v", m.Type)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user and system CPU time (the benchmark's
// feeding goroutine is a small, fixed part of it).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
